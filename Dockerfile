# syntax=docker/dockerfile:1
# The one image for every process: web (gunicorn, the default command), Celery worker and beat
# (see docker-compose.yml). Configuration comes from the environment: DATABASE_URL,
# CELERY_BROKER_URL, DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, SECURE_SSL_REDIRECT.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    INCENTIVES_DATA_DIR=/app/var \
    WEB_CONCURRENCY=3

WORKDIR /app

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

# Dependencies first, at the exact versions the tests ran with (requirements/lock.txt, made by
# `make lock` from pyproject.toml), so that a code change reuses this layer and an image built
# next year gets the same versions.
COPY requirements/lock.txt ./requirements/lock.txt
RUN pip install -r requirements/lock.txt

# Then the project itself. PYTHONPATH=/app makes every process import the source tree (with its
# templates and locale files) rather than the installed copy.
COPY . .
RUN pip install --no-deps . \
    && mkdir -p /app/var \
    && chown -R app:app /app/var

USER app

# Static files are collected into the image. Settings are imported with a throw-away key and a
# database URL that is never connected to (without one, settings would start an embedded
# PostgreSQL).
RUN DJANGO_SECRET_KEY=collectstatic-only-not-a-secret \
    DATABASE_URL=postgresql://build@127.0.0.1:5432/build \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \
    python manage.py collectstatic --no-input --verbosity 0

EXPOSE 8000

# Liveness of the web process. The Host header is the first allowed host, and the request claims
# to come through the TLS proxy, so that neither ALLOWED_HOSTS nor SECURE_SSL_REDIRECT turns it
# into a 400 or a redirect. Worker and beat containers override or disable it (docker-compose).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; h = (os.environ.get('DJANGO_ALLOWED_HOSTS') or 'localhost').split(',')[0].strip().lstrip('.').replace('*', 'localhost') or 'localhost'; r.urlopen(r.Request('http://127.0.0.1:8000/healthz', headers={'Host': h, 'X-Forwarded-Proto': 'https'}), timeout=4)"]

# config/gunicorn_conf.py: request limits, problem+json for requests refused before Django, no
# second access log line (the app writes one per request), the threaded worker of
# config/gunicorn_worker.py (WEB_THREADS, WEB_KEEPALIVE_LINGER).
CMD ["gunicorn", "config.wsgi:application", "--config", "python:config.gunicorn_conf", "--bind", "0.0.0.0:8000", "--timeout", "60", "--graceful-timeout", "30"]
