"""/api/schema/ (OpenAPI 3) and /api/docs/ (Swagger UI): public, complete, with examples."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

BASE = "/api/v1/communities/{community}"
REQUIRED_OPERATIONS = {
    (f"{BASE}/events", "post"): "events_create",
    (f"{BASE}/events/batch", "post"): "events_batch",
    (f"{BASE}/members/{{member}}", "get"): "members_retrieve",
    (f"{BASE}/members/{{member}}/ledger", "get"): "members_ledger",
}


@pytest.fixture(scope="module")
def schema(django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def _api_operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in item.items()
    ]


def _examples(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for media in operation.get("requestBody", {}).get("content", {}).values():
        found.update({f"request:{k}": v for k, v in media.get("examples", {}).items()})
    for code, response in operation.get("responses", {}).items():
        for media in response.get("content", {}).values():
            found.update({f"{code}:{k}": v for k, v in media.get("examples", {}).items()})
    return found


def test_schema_is_openapi_3_yaml_by_default_without_a_key():
    response = APIClient().get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"]
    assert f"{BASE}/events" in document["paths"]


def test_schema_as_json_with_format_json():
    response = APIClient().get("/api/schema/?format=json")

    assert response.status_code == 200
    assert "json" in response["Content-Type"]
    assert json.loads(response.content)["openapi"].startswith("3.")


def test_schema_is_served_even_with_a_garbage_authorization_header():
    response = APIClient().get("/api/schema/", HTTP_AUTHORIZATION="Api-Key nope.nope")

    assert response.status_code == 200


def test_schema_lists_the_four_v1_operations_with_their_ids(schema):
    for (path, method), operation_id in REQUIRED_OPERATIONS.items():
        assert path in schema["paths"], sorted(schema["paths"])
        assert schema["paths"][path][method]["operationId"] == operation_id


def test_every_v1_operation_has_at_least_one_example(schema):
    operations = _api_operations(schema)
    assert len(operations) >= 4

    missing = [f"{m.upper()} {p}" for p, m, op in operations if not _examples(op)]

    assert missing == []


def test_events_create_documents_request_success_and_error_examples(schema):
    operation = schema["paths"][f"{BASE}/events"]["post"]
    request_examples = operation["requestBody"]["content"]["application/json"]["examples"]
    responses = operation["responses"]

    assert any(e["value"].get("type") == "check_in" for e in request_examples.values())
    assert responses["201"]["content"]["application/json"]["examples"]
    assert set(responses) >= {"200", "201", "400", "401", "403", "404", "409", "413"}
    conflict = responses["409"]["content"]["application/problem+json"]["examples"]
    assert [e["value"]["code"] for e in conflict.values()] == ["event_conflict"]


def test_events_create_request_schema_names_the_event_fields(schema):
    ref = schema["paths"][f"{BASE}/events"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["$ref"]
    component = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]

    assert set(component["required"]) == {"id", "type", "member"}
    assert {"occurred_at", "target", "content", "score", "group", "meta"} <= set(
        component["properties"]
    )


def test_error_responses_are_documented_as_problem_json(schema):
    for path, method, operation in _api_operations(schema):
        for code, response in operation["responses"].items():
            if code.startswith(("4", "5")):
                assert list(response["content"]) == ["application/problem+json"], (
                    path,
                    method,
                    code,
                )


def test_security_schemes_document_api_key_and_member_token(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Api-Key <key>`",
    }
    assert schemes["MemberToken"]["in"] == "header"

    events = schema["paths"][f"{BASE}/events"]["post"]["security"]
    member = schema["paths"][f"{BASE}/members/{{member}}"]["get"]["security"]

    assert events == [{"ApiKeyAuth": []}]
    assert {"ApiKeyAuth": []} in member
    assert {"MemberToken": []} in member
    assert {} not in member  # never anonymous


def test_schema_generates_without_warnings_and_validates(tmp_path):
    out = tmp_path / "openapi.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    assert yaml.safe_load(out.read_text())["openapi"].startswith("3.")


def test_swagger_ui_is_served_as_html_without_a_key():
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "swagger" in html.lower()
    assert "/api/schema/" in html
