"""Management commands: create_community and create_api_key."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from rest_framework.test import APIClient

from points.models import Community, CommunityApiKey, RuleSet

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_community_creates_it_with_default_rules_version_1():
    output = _run("create_community", "demo", "--name", "Demo 社群", "--timezone", "Europe/Paris")

    community = Community.objects.get(slug="demo")
    assert community.name == "Demo 社群"
    assert community.timezone == "Europe/Paris"
    assert list(RuleSet.objects.filter(community=community).values_list("version", flat=True)) == [
        1
    ]
    assert output.strip() == "created community demo (Europe/Paris)"


def test_create_community_defaults_to_shanghai_time():
    _run("create_community", "demo", "--name", "Demo")

    assert Community.objects.get(slug="demo").timezone == "Asia/Shanghai"


def test_create_community_with_invalid_timezone_is_a_command_error_and_creates_nothing():
    with pytest.raises(CommandError, match="timezone"):
        _run("create_community", "demo", "--name", "Demo", "--timezone", "Mars/Olympus")

    assert not Community.objects.filter(slug="demo").exists()
    assert not RuleSet.objects.exists()


def test_create_community_with_a_taken_slug_is_a_command_error():
    _run("create_community", "demo", "--name", "Demo")

    with pytest.raises(CommandError, match="slug"):
        _run("create_community", "demo", "--name", "Again")

    assert Community.objects.get(slug="demo").name == "Demo"


def test_create_community_with_an_invalid_slug_is_a_command_error():
    with pytest.raises(CommandError, match="slug"):
        _run("create_community", "not a slug!", "--name", "Demo")

    assert not Community.objects.exists()


def test_create_community_without_name_is_a_command_error():
    with pytest.raises(CommandError):
        _run("create_community", "demo")


def test_create_api_key_prints_the_key_alone_on_the_last_line(community):
    output = _run("create_api_key", "acme", "--scopes", "events:write,members:read")

    lines = output.rstrip("\n").split("\n")
    key = lines[-1]
    assert len(lines) == 2
    assert key == key.strip()
    assert " " not in key
    prefix, dot, secret = key.partition(".")
    assert dot == "."
    assert len(prefix) == 8
    assert len(secret) >= 32
    assert "acme" in lines[0]
    assert "events:write,members:read" in lines[0]
    api_key = CommunityApiKey.objects.get(prefix=prefix)
    assert api_key.community == community
    assert sorted(api_key.scopes) == ["events:write", "members:read"]
    assert api_key.name == "bot"


def test_key_from_create_api_key_works_for_an_api_call(community):
    key = _run("create_api_key", "acme", "--scopes", "events:write", "--name", "wx-bot").split()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")

    write = client.post(
        "/api/v1/communities/acme/events",
        {"id": "cmd-1", "type": "share", "member": "alice"},
        format="json",
    )
    read = client.get("/api/v1/communities/acme/members/alice")

    assert write.status_code == 201, write.content
    assert read.status_code == 403  # scopes from --scopes are enforced
    assert CommunityApiKey.objects.get(prefix=key.split(".")[0]).name == "wx-bot"


def test_create_api_key_stores_only_a_hash_of_the_key(community):
    key = _run("create_api_key", "acme", "--scopes", "admin").split()[-1]
    prefix, _, secret = key.partition(".")
    api_key = CommunityApiKey.objects.get(prefix=prefix)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT row_to_json(k)::text FROM points_communityapikey k WHERE id = %s",
            [api_key.pk],
        )
        (row,) = cursor.fetchone()

    assert secret not in row
    assert key not in row
    assert api_key.hashed_key
    assert secret not in api_key.hashed_key
    assert api_key.is_valid(key)
    assert not api_key.is_valid(f"{prefix}.{'0' * len(secret)}")


def test_two_keys_for_one_community_are_different(community):
    first = _run("create_api_key", "acme", "--scopes", "admin").split()[-1]
    second = _run("create_api_key", "acme", "--scopes", "admin").split()[-1]

    assert first != second
    assert CommunityApiKey.objects.filter(community=community).count() == 2


def test_create_api_key_with_unknown_scope_is_a_command_error_and_creates_nothing(community):
    with pytest.raises(CommandError, match="events:delete"):
        _run("create_api_key", "acme", "--scopes", "events:write,events:delete")

    assert not CommunityApiKey.objects.exists()


def test_create_api_key_for_unknown_community_is_a_command_error():
    with pytest.raises(CommandError, match="nowhere"):
        _run("create_api_key", "nowhere", "--scopes", "admin")

    assert not CommunityApiKey.objects.exists()


def test_create_api_key_without_scopes_option_is_a_command_error(community):
    with pytest.raises(CommandError):
        _run("create_api_key", "acme")
