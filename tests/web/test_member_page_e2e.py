"""End-to-end: a person opens the member page in headless Chromium at phone width."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from points.models import Community
from points.services import (
    EventInput,
    events_ingest,
    member_token_issue,
    rank_snapshots_refresh,
)

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=375,1400",
]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `apt-get install chromium`"),
]


def _chromium(tmp_path: Path, *args: str) -> str:
    done = subprocess.run(  # noqa: S603
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return done.stdout


def test_member_sees_points_rank_and_highlighted_row(live_server, community: Community, tmp_path):
    events = [
        EventInput(f"s-{name}-{i}", "share", name, meta={"display_name": label})
        for name, label, count in [("alice", "Alice", 4), ("bob", "小明", 2), ("carol", "Carol", 1)]
        for i in range(count)
    ]
    events_ingest(community=community, events=events)
    rank_snapshots_refresh(community=community)  # the job the commit queued (no worker here)
    from points.models import Member

    bob = Member.objects.get(community=community, external_id="bob")
    token, _ = member_token_issue(member=bob)
    url = f"{live_server.url}/m/{token}/"

    dom = _chromium(tmp_path, "--dump-dom", url)
    assert 'data-testid="balance">10<' in dom
    assert 'data-testid="month-rank">#2<' in dom
    assert "小明" in dom
    assert 'class="me" aria-current="true"><td class="num">2</td><td>小明</td>' in dom
    assert "分享干货" in dom  # the reason in words, Chinese by default

    dom_en = _chromium(tmp_path, "--dump-dom", url + "?lang=en")
    assert "Shared useful content" in dom_en
    assert "Rank this month" in dom_en

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "member_page.png"
    _chromium(tmp_path, f"--screenshot={shot}", url)
    assert shot.exists()
    assert shot.stat().st_size > 5_000


def test_expired_or_tampered_link_shows_a_clear_message(live_server, community, tmp_path):
    events_ingest(community=community, events=[EventInput("c1", "check_in", "dave")])
    from points.models import Member

    dave = Member.objects.get(community=community, external_id="dave")
    token, _ = member_token_issue(member=dave)
    dom = _chromium(tmp_path, "--dump-dom", f"{live_server.url}/m/{token[:-2]}xx/")
    assert "链接已失效" in dom


def test_member_sees_tier_progress_koc_badge_and_honors(live_server, community, tmp_path):
    """The incentive jobs' results as a member sees them, in Chinese and in English."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from incentives.honors import honor_roll_publish
    from incentives.models import KocCandidate
    from incentives.tiers import tier_set_lock
    from points.models import Member

    sh = ZoneInfo("Asia/Shanghai")
    now = dt.datetime.now(tz=sh)
    last_month = (now.replace(day=1) - dt.timedelta(days=1)).replace(day=10, hour=12)
    events_ingest(
        community=community,
        events=[
            EventInput("old-share", "share", "erin", occurred_at=last_month),
            *[
                EventInput(f"ci-{d}", "check_in", "erin", occurred_at=now - dt.timedelta(days=d))
                for d in range(4)
            ],
        ],
    )
    erin = Member.objects.get(community=community, external_id="erin")
    honor_roll_publish(community=community)  # last month: erin tops it
    tier_set_lock(community=community, member=erin, locked=False, tier="active", actor="user:op")
    KocCandidate.objects.create(
        community=community,
        member=erin,
        status="confirmed",
        window_end=now.date(),
        window_days=30,
        score=9.0,
        robust_z=7.0,
        trust_rank=2.0,
        h_index=5,
        distinct_reactors=40,
        reciprocal_reactors=0,
        distinct_days=14,
        detected_at=now,
    )
    token, _ = member_token_issue(member=erin)
    url = f"{live_server.url}/m/{token}/"

    dom = _chromium(tmp_path, "--dump-dom", url)
    assert 'data-testid="tier">活跃成员<' in dom
    assert 'data-testid="koc-badge"' in dom
    assert "距离「核心成员」的进度" in dom
    assert 'aria-valuenow="' in dom
    assert "积分之星" in dom  # last month's roll

    dom_en = _chromium(tmp_path, "--dump-dom", url + "?lang=en")
    assert 'data-testid="tier">Active<' in dom_en
    assert "Progress to Core" in dom_en
    assert "Top points" in dom_en
    assert "check-in days: 4 / 15" in dom_en

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "member_page_incentives.png"
    _chromium(tmp_path, f"--screenshot={shot}", url)
    assert shot.stat().st_size > 5_000
