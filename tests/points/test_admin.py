"""The Django admin: CSV bulk adjustments (validated whole, all or nothing, audited), rule set
versions added through a validated form, read-only ledger and audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from points.models import AuditLog, Community, LedgerEntry, Member, RuleSet

IMPORT = "/admin/points/auditlog/import-adjustments/"
# a date inside the window a new rule set version may take effect in (at most 366 days ahead)
SOON = dt.date.today() + dt.timedelta(days=30)  # noqa: DTZ011 - a day, read in any zone


@pytest.fixture
def staff(db: None) -> Client:
    user = User.objects.create_superuser("ops", "ops@example.com", "pw-1234567")
    client = Client()
    client.force_login(user)
    return client


def _upload(staff: Client, community: Community, text: str) -> Any:
    return staff.post(
        IMPORT,
        {
            "community": community.pk,
            "file": SimpleUploadedFile("awards.csv", text.encode(), "text/csv"),
            "note": "November prizes",
        },
    )


def test_a_good_csv_is_imported_whole_and_audited(staff: Client, community: Community) -> None:
    response = _upload(staff, community, "member,points,reason\nann,50,quiz\nbob,20,help desk\n")

    assert response.status_code == 302
    assert sorted(Member.objects.values_list("external_id", "balance")) == [
        ("ann", 50),
        ("bob", 20),
    ]
    assert LedgerEntry.objects.filter(kind="adjustment", actor="user:ops").count() == 2
    actions = sorted(AuditLog.objects.values_list("action", flat=True))
    assert actions == ["adjustment.create", "adjustment.create", "adjustments.bulk_import"]


def test_one_bad_row_and_nothing_is_written_with_every_error_by_line(
    staff: Client, community: Community
) -> None:
    response = _upload(staff, community, "ann,50,quiz\nbob,ten,oops\ncat,5,\nann,0,zero\n")

    assert response.status_code == 400
    page = response.content.decode()
    assert "line 2: points" in page
    assert "line 3: reason" in page
    assert "line 4: points" in page
    assert not LedgerEntry.objects.exists()
    assert not AuditLog.objects.exists()


def test_an_overdraft_in_any_row_rolls_the_whole_import_back(
    staff: Client, community: Community
) -> None:
    response = _upload(staff, community, "ann,50,quiz\nbob,-5,fix\n")

    assert response.status_code == 400
    assert "No member" in response.content.decode() or "spendable" in response.content.decode()
    assert not LedgerEntry.objects.exists()
    assert not Member.objects.filter(balance__gt=0).exists()


def test_a_rule_set_version_is_added_through_a_validated_form(
    staff: Client, community: Community
) -> None:
    bad = staff.post(
        "/admin/points/ruleset/add/",
        {
            "community": community.pk,
            "effective_from_0": SOON.isoformat(),
            "effective_from_1": "00:00:00",
            "rules": '{"points": {"shares": 5}}',
            "note": "typo",
        },
    )
    good = staff.post(
        "/admin/points/ruleset/add/",
        {
            "community": community.pk,
            "effective_from_0": SOON.isoformat(),
            "effective_from_1": "00:00:00",
            "rules": '{"points": {"share": 6}}',
            "note": "more for shares",
        },
    )

    assert bad.status_code == 200
    assert "points.shares" in bad.content.decode()
    assert good.status_code == 302
    latest = RuleSet.objects.order_by("-version").first()
    assert latest is not None
    assert (latest.version, latest.rules, latest.note) == (
        2,
        {"points": {"share": 6}},
        "more for shares",
    )
    # midnight of that day in the admin's time zone: that day or the one before in UTC
    assert SOON - latest.effective_from.astimezone(dt.UTC).date() in (
        dt.timedelta(0),
        dt.timedelta(days=1),
    )
    assert AuditLog.objects.get(action="rules.publish").actor == "user:ops"
    community.refresh_from_db()
    assert community.rules_revision == 2


def test_ledger_audit_and_existing_rule_sets_are_read_only(
    staff: Client, community: Community
) -> None:
    rule_set = RuleSet.objects.get()
    assert staff.get(f"/admin/points/ruleset/{rule_set.pk}/change/").status_code == 200
    assert staff.post(f"/admin/points/ruleset/{rule_set.pk}/delete/").status_code == 403
    assert staff.get("/admin/points/ledgerentry/add/").status_code == 403
    assert staff.get("/admin/points/auditlog/add/").status_code == 403
    assert staff.get("/admin/points/auditlog/").status_code == 200
    assert "Import adjustments (CSV)" in staff.get("/admin/points/auditlog/").content.decode()


def test_every_admin_change_is_in_the_admin_action_log(staff: Client, community: Community) -> None:
    staff.post(
        "/admin/points/ruleset/add/",
        {
            "community": community.pk,
            "effective_from_0": SOON.isoformat(),
            "effective_from_1": "00:00:00",
            "rules": '{"points": {"share": 6}}',
            "note": "logged",
        },
    )
    page = staff.get("/admin/admin/logentry/")
    assert page.status_code == 200
    latest = RuleSet.objects.order_by("-version").first()
    assert latest is not None
    assert str(latest) in page.content.decode()
    from django.contrib.admin.models import LogEntry

    assert LogEntry.objects.filter(user__username="ops").count() == 1
    assert (
        staff.post(f"/admin/admin/logentry/{LogEntry.objects.get().pk}/delete/").status_code == 403
    )
