"""Where every gate run and every rule's result is kept in the warehouse (schema
`audit`), and the read-only views through which BI charts data quality over time.

    audit.gate_runs            one row per gate run (stage, verdict, what was validated)
    audit.validation_results   one row per rule per gate run
    audit.suite_results        view: one row per suite per gate run, with its failed rules
    analytics.publications     one row per publish (version, run, row counts): what BI reads
    analytics.data_quality_suites / analytics.data_quality_results
                               views for BI (no examples: those may hold raw values)
    analytics.source_freshness view for BI: when each source was last loaded, and up to when
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

# Serialises concurrent DDL of gates and publishes (`create ... if not exists` races).
DDL_LOCK = "lifecycle_warehouse.quality.audit"

AUDIT_DDL = """
create schema if not exists audit;

create table if not exists audit.gate_runs (
    gate_run_id uuid primary key,
    run_id text not null,
    stage text not null,
    data_interval_end timestamptz not null,
    success boolean not null,
    expectations integer not null,
    errors integer not null,
    warnings integer not null,
    relations jsonb not null,       -- "schema.table" -> {"oid": …, "row_count": …} as validated
    docs_path text,
    started_at timestamptz not null,
    finished_at timestamptz not null
);
create index if not exists gate_runs_stage_finished on audit.gate_runs (stage, finished_at);

create table if not exists audit.validation_results (
    gate_run_id uuid not null references audit.gate_runs (gate_run_id),
    run_id text not null,
    stage text not null,
    suite text not null,
    expectation_id text,
    expectation text not null,      -- GX expectation type
    description text,
    column_name text,
    severity text not null,         -- critical (blocks) | warning | info
    success boolean not null,
    unexpected_count bigint,
    observed jsonb,                 -- GX's result object
    examples jsonb,                 -- a few offending rows of a failed SQL check
    error text,                     -- the exception when the check could not run
    data_interval_end timestamptz not null,
    checked_at timestamptz not null
);
create index if not exists validation_results_run on audit.validation_results (gate_run_id);
create index if not exists validation_results_suite on audit.validation_results (suite, checked_at);

create or replace view audit.suite_results as
select gate_run_id, run_id, stage, suite,
       min(checked_at) as checked_at,
       min(data_interval_end) as data_interval_end,
       bool_and(success or severity <> 'critical') as success,
       count(*) as expectations,
       count(*) filter (where not success and severity = 'critical') as errors,
       count(*) filter (where not success and severity <> 'critical') as warnings,
       coalesce(array_agg(label order by label) filter (where not success), array[]::text[]) as failed_expectations
from (
    select r.*,
           coalesce(r.description, r.expectation || coalesce('(' || r.column_name || ')', '')) as label
    from audit.validation_results r
) labelled
group by gate_run_id, run_id, stage, suite;
"""

# What BI may see of data quality: no `observed` or `examples`, which may hold raw values.
BI_VIEWS_DDL = """
create or replace view analytics.data_quality_suites as
select run_id, stage, suite, checked_at, data_interval_end, success, expectations, errors, warnings,
       failed_expectations
from audit.suite_results;

create or replace view analytics.data_quality_results as
select run_id, stage, suite, expectation, description, column_name, severity, success,
       unexpected_count, checked_at, data_interval_end
from audit.validation_results;
"""


# How fresh each source is, for BI: the latest date folder loaded of each landing-zone
# entity, and the shop extraction's watermark per table (live: what raw holds now).
SOURCE_FRESHNESS_DDL = """
create or replace view analytics.source_freshness as
select source, entity,
       max(dt) filter (where status = 'loaded') as last_date_loaded,
       max(loaded_at) filter (where status = 'loaded') as last_loaded_at,
       max(dt) filter (where status = 'rejected') as last_date_rejected
from raw.load_audit
where source <> 'shop'
group by source, entity
union all
select 'shop', split_part(source_table, '.', 2), (watermark at time zone 'UTC')::date, updated_at, null::date
from raw.extract_watermarks;
"""


PUBLICATIONS_DDL = """
create table if not exists {schema}.publications (
    version bigint primary key,
    run_id text,
    published_at timestamptz not null,
    relations jsonb not null        -- relation -> row count published
);
"""


def publications_ddl(schema: str) -> sql.Composed:
    """The publish log of a BI schema (one row per publish)."""
    return sql.SQL(PUBLICATIONS_DDL).format(schema=sql.Identifier(schema))


def ensure_schemas(conn: psycopg.Connection) -> None:
    """Create the audit tables, `analytics.publications` and the data-quality views (idempotent)."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (DDL_LOCK,))
        conn.execute(AUDIT_DDL)
        conn.execute("create schema if not exists analytics")
        conn.execute(publications_ddl("analytics"))
        conn.execute(BI_VIEWS_DDL)
        if conn.execute("select to_regclass('raw.load_audit') is not null "
                        "and to_regclass('raw.extract_watermarks') is not null").fetchone()[0]:
            conn.execute(SOURCE_FRESHNESS_DDL)


def relation_facts(conn: psycopg.Connection, relations: Iterable[str],
                   counted: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """What identifies the content of each `schema.table`: its oid (a rebuilt table has a new
    one), its row count, and the newest transaction that wrote a row of it (`max_xmin`:
    changes with any insert or update, also of a table changed in place, like an incremental
    model). All None for a relation that does not exist. Only the relations in `counted`
    (default: all) are read for their row count and max_xmin (None for the others)."""
    counted = None if counted is None else set(counted)
    facts: dict[str, dict[str, Any]] = {}
    for relation in relations:
        oid = conn.execute("select to_regclass(%s)::oid::bigint", (relation,)).fetchone()[0]
        if oid is None or (counted is not None and relation not in counted):
            facts[relation] = {"oid": oid, "row_count": None, "max_xmin": None}
            continue
        schema, table = relation.split(".", 1)
        count, max_xmin = conn.execute(
            sql.SQL("select count(*), max(xmin::text::bigint) from {}").format(sql.Identifier(schema, table))
        ).fetchone()
        facts[relation] = {"oid": oid, "row_count": count, "max_xmin": max_xmin}
    return facts


def _json(value: Any) -> Jsonb | None:
    if value is None:
        return None
    # Round-trip through json with str() for dates, decimals and other non-JSON values.
    return Jsonb(json.loads(json.dumps(value, default=str)))


def record_gate_run(conn: psycopg.Connection, run: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """Insert one gate run and its expectation results, in one transaction."""
    with conn.transaction():
        conn.execute(
            """
            insert into audit.gate_runs (gate_run_id, run_id, stage, data_interval_end, success, expectations,
                                         errors, warnings, relations, docs_path, started_at, finished_at)
            values (%(gate_run_id)s, %(run_id)s, %(stage)s, %(data_interval_end)s, %(success)s, %(expectations)s,
                    %(errors)s, %(warnings)s, %(relations)s, %(docs_path)s, %(started_at)s, %(finished_at)s)
            """,
            {**run, "relations": _json(run["relations"])},
        )
        with conn.cursor() as cur:
            cur.executemany(
                """
                insert into audit.validation_results (
                    gate_run_id, run_id, stage, suite, expectation_id, expectation, description, column_name,
                    severity, success, unexpected_count, observed, examples, error, data_interval_end, checked_at)
                values (%(gate_run_id)s, %(run_id)s, %(stage)s, %(suite)s, %(expectation_id)s, %(expectation)s,
                        %(description)s, %(column_name)s, %(severity)s, %(success)s, %(unexpected_count)s,
                        %(observed)s, %(examples)s, %(error)s, %(data_interval_end)s, %(checked_at)s)
                """,
                [{**r, "observed": _json(r["observed"]), "examples": _json(r["examples"])} for r in results],
            )
