"""Event-shape rules: what an event must carry to be ingested, for every caller (the API, the
admin, ``seed_demo``, jobs). Each problem is a ``FieldError`` naming the field, so the API
answers 400 naming it and a batch fails only that item (docs/rules.md, "Events").
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from django.conf import settings

from points.exceptions import FieldError
from points.history import online_floor
from points.ingest.records import EventInput
from points.models import Community, EventType

MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
# How far before its community's creation an event may have happened (a bot importing a
# group's history); ``EVENTS_BACKFILL_DAYS`` in the settings.
DEFAULT_BACKFILL_DAYS = 365
MEMBER_ID_MAX_LENGTH = 64
DISPLAY_NAME_MAX_LENGTH = 200
# Printable to Python yet blank to a reader: Hangul fillers, the blank Braille pattern, Khmer
# inherent vowels, the combining grapheme joiner. Member ids also refuse variation selectors.
_BLANK_LETTERS = "\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0"
_BLANK_IN_NAMES = re.compile(f"[{_BLANK_LETTERS}]")
_BLANK_IN_IDS = re.compile(f"[{_BLANK_LETTERS}\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_COMBINING = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_COMBINING_PILE = re.compile(f"([{_COMBINING}]{{2}})[{_COMBINING}]+")
_ZWJ = "\u200d"


def member_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a member id, or None.

    A member id is 1 to 64 printable characters (any script), without spaces, '/' or '\\',
    and not '.' or '..': every accepted id can be read back through
    ``…/members/<id>`` (percent-encoded where needed), and none hides control, bidirectional
    or zero-width characters from the members who see it on a board."""
    if not value:
        return "must not be empty"
    if len(value) > MEMBER_ID_MAX_LENGTH:
        return f"must be at most {MEMBER_ID_MAX_LENGTH} characters"
    if value in (".", ".."):
        return "must not be '.' or '..' (a URL path cannot carry them)"
    if "/" in value or "\\" in value:
        return "must not contain '/' or '\\' (a URL path cannot carry them)"
    if not value.isprintable() or " " in value or _BLANK_IN_IDS.search(value):
        return (
            "must not contain spaces, control characters, bidirectional or zero-width "
            "formatting, or other invisible characters"
        )
    return None


def display_name_clean(name: str) -> str:
    """A display name as other members may see it: NFC; without control characters,
    bidirectional overrides and isolates, zero-width characters (a zero-width joiner is kept
    between two emoji) or blank letters; whitespace runs as one space; at most two combining
    marks on a letter; at most 200 characters. Empty when nothing visible is left."""
    if not (name.isascii() and name.isprintable()):
        name = unicodedata.normalize("NFC", name)
        kept: list[str] = []
        for i, char in enumerate(name):
            if char.isprintable():
                if not _BLANK_IN_NAMES.match(char):
                    kept.append(char)
            elif char.isspace():
                kept.append(" ")
            elif char == _ZWJ and _joins_emoji(name, i):
                kept.append(char)
        name = _COMBINING_PILE.sub(r"\1", "".join(kept))
    return " ".join(name.split())[:DISPLAY_NAME_MAX_LENGTH]


def _joins_emoji(text: str, i: int) -> bool:
    before = text[i - 1] if i > 0 else ""
    after = text[i + 1] if i + 1 < len(text) else ""
    emoji_before = before == "\ufe0f" or unicodedata.category(before or " ") in ("So", "Sk")
    return emoji_before and unicodedata.category(after or " ") == "So"


def occurred_at_window(community: Community, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """When an event may have happened: not before the community's creation minus its
    backfill limit (``EVENTS_BACKFILL_DAYS``, 365 by default), nor before the history kept
    online (``points.history.online_floor``: older months may be archived), not after ``now``
    plus ``MAX_CLOCK_SKEW`` (a bot's clock may run a little ahead). docs/rules.md says why."""
    days = getattr(settings, "EVENTS_BACKFILL_DAYS", DEFAULT_BACKFILL_DAYS)
    earliest = max(community.created_at - dt.timedelta(days=days), online_floor(now))
    return earliest, now + MAX_CLOCK_SKEW


# Types that name another member in ``target``, and the ones that need a target at all.
_TARGET_IS_MEMBER = (EventType.PEER_SCORE, EventType.INVITE)
_TARGET_REQUIRED = (EventType.PEER_SCORE, EventType.INVITE, EventType.REACTION)


def event_shape_errors(
    event: EventInput, *, window: tuple[dt.datetime, dt.datetime] | None = None
) -> list[FieldError]:
    """What is wrong with the event's shape, each naming its field (empty: nothing).

    ``window``: when the event may have happened (``occurred_at_window``). The API checks
    the JSON types of the fields; this checks what depends on the event type."""
    errors: list[FieldError] = []
    kind, target = event.type, event.target
    if problem := member_id_problem(event.member):
        errors.append(FieldError("member", "invalid_member_id", problem))
    if window is not None and event.occurred_at is not None:
        earliest, latest = window
        if event.occurred_at > latest:
            errors.append(FieldError("occurred_at", "in_future", "is in the future"))
        elif event.occurred_at < earliest:
            errors.append(
                FieldError(
                    "occurred_at",
                    "before_backfill_limit",
                    f"must not be before {earliest.astimezone(dt.UTC).isoformat()} (the "
                    "community's backfill limit)",
                )
            )
    if kind == EventType.PEER_SCORE and event.score is None:
        errors.append(FieldError("score", "required", "is required for peer_score"))
    if kind != EventType.PEER_SCORE and event.score is not None:
        errors.append(FieldError("score", "invalid", "is only allowed for peer_score"))
    if kind in _TARGET_REQUIRED and not target:
        errors.append(FieldError("target", "required", f"is required for {kind}"))
    elif kind in _TARGET_IS_MEMBER:
        if target == event.member:
            errors.append(FieldError("target", "invalid", "must be another member"))
        elif problem := member_id_problem(target):
            errors.append(FieldError("target", "invalid_member_id", problem))
    if kind == EventType.CONTENT_FEATURED and not event.content_id:
        errors.append(
            FieldError(
                "target", "required", "is required for content_featured (the featured content's id)"
            )
        )
    if kind == EventType.REACTION:
        author = (event.content or {}).get("author")
        if not isinstance(author, str) or not author:
            errors.append(
                FieldError(
                    "content.author",
                    "required",
                    "is required for reaction (the member who is paid)",
                )
            )
        elif problem := member_id_problem(author):
            errors.append(FieldError("content.author", "invalid_member_id", problem))
    return errors
