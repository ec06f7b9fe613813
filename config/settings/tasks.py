"""Celery: a real broker when CELERY_BROKER_URL is set, else a server-less filesystem transport."""

import os

from celery.schedules import crontab

from config.database import DATA_DIR

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "").strip() or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = DATA_DIR / "celery-queue"
    (_queue_dir / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_queue_dir),
        "store_processed": False,
        # kombu's broadcast (pidbox) files go under var/ too, not into the working directory
        "control_folder": str(_queue_dir / "control"),
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

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
