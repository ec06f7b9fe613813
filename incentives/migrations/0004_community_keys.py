# Keyed by community (docs/scaling.md): every unique key leads with the community. The
# one-to-one member fields become foreign keys whose unique key is (community, member); the
# new keys are created before the old ones go (the same names: dropped, then re-created, in
# this one transaction). Existing rows satisfy the wider keys: a member has one community.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('incentives', '0003_health'),
        ('points', '0014_all_time_total_is_lifetime_points'),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='koccandidate',
            constraint=models.UniqueConstraint(fields=('community', 'member'), name='koccandidate_unique_member'),
        ),
        migrations.AddConstraint(
            model_name='memberrole',
            constraint=models.UniqueConstraint(fields=('community', 'member'), name='memberrole_unique_member'),
        ),
        migrations.AddConstraint(
            model_name='membertier',
            constraint=models.UniqueConstraint(fields=('community', 'member'), name='membertier_unique_member'),
        ),
        # Drops UNIQUE (member_id) of each.
        migrations.AlterField(
            model_name='koccandidate',
            name='member',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='points.member'),
        ),
        migrations.AlterField(
            model_name='memberrole',
            name='member',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='points.member'),
        ),
        migrations.AlterField(
            model_name='membertier',
            name='member',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='points.member'),
        ),
        migrations.RemoveConstraint(
            model_name='assessmentmember',
            name='assessmentmember_unique',
        ),
        migrations.AddConstraint(
            model_name='assessmentmember',
            constraint=models.UniqueConstraint(fields=('community', 'assessment', 'member'), name='assessmentmember_unique'),
        ),
        migrations.RemoveConstraint(
            model_name='honor',
            name='honor_unique_member_category',
        ),
        migrations.AddConstraint(
            model_name='honor',
            constraint=models.UniqueConstraint(fields=('community', 'roll', 'category', 'member'), name='honor_unique_member_category'),
        ),
        migrations.RemoveConstraint(
            model_name='tierchange',
            name='tierchange_once_per_run',
        ),
        migrations.AddConstraint(
            model_name='tierchange',
            constraint=models.UniqueConstraint(condition=models.Q(('run', ''), _negated=True), fields=('community', 'member', 'run'), name='tierchange_once_per_run'),
        ),
    ]
