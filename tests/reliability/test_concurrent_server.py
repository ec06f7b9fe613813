"""16 threads against the real server (gunicorn, real PostgreSQL): new events, the same ids
from several threads at once, conflicting bodies and reversals. Each id is stored once, every
2xx answer for an id is the same, reversals are idempotent, and the ledger stays whole."""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum

from bench.server import gunicorn
from points.models import Community, Event, LedgerEntry, Member
from points.services import api_key_create, community_create
from tests.test_celery_worker import _test_database_url

THREADS = 16
REQUESTS_PER_THREAD = 60


@pytest.mark.django_db(transaction=True)
def test_sixteen_threads_against_the_real_server(tmp_path: Path) -> None:
    community: Community = community_create(slug="crowd", name="Crowd")
    _, key = api_key_create(community=community, scopes=["events:write"], name="crowd")
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DB_CONN_MAX_AGE": "60",
        "API_RATE_LIMIT_KEY": "1000000/min",
        "INCENTIVES_DATA_DIR": str(tmp_path / "data"),
    }
    connection.close()
    answers: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    reversals: dict[str, list[Any]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[str] = []
    ids = [f"ev-{i}" for i in range(300)]  # shared: threads collide on the same ids

    def body_for(event_id: str, variant: int = 0) -> dict[str, Any]:
        n = int(event_id.split("-")[1])
        kind = ("share", "message", "check_in", "ugc_post", "help")[
            n % 5 if not variant else 4 - n % 5
        ]
        return {"id": event_id, "type": kind, "member": f"m{n % 23}"}

    with gunicorn(
        env=env, workers=3, worker_class="gthread", threads=4, log_path=tmp_path / "g.log"
    ) as server:

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
            for _ in range(REQUESTS_PER_THREAD):
                event_id = rng.choice(ids[: 40 + seed * 16])
                roll = rng.random()
                if roll < 0.1:
                    path, body = f"/api/v1/communities/crowd/events/{event_id}/reverse", {}
                elif roll < 0.15:
                    path, body = "/api/v1/communities/crowd/events", body_for(event_id, 1)
                else:
                    path, body = "/api/v1/communities/crowd/events", body_for(event_id)
                try:
                    conn.request("POST", path, json.dumps(body), headers)
                    response = conn.getresponse()
                    data = json.loads(response.read() or b"{}")
                except (http.client.HTTPException, ConnectionError):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                    continue
                with lock:
                    if response.status >= 500:
                        errors.append(f"{response.status} {path} {data}")
                    elif path.endswith("/reverse"):
                        if response.status in (200, 201):
                            reversals[event_id].append(data)
                    elif response.status in (200, 201):
                        answers[event_id].append((response.status, data))
            conn.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert not errors, errors[:5]
    assert sum(len(a) for a in answers.values()) > THREADS * REQUESTS_PER_THREAD // 2
    for event_id, got in answers.items():
        assert Event.objects.filter(community=community, client_id=event_id).count() == 1
        assert sum(1 for status, _ in got if status == 201) <= 1, event_id
        first = got[0][1]
        assert all(data == first for _, data in got), event_id
    for event_id, got in reversals.items():
        assert all(data == got[0] for data in got), event_id
        assert Event.objects.get(community=community, client_id=event_id).reversed_at
    for member in Member.objects.filter(community=community):
        total = LedgerEntry.objects.filter(member=member).aggregate(s=Sum("points"))["s"] or 0
        assert member.balance == total >= 0
        assert member.owed >= 0
