"""Period totals: the board index, which held ``points``, gives way to one on the period alone,
so the per-event update of a total is a HOT update (decision 54). Both built and dropped
concurrently: every paid event writes this table, and a plain CREATE or DROP INDEX would
hold its writes for the build. The new index comes first, so the snapshot builds and the
honor roll always have one."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # CREATE / DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("points", "0018_community_implied_by_member"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="periodtotal",
            index=models.Index(
                condition=models.Q(("active", True)),
                fields=["community", "kind", "start"],
                name="periodtotal_period",
            ),
        ),
        RemoveIndexConcurrently(
            model_name="periodtotal",
            name="periodtotal_board",
        ),
    ]
