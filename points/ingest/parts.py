"""Step 1b of ingestion: split a large batch into parts that share nothing scoring reads,
each scored and written in a transaction of its own (decision 53).

Two batches that touch the same members wait for each other's member locks; with one
transaction per batch, concurrent batches of a community run one after another, however many
cores are idle (at four clients posting 500 events each, the machine was 60% busy). A part
holds the locks of its own members only, so while one batch writes its second part another
can write its first. Parts are closed under everything scoring shares between events: the
poster, the member paid, an invite's invitee (a later join pays the inviter), and a once-only
key (``featured:<content>``); a component goes to the part its smallest member id or key
hashes to, so a member who is alone in its component lands in the same part in every batch
and concurrent batches take their parts' locks in the same order.
Within a part, events keep the batch's order; across parts no event reads what another wrote.
"""

from __future__ import annotations

import zlib

from points.ingest.records import Plan
from points.models import EventType

PART_MIN = 100  # events per part, at least: a part costs its own round trips and commit
PARTS_MAX = 4


def plan_parts(plans: list[Plan]) -> list[list[Plan]]:
    """The plans in parts that share no member or once-only key, each in batch order."""
    count = min(PARTS_MAX, len(plans) // PART_MIN)
    if count <= 1:
        return [plans] if plans else []
    parent: dict[str, str] = {}

    def root(token: str) -> str:
        parent.setdefault(token, token)
        while parent[token] != token:
            parent[token] = parent[parent[token]]
            token = parent[token]
        return token

    def join(a: str, b: str) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the root is the component's smallest token

    for plan in plans:
        member = f"m:{plan.event.member}"
        root(member)
        if plan.payee:
            join(member, f"m:{plan.payee}")
        if plan.event.type == EventType.INVITE and plan.event.target:
            join(member, f"m:{plan.event.target}")
        if plan.once_key:
            join(member, f"k:{plan.once_key}")
    parts: list[list[Plan]] = [[] for _ in range(count)]
    for plan in plans:
        smallest = root(f"m:{plan.event.member}")
        parts[zlib.crc32(smallest.encode()) % count].append(plan)
    return [part for part in parts if part]
