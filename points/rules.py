"""Rule sets: what each event is worth, and the pure scoring function.

A rule set version is a JSON document, validated here into a frozen ``Rules`` value. Scoring is a
pure function of (rules, event type, what the member already earned that local day), so it can
be unit-tested without a database and replayed deterministically.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from points.exceptions import FieldError, RulesInvalid
from points.models import EventType

BUILTIN_TYPES: frozenset[str] = frozenset(EventType.values)
TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

DEFAULT_RULES: dict[str, Any] = {
    "points": {
        "join": 0,
        "leave": 0,
        "check_in": 5,
        "message": 1,
        "share": 5,
        "ugc_post": 10,
        "content_featured": 20,
        "reaction": 0,
        "invite": 10,
        "help": 5,
        "peer_score": 0,
    },
    "daily_caps": {"message": 20, "share": 20, "ugc_post": 50, "invite": 50, "help": 20},
    "daily_total_cap": 200,
    "first_per_day": ["check_in"],
    "custom_types": [],
}

# Types that never pay the member who posts them, whatever a rule set says:
# a rater earns nothing for rating (spec 3.1).
NEVER_PAYS_ACTOR = frozenset({EventType.PEER_SCORE.value, EventType.LEAVE.value})


@dataclass(frozen=True)
class Rules:
    points: Mapping[str, int]
    daily_caps: Mapping[str, int] = field(default_factory=dict)
    daily_total_cap: int | None = 200
    first_per_day: frozenset[str] = frozenset({"check_in"})
    custom_types: frozenset[str] = frozenset()

    @property
    def known_types(self) -> frozenset[str]:
        return BUILTIN_TYPES | self.custom_types


@dataclass(frozen=True)
class Tally:
    """What a member already has on one local day, for one type or in total."""

    count: int = 0
    points: int = 0


@dataclass(frozen=True)
class Award:
    rule: str
    points: int
    base: int
    capped: bool = False
    cap: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "points": self.points,
            "base": self.base,
            "capped": self.capped,
            "cap": self.cap,
        }


def _non_negative_int(value: Any, path: str, errors: list[FieldError]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        errors.append(FieldError(path, "invalid", "must be an integer ≥ 0"))
        return None
    return value


def parse_rules(document: Any) -> Rules:
    """Validate a rule set document; raise ``RulesInvalid`` naming every bad field."""
    errors: list[FieldError] = []
    if not isinstance(document, dict):
        raise RulesInvalid([FieldError("rules", "invalid", "must be an object")])
    unknown = set(document) - set(DEFAULT_RULES)
    errors.extend(FieldError(k, "unknown_field", "unknown rule") for k in sorted(unknown))

    custom_raw = document.get("custom_types", [])
    custom: set[str] = set()
    if not isinstance(custom_raw, list):
        errors.append(FieldError("custom_types", "invalid", "must be a list of type names"))
    else:
        for i, name in enumerate(custom_raw):
            if not isinstance(name, str) or not TYPE_NAME.match(name):
                errors.append(
                    FieldError(f"custom_types[{i}]", "invalid", "must match ^[a-z][a-z0-9_]*$")
                )
            elif name in BUILTIN_TYPES:
                errors.append(FieldError(f"custom_types[{i}]", "invalid", "is a built-in type"))
            else:
                custom.add(name)
    known = BUILTIN_TYPES | custom

    def type_map(key: str) -> dict[str, int]:
        raw = document.get(key, {})
        out: dict[str, int] = {}
        if not isinstance(raw, dict):
            errors.append(FieldError(key, "invalid", "must be an object of type → integer"))
            return out
        for name, value in raw.items():
            if name not in known:
                errors.append(FieldError(f"{key}.{name}", "unknown_event_type", "unknown type"))
                continue
            number = _non_negative_int(value, f"{key}.{name}", errors)
            if number is not None:
                out[name] = number
        return out

    points = type_map("points")
    daily_caps = type_map("daily_caps")

    total_raw = document.get("daily_total_cap", 200)
    total = None if total_raw is None else _non_negative_int(total_raw, "daily_total_cap", errors)

    first_raw = document.get("first_per_day", ["check_in"])
    first: set[str] = set()
    if not isinstance(first_raw, list):
        errors.append(FieldError("first_per_day", "invalid", "must be a list of types"))
    else:
        for i, name in enumerate(first_raw):
            if name not in known:
                errors.append(
                    FieldError(f"first_per_day[{i}]", "unknown_event_type", "unknown type")
                )
            else:
                first.add(name)

    if errors:
        raise RulesInvalid(errors)
    return Rules(
        points=points,
        daily_caps=daily_caps,
        daily_total_cap=total,
        first_per_day=frozenset(first),
        custom_types=frozenset(custom),
    )


def score_event(
    rules: Rules,
    *,
    event_type: str,
    member_left: bool,
    type_today: Tally,
    total_today: Tally,
) -> list[Award]:
    """The awards one event earns its poster, given what they already earned that local day.

    Guarantees: never negative; never above a per-type daily cap or the overall daily cap;
    a first-per-day type pays only on the first event of that type in the community's day.
    An event that pays nothing by rule yields no award; one cut to zero by a cap or gate yields
    an award of 0 that names the cap, so the response explains why.
    """
    base = 0 if event_type in NEVER_PAYS_ACTOR else rules.points.get(event_type, 0)
    if base <= 0:
        return []
    rule = f"points.{event_type}"
    if member_left and event_type != EventType.JOIN:
        return [Award(rule, 0, base, capped=True, cap="member_left")]
    if event_type in rules.first_per_day and type_today.count >= 1:
        return [Award(rule, 0, base, capped=True, cap="first_per_day")]

    room = base
    cap_name: str | None = None
    type_cap = rules.daily_caps.get(event_type)
    if type_cap is not None and type_cap - type_today.points < room:
        room = type_cap - type_today.points
        cap_name = f"daily_caps.{event_type}"
    if rules.daily_total_cap is not None and rules.daily_total_cap - total_today.points < room:
        room = rules.daily_total_cap - total_today.points
        cap_name = "daily_total_cap"
    room = max(room, 0)
    if room < base:
        return [Award(rule, room, base, capped=True, cap=cap_name)]
    return [Award(rule, base, base)]
