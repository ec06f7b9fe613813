"""Read replicas (docs/scaling.md): the real-replica cases run in a subprocess against the
private pair of ``conftest.replica_pair``; without a replica everything uses ``default``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, router
from rest_framework.test import APIClient

from config.db_router import member_wrote, read_alias, reads_from_replica
from points.models import Community, Member
from tests.scale.conftest import ReplicaPair

ROOT = Path(__file__).resolve().parents[2]


def test_real_replica_cases(replica_pair: ReplicaPair, tmp_path: Path) -> None:
    """tests/scale/replica_cases.py with DATABASE_URL at the private primary and
    DATABASE_REPLICA_URL at its streaming standby."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "DATABASE_", "REPLICA_")) and k != "TEST_DATABASE_NAME"
    }
    env.update(
        DATABASE_URL=replica_pair.primary_url,
        DATABASE_REPLICA_URL=replica_pair.replica_url,
        SCALE_REPLICA_CASES="1",
        INCENTIVES_DATA_DIR=str(tmp_path),  # the filesystem broker's queue, not var/
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "tests/scale/replica_cases.py",
        ],  # fmt: skip
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"replica pair set up in {replica_pair.setup_seconds:.1f}s")
    print(done.stdout[-5000:])
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
    assert " passed" in done.stdout, done.stdout[-5000:]
    assert " skipped" not in done.stdout, done.stdout[-5000:]


@pytest.mark.skipif(
    bool(os.environ.get("DATABASE_REPLICA_URL")), reason="this run has a replica configured"
)
def test_without_a_replica_everything_uses_default(
    community: Community, client_for: APIClient
) -> None:
    assert "replica" not in settings.DATABASES
    with reads_from_replica():
        assert read_alias() == "default"
        assert router.db_for_read(Member) == "default"
        assert connection.alias == "default"  # raw SQL too
    with reads_from_replica(member=(community.pk, "alice")):
        assert router.db_for_read(Member) == "default"
    assert router.db_for_write(Member) == "default"
    member_wrote(community.pk, [])  # a no-op without a replica
    posted = client_for.post(
        "/api/v1/communities/acme/events",
        {"id": "e-1", "type": "check_in", "member": "alice"},
        format="json",
    )
    assert posted.status_code == 201, posted.content
    assert client_for.get("/api/v1/communities/acme/leaderboard").status_code == 200
    assert client_for.get("/api/v1/communities/acme/members/alice/rank").status_code == 200


def test_settings_add_the_alias_only_with_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    import config.settings.database as database

    try:
        monkeypatch.setenv("DATABASE_URL", "postgresql://app@primary.internal:5432/db")
        monkeypatch.delenv("DATABASE_REPLICA_URL", raising=False)
        assert "replica" not in importlib.reload(database).DATABASES
        monkeypatch.setenv("DATABASE_REPLICA_URL", "postgresql://reader@replica.internal:5433/db")
        reloaded = importlib.reload(database)
        replica = reloaded.DATABASES["replica"]
        assert (replica["HOST"], replica["PORT"], replica["USER"], replica["NAME"]) == (
            "replica.internal",
            "5433",
            "reader",
            "db",
        )
        assert replica["TEST"] == {"MIRROR": "default"}
        assert reloaded.DATABASE_ROUTERS == ["config.db_router.ReplicaRouter"]
    finally:
        monkeypatch.undo()
        importlib.reload(database)
