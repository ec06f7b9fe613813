"""Rows that name a member no longer carry a foreign key of their own to the community
(decision 52): the member's row carries it. Each was checked at every commit, a quarter of
the checks an event costs, under the members' locks."""

import django.db.models.deletion
from django.db import migrations, models


def _community(related_name: str) -> models.ForeignKey:
    return models.ForeignKey(
        db_constraint=False,
        db_index=False,
        on_delete=django.db.models.deletion.PROTECT,
        related_name=related_name,
        to="points.community",
    )


class Migration(migrations.Migration):
    dependencies = [("points", "0017_tally_jobs_index")]

    operations = [
        migrations.AlterField("awardonce", "community", _community("+")),
        migrations.AlterField("dailytally", "community", _community("+")),
        migrations.AlterField("event", "community", _community("events")),
        migrations.AlterField("ledgerentry", "community", _community("+")),
        migrations.AlterField("periodtotal", "community", _community("+")),
    ]
