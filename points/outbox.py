"""What points publishes for the outside world (``webhooks`` delivers it).

``points`` imports no sibling app, so publishing goes through this registry: the ``webhooks``
app registers its writer when Django starts. A publisher is called inside the transaction of
the change it reports, so a message exists exactly when the change committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from points.models import Community

Publisher = Callable[[Community, Sequence[tuple[str, dict[str, Any]]]], None]
_publishers: list[Publisher] = []


def register(publisher: Publisher) -> None:
    if publisher not in _publishers:
        _publishers.append(publisher)


def publish(community: Community, messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Hand ``(topic, payload)`` messages to every registered publisher (in the caller's
    transaction)."""
    if messages:
        for publisher in _publishers:
            publisher(community, messages)
