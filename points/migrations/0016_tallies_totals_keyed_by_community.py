"""Unique keys of the day tallies and period totals lead with the community (issue 14), as
Citus needs to distribute them by community; the ON CONFLICT clauses name the new keys."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('points', '0015_partitioned_history'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='dailytally',
            name='tally_unique_member_day_type',
        ),
        migrations.RemoveConstraint(
            model_name='periodtotal',
            name='periodtotal_unique_member_period',
        ),
        migrations.AddConstraint(
            model_name='dailytally',
            constraint=models.UniqueConstraint(fields=('community', 'member', 'day', 'event_type'), name='tally_unique_member_day_type'),
        ),
        migrations.AddConstraint(
            model_name='periodtotal',
            constraint=models.UniqueConstraint(fields=('community', 'member', 'kind', 'start'), name='periodtotal_unique_member_period'),
        ),
    ]
