"""The filesystem broker (``make run`` without ``CELERY_BROKER_URL``) keeps one folder per
database: a task names rows of the database it was queued for, so a worker on another
database must never take it (a benchmark's leftover rank rebuilds used to fail in the
development worker with ``Community.DoesNotExist``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.database import BASE_DIR, task_queue_dir


@pytest.mark.parametrize(
    ("url", "folder"),
    [
        ("postgresql://postgres@127.0.0.1:5432/main_dev", "main_dev"),
        ("postgres://u:secret@db.example:6432/incentives?sslmode=require", "incentives"),
        ("host=/run/postgresql dbname=bench_incentives", "bench_incentives"),
        ("postgresql://u@h/db%20name", "db_name"),
        ("postgresql://u@h/..%2F..%2Fetc", "_.._etc"),  # never outside the queue folder
        ("", "default"),
        ("not a url", "default"),
    ],
)
def test_each_database_has_its_own_queue_folder(url, folder, tmp_path):
    assert task_queue_dir(url, tmp_path) == tmp_path / "celery-queue" / folder


def _broker_folders(database_url: str, data_dir: Path) -> dict[str, str]:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.CELERY_BROKER_TRANSPORT_OPTIONS))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": "",
        "INCENTIVES_DATA_DIR": str(data_dir),
    }
    out = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, check=True
    )
    return dict(json.loads(out.stdout.decode().strip().splitlines()[-1]))


def test_settings_route_the_filesystem_broker_by_database(tmp_path):
    one = _broker_folders("postgresql://postgres@127.0.0.1:5432/one", tmp_path)
    two = _broker_folders("postgresql://postgres@127.0.0.1:5432/two", tmp_path)

    assert one["data_folder_in"] == one["data_folder_out"] == str(tmp_path / "celery-queue/one")
    assert two["data_folder_in"] == str(tmp_path / "celery-queue/two")
    assert (tmp_path / "celery-queue/one/control").is_dir()


def test_the_test_suite_queues_in_a_folder_of_its_own():
    """Tests run against ``DATABASE_URL``'s server but on a test database of their own: tasks
    they queue must not land where ``make run``'s worker for that database reads."""
    from django.conf import settings

    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        pytest.skip("a real broker is configured for this run")
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"].endswith(
        "/celery-queue/tests"
    )
