"""DATABASES: PostgreSQL only, resolved by ``config.database``."""

import os

from config.database import django_database, resolve_database_url

DATABASE_URL = resolve_database_url(prefer_local=os.environ.get("DB_PREFER_LOCAL") == "1")
DATABASES = {"default": django_database(DATABASE_URL)}
