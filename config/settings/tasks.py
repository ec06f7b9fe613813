"""Celery: a real broker when CELERY_BROKER_URL is set, else a server-less filesystem transport."""

import os

from celery.schedules import crontab
from kombu import Exchange, Queue

from config.database import filesystem_broker_options, task_queue_dir

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "").strip() or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(
        task_queue_dir(os.environ.get("DATABASE_URL", "").strip())
    )
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# Queues: every task is routed here and nowhere else (docs/operations.md, "Queues").
# - delivery: outgoing HTTP, short and latency-bound: webhook deliveries, which also carry
#   payouts to the paying bot (``payout.requested`` goes through the outbox).
# - periodic: light, frequent work that must not wait behind a long job: the beat fan-outs
#   (one message per community, nothing else), rank snapshot refreshes and builds (the
#   leaderboard follows points within seconds), the ledger reconciliation (read-only).
# - heavy: the per-community jobs that write many rows or scan a month: tiers, KOC, honor
#   rolls, member refresh, points expiry, automatic campaigns (welcome packets, content
#   rewards). Each is fenced, late-acked and may take minutes on a large community.
# A task missing from the table goes to the default queue, ``periodic``; the routing test
# (tests/test_task_routing.py) fails on any project task not listed here.
TASK_QUEUE_DELIVERY = "delivery"
TASK_QUEUE_PERIODIC = "periodic"
TASK_QUEUE_HEAVY = "heavy"
TASK_QUEUE_NAMES = (TASK_QUEUE_DELIVERY, TASK_QUEUE_PERIODIC, TASK_QUEUE_HEAVY)
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name) for name in TASK_QUEUE_NAMES
)
CELERY_TASK_DEFAULT_QUEUE = TASK_QUEUE_PERIODIC
_ROUTING = {
    TASK_QUEUE_DELIVERY: [
        "webhooks.tasks.deliver_due",
    ],
    TASK_QUEUE_PERIODIC: [
        "points.tasks.rank_snapshots_refresh_all",
        "points.tasks.rank_snapshots_refresh_community",
        "points.tasks.rank_snapshot_build_period",
        "points.tasks.ledger_reconcile_all",
        "points.tasks.ledger_reconcile_community",
        "points.tasks.points_expire_all",
        "points.tasks.history_partitions_ensure",
        "incentives.tasks.tiers_evaluate_all",
        "incentives.tasks.koc_detect_all",
        "incentives.tasks.honor_rolls_publish_all",
        "incentives.tasks.refresh_run_all",
        "rewards.tasks.auto_campaigns_scan_all",
    ],
    TASK_QUEUE_HEAVY: [
        "points.tasks.points_expire_community",
        "incentives.tasks.tiers_evaluate_community",
        "incentives.tasks.koc_detect_community",
        "incentives.tasks.honor_roll_publish_community",
        "incentives.tasks.refresh_run_community",
        "rewards.tasks.auto_campaigns_scan_community",
    ],
}
CELERY_TASK_ROUTES = {task: {"queue": queue} for queue, tasks in _ROUTING.items() for task in tasks}

# Every periodic job is declared here and nowhere else.
CELERY_BEAT_SCHEDULE = {
    "rank-snapshots-refresh": {
        "task": "points.tasks.rank_snapshots_refresh_all",
        "schedule": 30.0,
    },
    "webhooks-deliver": {
        "task": "webhooks.tasks.deliver_due",
        "schedule": 10.0,
    },
    "points-expire-daily": {
        "task": "points.tasks.points_expire_all",
        "schedule": crontab(hour=16, minute=5),  # 00:05 in Asia/Shanghai
    },
    # Incentive jobs: hourly fan-outs, each fenced per community and local day (tiers, KOC) or
    # local month (honor rolls), so every community runs soon after its own midnight.
    "incentives-tiers": {
        "task": "incentives.tasks.tiers_evaluate_all",
        "schedule": crontab(minute=7),
    },
    "incentives-koc": {
        "task": "incentives.tasks.koc_detect_all",
        "schedule": crontab(minute=17),
    },
    "incentives-honor-rolls": {
        "task": "incentives.tasks.honor_rolls_publish_all",
        "schedule": crontab(minute=27),
    },
    # Member refresh (换血): fenced per community and local month, so the first run of each
    # month does the work.
    "incentives-refresh": {
        "task": "incentives.tasks.refresh_run_all",
        "schedule": crontab(minute=37),
    },
    # Months of the events and the ledger, made three ahead (points.history); daily, so a
    # missed day or two changes nothing.
    "history-partitions-ensure": {
        "task": "points.tasks.history_partitions_ensure",
        "schedule": crontab(hour=2, minute=47),
    },
    "ledger-reconcile-nightly": {
        "task": "points.tasks.ledger_reconcile_all",
        "schedule": crontab(hour=3, minute=17),
    },
    # Welcome packets and content rewards: events since the last scan (rewards.campaigns).
    "rewards-auto-campaigns": {
        "task": "rewards.tasks.auto_campaigns_scan_all",
        "schedule": 60.0,
    },
}
