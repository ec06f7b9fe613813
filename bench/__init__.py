"""``make bench``: ingestion throughput beside raw psycopg baselines, as ratios.

Everything is measured in one run against one dedicated database (``bench_incentives`` on the
local PostgreSQL, dropped and recreated each run): the service through real gunicorn workers,
and the raw psycopg baselines on a table of the same shape. Only 127.0.0.1 is contacted.
Not part of the tests. ``python -m bench.probes`` runs psycopg-only probes of what the database
side of one event could cost (see docs/performance.md).
"""
