"""The rate limiter's counters when no Redis is configured (api/throttles.py): an unlogged
table (counters need no crash safety), one row per caller and window."""

from django.db import migrations

FORWARD = """
CREATE UNLOGGED TABLE IF NOT EXISTS api_rate_window (
    ident text NOT NULL,
    window_start bigint NOT NULL,
    hits integer NOT NULL,
    PRIMARY KEY (ident, window_start)
);
"""

BACKWARD = "DROP TABLE IF EXISTS api_rate_window;"


class Migration(migrations.Migration):
    dependencies = [("points", "0009_auditlog")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
