"""The member page's recent points say when each contribution happened, not when its entry
was written (a late event shows its own day)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from points.models import Community, Member
from points.services import EventInput, events_ingest, member_token_issue

pytestmark = pytest.mark.django_db


def test_history_shows_when_the_event_happened(community: Community) -> None:
    happened = dt.datetime.now(tz=ZoneInfo("Asia/Shanghai")).replace(
        hour=9, minute=41, second=0, microsecond=0
    ) - dt.timedelta(days=3)
    events_ingest(
        community=community, events=[EventInput("late-1", "share", "lee", occurred_at=happened)]
    )
    token, _ = member_token_issue(member=Member.objects.get(external_id="lee"))
    page = Client().get(f"/m/{token}/").content.decode()
    assert happened.strftime("%m-%d 09:41") in page
    written = dt.datetime.now(tz=ZoneInfo("Asia/Shanghai")).strftime("%m-%d %H:%M")
    assert written not in page.split("history-title", 1)[1].split("</section>", 1)[0]
