"""Events and ledger entries check what they name once per statement, not row by row at COMMIT
(decision 56).

Five foreign keys were checked for every event ingested, one row at a time while the batch's
members stay locked: the event's member and beneficiary, the ledger entry's member and event
key, the event key's community. They give way to two statement triggers that look the same
rows up set-wise, and check more: an event's member and beneficiary, and a ledger entry's
member and event key, must belong to the row's own community. The event key's community is
implied: every key is written with its event (by ingestion in the same statement, otherwise by
``points_event_keys``), whose member the new trigger checks.

Each trigger function runs with ``enable_seqscan = off``: its plan is cached for the session
and this deployment's PostgreSQL may hold no statistics (autovacuum off, a new month's
partition), so the look-ups must be index probes whatever the planner guesses.
"""

import django.db.models.deletion
from django.db import migrations, models

EVENT_CHECK = """
CREATE FUNCTION points_event_members_check() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off AS $$
DECLARE
    orphan record;
BEGIN
    SELECT e.id, e.community_id, e.member_id, e.beneficiary_id INTO orphan
    FROM inserted_events e
    WHERE (SELECT m.community_id FROM points_member m WHERE m.id = e.member_id)
              IS DISTINCT FROM e.community_id
       OR (e.beneficiary_id IS NOT NULL
           AND (SELECT m.community_id FROM points_member m WHERE m.id = e.beneficiary_id)
               IS DISTINCT FROM e.community_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE foreign_key_violation USING
            TABLE = 'points_event',
            MESSAGE = format(
                'event %s: member %s or beneficiary %s is not a member of community %s',
                orphan.id, orphan.member_id, orphan.beneficiary_id, orphan.community_id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER points_event_members AFTER INSERT ON points_event
    REFERENCING NEW TABLE AS inserted_events
    FOR EACH STATEMENT EXECUTE FUNCTION points_event_members_check();
"""

ENTRY_CHECK = """
CREATE FUNCTION points_ledgerentry_refs_check() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off AS $$
DECLARE
    orphan record;
BEGIN
    SELECT e.id, e.community_id, e.member_id, e.event_id INTO orphan
    FROM inserted_entries e
    WHERE (SELECT m.community_id FROM points_member m WHERE m.id = e.member_id)
              IS DISTINCT FROM e.community_id
       OR (e.event_id IS NOT NULL
           AND (SELECT k.community_id FROM points_eventkey k WHERE k.id = e.event_id)
               IS DISTINCT FROM e.community_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE foreign_key_violation USING
            TABLE = 'points_ledgerentry',
            MESSAGE = format(
                'ledger entry %s: member %s or event %s is not of community %s',
                orphan.id, orphan.member_id, orphan.event_id, orphan.community_id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER points_ledgerentry_refs AFTER INSERT ON points_ledgerentry
    REFERENCING NEW TABLE AS inserted_entries
    FOR EACH STATEMENT EXECUTE FUNCTION points_ledgerentry_refs_check();
"""

DROP_CHECKS = """
DROP TRIGGER points_event_members ON points_event;
DROP FUNCTION points_event_members_check();
DROP TRIGGER points_ledgerentry_refs ON points_ledgerentry;
DROP FUNCTION points_ledgerentry_refs_check();
"""

ENTRY_EVENT_KEY = "points_ledgerentry_event_id_fk_points_eventkey"


def _member(related_name: str, *, null: bool = False) -> models.ForeignKey:
    return models.ForeignKey(
        db_constraint=False,
        db_index=False,
        null=null,
        blank=null,
        on_delete=django.db.models.deletion.PROTECT,
        related_name=related_name,
        to="points.member",
    )


class Migration(migrations.Migration):
    dependencies = [("points", "0019_periodtotal_updates_hot")]

    operations = [
        migrations.AlterField("event", "member", _member("events")),
        migrations.AlterField("event", "beneficiary", _member("+", null=True)),
        migrations.AlterField("ledgerentry", "member", _member("entries")),
        migrations.AlterField(
            "eventkey",
            "community",
            models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="points.community",
            ),
        ),
        migrations.RunSQL(
            f"ALTER TABLE points_ledgerentry DROP CONSTRAINT {ENTRY_EVENT_KEY}",
            f"ALTER TABLE points_ledgerentry ADD CONSTRAINT {ENTRY_EVENT_KEY} "
            "FOREIGN KEY (event_id) REFERENCES points_eventkey (id) DEFERRABLE INITIALLY DEFERRED",
        ),
        migrations.RunSQL(EVENT_CHECK + ENTRY_CHECK, DROP_CHECKS),
    ]
