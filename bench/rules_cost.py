"""What the full rule engine costs per event: the same event mix through two communities of
the same server, one with the default (full) rule set, one with the foundation's rules only
(points per type, daily caps, the overall cap, first check-in per day)."""

from __future__ import annotations

import hashlib
from typing import Any

from bench.load import EventSource, HttpPoster, PhaseResult, SingleClient, combine, run_phase

# The foundation's rule set: no streaks, quotas, recycled-content or length gates, no
# weekly/monthly caps, no cooldowns. Everything else as the defaults.
FOUNDATION_OVERRIDES: dict[str, Any] = {
    "weekly_caps": {},
    "monthly_caps": {},
    "cooldowns": {},
    "streak": None,
    "monthly_quota": None,
    "duplicate_content": None,
    "min_length": {},
    "diminishing": {},
}


class RichEventSource(EventSource):
    """The bench's event mix plus what the full rules look at: check-ins and posts carry a
    content hash and length, and one event in ten is a reaction to another member's post."""

    def event(self) -> dict[str, Any]:
        event = super().event()
        if self.n % 10 == 0:
            event["type"] = "reaction"
            event["target"] = f"post-{self.rng.randrange(5000)}"
            event["content"] = {"author": f"m{self.rng.randrange(self.members):05d}"}
        elif event["type"] in ("check_in", "ugc_post", "share"):
            digest = hashlib.sha1(event["id"].encode(), usedforsecurity=False).hexdigest()
            event["content"] = {"hash": digest, "length": 80}
        return event


def create_community(slug: str, *, foundation: bool) -> str:
    """A fresh community (so both sides start from the same empty history) on the default
    rules or on the foundation's rules (published as version 2, in force since 2000), and an
    events:write key for it; returns the key."""
    import datetime as dt

    from django.db import connections

    from points.models import Scope
    from points.rules import DEFAULT_RULES
    from points.services import api_key_create, community_create, rule_set_publish

    community = community_create(slug=slug, name=f"Bench {slug}")
    if foundation:
        rule_set_publish(
            community=community,
            rules={**DEFAULT_RULES, **FOUNDATION_OVERRIDES},
            effective_from=dt.datetime(2000, 1, 2, tzinfo=dt.UTC),
            note="the foundation's rules, for the bench",
        )
    _key, plain = api_key_create(community=community, scopes=[Scope.EVENTS_WRITE], name="bench")
    connections.close_all()
    return plain


def measure(
    port: int,
    *,
    full_slug: str,
    full_key: str,
    foundation_slug: str,
    foundation_key: str,
    clients: int,
    seconds: float,
    warmup: float,
    members: int,
    run_id: str,
) -> tuple[PhaseResult, PhaseResult]:
    """Foundation rules, full rules, foundation rules again (drift cancels out); returns
    (full, both foundation runs together)."""

    def phase(slug: str, key: str, tag: str, name: str) -> PhaseResult:
        senders = [
            SingleClient(
                HttpPoster(port, f"/api/v1/communities/{slug}/events", key),
                RichEventSource(f"{tag}{run_id}-{i}", 300 + i, members),
            )
            for i in range(clients)
        ]
        try:
            return run_phase(name, [s.step_new for s in senders], warmup=warmup, duration=seconds)
        finally:
            for s in senders:
                s.poster.close()

    before = phase(foundation_slug, foundation_key, "fa", "single events, foundation rules")
    full = phase(full_slug, full_key, "ff", "single events, full default rules")
    after = phase(foundation_slug, foundation_key, "fb", "single events, foundation rules")
    both = combine(before, after)
    return full, both
