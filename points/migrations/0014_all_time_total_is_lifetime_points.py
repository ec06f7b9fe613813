"""The all-time total is the member's lifetime points (decision 48): its rows in
``points_periodtotal`` are no longer written nor read, and are removed."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("points", "0013_all_time_totals_are_lifetime")]

    operations = [
        migrations.RunSQL(
            "DELETE FROM points_periodtotal WHERE kind = 'all_time'", migrations.RunSQL.noop
        )
    ]
