"""Rule sets: what each event is worth, as versioned JSON documents.

A rule set version is a JSON document, validated here (``parse_rules``) into a frozen ``Rules``
value, with bounds that the columns and the scoring arithmetic hold. What an event earns under
a ``Rules`` value is decided in ``points.scoring``, the one scoring policy.
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

# Bounds on rule values, set by what the columns and the scoring arithmetic hold: awards,
# event points and a day's tally per type are ``integer`` columns (2^31 - 1), so one event's
# points and bonuses stay far below that (an event pays at most points + two bonuses); a
# cooldown is bound as an ``int`` number of seconds; day counts are added to dates.
INT32_MAX = 2**31 - 1
MAX_POINTS = 1_000_000  # per event type, per bonus (as an adjustment's bound)
MAX_COUNT = 1_000_000  # events in a day (diminishing.full/half)
MAX_COOLDOWN_SECONDS = 366 * 24 * 3600
MAX_STREAK_EVERY = 366  # days
MAX_WINDOW_DAYS = 3660  # duplicate_content.window_days, expiry_days: ten years

DEFAULT_RULES: dict[str, Any] = {
    "points": {
        "join": 0,
        "leave": 0,
        "check_in": 5,
        "message": 1,
        "share": 5,
        "ugc_post": 10,
        "content_featured": 20,
        "reaction": 1,
        "invite": 10,
        "help": 5,
        "peer_score": 0,
    },
    "daily_caps": {
        "message": 20,
        "share": 20,
        "ugc_post": 50,
        "invite": 50,
        "help": 20,
        "reaction": 30,
    },
    "weekly_caps": {},
    "monthly_caps": {"invite": 300},
    "daily_total_cap": 200,
    "first_per_day": ["check_in"],
    "cooldowns": {},
    "streak": {"type": "check_in", "every": 7, "bonus": 10},
    "monthly_quota": {
        "type": "check_in",
        "days": 20,
        "bonus": 50,
        "achievement": "monthly_check_in",
    },
    "duplicate_content": {"types": ["check_in", "ugc_post", "share"], "window_days": 30},
    "min_length": {"ugc_post": 20},
    "diminishing": {},
    "expiry_days": None,
    "custom_types": [],
}

# Types that never pay the member who posts them, whatever a rule set says: a rater earns
# nothing for rating; a reaction pays the content's author; an invite pays when the invitee
# joins; a join pays its inviter, never the joiner.
NEVER_PAYS_ACTOR = frozenset(
    {
        EventType.PEER_SCORE.value,
        EventType.LEAVE.value,
        EventType.REACTION.value,
        EventType.INVITE.value,
        EventType.JOIN.value,
    }
)


@dataclass(frozen=True)
class Streak:
    type: str
    every: int
    bonus: int


@dataclass(frozen=True)
class Quota:
    type: str
    days: int
    bonus: int
    achievement: str


@dataclass(frozen=True)
class Diminishing:
    full: int
    half: int


@dataclass(frozen=True)
class Rules:
    points: Mapping[str, int]
    daily_caps: Mapping[str, int] = field(default_factory=dict)
    daily_total_cap: int | None = 200
    first_per_day: frozenset[str] = frozenset({"check_in"})
    custom_types: frozenset[str] = frozenset()
    weekly_caps: Mapping[str, int] = field(default_factory=dict)
    monthly_caps: Mapping[str, int] = field(default_factory=dict)
    cooldowns: Mapping[str, int] = field(default_factory=dict)
    streak: Streak | None = None
    monthly_quota: Quota | None = None
    duplicate_types: frozenset[str] = frozenset()
    duplicate_window_days: int = 30
    min_length: Mapping[str, int] = field(default_factory=dict)
    diminishing: Mapping[str, Diminishing] = field(default_factory=dict)
    expiry_days: int | None = None

    @property
    def known_types(self) -> frozenset[str]:
        return BUILTIN_TYPES | self.custom_types


# --- validation ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.errors: list[FieldError] = []
        self.known: frozenset[str] = BUILTIN_TYPES

    def error(self, path: str, message: str, code: str = "invalid") -> None:
        self.errors.append(FieldError(path, code, message))

    def non_negative(
        self, value: Any, path: str, *, positive: bool = False, most: int = INT32_MAX
    ) -> int | None:
        low = 1 if positive else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self.error(path, f"must be an integer ≥ {low}")
            return None
        if value > most:
            self.error(path, f"must be at most {most}", "max_value")
            return None
        return value

    def event_type(self, value: Any, path: str) -> str | None:
        if value not in self.known:
            self.error(path, "unknown event type", "unknown_event_type")
            return None
        return str(value)

    def type_map(
        self, key: str, *, positive: bool = False, most: int = INT32_MAX
    ) -> dict[str, int]:
        raw = self.doc.get(key, {})
        out: dict[str, int] = {}
        if not isinstance(raw, dict):
            self.error(key, "must be an object of type → integer")
            return out
        for name, value in raw.items():
            if self.event_type(name, f"{key}.{name}") is None:
                continue
            number = self.non_negative(value, f"{key}.{name}", positive=positive, most=most)
            if number is not None:
                out[name] = number
        return out

    def type_list(self, value: Any, path: str) -> frozenset[str]:
        if not isinstance(value, list):
            self.error(path, "must be a list of event types")
            return frozenset()
        return frozenset(
            t for i, item in enumerate(value) if (t := self.event_type(item, f"{path}[{i}]"))
        )

    def section(self, key: str, fields: tuple[str, ...]) -> dict[str, Any] | None:
        raw = self.doc.get(key, DEFAULT_RULES[key])
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.error(key, "must be an object or null")
            return None
        for name in sorted(set(raw) - set(fields)):
            self.error(f"{key}.{name}", "unknown field", "unknown_field")
        missing = [name for name in fields if name not in raw]
        for name in missing:
            self.error(f"{key}.{name}", "is required", "required")
        return None if missing else raw


def parse_rules(document: Any) -> Rules:
    """Validate a rule set document; raise ``RulesInvalid`` naming every bad field.

    Keys left out take the defaults of ``DEFAULT_RULES`` except the maps of caps, cooldowns,
    gates and points, which are empty when left out (a document says what it pays)."""
    if not isinstance(document, dict):
        raise RulesInvalid([FieldError("rules", "invalid", "must be an object")])
    p = _Parser(document)
    for key in sorted(set(document) - set(DEFAULT_RULES)):
        p.error(key, "unknown rule", "unknown_field")

    custom: set[str] = set()
    custom_raw = document.get("custom_types", [])
    if not isinstance(custom_raw, list):
        p.error("custom_types", "must be a list of type names")
    else:
        for i, name in enumerate(custom_raw):
            if not isinstance(name, str) or not TYPE_NAME.match(name):
                p.error(f"custom_types[{i}]", "must match ^[a-z][a-z0-9_]*$")
            elif name in BUILTIN_TYPES:
                p.error(f"custom_types[{i}]", "is a built-in type")
            else:
                custom.add(name)
    p.known = BUILTIN_TYPES | custom

    points = p.type_map("points", most=MAX_POINTS)
    daily_caps = p.type_map("daily_caps")
    weekly_caps = p.type_map("weekly_caps")
    monthly_caps = p.type_map("monthly_caps")
    cooldowns = p.type_map("cooldowns", positive=True, most=MAX_COOLDOWN_SECONDS)
    min_length = p.type_map("min_length")

    total_raw = document.get("daily_total_cap", 200)
    total = None if total_raw is None else p.non_negative(total_raw, "daily_total_cap")
    first = p.type_list(document.get("first_per_day", ["check_in"]), "first_per_day")

    streak = None
    if (raw := p.section("streak", ("type", "every", "bonus"))) is not None:
        kind = p.event_type(raw["type"], "streak.type")
        every = p.non_negative(raw["every"], "streak.every", positive=True, most=MAX_STREAK_EVERY)
        bonus = p.non_negative(raw["bonus"], "streak.bonus", most=MAX_POINTS)
        if kind and every and bonus is not None:
            streak = Streak(kind, every, bonus)
    quota = None
    if (raw := p.section("monthly_quota", ("type", "days", "bonus", "achievement"))) is not None:
        kind = p.event_type(raw["type"], "monthly_quota.type")
        days = p.non_negative(raw["days"], "monthly_quota.days", positive=True)
        bonus = p.non_negative(raw["bonus"], "monthly_quota.bonus", most=MAX_POINTS)
        achievement = raw["achievement"]
        if not isinstance(achievement, str) or len(achievement) > 64:
            p.error("monthly_quota.achievement", "must be a name of at most 64 characters")
        elif days is not None and days > 31:
            p.error("monthly_quota.days", "must be at most 31")
        elif kind and days and bonus is not None:
            quota = Quota(kind, days, bonus, achievement)
    duplicate_types: frozenset[str] = frozenset()
    window = 30
    if (raw := p.section("duplicate_content", ("types", "window_days"))) is not None:
        duplicate_types = p.type_list(raw["types"], "duplicate_content.types")
        window = (
            p.non_negative(
                raw["window_days"], "duplicate_content.window_days", most=MAX_WINDOW_DAYS
            )
            or 0
        )

    diminishing: dict[str, Diminishing] = {}
    dim_raw = document.get("diminishing", {})
    if not isinstance(dim_raw, dict):
        p.error("diminishing", "must be an object of type → {full, half}")
    else:
        for name, value in dim_raw.items():
            path = f"diminishing.{name}"
            if p.event_type(name, path) is None:
                continue
            if not isinstance(value, dict) or set(value) != {"full", "half"}:
                p.error(path, "must be {full, half}")
                continue
            full = p.non_negative(value["full"], f"{path}.full", most=MAX_COUNT)
            half = p.non_negative(value["half"], f"{path}.half", most=MAX_COUNT)
            if full is not None and half is not None:
                diminishing[name] = Diminishing(full, half)

    expiry_raw = document.get("expiry_days")
    expiry = None
    if expiry_raw is not None:
        expiry = p.non_negative(expiry_raw, "expiry_days", positive=True, most=MAX_WINDOW_DAYS)

    if p.errors:
        raise RulesInvalid(p.errors)
    return Rules(
        points=points,
        daily_caps=daily_caps,
        daily_total_cap=total,
        first_per_day=first,
        custom_types=frozenset(custom),
        weekly_caps=weekly_caps,
        monthly_caps=monthly_caps,
        cooldowns=cooldowns,
        streak=streak,
        monthly_quota=quota,
        duplicate_types=duplicate_types,
        duplicate_window_days=window,
        min_length=min_length,
        diminishing=diminishing,
        expiry_days=expiry,
    )
