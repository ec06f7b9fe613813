"""Points expiry: oldest first (FIFO against every debit), idempotent, never below held."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import Sum

from points.expiry import points_expire, points_expiring
from points.ledger import ledger_post, member_lock
from points.models import Community, EntryKind, LedgerEntry, Member
from points.rules import DEFAULT_RULES
from points.services import EventInput, events_ingest, rule_set_publish

T0 = dt.datetime(2026, 1, 10, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai


@pytest.fixture
def expiring(community: Community) -> Community:
    rule_set_publish(
        community=community,
        rules={**DEFAULT_RULES, "expiry_days": 30, "streak": None, "monthly_quota": None},
        effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    return community


def _earn(community: Community, event_id: str, kind: str, at: dt.datetime) -> None:
    event = EventInput(client_id=event_id, type=kind, member="ann", occurred_at=at)
    [outcome] = events_ingest(community=community, events=[event], now=at)
    assert outcome.status == "accepted"


def _spend(points: int, at: dt.datetime) -> None:
    with transaction.atomic():
        member = member_lock(member_id=Member.objects.get(external_id="ann").pk)
        ledger_post(
            member=member,
            points=-points,
            kind=EntryKind.SPEND,
            when=at,
            period_day=None,
            reason="redemption",
        )


def _ann() -> Member:
    return Member.objects.get(external_id="ann")


def test_oldest_points_expire_first_and_a_rerun_expires_nothing_more(expiring: Community) -> None:
    _earn(expiring, "u1", "ugc_post", T0)  # 10 points, day 0
    _earn(expiring, "s1", "share", T0 + dt.timedelta(days=20))  # 5 points, day 20
    _spend(3, T0 + dt.timedelta(days=25))  # consumes 3 of the oldest lot

    result = points_expire(community=expiring, now=T0 + dt.timedelta(days=31))

    assert result == {
        "enabled": True,
        "members": 1,
        "points": 7,
        "cutoff": (T0 + dt.timedelta(days=1)).isoformat(),
    }
    ann = _ann()
    assert ann.balance == 5
    expiry = LedgerEntry.objects.get(member=ann, kind=EntryKind.EXPIRY)
    assert (expiry.points, expiry.balance_after, expiry.actor) == (-7, 5, "job:expiry")
    again = points_expire(community=expiring, now=T0 + dt.timedelta(days=32))
    assert again["points"] == 0
    total = LedgerEntry.objects.filter(member=ann).aggregate(s=Sum("points"))["s"]
    assert total == ann.balance


def test_member_sees_what_expires_when(expiring: Community) -> None:
    _earn(expiring, "u1", "ugc_post", T0)
    _earn(expiring, "s1", "share", T0 + dt.timedelta(days=20))
    _spend(3, T0 + dt.timedelta(days=25))

    upcoming = points_expiring(member=_ann(), now=T0 + dt.timedelta(days=26))

    assert [(e.on, e.points) for e in upcoming] == [
        (dt.date(2026, 2, 9), 7),
        (dt.date(2026, 3, 1), 5),
    ]


def test_held_points_are_not_expired(expiring: Community) -> None:
    _earn(expiring, "u1", "ugc_post", T0)
    Member.objects.filter(external_id="ann").update(held=8)

    result = points_expire(community=expiring, now=T0 + dt.timedelta(days=31))

    assert result["points"] == 2
    assert (_ann().balance, _ann().held) == (8, 8)


def test_expiry_is_off_by_default(community: Community) -> None:
    _earn(community, "u1", "ugc_post", T0)
    assert points_expire(community=community, now=T0 + dt.timedelta(days=400)) == {
        "enabled": False,
        "members": 0,
        "points": 0,
    }
    assert points_expiring(member=_ann(), now=T0) == []


def test_run_job_command_runs_expiry_for_one_community(expiring: Community) -> None:
    _earn(expiring, "u1", "ugc_post", T0)
    out = StringIO()
    call_command("run_job", "expiry", "--community", "acme", stdout=out)
    assert out.getvalue().startswith('acme: {"enabled": true, "members": 1, "points": 10')
    assert _ann().balance == 0
