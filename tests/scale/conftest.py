"""A real streaming replica for the read-replica tests (docs/scaling.md, "Read replicas").

The shared server cannot stream (no replication connections), so ``replica_pair`` builds two
private clusters from the PostgreSQL 15 binaries: a primary (``initdb``, ``pg_ctl``) and a hot
standby of it (``pg_basebackup -R -X stream``), each on a free port of 127.0.0.1 with its
socket in the temporary directory, both stopped (``pg_ctl -m fast``) and deleted at the end.
As root the commands run as the ``postgres`` OS user (``runuser``): PostgreSQL refuses root.

``replica_cases.py`` runs the Django side in a subprocess pointed at the pair (pytest-django
has already set ``default`` up on the shared server here); it is collected only there, with
``SCALE_REPLICA_CASES=1``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

if os.environ.get("SCALE_REPLICA_CASES") != "1":
    collect_ignore = ["replica_cases.py"]

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "app"


@dataclass(frozen=True)
class ReplicaPair:
    primary_url: str
    replica_url: str
    root: Path
    setup_seconds: float


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def _run(args: list[str]) -> None:
    done = subprocess.run(  # noqa: S603 - our own fixed command lines
        _as_postgres(args), capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def _wait(url: str, sql: str, what: str, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
                row = conn.execute(sql).fetchone()
                if row and row[0]:
                    return
        except psycopg.Error:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _start(data: Path, port: int, root: Path) -> None:
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
        "-c fsync=off -c full_page_writes=off -c autovacuum=off"  # a throwaway cluster
    )
    _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", f"{data}.log", "-w", "-t", "60",
          "-o", options, "start"])  # fmt: skip


def _stop(data: Path) -> None:
    if (data / "postmaster.pid").exists():
        subprocess.run(  # noqa: S603 - a fixed command line
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            timeout=120,
        )


@pytest.fixture(scope="session")
def replica_pair() -> Iterator[ReplicaPair]:
    """A private primary and its streaming hot standby, as libpq URLs of database ``app``."""
    for tool in ("initdb", "pg_ctl", "pg_basebackup"):
        if not (PG_BIN / tool).exists():
            pytest.skip(f"no {PG_BIN / tool}: the replica tests need PostgreSQL's server binaries")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="scale-replica-"))
    primary, replica = root / "primary", root / "replica"
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        root.chmod(0o700)
        _run([str(PG_BIN / "initdb"), "-D", str(primary), "-U", "postgres", "-A", "trust",
              "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])  # fmt: skip
        with (primary / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
            hba.write("host all all 127.0.0.1/32 trust\n")
        primary_port, replica_port = _free_port(), _free_port()
        _start(primary, primary_port, root)
        base = f"postgresql://postgres@127.0.0.1:{primary_port}"
        _run([str(PG_BIN / "psql"), f"{base}/postgres", "-qc", f"CREATE DATABASE {DATABASE}"])
        _run([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port),
              "-U", "postgres", "-D", str(replica), "-R", "-X", "stream",
              "-c", "fast"])  # fmt: skip
        _start(replica, replica_port, root)
        replica_url = f"postgresql://postgres@127.0.0.1:{replica_port}/{DATABASE}"
        _wait(replica_url, "SELECT pg_is_in_recovery()", "the replica to be in recovery")
        _wait(
            f"{base}/{DATABASE}",
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            "the replica to stream",
        )
        pair = ReplicaPair(
            primary_url=f"{base}/{DATABASE}",
            replica_url=replica_url,
            root=root,
            setup_seconds=time.monotonic() - started,
        )
        yield pair
    finally:
        _stop(replica)
        _stop(primary)
        shutil.rmtree(root, ignore_errors=True)
