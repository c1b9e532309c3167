"""What BI sees, as data: the row hashes of every published table in `analytics`, for tests
that compare two runs of the pipeline (crash and rerun, Celery and local, two at once).

Columns that record *when* or *which run* did the work (timestamps of a fit, of a
publication, Airflow run ids) differ between two correct runs and are left out; everything
else must be identical.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

SCHEMA = "analytics"
# Bookkeeping of the publish and gate steps: which run, when. Not data BI reads as KPIs.
SKIPPED_RELATIONS = frozenset({"publications"})
VOLATILE_COLUMNS = frozenset({"fitted_at", "published_at", "run_id", "checked_at", "last_loaded_at"})


def analytics_fingerprint(url: str, schema: str = SCHEMA) -> dict[str, list[str]]:
    """{table: sorted md5 of each row's text (volatile columns left out)} for every table of
    `schema` (views are computed from tables, so they add nothing)."""
    fingerprint: dict[str, list[str]] = {}
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = %s and c.relkind in ('r', 'p', 'm') order by 1", (schema,))]
        for table in tables:
            if table in SKIPPED_RELATIONS:
                continue
            columns = [r[0] for r in conn.execute(
                "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 "
                "and not attisdropped order by attnum",
                (f'{schema}."{table}"',))]
            kept = [c for c in columns if c not in VOLATILE_COLUMNS]
            row_text = sql.SQL(" || '|' || ").join(
                sql.SQL("coalesce({}::text, '∅')").format(sql.Identifier(c)) for c in kept)
            query = sql.SQL("select md5({}) as h from {}.{} order by h").format(
                row_text, sql.Identifier(schema), sql.Identifier(table))
            fingerprint[table] = [r[0] for r in conn.execute(query)]
    return fingerprint


def differences(expected: dict[str, list[str]], actual: dict[str, list[str]]) -> list[str]:
    """Readable differences between two fingerprints (empty when identical)."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            problems.append(f"{table}: missing")
        elif table not in expected:
            problems.append(f"{table}: unexpected")
        elif expected[table] != actual[table]:
            missing = len(set(expected[table]) - set(actual[table]))
            extra = len(set(actual[table]) - set(expected[table]))
            problems.append(f"{table}: {len(expected[table])} rows expected, {len(actual[table])} found "
                            f"({missing} missing, {extra} unexpected)")
    return problems
