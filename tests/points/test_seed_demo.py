"""The demo loader: realistic data through the ingestion service, idempotent on re-run."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.db.models import Sum

from points.models import Community, CommunityApiKey, Event, LedgerEntry, Member

pytestmark = pytest.mark.django_db

# A fixed end, so that two runs a few seconds apart simulate exactly the same activity.
UNTIL = "2026-03-15T21:30:00+08:00"
SMALL = ["--members", "20", "--days", "5"]


def seed() -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", *SMALL, "--until", UNTIL, stdout=out, stderr=err)
    assert "conflict" not in err.getvalue()
    return out.getvalue()


def assert_ledger_matches_balances(community: Community) -> None:
    sums = dict(
        LedgerEntry.objects.filter(community=community)
        .values_list("member_id")
        .annotate(total=Sum("points"))
    )
    for member in Member.objects.filter(community=community):
        assert member.balance == sums.get(member.pk, 0), member.external_id
        assert member.lifetime_points == sums.get(member.pk, 0), member.external_id


def test_seed_demo_is_realistic_and_idempotent() -> None:
    first = seed()
    community = Community.objects.get(slug="demo")
    assert community.name == "示例社群"
    assert community.timezone == "Asia/Shanghai"

    members = Member.objects.filter(community=community)
    assert 10 <= members.count() <= 20
    assert members.exclude(display_name="").count() == members.count()
    events = Event.objects.filter(community=community)
    types = set(events.values_list("type", flat=True))
    assert {"join", "check_in", "message"} <= types
    last = events.order_by("-occurred_at").first()
    assert last is not None
    assert last.occurred_at <= dt.datetime.fromisoformat(UNTIL)
    assert events.filter(type="peer_score", score__isnull=True).count() == 0
    entries = LedgerEntry.objects.filter(community=community).count()
    assert entries > 0
    assert_ledger_matches_balances(community)

    key = CommunityApiKey.objects.get(community=community)
    assert set(key.scopes) == {"events:write", "members:read", "rewards:write", "admin"}
    last_line = first.strip().splitlines()[-1]
    assert last_line.startswith(key.prefix + ".")
    assert CommunityApiKey.objects.get_from_key(last_line) == key

    event_count = events.count()
    second = seed()
    assert "replayed" in second
    assert Community.objects.filter(slug="demo").count() == 1
    assert CommunityApiKey.objects.filter(community=community).count() == 1
    assert Event.objects.filter(community=community).count() == event_count
    assert LedgerEntry.objects.filter(community=community).count() == entries
    assert key.prefix not in second
    assert_ledger_matches_balances(community)


def test_seed_demo_rerun_later_extends_without_conflicts() -> None:
    seed()
    community = Community.objects.get(slug="demo")
    before = Event.objects.filter(community=community).count()
    out, err = io.StringIO(), io.StringIO()
    later = "2026-03-17T12:00:00+08:00"
    call_command("seed_demo", *SMALL, "--until", later, stdout=out, stderr=err)
    assert "conflict" not in out.getvalue() + err.getvalue()
    assert Event.objects.filter(community=community).count() > before
    assert_ledger_matches_balances(community)
