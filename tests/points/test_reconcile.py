"""The nightly reconciliation checks what its docstring says: every balance against the sum of
the member's entries and against the latest entry's ``balance_after``. Drift of each kind is
planted behind the services' back (the ledger is append-only, so a bad entry is appended)."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from points.models import Community, EntryKind, LedgerEntry, Member
from points.services import EventInput, events_ingest, ledger_reconcile


def _members(community: Community, *names: str) -> None:
    outcomes = events_ingest(
        community=community,
        events=[EventInput(client_id=f"s-{n}", type="share", member=n) for n in names],
    )
    assert {o.status for o in outcomes} == {"accepted"}


def _append_entry(community: Community, name: str, points: int, balance_after: int) -> None:
    LedgerEntry.objects.create(
        community=community,
        member=Member.objects.get(community=community, external_id=name),
        kind=EntryKind.ADJUSTMENT,
        points=points,
        balance_after=balance_after,
        reason="planted by the test",
        created_at=timezone.now(),
    )


def test_a_clean_ledger_reconciles_on_both_checks(community: Community) -> None:
    _members(community, "ann", "bob")
    Member.objects.create(
        community=community,
        external_id="new",
        joined_at=timezone.now(),
        last_event_at=timezone.now(),
    )  # no entries, balance 0: clean on both checks

    assert ledger_reconcile(community=community, period="p") == {
        "members": 3,
        "mismatched": 0,
        "sum_mismatched": 0,
        "balance_after_mismatched": 0,
        "examples": [],
    }


def test_each_kind_of_drift_is_found_and_named(community: Community) -> None:
    _members(community, "ann", "bob", "cat", "dan")  # 5 points each
    # ann: an entry whose running balance is wrong; the balance equals the sum of the entries
    _append_entry(community, "ann", points=3, balance_after=5)
    Member.objects.filter(external_id="ann").update(balance=F("balance") + 3)
    # bob: an entry that never reached the balance; the balance equals the latest balance_after
    _append_entry(community, "bob", points=3, balance_after=5)
    # cat: the balance changed with no entry at all: both checks fail
    Member.objects.filter(external_id="cat").update(balance=F("balance") + 7)

    result = ledger_reconcile(community=community, period="p")

    assert result == {
        "members": 4,
        "mismatched": 3,
        "sum_mismatched": 2,  # bob, cat
        "balance_after_mismatched": 2,  # ann, cat
        "examples": ["ann", "bob", "cat"],
    }


def test_a_running_balance_drift_alone_is_not_missed(community: Community) -> None:
    """The check the old query lacked: balance = sum of entries, yet the latest entry's
    balance_after disagrees."""
    _members(community, "ann")
    _append_entry(community, "ann", points=2, balance_after=4)
    Member.objects.filter(external_id="ann").update(balance=F("balance") + 2)

    result = ledger_reconcile(community=community, period="p")

    assert (result["mismatched"], result["sum_mismatched"], result["examples"]) == (1, 0, ["ann"])
    assert result["balance_after_mismatched"] == 1


def test_the_latest_entry_is_the_last_posted_not_any_with_the_right_balance(
    community: Community,
) -> None:
    """An older entry with the right balance_after does not hide a wrong latest one."""
    _members(community, "ann")  # entry 1: +5, balance_after 5
    _append_entry(community, "ann", points=1, balance_after=6)
    _append_entry(community, "ann", points=-1, balance_after=6)  # should be 5
    # balance 5 = 5 + 1 - 1: the sum agrees; the latest balance_after (6) does not

    result = ledger_reconcile(community=community, period="p")

    assert (result["sum_mismatched"], result["balance_after_mismatched"]) == (0, 1)


def test_only_the_community_reconciled_is_counted(community: Community) -> None:
    from points.services import community_create

    other = community_create(slug="other", name="Other")
    _members(community, "ann")
    _members(other, "ann")
    Member.objects.filter(community=other).update(balance=F("balance") + 1)

    assert ledger_reconcile(community=community, period="p")["mismatched"] == 0
    assert ledger_reconcile(community=other, period="p")["examples"] == ["ann"]
