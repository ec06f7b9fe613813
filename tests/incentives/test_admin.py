"""The incentives admin: every change goes through a service and leaves an audit row (roles,
the tier ladder, tier locks, KOC decisions); job output is read-only; member names are
escaped wherever the admin renders them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from incentives.config import DEFAULT_TIERS
from incentives.honors import honor_roll_publish, previous_month
from incentives.models import (
    Honor,
    HonorRoll,
    IncentiveConfig,
    KocCandidate,
    KocStatus,
    MemberRole,
    MemberTier,
    TierChange,
)
from incentives.tiers import tier_set_lock
from points.models import AuditLog, Community, Member
from tests.incentives.conftest import Post, member

pytestmark = pytest.mark.django_db

ADMIN = "/admin/incentives"
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def staff(db: None) -> Client:
    user = User.objects.create_superuser("ops", "ops@example.com", "pw-1234567")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def members(community: Community, post: Post) -> dict[str, Member]:
    post(
        *(
            {"type": "check_in", "member": name, "meta": {"display_name": shown}}
            for name, shown in [("ann", "Ann"), ("bob", "Bob"), ("cat", HOSTILE)]
        )
    )
    return {m.external_id: m for m in Member.objects.filter(community=community)}


def _candidate(member: Member, score: float, status: str = KocStatus.CANDIDATE) -> KocCandidate:
    """A row as the KOC job stores it (the job itself is tested in test_koc.py)."""
    return KocCandidate.objects.create(
        community=member.community,
        member=member,
        status=status,
        window_end=timezone.now().date(),
        window_days=30,
        score=score,
        robust_z=4.2,
        trust_rank=0.01,
        h_index=3,
        distinct_reactors=40,
        reciprocal_reactors=0,
        distinct_days=14,
        detected_at=timezone.now(),
        decided_by="user:earlier" if status != KocStatus.CANDIDATE else "",
        decided_at=timezone.now() if status != KocStatus.CANDIDATE else None,
    )


def _last_month_noon(community: Community) -> dt.datetime:
    """Noon on the 2nd of the local month that ended last (its roll can be published)."""
    day = previous_month(community) + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(12), tzinfo=ZoneInfo(community.timezone))


def _action(staff: Client, model: str, action: str, rows: list[Any]) -> str:
    response = staff.post(
        f"{ADMIN}/{model}/",
        {"action": action, "_selected_action": [row.pk for row in rows]},
        follow=True,
    )
    assert response.status_code == 200
    return response.content.decode()


def _audited(action: str) -> list[str]:
    return sorted(
        AuditLog.objects.filter(action=action, actor="user:ops").values_list("target", flat=True)
    )


def test_every_incentives_page_loads_with_times_labelled_with_their_zone(
    staff: Client, community: Community, members: dict[str, Member], post: Post
) -> None:
    ann = members["ann"]
    staff.post(f"{ADMIN}/memberrole/add/", {"member": ann.pk, "role": "staff"})
    staff.post(
        f"{ADMIN}/incentiveconfig/add/",
        {"community": community.pk, "tiers": json.dumps(DEFAULT_TIERS)},
    )
    tier_set_lock(community=community, member=ann, locked=True, actor="user:ops", tier="core")
    _candidate(members["bob"], 9.5)
    post({"type": "check_in", "member": "dan", "occurred_at": _last_month_noon(community)})
    honor_roll_publish(community=community)
    rows: dict[str, Any] = {
        "memberrole": MemberRole.objects.get(),
        "incentiveconfig": IncentiveConfig.objects.get(),
        "membertier": MemberTier.objects.get(),
        "tierchange": TierChange.objects.get(),
        "koccandidate": KocCandidate.objects.get(),
        "honorroll": HonorRoll.objects.get(),
        "honor": Honor.objects.first(),
    }

    for model, row in rows.items():
        listing = staff.get(f"{ADMIN}/{model}/")
        detail = staff.get(f"{ADMIN}/{model}/{row.pk}/change/")
        assert listing.status_code == 200, model
        assert detail.status_code == 200, model
    assert staff.get(f"{ADMIN}/memberrole/add/").status_code == 200
    assert staff.get(f"{ADMIN}/incentiveconfig/add/").status_code == 200
    assert "Since (UTC)" in staff.get(f"{ADMIN}/membertier/").content.decode()
    assert (
        " UTC" in staff.get(f"{ADMIN}/tierchange/{rows['tierchange'].pk}/change/").content.decode()
    )


def test_job_output_is_read_only(
    staff: Client, community: Community, members: dict[str, Member]
) -> None:
    candidate = _candidate(members["bob"], 9.5)
    tier = tier_set_lock(community=community, member=members["ann"], locked=False, actor="x")

    assert staff.get(f"{ADMIN}/koccandidate/add/").status_code == 403
    assert staff.post(f"{ADMIN}/koccandidate/{candidate.pk}/delete/").status_code == 403
    assert staff.get(f"{ADMIN}/tierchange/add/").status_code == 403
    assert staff.get(f"{ADMIN}/honorroll/add/").status_code == 403
    assert staff.post(f"{ADMIN}/membertier/{tier.pk}/delete/").status_code == 403
    edit = staff.post(
        f"{ADMIN}/koccandidate/{candidate.pk}/change/", {"status": "confirmed", "score": 99}
    )
    assert edit.status_code == 403
    candidate.refresh_from_db()
    assert (candidate.status, candidate.score) == ("candidate", 9.5)


def test_roles_are_added_changed_and_removed_through_the_service_and_audited(
    staff: Client, community: Community, members: dict[str, Member]
) -> None:
    ann = members["ann"]

    added = staff.post(f"{ADMIN}/memberrole/add/", {"member": ann.pk, "role": "staff"})
    row = MemberRole.objects.get()
    changed = staff.post(f"{ADMIN}/memberrole/{row.pk}/change/", {"role": "kol"})
    role_after_change = MemberRole.objects.get().role
    plain = staff.post(f"{ADMIN}/memberrole/add/", {"member": ann.pk, "role": "member"})
    deleted = staff.post(f"{ADMIN}/memberrole/{row.pk}/delete/", {"post": "yes"})

    assert (added.status_code, changed.status_code, deleted.status_code) == (302, 302, 302)
    assert role_after_change == "kol"
    assert plain.status_code == 200  # "member" is not offered: removing a role is the delete
    assert not MemberRole.objects.exists()
    moves = [
        (a.data["from"], a.data["to"], a.actor)
        for a in AuditLog.objects.filter(action="role.set").order_by("id")
    ]
    assert moves == [
        ("member", "staff", "user:ops"),
        ("staff", "kol", "user:ops"),
        ("kol", "member", "user:ops"),
    ]


def test_lock_and_unlock_actions_go_through_the_service_and_are_audited(
    staff: Client, community: Community, members: dict[str, Member]
) -> None:
    ann, bob = members["ann"], members["bob"]
    rows = [
        tier_set_lock(community=community, member=m, locked=False, actor="user:setup", tier="core")
        for m in (ann, bob)
    ]

    locked_page = _action(staff, "membertier", "lock_tier", rows)
    locked = sorted(MemberTier.objects.values_list("member__external_id", "locked", "locked_by"))
    again_page = _action(staff, "membertier", "lock_tier", rows[:1])
    unlocked_page = _action(staff, "membertier", "unlock_tier", rows[:1])

    assert locked == [("ann", True, "user:ops"), ("bob", True, "user:ops")]
    assert "Tier locked: ann, bob." in locked_page
    assert "Not changed: ann (already locked)." in again_page
    assert "Tier unlocked: ann." in unlocked_page
    assert sorted(MemberTier.objects.values_list("member__external_id", "locked")) == [
        ("ann", False),
        ("bob", True),
    ]
    assert _audited("tier.lock") == ["ann", "bob"]  # the second lock of ann wrote nothing
    assert _audited("tier.unlock") == ["ann"]
    changes = TierChange.objects.filter(actor="user:ops").order_by("id")
    assert [(c.member.external_id, c.kind, c.to_code) for c in changes] == [
        ("ann", "lock", "core"),
        ("bob", "lock", "core"),
        ("ann", "unlock", "core"),
    ]


def test_confirm_and_dismiss_actions_decide_candidates_and_report_rows_already_decided(
    staff: Client, community: Community, members: dict[str, Member]
) -> None:
    ann = _candidate(members["ann"], 12.0)
    bob = _candidate(members["bob"], 8.0)
    cat = _candidate(members["cat"], 5.0, status=KocStatus.DISMISSED)

    confirmed_page = _action(staff, "koccandidate", "confirm", [ann, cat])
    dismissed_page = _action(staff, "koccandidate", "dismiss", [bob, ann])

    statuses = dict(KocCandidate.objects.values_list("member__external_id", "status"))
    assert statuses == {"ann": "confirmed", "bob": "dismissed", "cat": "dismissed"}
    assert KocCandidate.objects.get(pk=ann.pk).decided_by == "user:ops"
    assert KocCandidate.objects.get(pk=cat.pk).decided_by == "user:earlier"
    assert "Confirmed as KOC: ann." in confirmed_page
    assert "Not changed: cat (already dismissed)." in confirmed_page
    assert "Dismissed: bob." in dismissed_page
    assert "Not changed: ann (already confirmed)." in dismissed_page
    assert _audited("koc.confirmed") == ["ann"]
    assert _audited("koc.dismissed") == ["bob"]


def test_koc_candidates_are_listed_best_first_with_their_figures(
    staff: Client, members: dict[str, Member]
) -> None:
    _candidate(members["bob"], 3.25)
    _candidate(members["ann"], 7.5)

    page = staff.get(f"{ADMIN}/koccandidate/").content.decode()

    assert page.index("7.5") < page.index("3.25")
    for header in ("robust z", "trust rank", "h index", "reciprocal reactors", "distinct days"):
        assert header in page.lower()


def test_the_ladder_form_names_each_bad_field_and_saves_a_valid_ladder_through_the_service(
    staff: Client, community: Community
) -> None:
    bad = json.loads(json.dumps(DEFAULT_TIERS))
    bad["tiers"][1]["min_points"] = "lots"
    bad["tiers"][2]["code"] = "Core!"
    good = json.loads(json.dumps(DEFAULT_TIERS))
    good["tiers"][1]["min_points"] = 150

    refused = staff.post(
        f"{ADMIN}/incentiveconfig/add/", {"community": community.pk, "tiers": json.dumps(bad)}
    )
    not_json = staff.post(
        f"{ADMIN}/incentiveconfig/add/",
        {"community": community.pk, "tiers": '{"low_water": NaN, "tiers": []}'},
    )
    nul = staff.post(
        f"{ADMIN}/incentiveconfig/add/",
        {"community": community.pk, "tiers": json.dumps({"tiers": [{"code": "a\u0000"}]})},
    )
    deep = staff.post(
        f"{ADMIN}/incentiveconfig/add/",
        {"community": community.pk, "tiers": "[" * 100_000 + "]" * 100_000},
    )
    assert not IncentiveConfig.objects.exists()
    saved = staff.post(
        f"{ADMIN}/incentiveconfig/add/", {"community": community.pk, "tiers": json.dumps(good)}
    )
    config = IncentiveConfig.objects.get()
    good["tiers"][1]["min_points"] = 120
    changed = staff.post(
        f"{ADMIN}/incentiveconfig/{config.pk}/change/", {"tiers": json.dumps(good)}
    )

    assert refused.status_code == 200
    page = refused.content.decode()
    assert "tiers[1].min_points: must be an integer" in page
    assert "tiers[2].code: must match" in page
    assert not_json.status_code == 200
    assert "NaN is not JSON" in not_json.content.decode()
    assert nul.status_code == 200
    assert "tiers[0].code: U+0000" in nul.content.decode()
    assert deep.status_code == 200
    assert "nested too deeply" in deep.content.decode()
    assert (saved.status_code, changed.status_code) == (302, 302)
    config.refresh_from_db()
    assert config.tiers["tiers"][1]["min_points"] == 120
    assert config.updated_by == "user:ops"
    assert AuditLog.objects.filter(action="tiers.update", actor="user:ops").count() == 2
    assert staff.post(f"{ADMIN}/incentiveconfig/{config.pk}/delete/").status_code == 403


def test_koc_settings_are_shown_as_the_job_reads_them(staff: Client, community: Community) -> None:
    IncentiveConfig.objects.create(
        community=community,
        tiers=DEFAULT_TIERS,
        koc={"min_reactors": 25},
        updated_at=timezone.now(),
        updated_by="user:setup",
    )
    page = staff.get(f"{ADMIN}/incentiveconfig/{IncentiveConfig.objects.get().pk}/change/")

    text = page.content.decode()
    assert "<td>min_reactors</td><td>25</td><td></td>" in text
    assert "<td>window_days</td><td>30</td><td>default</td>" in text


def test_honor_roll_pages_show_categories_with_member_names_escaped(
    staff: Client, community: Community, post: Post
) -> None:
    month = previous_month(community)
    noon = _last_month_noon(community)
    post(
        {
            "type": "check_in",
            "member": "cat",
            "occurred_at": noon,
            "meta": {"display_name": HOSTILE},
        },
        {"type": "help", "member": "cat", "occurred_at": noon},
        {"type": "check_in", "member": "dan", "occurred_at": noon},
    )
    honor_roll_publish(community=community)
    roll = HonorRoll.objects.get()
    assert member("cat").display_name == HOSTILE

    detail = staff.get(f"{ADMIN}/honorroll/{roll.pk}/change/").content.decode()
    honors = staff.get(f"{ADMIN}/honor/").content.decode()
    rolls = staff.get(f"{ADMIN}/honorroll/").content.decode()

    assert HOSTILE not in detail
    assert HOSTILE not in honors
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in honors
    assert "Top points (积分榜)" in detail
    assert "Most helpful (热心助人)" in detail
    # cat (5 + 5 points) above dan (5): ranks in order, and a table row per member
    assert detail.index("<td>1</td><td>cat</td>") < detail.index("<td>2</td><td>dan</td>")
    assert f"{month:%Y-%m}" in rolls


def test_member_admin_page_shows_the_standing_read_model(staff, community):
    from points.services import EventInput, events_ingest

    events_ingest(community=community, events=[EventInput("st-1", "check_in", "stan")])
    member = Member.objects.get(external_id="stan")
    page = staff.get(f"/admin/points/member/{member.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "member_standing" in html
    assert "newcomer (Newcomer)" in html
    assert "active: " in html
