"""The jobs' (community, day) index on the day tallies holds only the types the jobs read
(decision 50): a member's own tally lookups can then only use the unique key, whatever the
statistics say. Built before the old index goes, so the jobs always have one."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("points", "0016_tallies_totals_keyed_by_community")]

    operations = [
        migrations.AddIndex(
            model_name="dailytally",
            index=models.Index(
                condition=models.Q(
                    ("event_type__in", ("*", "check_in", "content_featured", "help"))
                ),
                fields=["community", "day"],
                name="tally_jobs_community_day",
            ),
        ),
        migrations.RemoveIndex(model_name="dailytally", name="points_dail_communi_885a96_idx"),
    ]
