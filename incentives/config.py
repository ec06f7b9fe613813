"""A community's tier ladder and KOC thresholds: the document, its defaults and its validation.

One parser (``parse_config``) for the API, the admin and the jobs, collecting every error with
its field path, as ``points.rules.parse_rules`` does for rule sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from points.exceptions import FieldError, ValidationFailed

INT_MAX = 2**31 - 1
MAX_TIERS = 10

DEFAULT_TIERS: dict[str, Any] = {
    "points_window_days": 90,
    "low_water": 0.9,
    "min_stay_days": 30,
    "tiers": [
        {"code": "newcomer", "name": {"zh": "新人", "en": "Newcomer"}},
        {
            "code": "active",
            "name": {"zh": "活跃成员", "en": "Active"},
            "min_points": 100,
            "min_check_in_days": 8,
        },
        {
            "code": "core",
            "name": {"zh": "核心成员", "en": "Core"},
            "min_points": 500,
            "min_check_in_days": 15,
            "min_featured": 1,
        },
        {
            "code": "ambassador",
            "name": {"zh": "大使", "en": "Ambassador"},
            "min_points": 1500,
            "min_check_in_days": 20,
            "min_featured": 3,
            "requires_koc": True,
        },
    ],
}

DEFAULT_KOC: dict[str, Any] = {
    "window_days": 30,
    "min_reactors": 10,
    "min_days": 5,
    "min_z": 3.5,
    "damping": 0.85,
}

CRITERIA = ("min_points", "min_check_in_days", "min_featured")
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class Tier:
    level: int
    code: str
    name_zh: str
    name_en: str
    min_points: int
    min_check_in_days: int
    min_featured: int
    requires_koc: bool

    def name(self, lang: str) -> str:
        return self.name_en if lang.startswith("en") else self.name_zh


@dataclass(frozen=True)
class Ladder:
    tiers: tuple[Tier, ...]
    points_window_days: int
    low_water: float
    min_stay_days: int

    def by_level(self, level: int) -> Tier:
        return self.tiers[min(max(level, 0), len(self.tiers) - 1)]


@dataclass(frozen=True)
class KocSettings:
    window_days: int
    min_reactors: int
    min_days: int
    min_z: float
    damping: float


def _int(errors: list[FieldError], path: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(path, "invalid", "must be an integer"))
        return low
    if not low <= value <= high:
        errors.append(FieldError(path, "out_of_range", f"must be between {low} and {high}"))
        return low
    return value


def _number(errors: list[FieldError], path: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        errors.append(FieldError(path, "invalid", "must be a number"))
        return low
    if not low <= value <= high:
        errors.append(FieldError(path, "out_of_range", f"must be between {low} and {high}"))
        return low
    return float(value)


def _unknown_keys(errors: list[FieldError], prefix: str, doc: dict[str, Any], known: set[str]):
    for key in sorted(set(doc) - known):
        errors.append(FieldError(f"{prefix}{key}", "unknown_key", "unknown key"))


def parse_ladder(doc: Any, prefix: str = "") -> Ladder:
    """Validate a tier ladder document; raises ``ValidationFailed`` naming every bad field."""
    errors: list[FieldError] = []
    if not isinstance(doc, dict):
        raise ValidationFailed(
            "The tier ladder is invalid.",
            [FieldError(prefix or "tiers", "invalid", "must be an object")],
        )
    _unknown_keys(
        errors, prefix, doc, {"points_window_days", "low_water", "min_stay_days", "tiers"}
    )
    window = _int(errors, f"{prefix}points_window_days", doc.get("points_window_days", 90), 1, 366)
    low_water = _number(errors, f"{prefix}low_water", doc.get("low_water", 0.9), 0.0, 1.0)
    stay = _int(errors, f"{prefix}min_stay_days", doc.get("min_stay_days", 30), 0, 366)
    raw = doc.get("tiers")
    tiers: list[Tier] = []
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_TIERS:
        errors.append(
            FieldError(f"{prefix}tiers", "invalid", f"must be a list of 1 to {MAX_TIERS} tiers")
        )
        raw = []
    seen: set[str] = set()
    for level, item in enumerate(raw):
        path = f"{prefix}tiers[{level}]"
        if not isinstance(item, dict):
            errors.append(FieldError(path, "invalid", "must be an object"))
            continue
        _unknown_keys(errors, f"{path}.", item, {"code", "name", *CRITERIA, "requires_koc"})
        code = item.get("code")
        if not isinstance(code, str) or not _CODE.match(code):
            errors.append(
                FieldError(f"{path}.code", "invalid", "must match ^[a-z][a-z0-9_]{0,31}$")
            )
            code = f"tier{level}"
        elif code in seen:
            errors.append(FieldError(f"{path}.code", "duplicate", "codes must be unique"))
        seen.add(code)
        name = item.get("name", {})
        if not isinstance(name, dict) or not all(
            isinstance(name.get(k), str) and 0 < len(name[k]) <= 40 for k in ("zh", "en")
        ):
            errors.append(
                FieldError(f"{path}.name", "invalid", "must be {zh, en}, each 1-40 characters")
            )
            name = {"zh": code, "en": code}
        values = {c: _int(errors, f"{path}.{c}", item.get(c, 0), 0, INT_MAX) for c in CRITERIA}
        requires_koc = item.get("requires_koc", False)
        if not isinstance(requires_koc, bool):
            errors.append(FieldError(f"{path}.requires_koc", "invalid", "must be true or false"))
            requires_koc = False
        if level == 0 and (any(values.values()) or requires_koc):
            errors.append(
                FieldError(
                    path, "first_tier_has_criteria", "the first tier is everyone's: no criteria"
                )
            )
        tiers.append(Tier(level, code, name["zh"], name["en"], **values, requires_koc=requires_koc))
    if errors:
        raise ValidationFailed("The tier ladder is invalid.", errors)
    return Ladder(tuple(tiers), window, low_water, stay)


def parse_koc(doc: Any, prefix: str = "koc.") -> KocSettings:
    errors: list[FieldError] = []
    if not isinstance(doc, dict):
        raise ValidationFailed(
            "The KOC settings are invalid.",
            [FieldError(prefix.rstrip("."), "invalid", "must be an object")],
        )
    _unknown_keys(errors, prefix, doc, set(DEFAULT_KOC))
    merged = {**DEFAULT_KOC, **doc}
    settings = KocSettings(
        window_days=_int(errors, f"{prefix}window_days", merged["window_days"], 1, 366),
        min_reactors=_int(errors, f"{prefix}min_reactors", merged["min_reactors"], 1, 100_000),
        min_days=_int(errors, f"{prefix}min_days", merged["min_days"], 1, 366),
        min_z=_number(errors, f"{prefix}min_z", merged["min_z"], 0.0, 100.0),
        damping=_number(errors, f"{prefix}damping", merged["damping"], 0.05, 0.99),
    )
    if errors:
        raise ValidationFailed("The KOC settings are invalid.", errors)
    return settings


def community_ladder(community_id: int) -> Ladder:
    """The community's ladder (the default one when it has none)."""
    from incentives.models import IncentiveConfig

    doc = (
        IncentiveConfig.objects.filter(community_id=community_id)
        .values_list("tiers", flat=True)
        .first()
    )
    return parse_ladder(doc if doc is not None else DEFAULT_TIERS)


def community_koc_settings(community_id: int) -> KocSettings:
    from incentives.models import IncentiveConfig

    doc = (
        IncentiveConfig.objects.filter(community_id=community_id)
        .values_list("koc", flat=True)
        .first()
    )
    return parse_koc(doc or {})


def ladder_document(ladder: Ladder) -> dict[str, Any]:
    """The ladder as the API shows it (every criterion spelled out)."""
    return {
        "points_window_days": ladder.points_window_days,
        "low_water": ladder.low_water,
        "min_stay_days": ladder.min_stay_days,
        "tiers": [
            {
                "code": t.code,
                "name": {"zh": t.name_zh, "en": t.name_en},
                "min_points": t.min_points,
                "min_check_in_days": t.min_check_in_days,
                "min_featured": t.min_featured,
                "requires_koc": t.requires_koc,
            }
            for t in ladder.tiers
        ],
    }
