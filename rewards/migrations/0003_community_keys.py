# Keyed by community (docs/scaling.md): every unique key leads with the community. A payout's
# one-to-one sources become foreign keys with unique (community, source) keys (created before
# the old UNIQUE (source) go; NULLs stay distinct, as before). The lone (code) indexes go: a
# reward is looked up by community and code, a variant by reward and code.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('points', '0014_all_time_total_is_lifetime_points'),
        ('rewards', '0002_redemption_community_index'),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='payout',
            constraint=models.UniqueConstraint(fields=('community', 'redemption'), name='payout_unique_redemption'),
        ),
        migrations.AddConstraint(
            model_name='payout',
            constraint=models.UniqueConstraint(fields=('community', 'allocation'), name='payout_unique_allocation'),
        ),
        # Drops UNIQUE (allocation_id) and UNIQUE (redemption_id).
        migrations.AlterField(
            model_name='payout',
            name='allocation',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='payouts', related_query_name='payout', to='rewards.allocation'),
        ),
        migrations.AlterField(
            model_name='payout',
            name='redemption',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='payouts', related_query_name='payout', to='rewards.redemption'),
        ),
        migrations.RemoveConstraint(
            model_name='allocation',
            name='allocation_unique_index',
        ),
        migrations.AddConstraint(
            model_name='allocation',
            constraint=models.UniqueConstraint(fields=('community', 'campaign', 'index'), name='allocation_unique_index'),
        ),
        migrations.RemoveConstraint(
            model_name='rewardvariant',
            name='variant_unique_code',
        ),
        migrations.AddConstraint(
            model_name='rewardvariant',
            constraint=models.UniqueConstraint(fields=('community', 'reward', 'code'), name='variant_unique_code'),
        ),
        migrations.AlterField(
            model_name='reward',
            name='code',
            field=models.SlugField(db_index=False, max_length=64),
        ),
        migrations.AlterField(
            model_name='rewardvariant',
            name='code',
            field=models.SlugField(db_index=False, max_length=64),
        ),
    ]
