"""Assessment rounds: the arithmetic on hand-built rounds (numbers worked out by hand in the
comments), the edge cases (no rater, one rater, self-ratings, repeated ratings, the switch from
the Bayesian average to the trimmed mean at 5 raters, no owner score), activity counting and its
cap, the window, refusals naming the field, idempotency, and the freeze at the close."""

from __future__ import annotations

import datetime as dt
import random
import threading
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from scipy import stats

from incentives.assessments import (
    DEFAULT_ACTIVITY,
    AssessmentClosed,
    AssessmentConflict,
    AssessmentInvalid,
    assessment_close,
    assessment_open,
    assessment_results,
    bayesian_average,
    community_assessment_settings,
    owner_scores_set,
    trimmed_mean,
)
from incentives.config import DEFAULT_TIERS
from incentives.models import Assessment, AssessmentMember, AssessmentStatus, IncentiveConfig
from points.corrections import event_reverse
from points.exceptions import MemberNotFound
from points.models import AuditLog, Community, Event, Member
from points.services import EventInput, community_create, events_ingest
from points.timeutils import community_zone
from tests.incentives.conftest import Post

pytestmark = pytest.mark.django_db

ROUND = ["ann", "bea", "cal"]


@pytest.fixture
def window(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    return now - dt.timedelta(days=3), now + dt.timedelta(hours=1)


@pytest.fixture
def people(post: Post, now: dt.datetime) -> None:
    """The round's members and raters exist (an event each, before any window)."""
    before = now - dt.timedelta(days=30)
    post(
        *(
            {"type": "message", "member": m, "occurred_at": before}
            for m in [*ROUND, "r1", "r2", "r3", "r4", "r5", "r6"]
        )
    )


def _open(
    community: Community,
    window: tuple[dt.datetime, dt.datetime],
    client_id: str = "round-1",
    members: list[str] | None = None,
    **kwargs: Any,
) -> Assessment:
    row, _created = assessment_open(
        community=community,
        client_id=client_id,
        title="核心群门槛",
        members=members or ROUND,
        window_start=window[0],
        window_end=window[1],
        actor="key:test",
        **kwargs,
    )
    return row


def _rate(rater: str, rated: str, score: int, at: dt.datetime | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "peer_score", "member": rater, "target": rated, "score": score}
    if at is not None:
        event["occurred_at"] = at
    return event


def _by_member(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["member"]: r for r in results["results"]}


def test_trimmed_mean_cuts_a_fifth_at_each_end_as_scipy_does() -> None:
    assert trimmed_mean([1, 2, 4, 5, 5]) == pytest.approx(11 / 3)  # 2, 4, 5 kept
    assert trimmed_mean([1, 1, 2, 3, 4, 5, 5, 5, 5, 5]) == 4.0  # 2, 3, 4, 5, 5, 5 kept
    rng = random.Random(7)
    for n in range(5, 60):
        scores = [rng.randint(1, 5) for _ in range(n)]
        assert trimmed_mean(scores) == pytest.approx(float(stats.trim_mean(scores, 0.2)))


def test_bayesian_average_is_imdbs_weighted_rating() -> None:
    # (v·R + m·C) / (v + m) = (1·5 + 5·3) / 6
    assert bayesian_average([5], 3.0) == pytest.approx(20 / 6)
    assert bayesian_average([2, 3], 10 / 3) == pytest.approx(65 / 21)


def test_defaults_are_documented_values_and_a_communitys_settings_override_them(
    community: Community,
) -> None:
    settings = community_assessment_settings(community.pk)
    assert (settings.w_peer, settings.w_owner, settings.w_activity) == (0.6, 0.4, 0.0)
    assert settings.pass_mark == 60.0
    assert settings.activity == DEFAULT_ACTIVITY
    IncentiveConfig.objects.create(
        community=community,
        tiers=DEFAULT_TIERS,
        assessment={"w_peer": 0.5, "w_owner": 0.5, "pass_mark": 70, "activity": {"share": 5}},
        updated_at=timezone.now(),
        updated_by="test",
    )
    settings = community_assessment_settings(community.pk)
    assert (settings.w_peer, settings.w_owner, settings.pass_mark) == (0.5, 0.5, 70.0)
    assert settings.activity == {**DEFAULT_ACTIVITY, "share": 5}


def test_a_bad_community_setting_is_refused_naming_its_field(community: Community) -> None:
    IncentiveConfig.objects.create(
        community=community,
        tiers=DEFAULT_TIERS,
        assessment={"w_peer": 2, "activity": {"cap": 0, "likes": 1}},
        updated_at=timezone.now(),
        updated_by="test",
    )
    with pytest.raises(AssessmentInvalid) as caught:
        community_assessment_settings(community.pk)
    assert {e.field for e in caught.value.errors} == {
        "assessment.w_peer",
        "assessment.activity.cap",
        "assessment.activity.likes",
    }


def test_one_rater_gets_a_bayesian_average_toward_the_rounds_mean_and_owner_missing_renormalises(
    community: Community, people: None, post: Post, window: Any
) -> None:
    row = _open(community, window)
    post(_rate("r1", "ann", 5), _rate("r2", "bea", 2), _rate("r3", "bea", 3))
    owner_scores_set(community=community, client_id="round-1", scores={"ann": 4}, actor="owner")

    results = assessment_results(community, "round-1")
    found = _by_member(results)

    # C = (5 + 2 + 3) / 3 = 10/3
    assert results["method"]["round_mean"] == pytest.approx(round((10 / 3 - 1) / 4 * 100, 2))
    assert results["method"]["ratings_counted"] == 3
    # ann: v = 1, R = 5: (5 + 5·10/3) / 6 = 65/18 → (65/18 − 1)/4 × 100 = 65.2777…
    ann = found["ann"]
    assert ann["peer"]["method"] == "bayesian"
    assert (ann["peer"]["ratings"], ann["peer"]["raters"]) == (1, 1)
    assert ann["peer"]["mean"] == 100.0
    assert ann["peer"]["score"] == 65.28
    assert ann["owner"] == {
        "score_1_5": 4,
        "score": 75.0,
        "scored_by": "owner",
        "scored_at": ann["owner"]["scored_at"],
    }
    # 0.6 × 65.2777… + 0.4 × 75 = 69.1666…
    assert ann["total"] == 69.17
    assert ann["weights_used"] == {"peer": 0.6, "owner": 0.4, "activity": 0.0}
    assert (ann["missing"], ann["complete"], ann["passed"]) == ([], True, True)
    # bea: v = 2, R = 2.5: (5 + 50/3) / 7 = 65/21 → (65/21 − 1)/4 × 100 = 52.3809…; no owner
    # score: the peer part alone, with its weight normalised to 1 (not an owner score of 0)
    bea = found["bea"]
    assert bea["peer"]["score"] == 52.38
    assert bea["owner"]["score"] is None
    assert bea["missing"] == ["owner"]
    assert bea["complete"] is False
    assert bea["weights_used"] == {"peer": 1.0, "owner": 0.0, "activity": 0.0}
    assert (bea["total"], bea["passed"]) == (52.38, False)
    # cal: nobody rated, no owner score: no part at all
    cal = found["cal"]
    assert (cal["peer"]["method"], cal["peer"]["score"], cal["peer"]["raters"]) == (None, None, 0)
    assert cal["missing"] == ["peer", "owner"]
    assert (cal["total"], cal["passed"]) == (None, None)
    # best first, no total last
    assert [r["member"] for r in results["results"]] == ["ann", "bea", "cal"]
    assert results["weights"] == {"peer": row.w_peer, "owner": row.w_owner, "activity": 0.0}


def test_no_peer_scores_at_all_the_owner_decides_alone(
    community: Community, people: None, window: Any
) -> None:
    _open(community, window)
    owner_scores_set(
        community=community, client_id="round-1", scores={"ann": 5, "bea": 3}, actor="owner"
    )
    found = _by_member(assessment_results(community, "round-1"))
    assert found["ann"]["peer"]["score"] is None
    assert (found["ann"]["total"], found["ann"]["passed"]) == (100.0, True)
    assert (found["bea"]["total"], found["bea"]["passed"]) == (50.0, False)
    assert found["bea"]["missing"] == ["peer"]
    assert found["bea"]["weights_used"]["owner"] == 1.0


def test_a_raters_scores_of_themselves_never_count(
    community: Community, people: None, post: Post, window: Any
) -> None:
    _open(community, window)
    # Ingestion refuses a self-rating (decision 44); rows from before that rule, or written by
    # hand, must still never count.
    [refused] = events_ingest(
        community=community,
        events=[EventInput("self", "peer_score", "ann", target="ann", score=1)],
    )
    assert refused.status == "invalid"
    assert [e.field for e in refused.errors] == ["target"]
    [rater] = post(_rate("r1", "ann", 5))
    stored = Event.objects.get(client_id=rater["id"])
    for n in range(2):
        Event.objects.create(
            community=community,
            client_id=f"old-self-{n}",
            member=Member.objects.get(community=community, external_id="ann"),
            type="peer_score",
            occurred_at=stored.occurred_at,
            received_at=stored.received_at,
            local_day=stored.local_day,
            target="ann",
            score=1,
            body_hash="-",
            rule_version=stored.rule_version,
            scoring={**stored.scoring, "balance": 0},
        )

    results = assessment_results(community, "round-1")
    peer = _by_member(results)["ann"]["peer"]

    assert peer["self_ratings_ignored"] == 2
    assert (peer["ratings"], peer["raters"], peer["scores"]) == (1, 1, [5])
    # C is 5 too (self-ratings are not in the round's mean either): the score is 100
    assert results["method"]["ratings_counted"] == 1
    assert peer["score"] == 100.0


def test_only_a_raters_latest_rating_of_a_member_counts(
    community: Community, people: None, post: Post, now: dt.datetime, window: Any
) -> None:
    _open(community, window)
    post(
        _rate("r1", "ann", 1, now - dt.timedelta(hours=5)),
        _rate("r1", "ann", 5, now - dt.timedelta(hours=1)),
        # posted last but happened first: not the latest
        _rate("r1", "ann", 2, now - dt.timedelta(hours=9)),
        _rate("r2", "ann", 3, now - dt.timedelta(hours=2)),
    )
    peer = _by_member(assessment_results(community, "round-1"))["ann"]["peer"]
    assert (peer["ratings"], peer["raters"], peer["scores"]) == (4, 2, [3, 5])
    assert peer["mean"] == 75.0  # (3 + 5) / 2 = 4 → 75


def test_the_trimmed_mean_takes_over_at_five_raters(
    community: Community, people: None, post: Post, window: Any
) -> None:
    _open(community, window)
    post(
        *(
            _rate(r, "ann", s)
            for r, s in zip(["r1", "r2", "r3", "r4", "r5"], [1, 2, 4, 5, 5], strict=True)
        ),
        *(_rate(r, "bea", s) for r, s in zip(["r1", "r2", "r3", "r4"], [1, 2, 4, 5], strict=True)),
    )
    found = _by_member(assessment_results(community, "round-1"))

    # ann, 5 raters: 1 and 5 cut, (2 + 4 + 5)/3 = 11/3 → (11/3 − 1)/4 × 100 = 66.666…
    assert found["ann"]["peer"]["method"] == "trimmed_mean"
    assert found["ann"]["peer"]["score"] == 66.67
    # bea, 4 raters: C = 29/9 (nine ratings), (12 + 5·29/9)/9 = 253/81 → 53.0864…
    assert found["bea"]["peer"]["method"] == "bayesian"
    assert found["bea"]["peer"]["score"] == 53.09
    # a fifth rater flips bea to the trimmed mean: 1, 2, 3, 4, 5 → 2, 3, 4 kept → 3 → 50
    post(_rate("r5", "bea", 3))
    found = _by_member(assessment_results(community, "round-1"))
    assert found["bea"]["peer"]["method"] == "trimmed_mean"
    assert found["bea"]["peer"]["score"] == 50.0


def test_ratings_outside_the_window_reversed_or_of_other_members_do_not_count(
    community: Community, people: None, post: Post, now: dt.datetime, window: Any
) -> None:
    _open(community, window)
    post(
        _rate("r1", "ann", 1, window[0] - dt.timedelta(seconds=1)),
        {**_rate("r2", "ann", 1), "id": "to-reverse"},
        _rate("r3", "r4", 1),
        _rate("r4", "ann", 4, window[0]),  # the start is in the window
    )
    event_reverse(community=community, client_id="to-reverse", reason="spam", actor="test")
    peer = _by_member(assessment_results(community, "round-1"))["ann"]["peer"]
    assert (peer["ratings"], peer["scores"]) == (1, [4])


def test_activity_counts_days_distinct_shares_help_and_invitees_then_caps(
    community: Community, people: None, post: Post, now: dt.datetime, window: Any
) -> None:
    _open(community, window, w_peer=0.0, w_owner=0.0, w_activity=1.0)
    zone = community_zone(community.timezone)
    yesterday = now.astimezone(zone).date() - dt.timedelta(days=1)
    noon = dt.datetime.combine(yesterday, dt.time(12), tzinfo=zone)
    post(
        {"type": "check_in", "member": "ann", "occurred_at": noon},
        {"type": "check_in", "member": "ann", "occurred_at": noon + dt.timedelta(hours=1)},
        {"type": "check_in", "member": "ann", "occurred_at": noon - dt.timedelta(days=1)},
        {"type": "share", "member": "ann", "content": {"hash": "h1"}, "occurred_at": noon},
        {"type": "share", "member": "ann", "content": {"hash": "h1"}, "occurred_at": noon},
        {"type": "share", "member": "ann", "content": {"hash": "h2"}, "occurred_at": noon},
        {"type": "help", "member": "ann", "target": "r1", "occurred_at": noon},
        {"type": "invite", "member": "ann", "target": "newbie", "occurred_at": noon},
        {"type": "join", "member": "newbie", "occurred_at": noon + dt.timedelta(hours=2)},
        # bea shares 30 different things: 60 units, capped at 20
        *(
            {"type": "share", "member": "bea", "content": {"hash": f"b{i}"}, "occurred_at": noon}
            for i in range(30)
        ),
    )
    found = _by_member(assessment_results(community, "round-1"))

    ann = found["ann"]["activity"]
    assert ann["counts"] == {"check_in": 2, "share": 2, "invite": 1, "help": 1}
    assert ann["units"] == 2 * 1 + 2 * 2 + 1 * 3 + 1 * 2  # 11
    assert ann["score"] == 55.0
    assert found["ann"]["total"] == 55.0
    assert (found["bea"]["activity"]["units"], found["bea"]["activity"]["score"]) == (60, 100.0)
    # activity is never missing: no activity scores 0
    assert (found["cal"]["activity"]["score"], found["cal"]["total"]) == (0.0, 0.0)
    assert found["cal"]["missing"] == []


def test_weights_are_normalised_when_they_do_not_sum_to_one(
    community: Community, people: None, post: Post, window: Any
) -> None:
    _open(community, window, w_peer=0.3, w_owner=0.3, w_activity=0.0)
    post(*(_rate(r, "ann", 5) for r in ["r1", "r2", "r3", "r4", "r5"]))
    owner_scores_set(community=community, client_id="round-1", scores={"ann": 1}, actor="o")
    ann = _by_member(assessment_results(community, "round-1"))["ann"]
    assert ann["weights_used"] == {"peer": 0.5, "owner": 0.5, "activity": 0.0}
    assert ann["total"] == 50.0  # (100 + 0) / 2


def test_owner_scores_outside_1_to_5_are_refused_naming_each_member_and_nothing_is_stored(
    community: Community, people: None, window: Any
) -> None:
    _open(community, window)
    with pytest.raises(AssessmentInvalid) as caught:
        owner_scores_set(
            community=community,
            client_id="round-1",
            scores={"ann": 4, "bea": 0, "cal": 6, "r1": 3},
            actor="owner",
        )
    assert {(e.field, e.code) for e in caught.value.errors} == {
        ("scores.bea", "out_of_range"),
        ("scores.cal", "out_of_range"),
        ("scores.r1", "not_in_round"),
    }
    for bad in (4.5, "4", True, None):
        with pytest.raises(AssessmentInvalid):
            owner_scores_set(
                community=community, client_id="round-1", scores={"ann": bad}, actor="o"
            )
    assert not AssessmentMember.objects.exclude(owner_score=None).exists()
    assert not AuditLog.objects.filter(action="assessment.owner_scores").exists()


def test_owner_scores_are_audited_with_each_change_and_an_unchanged_score_changes_nothing(
    community: Community, people: None, window: Any
) -> None:
    _open(community, window)
    owner_scores_set(community=community, client_id="round-1", scores={"ann": 3}, actor="o1")
    owner_scores_set(
        community=community, client_id="round-1", scores={"ann": 5, "bea": 2}, actor="o2"
    )
    owner_scores_set(community=community, client_id="round-1", scores={"ann": 5}, actor="o3")
    audits = list(
        AuditLog.objects.filter(action="assessment.owner_scores").order_by("id").values("data")
    )
    assert [a["data"]["scores"] for a in audits] == [
        {"ann": {"from": None, "to": 3}},
        {"ann": {"from": 3, "to": 5}, "bea": {"from": None, "to": 2}},
    ]
    ann = AssessmentMember.objects.get(member__external_id="ann")
    assert (ann.owner_score, ann.owner_scored_by) == (5, "o2")


def test_opening_validates_weights_window_members_and_names_each_field(
    community: Community, people: None, now: dt.datetime, window: Any
) -> None:
    with pytest.raises(AssessmentInvalid) as caught:
        _open(community, (now, now), members=["ann", "ann"], w_peer=1.5, pass_mark=101)
    assert {e.field for e in caught.value.errors} == {
        "members[1]",
        "window_end",
        "w_peer",
        "pass_mark",
    }
    with pytest.raises(AssessmentInvalid) as caught:
        _open(community, window, w_peer=0.0, w_owner=0.0, w_activity=0.0)
    assert [(e.field, e.code) for e in caught.value.errors] == [("w_peer", "zero_weights")]
    with pytest.raises(AssessmentInvalid) as caught:
        _open(community, window, activity={"cap": 0, "likes": 2})
    assert {e.field for e in caught.value.errors} == {"activity.cap", "activity.likes"}
    with pytest.raises(MemberNotFound) as missing:
        _open(community, window, members=["ann", "ghost", "nobody"])
    assert [e.field for e in missing.value.errors] == ["members[1]", "members[2]"]
    assert not Assessment.objects.exists()


def test_opening_is_idempotent_by_id_and_another_body_is_a_conflict_naming_what_differs(
    community: Community, people: None, window: Any
) -> None:
    first, created = assessment_open(
        community=community,
        client_id="round-1",
        title="t",
        members=["bea", "ann"],
        window_start=window[0],
        window_end=window[1],
        actor="key:a",
    )
    assert created
    # the community's defaults change between two sends of one body: still a replay
    IncentiveConfig.objects.create(
        community=community,
        tiers=DEFAULT_TIERS,
        assessment={"pass_mark": 80},
        updated_at=timezone.now(),
        updated_by="test",
    )
    again, created = assessment_open(
        community=community,
        client_id="round-1",
        title="t",
        members=["ann", "bea"],  # order does not matter
        window_start=window[0].astimezone(dt.UTC),
        window_end=window[1],
        actor="key:b",
    )
    assert (again.pk, created, again.pass_mark) == (first.pk, False, 60.0)
    with pytest.raises(AssessmentConflict) as caught:
        assessment_open(
            community=community,
            client_id="round-1",
            title="t",
            members=["ann"],
            window_start=window[0],
            window_end=window[1],
            pass_mark=50,
            actor="key:a",
        )
    assert [e.field for e in caught.value.errors] == ["id", "members", "pass_mark"]
    assert Assessment.objects.count() == 1
    assert AuditLog.objects.filter(action="assessment.open").count() == 1
    assert _open(community, window, client_id="round-2").pass_mark == 80.0


@pytest.mark.django_db(transaction=True)
def test_the_same_id_opened_at_once_is_one_round() -> None:
    community = community_create(slug="race", name="Race")
    events_ingest(community=community, events=[EventInput("e1", "message", "ann")])
    now = timezone.now()
    barrier = threading.Barrier(4)
    outcomes: list[Any] = []

    def open_round() -> None:
        try:
            barrier.wait()
            outcomes.append(
                assessment_open(
                    community=community,
                    client_id="same",
                    title="t",
                    members=["ann"],
                    window_start=now,
                    window_end=now + dt.timedelta(days=1),
                    actor="key:x",
                )
            )
        except Exception as exc:  # noqa: BLE001 - reported below
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=open_round) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(o, tuple) for o in outcomes), outcomes
    assert sorted(created for _row, created in outcomes) == [False, False, False, True]
    assert len({row.pk for row, _created in outcomes}) == 1
    assert AssessmentMember.objects.count() == 1


def test_closing_freezes_the_results_against_backdated_events_and_refuses_owner_scores(
    community: Community, people: None, post: Post, now: dt.datetime, window: Any
) -> None:
    _open(community, window)
    post(_rate("r1", "ann", 5))
    owner_scores_set(community=community, client_id="round-1", scores={"ann": 4}, actor="o")
    row, closed = assessment_close(community=community, client_id="round-1", actor="key:c")
    assert row.status == AssessmentStatus.CLOSED
    assert closed["frozen"] is True

    # arrives after the close, backdated into the window
    post(_rate("r2", "ann", 1, now - dt.timedelta(hours=1)))
    later = assessment_results(community, "round-1", now=now + dt.timedelta(days=1))
    assert later == closed
    assert _by_member(later)["ann"]["peer"]["scores"] == [5]

    with pytest.raises(AssessmentClosed):
        owner_scores_set(community=community, client_id="round-1", scores={"ann": 1}, actor="o")
    with pytest.raises(AssessmentClosed):
        assessment_close(community=community, client_id="round-1", actor="key:c")
    assert AuditLog.objects.filter(action="assessment.close").count() == 1


def test_results_take_four_queries_whatever_the_rounds_size(
    community: Community, post: Post, window: Any, django_assert_max_num_queries: Any
) -> None:
    members = [f"m{i:03d}" for i in range(60)]
    post(*({"type": "message", "member": m} for m in members))
    _open(community, window, members=members)
    pairs = [(members[(i * 7) % 60], members[i % 60], 1 + i % 5) for i in range(300)]
    post(*(_rate(rater, rated, score) for rater, rated, score in pairs if rater != rated))
    with django_assert_max_num_queries(4):
        results = assessment_results(community, "round-1")
    assert len(results["results"]) == 60
    assert results["method"]["ratings_counted"] > 0
