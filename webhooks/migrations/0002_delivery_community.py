# Keyed by community (docs/scaling.md): a delivery carries its message's community, and its
# unique key leads with it. Existing rows are backfilled from their message.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('points', '0014_all_time_total_is_lifetime_points'),
        ('webhooks', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='delivery',
            name='community',
            field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='points.community'),
        ),
        migrations.RunSQL(
            # The new foreign key is deferred: check the backfilled rows now, so that the
            # ALTER TABLEs below find no pending trigger events.
            sql="""
                UPDATE webhooks_delivery d SET community_id = m.community_id
                FROM webhooks_outboxmessage m
                WHERE m.id = d.message_id AND d.community_id IS NULL;
                SET CONSTRAINTS ALL IMMEDIATE;
                SET CONSTRAINTS ALL DEFERRED;
            """,
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name='delivery',
            name='community',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='points.community'),
        ),
        migrations.RemoveConstraint(
            model_name='delivery',
            name='delivery_unique',
        ),
        migrations.AddConstraint(
            model_name='delivery',
            constraint=models.UniqueConstraint(fields=('community', 'message', 'endpoint'), name='delivery_unique'),
        ),
    ]
