"""KOC detection: ordinary members whose content moves others, found on the interaction graph.

Over a window (default 30 local days) the job reads who acted on whose content (reactions,
peer scores of 4-5, help received, invitees who stayed), all set-based SQL, then scores each
ordinary member (no role; owners, staff and KOLs are the trusted seeds) by:

- ``trust_rank``: PageRank personalised on the trusted seeds (staff, owners, KOLs, confirmed
  KOCs; every node when there is none), on edges actor → author weighted ln(1 + n) per day and
  halved when the pair is reciprocal; normalised so that 1.0 is the average node;
- ``h_index``: h of their contents each drew ≥ h distinct reactors;
- ``effective reactors``: distinct members who acted on their content, a reciprocated one
  counting half (two friends liking each other do not make each other KOCs);
- the composite ``score`` = ln(1+effective reactors) + ln(1+h) + ln(1+featured) + ln(1+trust
  rank), and its ``robust_z`` (modified z-score, median and MAD) among the community's active
  ordinary members (an event in the window; those nobody acted on score 0).

A member qualifies with ≥ ``min_reactors`` effective reactors over ≥ ``min_days`` distinct days
and ``robust_z`` ≥ ``min_z``. Only the graph step runs in Python, on arrays (scipy.sparse).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone
from scipy import sparse

from incentives.config import KocSettings, community_koc_settings
from incentives.jobs import run_once
from incentives.models import KocCandidate, KocStatus
from points import outbox
from points.adjustments import audit_record
from points.exceptions import DomainError
from points.models import Community, Member
from points.selectors import member_external_ids
from points.timeutils import community_zone, today

JOB = "koc"


class NotACandidate(DomainError):
    code = "not_a_koc_candidate"
    status = 409
    title = "Not a KOC candidate"


def _window(community: Community, day: dt.date, days: int) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) instants of the ``days`` local days ending with ``day``."""
    zone = community_zone(community.timezone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    start = dt.datetime.combine(day - dt.timedelta(days=days - 1), dt.time(), tzinfo=zone)
    return start, end


def trust_rank(
    src: np.ndarray,
    dst: np.ndarray,
    weight: np.ndarray,
    n: int,
    seeds: np.ndarray,
    damping: float = 0.85,
    tol: float = 1e-9,
    max_iter: int = 100,
) -> np.ndarray:
    """Personalised PageRank by power iteration on a CSR matrix; dangling mass and the
    teleport go to ``seeds`` (uniform when empty). Returns scores that sum to 1."""
    if n == 0:
        return np.zeros(0)
    teleport = np.zeros(n)
    if len(seeds):
        teleport[seeds] = 1.0
    else:
        teleport[:] = 1.0
    teleport /= teleport.sum()
    out = np.bincount(src, weights=weight, minlength=n)
    scale = np.divide(weight, out[src], out=np.zeros_like(weight), where=out[src] > 0)
    # column-stochastic transition: rank flows from src to dst
    matrix = sparse.csr_array((scale, (dst, src)), shape=(n, n))
    dangling = out == 0
    rank = teleport.copy()
    for _ in range(max_iter):
        following = damping * (matrix @ rank + rank[dangling].sum() * teleport)
        following += (1.0 - damping) * teleport
        if np.abs(following - rank).sum() < tol:
            return following
        rank = following
    return rank


def robust_z(values: np.ndarray, zeros: int = 0) -> np.ndarray:
    """Modified z-score 0.6745 (x - median) / MAD of ``values`` within a population of
    ``values`` plus ``zeros`` members scoring 0; with MAD 0, (x - median) / (1.2533 × mean
    absolute deviation) (Iglewicz and Hoaglin); 0 when every value is the same."""
    if len(values) == 0:
        return values
    population = np.concatenate([values, np.zeros(zeros)]) if zeros else values
    median = float(np.median(population))
    deviation = np.abs(population - median)
    mad = float(np.median(deviation))
    if mad > 0:
        return 0.6745 * (values - median) / mad
    mean_ad = float(deviation.mean())
    if mean_ad > 0:
        return (values - median) / (1.253314 * mean_ad)
    return np.zeros_like(values)


def _copy_edges(cursor: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The weighted edges, read with one binary COPY straight into arrays."""
    buffer = bytearray()
    with cursor.copy(
        """
        COPY (
            WITH daily AS (
                SELECT src, dst, day, count(*) AS n FROM koc_action GROUP BY src, dst, day
            ), pair AS (
                SELECT src, dst, sum(ln(1 + n)) AS w FROM daily GROUP BY src, dst
            )
            SELECT p.src::int8, p.dst::int8,
                   (p.w * CASE WHEN r.src IS NULL THEN 1.0 ELSE 0.5 END)::float8
            FROM pair p LEFT JOIN pair r ON r.src = p.dst AND r.dst = p.src
        ) TO STDOUT (FORMAT binary)
        """
    ) as copy:
        for chunk in copy:
            buffer += chunk
    # header: 11-byte signature, int32 flags, int32 extension length; trailer: int16 -1
    extension = int.from_bytes(buffer[15:19], "big")
    body = memoryview(buffer)[19 + extension : len(buffer) - 2]
    row = np.dtype(
        [
            ("n", ">i2"),
            ("l1", ">i4"),
            ("src", ">i8"),
            ("l2", ">i4"),
            ("dst", ">i8"),
            ("l3", ">i4"),
            ("w", ">f8"),
        ]
    )
    rows = np.frombuffer(body, dtype=row)
    return (
        rows["src"].astype(np.int64),
        rows["dst"].astype(np.int64),
        rows["w"].astype(np.float64),
    )


def koc_detect(
    *, community: Community, period: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Score ordinary members over the window ending on ``period`` (a local day; default
    today) and store the candidates with their figures; once per community and day."""
    now = now or timezone.now()
    day = today(community.timezone, now) if period is None else dt.date.fromisoformat(period)
    settings = community_koc_settings(community.pk)

    def compute() -> dict[str, Any]:
        return _detect(community, settings, day, now)

    return run_once(community=community, job=JOB, period=day.isoformat(), compute=compute)


def _detect(
    community: Community, settings: KocSettings, day: dt.date, now: dt.datetime
) -> dict[str, Any]:
    start, end = _window(community, day, settings.window_days)
    params: dict[str, Any] = {"c": community.pk, "start": start, "end": end}
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS koc_action")
        cursor.execute(
            """
            CREATE TEMP TABLE koc_action ON COMMIT DROP AS
            SELECT src, dst, day, kind, content FROM (
                SELECT e.member_id AS src, e.beneficiary_id AS dst, e.local_day AS day,
                       'reaction' AS kind, e.target AS content
                FROM points_event e
                WHERE e.community_id = %(c)s AND e.type = 'reaction'
                  AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
                  AND e.beneficiary_id IS NOT NULL AND e.reversed_at IS NULL
                UNION ALL
                SELECT e.member_id, t.id, e.local_day, 'peer_score', ''
                FROM points_event e
                JOIN points_member t ON t.community_id = e.community_id AND t.external_id = e.target
                WHERE e.community_id = %(c)s AND e.type = 'peer_score' AND e.score >= 4
                  AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
                  AND e.reversed_at IS NULL
                UNION ALL
                SELECT t.id, e.member_id, e.local_day, 'help', ''
                FROM points_event e
                JOIN points_member t ON t.community_id = e.community_id AND t.external_id = e.target
                WHERE e.community_id = %(c)s AND e.type = 'help'
                  AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
                  AND e.reversed_at IS NULL
                UNION ALL
                SELECT e.member_id, e.beneficiary_id, e.local_day, 'invite', ''
                FROM points_event e
                JOIN points_member j ON j.id = e.member_id AND j.status = 'active'
                WHERE e.community_id = %(c)s AND e.type = 'join'
                  AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
                  AND e.beneficiary_id IS NOT NULL AND e.reversed_at IS NULL
            ) a
            WHERE src <> dst
            """,
            params,
        )
        cursor.execute(
            """
            SELECT f.member_id, f.reactors, f.reciprocal, f.days, f.h, f.featured
            FROM (
                WITH pair AS (SELECT DISTINCT src, dst FROM koc_action),
                reach AS (
                    SELECT p.dst AS member_id, count(*) AS reactors,
                           count(r.src) AS reciprocal
                    FROM pair p LEFT JOIN pair r ON r.src = p.dst AND r.dst = p.src
                    GROUP BY p.dst
                ),
                days AS (
                    SELECT dst AS member_id, count(DISTINCT day) AS days
                    FROM koc_action GROUP BY dst
                ),
                per_content AS (
                    SELECT dst, content, count(DISTINCT src) AS n
                    FROM koc_action WHERE kind = 'reaction' AND content <> ''
                    GROUP BY dst, content
                ),
                h AS (
                    SELECT dst AS member_id, max(rn) AS h FROM (
                        SELECT dst, n, row_number() OVER (PARTITION BY dst ORDER BY n DESC) AS rn
                        FROM per_content
                    ) s WHERE n >= rn GROUP BY dst
                ),
                featured AS (
                    SELECT member_id, count(*) AS featured FROM points_event
                    WHERE community_id = %(c)s AND type = 'content_featured'
                      AND occurred_at >= %(start)s AND occurred_at < %(end)s
                      AND reversed_at IS NULL
                    GROUP BY member_id
                )
                SELECT r.member_id, r.reactors, r.reciprocal, d.days,
                       COALESCE(h.h, 0) AS h, COALESCE(f.featured, 0) AS featured
                FROM reach r
                JOIN days d ON d.member_id = r.member_id
                LEFT JOIN h ON h.member_id = r.member_id
                LEFT JOIN featured f ON f.member_id = r.member_id
            ) f
            JOIN points_member m ON m.id = f.member_id AND m.status = 'active'
            LEFT JOIN incentives_memberrole mr
                   ON mr.community_id = %(c)s AND mr.member_id = f.member_id
            WHERE mr.member_id IS NULL
            """,
            params,
        )
        figures = cursor.fetchall()
        src, dst, weight = _copy_edges(cursor)
        cursor.execute(
            """
            SELECT member_id FROM incentives_memberrole WHERE community_id = %(c)s
            UNION
            SELECT member_id FROM incentives_koccandidate
            WHERE community_id = %(c)s AND status = 'confirmed'
            """,
            params,
        )
        seed_ids = np.array([r[0] for r in cursor.fetchall()], dtype=np.int64)
        cursor.execute(
            """
            SELECT count(*) FROM points_member m
            WHERE m.community_id = %(c)s AND m.status = 'active' AND m.last_event_at >= %(start)s
              AND NOT EXISTS (SELECT 1 FROM incentives_memberrole r
                              WHERE r.community_id = %(c)s AND r.member_id = m.id)
            """,
            params,
        )
        active = cursor.fetchone()[0]

    nodes, index = np.unique(np.concatenate([src, dst]), return_inverse=True)
    n = len(nodes)
    src_i, dst_i = index[: len(src)], index[len(src) :]
    seeds = np.searchsorted(nodes, seed_ids[np.isin(seed_ids, nodes)])
    rank = trust_rank(src_i, dst_i, weight, n, seeds, damping=settings.damping) * max(n, 1)

    if not figures:
        found: list[dict[str, Any]] = []
    else:
        table = np.array(figures, dtype=np.float64)
        member_ids = table[:, 0].astype(np.int64)
        reactors, reciprocal, days, h, featured = (table[:, i] for i in range(1, 6))
        effective = reactors - 0.5 * reciprocal
        positions = np.searchsorted(nodes, member_ids)
        trust = rank[np.clip(positions, 0, max(n - 1, 0))] if n else np.zeros(len(member_ids))
        score = np.log1p(effective) + np.log1p(h) + np.log1p(featured) + np.log1p(trust)
        # within the community: every active ordinary member counts, those whom nobody
        # acted on with a score of 0
        z = robust_z(score, zeros=max(active - len(score), 0))
        qualified = (
            (effective >= settings.min_reactors)
            & (days >= settings.min_days)
            & (z >= settings.min_z)
        )
        found = [
            {
                "member_id": int(member_ids[i]),
                "score": round(float(score[i]), 4),
                "robust_z": round(float(z[i]), 3),
                "trust_rank": round(float(trust[i]), 4),
                "h_index": int(h[i]),
                "distinct_reactors": int(reactors[i]),
                "reciprocal_reactors": int(reciprocal[i]),
                "distinct_days": int(days[i]),
                "featured": int(featured[i]),
            }
            for i in np.flatnonzero(qualified)
        ]
    new = _store(community, settings, day, now, found)
    return {
        "period": day.isoformat(),
        "window_days": settings.window_days,
        "scored": len(figures),
        "active_members": int(active),
        "graph_nodes": int(n),
        "graph_edges": len(src),
        "seeds": len(seeds),
        "candidates": len(found),
        "new_candidates": len(new),
    }


def _store(
    community: Community,
    settings: KocSettings,
    day: dt.date,
    now: dt.datetime,
    found: list[dict[str, Any]],
) -> list[int]:
    """Upsert the candidates (an admin's decision stays), drop undecided candidates that no
    longer qualify, announce the new ones."""
    import json

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO incentives_koccandidate AS k
                   (community_id, member_id, status, window_end, window_days, score, robust_z,
                    trust_rank, h_index, distinct_reactors, reciprocal_reactors, distinct_days,
                    figures, detected_at, decided_by, note)
            SELECT %s, x.member_id, 'candidate', %s, %s, x.score, x.robust_z, x.trust_rank,
                   x.h_index, x.distinct_reactors, x.reciprocal_reactors, x.distinct_days,
                   jsonb_build_object('featured', x.featured, 'min_reactors', %s, 'min_days', %s,
                                      'min_z', %s),
                   %s, '', ''
            FROM json_to_recordset(%s::json) AS x(
                member_id bigint, score float8, robust_z float8, trust_rank float8, h_index int,
                distinct_reactors int, reciprocal_reactors int, distinct_days int, featured int)
            ON CONFLICT (community_id, member_id) DO UPDATE SET
                window_end = EXCLUDED.window_end, window_days = EXCLUDED.window_days,
                score = EXCLUDED.score, robust_z = EXCLUDED.robust_z,
                trust_rank = EXCLUDED.trust_rank, h_index = EXCLUDED.h_index,
                distinct_reactors = EXCLUDED.distinct_reactors,
                reciprocal_reactors = EXCLUDED.reciprocal_reactors,
                distinct_days = EXCLUDED.distinct_days, figures = EXCLUDED.figures,
                detected_at = EXCLUDED.detected_at
            RETURNING member_id, (xmax = 0) AS inserted
            """,
            [
                community.pk,
                day,
                settings.window_days,
                settings.min_reactors,
                settings.min_days,
                settings.min_z,
                now,
                json.dumps(found),
            ],
        )
        new = [member_id for member_id, inserted in cursor.fetchall() if inserted]
        cursor.execute(
            """
            DELETE FROM incentives_koccandidate
            WHERE community_id = %s AND status = 'candidate' AND NOT (member_id = ANY(%s))
            """,
            [community.pk, [f["member_id"] for f in found]],
        )
    if new:
        by_id = {f["member_id"]: f for f in found}
        external = member_external_ids(new)
        outbox.publish(
            community,
            [
                (
                    "koc.candidate",
                    {
                        "member": external[m],
                        "window_end": day.isoformat(),
                        **{k: v for k, v in by_id[m].items() if k != "member_id"},
                    },
                )
                for m in new
            ],
        )
    return new


def _decide(
    *, community: Community, member: Member, status: str, actor: str, note: str
) -> KocCandidate:
    with transaction.atomic():
        row = (
            KocCandidate.objects.select_for_update()
            .filter(community=community, member=member)
            .first()
        )
        if row is None:
            raise NotACandidate(
                f"'{member.external_id}' is not a KOC candidate; the KOC job lists candidates."
            )
        if row.status != KocStatus.CANDIDATE:
            # decided under the row lock: two admins at once decide once, announce once
            raise NotACandidate(
                f"'{member.external_id}' was already {row.status} by {row.decided_by}."
            )
        now = timezone.now()
        row.status, row.decided_by, row.decided_at, row.note = status, actor, now, note
        row.save(update_fields=["status", "decided_by", "decided_at", "note"])
        audit_record(
            community=community,
            actor=actor,
            action=f"koc.{status}",
            target=member.external_id,
            data={"score": row.score, "robust_z": row.robust_z, "note": note},
            now=now,
        )
        if status == KocStatus.CONFIRMED:
            outbox.publish(
                community,
                [
                    (
                        "koc.confirmed",
                        {
                            "member": member.external_id,
                            "confirmed_by": actor,
                            "score": row.score,
                            "note": note,
                        },
                    )
                ],
            )
    return row


def koc_confirm(
    *, community: Community, member: Member, actor: str, note: str = ""
) -> KocCandidate:
    """Confirm a candidate as KOC (marked on the member, a trusted seed of later runs)."""
    return _decide(
        community=community, member=member, status=KocStatus.CONFIRMED, actor=actor, note=note
    )


def koc_dismiss(
    *, community: Community, member: Member, actor: str, note: str = ""
) -> KocCandidate:
    """Dismiss a candidate: later runs refresh the figures but keep the decision."""
    return _decide(
        community=community, member=member, status=KocStatus.DISMISSED, actor=actor, note=note
    )


def koc_candidates(community: Community, status: str | None = None) -> Any:
    """Candidates, best first, with their member."""
    rows = KocCandidate.objects.filter(community=community).select_related("member")
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("-score", "member_id")


def koc_is_confirmed(member: Member) -> bool:
    return KocCandidate.objects.filter(
        community_id=member.community_id, member=member, status=KocStatus.CONFIRMED
    ).exists()
