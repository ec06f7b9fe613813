"""End-to-end: a member redeems merch from their page in headless Chromium, as a person does:
typing into the form and clicking the button (real input events through the DevTools protocol,
over ``--remote-debugging-pipe``: no extra package, no open port), with Django's CSRF checks
and the one-time form key in play."""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from points.models import Community, Member
from points.services import member_token_issue
from rewards.models import Redemption, RedemptionStatus, RewardVariant
from tests.web.test_member_page_e2e import CHROMIUM, OUTPUT
from tests.web.test_member_page_e2e import FLAGS as PAGE_FLAGS
from tests.web.test_member_redeem import _catalog, _member

BASH = shutil.which("bash")
FLAGS = [*PAGE_FLAGS, "--remote-debugging-pipe"]
TIMEOUT = 30.0

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `apt-get install chromium`"),
    pytest.mark.skipif(BASH is None, reason="no bash to hand Chromium its pipe"),
]


def _high_fd(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Chromium:
    """Just enough of the DevTools protocol over the pipe: Chromium reads NUL-terminated JSON
    commands from fd 3 and writes answers and events to fd 4."""

    def __init__(self, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # fd 3 and 4 in the child: bash moves them there (dash takes single-digit fds only);
        # numbers >= 10 here so that neither end is already 3 or 4
        to_browser_r, from_browser_w = (
            _high_fd(to_browser_r),
            _high_fd(from_browser_w),
        )
        shell = f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        self.process = subprocess.Popen(  # noqa: S603
            [str(BASH), "-c", shell, "bash", str(CHROMIUM), *FLAGS]
            + [f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._ids = itertools.count(1)
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self.session = attached["sessionId"]

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_browser, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        answer = self._answers.get(message["id"])
                    if answer is not None:
                        answer.put(message)
                else:
                    self.events.put(message)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        answer: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._answers[number] = answer
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        reply = answer.get(timeout=TIMEOUT)
        assert "error" not in reply, reply
        return dict(reply.get("result", {}))

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, session=self.session, **params)

    def eval(self, expression: str) -> Any:
        reply = self.page("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in reply, reply
        return reply["result"].get("value")

    def drain(self) -> None:
        while not self.events.empty():
            self.events.get_nowait()

    def wait_for_load(self) -> list[dict[str, Any]]:
        """The events up to the page's next load event."""
        seen = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            event = self.events.get(timeout=max(deadline - time.monotonic(), 0.01))
            seen.append(event)
            if event.get("method") == "Page.loadEventFired":
                return seen
        raise AssertionError("the page did not load")

    def open(self, url: str) -> None:
        self.drain()
        self.page("Page.navigate", url=url)
        self.wait_for_load()

    def type_into(self, selector: str, text: str) -> None:
        """Focus the field and type, as a keyboard (IME) would."""
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.page("Input.insertText", text=text)

    def click(self, selector: str, times: int = 1) -> None:
        """Mouse clicks at the middle of the element (scrolled into view first)."""
        x, y = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        self.page("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for count in range(1, times + 1):
            for kind in ("mousePressed", "mouseReleased"):
                self.page(
                    "Input.dispatchMouseEvent",
                    type=kind,
                    x=x,
                    y=y,
                    button="left",
                    clickCount=count,
                )

    def text(self) -> str:
        return str(self.eval("document.body.innerText"))

    def screenshot(self, path: Path) -> None:
        size = self.page("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.page(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (AssertionError, OSError, queue.Empty):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture
def browser(tmp_path: Path):
    chromium = Chromium(tmp_path / "profile")
    chromium.page("Page.enable")
    chromium.page(
        "Emulation.setDeviceMetricsOverride",
        width=375,
        height=812,
        deviceScaleFactor=2,
        mobile=True,
    )
    yield chromium
    chromium.close()


def _member_with_tee(community: Community) -> Member:
    """小明 with 300 points, before the test catalog (a tee, a red packet for 500 points)."""
    _catalog(community)
    member = _member(community, "xiaoming", 300)
    member.display_name = "小明"
    member.save(update_fields=["display_name"])
    return member


def _fill_tee_form(browser: Chromium, variant: str) -> None:
    form = '[data-testid="redeem-tee"]'
    browser.eval(
        f"document.querySelector('{form} select[name=variant]').value = {json.dumps(variant)}"
    )
    browser.type_into(f"{form} input[name=name]", "张三")
    browser.type_into(f"{form} input[name=phone]", "138 0000 0000")
    browser.type_into(f"{form} textarea[name=address]", "上海市徐汇区漕溪北路 1 号 2 室")


def test_member_redeems_merch_and_sees_it_pending_in_chinese(live_server, community, browser):
    member = _member_with_tee(community)
    token, _ = member_token_issue(member=member)
    url = f"{live_server.url}/m/{token}/"

    browser.open(url)
    before = browser.text()
    assert "积分兑换" in before
    assert "需要 500 积分，你当前可用 300 积分。" in before  # the red packet: disabled, why
    assert browser.eval("document.querySelector('[data-testid=\"reward-rp-5\"] button').disabled")

    _fill_tee_form(browser, "L")
    browser.drain()
    browser.click('[data-testid="redeem-tee"] button[type=submit]')
    browser.wait_for_load()

    assert browser.eval("location.href") == url  # Post/Redirect/Get: back on the page
    after = browser.text()
    assert "已申请兑换「社群 T 恤」，等待管理员审核；审核前 100 积分暂时冻结。" in after
    assert "我的兑换" in after
    assert "社群 T 恤 · L 码 · 100 积分" in after
    assert (
        browser.eval("document.querySelector('[data-testid=\"redemption-status\"]').textContent")
        == "待审核"
    )
    assert "另有 100 积分因待审核的兑换申请而冻结。" in after

    row = Redemption.objects.get()
    assert (row.member_id, row.channel, row.status) == (member.pk, "member_page", "requested")
    assert row.shipping == {
        "name": "张三",
        "phone": "138 0000 0000",
        "address": "上海市徐汇区漕溪北路 1 号 2 室",
    }
    assert RewardVariant.objects.get(code="L").reserved == 1

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "member_redeem.png"
    browser.screenshot(shot)
    assert shot.stat().st_size > 20_000


def test_double_click_makes_one_redemption_and_cancel_releases_it(live_server, community, browser):
    member = _member_with_tee(community)
    token, _ = member_token_issue(member=member)
    url = f"{live_server.url}/m/{token}/?lang=en"

    browser.open(url)
    browser.page("Network.enable")
    _fill_tee_form(browser, "M")
    browser.drain()
    browser.click('[data-testid="redeem-tee"] button[type=submit]', times=2)
    events = browser.wait_for_load()
    posts = [
        e
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
        and e["params"]["request"]["method"] == "POST"
    ]
    # Chromium usually sends both submissions (the first one's navigation is then abandoned,
    # not its request); let an abandoned one finish on the server before counting
    time.sleep(1.0)

    assert posts, "the clicks submitted nothing"
    assert Redemption.objects.count() == 1, f"{len(posts)} POSTs"
    member.refresh_from_db()
    assert member.held == 100
    assert "Waiting for approval" in browser.text()

    browser.drain()
    browser.click('form[action*="/cancel"] button')
    browser.wait_for_load()
    text = browser.text()
    assert "Cancelled 社群 T 恤; your 100 points are free to spend again." in text
    assert (
        browser.eval("document.querySelector('[data-testid=\"redemption-status\"]').textContent")
        == "Cancelled"
    )
    assert Redemption.objects.get().status == RedemptionStatus.CANCELLED
    member.refresh_from_db()
    assert member.held == 0
    assert RewardVariant.objects.get(code="M").reserved == 0
