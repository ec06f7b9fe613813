"""Polish of the service's surface (issue 13): the landing page, error documentation, logs,
admin, installs."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from api.errors import ERROR_CODES
from points.exceptions import DomainError

pytestmark = pytest.mark.django_db

BASE = "/api/v1/communities/acme"


def _all_domain_codes() -> set[str]:
    codes, pending = set(), [DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        codes.add(cls.code)
    return codes


def test_root_is_a_landing_page_linking_docs_errors_admin_and_health():
    response = Client().get("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    for href in ('href="/api/docs/"', 'href="/api/errors/"', 'href="/admin/"',
                 'href="/healthz"', 'href="/readyz"'):  # fmt: skip
        assert href in html


def test_problem_type_resolves_to_its_entry_on_the_error_codes_page(community):
    problem = APIClient().get(f"{BASE}/members/alice").json()
    page, anchor = problem["type"].split("#")

    response = Client().get(page)

    assert problem["code"] == "missing_api_key"
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert f'id="{anchor}"' in response.content.decode()


def test_error_codes_page_documents_every_listed_and_every_domain_code():
    html = Client().get("/api/errors/").content.decode()

    for code in {entry.code for entry in ERROR_CODES} | _all_domain_codes():
        assert f'id="{code}"' in html, code


def test_error_codes_page_follows_accept_language():
    english = Client().get("/api/errors/").content.decode()
    chinese = Client().get("/api/errors/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()

    assert "Member not found" in english
    assert "成员不存在" in chinese
    assert "Member not found" not in chinese
