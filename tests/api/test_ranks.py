"""Ranking rules (ties, left members, local month boundaries, past months, weeks), the rank
and leaderboard API, member tokens (expiry, tampering) and BOLA: a member token never reaches
another member's data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.core import signing
from rest_framework.test import APIClient

from points.models import Community, Member
from points.selectors import MEMBER_TOKEN_SALT
from points.services import (
    EventInput,
    community_create,
    events_ingest,
    member_token_issue,
    rank_snapshot_build,
)

SH = dt.timezone(dt.timedelta(hours=8))
API = "/api/v1/communities/acme"


def _shares(
    community: Community,
    member: str,
    count: int,
    when: dt.datetime | None = None,
    kind: str = "share",
) -> None:
    events = [
        EventInput(f"{member}-{when}-{kind}-{k}", kind, member, occurred_at=when)
        for k in range(count)
    ]
    assert all(o.status == "accepted" for o in events_ingest(community=community, events=events))


def _board(client: APIClient, query: str = "period=all_time") -> list[tuple[str, int, int]]:
    response = client.get(f"{API}/leaderboard?{query}")
    assert response.status_code == 200, response.content
    return [(r["member"], r["rank"], r["points"]) for r in response.json()["results"]]


@pytest.fixture(autouse=True)
def eager_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queued tasks run in this process (the rebuild a read queues; the worker has its own
    tests): reads still never build inline, they queue, and the queue runs at once."""
    from config.celery import app
    from points import services

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", True)
    monkeypatch.setattr(services, "_rebuild_queued_at", {})


def _rebuild(community: Community) -> None:
    from points.services import rank_snapshots_refresh

    rank_snapshots_refresh(community=community)


def test_ties_share_a_rank_in_a_stable_order(community: Community, client_for: APIClient) -> None:
    for member, count in [("dave", 1), ("carol", 3), ("bob", 3), ("alice", 4)]:
        _shares(community, member, count)

    board = _board(client_for)

    # competition ranking; ties are shown in a stable order (the member who came first)
    assert board == [("alice", 1, 20), ("carol", 2, 15), ("bob", 2, 15), ("dave", 4, 5)]
    assert _board(client_for) == board


def test_members_who_left_are_not_ranked_and_rank_again_after_joining(
    community: Community, client_for: APIClient
) -> None:
    _shares(community, "ann", 2)
    _shares(community, "bob", 1)
    assert [m for m, _r, _p in _board(client_for)] == ["ann", "bob"]  # snapshot built

    # A leave writes no ledger entry; the ordinary refresh (no force) still drops ann.
    events_ingest(community=community, events=[EventInput("bye", "leave", "ann")])
    _rebuild(community)
    assert [m for m, _r, _p in _board(client_for)] == ["bob"]

    events_ingest(community=community, events=[EventInput("back", "join", "ann")])
    _rebuild(community)
    assert [m for m, _r, _p in _board(client_for)] == ["ann", "bob"]


def test_month_boundaries_are_in_the_community_time_zone_and_past_months_are_kept(
    community: Community, client_for: APIClient
) -> None:
    _shares(community, "oct", 2, dt.datetime(2026, 10, 31, 23, 59, tzinfo=SH))
    _shares(community, "nov", 1, dt.datetime(2026, 11, 1, 0, 1, tzinfo=SH))  # 16:01 UTC Oct 31

    assert _board(client_for, "period=month&month=2026-10") == [("oct", 1, 10)]
    assert _board(client_for, "period=month&month=2026-11") == [("nov", 1, 5)]
    assert [m for m, _r, _p in _board(client_for, "period=all_time")] == ["oct", "nov"]


def test_a_future_month_is_an_empty_board(client_for: APIClient) -> None:
    assert _board(client_for, "period=month&month=2099-01") == []


def test_this_week_and_this_month_count_only_their_own_points(
    community: Community, client_for: APIClient
) -> None:
    _shares(community, "old", 3, dt.datetime.now(SH) - dt.timedelta(days=300))
    _shares(community, "now", 1)

    assert [m for m, _r, _p in _board(client_for, "period=week")] == ["now"]
    assert [m for m, _r, _p in _board(client_for, "period=month")] == ["now"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("period=year", "period"),
        ("period=month&month=2026-13", "month"),
        ("period=all_time&size=0", "size"),
        ("period=all_time&cursor=%%%", "cursor"),
    ],
)
def test_bad_board_queries_are_400_naming_the_field(
    client_for: APIClient, query: str, field: str
) -> None:
    response = client_for.get(f"{API}/leaderboard?{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == field


def test_the_board_pages_by_cursor_without_gaps_or_repeats(
    community: Community, client_for: APIClient
) -> None:
    for i in range(7):
        _shares(community, f"m{i}", 1 + i % 3)
    seen: list[str] = []
    url: str | None = f"{API}/leaderboard?period=all_time&size=3"
    while url:
        page = client_for.get(url).json()
        seen += [r["member"] for r in page["results"]]
        url = page["next"]
    assert sorted(seen) == [f"m{i}" for i in range(7)]
    assert len(seen) == len(set(seen)) == 7


def test_rank_percentile_neighbours_and_live_points_beside_the_snapshot(
    community: Community, client_for: APIClient
) -> None:
    for i, count in enumerate([9, 8, 7, 6, 5, 4, 3, 2]):
        _shares(community, f"m{i}", count, kind="message")  # 1 point each
    _rebuild(community)  # what the refresh queued after those commits does

    rank = client_for.get(f"{API}/members/m4/rank?period=all_time").json()
    assert (rank["rank"], rank["total"], rank["percentile"]) == (5, 8, 50.0)
    assert [r["member"] for r in rank["above"]] == ["m1", "m2", "m3"]
    assert [r["member"] for r in rank["below"]] == ["m5", "m6", "m7"]

    _shares(community, "m4", 1, dt.datetime.now(tz=SH))  # not yet in the snapshot
    later = client_for.get(f"{API}/members/m4/rank?period=all_time").json()
    assert later["points"] == later["ranked_points"] + 5 == 10
    assert later["age_seconds"] is not None
    assert 0 <= later["age_seconds"] <= 60


def test_member_detail_carries_all_time_and_month_ranks(
    community: Community, client_for: APIClient
) -> None:
    _shares(community, "ann", 2)
    _shares(community, "bob", 1)
    _rebuild(community)
    body = client_for.get(f"{API}/members/bob").json()
    assert (body["ranks"]["all_time"]["rank"], body["ranks"]["month"]["rank"]) == (2, 2)
    assert body["ranks"]["all_time"]["total"] == 2


# --- member tokens and BOLA ----------------------------------------------------------------


def _as_member(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Member {token}")
    return client


@pytest.fixture
def two_members(community: Community) -> tuple[Member, Member]:
    _shares(community, "ann", 2)
    _shares(community, "bob", 1)
    return Member.objects.get(external_id="ann"), Member.objects.get(external_id="bob")


def test_a_member_token_reads_its_own_member_and_the_public_boards(
    two_members: tuple[Member, Member],
) -> None:
    ann, _bob = two_members
    token, _exp = member_token_issue(member=ann)
    client = _as_member(token)
    for path in ("members/ann", "members/ann/ledger", "members/ann/rank", "leaderboard"):
        assert client.get(f"{API}/{path}").status_code == 200, path


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("get", "members/bob", 404),
        ("get", "members/bob/ledger", 404),
        ("get", "members/bob/rank", 404),
        ("post", "members/bob/token", 403),
        ("post", "members/ann/token", 403),  # a member cannot mint links
        ("post", "events", 403),
        ("post", "events/batch", 403),
        ("get", "events/x", 403),
        ("post", "adjustments", 403),
        ("get", "rules", 403),
    ],
)
def test_a_member_token_never_reaches_anything_else(
    two_members: tuple[Member, Member], method: str, path: str, expected: int
) -> None:
    ann, _bob = two_members
    token, _exp = member_token_issue(member=ann)
    response = getattr(_as_member(token), method)(f"{API}/{path}", {}, format="json")
    assert response.status_code == expected
    assert response["Content-Type"] == "application/problem+json"


def test_a_token_of_one_community_is_refused_by_another(
    two_members: tuple[Member, Member], make_client: Callable[..., Any]
) -> None:
    ann, _bob = two_members
    other = community_create(slug="other", name="Other")
    events_ingest(community=other, events=[EventInput("o1", "share", "ann")])
    token, _exp = member_token_issue(member=ann)
    client = _as_member(token)
    assert client.get("/api/v1/communities/other/members/ann").status_code == 404
    assert client.get("/api/v1/communities/other/leaderboard").status_code == 404


def test_expired_and_tampered_tokens_are_401(two_members: tuple[Member, Member]) -> None:
    ann, bob = two_members
    token, _exp = member_token_issue(member=ann)
    expired = signing.dumps({"c": ann.community_id, "m": ann.pk, "exp": 1}, salt=MEMBER_TOKEN_SALT)
    forged = signing.dumps(
        {"c": ann.community_id, "m": bob.pk, "exp": 4_000_000_000}, salt="another-salt"
    )
    body, _, signature = token.rpartition(":")
    flipped = f"{body}:{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    for bad in (expired, forged, flipped, "not-a-token"):
        response = _as_member(bad).get(f"{API}/members/ann")
        assert response.status_code == 401, bad
        assert response.json()["code"] == "invalid_member_token"
    page = APIClient().get(f"/m/{expired}/")
    assert page.status_code in (401, 403, 404, 410)


def test_the_token_endpoint_needs_members_read_and_caps_the_lifetime(
    community: Community, make_client: Callable[..., APIClient], two_members: Any
) -> None:
    writer = make_client(community, ["events:write"])
    reader = make_client(community, ["members:read"])
    assert writer.post(f"{API}/members/ann/token").status_code == 403
    too_long = reader.post(f"{API}/members/ann/token", {"ttl_seconds": 8 * 86400}, format="json")
    assert too_long.status_code == 400
    assert too_long.json()["errors"][0]["field"] == "ttl_seconds"
    issued = reader.post(f"{API}/members/ann/token", {"ttl_seconds": 3600}, format="json")
    assert issued.status_code == 201
    expires = dt.datetime.fromisoformat(issued.json()["expires_at"])
    assert dt.timedelta(minutes=59) < expires - dt.datetime.now(tz=dt.UTC) <= dt.timedelta(hours=1)
    assert _as_member(issued.json()["token"]).get(f"{API}/members/ann").status_code == 200


# --- the rank endpoint ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("period=year", "period"),
        ("period=", "period"),
        ("period=month&month=2026-13", "month"),
        ("period=month&month=202610", "month"),
        ("period=month&month=", "month"),
    ],
)
def test_bad_rank_queries_are_400_naming_the_field(
    community: Community, client_for: APIClient, query: str, field: str
) -> None:
    _shares(community, "ann", 1)
    response = client_for.get(f"{API}/members/ann/rank?{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_the_rank_of_an_unknown_member_is_a_404_problem(client_for: APIClient) -> None:
    response = client_for.get(f"{API}/members/nobody/rank?period=all_time")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "member_not_found"


def test_a_past_month_rank_counts_only_that_local_month(
    community: Community, client_for: APIClient
) -> None:
    _shares(community, "late", 1, dt.datetime(2026, 10, 31, 23, 59, tzinfo=SH))
    _shares(community, "early", 2, dt.datetime(2026, 11, 1, 0, 1, tzinfo=SH))
    for month in (dt.date(2026, 10, 1), dt.date(2026, 11, 1)):
        rank_snapshot_build(community=community, kind="month", start=month)

    october = client_for.get(f"{API}/members/late/rank?period=month&month=2026-10").json()
    assert (october["period"], october["rank"], october["points"], october["total"]) == (
        "2026-10",
        1,
        5,
        1,
    )
    absent = client_for.get(f"{API}/members/early/rank?period=month&month=2026-10").json()
    assert (absent["rank"], absent["points"], absent["percentile"]) == (None, 0, None)


def test_a_snapshot_older_than_a_minute_is_rebuilt_on_read(
    community: Community, client_for: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.celery import app
    from points import services
    from points.models import RankBuild

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setattr(services, "_rebuild_queued_at", {})
    _shares(community, "ann", 2)
    _shares(community, "bob", 1)
    _rebuild(community)
    assert client_for.get(f"{API}/members/bob/rank").json()["rank"] == 2
    _shares(community, "bob", 2, dt.datetime.now(tz=SH))
    RankBuild.objects.update(built_at=dt.datetime.now(tz=dt.UTC) - dt.timedelta(seconds=75))

    stale = client_for.get(f"{API}/members/bob/rank").json()
    # served from the snapshot there, its age said, the live points beside it
    assert (stale["rank"], stale["ranked_points"], stale["points"]) == (2, 5, 15)
    assert 75 <= stale["age_seconds"] <= 80
    fresh = client_for.get(f"{API}/members/bob/rank").json()
    assert (fresh["rank"], fresh["ranked_points"], fresh["points"]) == (1, 15, 15)
    assert fresh["age_seconds"] <= 5


# --- member tokens: expiry and tampering --------------------------------------------------------


class _Clock:
    """Stands in for ``django.utils.timezone`` inside ``points.services``: the token is issued
    as if ``ago`` seconds ago."""

    def __init__(self, ago: float) -> None:
        self.ago = ago

    def now(self) -> dt.datetime:
        return dt.datetime.now(tz=dt.UTC) - dt.timedelta(seconds=self.ago)


@pytest.mark.parametrize(("issued_ago", "expected"), [(55, 200), (65, 401)])
def test_a_member_token_works_until_it_expires(
    two_members: tuple[Member, Member],
    monkeypatch: pytest.MonkeyPatch,
    issued_ago: int,
    expected: int,
) -> None:
    from points import services

    ann, _bob = two_members
    monkeypatch.setattr(services, "timezone", _Clock(issued_ago))
    token, expires_at = member_token_issue(member=ann, ttl=dt.timedelta(seconds=60))
    monkeypatch.undo()

    assert expires_at - dt.datetime.now(tz=dt.UTC) < dt.timedelta(seconds=5)
    response = _as_member(token).get(f"{API}/members/ann/rank")
    assert response.status_code == expected
    if expected == 401:
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_member_token"
        assert APIClient().get(f"/m/{token}/").status_code == 403


def _with_payload(token: str, **changes: int) -> str:
    """The token with its payload changed and its signature kept."""
    import base64
    import json

    payload, timestamp, signature = token.split(":")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    raw = json.dumps(data, separators=(",", ":")).encode()
    forged = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"{forged}:{timestamp}:{signature}"


def test_a_token_whose_member_or_expiry_was_changed_is_401(
    two_members: tuple[Member, Member],
) -> None:
    ann, bob = two_members
    token, _exp = member_token_issue(member=ann)
    assert _as_member(token).get(f"{API}/members/ann").status_code == 200

    for forged in (_with_payload(token, m=bob.pk), _with_payload(token, exp=4_000_000_000)):
        assert forged != token
        for path in ("members/bob", "members/ann", "leaderboard"):
            response = _as_member(forged).get(f"{API}/{path}")
            assert response.status_code == 401, (path, forged)
            assert response.json()["code"] == "invalid_member_token"


def test_a_member_token_reads_its_own_ranks_of_every_period_and_no_one_elses(
    two_members: tuple[Member, Member],
) -> None:
    ann, _bob = two_members
    client = _as_member(member_token_issue(member=ann)[0])
    for query in ("period=all_time", "period=month", "period=week", "period=month&month=2026-10"):
        assert client.get(f"{API}/members/ann/rank?{query}").status_code == 200, query
        assert client.get(f"{API}/leaderboard?{query}").status_code == 200, query
        other = client.get(f"{API}/members/bob/rank?{query}")
        assert other.status_code == 404, query
        assert other["Content-Type"] == "application/problem+json"
    # an unknown member looks the same as another member: nothing to learn by probing
    assert client.get(f"{API}/members/nobody/rank").json()["code"] == "not_found"
    assert client.get(f"{API}/members/bob/rank").json()["code"] == "not_found"


@pytest.mark.parametrize("cursor", ["garbage", "cD0tMQ", "cDox", "eD0x", "cD05OTk5OTk5OTk5OTk5"])
def test_a_crafted_board_cursor_is_400_naming_cursor(client_for: APIClient, cursor: str) -> None:
    response = client_for.get(f"{API}/leaderboard?cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "cursor"
