"""Polish of the service's surface (issue 13): the landing page, error documentation, logs,
admin, installs."""

from __future__ import annotations

import http.client
import importlib.metadata
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.db.models import DateTimeField
from django.test import Client
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from psycopg.conninfo import make_conninfo
from rest_framework.test import APIClient

from api.errors import ERROR_CODES
from points.corrections import event_reverse
from points.exceptions import DomainError
from points.models import AuditLog, LedgerEntry, Member
from points.services import EventInput, api_key_create, community_create, events_ingest
from tests.served import server_env

ROOT = Path(__file__).resolve().parent.parent

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


def test_landing_page_follows_accept_language():
    chinese = Client().get("/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()

    assert "API 文档" in chinese
    assert "API documentation" not in chinese


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


# --- The real server: what gunicorn refuses, chunked bodies, one access line ---------------


@dataclass(frozen=True)
class Served:
    port: int
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """gunicorn as ``make run`` and the Docker image start it (``config/gunicorn_conf.py``),
    one sync worker, against this run's test database."""
    tmp = tmp_path_factory.mktemp("polish-server")
    db = connection.settings_dict  # this run's test database, as a libpq DSN
    database_url = make_conninfo(
        dbname=db["NAME"],
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
    )
    env = server_env(database_url, tmp / "data", LOG_LEVEL="INFO")
    port = _free_port()
    log = tmp / "gunicorn.log"
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "config.wsgi:application",
        "--config",
        "python:config.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own gunicorn, fixed arguments
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _, _ = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield Served(port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (http.client refuses to send a malformed request line)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                headers = dict(
                    line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:]
                )
                length = int(headers.get("Content-Length", "-1"))
                if 0 <= length <= len(body):
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /api/v1/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
         431, "headers_too_large"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
         + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n",
         431, "headers_too_large"),
        (b"GET /he\x01lthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"G\x00T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br\r\n\r\n",
         501, "unsupported_transfer_coding"),
    ],
    ids=["url-over-4kb", "header-over-8kb", "too-many-headers", "control-char-in-path",
         "nul-in-method", "unknown-transfer-coding"],
)  # fmt: skip
def test_requests_refused_before_django_are_problem_json(served, request_bytes, status, code):
    got_status, headers, body = _raw(served.port, request_bytes)

    assert got_status == status
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == f"/api/errors/#{code}"
    assert code in {entry.code for entry in ERROR_CODES}


@pytest.mark.django_db(transaction=True)
def test_chunked_body_is_read_like_any_other(served):
    community = community_create(slug="chunky", name="Chunky", timezone_name="UTC")
    _, key = api_key_create(community=community, scopes=["events:write"], name="bot")
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    body = json.dumps({"id": "c-1", "type": "share", "member": "alice"}).encode()

    conn.request(
        "POST",
        "/api/v1/communities/chunky/events",
        body=iter([body[:10], body[10:]]),
        headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = conn.getresponse()

    assert response.status == 201, response.read()
    assert json.loads(response.read())["id"] == "c-1"


def test_chunked_body_over_the_limit_is_a_413_problem(served):
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)

    conn.request(
        "POST",
        "/api/v1/communities/acme/events",
        body=iter([b"x" * size]),
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = conn.getresponse()

    assert response.status == 413
    assert response.getheader("Content-Type") == "application/problem+json"
    assert json.loads(response.read())["code"] == "payload_too_large"
    time.sleep(0.3)  # the worker's log line reaches the file
    logged = [line for line in served.log.read_text().splitlines() if '"status": 413' in line]
    assert len(logged) == 1, logged  # the one access line, though Django never saw it


def test_one_log_line_per_request_the_apps_access_line(served):
    path = f"/nothing-here-{time.monotonic_ns()}"

    status, _, _ = _raw(served.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())

    assert status == 404
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in served.log.read_text().splitlines() if path in line]
        if lines:
            break
        time.sleep(0.1)
    time.sleep(0.3)
    lines = [line for line in served.log.read_text().splitlines() if path in line]
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["logger"] == "incentives.access"
    assert record["status"] == 404


# --- Logs and printed links --------------------------------------------------------------


def test_management_command_on_the_embedded_database_prints_only_its_own_output(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DB_PREFER_LOCAL")}
    env.pop("XDG_RUNTIME_DIR", None)  # platformdirs warns without it
    env.update(DJANGO_SETTINGS_MODULE="config.settings.local", INCENTIVES_DATA_DIR=str(tmp_path))

    done = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == "System check identified no issues (0 silenced).\n"
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"HOST": "0.0.0.0", "PORT": "8123"}, "http://127.0.0.1:8123"),  # noqa: S104
        ({"HOST": "demo.local", "PORT": "9000"}, "http://demo.local:9000"),
        ({"PUBLIC_BASE_URL": "https://points.example.org/", "PORT": "1"},
         "https://points.example.org"),
    ],
)  # fmt: skip
def test_public_base_url_is_where_make_run_listens_unless_configured(environ, expected):
    from config.serve import public_base_url

    assert public_base_url(environ) == expected


def test_seed_demo_prints_links_with_the_configured_host_and_port(settings):
    settings.PUBLIC_BASE_URL = "http://demo.local:9000"
    out = io.StringIO()

    call_command(
        "seed_demo", "--members", "5", "--days", "1", "--until", "2026-03-15T21:30:00+08:00",
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip

    assert "http://demo.local:9000/api/v1/communities/demo/members/" in out.getvalue()
    assert "127.0.0.1:8000" not in out.getvalue()


# --- The admin ---------------------------------------------------------------------------


@pytest.fixture
def staff(db: None) -> Client:
    from django.contrib.auth.models import User

    client = Client()
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw-1234567"))
    return client


def test_admin_has_one_api_keys_section_the_communities_keys(staff):
    index = staff.get("/admin/").content.decode()

    assert index.count(">API keys<") == 1
    assert "/admin/points/communityapikey/" in index
    assert "/admin/rest_framework_api_key/" not in index
    assert staff.get("/admin/rest_framework_api_key/apikey/").status_code == 404


def test_admin_times_say_their_time_zone(staff, community):
    Member.objects.create(community=community, external_id="ann", joined_at=community.created_at)

    page = staff.get("/admin/points/member/").content.decode()

    assert "Joined (UTC)" in page
    assert f"{community.created_at:%Y-%m-%d %H:%M:%S} UTC" in page
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in ("points", "admin"):  # the admins of points/admin.py
            continue
        for column in model_admin.list_display:
            if isinstance(column, str) and column in {f.name for f in model._meta.fields}:
                field = model._meta.get_field(column)
                assert not isinstance(field, DateTimeField), f"{model.__name__}.{column}"


@pytest.mark.parametrize("field", ["balance", "lifetime_points"])
def test_admin_members_sort_by_balance_and_lifetime_points(staff, community, field):
    for name, points in (("low", 5), ("high", 50), ("mid", 20)):
        Member.objects.create(community=community, external_id=name, joined_at=community.created_at,
                              balance=points, lifetime_points=points * 2)  # fmt: skip
    from points.admin import MemberAdmin

    column = MemberAdmin.list_display.index(field)

    page = staff.get(f"/admin/points/member/?o=-{column}").content.decode()

    assert f'class="sortable column-{field}' in page
    assert page.index(">high<") < page.index(">mid<") < page.index(">low<")


@pytest.mark.django_db(transaction=True)
def test_a_reversal_is_in_the_audit_log_once(staff):
    community = community_create(slug="rev", name="Rev", timezone_name="UTC")
    events_ingest(community=community, events=[EventInput("e-1", "share", "ann")])

    event_reverse(community=community, client_id="e-1", reason="spam", actor="user:ops")
    event_reverse(community=community, client_id="e-1", reason="again", actor="user:ops")

    [row] = AuditLog.objects.filter(community=community, action="event.reverse")
    assert (row.actor, row.target, row.client_id) == ("user:ops", "event:e-1", "e-1")
    assert row.data["reason"] == "spam"
    assert row.data["points"] == -sum(
        LedgerEntry.objects.filter(event__client_id="e-1", kind="award").values_list(
            "points", flat=True
        )
    )
    page = staff.get("/admin/points/auditlog/?action=event.reverse").content.decode()
    assert "event:e-1" in page


@pytest.mark.django_db(transaction=True)
def test_a_reversal_that_fails_leaves_no_audit_row(monkeypatch):
    community = community_create(slug="rev2", name="Rev", timezone_name="UTC")
    events_ingest(community=community, events=[EventInput("e-1", "share", "ann")])

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the outbox is down")

    monkeypatch.setattr("points.corrections.outbox.publish", broken)
    with pytest.raises(RuntimeError):
        event_reverse(community=community, client_id="e-1", reason="spam", actor="user:ops")

    assert not AuditLog.objects.filter(community=community, action="event.reverse").exists()
    assert not LedgerEntry.objects.filter(community=community, kind="reversal").exists()


# --- Reproducible installs ---------------------------------------------------------------


def _pins(path: Path) -> dict[str, tuple[str, str]]:
    """``name -> (version, marker)`` of a lock file; every requirement must be ``==``."""
    pins: dict[str, tuple[str, str]] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line)
        [spec] = list(requirement.specifier)
        assert spec.operator == "==", line
        pins[canonicalize_name(requirement.name)] = (spec.version, str(requirement.marker or ""))
    return pins


def test_lock_files_pin_every_dependency_of_pyproject_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins(ROOT / "requirements" / "lock.txt")
    dev = _pins(ROOT / "requirements" / "lock-dev.txt")

    everything = project["dependencies"] + project["optional-dependencies"]["dev"]

    for wanted, lock in ((project["dependencies"], runtime), (everything, dev)):
        for line in wanted:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in lock, f"{name} is not in the lock: run make lock"
            assert requirement.specifier.contains(lock[name][0], prereleases=True), name
    for locked, pin in runtime.items():
        assert dev[locked] == pin, f"{locked}: the two locks disagree"


def test_the_environment_running_the_tests_is_the_locked_one():
    for name, (version, marker) in _pins(ROOT / "requirements" / "lock-dev.txt").items():
        if marker and not Marker(marker).evaluate():
            continue
        assert importlib.metadata.version(name) == version, f"{name}: make install"


def test_makefile_ci_and_image_install_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert "LOCK   := requirements/lock-dev.txt" in makefile
    assert "$(STAMP): pyproject.toml $(LOCK)" in makefile
    assert "pip install --quiet -r $(LOCK)" in makefile
    assert "pip install --quiet --no-deps -e ." in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # CI goes through the Makefile
    assert "RUN pip install -r requirements/lock.txt" in dockerfile
    assert "pip install --no-deps ." in dockerfile


# --- make test and Chromium --------------------------------------------------------------


def _ensure_chromium(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """scripts/ensure-chromium.sh as root on a machine with apt-get and no browser: ``id``
    and ``apt-get`` are stand-ins, and ``apt-get`` only records that it was called."""
    fake = tmp_path / "bin"
    fake.mkdir()
    called = tmp_path / "apt-get-called"
    (fake / "id").write_text("#!/bin/sh\necho 0\n")
    (fake / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {called}\n')
    for tool in ("id", "apt-get"):
        (fake / tool).chmod(0o755)
    (fake / "grep").symlink_to(shutil.which("grep") or "/bin/grep")
    done = subprocess.run(  # noqa: S603 - our own script
        ["/bin/bash", str(ROOT / "scripts" / "ensure-chromium.sh")],  # noqa: S607
        env={"PATH": str(fake), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done, called


def test_make_test_installs_chromium_with_apt_when_run_as_root(tmp_path):
    done, called = _ensure_chromium(tmp_path)

    assert done.returncode == 0
    assert "installing chromium" in done.stdout
    assert "install -y -qq chromium fonts-wqy-zenhei" in called.read_text()


def test_skip_chromium_install_installs_nothing_and_the_readme_says_so(tmp_path):
    done, called = _ensure_chromium(tmp_path, SKIP_CHROMIUM_INSTALL="1")

    assert done.returncode == 0
    assert "SKIP_CHROMIUM_INSTALL=1" in done.stdout
    assert not called.exists()
    readme = (ROOT / "README.md").read_text()
    assert "scripts/ensure-chromium.sh" in readme
    assert "SKIP_CHROMIUM_INSTALL=1 make" in readme
