"""The ledger is append-only in the database, not only by convention: a trigger refuses every
UPDATE and DELETE of a ledger entry. (TRUNCATE, which needs table ownership, stays possible for
the owner, e.g. the test suite's flush; the production role is not the owner: docs/security.md.)
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION points_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'points_ledgerentry is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER points_ledgerentry_append_only
    BEFORE UPDATE OR DELETE ON points_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION points_ledger_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS points_ledgerentry_append_only ON points_ledgerentry;
DROP FUNCTION IF EXISTS points_ledger_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("points", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
