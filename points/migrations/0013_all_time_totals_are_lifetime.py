"""All-time totals were floored at zero after a debit; they are now exact sums and equal a
member's lifetime points (decision 42). Rows written under the old rule are set to it."""

from django.db import migrations

FORWARD = """
UPDATE points_periodtotal p SET points = m.lifetime_points
FROM points_member m
WHERE p.member_id = m.id AND p.kind = 'all_time' AND p.points <> m.lifetime_points
"""


class Migration(migrations.Migration):
    dependencies = [("points", "0012_event_scoring_record")]

    operations = [migrations.RunSQL(FORWARD, migrations.RunSQL.noop)]
