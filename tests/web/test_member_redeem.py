"""Redeeming from the member page through Django's test client with CSRF checks enforced: the
forms as rendered are what is posted, so the CSRF token and the one-time key are real."""

from __future__ import annotations

import re
import threading
import time
from html import unescape

import pytest
from django.core import signing
from django.db import connection
from django.test import Client

from points.adjustments import AdjustmentInput, adjustment_create
from points.models import Community, Member
from points.selectors import MEMBER_TOKEN_SALT
from points.services import member_token_issue
from rewards.catalog import RewardInput, VariantInput, reward_save
from rewards.models import Redemption, RedemptionStatus, RewardVariant
from rewards.redemptions import RedemptionRequest, redemption_reject, redemption_request

ADMIN = "user:op"
SHIPPING = {"name": "张三", "phone": "138 0000 0000", "address": "上海市徐汇区漕溪北路 1 号"}


def _catalog(community: Community) -> None:
    """A tee (100 points; M stock 5, L stock 1), a 5 yuan red packet for 500 points, and a
    badge for members of tier ``core`` or higher."""
    for item in (
        RewardInput(
            code="tee",
            kind="merch",
            title="社群 T 恤",
            cost_points=100,
            value_fen=3_000,
            variants=(VariantInput("M", "M 码", 5), VariantInput("L", "L 码", 1)),
        ),
        RewardInput(
            code="rp-5", kind="red_packet", title="5 元红包", cost_points=500, value_fen=500
        ),
        RewardInput(
            code="badge", kind="virtual", title="核心徽章", cost_points=10, min_tier="core"
        ),
    ):
        reward_save(community=community, item=item, actor=ADMIN, create=True)


def _member(community: Community, who: str, points: int) -> Member:
    adjustment_create(
        community=community,
        item=AdjustmentInput(who, points, "test funding"),
        actor=ADMIN,
        create_member=True,
    )
    return Member.objects.get(community=community, external_id=who)


@pytest.fixture
def shop(community: Community) -> Community:
    _catalog(community)
    return community


def _page_url(member: Member) -> str:
    token, _ = member_token_issue(member=member)
    return f"/m/{token}/"


def _form(html: str, testid: str) -> tuple[str, dict[str, str]]:
    """The action and hidden inputs of the form marked ``data-testid=testid``."""
    found = re.search(
        rf'<form method="post" action="([^"]+)" data-testid="{testid}">(.*?)</form>', html, re.S
    )
    assert found is not None, f"no form {testid}"
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', found[2]))
    return unescape(found[1]), fields


def _cancel_form(html: str) -> tuple[str, dict[str, str]]:
    found = re.search(r'<form method="post" action="([^"]*/cancel[^"]*)">(.*?)</form>', html, re.S)
    assert found is not None, "no cancel form"
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', found[2]))
    return unescape(found[1]), fields


def _open(client: Client, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200
    return page.content.decode()


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


def test_page_lists_what_the_member_may_redeem_and_why_not_in_chinese_and_english(shop):
    bob = _member(shop, "bob", 150)
    client = Client(enforce_csrf_checks=True)
    url = _page_url(bob)

    html = _open(client, url)
    assert 'data-testid="redeem-tee"' in html  # affordable and eligible: a form
    assert 'name="variant"' in html
    assert 'name="address"' in html
    assert 'data-testid="redeem-rp-5"' not in html
    assert 'data-testid="redeem-badge"' not in html
    text = _text(html)
    assert "积分兑换" in text
    assert "可用积分：150。" in text
    assert "需要 500 积分，你当前可用 150 积分。" in text
    assert "需要达到「核心成员」或更高等级。" in text
    assert "红包 · ¥5.00" in text

    text_en = _text(_open(client, url + "?lang=en"))
    assert "Costs 500 points; you have 150 to spend." in text_en
    assert "Needs the tier Core or higher." in text_en
    assert "You can spend 150 points." in text_en


def test_sold_out_variant_cannot_be_chosen_and_sold_out_merch_has_no_form(shop):
    bob = _member(shop, "bob", 1_000)
    RewardVariant.objects.filter(reward__code="tee", code="L").update(stock=0)
    html = _open(Client(), _page_url(bob))
    assert '<option value="L" disabled>L 码 (已兑完)</option>' in html
    RewardVariant.objects.filter(reward__code="tee").update(stock=0)
    html = _open(Client(), _page_url(bob))
    assert 'data-testid="redeem-tee"' not in html
    assert "已兑完。" in _text(html)


def test_post_without_the_csrf_token_is_refused_and_stores_nothing(shop):
    bob = _member(shop, "bob", 150)
    client = Client(enforce_csrf_checks=True)
    action, fields = _form(_open(client, _page_url(bob)), "redeem-tee")
    fields.pop("csrfmiddlewaretoken")

    refused = client.post(action, {**fields, "variant": "M", **SHIPPING})
    assert refused.status_code == 403

    # the token without the cookie it pairs with (another browser) is refused too
    _, with_token = _form(_open(client, _page_url(bob)), "redeem-tee")
    stranger = Client(enforce_csrf_checks=True)
    assert stranger.post(action, {**with_token, "variant": "M", **SHIPPING}).status_code == 403

    assert not Redemption.objects.exists()
    bob.refresh_from_db()
    assert bob.held == 0


def test_redeeming_merch_holds_the_points_and_redirects_to_the_page_showing_it_pending(shop):
    bob = _member(shop, "bob", 150)
    client = Client(enforce_csrf_checks=True)
    url = _page_url(bob)
    action, fields = _form(_open(client, url), "redeem-tee")

    done = client.post(action, {**fields, "variant": "M", **SHIPPING})
    assert done.status_code == 303
    assert done["Location"] == url

    row = Redemption.objects.get()
    assert row.member == bob
    assert row.client_id.startswith("page:")
    assert (row.channel, row.requested_by) == ("member_page", "member:bob")
    assert row.status == RedemptionStatus.REQUESTED
    assert row.shipping == SHIPPING
    assert row.variant is not None
    assert row.variant.code == "M"
    bob.refresh_from_db()
    assert (bob.balance, bob.held) == (150, 100)

    text = _text(_open(client, url))
    assert "已申请兑换「社群 T 恤」，等待管理员审核；审核前 100 积分暂时冻结。" in text
    assert "待审核" in text
    assert "另有 100 积分因待审核的兑换申请而冻结。" in text
    assert "取消申请" in text
    # the message is shown once: a reload shows the redemption but not the message again
    again = _text(_open(client, url))
    assert "已申请兑换" not in again
    assert "待审核" in again


def test_english_page_posts_and_answers_in_english(shop):
    bob = _member(shop, "bob", 150)
    client = Client(enforce_csrf_checks=True)
    url = _page_url(bob) + "?lang=en"
    action, fields = _form(_open(client, url), "redeem-tee")
    assert action.endswith("/redeem?lang=en")

    done = client.post(action, {**fields, "variant": "L", **SHIPPING})
    assert done.status_code == 303
    assert done["Location"] == url
    text = _text(_open(client, url))
    assert "Requested 社群 T 恤. It now waits for an admin's approval" in text
    assert "Waiting for approval" in text


def test_a_double_submitted_form_creates_one_redemption(shop):
    bob = _member(shop, "bob", 250)
    client = Client(enforce_csrf_checks=True)
    url = _page_url(bob)
    action, fields = _form(_open(client, url), "redeem-tee")
    body = {**fields, "variant": "M", **SHIPPING}

    assert client.post(action, body).status_code == 303
    assert client.post(action, body).status_code == 303

    assert Redemption.objects.count() == 1
    bob.refresh_from_db()
    assert bob.held == 100  # 250 would have allowed two
    assert "「社群 T 恤」已经申请过了（待审核）。" in _text(_open(client, url))

    # the same key with other details is not a second redemption either
    assert client.post(action, {**body, "variant": "L"}).status_code == 303
    assert Redemption.objects.count() == 1
    assert "这份表单已用其他内容提交过" in _text(_open(client, url))

    # a freshly rendered form is a new request
    action, fresh = _form(_open(client, url), "redeem-tee")
    assert fresh["key"] != fields["key"]
    client.post(action, {**fresh, "variant": "M", **SHIPPING})
    assert Redemption.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_one_form_submitted_many_times_at_once_creates_one_redemption(community):
    _catalog(community)
    bob = _member(community, "bob", 1_000)
    url = _page_url(bob)
    client = Client(enforce_csrf_checks=True)
    action, fields = _form(_open(client, url), "redeem-tee")
    body = {**fields, "variant": "M", **SHIPPING}
    cookies = client.cookies
    statuses: list[int] = []
    start = threading.Barrier(8)

    def submit() -> None:
        mine = Client(enforce_csrf_checks=True)
        mine.cookies = cookies
        start.wait()
        try:
            statuses.append(mine.post(action, body).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert statuses == [303] * 8
    assert Redemption.objects.count() == 1
    bob.refresh_from_db()
    assert bob.held == 100
    assert RewardVariant.objects.get(reward__code="tee", code="M").reserved == 1


def test_the_member_is_the_links_never_the_forms(shop):
    bob = _member(shop, "bob", 150)
    _member(shop, "eve", 150)
    eve = Member.objects.get(external_id="eve")
    client = Client(enforce_csrf_checks=True)
    action, fields = _form(_open(client, _page_url(bob)), "redeem-tee")

    client.post(action, {**fields, "variant": "M", **SHIPPING, "member": "eve"})
    assert Redemption.objects.get().member == bob

    # a key rendered for eve does not work on bob's link
    eve_client = Client(enforce_csrf_checks=True)
    _, eve_fields = _form(_open(eve_client, _page_url(eve)), "redeem-tee")
    client.post(action, {**fields, "key": eve_fields["key"], "variant": "M", **SHIPPING})
    assert Redemption.objects.count() == 1
    # nor a key rendered for another reward
    _member(shop, "bob", 1_000)
    _, badge_fields = _form(_open(client, _page_url(bob)), "redeem-rp-5")
    client.post(action, {**fields, "key": badge_fields["key"], "variant": "M", **SHIPPING})
    assert Redemption.objects.count() == 1
    # nor a key that was not issued here
    forged = {**fields, "key": "page:my-own-id", "variant": "M", **SHIPPING}
    client.post(action, forged)
    assert Redemption.objects.count() == 1
    assert "表单无法识别，请刷新页面后重试。" in _text(_open(client, _page_url(bob)))


def test_a_refusal_is_shown_in_words_and_stores_nothing(shop):
    """The page offered the tee; by the time the form is sent the points and the stock are
    gone (spent elsewhere, taken by someone else)."""
    bob = _member(shop, "bob", 150)
    client = Client(enforce_csrf_checks=True)
    url = _page_url(bob)
    action, fields = _form(_open(client, url), "redeem-tee")
    adjustment_create(
        community=shop, item=AdjustmentInput("bob", -100, "spent elsewhere"), actor=ADMIN
    )

    assert client.post(action, {**fields, "variant": "M", **SHIPPING}).status_code == 303
    assert not Redemption.objects.exists()
    assert "未能兑换：需要 100 积分，你当前可用 50 积分。" in _text(_open(client, url))

    adjustment_create(community=shop, item=AdjustmentInput("bob", 100, "back"), actor=ADMIN)
    _member(shop, "carol", 500)
    redemption_request(
        community=shop,
        item=RedemptionRequest("bot-1", "carol", "tee", variant="L", shipping=SHIPPING),
        actor="key:bot",
    )
    client.post(action, {**fields, "variant": "L", **SHIPPING})
    assert Redemption.objects.filter(member=bob).count() == 0
    assert "未能兑换：已兑完。" in _text(_open(client, url + "?lang=zh-hans"))
    client.post(action + "?lang=en", {**fields, "variant": "L", **SHIPPING})
    assert "Not redeemed: Out of stock." in _text(_open(client, url + "?lang=en"))


def test_missing_shipping_details_are_named_and_store_nothing(shop):
    bob = _member(shop, "bob", 150)
    client = Client(enforce_csrf_checks=True)
    url = _page_url(bob)
    action, fields = _form(_open(client, url), "redeem-tee")

    client.post(action, {**fields, "variant": "M", "name": "张三", "phone": "", "address": " "})
    text = _text(_open(client, url))
    assert "请填写联系电话（数字，最多 32 位）。" in text
    assert "请填写收货地址（最多 300 个字）。" in text
    assert "请填写收件人姓名" not in text

    client.post(action, {**fields, "variant": "M", **SHIPPING, "phone": "call me maybe"})
    assert "请填写联系电话（数字，最多 32 位）。" in _text(_open(client, url))
    client.post(action, {**fields, "variant": "XL", **SHIPPING})
    assert "请选择尺码或款式。" in _text(_open(client, url))
    assert not Redemption.objects.exists()


def test_cancel_releases_the_held_points_and_the_stock(shop):
    bob = _member(shop, "bob", 150)
    client = Client(enforce_csrf_checks=True)
    url = _page_url(bob)
    action, fields = _form(_open(client, url), "redeem-tee")
    client.post(action, {**fields, "variant": "L", **SHIPPING})
    assert RewardVariant.objects.get(reward__code="tee", code="L").reserved == 1

    cancel, cancel_fields = _cancel_form(_open(client, url))
    assert cancel_fields["redemption"] == Redemption.objects.get().client_id
    done = client.post(cancel, cancel_fields)
    assert done.status_code == 303
    assert done["Location"] == url

    row = Redemption.objects.get()
    assert row.status == RedemptionStatus.CANCELLED
    assert row.decided_by == "member:bob"
    bob.refresh_from_db()
    assert (bob.balance, bob.held) == (150, 0)
    assert RewardVariant.objects.get(reward__code="tee", code="L").reserved == 0
    html = _open(client, url)
    text = _text(html)
    assert "已取消「社群 T 恤」，100 积分已解冻，可以再次使用。" in text
    assert "已取消" in text
    assert "/cancel" not in html  # nothing left to cancel

    # cancelling twice (a double click) changes nothing more
    client.post(cancel, cancel_fields)
    assert "「社群 T 恤」已无法取消（已取消）。" in _text(_open(client, url))
    bob.refresh_from_db()
    assert bob.held == 0


def test_a_member_cannot_cancel_someone_elses_redemption(shop):
    bob = _member(shop, "bob", 150)
    _member(shop, "carol", 150)
    redemption_request(
        community=shop,
        item=RedemptionRequest("bot-c", "carol", "tee", variant="M", shipping=SHIPPING),
        actor="key:bot",
    )
    client = Client(enforce_csrf_checks=True)
    url = _page_url(bob)
    _open(client, url)  # the CSRF cookie
    token = client.cookies["csrftoken"].value
    client.post(url + "cancel", {"redemption": "bot-c", "csrfmiddlewaretoken": token})
    assert Redemption.objects.get(client_id="bot-c").status == RedemptionStatus.REQUESTED
    assert "没有找到你的这条兑换申请。" in _text(_open(client, url))


def test_rejected_redemption_shows_its_reason_and_no_cancel_button(shop):
    bob = _member(shop, "bob", 150)
    redemption_request(
        community=shop,
        item=RedemptionRequest("bot-b", "bob", "tee", variant="M", shipping=SHIPPING),
        actor="key:bot",
    )
    redemption_reject(community=shop, client_id="bot-b", actor=ADMIN, reason="地址不完整")
    html = _open(Client(), _page_url(bob))
    assert 'data-testid="redemption-status">已拒绝<' in html
    assert "原因: 地址不完整" in _text(html)
    assert "/cancel" not in html


def test_expired_or_tampered_link_refuses_the_post_with_the_invalid_link_page(shop):
    bob = _member(shop, "bob", 150)
    client = Client(enforce_csrf_checks=True)
    action, fields = _form(_open(client, _page_url(bob)), "redeem-tee")
    expired = signing.dumps(
        {"c": bob.community_id, "m": bob.pk, "exp": int(time.time()) - 1}, salt=MEMBER_TOKEN_SALT
    )
    body = {**fields, "variant": "M", **SHIPPING}

    refused = client.post(f"/m/{expired}/redeem", body)
    assert refused.status_code == 403
    assert "链接已失效" in refused.content.decode()
    tampered = action.replace("/redeem", "").rstrip("/")[:-2] + "xx/redeem"
    assert client.post(tampered, body).status_code == 403
    cancel = client.post(f"/m/{expired}/cancel", {**fields, "redemption": "x"})
    assert cancel.status_code == 403
    assert not Redemption.objects.exists()


def test_the_redeem_urls_take_only_posts(shop):
    bob = _member(shop, "bob", 150)
    url = _page_url(bob)
    assert Client().get(url + "redeem").status_code == 405
    assert Client().get(url + "cancel").status_code == 405
