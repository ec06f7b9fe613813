"""Red packet campaigns: audiences, stored splits, approvals (one and two admins, at once),
budgets, daily limits across campaigns, and the automatic welcome and content packets."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, connections
from django.utils import timezone

from incentives.models import Honor, HonorRoll, MemberTier
from points.models import AuditLog, Community, JobRun, Member, MemberStatus
from points.services import EventInput, community_create, events_ingest
from rewards.campaigns import (
    AUTO_ACTOR,
    AllocationMismatch,
    CampaignConflict,
    CampaignInvalid,
    audience_members,
    auto_campaigns_scan,
    campaign_approve,
    campaign_cancel,
    campaign_create,
    content_reward_for_featured,
    paid_today_by_member,
    stored_digest,
    welcome_packet_for_join,
)
from rewards.exceptions import BudgetExceeded, InvalidTransition, SecondApproverRequired
from rewards.models import (
    Allocation,
    Campaign,
    CampaignStatus,
    Payout,
    PayoutStatus,
    RewardSettings,
)
from rewards.payouts import member_paid_today
from rewards.splits import allocation_digest, split_lucky
from rewards.tasks import auto_campaigns_scan_all, auto_campaigns_scan_community
from tests.celery_worker import TASK_TIMEOUT, Worker
from webhooks.models import OutboxMessage
from webhooks.services import endpoint_create

pytest_plugins = ["tests.celery_worker"]  # the worker fixtures (one test below)

pytestmark = pytest.mark.django_db
_ids = itertools.count(1)
SH = ZoneInfo("Asia/Shanghai")


def _post(community: Community, *events: dict[str, Any], now: dt.datetime | None = None) -> None:
    inputs = [EventInput(client_id=e.pop("id", f"ev-{next(_ids)}"), **e) for e in map(dict, events)]
    outcomes = events_ingest(community=community, events=inputs, now=now)
    assert all(o.status == "accepted" for o in outcomes), [o.errors for o in outcomes]


def _members(community: Community, *names: str) -> list[Member]:
    _post(community, *({"type": "message", "member": n} for n in names))
    return [Member.objects.get(community=community, external_id=n) for n in names]


def _policy(community: Community, **fields: Any) -> RewardSettings:
    row, _ = RewardSettings.objects.update_or_create(
        community=community,
        defaults={"updated_at": timezone.now(), "updated_by": "test", **fields},
    )
    return row


def _create(community: Community, client_id: str = "c1", **fields: Any) -> Campaign:
    body: dict[str, Any] = {
        "kind": "holiday",
        "title": "新春红包",
        "total_fen": 1000,
        "split": "equal",
        "audience": {"active_days": 7},
        "actor": "key:admin1",
        **fields,
    }
    row, created = campaign_create(community=community, client_id=client_id, **body)
    assert created
    return row


def _shares(campaign: Campaign) -> list[tuple[str, int]]:
    return [
        (a.member.external_id if a.member else "", a.amount_fen)
        for a in Allocation.objects.filter(campaign=campaign)
        .select_related("member")
        .order_by("index")  # packet order; rows come back in any order without it
    ]


def _codes(exc: pytest.ExceptionInfo[Any]) -> set[tuple[str, str]]:
    return {(e.field, e.code) for e in exc.value.errors}


# --- audiences -----------------------------------------------------------------------------------


def test_active_days_counts_local_days_today_included_and_active_members_only(
    community: Community,
) -> None:
    now = timezone.now()
    local_midnight = timezone.localtime(now, SH).replace(hour=0, minute=0, second=0, microsecond=0)
    _post(
        community,
        {"type": "message", "member": "today", "occurred_at": now},
        {
            "type": "message",
            "member": "yesterday",
            "occurred_at": local_midnight - dt.timedelta(hours=1),
        },
        {"type": "message", "member": "old", "occurred_at": now - dt.timedelta(days=10)},
        {"type": "message", "member": "gone", "occurred_at": now},
    )
    Member.objects.filter(external_id="gone").update(status=MemberStatus.LEFT)
    ids = {m.pk: m.external_id for m in Member.objects.all()}
    one = audience_members(community, {"active_days": 1}, now=now)
    two = audience_members(community, {"active_days": 2}, now=now)
    assert [ids[i] for i in one] == ["today"]
    assert sorted(ids[i] for i in two) == ["today", "yesterday"]
    assert two == sorted(two)


def test_min_tier_honor_roll_and_newcomers_filters_combine_with_and(community: Community) -> None:
    now = timezone.now()
    ann, bea, cal, dan = _members(community, "ann", "bea", "cal", "dan")
    for member, level, code in ((ann, 2, "core"), (bea, 1, "active"), (cal, 3, "ambassador")):
        MemberTier.objects.create(
            community=community, member=member, level=level, code=code, since=now, updated_at=now
        )
    roll = HonorRoll.objects.create(
        community=community, month=dt.date(2026, 11, 1), published_at=now, categories={}
    )
    for member in (ann, bea, dan):
        Honor.objects.create(
            community=community, roll=roll, member=member, category="top_points", rank=1, value=9
        )
    Member.objects.filter(pk=ann.pk).update(joined_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))

    def names(audience: dict[str, Any]) -> list[str]:
        found = audience_members(community, audience, now=now)
        return [Member.objects.get(pk=i).external_id for i in found]

    assert names({"min_tier": "core"}) == ["ann", "cal"]
    assert names({"min_tier": "newcomer"}) == ["ann", "bea", "cal", "dan"]
    assert names({"honor_roll": "2026-11"}) == ["ann", "bea", "dan"]
    assert names({"honor_roll": "2026-11", "min_tier": "active"}) == ["ann", "bea"]
    today = timezone.localdate(now, SH)
    assert names({"newcomers_since": today.isoformat(), "min_tier": "core"}) == ["cal"]
    with pytest.raises(CampaignInvalid):
        names({"honor_roll": "2026-13"})


def test_featured_authors_are_members_with_a_counted_feature_since_the_day(
    community: Community,
) -> None:
    now = timezone.now()
    _post(
        community,
        {"type": "content_featured", "member": "ann", "target": "post-1"},
        {"type": "content_featured", "member": "bea", "target": "post-1"},  # not counted: once
        {
            "type": "content_featured",
            "member": "cal",
            "target": "post-2",
            "occurred_at": now - dt.timedelta(days=20),
        },
    )
    since = (now - dt.timedelta(days=3)).date().isoformat()
    found = audience_members(community, {"featured_authors_since": since}, now=now)
    assert [Member.objects.get(pk=i).external_id for i in found] == ["ann"]


def test_audience_errors_name_the_filter(community: Community) -> None:
    now = timezone.now()
    with pytest.raises(CampaignInvalid) as empty:
        audience_members(community, {}, now=now)
    assert _codes(empty) == {("audience", "required")}
    with pytest.raises(CampaignInvalid) as bad:
        audience_members(
            community,
            {
                "everyone": True,
                "active_days": 0,
                "min_tier": "king",
                "newcomers_since": "2026-02-30",
                "featured_authors_since": "yesterday",
            },
            now=now,
        )
    assert {f for f, _ in _codes(bad)} == {
        "audience.everyone",
        "audience.active_days",
        "audience.min_tier",
        "audience.newcomers_since",
        "audience.featured_authors_since",
    }


# --- creating ------------------------------------------------------------------------------------


def test_equal_split_sums_exactly_and_goes_to_members_in_id_order(community: Community) -> None:
    _members(community, "cal")
    _members(community, "ann", "bea")
    by_id = list(Member.objects.order_by("pk").values_list("external_id", flat=True))
    assert by_id == ["cal", "ann", "bea"]
    campaign = _create(community, total_fen=1001, split="equal")
    assert campaign.status == CampaignStatus.DRAFT
    assert campaign.packets == 3
    assert _shares(campaign) == [("cal", 334), ("ann", 334), ("bea", 333)]
    assert len(campaign.seed) == 64
    assert bytes.fromhex(campaign.seed)
    assert campaign.allocation_digest == allocation_digest(
        [334, 334, 333], method="equal", seed_hex="", version=1
    )
    assert AuditLog.objects.filter(action="campaign.create", target="c1").count() == 1


@pytest.mark.parametrize(
    ("split", "method"), [("lucky", "double_mean"), ("lucky_line_cut", "line_cut")]
)
def test_lucky_split_is_the_seeded_split_within_bounds(
    community: Community, split: str, method: Any
) -> None:
    _members(community, *(f"m{i:02d}" for i in range(20)))
    campaign = _create(community, total_fen=8888, split=split, min_fen=100, max_fen=2000)
    amounts = [a for _, a in _shares(campaign)]
    assert sum(amounts) == 8888
    assert all(100 <= a <= 2000 for a in amounts)
    assert amounts == split_lucky(
        8888, 20, seed=bytes.fromhex(campaign.seed), method=method, min_fen=100, max_fen=2000
    )
    assert stored_digest(campaign) == campaign.allocation_digest


def test_infeasible_or_mismatched_campaigns_are_refused_naming_the_field(
    community: Community,
) -> None:
    _members(community, "ann", "bea", "cal")
    cases: list[tuple[dict[str, Any], tuple[str, str]]] = [
        ({"total_fen": 2, "split": "equal"}, ("total_fen", "infeasible")),
        ({"total_fen": 90_000, "split": "lucky"}, ("total_fen", "infeasible")),
        ({"min_fen": 300, "max_fen": 200}, ("max_fen", "infeasible")),
        ({"packets": 5}, ("packets", "audience_mismatch")),
        ({"audience": {"active_days": 7, "min_tier": "ambassador"}}, ("audience", "empty")),
        ({"split": "fair"}, ("split", "invalid_choice")),
    ]
    for fields, expected in cases:
        with pytest.raises(CampaignInvalid) as refused:
            _create(community, f"bad-{expected[0]}", **fields)
        assert expected in _codes(refused), fields
    with pytest.raises(CampaignInvalid) as reserved:
        _create(community, "welcome:ann")
    assert _codes(reserved) == {("id", "reserved")}
    assert not Campaign.objects.exists()
    assert not Allocation.objects.exists()


def test_create_is_idempotent_by_id_and_another_body_conflicts(community: Community) -> None:
    _members(community, "ann", "bea")
    first = _create(community, total_fen=500)
    _members(community, "cal")  # the audience grew: a replay is still the stored campaign
    again, created = campaign_create(
        community=community,
        client_id="c1",
        kind="holiday",
        title="新春红包",
        total_fen=500,
        split="equal",
        audience={"active_days": 7},
        actor="key:other",
    )
    assert (again.pk, created, again.packets) == (first.pk, False, 2)
    with pytest.raises(CampaignConflict):
        campaign_create(
            community=community,
            client_id="c1",
            kind="holiday",
            title="新春红包",
            total_fen=501,
            split="equal",
            audience={"active_days": 7},
            actor="key:admin1",
        )
    assert Campaign.objects.count() == 1


# --- approving -----------------------------------------------------------------------------------


def test_approval_requests_one_payout_per_packet_announced_in_one_publish(
    community: Community,
) -> None:
    endpoint_create(community=community, url="https://bot.example.com/hook")
    _members(community, "ann", "bea", "cal")
    campaign = _create(community, total_fen=900, split="lucky")
    result = campaign_approve(community=community, client_id="c1", actor="key:admin1")
    assert result.completed
    assert result.paid == 3
    assert result.paid_fen == 900
    assert not result.skipped
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.APPROVED
    assert campaign.approved_at is not None
    payouts = Payout.objects.filter(allocation__campaign=campaign).order_by("allocation__index")
    assert [(p.member.external_id, p.amount_fen) for p in payouts] == _shares(campaign)
    assert all(p.status == PayoutStatus.REQUESTED for p in payouts)
    messages = OutboxMessage.objects.filter(topic="payout.requested")
    assert sorted(m.payload["id"] for m in messages) == sorted(p.pk for p in payouts)
    assert {m.payload["campaign"] for m in messages} == {"c1"}
    with pytest.raises(InvalidTransition):
        campaign_approve(community=community, client_id="c1", actor="key:admin2")
    with pytest.raises(InvalidTransition):
        campaign_cancel(community=community, client_id="c1", actor="key:admin1")
    assert Payout.objects.count() == 3


def test_above_the_amount_two_different_admins_must_approve(community: Community) -> None:
    _policy(community, second_approval_above_fen=500)
    _members(community, "ann", "bea")
    _create(community, total_fen=600)
    first = campaign_approve(community=community, client_id="c1", actor="key:admin1")
    assert not first.completed
    assert first.campaign.status == CampaignStatus.DRAFT
    assert first.campaign.approved_by == "key:admin1"
    assert not Payout.objects.exists()
    with pytest.raises(SecondApproverRequired):
        campaign_approve(community=community, client_id="c1", actor="key:admin1")
    second = campaign_approve(community=community, client_id="c1", actor="key:admin2")
    assert second.completed
    assert second.paid == 2
    assert (second.campaign.approved_by, second.campaign.second_approved_by) == (
        "key:admin1",
        "key:admin2",
    )
    assert AuditLog.objects.filter(action="campaign.first_approval").count() == 1
    assert AuditLog.objects.filter(action="campaign.approve", actor="key:admin2").count() == 1


def test_at_the_amount_one_admin_is_enough(community: Community) -> None:
    _policy(community, second_approval_above_fen=600)
    _members(community, "ann", "bea")
    _create(community, total_fen=600)
    assert campaign_approve(community=community, client_id="c1", actor="key:admin1").completed


def test_budget_refuses_an_approval_that_would_exceed_it(community: Community) -> None:
    _policy(community, monthly_budget_fen=1500)
    _members(community, "ann", "bea")
    _create(community, "first", total_fen=1000)
    _create(community, "second", total_fen=501)
    _create(community, "third", total_fen=500)
    campaign_approve(community=community, client_id="first", actor="key:admin1")
    with pytest.raises(BudgetExceeded):
        campaign_approve(community=community, client_id="second", actor="key:admin1")
    assert Campaign.objects.get(client_id="second").status == CampaignStatus.DRAFT
    assert campaign_approve(community=community, client_id="third", actor="key:admin1").completed
    assert Payout.objects.count() == 4


def test_daily_limits_hold_across_campaigns_and_skipped_members_are_reported(
    community: Community,
) -> None:
    _policy(community, member_daily_packets=2, member_daily_fen=1000)
    ann, bea, cal = _members(community, "ann", "bea", "cal")
    _create(community, "one", total_fen=300, audience={"active_days": 7})
    _create(community, "two", total_fen=300, audience={"active_days": 7})
    _create(community, "three", total_fen=1200, audience={"active_days": 7})
    campaign_approve(community=community, client_id="one", actor="key:admin1")
    # cal was paid more today (every payout not cancelled counts, whatever its campaign)
    Payout.objects.filter(member=cal).update(amount_fen=950)
    second = campaign_approve(community=community, client_id="two", actor="key:admin1")
    assert [(s.member, s.reason) for s in second.skipped] == [("cal", "daily_fen")]
    third = campaign_approve(community=community, client_id="three", actor="key:admin1")
    assert {(s.member, s.reason) for s in third.skipped} == {
        ("ann", "daily_packets"),
        ("bea", "daily_packets"),
        ("cal", "daily_fen"),
    }
    assert third.paid == 0
    day = timezone.localdate(timezone.now(), SH)
    totals = paid_today_by_member(community, [ann.pk, bea.pk, cal.pk], day)
    for member in (ann, bea, cal):
        assert totals[member.pk] == member_paid_today(member, day)
        count, fen = totals[member.pk]
        assert count <= 2
        assert fen <= 1000
    assert Allocation.objects.filter(campaign__client_id="three", payout__isnull=True).count() == 3
    audit = AuditLog.objects.get(action="campaign.approve", target="three")
    assert len(audit.data["skipped"]) == 3


def test_a_member_who_left_since_creation_is_skipped(community: Community) -> None:
    _members(community, "ann", "bea")
    _create(community)
    Member.objects.filter(external_id="bea").update(status=MemberStatus.LEFT)
    result = campaign_approve(community=community, client_id="c1", actor="key:admin1")
    assert [(s.member, s.reason) for s in result.skipped] == [("bea", "member_left")]
    assert result.paid == 1


def test_a_changed_allocation_is_not_paid(community: Community) -> None:
    _members(community, "ann", "bea")
    campaign = _create(community, total_fen=1000)
    first = Allocation.objects.get(campaign=campaign, index=1)
    Allocation.objects.filter(pk=first.pk).update(amount_fen=first.amount_fen - 1)
    Allocation.objects.filter(campaign=campaign, index=2).update(amount_fen=first.amount_fen + 1)
    with pytest.raises(AllocationMismatch):
        campaign_approve(community=community, client_id="c1", actor="key:admin1")
    assert not Payout.objects.exists()


def test_a_packet_moved_to_another_member_is_not_paid(community: Community) -> None:
    ann, _bea = _members(community, "ann", "bea")
    campaign = _create(community, total_fen=1000)
    _members(community, "mallory")
    mallory = Member.objects.get(external_id="mallory")
    Allocation.objects.filter(campaign=campaign, member=ann).update(member=mallory)
    with pytest.raises(AllocationMismatch):
        campaign_approve(community=community, client_id="c1", actor="key:admin1")
    assert not Payout.objects.exists()


def test_cancel_a_draft_then_it_cannot_be_approved(community: Community) -> None:
    _members(community, "ann")
    _create(community)
    campaign_cancel(community=community, client_id="c1", actor="key:admin1", reason="typo")
    with pytest.raises(InvalidTransition):
        campaign_approve(community=community, client_id="c1", actor="key:admin1")
    assert AuditLog.objects.get(action="campaign.cancel").data == {"reason": "typo"}


@pytest.mark.django_db(transaction=True)
def test_a_campaign_approved_twice_at_once_allocates_once() -> None:
    community = community_create(slug="race", name="Race")
    _policy(community, second_approval_above_fen=100_000)
    _members(community, *(f"m{i:03d}" for i in range(200)))
    _create(community, "race", total_fen=50_000, split="lucky")
    barrier = threading.Barrier(6)
    outcomes: list[str] = []
    lock = threading.Lock()

    def approve(actor: str) -> None:
        try:
            barrier.wait()
            campaign_approve(community=community, client_id="race", actor=actor)
            outcome = "approved"
        except InvalidTransition:
            outcome = "409"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=approve, args=(f"key:a{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["409"] * 5 + ["approved"]
    assert Payout.objects.filter(allocation__campaign__client_id="race").count() == 200
    assert (
        sum(Payout.objects.filter(community=community).values_list("amount_fen", flat=True))
        == 50_000
    )
    assert AuditLog.objects.filter(action="campaign.approve").count() == 1
    connection.close()


# --- automatic campaigns -------------------------------------------------------------------------


def test_welcome_packet_once_per_member_whatever_the_joins(community: Community) -> None:
    _policy(community, welcome_packet_fen=188)
    now = timezone.now()
    _post(community, {"id": "j1", "type": "join", "member": "ann"}, now=now)
    first = auto_campaigns_scan(community=community, now=now)
    assert first == {"welcome": 1, "content": 0, "held": 0}
    campaign = Campaign.objects.get(client_id="welcome:ann")
    assert (campaign.kind, campaign.status, campaign.total_fen) == ("welcome", "approved", 188)
    assert campaign.approved_by == AUTO_ACTOR
    payout = Payout.objects.get(allocation__campaign=campaign)
    assert (payout.member.external_id, payout.amount_fen) == ("ann", 188)
    _post(community, {"type": "leave", "member": "ann"}, {"type": "join", "member": "ann"}, now=now)
    assert auto_campaigns_scan(community=community, now=now)["welcome"] == 0
    again = welcome_packet_for_join(
        community=community, member=Member.objects.get(external_id="ann"), event_id="j9"
    )
    assert again is not None
    assert not again.created
    assert Campaign.objects.filter(kind="welcome").count() == 1
    assert Payout.objects.count() == 1


def test_welcome_packets_beyond_the_daily_budget_wait_as_drafts(community: Community) -> None:
    _policy(community, welcome_packet_fen=100, welcome_daily_budget_fen=250)
    now = timezone.now()
    _post(community, *({"type": "join", "member": f"n{i}"} for i in range(3)), now=now)
    assert auto_campaigns_scan(community=community, now=now) == {
        "welcome": 3,
        "content": 0,
        "held": 1,
    }
    statuses = dict(Campaign.objects.values_list("client_id", "status"))
    assert statuses == {"welcome:n0": "approved", "welcome:n1": "approved", "welcome:n2": "draft"}
    held = AuditLog.objects.get(action="campaign.auto_held")
    assert held.data["held"] == ["welcome_daily_budget"]
    # an admin may still approve it
    assert campaign_approve(community=community, client_id="welcome:n2", actor="key:a").completed


def test_automatic_packets_above_the_amount_or_budget_wait_for_an_admin(
    community: Community,
) -> None:
    _policy(community, welcome_packet_fen=30_000, second_approval_above_fen=20_000)
    now = timezone.now()
    _post(community, {"id": "j1", "type": "join", "member": "ann"}, now=now)
    outcome = welcome_packet_for_join(
        community=community, member=Member.objects.get(external_id="ann"), event_id="j1", now=now
    )
    assert outcome is not None
    assert outcome.held == ("second_approval", "daily_fen")  # every reason, not the first
    assert not Payout.objects.exists()
    _policy(community, featured_reward_fen=10_000, monthly_budget_fen=5_000)
    _post(community, {"id": "f1", "type": "content_featured", "member": "ann", "target": "p1"})
    held = content_reward_for_featured(
        community=community, member=Member.objects.get(external_id="ann"), event_client_id="f1"
    )
    assert held is not None
    assert held.held == ("monthly_budget",)


def test_content_reward_once_per_counted_feature(community: Community) -> None:
    _policy(community, featured_reward_fen=10_000, member_daily_fen=100_000)
    now = timezone.now()
    _post(
        community,
        {"id": "f1", "type": "content_featured", "member": "ann", "target": "post-1"},
        {"id": "f2", "type": "content_featured", "member": "ann", "target": "post-1"},  # again
        {"id": "f3", "type": "content_featured", "member": "bea", "target": "post-2"},
        now=now,
    )
    assert auto_campaigns_scan(community=community, now=now) == {
        "welcome": 0,
        "content": 2,
        "held": 0,
    }
    assert auto_campaigns_scan(community=community, now=now)["content"] == 0
    assert set(Campaign.objects.values_list("client_id", flat=True)) == {
        "featured:f1",
        "featured:f3",
    }
    again = content_reward_for_featured(
        community=community, member=Member.objects.get(external_id="ann"), event_client_id="f1"
    )
    assert again is not None
    assert not again.created
    assert sorted(Payout.objects.values_list("member__external_id", "amount_fen")) == [
        ("ann", 10_000),
        ("bea", 10_000),
    ]


def test_scan_cursor_moves_only_past_settled_events_and_skips_old_ones(
    community: Community,
) -> None:
    _policy(community, welcome_packet_fen=100)
    now = timezone.now()
    _post(
        community,
        {"type": "join", "member": "backfilled", "occurred_at": now - dt.timedelta(days=3)},
        now=now - dt.timedelta(minutes=10),
    )
    _post(community, {"type": "join", "member": "fresh"}, now=now)
    assert auto_campaigns_scan(community=community, now=now)["welcome"] == 1
    assert Campaign.objects.get().client_id == "welcome:fresh"
    cursor = JobRun.objects.get(community=community, job="rewards.auto_campaigns")
    backfilled = Member.objects.get(external_id="backfilled")
    assert cursor.result["after_id"] == backfilled.events.get().pk  # the fresh join: next time


def test_scan_tasks_fan_out_to_communities_that_give_packets(
    community: Community, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    _policy(community, welcome_packet_fen=100)
    community_create(slug="quiet", name="Quiet")
    _post(community, {"type": "join", "member": "ann"})
    assert auto_campaigns_scan_all.apply().get() == 1  # eager: runs the community's scan too
    assert Campaign.objects.filter(client_id="welcome:ann", status="approved").exists()
    result = auto_campaigns_scan_community.apply(args=(community.pk,)).get()
    assert result == {"welcome": 0, "content": 0, "held": 0}


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_scans_and_pays_a_welcome_packet_once(worker: Worker) -> None:
    community = community_create(slug="worker", name="Worker")
    _policy(community, welcome_packet_fen=168)
    _post(community, {"type": "join", "member": "ann"}, {"type": "join", "member": "bea"})
    for _ in range(3):  # a redelivered or repeated scan pays nothing twice
        worker.send(auto_campaigns_scan_community, community.pk)
    worker.wait_for_log("rewards.tasks.auto_campaigns_scan_community[", count=6)
    deadline = time.monotonic() + TASK_TIMEOUT
    while Payout.objects.filter(community=community).count() < 2:
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.2)
    assert worker.output().count("'welcome': 2") == 1
    assert sorted(
        Payout.objects.filter(community=community).values_list("member__external_id", "amount_fen")
    ) == [("ann", 168), ("bea", 168)]
    assert set(Campaign.objects.values_list("client_id", "status")) == {
        ("welcome:ann", "approved"),
        ("welcome:bea", "approved"),
    }
