"""Where a phase's CPU went, per request: the bench's own client threads, the server's
processes (gunicorn's master and workers), PostgreSQL's processes (backends, WAL writer,
checkpointer …) and the rest of the machine.

On two cores a closed loop is CPU-bound, so a phase's rate is about what the cores can give
divided by what one request costs all processes together. These splits show, beside each raw
baseline, how much of a request's cost is the service's and how much the database and the
load generator spend for it: the profile behind what the ratio targets leave (docs/performance.md).

Linux only (``/proc``). CPU seconds of a process tree count its ended members too: when a
process is reaped its time moves to its parent's ``cutime``/``cstime``, which are summed here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")


def _processes() -> dict[int, tuple[int, float]]:
    """Every visible process: pid → (parent pid, CPU seconds of it and its reaped children)."""
    out: dict[int, tuple[int, float]] = {}
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile, or not ours to read
        # the command name (in parentheses) may hold spaces: the fields follow its last ")"
        fields = text.rsplit(")", 1)[1].split()
        # fields[1] ppid; [11] utime, [12] stime, [13] cutime, [14] cstime (clock ticks)
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        out[int(entry.name)] = (int(fields[1]), ticks / _TICK)
    return out


def tree_seconds(root: int, processes: dict[int, tuple[int, float]] | None = None) -> float:
    """CPU seconds spent by ``root`` and all its descendants, those that ended included
    (0.0 if ``root`` is gone)."""
    table = _processes() if processes is None else processes
    children: dict[int, list[int]] = {}
    for pid, (ppid, _seconds) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root] if root in table else []
    while todo:
        pid = todo.pop()
        total += table[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def own_seconds() -> float:
    """CPU seconds of this process (all its threads), not of its children (the server)."""
    times = os.times()
    return times.user + times.system


def machine_jiffies() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all cores since boot, from ``/proc/stat`` (idle and
    iowait are not busy); ``None`` off Linux."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's main process (the parent of our backend), if it runs here."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        backend = _processes().get(int(row[0])) if row else None  # while it still runs
    return backend[0] if backend else None


@dataclass(frozen=True)
class Split:
    """CPU seconds by whom: spent so far (a ``Meter`` reading) or during one window (the
    difference of two readings)."""

    client: float
    server: float
    database: float
    machine: float

    def __add__(self, other: Split) -> Split:
        return Split(
            self.client + other.client,
            self.server + other.server,
            self.database + other.database,
            self.machine + other.machine,
        )

    def __sub__(self, other: Split) -> Split:
        """The seconds spent between two readings (``later - earlier``)."""
        return Split(
            self.client - other.client,
            self.server - other.server,
            self.database - other.database,
            self.machine - other.machine,
        )

    @property
    def rest(self) -> float:
        """What the machine spent that none of the three did (the kernel's network work
        charged to no process, Redis, other tenants of a shared box)."""
        return max(self.machine - self.client - self.server - self.database, 0.0)

    def per(self, units: int, unit: str) -> str:
        def us(seconds: float) -> str:
            return f"{1e6 * seconds / units:,.0f} µs"

        return (
            f"CPU per {unit}: all {us(self.machine)} = bench clients {us(self.client)} + "
            f"server {us(self.server)} + PostgreSQL {us(self.database)} + rest {us(self.rest)}"
        )


class Meter:
    """Readings to take at a window's start and end (``end - start`` is the window's split);
    a part without a process (no server) counts as zero."""

    def __init__(self, *, server_pid: int | None, database_pid: int | None) -> None:
        self.server_pid, self.database_pid = server_pid, database_pid

    @classmethod
    def for_bench(cls, *, server_pid: int | None, database_url: str) -> Meter | None:
        """The bench's meter; ``None`` (no splits printed) off Linux or when PostgreSQL's
        processes are not visible here, where a split would show its share as zero."""
        if machine_jiffies() is None:
            return None
        database_pid = postmaster_pid(database_url)
        if database_pid is None:
            return None
        return cls(server_pid=server_pid, database_pid=database_pid)

    def read(self) -> Split:
        table = _processes()
        busy = machine_jiffies()
        return Split(
            client=own_seconds(),
            server=tree_seconds(self.server_pid, table) if self.server_pid else 0.0,
            database=tree_seconds(self.database_pid, table) if self.database_pid else 0.0,
            machine=busy[0] / _TICK if busy else 0.0,
        )
