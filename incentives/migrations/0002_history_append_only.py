"""Tier history and published honor rolls are append-only in the database: a trigger refuses
UPDATE and DELETE (a published roll never changes; a tier change is history)."""

from django.db import migrations

TABLES = ("incentives_tierchange", "incentives_honorroll", "incentives_honor")

FORWARD = """
CREATE OR REPLACE FUNCTION incentives_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
""" + "".join(
    f"""
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION incentives_append_only();
"""
    for table in TABLES
)

BACKWARD = "".join(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t};\n" for t in TABLES) + (
    "DROP FUNCTION IF EXISTS incentives_append_only();\n"
)


class Migration(migrations.Migration):
    dependencies = [("incentives", "0001_incentive_jobs")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
