"""Two versions of event ingestion, measured in lockstep (not part of ``make bench``).

``python -m bench.lockstep CODE_A DB_A CODE_B DB_B``: two child processes, each importing the
service from its own checkout (``CODE``, e.g. a ``git worktree`` of an older commit) and
writing to its own database (``DB``, a URL, migrated by that checkout), post batches of 500
new events (or, with ``LOCKSTEP_SIZE=1``, single events to ``…/events``, 500 per step)
through Django's test client **in turn**, one step each, over and over. Each reports its own
CPU and its PostgreSQL backend's CPU per event (read from ``/proc``: the server must run on
this machine).

Why: this machine's speed drifts by ±15% within minutes, more than most changes to the hot
path are worth, so two ``make bench`` runs a few minutes apart cannot tell them apart. Taking
turns batch by batch, both versions see the same machine. The figures are in-process CPU (no
HTTP, no concurrency), for A/B only; ``make bench`` gives the figures that count.

Environment: ``LOCKSTEP_SIZE`` (events per request, 500; 1 posts single events),
``LOCKSTEP_WARMUP`` (steps each before measuring, 30), ``LOCKSTEP_BATCHES`` (measured steps
each, 100), ``LOCKSTEP_MEMBERS`` (10,000).
"""

from __future__ import annotations

import json
import os
import sys
import time
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from typing import Any

STEP = 500  # events per step


def _child(code: str, url: str, pipe: Connection, seed: int) -> None:
    # Import this checkout's service, not the one the virtualenv's editable install names;
    # Celery's Django fix-up puts the working directory first on the path, hence the chdir.
    os.chdir(code)
    sys.path[:] = [code, *(p for p in sys.path if p not in ("", os.path.dirname(__file__)))]
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ.setdefault("API_RATE_LIMIT_KEY", "100000000/min")  # as make bench does
    import logging

    import django

    django.setup()
    logging.disable(logging.INFO)  # no access line per request
    from django.db import connection
    from django.test import Client

    from bench.load import EventSource
    from points.models import Scope
    from points.services import api_key_create, community_create

    slug = f"lockstep-{seed}-{int(time.time() * 1000)}"
    community = community_create(slug=slug, name=slug)
    _key, key = api_key_create(community=community, scopes=[Scope.EVENTS_WRITE], name="lockstep")
    client, source = (
        Client(),
        EventSource(f"l{seed}", seed, int(os.environ.get("LOCKSTEP_MEMBERS", "10000"))),
    )
    size = int(os.environ.get("LOCKSTEP_SIZE", str(STEP)))
    path = f"/api/v1/communities/{slug}/events" + ("" if size == 1 else "/batch")

    def backend_cpu() -> float:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def post(body: str) -> None:
        response = client.post(
            path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Api-Key {key}"
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"HTTP {response.status_code} {response.content[:200]!r}")

    pipe.send(os.path.realpath(sys.modules["points"].__path__[0]))
    while pipe.recv() == "go":
        if size == 1:
            bodies = [json.dumps(source.event()) for _ in range(STEP)]
        else:  # distinct new events in every body
            bodies = [
                json.dumps({"events": [source.event() for _ in range(size)]})
                for _ in range(STEP // size)
            ]
        pg0, cpu0, wall0 = backend_cpu(), time.process_time(), time.perf_counter()
        for body in bodies:
            post(body)
        pipe.send((time.perf_counter() - wall0, time.process_time() - cpu0, backend_cpu() - pg0))


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    sides = [(argv[0], argv[1]), (argv[2], argv[3])]
    warmup = int(os.environ.get("LOCKSTEP_WARMUP", "30"))
    batches = int(os.environ.get("LOCKSTEP_BATCHES", "100"))
    children: list[tuple[Process, Connection]] = []
    for seed, (code, url) in enumerate(sides, start=1):
        ours, theirs = Pipe()
        process = Process(target=_child, args=(os.path.realpath(code), url, theirs, seed))
        process.start()
        children.append((process, ours))
    for (code, _url), (_process, pipe) in zip(sides, children, strict=True):
        print(f"# {code}: imports {pipe.recv()}", file=sys.stderr)
    totals: list[list[float]] = [[0.0, 0.0, 0.0] for _ in sides]
    for step in range(warmup + batches):
        for total, (_process, pipe) in zip(totals, children, strict=True):
            pipe.send("go")
            answer: Any = pipe.recv()
            if step >= warmup:
                for i in range(3):
                    total[i] += answer[i]
    for _process, pipe in children:
        pipe.send("stop")
    for process, _pipe in children:
        process.join()
    events = batches * STEP
    for (code, url), (wall, cpu, pg) in zip(sides, totals, strict=True):
        print(
            f"{code} ({url.rsplit('/', 1)[-1]}): {batches} steps of {STEP} events "
            f"({os.environ.get('LOCKSTEP_SIZE', STEP)} per request) after {warmup}, "
            f"per event: wall {1e6 * wall / events:.1f} µs, worker CPU {1e6 * cpu / events:.1f} "
            f"µs, PostgreSQL CPU {1e6 * pg / events:.1f} µs"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
