"""End-to-end: an operator opens a community's dashboard; headless Chromium renders it.

The Django test client logs in as staff and fetches the page; the HTML is saved with a
``<base>`` pointing at the live server (which serves the admin's static files), then Chromium
renders that file: what it shows (the 168 cells of the heat map, the titles, the stage, the
queue links) is checked on Chromium's DOM, and a screenshot is saved under test-output/.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from incentives.models import Role
from incentives.roles import member_role_set
from points.models import Community, Member
from points.services import EventInput, events_ingest

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
    "--window-size=1280,3000",
]
TITLES = [
    "Activity by hour and day",
    "Daily, weekly and monthly active members",
    "Retention by join month",
    "Content mix and stage",
    "Usual active hours",
    "Points liability",
    "Reward spend per month",
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


@pytest.fixture
def busy(community: Community) -> Community:
    """Four members over the last three weeks, at their own hours; one KOL."""
    now = timezone.now().astimezone(ZoneInfo("Asia/Shanghai"))
    events = []
    for day in range(1, 20):
        base = now - dt.timedelta(days=day)
        events += [
            EventInput(f"a-ci-{day}", "check_in", "ann", occurred_at=base.replace(hour=0)),
            EventInput(f"a-m-{day}", "message", "ann", occurred_at=base.replace(hour=0, minute=30)),
            EventInput(f"b-m-{day}", "message", "bob", occurred_at=base.replace(hour=12)),
            EventInput(f"c-m-{day}", "message", "cat", occurred_at=base.replace(hour=14)),
        ]
        if day % 3 == 0:
            events.append(
                EventInput(
                    f"k-p-{day}",
                    "ugc_post",
                    "kay",
                    occurred_at=base.replace(hour=3),
                    target=f"p{day}",
                    content={"text": f"kay's useful post number {day}"},
                )
            )
    events_ingest(community=community, events=events)
    kay = Member.objects.get(community=community, external_id="kay")
    member_role_set(community=community, member=kay, role=Role.KOL, actor="user:op")
    return community


@pytest.fixture
def staff_client(client, db):
    user = User.objects.create_user("op", password="x", is_staff=True)
    client.force_login(user)
    return client


def test_only_staff_see_the_dashboard(client, busy):
    response = client.get("/dashboard/acme/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    member = User.objects.create_user("member", password="x")
    client.force_login(member)
    assert client.get("/dashboard/acme/").status_code == 302


def test_unknown_community_is_404(staff_client, busy):
    assert staff_client.get("/dashboard/nope/").status_code == 404


def test_dashboard_index_lists_the_communities(staff_client, busy):
    page = staff_client.get("/dashboard/").content.decode()
    assert 'href="/dashboard/acme/"' in page


def test_community_admin_links_to_the_dashboards(staff_client, busy):
    User.objects.filter(username="op").update(is_superuser=True)
    page = staff_client.get("/admin/points/community/").content.decode()
    assert 'href="/dashboard/"' in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `apt-get install chromium`")
def test_operator_sees_the_reports_as_charts(live_server, staff_client, busy, tmp_path):
    response = staff_client.get("/dashboard/acme/")
    assert response.status_code == 200
    html = response.content.decode()
    html = html.replace("<head>", f'<head><base href="{live_server.url}/">', 1)
    page = tmp_path / "dashboard.html"
    page.write_text(html, encoding="utf-8")

    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())

    heat = dom.split('aria-label="Activity by hour and day"', 1)[1].split("</svg>", 1)[0]
    assert len(re.findall(r'<rect class="cell"', heat)) == 168
    # ann checks in at 00:xx local time every day: the heat map's hour-0 column has her days
    zero = [int(c) for c in re.findall(r'data-hour="0" data-count="(\d+)"', heat)]
    assert sum(zero) >= 38  # and that makes 00:00 the peak hour
    for title in TITLES:
        assert title in dom, title
    assert 'data-series="dau"' in dom
    assert 'data-series="mau"' in dom
    assert 'data-testid="stage">' in dom
    assert 'data-testid="peak-hour">00:00<' in dom
    assert "status=requested&amp;community__id__exact=" in dom
    assert "Asia/Shanghai" in dom

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "dashboard.png"
    _chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.exists()
    assert shot.stat().st_size > 20_000
