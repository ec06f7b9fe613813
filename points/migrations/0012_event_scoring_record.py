"""Events keep a versioned scoring record instead of their public answer (decision 41): the
answer is rendered from the record; corrections read the record, never the answer.

Existing answers are converted; an uncounted event's content hash is cleared (the recycled
check looks only at counted events, decision 39)."""

from django.db import migrations, models

GATES = "('member_left','own_content','once','duplicate_content','cooldown','min_length','rejoin')"

FORWARD = f"""
UPDATE points_event e SET scoring = jsonb_build_object(
    'v', 1,
    'rule_type', CASE WHEN e.type = 'join' AND e.beneficiary_id IS NOT NULL
                      THEN 'invite' ELSE e.type END,
    'counted', e.beneficiary_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements(e.result->'awards') a
        WHERE a->>'rule' LIKE 'points.%' AND a->>'cap' IN {GATES}),
    'balance', COALESCE((e.result->>'balance')::bigint, 0),
    'awards', COALESCE((
        SELECT jsonb_agg(jsonb_build_array(a->'member', a->'rule', a->'base',
                                           COALESCE(a->'gross', a->'base'), a->'points',
                                           a->'cap') ORDER BY o)
        FROM jsonb_array_elements(e.result->'awards') WITH ORDINALITY AS x(a, o)), '[]'::jsonb))
"""

CLEAR_UNCOUNTED_HASHES = """
UPDATE points_event SET content_hash = ''
WHERE content_hash <> '' AND NOT (scoring->>'counted')::boolean
"""


class Migration(migrations.Migration):
    dependencies = [("points", "0011_rank_snapshot_derived")]

    operations = [
        migrations.AddField(
            model_name="event", name="scoring", field=models.JSONField(null=True)
        ),
        migrations.RunSQL(FORWARD, migrations.RunSQL.noop),
        migrations.RunSQL(CLEAR_UNCOUNTED_HASHES, migrations.RunSQL.noop),
        migrations.AlterField(model_name="event", name="scoring", field=models.JSONField()),
        migrations.RemoveField(model_name="event", name="result"),
    ]
