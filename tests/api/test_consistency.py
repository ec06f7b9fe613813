"""Answers agree with the last write: a rule set read back after a publish (from another
process, or through a stale cached community row), rule sets that would silently break a
community, and what an adjustment's id promises when the adjustment was refused."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings
from django.utils import timezone
from psycopg.conninfo import make_conninfo
from rest_framework.test import APIClient

from api.auth import api_key_cache_clear
from points.exceptions import ValidationFailed
from points.models import AuditLog, Community, RuleSet
from points.rules import DEFAULT_RULES
from points.services import community_create, rule_set_publish

RULES = "/api/v1/communities/acme/rules"
SHARE_7 = {**DEFAULT_RULES, "points": {**DEFAULT_RULES["points"], "share": 7}}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def key_cache_on() -> Iterator[None]:
    """Production's per-process key cache (the test settings turn it off): the cached key
    carries the community row as it was when the key was checked."""
    api_key_cache_clear()
    with override_settings(API_KEY_CACHE_SECONDS=60.0):
        yield
    api_key_cache_clear()


def _test_database_conninfo() -> str:
    db = connection.settings_dict
    return make_conninfo(
        dbname=db["NAME"],
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
    )


PUBLISH_IN_ANOTHER_PROCESS = """
import django
django.setup()
from points.models import Community
from points.services import rule_set_publish
rule_set_publish(
    community=Community.objects.get(slug="acme"),
    rules={"points": {"share": 7}},
    actor="other-process",
)
"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("key_cache_on")
def test_rules_read_back_shows_a_version_another_process_just_published(
    make_client: Callable[..., APIClient],
) -> None:
    community = community_create(slug="acme", name="Acme")
    client = make_client(community, ["admin"])
    assert client.get(RULES).json()["version"] == 1  # key, community row and rules now cached

    subprocess.run(  # noqa: S603 - this interpreter, a constant script
        [sys.executable, "-c", PUBLISH_IN_ANOTHER_PROCESS],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": _test_database_conninfo(),
        },
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )

    # every read after the publish, not only the first, shows it (the issue saw v3, v2, v3 …)
    bodies = [client.get(RULES).json() for _ in range(3)]
    assert [b["version"] for b in bodies] == [2, 2, 2]
    assert bodies[0]["rules"] == {"points": {"share": 7}}


@pytest.mark.usefixtures("key_cache_on")
def test_rules_read_back_is_current_although_the_cached_community_row_is_older(
    community: Community, make_client: Callable[..., APIClient]
) -> None:
    client = make_client(community, ["admin"])
    assert client.get(RULES).json()["version"] == 1
    # another worker's publish: its own community row; this process's cached row says rev 1
    rule_set_publish(community=Community.objects.get(pk=community.pk), rules=SHARE_7)

    read = client.get(RULES)

    assert read.status_code == 200
    assert read.json()["version"] == 2
    assert read.json()["rules"]["points"]["share"] == 7


# --- publishing: what would silently break a community ------------------------------------


@pytest.fixture
def admin_client(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["admin"])


@pytest.mark.parametrize(
    "rules",
    [{}, {"points": {}}, {"points": {"check_in": 0, "share": 0}}],
    ids=["empty", "no-points", "all-zero"],
)
def test_a_rule_set_that_pays_nothing_needs_confirm_zero(
    admin_client: APIClient, rules: dict[str, object]
) -> None:
    refused = admin_client.put(RULES, {"rules": rules}, format="json")

    assert refused.status_code == 400
    assert refused["Content-Type"].startswith("application/problem+json")
    assert [(e["field"], e["code"]) for e in refused.json()["errors"]] == [
        ("rules.points", "pays_nothing")
    ]
    assert RuleSet.objects.count() == 1
    assert admin_client.get(RULES).json()["version"] == 1

    confirmed = admin_client.put(RULES, {"rules": rules, "confirm_zero": True}, format="json")

    assert confirmed.status_code == 201
    assert confirmed.json()["version"] == 2
    audit = AuditLog.objects.get(action="rules.publish")
    assert audit.data["confirm_zero"] is True
    assert audit.actor.startswith("key:")


@pytest.mark.parametrize(
    ("ahead", "status"),
    [
        (dt.timedelta(days=365), 201),
        (dt.timedelta(days=367), 400),
        (dt.timedelta(days=365 * 7973), 400),  # about year 9950, as the 9999
    ],
)
def test_effective_from_is_at_most_366_days_ahead(
    admin_client: APIClient, ahead: dt.timedelta, status: int
) -> None:
    when = timezone.now() + ahead
    response = admin_client.put(
        RULES, {"rules": SHARE_7, "effective_from": when.isoformat()}, format="json"
    )

    assert response.status_code == status
    if status == 400:
        assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
            ("effective_from", "too_far_ahead")
        ]
        assert RuleSet.objects.count() == 1
    # whatever was accepted, a later version can still be published
    later = admin_client.put(
        RULES,
        {"rules": SHARE_7, "effective_from": (when + dt.timedelta(seconds=1)).isoformat()},
        format="json",
    )
    assert later.status_code == (201 if status == 201 else 400)


def test_a_year_9999_effective_from_is_refused_by_the_service_for_every_caller(
    community: Community,
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        rule_set_publish(
            community=community,
            rules=SHARE_7,
            effective_from=dt.datetime(9999, 1, 1, tzinfo=dt.UTC),
        )
    assert [e.code for e in refused.value.errors] == ["too_far_ahead"]
    assert RuleSet.objects.count() == 1
    assert not AuditLog.objects.exists()


def _wait_for_a_lock_wait(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh stats inside a transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    pytest.fail("the second publisher never waited for the community lock")


@pytest.mark.django_db(transaction=True)
def test_the_order_check_runs_under_the_community_lock() -> None:
    """A publisher that waited for another's lock checks the order against the version the
    other one committed, not against what it read before waiting."""
    community = community_create(slug="acme", name="Acme")
    soon = timezone.now() + dt.timedelta(days=5)
    later = timezone.now() + dt.timedelta(days=10)
    outcome: list[object] = []

    def publish_soon() -> None:
        try:
            rule_set_publish(
                community=Community.objects.get(pk=community.pk),
                rules=SHARE_7,
                effective_from=soon,
            )
            outcome.append("published")
        except ValidationFailed as exc:
            outcome.append([e.code for e in exc.errors])
        finally:
            connection.close()

    with transaction.atomic():
        Community.objects.select_for_update(no_key=True).get(pk=community.pk)
        thread = threading.Thread(target=publish_soon)
        thread.start()
        _wait_for_a_lock_wait()
        rule_set_publish(community=community, rules=SHARE_7, effective_from=later)
    thread.join(timeout=30)

    assert outcome == [["before_latest_version"]]
    assert list(RuleSet.objects.order_by("version").values_list("version", "effective_from")) == [
        (1, dt.datetime(2000, 1, 1, tzinfo=dt.UTC)),
        (2, later),
    ]
    assert AuditLog.objects.filter(action="rules.publish").count() == 1


def test_the_admin_form_shows_the_same_refusals_and_publishes_once_confirmed(
    community: Community,
) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    staff = Client()
    staff.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw-1234567"))
    soon = (timezone.now() + dt.timedelta(days=30)).date().isoformat()

    def add(**fields: str) -> object:
        form = {
            "community": str(community.pk),
            "effective_from_0": soon,
            "effective_from_1": "00:00:00",
            "rules": '{"points": {"share": 0}}',
            "note": "",
            **fields,
        }
        return staff.post("/admin/points/ruleset/add/", form)

    pays_nothing = add()
    far_ahead = add(rules='{"points": {"share": 6}}', effective_from_0="9999-01-01")
    confirmed = add(confirm_zero="on", note="a quiet month")

    assert pays_nothing.status_code == 200
    assert "every event type would score 0" in pays_nothing.content.decode()
    assert far_ahead.status_code == 200
    assert "at most 366 days ahead" in far_ahead.content.decode()
    assert confirmed.status_code == 302
    assert list(RuleSet.objects.values_list("version", "rules")) == [
        (1, DEFAULT_RULES),
        (2, {"points": {"share": 0}}),
    ]
    audit = AuditLog.objects.get(action="rules.publish")
    assert (audit.actor, audit.target, audit.data["confirm_zero"]) == ("user:ops", "v2", True)
