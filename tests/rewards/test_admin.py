"""The rewards admin, driven through Django's test client as logged-in superusers against
PostgreSQL: catalog saves go through ``reward_save`` (its refusals shown, nothing written),
the policy is edited and audited with spend against budget shown, the approval queue shows the
member's context in a bounded number of queries and its bulk actions call the services per row
(refusals reported, two different admins above the amount, a reason to reject), failed payouts
are retried or cancelled and draft campaigns approved or cancelled."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from incentives.honors import honor_roll_publish, previous_month
from incentives.models import Honor, KocCandidate, KocStatus
from incentives.tiers import tier_set_lock
from points.models import AuditLog, Community, Member, PeriodKind, PeriodTotal
from points.services import EventInput, events_ingest
from points.timeutils import month_start, today
from rewards.campaigns import campaign_create
from rewards.models import (
    Allocation,
    Campaign,
    CampaignStatus,
    Payout,
    PayoutStatus,
    Redemption,
    RedemptionStatus,
    Reward,
    RewardSettings,
)
from rewards.payouts import payout_fail
from tests.rewards.conftest import Catalog, give, member_state, request, settings_set, share

pytestmark = pytest.mark.django_db

ADMIN = "/admin/rewards"
_ids = itertools.count(1)


def _login(username: str) -> Client:
    user = User.objects.create_superuser(username, f"{username}@example.com", "pw-1234567")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice(db: None) -> Client:
    return _login("alice")


@pytest.fixture
def bob(db: None) -> Client:
    return _login("bob")


def _act(
    client: Client, model: str, action: str, rows: list[Any], query: str = "", **extra: str
) -> str:
    """Run a bulk action on ``rows`` from the changelist (``query``: its filters)."""
    response = client.post(
        f"{ADMIN}/{model}/{query}",
        {"action": action, "_selected_action": [row.pk for row in rows], "index": 0, **extra},
        follow=True,
    )
    assert response.status_code == 200
    return response.content.decode()


def _status(row: Any) -> str:
    row.refresh_from_db()
    return str(row.status)


def _funded(community: Community, who: str, points: int = 1_000) -> Member:
    return give(community, who, points)


def _campaign(community: Community, client_id: str, total_fen: int) -> Campaign:
    row, created = campaign_create(
        community=community,
        client_id=client_id,
        kind="holiday",
        title="新春红包",
        total_fen=total_fen,
        split="equal",
        audience={"active_days": 7},
        actor="key:admin",
    )
    assert created
    return row


# --- every page ---------------------------------------------------------------------------------


def test_every_rewards_page_loads_with_times_labelled_with_their_zone(
    alice: Client, community: Community, catalog: Catalog
) -> None:
    settings_set(community, monthly_budget_fen=100_000)
    _funded(community, "ann")
    share(community, "ann", 1)
    request(community, "ann", "tee", variant="M")
    paid, _ = request(community, "ann", "rp-5")
    _act(alice, "redemption", "approve", [paid])
    campaign = _campaign(community, "c1", 300)
    rows: dict[str, Any] = {
        "reward": catalog.tee,
        "rewardsettings": RewardSettings.objects.get(),
        "redemption": Redemption.objects.filter(status=RedemptionStatus.REQUESTED).get(),
        "payout": Payout.objects.get(),
        "campaign": campaign,
        "allocation": Allocation.objects.filter(campaign=campaign).first(),
    }

    for model, row in rows.items():
        listing = alice.get(f"{ADMIN}/{model}/")
        detail = alice.get(f"{ADMIN}/{model}/{row.pk}/change/")
        assert listing.status_code == 200, model
        assert detail.status_code == 200, model
    for model in ("reward", "rewardsettings"):
        assert alice.get(f"{ADMIN}/{model}/add/").status_code == 200, model
    assert alice.get(f"{ADMIN}/redemption/?status=all").status_code == 200
    assert alice.get(f"{ADMIN}/reward/{catalog.badge.pk}/change/").status_code == 200
    assert "Requested (UTC)" in alice.get(f"{ADMIN}/redemption/").content.decode()
    assert " UTC" in alice.get(f"{ADMIN}/payout/{rows['payout'].pk}/change/").content.decode()


def test_money_rows_are_read_only_and_never_deleted(
    alice: Client, community: Community, catalog: Catalog
) -> None:
    _funded(community, "ann")
    share(community, "ann", 1)
    pending, _ = request(community, "ann", "rp-5")
    campaign = _campaign(community, "c1", 300)
    rows: dict[str, Any] = {
        "redemption": pending,
        "campaign": campaign,
        "allocation": Allocation.objects.filter(campaign=campaign).first(),
        "reward": catalog.badge,
    }

    for model, row in rows.items():
        assert alice.get(f"{ADMIN}/{model}/{row.pk}/delete/").status_code == 403, model
        assert "delete_selected" not in alice.get(f"{ADMIN}/{model}/").content.decode(), model
    for model in ("redemption", "payout", "campaign", "allocation"):
        assert alice.get(f"{ADMIN}/{model}/add/").status_code == 403, model
    before = (pending.status, pending.points)
    alice.post(f"{ADMIN}/redemption/{pending.pk}/change/", {"status": "approved", "points": 1})
    pending.refresh_from_db()
    assert (pending.status, pending.points) == before


# --- catalog ------------------------------------------------------------------------------------


def _reward_form(community: Community, **fields: Any) -> dict[str, Any]:
    return {
        "community": community.pk,
        "code": "hoodie",
        "kind": "merch",
        "title": "连帽衫",
        "description": "",
        "image_url": "",
        "cost_points": 300,
        "value_fen": 12_000,
        "min_tier": "",
        "honor_months": 0,
        "limit_per_month": "",
        "available_from_0": "",
        "available_from_1": "",
        "available_until_0": "",
        "available_until_1": "",
        "active": "on",
        **fields,
    }


def _variants(*rows: tuple[str, str, int], initial: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = {
        "variants-TOTAL_FORMS": len(rows),
        "variants-INITIAL_FORMS": initial,
        "variants-MIN_NUM_FORMS": 0,
        "variants-MAX_NUM_FORMS": 1000,
    }
    for i, (code, label, stock) in enumerate(rows):
        data.update({f"variants-{i}-code": code, f"variants-{i}-label": label})
        data[f"variants-{i}-stock"] = stock
    return data


def test_a_reward_added_in_the_admin_is_saved_and_audited_by_reward_save(
    alice: Client, community: Community
) -> None:
    response = alice.post(
        f"{ADMIN}/reward/add/",
        {**_reward_form(community), **_variants(("M", "M 码", 5), ("L", "L 码", 2))},
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    reward = Reward.objects.get(code="hoodie")
    assert sorted(reward.variants.values_list("code", "stock", "reserved")) == [
        ("L", 2, 0),
        ("M", 5, 0),
    ]
    audit = AuditLog.objects.get(action="reward.create", target="hoodie")
    assert audit.actor == "user:alice"
    assert audit.data["stock"] == {"M": 5, "L": 2}


def test_a_reward_the_service_refuses_is_shown_again_with_its_errors_and_nothing_written(
    alice: Client, community: Community
) -> None:
    no_variants = alice.post(
        f"{ADMIN}/reward/add/", {**_reward_form(community, title="没有尺码"), **_variants()}
    )
    bad_tier = alice.post(
        f"{ADMIN}/reward/add/",
        {
            **_reward_form(community, code="vip", kind="virtual", min_tier="nobody"),
            **_variants(),
        },
    )

    assert no_variants.status_code == 200
    page = no_variants.content.decode()
    assert "variants: merch needs at least one variant" in page
    assert "没有尺码" in page  # the operator's input is kept
    assert bad_tier.status_code == 200
    assert "must be one of" in bad_tier.content.decode()
    assert not Reward.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="reward.").exists()


def test_stock_is_edited_through_reward_save_never_below_what_is_reserved(
    alice: Client, community: Community, catalog: Catalog
) -> None:
    _funded(community, "ann")
    request(community, "ann", "tee", variant="L")  # reserves the only L
    m, l_ = catalog.variant("M"), catalog.variant("L")
    base = {
        **_reward_form(community, code="tee", title="社群 T 恤", cost_points=100, value_fen=3000),
        "variants-0-id": m.pk,
        "variants-0-reward": catalog.tee.pk,
        "variants-1-id": l_.pk,
        "variants-1-reward": catalog.tee.pk,
    }
    url = f"{ADMIN}/reward/{catalog.tee.pk}/change/"

    page = alice.get(url).content.decode()
    refused = alice.post(url, {**base, **_variants(("M", "M 码", 10), ("L", "L 码", 0), initial=2)})
    saved = alice.post(url, {**base, **_variants(("M", "M 码", 7), ("L", "L 大码", 3), initial=2)})

    assert "Available (stock − reserved)" in page
    assert refused.status_code == 200
    assert "L: 1 reserved by pending redemptions" in refused.content.decode()
    assert saved.status_code == 302, saved.content.decode()[:3000]
    m.refresh_from_db()
    l_.refresh_from_db()
    assert (m.stock, m.reserved, l_.label, l_.stock, l_.reserved) == (7, 0, "L 大码", 3, 1)
    assert l_.available == 2
    assert AuditLog.objects.filter(action="reward.update", actor="user:alice").count() == 1
    listing = alice.get(f"{ADMIN}/reward/").content.decode()
    assert "9 / 10" in listing  # the tee: 7 + 3 on the shelf, 1 of them reserved


# --- reward settings ----------------------------------------------------------------------------


def _settings_form(community: Community, **fields: Any) -> dict[str, Any]:
    return {
        "community": community.pk,
        "second_approval_above_fen": 20_000,
        "monthly_budget_fen": 2_000,
        "welcome_packet_fen": 0,
        "welcome_daily_budget_fen": 100_000,
        "featured_reward_fen": 0,
        "member_daily_packets": 5,
        "member_daily_fen": 20_000,
        **fields,
    }


def test_the_policy_is_edited_audited_and_shows_spend_against_budget(
    alice: Client, community: Community, catalog: Catalog
) -> None:
    added = alice.post(f"{ADMIN}/rewardsettings/add/", _settings_form(community))
    assert added.status_code == 302, added.content.decode()[:3000]
    row = RewardSettings.objects.get(community=community)
    _funded(community, "ann")
    paid, _ = request(community, "ann", "rp-5")
    _act(alice, "redemption", "approve", [paid])

    page = alice.get(f"{ADMIN}/rewardsettings/{row.pk}/change/").content.decode()
    listing = alice.get(f"{ADMIN}/rewardsettings/").content.decode()
    changed = alice.post(
        f"{ADMIN}/rewardsettings/{row.pk}/change/",
        _settings_form(community, monthly_budget_fen="", welcome_packet_fen=888),
    )
    negative = alice.post(
        f"{ADMIN}/rewardsettings/{row.pk}/change/", _settings_form(community, member_daily_fen=-1)
    )
    too_big = alice.post(
        f"{ADMIN}/rewardsettings/{row.pk}/change/",
        _settings_form(community, welcome_packet_fen=2**31),
    )

    month = f"{timezone.localtime(timezone.now(), ZoneInfo(community.timezone)):%Y-%m}"
    assert f"¥5.00 of ¥20.00 (25 %) committed in {month} (Asia/Shanghai); ¥15.00 left" in page
    assert "¥5.00 of ¥20.00 (25 %)" in listing
    assert changed.status_code == 302
    assert negative.status_code == 200
    assert too_big.status_code == 200  # a form error, not a database error
    row.refresh_from_db()
    assert (row.monthly_budget_fen, row.welcome_packet_fen, row.member_daily_fen) == (
        None,
        888,
        20_000,
    )
    assert row.updated_by == "user:alice"
    audits = list(AuditLog.objects.filter(action="reward_settings.update").order_by("id"))
    assert [a.data["before"] for a in audits] == [None, audits[0].data["after"]]
    assert audits[1].data["after"]["monthly_budget_fen"] is None
    assert "no monthly budget" in alice.get(f"{ADMIN}/rewardsettings/").content.decode()


# --- the approval queue -------------------------------------------------------------------------


def test_bulk_approve_spends_the_held_points_takes_the_stock_and_requests_the_payout(
    alice: Client, community: Community, catalog: Catalog
) -> None:
    _funded(community, "ann", 500)
    rows = [
        request(community, "ann", "rp-5")[0],
        request(community, "ann", "tee", variant="M")[0],
        request(community, "ann", "badge")[0],
    ]
    assert member_state(community, "ann")[:2] == (500, 170)

    page = _act(alice, "redemption", "approve", rows)

    assert "Approved: " in page
    assert [_status(r) for r in rows] == ["approved"] * 3
    balance, held, ledger = member_state(community, "ann")
    assert (balance, held, ledger) == (330, 0, 330)
    assert (catalog.variant("M").stock, catalog.variant("M").reserved) == (9, 0)
    payout = Payout.objects.get()
    assert (payout.redemption_id, payout.amount_fen, payout.status) == (
        rows[0].pk,
        500,
        "requested",
    )
    assert {r.decided_by for r in Redemption.objects.all()} == {"user:alice"}


def test_a_refused_row_is_reported_and_the_others_go_ahead(
    alice: Client, community: Community, catalog: Catalog
) -> None:
    settings_set(community, monthly_budget_fen=700)
    _funded(community, "ann")
    _funded(community, "bob")
    gone, _ = request(community, "ann", "badge")
    _act(alice, "redemption", "reject", [gone], reason="duplicate")
    first, _ = request(community, "ann", "rp-5")
    over, _ = request(community, "bob", "rp-5")  # 500 + 500 > 700
    fine, _ = request(community, "bob", "badge")

    # the default queue no longer lists the rejected row; ticking it still reports it
    page = _act(alice, "redemption", "approve", [gone, first, over, fine])

    assert [_status(r) for r in (gone, first, over, fine)] == [
        "rejected",
        "approved",
        "requested",
        "approved",
    ]
    assert f"Approved: {first.client_id}, {fine.client_id}." in page
    assert f"{gone.client_id} (Redemption &#x27;{gone.client_id}&#x27; is rejected" in page
    assert f"{over.client_id} (500 of 700 fen are committed this month" in page
    assert member_state(community, "bob")[1] == 50  # still held for the refused one


def test_above_the_amount_two_different_admins_must_approve(
    alice: Client, bob: Client, community: Community, catalog: Catalog
) -> None:
    settings_set(community, second_approval_above_fen=100)
    _funded(community, "ann")
    big, _ = request(community, "ann", "rp-5")  # 500 fen
    small, _ = request(community, "ann", "badge")  # no cash: one admin is enough

    first = _act(alice, "redemption", "approve", [big, small])
    queue = alice.get(f"{ADMIN}/redemption/?second_approval=awaiting").content.decode()
    again = _act(alice, "redemption", "approve", [big])
    assert _status(big) == "requested"
    second = _act(bob, "redemption", "approve", [big])

    assert "First approval recorded; a second, different admin must approve: " in first
    assert f"Approved: {small.client_id}." in first
    assert "awaiting second approval (first: user:alice)" in queue
    assert small.client_id not in queue
    assert "a different admin must give the second" in again
    assert f"Approved: {big.client_id}." in second
    big.refresh_from_db()
    assert (big.status, big.approved_by, big.second_approved_by) == (
        "approved",
        "user:alice",
        "user:bob",
    )
    assert member_state(community, "ann")[:2] == (1_000 - 70, 0)
    assert Payout.objects.filter(redemption=big).count() == 1


def test_rejecting_needs_a_reason_and_records_it(
    alice: Client, community: Community, catalog: Catalog
) -> None:
    _funded(community, "ann")
    row, _ = request(community, "ann", "tee", variant="L")

    without = _act(alice, "redemption", "reject", [row], reason="  ")
    too_long = _act(alice, "redemption", "reject", [row], reason="x" * 501)
    assert _status(row) == "requested"
    assert member_state(community, "ann")[1] == 100
    done = _act(alice, "redemption", "reject", [row], reason="尺码已停产")

    assert "Rejecting needs a reason" in without
    assert "at most 500" in too_long
    assert f"Rejected: {row.client_id}." in done
    row.refresh_from_db()
    assert (row.status, row.reason, row.decided_by) == ("rejected", "尺码已停产", "user:alice")
    assert member_state(community, "ann")[1] == 0
    assert catalog.variant("L").reserved == 0
    audit = AuditLog.objects.get(action="redemption.reject", target=row.client_id)
    assert (audit.actor, audit.data["reason"]) == ("user:alice", "尺码已停产")


def _last_month_noon(community: Community) -> dt.datetime:
    day = previous_month(community) + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(12), tzinfo=ZoneInfo(community.timezone))


def _pending(community: Community, count: int) -> list[Member]:
    members = []
    for _ in range(count):
        who = f"m{next(_ids)}"
        members.append(_funded(community, who, 100))
        request(community, who, "badge")
    return members


def test_the_queue_shows_the_members_context_in_a_bounded_number_of_queries(
    alice: Client, community: Community, catalog: Catalog
) -> None:
    ann = _funded(community, "ann")
    share(community, "ann", 3)
    outcomes = events_ingest(
        community=community,
        events=[
            EventInput(
                client_id="last-month",
                type="check_in",
                member="ann",
                occurred_at=_last_month_noon(community),
            )
        ],
    )
    assert outcomes[0].status == "accepted"
    honor_roll_publish(community=community)
    tier_set_lock(community=community, member=ann, locked=True, actor="user:alice", tier="core")
    KocCandidate.objects.create(  # as the KOC job stores a confirmed candidate
        community=community,
        member=ann,
        status=KocStatus.CONFIRMED,
        window_end=timezone.now().date(),
        window_days=30,
        score=9.0,
        robust_z=4.0,
        trust_rank=0.01,
        h_index=3,
        distinct_reactors=40,
        reciprocal_reactors=0,
        distinct_days=14,
        detected_at=timezone.now(),
        decided_by="user:alice",
        decided_at=timezone.now(),
    )
    granted, _ = request(community, "ann", "badge")
    _act(alice, "redemption", "approve", [granted])
    pending, _ = request(community, "ann", "rp-5")
    _pending(community, 2)

    def load() -> tuple[int, str]:
        with CaptureQueriesContext(connection) as queries:
            response = alice.get(f"{ADMIN}/redemption/")
        assert response.status_code == 200
        return len(queries), response.content.decode()

    few, page = load()
    _pending(community, 27)
    many, crowded = load()

    assert many == few, "queries grow with the rows shown"
    assert many <= 15
    assert crowded.count('class="field-client_id"') == 30
    this_month = PeriodTotal.objects.get(
        member=ann, kind=PeriodKind.MONTH, start=month_start(today(community.timezone))
    )
    honor = Honor.objects.filter(member=ann).first()
    assert honor is not None
    row = next(line for line in page.split("<tr") if pending.client_id in line)
    assert '<td class="field-tier">core</td>' in row
    assert 'alt="True"' in row  # KOC
    assert f'<td class="field-points_this_month">{this_month.points}</td>' in row
    assert '<td class="field-granted_before">1</td>' in row
    assert f"{honor.category} #{honor.rank}" in row
    assert "UTC" in row  # the last event, labelled with its zone
    assert '<td class="field-tier">newcomer</td>' in page  # a member with no tier row yet
    detail = alice.get(f"{ADMIN}/redemption/{pending.pk}/change/").content.decode()
    assert "1 approved, 1 requested" in detail
    assert f"{honor.category} #{honor.rank}" in detail


# --- payouts ------------------------------------------------------------------------------------


def test_a_failed_payout_is_retried_or_cancelled_with_a_reason_through_the_services(
    alice: Client, community: Community, catalog: Catalog
) -> None:
    _funded(community, "ann")
    row, _ = request(community, "ann", "rp-5")
    _act(alice, "redemption", "approve", [row])
    payout = Payout.objects.get()

    not_failed = _act(alice, "payout", "retry", [payout])
    payout_fail(community=community, payout_id=payout.pk, reason="wallet closed", actor="key:bot")
    retried = _act(alice, "payout", "retry", [payout])
    payout.refresh_from_db()
    assert (payout.status, payout.attempts) == (PayoutStatus.REQUESTED, 2)
    payout_fail(community=community, payout_id=payout.pk, reason="again", actor="key:bot")
    listing = alice.get(f"{ADMIN}/payout/?status__exact=failed").content.decode()
    no_reason = _act(alice, "payout", "cancel", [payout])
    assert _status(payout) == "failed"
    cancelled = _act(alice, "payout", "cancel", [payout], reason="member unreachable")

    assert "only a failed payout is retried" in not_failed
    assert f"Asked the bot again: payout {payout.pk}." in retried
    assert f"redemption {row.client_id}" in listing
    assert "Cancelling a payout needs a reason" in no_reason
    assert f"Cancelled: payout {payout.pk}." in cancelled
    payout.refresh_from_db()
    assert (payout.status, payout.failure) == ("cancelled", "member unreachable")
    assert _status(row) == "cancelled"
    assert member_state(community, "ann")[:2] == (1_000, 0)  # the points came back
    assert AuditLog.objects.filter(action="payout.cancel", actor="user:alice").count() == 1


# --- campaigns ----------------------------------------------------------------------------------


def test_campaigns_are_approved_by_two_admins_above_the_amount_or_cancelled(
    alice: Client, bob: Client, community: Community
) -> None:
    settings_set(community, second_approval_above_fen=1_000)
    for who in ("ann", "ben", "cy"):
        share(community, who, 1)
    big = _campaign(community, "big", 3_000)
    small = _campaign(community, "small", 300)
    dropped = _campaign(community, "dropped", 600)

    first = _act(alice, "campaign", "approve", [big, small])
    again = _act(alice, "campaign", "approve", [big])
    second = _act(bob, "campaign", "approve", [big])
    cancelled = _act(alice, "campaign", "cancel", [dropped, small], reason="typo")
    detail = alice.get(f"{ADMIN}/campaign/{big.pk}/change/").content.decode()
    listing = alice.get(f"{ADMIN}/campaign/").content.decode()

    assert "First approval recorded; a second, different admin must approve: big." in first
    assert "Approved: 3 packets (¥3.00) paid: small." in first
    assert "a different admin must give the second" in again
    assert "Approved: 3 packets (¥30.00) paid: big." in second
    assert "Cancelled: dropped." in cancelled
    assert "small (Campaign &#x27;small&#x27; is approved; only a draft is cancelled.)" in cancelled
    assert [_status(c) for c in (big, small, dropped)] == [
        CampaignStatus.APPROVED,
        CampaignStatus.APPROVED,
        CampaignStatus.CANCELLED,
    ]
    big.refresh_from_db()
    assert (big.approved_by, big.second_approved_by) == ("user:alice", "user:bob")
    assert Payout.objects.filter(allocation__campaign=big).count() == 3
    assert "3 of 3 packets shown" in detail
    assert "3 packets, ¥30.00" in listing


def test_a_large_campaign_shows_its_first_packets_and_links_to_them_all(
    alice: Client, community: Community
) -> None:
    events_ingest(
        community=community,
        events=[
            EventInput(client_id=f"e{i}", type="message", member=f"p{i:03d}") for i in range(120)
        ],
    )
    campaign = _campaign(community, "wide", 12_000)

    detail = alice.get(f"{ADMIN}/campaign/{campaign.pk}/change/").content.decode()
    every = alice.get(f"{ADMIN}/allocation/?campaign__id__exact={campaign.pk}")

    assert "100 of 120 packets shown" in detail
    assert detail.count("<td>¥1.00</td>") == 100
    assert every.status_code == 200
