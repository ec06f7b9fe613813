"""Operator endpoints: manual adjustments (idempotent, audited, never overdrawn) and the rule
set (GET the version in force, PUT a new one, validated, in order, audited)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import DatabaseError, connection, transaction
from rest_framework.test import APIClient

from points.models import AuditLog, Community, LedgerEntry, Member
from points.services import community_create

ADJ = "/api/v1/communities/acme/adjustments"
RULES = "/api/v1/communities/acme/rules"


@pytest.fixture
def admin_client(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["admin"])


def test_a_positive_adjustment_creates_the_member_when_asked_and_an_audit_row(
    admin_client: APIClient,
) -> None:
    response = admin_client.post(
        ADJ,
        {
            "id": "a1",
            "member": "ann",
            "points": 100,
            "reason": "quiz winner",
            "create_member": True,
        },
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["member"], body["points"], body["balance"], body["owed"]) == ("ann", 100, 100, 0)
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.points, entry.reason) == ("adjustment", 100, "quiz winner")
    assert entry.actor.startswith("key:")
    audit = AuditLog.objects.get()
    assert (audit.action, audit.target, audit.client_id) == ("adjustment.create", "ann", "a1")
    assert Member.objects.get(external_id="ann").lifetime_points == 100


def test_a_retry_with_the_same_id_is_a_replay_and_another_body_a_conflict(
    admin_client: APIClient,
) -> None:
    body = {"id": "a1", "member": "ann", "points": 100, "reason": "quiz winner"}
    body["create_member"] = True
    first = admin_client.post(ADJ, body, format="json")
    again = admin_client.post(ADJ, body, format="json")
    other = admin_client.post(ADJ, {**body, "points": 5}, format="json")

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.json() == first.json()
    assert other.json()["code"] == "adjustment_conflict"
    assert LedgerEntry.objects.count() == 1


def test_a_debit_beyond_the_spendable_balance_is_refused_and_writes_nothing(
    admin_client: APIClient,
) -> None:
    admin_client.post(
        ADJ, {"member": "ann", "points": 10, "reason": "gift", "create_member": True}, format="json"
    )
    Member.objects.filter(external_id="ann").update(held=4)

    refused = admin_client.post(
        ADJ, {"member": "ann", "points": -7, "reason": "fix"}, format="json"
    )
    taken = admin_client.post(ADJ, {"member": "ann", "points": -6, "reason": "fix"}, format="json")
    unknown = admin_client.post(
        ADJ, {"member": "zed", "points": -1, "reason": "fix"}, format="json"
    )

    assert refused.status_code == 409
    assert refused.json()["code"] == "insufficient_points"
    assert taken.status_code == 201
    assert taken.json()["balance"] == 4
    assert unknown.status_code == 404
    assert LedgerEntry.objects.count() == 2
    assert AuditLog.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"member": "ann", "points": 10}, "reason"),
        ({"member": "ann", "points": 10, "reason": ""}, "reason"),
        ({"member": "ann", "points": 0, "reason": "x"}, "points"),
        ({"member": "ann", "points": "ten", "reason": "x"}, "points"),
        ({"member": "ann", "points": 2_000_000, "reason": "x"}, "points"),
        ({"points": 10, "reason": "x"}, "member"),
    ],
)
def test_bad_adjustments_are_400_naming_the_field(
    admin_client: APIClient, body: dict[str, object], field: str
) -> None:
    response = admin_client.post(ADJ, body, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert not LedgerEntry.objects.exists()


def test_balance_and_other_fields_cannot_be_mass_assigned(admin_client: APIClient) -> None:
    response = admin_client.post(
        ADJ,
        {
            "member": "ann",
            "points": 5,
            "reason": "x",
            "create_member": True,
            "balance": 10**6,
            "held": 3,
        },
        format="json",
    )
    assert response.status_code == 201
    ann = Member.objects.get(external_id="ann")
    assert (ann.balance, ann.held) == (5, 0)


def test_operator_endpoints_need_the_admin_scope_and_the_own_community(
    community: Community, make_client: Callable[..., APIClient]
) -> None:
    bot = make_client(community, ["events:write", "members:read"])
    other = make_client(community_create(slug="other", name="Other"), ["admin"])
    body = {"member": "ann", "points": 5, "reason": "x"}

    assert bot.post(ADJ, body, format="json").status_code == 403
    assert bot.get(RULES).status_code == 403
    assert other.post(ADJ, body, format="json").status_code == 404
    assert other.get(RULES).status_code == 404
    assert not LedgerEntry.objects.exists()


def test_the_audit_log_is_append_only_in_the_database(admin_client: APIClient) -> None:
    admin_client.post(
        ADJ, {"member": "ann", "points": 5, "reason": "x", "create_member": True}, format="json"
    )
    assert AuditLog.objects.exists()
    for sql in ("UPDATE points_auditlog SET actor = 'me'", "DELETE FROM points_auditlog"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql)


def test_rules_get_then_put_a_new_version(admin_client: APIClient) -> None:
    current = admin_client.get(RULES)
    assert current.status_code == 200
    assert current.json()["version"] == 1
    assert current.json()["rules"]["points"]["check_in"] == 5

    document = {**current.json()["rules"], "points": {"check_in": 8, "share": 5}}
    published = admin_client.put(
        RULES, {"rules": document, "note": "more for check-ins"}, format="json"
    )

    assert published.status_code == 201
    assert published.json()["version"] == 2
    assert [v["version"] for v in published.json()["versions"]] == [1, 2]
    scored = admin_client.post(
        "/api/v1/communities/acme/events",
        {"id": "c", "type": "check_in", "member": "a"},
        format="json",
    )
    assert scored.status_code == 201  # the admin scope includes the others
    assert (scored.json()["points"], scored.json()["rule_version"]) == (8, 2)
    assert AuditLog.objects.filter(action="rules.publish", target="v2").exists()


def test_invalid_rules_are_400_naming_each_field(admin_client: APIClient) -> None:
    response = admin_client.put(
        RULES,
        {"rules": {"points": {"shares": 5, "check_in": -1}, "oops": 1}},
        format="json",
    )
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"rules.points.shares", "rules.points.check_in", "rules.oops"} <= fields


def test_a_version_cannot_take_effect_before_the_latest(admin_client: APIClient) -> None:
    response = admin_client.put(
        RULES,
        {"rules": {"points": {"check_in": 5}}, "effective_from": "1999-01-01T00:00:00+08:00"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "effective_from"


@pytest.mark.parametrize("member", ["a/b", "has space", "\u202eevil", ".."])
def test_an_adjustment_member_id_uses_the_member_alphabet(community, make_client, member):
    admin = make_client(community, ["admin"])
    response = admin.post(
        "/api/v1/communities/acme/adjustments",
        {"member": member, "points": 5, "reason": "x", "create_member": True},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "member"


def test_adjustment_and_reversal_times_use_the_one_timestamp_format(community, make_client):
    admin = make_client(community, ["admin", "events:write"])
    created = admin.post(
        "/api/v1/communities/acme/adjustments",
        {"id": "ts-1", "member": "tz", "points": 5, "reason": "x", "create_member": True},
        format="json",
    ).json()["created_at"]
    assert created.endswith("Z")
    admin.post(
        "/api/v1/communities/acme/events",
        {"id": "e-ts", "type": "share", "member": "tz"},
        format="json",
    )
    reversed_at = admin.post("/api/v1/communities/acme/events/e-ts/reverse", {}, format="json")
    assert reversed_at.json()["reversed_at"].endswith("Z")
