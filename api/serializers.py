"""Plain input serializers (validation only) and output serializers (rendering only)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, TypeGuard

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from points.ingest import MEMBER_ID_MAX_LENGTH, member_id_problem
from points.models import EventType, LedgerEntry, Member
from points.rules import TYPE_NAME
from points.services import EventInput

META_MAX_BYTES = 4096
_TIMESTAMP = serializers.DateTimeField()


def timestamp(value: dt.datetime | str) -> str:
    """The one format of every timestamp the API answers: RFC 3339 in UTC with ``Z``, as
    DRF's ``DateTimeField`` renders (fraction of a second only when there is one). Takes an
    aware datetime or its ISO text (as stored in JSON results)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return str(_TIMESTAMP.to_representation(value))


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an explicit UTC offset; a naive time is refused, not guessed."""

    default_error_messages = {
        "naive": "must include a UTC offset, e.g. 2026-11-23T09:00:00+08:00",
    }

    def to_internal_value(self, value: Any) -> dt.datetime:
        parsed = super().to_internal_value(value)
        if isinstance(value, str):
            try:
                naive = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is None
            except ValueError:
                naive = False
            if naive:
                self.fail("naive")
        return parsed


class StrictCharField(serializers.CharField):
    """Text only: a number or a boolean sent for a text field is refused, not coerced (no
    accidental ``"0"`` member ids, and the schema's ``type: string`` holds)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictRegexField(serializers.RegexField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class MemberIdField(StrictCharField):
    """A member id as ``points.ingest.member_id_problem`` allows it: one that can be read back
    through ``…/members/<id>`` and shows nothing invisible on other members' boards."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MEMBER_ID_MAX_LENGTH)
        kwargs.setdefault("trim_whitespace", False)  # an id is a key: refused, not trimmed
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        too_long = self.max_length is not None and len(value) > self.max_length  # validator's
        if not too_long and (problem := member_id_problem(value)) is not None:
            raise serializers.ValidationError(problem, code="invalid_member_id")
        return value


class ContentInputSerializer(serializers.Serializer):
    id = StrictCharField(max_length=128, required=False)
    author = MemberIdField(required=False, help_text="The content's author: a member id.")
    kind = serializers.ChoiceField(choices=["kol", "official", "ugc"], required=False)
    url = StrictCharField(max_length=1000, required=False)
    hash = StrictCharField(max_length=128, required=False)
    length = serializers.IntegerField(min_value=0, required=False)

    FIELDS_ORDER = ("id", "author", "kind", "url", "hash", "length")  # as declared above
    FIELDS = frozenset(FIELDS_ORDER)


class EventInputSerializer(serializers.Serializer):
    """The JSON shape of an event. What depends on its type (a target, a score, a content
    author) and when it may have happened are domain rules, checked by ingestion for every
    caller (``points.ingest.event_shape_errors``), each naming its field."""

    id = StrictRegexField(
        r"^\S{1,128}$", max_length=128, help_text="Your id for this event; the idempotency key."
    )
    type = StrictRegexField(
        TYPE_NAME.pattern,
        max_length=40,
        help_text="A built-in type (" + ", ".join(EventType.values) + ") or a custom one.",
    )
    member = MemberIdField(
        help_text="The member's id in your platform: 1 to 64 visible characters, no spaces, "
        "no '/' or '\\', not '.' or '..'."
    )
    occurred_at = AwareDateTimeField(
        required=False,
        # An instant: answered in UTC without asking Django for the active time zone (a
        # thread-local look-up that was a tenth of a batch item's validation).
        default_timezone=dt.UTC,
        help_text="Defaults to the time received. From the community's creation minus its "
        "backfill limit (365 days by default) to 5 minutes ahead of the server's clock.",
    )
    target = StrictCharField(
        max_length=128,
        required=False,
        help_text="Member or content the event is about (invitee, rated member, content id).",
    )
    content = ContentInputSerializer(required=False)
    score = serializers.IntegerField(min_value=1, max_value=5, required=False)
    group = StrictCharField(max_length=128, required=False)
    meta = serializers.DictField(
        required=False, help_text="Free-form; `display_name` sets the member's name."
    )

    def validate_meta(self, value: dict[str, Any]) -> dict[str, Any]:
        if _too_large(value):
            raise serializers.ValidationError(
                f"is larger than {META_MAX_BYTES} bytes", code="too_large"
            )
        return value  # U+0000, lone surrogates, NaN: refused by api.parsers with their path

    def validated(self, data: Any) -> dict[str, Any]:
        """The validated event: by the shortcut when it takes the event, else by DRF (which
        raises ``ValidationError`` with every field's error)."""
        return self.plain_validation(data) or self.run_validation(data)

    def plain_validation(self, data: Any) -> dict[str, Any] | None:
        """What ``run_validation`` answers for an event in the plain shape bots send (each
        field a JSON value of its own type, within its limits, no whitespace to trim), built
        without DRF's per-field machinery, which was most of a batch's validation time; or
        None for anything else (a missing or null field, a number sent as text, an error),
        which ``run_validation`` then decides and words. A shortcut, never a second rule:
        ``tests/api/test_plain_validation.py`` checks it against ``run_validation`` on
        generated input."""
        if type(data) is not dict or not data.keys() <= PLAIN_EVENT_FIELDS:
            return None
        client_id, kind, member = data.get("id"), data.get("type"), data.get("member")
        if not (
            _plain_text(client_id, 128)
            and _ID.fullmatch(client_id)
            and _plain_text(kind, 40)
            and TYPE_NAME.fullmatch(kind)
            and _plain_member(member)
        ):
            return None
        out: dict[str, Any] = {"id": client_id, "type": kind, "member": member}
        if "occurred_at" in data:
            value = data["occurred_at"]
            if type(value) is not str:
                return None
            # What the field answers (Django's parser tries ``fromisoformat`` first, then the
            # field converts an aware time to its zone, UTC); anything else goes to DRF.
            try:
                parsed = dt.datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    return None
                out["occurred_at"] = parsed.astimezone(dt.UTC)
            except (ValueError, OverflowError):
                return None
        if "target" in data:
            if not _plain_text(data["target"], 128):
                return None
            out["target"] = data["target"]
        if "content" in data:
            content = _plain_content(data["content"])
            if content is None:
                return None
            out["content"] = content
        if "score" in data:
            score = data["score"]
            if type(score) is not int or not 1 <= score <= 5:
                return None
            out["score"] = score
        if "group" in data:
            if not _plain_text(data["group"], 128):
                return None
            out["group"] = data["group"]
        if "meta" in data:
            meta = data["meta"]
            if type(meta) is not dict or _too_large(meta):
                return None
            out["meta"] = dict(meta)
        return out

    def to_event(self) -> EventInput:
        return self.event_from(self.validated_data)

    @staticmethod
    def event_from(data: Any) -> EventInput:
        """An ``EventInput`` from validated data."""
        return EventInput(
            client_id=data["id"],
            type=data["type"],
            member=data["member"],
            occurred_at=data.get("occurred_at"),
            target=data.get("target", ""),
            content=dict(data["content"]) if data.get("content") else None,
            score=data.get("score"),
            group=data.get("group", ""),
            meta=data.get("meta", {}),
        )


# --- the plain shape of an event (EventInputSerializer.plain_validation) ----------------------

# The fields plain_validation handles (a test holds them to EventInputSerializer's): an event
# with any other key goes to run_validation.
PLAIN_EVENT_FIELDS = frozenset(
    {"id", "type", "member", "occurred_at", "target", "content", "score", "group", "meta"}
)
_ID = re.compile(r"\S{1,128}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTENT_TEXT = {"id": 128, "url": 1000, "hash": 128}
_CONTENT_KINDS = frozenset({"kol", "official", "ugc"})


def _clean(value: str) -> bool:
    """What every DRF ``CharField`` refuses in any text: NUL and lone surrogates."""
    return "\x00" not in value and not _SURROGATE.search(value)


def _plain_text(value: Any, max_length: int) -> TypeGuard[str]:
    """A ``StrictCharField`` value that passes as it is: text, not blank, within its length,
    with no whitespace around it to trim."""
    return (
        type(value) is str
        and 0 < len(value) <= max_length
        and value == value.strip()
        and _clean(value)
    )


def _plain_member(value: Any) -> TypeGuard[str]:
    return (
        type(value) is str
        and 0 < len(value) <= MEMBER_ID_MAX_LENGTH
        and _clean(value)
        and member_id_problem(value) is None
    )


def _plain_content(value: Any) -> dict[str, Any] | None:
    """``ContentInputSerializer``'s answer (its fields in their declared order) or None."""
    if type(value) is not dict or not value.keys() <= ContentInputSerializer.FIELDS:
        return None
    out: dict[str, Any] = {}
    for name in ContentInputSerializer.FIELDS_ORDER:
        if name not in value:
            continue
        item = value[name]
        if name in _CONTENT_TEXT:
            ok = _plain_text(item, _CONTENT_TEXT[name])
        elif name == "author":
            ok = _plain_member(item)
        elif name == "kind":
            ok = type(item) is str and item in _CONTENT_KINDS
        else:  # length
            ok = type(item) is int and item >= 0
        if not ok:
            return None
        out[name] = item
    return out


def _too_large(meta: dict[str, Any]) -> bool:
    # A lone surrogate is counted, not raised on: api.parsers refuses it, with its path.
    return len(json.dumps(meta, ensure_ascii=False).encode(errors="surrogatepass")) > META_MAX_BYTES


@extend_schema_field(OpenApiTypes.ANY)
class _BatchItemField(serializers.Field):
    """Any JSON value, unchanged: each item is validated on its own by the view (and the
    parser has already refused what no item may hold)."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class EventBatchInputSerializer(serializers.Serializer):
    """Only the envelope is validated here; each item is validated on its own by the view."""

    events = serializers.ListField(
        child=_BatchItemField(allow_null=True),
        allow_empty=False,
        min_length=1,
        max_length=settings.EVENTS_BATCH_MAX,
        help_text=f"Up to {settings.EVENTS_BATCH_MAX} events, each as for the single endpoint.",
    )


class AwardSerializer(serializers.Serializer):
    rule = serializers.CharField(help_text="The rule that produced the award.")
    points = serializers.IntegerField()
    base = serializers.IntegerField(help_text="Points before caps and gates.")
    gross = serializers.IntegerField(help_text="Points after gates, before caps.")
    capped = serializers.BooleanField()
    member = serializers.CharField(
        help_text="Who is paid: the poster, a reacted-to author, an inviter."
    )
    cap = serializers.CharField(allow_null=True, help_text="The cap or gate that cut it, if any.")


class EventResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["accepted", "replayed"],
        help_text="`accepted` the first time (201); `replayed` when the same id and body come "
        "again (200), the rest of the body byte for byte as the first time.",
    )
    points = serializers.IntegerField()
    balance = serializers.IntegerField()
    rule_version = serializers.IntegerField()
    awards = AwardSerializer(many=True)


class ProblemFieldSerializer(serializers.Serializer):
    field = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()


class BatchItemResultSerializer(serializers.Serializer):
    """An accepted or replayed item is the single endpoint's body; any other carries
    ``error``."""

    id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["accepted", "replayed", "conflict", "invalid"])
    points = serializers.IntegerField(required=False)
    balance = serializers.IntegerField(required=False)
    rule_version = serializers.IntegerField(required=False)
    awards = AwardSerializer(many=True, required=False)
    error = serializers.DictField(required=False, help_text="{code, message, errors[]}")


class BatchResultSerializer(serializers.Serializer):
    results = BatchItemResultSerializer(many=True)


class BoardRowSerializer(serializers.Serializer):
    rank = serializers.IntegerField(help_text="Competition rank: ties share it (1, 2, 2, 4).")
    member = serializers.CharField()
    display_name = serializers.CharField()
    points = serializers.IntegerField()


class MemberRankSerializer(serializers.Serializer):
    period = serializers.CharField()
    start = serializers.DateField()
    rank = serializers.IntegerField(allow_null=True, help_text="Null when not ranked yet.")
    points = serializers.IntegerField(help_text="Live points in the period.")
    ranked_points = serializers.IntegerField(
        allow_null=True, help_text="Points when the rank snapshot was built."
    )
    total = serializers.IntegerField()
    percentile = serializers.FloatField(
        allow_null=True, help_text="Share of ranked members at or below this member."
    )
    above = BoardRowSerializer(many=True)
    below = BoardRowSerializer(many=True)
    as_of = serializers.DateTimeField(allow_null=True)
    age_seconds = serializers.IntegerField(allow_null=True)


class MemberRanksSerializer(serializers.Serializer):
    all_time = MemberRankSerializer(help_text="All-time rank (neighbours: see …/rank).")
    month = MemberRankSerializer(help_text="This month's rank, in the community's time zone.")


class TierCriterionSerializer(serializers.Serializer):
    figure = serializers.CharField(help_text="points, check_in_days, featured or koc")
    value = serializers.IntegerField()
    minimum = serializers.IntegerField()


class MemberTierSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.DictField(child=serializers.CharField(), help_text="{zh, en}")
    since = serializers.DateTimeField(allow_null=True)
    locked = serializers.BooleanField()
    next_tier = serializers.CharField(allow_null=True)
    progress = serializers.FloatField(help_text="0-100: the least advanced criterion of the next.")
    criteria = TierCriterionSerializer(many=True, help_text="The next tier's, with the figures.")


class MemberHonorSerializer(serializers.Serializer):
    month = serializers.CharField()
    category = serializers.CharField()
    rank = serializers.IntegerField()
    value = serializers.IntegerField()


class MemberOutputSerializer(serializers.ModelSerializer):
    """Renders the member row and ``context["standing"]`` (``member_standing``): it queries
    nothing itself."""

    member = serializers.CharField(source="external_id")
    spendable = serializers.IntegerField(read_only=True)
    role = serializers.SerializerMethodField(help_text="owner, staff, kol or member.")
    tier = serializers.SerializerMethodField()
    ranks = serializers.SerializerMethodField()
    streak = serializers.SerializerMethodField(
        help_text="Consecutive local days with a check-in, up to today or yesterday (else 0)."
    )
    koc = serializers.SerializerMethodField(help_text="A KOC confirmed by an admin.")
    honors = serializers.SerializerMethodField(
        help_text="Places in this and last month's published honor rolls."
    )
    achievements = serializers.SerializerMethodField(
        help_text="[{code, period, awarded_at}]: e.g. a month's check-in quota reached."
    )
    expiring = serializers.SerializerMethodField(
        help_text="[{on, points}]: the next local days on which points expire (FIFO)."
    )

    class Meta:
        model = Member
        fields = [
            "member",
            "display_name",
            "status",
            "role",
            "balance",
            "held",
            "spendable",
            "owed",
            "lifetime_points",
            "joined_at",
            "left_at",
            "tier",
            "ranks",
            "streak",
            "koc",
            "honors",
            "achievements",
            "expiring",
        ]

    @property
    def _standing(self) -> Any:
        return self.context["standing"]

    def get_role(self, obj: Member) -> str:
        return str(self._standing.role)

    @extend_schema_field(MemberTierSerializer)
    def get_tier(self, obj: Member) -> dict[str, Any]:
        standing = self._standing.tier
        return {
            "code": standing.tier.code,
            "name": {"zh": standing.tier.name_zh, "en": standing.tier.name_en},
            "since": timestamp(standing.since.isoformat()) if standing.since else None,
            "locked": standing.locked,
            "next_tier": standing.next_tier.code if standing.next_tier else None,
            "progress": standing.progress,
            "criteria": [
                {"figure": c.figure, "value": c.value, "minimum": c.required}
                for c in standing.criteria
            ],
        }

    @extend_schema_field(MemberRanksSerializer)
    def get_ranks(self, obj: Member) -> dict[str, Any]:
        """{all_time, month}: rank, points, total, percentile, snapshot age (see …/rank)."""
        return dict(self.context.get("ranks", {}))

    def get_streak(self, obj: Member) -> int:
        return int(self._standing.streak)

    def get_achievements(self, obj: Member) -> list[dict[str, Any]]:
        return [
            {**a, "awarded_at": timestamp(a["awarded_at"])} for a in self._standing.achievements
        ]

    def get_expiring(self, obj: Member) -> list[dict[str, Any]]:
        return [{"on": e.on.isoformat(), "points": e.points} for e in self._standing.expiring]

    def get_koc(self, obj: Member) -> bool:
        return bool(self._standing.koc)

    @extend_schema_field(MemberHonorSerializer(many=True))
    def get_honors(self, obj: Member) -> list[dict[str, Any]]:
        return [
            {"month": h.month, "category": h.category, "rank": h.rank, "value": h.value}
            for h in self._standing.honors
        ]


class LedgerEntryOutputSerializer(serializers.ModelSerializer):
    event = serializers.CharField(source="event.client_id", allow_null=True, default=None)
    event_type = serializers.CharField(source="event.type", allow_null=True, default=None)

    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "kind",
            "points",
            "balance_after",
            "rule",
            "rule_version",
            "reason",
            "event",
            "event_type",
            "created_at",
        ]


class PeriodQuerySerializer(serializers.Serializer):
    period = serializers.ChoiceField(choices=["all_time", "month", "week"], default="all_time")

    def to_internal_value(self, data: Any) -> Any:
        """A parameter sent empty (``?period=``) is an error, not the default."""
        blank = [str(name) for name in self.fields if hasattr(data, "get") and data.get(name) == ""]
        if blank:
            raise serializers.ValidationError({name: ["may not be blank"] for name in blank})
        return super().to_internal_value(data)

    month = StrictRegexField(
        r"^2\d{3}-(0[1-9]|1[0-2])$", required=False, help_text="A month, YYYY-MM (period=month)."
    )


class LeaderboardQuerySerializer(PeriodQuerySerializer):
    cursor = StrictCharField(required=False, max_length=64, help_text="From `next`.")
    size = serializers.IntegerField(min_value=1, max_value=200, default=50)


class LeaderboardSerializer(serializers.Serializer):
    period = serializers.CharField()
    start = serializers.DateField()
    total = serializers.IntegerField(help_text="Members ranked in the period.")
    as_of = serializers.DateTimeField(allow_null=True)
    next = serializers.CharField(allow_null=True)
    results = BoardRowSerializer(many=True)


class MemberTokenInputSerializer(serializers.Serializer):
    ttl_seconds = serializers.IntegerField(
        min_value=60, max_value=7 * 24 * 3600, default=24 * 3600, help_text="Default 24 h."
    )


class MemberTokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    url = serializers.URLField()
    expires_at = serializers.DateTimeField()


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` only: ``"yes"``, ``1`` or ``"false"`` are refused, not coerced (the
    schema says ``type: boolean``, and a string "false" read as true would be a trap)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data
