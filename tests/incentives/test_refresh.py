"""The monthly member refresh (换血) on hand-built communities: who is flagged (under both
thresholds and in the bottom share), who is protected, at_risk then to_refresh, recovery,
the fence, and the audited, announced decisions."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from config.celery import app
from incentives.config import DEFAULT_TIERS
from incentives.models import (
    IncentiveConfig,
    KocCandidate,
    KocStatus,
    RefreshCandidate,
    RefreshStatus,
)
from incentives.refresh import (
    RefreshCandidateNotFound,
    RefreshNotDecidable,
    community_refresh_settings,
    parse_refresh,
    refresh_decide,
    refresh_run,
)
from incentives.roles import member_role_set
from incentives.tasks import refresh_run_all, refresh_run_community
from points.exceptions import ValidationFailed
from points.models import AuditLog, Community, JobRun
from points.timeutils import community_zone, today
from tests.incentives.conftest import Post, member
from webhooks.models import OutboxMessage
from webhooks.services import _subscribed_cache, endpoint_create

pytestmark = pytest.mark.django_db

REGULARS = [f"reg{i}" for i in range(10)]


@pytest.fixture(autouse=True)
def subscribed(community: Community) -> None:
    """An endpoint, so that the outbox writes messages (it writes none without one)."""
    endpoint_create(community=community, url="http://127.0.0.1:9/hooks")
    _subscribed_cache.pop(community.pk, None)


def _ago(now: dt.datetime, days: int, hours: int = 1) -> dt.datetime:
    return now - dt.timedelta(days=days, hours=hours)


def _days(post: Post, who: str, kind: str, days: range, now: dt.datetime) -> None:
    post(*({"type": kind, "member": who, "occurred_at": _ago(now, d)} for d in days))


def _joined(post: Post, now: dt.datetime, *who: str, days_ago: int = 60) -> None:
    """Members who joined long ago (one share, outside every window)."""
    post(*({"type": "share", "member": w, "occurred_at": _ago(now, days_ago)} for w in who))


def _community(post: Post, now: dt.datetime) -> None:
    """Ten regulars (10 check-in days and 10 speaking days each), 'quiet' who checks in on 10
    days but never speaks, 'chatty' who speaks on 10 days but never checks in, 'silent' who
    does neither. Judged: 13 members; 'silent' ranks 0, 'quiet' and 'chatty' 1/12 (< 0.2):
    all three are in the bottom share, so only the thresholds tell them apart."""
    _joined(post, now, *REGULARS, "quiet", "chatty", "silent")
    for who in REGULARS:
        _days(post, who, "check_in", range(1, 11), now)
        _days(post, who, "message", range(1, 11), now)
    _days(post, "quiet", "check_in", range(1, 11), now)
    _days(post, "chatty", "message", range(1, 11), now)


def _settings(community: Community, **values: Any) -> None:
    IncentiveConfig.objects.update_or_create(
        community=community,
        defaults={
            "tiers": DEFAULT_TIERS,
            "refresh": values,
            "updated_at": timezone.now(),
            "updated_by": "test",
        },
    )


def _flagged(community: Community, period: str) -> dict[str, str]:
    return {
        r.member.external_id: r.status
        for r in RefreshCandidate.objects.filter(community=community, period=period).select_related(
            "member"
        )
    }


def _period(community: Community, now: dt.datetime) -> str:
    return f"{today(community.timezone, now):%Y-%m}"


def _runs(community: Community) -> tuple[dt.datetime, dt.datetime]:
    """01:00 local on the 1st of last month and of this month: two monthly runs, computed here
    (not by the code under test), both in the past."""
    zone = community_zone(community.timezone)
    this = today(community.timezone).replace(day=1)
    last = (this - dt.timedelta(days=1)).replace(day=1)
    return (
        dt.datetime.combine(last, dt.time(1), tzinfo=zone),
        dt.datetime.combine(this, dt.time(1), tzinfo=zone),
    )


def test_only_members_under_both_thresholds_and_in_the_bottom_share_are_flagged(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _community(post, now)

    result = refresh_run(community=community, now=now)

    period = _period(community, now)
    assert _flagged(community, period) == {"silent": RefreshStatus.AT_RISK}
    assert (result["judged"], result["at_risk"], result["to_refresh"]) == (13, 1, 0)
    row = RefreshCandidate.objects.get(member=member("silent"))
    assert (row.speaking_days, row.check_in_days, row.window_days) == (0, 0, 30)
    assert row.recovery_until == now + dt.timedelta(days=7)
    assert row.flagged_at == now
    figures = row.figures
    assert figures["min_speaking_days"] == 2
    assert figures["min_check_in_days"] == 4
    assert figures["percent_rank"] == 0
    assert figures["bottom_share"] == 0.2
    assert figures["judged"] == 13
    assert figures["previous"] is None
    assert figures["window_to"] == result["window_to"]


@pytest.mark.parametrize(
    ("setting", "kept"),
    [("min_check_in_days", "quiet"), ("min_speaking_days", "chatty")],
)
def test_quiet_and_chatty_are_flagged_once_under_the_threshold_that_kept_them_too(
    community: Community, post: Post, now: dt.datetime, setting: str, kept: str
) -> None:
    """'quiet' (10 check-in days) and 'chatty' (10 speaking days) are in the bottom share:
    with 11 days required of the figure that kept them, they are flagged."""
    _community(post, now)
    _settings(community, **{setting: 11})
    refresh_run(community=community, now=now)
    assert _flagged(community, _period(community, now)) == {
        "silent": RefreshStatus.AT_RISK,
        kept: RefreshStatus.AT_RISK,
    }


def test_speaking_days_count_days_not_messages(
    community: Community, post: Post, now: dt.datetime
) -> None:
    """Thirty messages on one day are one speaking day: still under 2."""
    _community(post, now)
    _joined(post, now, "spammer")
    post(
        *({"type": "message", "member": "spammer", "occurred_at": _ago(now, 3)} for _ in range(30))
    )
    refresh_run(community=community, now=now)
    row = RefreshCandidate.objects.get(member=member("spammer"))
    assert (row.speaking_days, row.status) == (1, RefreshStatus.AT_RISK)


def test_under_both_thresholds_but_above_the_bottom_share_is_kept(
    community: Community, post: Post, now: dt.datetime
) -> None:
    """Five silent members rank 0; 'some' (1 speaking day, 3 check-in days) ranks 1.0."""
    silent = [f"s{i}" for i in range(5)]
    _joined(post, now, *silent, "some")
    _days(post, "some", "message", range(1, 2), now)
    _days(post, "some", "check_in", range(1, 4), now)
    refresh_run(community=community, now=now)
    assert _flagged(community, _period(community, now)) == dict.fromkeys(
        silent, RefreshStatus.AT_RISK
    )


def test_newcomers_staff_owners_kols_and_confirmed_kocs_are_protected(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _community(post, now)
    _joined(post, now, "new", days_ago=13)
    _joined(post, now, "old_enough", days_ago=15)
    _joined(post, now, "staff", "owner", "kol", "koc", "left")
    for who in ("staff", "owner", "kol"):
        member_role_set(community=community, member=member(who), role=who, actor="user:op")
    KocCandidate.objects.create(
        community=community,
        member=member("koc"),
        status=KocStatus.CONFIRMED,
        window_end=now.date(),
        window_days=30,
        score=9.0,
        robust_z=5.0,
        trust_rank=2.0,
        h_index=3,
        distinct_reactors=40,
        reciprocal_reactors=0,
        distinct_days=10,
        detected_at=now,
        decided_by="user:op",
    )
    post({"type": "leave", "member": "left", "occurred_at": _ago(now, 40)})

    result = refresh_run(community=community, now=now)

    assert _flagged(community, _period(community, now)) == {
        "silent": RefreshStatus.AT_RISK,
        "old_enough": RefreshStatus.AT_RISK,
    }
    assert result["protected"] == {"newcomer": 1, "staff": 1, "owner": 1, "kol": 1, "koc": 1}


def test_two_months_running_at_risk_then_to_refresh_and_a_recovered_member_is_not_flagged(
    community: Community, post: Post
) -> None:
    first, now = _runs(community)
    # five regulars active every other day over both windows; 'sam' and 'rita' silent
    _joined(post, now, *REGULARS[:5], "sam", "rita", "rhea", days_ago=80)
    for who in REGULARS[:5]:
        _days(post, who, "check_in", range(0, 70, 2), now)
        _days(post, who, "message", range(0, 70, 2), now)
    refresh_run(community=community, now=first)
    november = _period(community, first)
    assert _flagged(community, november) == dict.fromkeys(
        ("sam", "rita", "rhea"), RefreshStatus.AT_RISK
    )
    # warned: rita speaks on the two days after the warning (before the next run's 30-day
    # window starts: the window reaches back to her warning); rhea checks in on 4 days
    post(
        {"type": "message", "member": "rita", "occurred_at": first + dt.timedelta(hours=1)},
        {"type": "message", "member": "rita", "occurred_at": first + dt.timedelta(days=1)},
    )
    _days(post, "rhea", "check_in", range(3, 7), now)

    result = refresh_run(community=community, now=now)

    december = _period(community, now)
    assert december != november
    assert _flagged(community, december) == {"sam": RefreshStatus.TO_REFRESH}
    assert (result["at_risk"], result["to_refresh"]) == (0, 1)
    sam = RefreshCandidate.objects.get(member=member("sam"), period=december)
    assert sam.recovery_until is None
    assert sam.figures["previous"] == RefreshStatus.AT_RISK
    # from the day of his warning when that is before the 30 days ending on the run's day
    assert sam.window_days == max(30, (now - first).days + 1)
    warnings = OutboxMessage.objects.filter(community=community, topic="refresh.at_risk")
    warned = {w["member"]: (m.payload, w) for m in warnings for w in m.payload["members"]}
    assert sorted(warned) == ["rhea", "rita", "sam"]
    sam_message, sam_warning = warned["sam"]
    assert sam_message["period"] == november
    assert sam_message["recovery_until"] == (first + dt.timedelta(days=7)).isoformat()
    assert (sam_warning["speaking_days"], sam_message["min_speaking_days"]) == (0, 2)
    assert (sam_warning["check_in_days"], sam_message["min_check_in_days"]) == (0, 4)


def test_a_spared_member_flagged_again_starts_over_at_risk(
    community: Community, post: Post
) -> None:
    first, now = _runs(community)
    _joined(post, now, *REGULARS[:5], "sam", days_ago=80)
    for who in REGULARS[:5]:
        _days(post, who, "check_in", range(0, 70, 2), now)
    refresh_run(community=community, now=first)
    refresh_decide(
        community=community,
        member=member("sam"),
        period=_period(community, first),
        decision="spare",
        actor="user:op",
    )
    refresh_run(community=community, now=now)
    assert _flagged(community, _period(community, now)) == {"sam": RefreshStatus.AT_RISK}


def test_a_rerun_of_the_period_returns_the_recorded_result_and_changes_nothing(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _community(post, now)
    first = refresh_run(community=community, now=now)
    RefreshCandidate.objects.all().delete()
    second = refresh_run(community=community, now=now + dt.timedelta(minutes=5))
    assert second == {**first, "already_ran": True}
    assert not RefreshCandidate.objects.exists()
    assert OutboxMessage.objects.filter(topic="refresh.at_risk").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_record_one_result(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _community(post, now)
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(refresh_run(community=community, now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.get("already_ran", False) for r in results) == [False, True]
    assert RefreshCandidate.objects.count() == 1
    assert OutboxMessage.objects.filter(topic="refresh.at_risk").count() == 1
    assert JobRun.objects.filter(job="refresh").count() == 1


def _two_months(post: Post, community: Community) -> str:
    first, now = _runs(community)
    _joined(post, now, *REGULARS[:5], "sam", "sue", days_ago=80)
    for who in REGULARS[:5]:
        _days(post, who, "check_in", range(0, 70, 2), now)
    refresh_run(community=community, now=first)
    refresh_run(community=community, now=now)
    return _period(community, now)


def test_confirm_is_audited_and_announced_so_that_a_bot_removes_the_member(
    community: Community, post: Post
) -> None:
    period = _two_months(post, community)
    row = refresh_decide(
        community=community,
        member=member("sam"),
        period=period,
        decision="confirm",
        actor="user:op",
        note="silent for two months",
    )
    assert (row.status, row.decided_by, row.note) == (
        RefreshStatus.CONFIRMED,
        "user:op",
        "silent for two months",
    )
    audit = AuditLog.objects.get(action="refresh.confirm", target="sam")
    assert audit.actor == "user:op"
    assert audit.data["period"] == period
    assert audit.data["from"] == RefreshStatus.TO_REFRESH
    message = OutboxMessage.objects.get(topic="refresh.confirmed")
    assert message.payload == {
        "member": "sam",
        "period": period,
        "confirmed_by": "user:op",
        "speaking_days": 0,
        "check_in_days": 0,
        "note": "silent for two months",
    }
    with pytest.raises(RefreshNotDecidable, match="confirmed by user:op"):
        refresh_decide(
            community=community,
            member=member("sam"),
            period=period,
            decision="spare",
            actor="user:other",
        )
    assert AuditLog.objects.filter(action__startswith="refresh.").count() == 1


def test_spare_is_audited_and_not_announced(community: Community, post: Post) -> None:
    period = _two_months(post, community)
    row = refresh_decide(
        community=community, member=member("sue"), period=period, decision="spare", actor="user:op"
    )
    assert row.status == RefreshStatus.SPARED
    assert AuditLog.objects.get(action="refresh.spare").target == "sue"
    assert not OutboxMessage.objects.filter(topic="refresh.confirmed").exists()


def test_an_at_risk_member_can_be_spared_but_not_confirmed(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _community(post, now)
    refresh_run(community=community, now=now)
    period = _period(community, now)
    with pytest.raises(RefreshNotDecidable, match="needs to_refresh"):
        refresh_decide(
            community=community,
            member=member("silent"),
            period=period,
            decision="confirm",
            actor="user:op",
        )
    assert not AuditLog.objects.filter(action__startswith="refresh.").exists()
    refresh_decide(
        community=community, member=member("silent"), period=period, decision="spare", actor="op"
    )
    assert RefreshCandidate.objects.get(member=member("silent")).status == RefreshStatus.SPARED


def test_deciding_a_member_not_flagged_that_month_is_not_found(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _community(post, now)
    refresh_run(community=community, now=now)
    with pytest.raises(RefreshCandidateNotFound):
        refresh_decide(
            community=community,
            member=member("quiet"),
            period=_period(community, now),
            decision="spare",
            actor="user:op",
        )
    with pytest.raises(ValidationFailed) as bad:
        refresh_decide(
            community=community,
            member=member("silent"),
            period="2026-13",
            decision="remove",
            actor="user:op",
            note="x" * 501,
        )
    assert {e.field for e in bad.value.errors} == {"decision", "note"}


@pytest.mark.django_db(transaction=True)
def test_two_operators_deciding_at_once_decide_once(community: Community, post: Post) -> None:
    period = _two_months(post, community)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(decision: str) -> None:
        try:
            barrier.wait()
            refresh_decide(
                community=community,
                member=member("sam"),
                period=period,
                decision=decision,
                actor=f"user:{decision}",
            )
            outcomes.append("decided")
        except RefreshNotDecidable:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(d,)) for d in ("confirm", "spare")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["decided", "refused"]
    assert AuditLog.objects.filter(action__startswith="refresh.", target="sam").count() == 1
    row = RefreshCandidate.objects.get(member=member("sam"), period=period)
    confirmed = OutboxMessage.objects.filter(topic="refresh.confirmed").count()
    assert confirmed == (1 if row.status == RefreshStatus.CONFIRMED else 0)


def test_settings_take_defaults_and_name_every_bad_field(community: Community) -> None:
    assert community_refresh_settings(community.pk) == parse_refresh({})
    defaults = parse_refresh({})
    assert (defaults.window_days, defaults.min_speaking_days, defaults.min_check_in_days) == (
        30,
        2,
        4,
    )
    assert (defaults.bottom_share, defaults.grace_days, defaults.recovery_days) == (0.2, 14, 7)
    with pytest.raises(ValidationFailed) as bad:
        parse_refresh(
            {
                "window_days": 3,
                "min_check_in_days": 5,
                "bottom_share": 0,
                "recovery_days": "7",
                "grace": 3,
            }
        )
    assert {e.field for e in bad.value.errors} == {
        "refresh.min_check_in_days",
        "refresh.bottom_share",
        "refresh.recovery_days",
        "refresh.grace",
    }
    with pytest.raises(ValidationFailed):
        parse_refresh([])


def test_a_future_period_is_refused(community: Community, now: dt.datetime) -> None:
    with pytest.raises(ValidationFailed) as bad:
        refresh_run(community=community, period="2999-01", now=now)
    assert bad.value.errors[0].field == "period"
    assert not JobRun.objects.filter(job="refresh").exists()


def test_run_job_refresh_runs_the_period_for_one_community(
    community: Community, post: Post, now: dt.datetime, capsys: pytest.CaptureFixture[str]
) -> None:
    _community(post, now)
    period = _period(community, timezone.now())
    call_command("run_job", "refresh", "--community", "acme", "--period", period)
    out = capsys.readouterr().out
    assert out.startswith("acme: ")
    assert f'"period": "{period}"' in out
    assert _flagged(community, period) == {"silent": RefreshStatus.AT_RISK}


def test_admin_confirms_and_spares_through_the_service_and_reports_the_rest(
    community: Community, post: Post
) -> None:
    period = _two_months(post, community)
    user = User.objects.create_superuser("ops", "ops@example.com", "pw-1234567")
    staff = Client()
    staff.force_login(user)
    rows = {
        r.member.external_id: r
        for r in RefreshCandidate.objects.filter(period=period).select_related("member")
    }
    assert set(rows) == {"sam", "sue"}
    url = "/admin/incentives/refreshcandidate/"

    page = staff.get(url)
    assert page.status_code == 200
    assert "sam" in page.content.decode()
    assert staff.get(f"{url}add/").status_code == 403

    confirmed = staff.post(
        url, {"action": "confirm_refresh", "_selected_action": [rows["sam"].pk]}, follow=True
    ).content.decode()
    assert "Confirmed: sam." in confirmed
    spared = staff.post(
        url,
        {"action": "spare_refresh", "_selected_action": [rows["sam"].pk, rows["sue"].pk]},
        follow=True,
    ).content.decode()
    assert "Spared: sue." in spared
    assert f"sam ({period} is confirmed)" in spared
    statuses = dict(
        RefreshCandidate.objects.filter(period=period).values_list("member__external_id", "status")
    )
    assert statuses == {"sam": RefreshStatus.CONFIRMED, "sue": RefreshStatus.SPARED}
    audited = AuditLog.objects.filter(actor="user:ops", action__startswith="refresh.")
    assert sorted(audited.values_list("action", "target")) == [
        ("refresh.confirm", "sam"),
        ("refresh.spare", "sue"),
    ]
    assert OutboxMessage.objects.filter(topic="refresh.confirmed").count() == 1


def test_the_hourly_fan_out_runs_each_community_once_per_month(
    community: Community, post: Post, now: dt.datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    entry = settings.CELERY_BEAT_SCHEDULE["incentives-refresh"]
    assert entry["task"] == "incentives.tasks.refresh_run_all"
    _community(post, now)
    assert refresh_run_all.apply().get() == 1  # eager: runs the community's job too
    assert _flagged(community, _period(community, timezone.now())) == {
        "silent": RefreshStatus.AT_RISK
    }
    again = refresh_run_community.apply(args=(community.pk,)).get()
    assert again["already_ran"] is True
    assert RefreshCandidate.objects.count() == 1


def test_many_warnings_are_announced_in_messages_of_a_bounded_size(
    community: Community, post: Post, now: dt.datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from incentives import refresh

    monkeypatch.setattr(refresh, "WARNINGS_PER_MESSAGE", 2)
    quiet = ["q1", "q2", "q3", "q4", "q5"]
    _joined(post, now, *REGULARS, *quiet, days_ago=80)
    for who in REGULARS:
        _days(post, who, "check_in", range(0, 30, 2), now)
    result = refresh_run(community=community, now=now)
    assert sorted(_flagged(community, _period(community, now))) == quiet
    messages = OutboxMessage.objects.filter(topic="refresh.at_risk").order_by("id")
    sizes = [len(m.payload["members"]) for m in messages]
    assert sum(sizes) == result["at_risk"] == 5
    assert all(size <= 2 for size in sizes)
