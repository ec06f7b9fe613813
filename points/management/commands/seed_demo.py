"""``manage.py seed_demo``: a demo community with weeks of realistic synthetic activity.

Everything is posted through ``points.services.events_ingest``, the service behind the API, in
batches ordered by time, so the demo exercises exactly what a bot would: member creation on
first event, caps, first-per-day check-ins, leaves, exactly-once ids.

Deterministic and idempotent. Event ids derive from the seed, the member and the local day;
every member-day draws from its own random stream, so a day's events do not depend on how long
the window is. The window starts ``--days`` before the first run and is anchored by the
founder's join event: a re-run replays what is stored (no new ledger entries) and adds only
what happened since (the part of today after the last run, and the days after it).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import sys
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Sum
from django.utils import timezone
from tqdm import tqdm

from points.models import Community, CommunityApiKey, Event, LedgerEntry, Member, Scope
from points.services import (
    MAX_CLOCK_SKEW,
    EventInput,
    IngestStatus,
    api_key_create,
    community_create,
    events_ingest,
)
from points.timeutils import community_zone

FOUNDED_DAYS_BEFORE = 90  # the founder joined this many days before the window starts
FOUNDER_JOIN_MINUTE = 10 * 60
BATCH_SIZE = 500

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
)
GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉玲浩宇晨欣怡子涵梓轩雨泽思"
    "佳琪嘉鑫悦可馨博文一诺睿俊凯瑶婷雪琳晓峰斌健彬阳翔然昊天宁远舟逸飞安若语嫣梦"
)
NICK_PREFIX = ("小", "阿", "老")
NICKNAMES = ("大熊", "橙子", "木木", "糖糖", "阿布", "喵喵", "豆豆", "布丁", "七七", "栗子")
GROUPS = ("chat-main", "chat-tech", "chat-life", "chat-newbie")
JOIN_SOURCES = ("qr_code", "share_link", "search", "official_account")

# Relative message activity per local hour: a morning peak (8-9), lunch (12-13) and the
# evening (20-23); nearly silent at night.
# fmt: off
HOUR_WEIGHTS = (
    0.5, 0.25, 0.1, 0.05, 0.05, 0.1, 0.4, 1.2, 3.0, 2.6, 1.5, 1.6,
    3.0, 2.6, 1.2, 1.1, 1.1, 1.3, 1.5, 2.0, 3.2, 3.6, 3.4, 2.0,
)
NIGHT_OWL_WEIGHTS = (
    1.5, 0.8, 0.4, 0.1, 0.05, 0.05, 0.1, 0.3, 1.0, 1.2, 1.2, 1.4,
    2.2, 2.0, 1.2, 1.2, 1.3, 1.5, 1.8, 2.4, 3.4, 4.0, 4.2, 3.2,
)
# fmt: on
SCORE_WEIGHTS = ((1, 0.03), (2, 0.05), (3, 0.17), (4, 0.35), (5, 0.40))
REACTION_KINDS = (("like", 0.7), ("comment", 0.2), ("forward", 0.1))


@dataclass(frozen=True)
class Profile:
    """A member's habits: probabilities per day, and means per active day."""

    name: str
    share_of_members: float
    check_in: float
    active: float
    messages: float
    posts: float
    shares: float
    reactions: float
    helps: float
    scores: float
    leave: float


PROFILES = (
    Profile("core", 0.10, 0.90, 0.95, 11.0, 0.30, 0.30, 4.0, 0.50, 0.20, 0.0),
    Profile("regular", 0.30, 0.55, 0.60, 5.0, 0.08, 0.10, 1.5, 0.10, 0.05, 0.0003),
    Profile("casual", 0.35, 0.15, 0.25, 2.0, 0.02, 0.03, 0.5, 0.02, 0.02, 0.0008),
    Profile("lurker", 0.25, 0.03, 0.06, 1.0, 0.002, 0.01, 0.3, 0.0, 0.005, 0.0012),
)


@dataclass
class DemoMember:
    index: int
    external_id: str
    name: str
    profile: Profile
    join_offset: int  # days from the window's first day; negative: joined before it
    join_minute: int
    check_in_minute: int
    night_owl: bool
    group: str
    joined_at: dt.datetime | None = None
    left: bool = False


@dataclass
class Post:
    at: dt.datetime
    content_id: str
    author: str


@dataclass
class Simulation:
    """Generates the events of every day in order; day ``d``'s events depend only on the days
    before it, so a longer window never changes an earlier day."""

    seed: int
    prefix: str
    zone: dt.tzinfo
    start: dt.date
    members: list[DemoMember]
    events: list[EventInput] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    post_times: list[dt.datetime] = field(default_factory=list)

    # --- helpers ------------------------------------------------------------------------

    def at(self, day: dt.date, minute: float) -> dt.datetime:
        local = dt.datetime.combine(day, dt.time(), tzinfo=self.zone)
        return (local + dt.timedelta(minutes=minute)).astimezone(dt.UTC)

    def emit(self, **kwargs: Any) -> None:
        self.events.append(EventInput(**kwargs))

    def event_id(self, member: DemoMember, day: dt.date, kind: str, n: int) -> str:
        return f"{self.prefix}{member.external_id}:{day:%Y%m%d}:{kind}:{n}"

    @staticmethod
    def minute_of_day(rng: random.Random, weights: Sequence[float]) -> float:
        hour = rng.choices(range(24), weights)[0]
        return hour * 60 + rng.random() * 60

    # --- joins --------------------------------------------------------------------------

    def join(self, member: DemoMember, day: dt.date, present: list[DemoMember]) -> None:
        rng = random.Random(f"{self.seed}:join:{member.index}")
        joined_at = self.at(day, member.join_minute + rng.random())
        meta: dict[str, Any] = {"display_name": member.name, "profile": member.profile.name}
        inviters = [m for m in present if m.joined_at is not None and m.joined_at < joined_at]
        if member.index > 0 and inviters and rng.random() < 0.45:
            weights = [4.0 if m.profile.name in ("core", "regular") else 1.0 for m in inviters]
            inviter = rng.choices(inviters, weights)[0]
            invited_at = max(
                joined_at - dt.timedelta(minutes=rng.uniform(3, 180)),
                (inviter.joined_at or joined_at) + dt.timedelta(seconds=30),
            )
            self.emit(
                client_id=f"{self.prefix}{inviter.external_id}:invite:{member.external_id}",
                type="invite",
                member=inviter.external_id,
                occurred_at=invited_at,
                target=member.external_id,
                meta={"channel": rng.choice(("wechat", "link", "poster"))},
            )
            meta["invited_by"] = inviter.external_id
            meta["source"] = "invite"
        else:
            meta["source"] = rng.choice(JOIN_SOURCES)
        self.emit(
            client_id=f"{self.prefix}{member.external_id}:join",
            type="join",
            member=member.external_id,
            occurred_at=joined_at,
            meta=meta,
        )
        member.joined_at = joined_at

    # --- one day ------------------------------------------------------------------------

    def simulate_day(self, offset: int) -> None:
        day = self.start + dt.timedelta(days=offset)
        weekend = day.weekday() >= 5
        present = [m for m in self.members if m.joined_at is not None and not m.left]
        for member in self.members:
            if member.join_offset == offset:
                self.join(member, day, present)
        actors: list[tuple[DemoMember, random.Random, float]] = []
        for member in self.members:
            if member.joined_at is None or member.left:
                continue
            rng = random.Random(f"{self.seed}:{member.index}:{day.isoformat()}")
            joined_today = member.join_offset == offset
            if not joined_today and rng.random() < member.profile.leave:
                self.emit(
                    client_id=self.event_id(member, day, "leave", 0),
                    type="leave",
                    member=member.external_id,
                    occurred_at=self.at(day, self.minute_of_day(rng, HOUR_WEIGHTS)),
                    meta={"reason": rng.choice(("quit", "removed", "inactive"))},
                )
                member.left = True
                continue
            days_in = (day - member.joined_at.astimezone(self.zone).date()).days
            novelty = 1.0 + 1.2 * math.exp(-days_in / 6)
            mood = novelty * (1.15 if weekend else 1.0) * rng.lognormvariate(0, 0.35)
            not_before = member.joined_at + dt.timedelta(minutes=1) if joined_today else None
            self.check_in(member, rng, day, novelty, not_before)
            if rng.random() < min(member.profile.active * novelty, 0.98) or joined_today:
                self.day_activity(member, rng, day, mood, not_before)
                actors.append((member, rng, mood))
        # Reactions and shares come last: they point at posts, including today's earlier ones.
        for member, rng, mood in actors:
            self.reactions_and_shares(member, rng, day, mood)

    def check_in(
        self,
        member: DemoMember,
        rng: random.Random,
        day: dt.date,
        novelty: float,
        not_before: dt.datetime | None,
    ) -> None:
        if rng.random() >= min(member.profile.check_in * novelty, 0.97):
            return
        minute = min(max(member.check_in_minute + rng.gauss(0, 35), 0), 1439)
        at = self.at(day, minute)
        if not_before is not None:
            at = max(at, not_before + dt.timedelta(minutes=rng.uniform(1, 30)))
        copies = 2 if rng.random() < 0.03 else 1  # a double tap: the second one pays nothing
        for n in range(copies):
            self.emit(
                client_id=self.event_id(member, day, "check_in", n),
                type="check_in",
                member=member.external_id,
                occurred_at=at + dt.timedelta(seconds=n * rng.randint(5, 300)),
            )

    def when(
        self, rng: random.Random, member: DemoMember, day: dt.date, not_before: dt.datetime | None
    ) -> dt.datetime:
        weights = NIGHT_OWL_WEIGHTS if member.night_owl else HOUR_WEIGHTS
        at = self.at(day, self.minute_of_day(rng, weights))
        if not_before is not None and at < not_before:
            at = not_before + dt.timedelta(minutes=rng.uniform(1, 120))
        return at

    def day_activity(
        self,
        member: DemoMember,
        rng: random.Random,
        day: dt.date,
        mood: float,
        not_before: dt.datetime | None,
    ) -> None:
        profile = member.profile
        # Messages come in a few sessions, a couple of minutes apart within a session.
        count = max(poisson(rng, profile.messages * mood), 1 if not_before else 0)
        sessions = [self.when(rng, member, day, not_before) for _ in range(1 + count // 6)]
        for n in range(count):
            start = sessions[n % len(sessions)]
            sessions[n % len(sessions)] = start + dt.timedelta(minutes=rng.expovariate(0.5))
            group = member.group if rng.random() < 0.8 else rng.choice(GROUPS)
            self.emit(
                client_id=self.event_id(member, day, "message", n),
                type="message",
                member=member.external_id,
                occurred_at=start,
                group=group,
                content={"length": int(rng.lognormvariate(3, 0.9)) + 1},
            )
        for n in range(poisson(rng, profile.posts * mood)):
            at = self.when(rng, member, day, not_before)
            content_id = f"post:{member.external_id}:{day:%Y%m%d}:{n}"
            self.emit(
                client_id=self.event_id(member, day, "ugc_post", n),
                type="ugc_post",
                member=member.external_id,
                occurred_at=at,
                content={
                    "id": content_id,
                    "author": member.external_id,
                    "kind": "ugc",
                    "length": int(rng.lognormvariate(6.5, 0.8)),
                },
            )
            self.add_post(Post(at, content_id, member.external_id))
            if rng.random() < 0.05:  # an admin marks it 干货 the next day
                self.emit(
                    client_id=f"{self.prefix}featured:{content_id}",
                    type="content_featured",
                    member=member.external_id,
                    occurred_at=self.at(day + dt.timedelta(days=1), rng.uniform(600, 1080)),
                    target=content_id,
                    meta={"by": "admin"},
                )
        others = [m for m in self.members if m.joined_at is not None and not m.left]
        others = [m for m in others if m is not member] or [member]
        for n in range(poisson(rng, profile.helps * mood)):
            helped = rng.choice(others)
            if helped is member:
                break
            self.emit(
                client_id=self.event_id(member, day, "help", n),
                type="help",
                member=member.external_id,
                occurred_at=self.when(rng, member, day, not_before),
                target=helped.external_id,
                group=member.group,
            )
        for n in range(poisson(rng, profile.scores * mood)):
            rated = rng.choice(others)
            if rated is member:
                break
            self.emit(
                client_id=self.event_id(member, day, "peer_score", n),
                type="peer_score",
                member=member.external_id,
                occurred_at=self.when(rng, member, day, not_before),
                target=rated.external_id,
                score=weighted(rng, SCORE_WEIGHTS),
            )

    def add_post(self, post: Post) -> None:
        index = bisect_left(self.post_times, post.at)
        self.post_times.insert(index, post.at)
        self.posts.insert(index, post)

    def recent_post(self, rng: random.Random, before: dt.datetime, author: str) -> Post | None:
        """A post published before ``before`` (recent ones likelier), not by ``author``."""
        end = bisect_left(self.post_times, before)
        for _ in range(3):
            if end == 0:
                return None
            back = min(int(rng.expovariate(1 / 12)), end - 1)
            post = self.posts[end - 1 - back]
            if post.author != author:
                return post
        return None

    def reactions_and_shares(
        self, member: DemoMember, rng: random.Random, day: dt.date, mood: float
    ) -> None:
        profile = member.profile
        not_before = member.joined_at if member.join_offset >= 0 else None
        for n in range(poisson(rng, profile.reactions * mood)):
            at = self.when(rng, member, day, not_before)
            post = self.recent_post(rng, at, member.external_id)
            if post is None:
                continue
            self.emit(
                client_id=self.event_id(member, day, "reaction", n),
                type="reaction",
                member=member.external_id,
                occurred_at=max(at, post.at + dt.timedelta(minutes=1)),
                target=post.content_id,
                content={"id": post.content_id, "author": post.author},
                meta={"kind": weighted(rng, REACTION_KINDS)},
            )
        for n in range(poisson(rng, profile.shares * mood)):
            at = self.when(rng, member, day, not_before)
            post = self.recent_post(rng, at, member.external_id)
            channel = rng.choice(("wechat_moments", "wechat_chat", "weibo", "xiaohongshu"))
            if post is not None and rng.random() < 0.6:
                target, content = post.content_id, {"id": post.content_id, "author": post.author}
            else:
                article = f"{rng.getrandbits(48):012x}"
                target = ""
                content = {"kind": "official", "url": f"https://mp.weixin.qq.com/s/{article}"}
            self.emit(
                client_id=self.event_id(member, day, "share", n),
                type="share",
                member=member.external_id,
                occurred_at=at,
                target=target,
                content=content,
                meta={"channel": channel},
            )


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(int(rng.gauss(mean, math.sqrt(mean)) + 0.5), 0)
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def weighted(rng: random.Random, pairs: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([p[0] for p in pairs], [p[1] for p in pairs])[0]


def chinese_name(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return rng.choice(NICK_PREFIX) + rng.choice(SURNAMES)
    if roll < 0.14:
        return rng.choice(NICKNAMES)
    given = rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.7 else "")
    return rng.choice(SURNAMES) + given


def plan_members(seed: int, count: int, days: int) -> list[DemoMember]:
    """Each member's habits, name and join day, from a stream of their own (so that adding
    members later does not change the existing ones)."""
    members = []
    shares = [p.share_of_members for p in PROFILES]
    for index in range(count):
        rng = random.Random(f"{seed}:member:{index}")
        profile = PROFILES[0] if index == 0 else rng.choices(PROFILES, shares)[0]
        if index == 0:
            offset, minute = -FOUNDED_DAYS_BEFORE, FOUNDER_JOIN_MINUTE
        else:
            # A third joined before the window; the rest over it, more of them lately.
            if rng.random() < 0.35:
                offset = -rng.randint(1, FOUNDED_DAYS_BEFORE - 1)
            else:
                offset = min(int(days * rng.random() ** 0.75), days - 1)
            minute = int(Simulation.minute_of_day(rng, HOUR_WEIGHTS))
        early = rng.random() < 0.6
        members.append(
            DemoMember(
                index=index,
                external_id=f"wxid_{rng.getrandbits(40):010x}",
                name=chinese_name(rng),
                profile=profile,
                join_offset=offset,
                join_minute=minute,
                check_in_minute=rng.randint(6 * 60 + 30, 9 * 60 + 30)
                if early
                else rng.randint(20 * 60, 23 * 60 + 30),
                night_owl=rng.random() < 0.25,
                group=rng.choices(GROUPS, (0.5, 0.25, 0.15, 0.1))[0],
            )
        )
    return members


def generate(
    *,
    seed: int,
    prefix: str,
    zone: dt.tzinfo,
    start: dt.date,
    members: list[DemoMember],
    until: dt.datetime,
) -> list[EventInput]:
    """All events from the founder's join up to ``until``, ordered by time."""
    sim = Simulation(seed=seed, prefix=prefix, zone=zone, start=start, members=members)
    earlier = sorted((m for m in members if m.join_offset < 0), key=lambda m: m.join_offset)
    for member in earlier:
        day = start + dt.timedelta(days=member.join_offset)
        sim.join(member, day, [m for m in earlier if m.joined_at is not None])
    last = (until.astimezone(zone).date() - start).days
    for offset in range(last + 1):
        sim.simulate_day(offset)
    events = [e for e in sim.events if e.occurred_at is not None and e.occurred_at <= until]
    events.sort(key=lambda e: e.occurred_at or until)  # stable: a join before what follows it
    return events


class Command(BaseCommand):
    help = (
        "Load a demo community with a few hundred members and weeks of realistic synthetic "
        "activity ending now, posted through the ingestion service. Idempotent: a re-run "
        "replays stored events and only adds what happened since the last run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", default="demo")
        parser.add_argument("--name", default="示例社群")
        parser.add_argument("--timezone", default="Asia/Shanghai")
        parser.add_argument("--members", type=int, default=300)
        parser.add_argument("--days", type=int, default=60, help="length of the first load")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument(
            "--until",
            type=dt.datetime.fromisoformat,
            default=None,
            help="end of the simulated activity, ISO 8601 with offset (default: now)",
        )
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)

    def handle(self, *args: Any, **options: Any) -> None:
        members_count, days = options["members"], options["days"]
        if members_count < 2 or days < 1:
            raise CommandError("--members must be at least 2 and --days at least 1")
        until = options["until"] or timezone.now()
        if until.tzinfo is None:
            raise CommandError("--until must include a UTC offset")
        if until > timezone.now() + MAX_CLOCK_SKEW:
            raise CommandError("--until is in the future (the API refuses future events too)")
        verbose = options["verbosity"] >= 1
        started = time.monotonic()

        community = Community.objects.filter(slug=options["slug"]).first()
        if community is None:
            try:
                community = community_create(
                    slug=options["slug"], name=options["name"], timezone_name=options["timezone"]
                )
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
            self.stdout.write(f"created community {community.slug} ({community.timezone})")
        else:
            self.stdout.write(f"reusing community {community.slug} ({community.timezone})")
        zone = community_zone(community.timezone)
        seed = options["seed"]
        prefix = f"demo{seed}:"

        members = plan_members(seed, members_count, days)
        founder_join = Event.objects.by_client_id(
            community, f"{prefix}{members[0].external_id}:join"
        ).first()
        if founder_join is not None:
            start = founder_join.local_day + dt.timedelta(days=FOUNDED_DAYS_BEFORE)
            self.stdout.write(f"demo data found (window from {start}); adding what is new")
        else:
            start = until.astimezone(zone).date() - dt.timedelta(days=days - 1)

        events = generate(
            seed=seed, prefix=prefix, zone=zone, start=start, members=members, until=until
        )
        generated = time.monotonic()
        statuses: Counter[str] = Counter()
        size = max(options["batch_size"], 1)
        with tqdm(
            total=len(events),
            unit="ev",
            desc="events",
            disable=None if verbose else True,
            file=sys.stderr,
        ) as bar:
            for i in range(0, len(events), size):
                batch = events[i : i + size]
                for outcome in events_ingest(community=community, events=batch):
                    statuses[outcome.status] += 1
                bar.update(len(batch))

        top = Member.objects.filter(community=community).order_by("-balance", "id").first()
        self.report(community, statuses, len(events), started, generated, start, until, top)
        if statuses[IngestStatus.CONFLICT] or statuses[IngestStatus.INVALID]:
            self.stderr.write(
                "some events conflicted or were invalid: re-run with the same --members, --days "
                "and --seed as the first load (or use another --slug)"
            )
        self.api_key(community, top.external_id if top is not None else None)

    def report(
        self,
        community: Community,
        statuses: Counter[str],
        total: int,
        started: float,
        generated: float,
        start: dt.date,
        until: dt.datetime,
        top: Member | None,
    ) -> None:
        members = Member.objects.filter(community=community)
        stored = Event.objects.filter(community=community).count()
        points = LedgerEntry.objects.filter(community=community).aggregate(s=Sum("points"))["s"]
        elapsed = time.monotonic() - started
        end = until.astimezone(community_zone(community.timezone))
        self.stdout.write(
            f"{total} events from {start} to {end:%Y-%m-%d %H:%M} "
            f"(generated in {generated - started:.1f}s): "
            + ", ".join(f"{statuses[s]} {s}" for s in sorted(statuses))
        )
        self.stdout.write(
            f"community {community.slug}: {members.count()} members "
            f"({members.filter(status='left').count()} left), {stored} events, "
            f"{points or 0} points awarded; {elapsed:.1f}s"
        )
        if top is not None:
            self.stdout.write(
                f"top member: {top.external_id} {top.display_name} ({top.balance} points)"
            )

    def api_key(self, community: Community, example_member: str | None) -> None:
        if CommunityApiKey.objects.filter(community=community, revoked=False).exists():
            self.stdout.write(
                f"{community.slug} already has an API key; make another with: manage.py "
                f"create_api_key {community.slug} --scopes {','.join(Scope.values)}"
            )
            return
        api_key, key = api_key_create(community=community, scopes=Scope.values, name="demo")
        if example_member:
            self.stdout.write(
                f'try, with KEY set to the key below: curl -s -H "Authorization: Api-Key $KEY" '
                f"{settings.PUBLIC_BASE_URL}/api/v1/communities/{community.slug}/members/"
                f"{example_member}"
            )
        self.stdout.write(
            f"API key '{api_key.name}' with scopes {','.join(api_key.scopes)} (shown once):"
        )
        self.stdout.write(key)
