"""GET /api/v1/communities/{c}/members/{m} and …/ledger."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from points.models import LedgerEntry, Member
from points.services import community_create

pytestmark = pytest.mark.django_db

BASE = "/api/v1/communities/acme"


def _post(client: Any, *events: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(f"{BASE}/events/batch", {"events": list(events)}, format="json")
    assert response.status_code == 200, response.content
    results: list[dict[str, Any]] = response.json()["results"]
    assert {r["status"] for r in results} == {"accepted"}, results
    return results


def _assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code


def test_member_detail_has_the_documented_fields_and_values(client_for):
    _post(
        client_for,
        {"id": "c1", "type": "check_in", "member": "alice", "meta": {"display_name": "Alice"}},
        {"id": "s1", "type": "share", "member": "alice"},
    )
    alice = Member.objects.get(external_id="alice")

    response = client_for.get(f"{BASE}/members/alice")

    assert response.status_code == 200
    body = response.json()
    assert {
        "member",
        "display_name",
        "status",
        "balance",
        "held",
        "spendable",
        "lifetime_points",
        "tier",
        "ranks",
        "streak",
        "koc",
        "honors",
    } <= set(body)
    assert body["member"] == "alice"
    assert body["display_name"] == "Alice"
    assert body["status"] == "active"
    assert body["balance"] == alice.balance > 0
    assert body["balance"] == sum(LedgerEntry.objects.filter(member=alice).values_list(
        "points", flat=True))  # fmt: skip
    assert body["held"] == 0
    assert body["spendable"] == body["balance"] - body["held"]
    assert body["lifetime_points"] == body["balance"]


def test_member_detail_spendable_excludes_held_points(client_for):
    _post(client_for, *[{"id": f"s{i}", "type": "share", "member": "bob"} for i in range(3)])
    bob = Member.objects.get(external_id="bob")
    Member.objects.filter(pk=bob.pk).update(held=bob.balance - 1)

    body = client_for.get(f"{BASE}/members/bob").json()

    assert body["held"] == bob.balance - 1
    assert body["spendable"] == 1


def test_member_who_left_shows_status_left(client_for):
    _post(
        client_for,
        {"id": "j", "type": "join", "member": "carol"},
        {"id": "l", "type": "leave", "member": "carol"},
    )

    body = client_for.get(f"{BASE}/members/carol").json()

    assert body["status"] == "left"
    assert body["left_at"] is not None


def test_unknown_member_is_404_member_not_found(client_for):
    response = client_for.get(f"{BASE}/members/nobody")

    _assert_problem(response, 404, "member_not_found")


def test_unknown_member_ledger_is_404_member_not_found(client_for):
    response = client_for.get(f"{BASE}/members/nobody/ledger")

    _assert_problem(response, 404, "member_not_found")


def test_member_of_another_community_is_not_found(client_for):
    other = community_create(slug="other", name="Other")
    Member.objects.create(community=other, external_id="eve", joined_at=other.created_at)

    _assert_problem(client_for.get(f"{BASE}/members/eve"), 404, "member_not_found")
    _assert_problem(client_for.get(f"{BASE}/members/eve/ledger"), 404, "member_not_found")


def test_ledger_lists_entries_newest_first_with_event_and_balance_after(client_for):
    _post(
        client_for,
        {"id": "c1", "type": "check_in", "member": "alice"},
        {"id": "s1", "type": "share", "member": "alice"},
    )

    response = client_for.get(f"{BASE}/members/alice/ledger")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["event"] for r in results] == ["s1", "c1"]
    assert [r["event_type"] for r in results] == ["share", "check_in"]
    assert results[0]["id"] > results[1]["id"]
    assert results[0]["balance_after"] == results[1]["balance_after"] + results[0]["points"]
    assert results[0]["balance_after"] == Member.objects.get(external_id="alice").balance
    assert {r["kind"] for r in results} == {"award"}
    assert results[1]["rule"] == "points.check_in"
    assert results[1]["rule_version"] == 1


def test_ledger_cursor_pagination_follows_next_and_never_shows_other_members(client_for):
    events = []
    for i in range(7):
        day = f"2026-01-{i + 1:02d}T10:00:00+08:00"
        events.append({"id": f"a{i}", "type": "share", "member": "alice", "occurred_at": day})
        events.append({"id": f"b{i}", "type": "share", "member": "bob", "occurred_at": day})
    _post(client_for, *events)
    alice = Member.objects.get(external_id="alice")
    expected = list(
        LedgerEntry.objects.filter(member=alice).order_by("-id").values_list("id", flat=True)
    )
    assert len(expected) == 7

    seen: list[int] = []
    events_seen: list[str] = []
    url: str | None = f"{BASE}/members/alice/ledger?page_size=2"
    pages = 0
    while url:
        response = client_for.get(url)
        assert response.status_code == 200, response.content
        page = response.json()
        assert len(page["results"]) <= 2
        seen += [r["id"] for r in page["results"]]
        events_seen += [r["event"] for r in page["results"]]
        url = page["next"]
        if url:
            assert "cursor" in parse_qs(urlparse(url).query)
        pages += 1
        assert pages <= len(expected)

    assert seen == expected
    assert pages == (len(expected) + 1) // 2
    assert all(e.startswith("a") for e in events_seen)


def _share_on_day(client_id: str, day: int) -> dict[str, Any]:
    return {
        "id": client_id,
        "type": "share",
        "member": "alice",
        "occurred_at": f"2026-01-{day:02d}T10:00:00+08:00",
    }


def test_ledger_cursor_is_stable_while_new_entries_are_appended(client_for):
    _post(client_for, *[_share_on_day(f"a{i}", i + 1) for i in range(4)])
    first = client_for.get(f"{BASE}/members/alice/ledger?page_size=2").json()

    _post(client_for, _share_on_day("late", 20))
    assert LedgerEntry.objects.filter(event__client_id="late").exists()
    second = client_for.get(first["next"]).json()

    assert [r["event"] for r in first["results"]] == ["a3", "a2"]
    assert [r["event"] for r in second["results"]] == ["a1", "a0"]
    assert second["next"] is None


def test_ledger_with_a_garbage_cursor_is_400_naming_the_cursor(client_for):
    _post(client_for, _share_on_day("a0", 1))

    response = client_for.get(f"{BASE}/members/alice/ledger?cursor=not-a-cursor")

    _assert_problem(response, 400, "validation_error")
    assert response.json()["errors"][0]["field"] == "cursor"


def test_member_without_entries_has_an_empty_ledger(client_for, community):
    Member.objects.create(community=community, external_id="quiet", joined_at=community.created_at)

    body = client_for.get(f"{BASE}/members/quiet/ledger").json()

    assert body["results"] == []
    assert body["next"] is None


def test_member_ids_with_dots_and_unicode_are_addressable(client_for):
    _post(client_for, {"id": "u1", "type": "share", "member": "wx.李雷@x"})

    response = client_for.get(f"{BASE}/members/wx.李雷@x")

    assert response.status_code == 200
    assert response.json()["member"] == "wx.李雷@x"


@pytest.mark.parametrize(
    ("method", "suffix"), [("get", ""), ("get", "/ledger"), ("get", "/rank"), ("post", "/token")]
)
def test_member_id_with_a_nul_character_is_404_not_a_server_error(client_for, method, suffix):
    response = getattr(client_for, method)(f"{BASE}/members/a%00b{suffix}")

    _assert_problem(response, 404, "not_found")
