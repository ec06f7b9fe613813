"""DATABASES: PostgreSQL only, resolved by ``config.database``; an optional read replica."""

import os

from config.database import django_database, resolve_database_url

DATABASE_URL = resolve_database_url(prefer_local=os.environ.get("DB_PREFER_LOCAL") == "1")
DATABASES = {"default": django_database(DATABASE_URL)}

# Read replica (docs/scaling.md, "Read replicas"): a streaming standby of `default`. Only reads
# marked with config.db_router.reads_from_replica go there; without the variable there is no
# `replica` alias and everything uses `default`. Tests mirror it to `default` (no test database
# is created on a standby).
DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL", "").strip()
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = {
        **django_database(DATABASE_REPLICA_URL),
        "TEST": {"MIRROR": "default"},
    }
DATABASE_ROUTERS = ["config.db_router.ReplicaRouter"]
# Member-facing reads use the replica only when it is at most this far behind ...
REPLICA_MAX_LAG_SECONDS = float(os.environ.get("REPLICA_MAX_LAG_SECONDS", "2"))
# ... and the member has not written within this long (at least the lag above + 1 s).
REPLICA_MEMBER_WRITE_SECONDS = float(os.environ.get("REPLICA_MEMBER_WRITE_SECONDS", "5"))
