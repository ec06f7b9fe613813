"""``make run``: the whole service in one terminal.

Resolves the database once (``DATABASE_URL`` or the embedded PostgreSQL, kept alive by this
process), then migrates and starts gunicorn, a Celery worker and Celery beat as child processes
that share that database and broker. Ctrl-C stops all of them, then the embedded server.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from config.database import DATA_DIR, resolve_database_url

ROOT = Path(__file__).resolve().parent.parent


def public_base_url(environ: Mapping[str, str] = os.environ) -> str:
    """Where a person reaches the service: ``PUBLIC_BASE_URL``, else the address ``make run``
    binds (``HOST``, ``PORT``; a wildcard host shown as 127.0.0.1)."""
    explicit = environ.get("PUBLIC_BASE_URL", "").strip().rstrip("/")
    if explicit:
        return explicit
    host = environ.get("HOST", "127.0.0.1").strip()
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 - only displayed, never bound
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{environ.get('PORT', '8000').strip() or '8000'}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    env["DATABASE_URL"] = resolve_database_url()
    env.setdefault("CELERY_BROKER_URL", "filesystem://")
    # Several gunicorn workers: /metrics sums them (prometheus_client multiprocess mode).
    if "PROMETHEUS_MULTIPROC_DIR" not in env:
        metrics_dir = DATA_DIR / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)  # noqa: S603


def _ensure_admin(env: dict[str, str]) -> str | None:
    """Create an ``admin`` superuser on first start and return its password (shown once)."""
    password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    code = (
        "from django.contrib.auth import get_user_model as g;U=g();"
        "import sys;"
        "sys.exit(0) if U.objects.filter(is_superuser=True).exists() else "
        f"(U.objects.create_superuser('admin', 'admin@example.com', {password!r}), sys.exit(3))"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=False
    )
    return password if done.returncode == 3 else None


def main() -> int:
    from config.settings.tasks import TASK_QUEUE_NAMES

    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    env = _env()
    (DATA_DIR / "celery-queue").mkdir(parents=True, exist_ok=True)
    print(f"database: {env['DATABASE_URL']}\nbroker:   {env['CELERY_BROKER_URL']}", flush=True)
    _manage(env, "migrate", "--no-input")
    _manage(env, "collectstatic", "--no-input", "--verbosity", "0")
    new_password = _ensure_admin(env)

    bin_dir = Path(sys.executable).parent
    commands = {
        "web": [
            str(bin_dir / "gunicorn"),
            "config.wsgi:application",
            "--config",
            "python:config.gunicorn_conf",
            "--bind",
            f"{host}:{port}",
            "--workers",
            os.environ.get("WEB_CONCURRENCY", "3"),
        ],
        "worker": [
            str(bin_dir / "celery"),
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            os.environ.get("CELERY_CONCURRENCY", "2"),
            # One worker for all three queues here; a fleet runs one pool per queue
            # (docs/operations.md, "Queues").
            "--queues",
            ",".join(TASK_QUEUE_NAMES),
        ],
        "beat": [
            str(bin_dir / "celery"),
            "-A",
            "config",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(DATA_DIR / "celerybeat-schedule"),
        ],
    }
    children = {
        name: subprocess.Popen(cmd, cwd=ROOT, env=env)  # noqa: S603
        for name, cmd in commands.items()
    }
    base = public_base_url()
    print(
        f"\nService running.\n  API docs: {base}/api/docs/\n  Admin:    {base}/admin/\n"
        f"  Health:   {base}/healthz  {base}/readyz\nPress Ctrl-C to stop.",
        flush=True,
    )
    if new_password:
        print(f"  Admin login created: admin / {new_password}  (shown once)", flush=True)

    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with {child.returncode}; stopping", flush=True)
                stopping, exit_code = True, 1
        time.sleep(0.5)
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 15
    for child in children.values():
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
    print("stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
