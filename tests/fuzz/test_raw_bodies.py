"""Hypothesis over raw request bodies, outside anything the schema generates: arbitrary bytes,
arbitrary text, and JSON-ish text built from tokens a hostile bot sends (NaN, Infinity,
1e999, lone surrogates, U+0000, bidi overrides, integers past the digit limit, nesting from
a few levels to thousands), alone or inside otherwise well-formed events, batches, adjustments
and rule sets. Whatever the body: no 5xx, and every error is problem+json with a stable code.

Examples per endpoint and strategy are bounded for CI (``FUZZ_EXAMPLES``, default 25);
``make fuzz`` runs many more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from points.models import Community

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
PROBLEM = "application/problem+json"
BASE = "/api/v1/communities/acme"
ENDPOINTS = [
    ("post", f"{BASE}/events"),
    ("post", f"{BASE}/events/batch"),
    ("post", f"{BASE}/adjustments"),
    ("put", f"{BASE}/rules"),
    # the incentive, reward and health operations that take a body
    ("put", f"{BASE}/tiers"),
    ("put", f"{BASE}/members/wxid_alice/role"),
    ("put", f"{BASE}/members/wxid_alice/tier-lock"),
    ("post", f"{BASE}/koc/wxid_alice/confirm"),
    ("post", f"{BASE}/rewards"),
    ("patch", f"{BASE}/rewards/hoodie"),
    ("post", f"{BASE}/redemptions"),
    ("post", f"{BASE}/redemption-decisions"),
    ("post", f"{BASE}/payouts/1/confirm"),
    ("post", f"{BASE}/campaigns"),
    ("post", f"{BASE}/assessments"),
    ("post", f"{BASE}/assessments/round-1/owner-scores"),
    ("post", f"{BASE}/refresh-candidates/wxid_alice/confirm"),
]
# Lists that page with a cursor: a crafted one is a 400 naming it, never a 5xx.
CURSOR_LISTS = [
    f"{BASE}/members/wxid_alice/ledger",
    f"{BASE}/leaderboard",
    f"{BASE}/campaigns/c-1/allocations",
    f"{BASE}/refresh-candidates",
]


def base64_text(raw: bytes) -> str:
    """Arbitrary bytes as a cursor would look (URL-safe base64 without padding)."""
    import base64

    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

# Tokens Python's json accepts (or nearly) that PostgreSQL, a URL path or a reader cannot take.
HOSTILE = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1e-999",
    "-0",
    "9" * 5000,
    "123456789012345678901234567890",
    "2147483648",
    "-2147483649",
    '"\\ud800"',
    '"x\\udc00y"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"a\\u202eb"',
    '"\\u200b"',
    '"a/b"',
    '".."',
    '" "',
    '""',
    '"0001-01-01T00:00:00Z"',
    '"9999-12-31T23:59:59+14:00"',
    '"' + "x" * 300 + '"',
    "[" * 40 + "]" * 40,
    "[" * 3000 + "]" * 3000,
    '{"a":' * 50 + "1" + "}" * 50,
    "null",
    "true",
    "{}",
    "[]",
]
FIELDS = [
    "id",
    "type",
    "member",
    "occurred_at",
    "target",
    "content",
    "score",
    "group",
    "meta",
    "display_name",
    "author",
    "points",
    "reason",
    "rules",
    "effective_from",
    "note",
    "events",
    "check_in",
    "daily_caps",
    "streak",
    "\\ud800",
    "\\u0000",
]
GOOD = {
    "id": '"e-1"',
    "type": '"message"',
    "member": '"wxid_alice"',
    "points": "5",
    "reason": '"fuzz"',
}

key_text = st.one_of(
    st.sampled_from(FIELDS).map(lambda k: f'"{k}"'), st.text(max_size=8).map(json.dumps)
)
scalar_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.sampled_from(list(GOOD.values())),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=20).map(lambda s: json.dumps(s, ensure_ascii=False)),
)


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"


json_text = st.recursive(
    scalar_text,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(key_text, children), max_size=5).map(_object),
    ),
    max_leaves=12,
)


@st.composite
def shaped(draw: st.DrawFn) -> str:
    """A well-formed request with hostile values in some of its fields."""
    fields = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        fields[name] = draw(json_text)
    item = _object([(json.dumps(k), v) for k, v in fields.items()])
    kind = draw(st.sampled_from(["item", "batch", "rules"]))
    if kind == "batch":
        good = _object([(json.dumps(k), v) for k, v in GOOD.items()])
        return (
            '{"events": [' + ",".join([good, item, *draw(st.lists(json_text, max_size=3))]) + "]}"
        )
    if kind == "rules":
        return '{"rules": {"points": ' + draw(json_text) + ', "daily_caps": ' + item + "}}"
    return item


@pytest.fixture
def admin(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    """A key of every scope; examples share the test's community and transaction."""
    return make_client(community, ["events:write", "members:read", "rewards:write", "admin"])


def _send(client: APIClient, method: str, url: str, body: bytes) -> None:
    response = getattr(client, method)(url, data=body, content_type="application/json")
    assert response.status_code < 500, (response.status_code, body[:300], response.content)
    if response.status_code >= 400:
        assert response["Content-Type"] == PROBLEM, (response.status_code, response.content)
        problem: dict[str, Any] = response.json()
        assert isinstance(problem.get("code"), str), problem
        assert problem.get("status") == response.status_code, problem
    else:
        json.loads(response.content)  # a success is JSON too (never NaN, never a surrogate)


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
@FUZZ
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_never_answer_5xx(admin: APIClient, method: str, url: str, body: bytes):
    _send(admin, method, url, body)


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
@FUZZ
@given(body=json_text)
def test_json_ish_text_never_answers_5xx(admin: APIClient, method: str, url: str, body: str):
    _send(admin, method, url, body.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
@FUZZ
@given(body=shaped())
def test_requests_with_hostile_fields_never_answer_5xx(
    admin: APIClient, method: str, url: str, body: str
):
    _send(admin, method, url, body.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("url", CURSOR_LISTS)
@FUZZ
@given(cursor=st.one_of(st.text(max_size=60), st.binary(max_size=45).map(base64_text)))
def test_crafted_cursors_never_answer_5xx(admin: APIClient, url: str, cursor: str):
    response = admin.get(url, {"cursor": cursor})
    assert response.status_code < 500, (response.status_code, cursor, response.content)
    if response.status_code >= 400:
        assert response["Content-Type"] == PROBLEM, response.content
