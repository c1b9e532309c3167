"""Create the `raw` schema of the warehouse: one table per contract entity, plus the load
audit, the quarantine, the extraction watermarks, the log of warehouse builds and the
functions of the build guard. Idempotent (`if not exists`, `create or replace`), run by
the first task of every ingestion DAG and by `lw up`; never at DAG parse time.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from lifecycle_warehouse import contract

log = logging.getLogger(__name__)

RAW_SCHEMA = "raw"

# Load metadata every raw row of a file entity carries (docs/sources.md, section 4).
FILE_METADATA_COLUMNS = (
    ("_batch_id", "uuid not null"),
    ("_dt", "date not null"),
    ("_file", "text not null"),
    ("_line_number", "integer not null"),
    ("_loaded_at", "timestamptz not null"),
    ("_extra", "jsonb"),  # columns beyond the contract (schema drift), by header name
)
# Extra lookup indexes of raw file tables, (raw table, column), named <table>__<column>_hash.
# stg_web__events and stg_crm__email_events keep one delivery of an event by looking up its
# other deliveries by event_id, so that incremental runs read only their window of the raw
# table. Hash indexes: the lookups are equalities, and every load inserts its records' ids,
# random keys, into an index of every delivery ever made; a hash index is 40 % of the b-tree's
# size (1.0 against 2.6 GB for a year's 36 million web events) and a day's insert into it
# costs ~60 % of the b-tree's (docs/benchmark.md, "Raw loads at a year").
RAW_LOOKUP_INDEXES = (
    ("web_events", "event_id"),
    ("crm_email_events", "event_id"),
)
# Indexes of older releases that nothing reads any more: every load would still maintain
# them, so the bootstrap drops them. crm_email_events__contact_id served lookups of a
# contact's e-mail events, which read dbt's int_crm__email_events now; the __event_id ones
# were the b-tree lookup indexes that the hash indexes above replace.
RETIRED_RAW_INDEXES = ("crm_email_events__contact_id", "web_events__event_id", "crm_email_events__event_id")
SHOP_METADATA_COLUMNS = (
    ("_batch_id", "uuid not null"),
    ("_extracted_at", "timestamptz not null"),
)

# (qualified name, statement) of the load bookkeeping tables and their indexes.
AUDIT_RELATIONS: tuple[tuple[str, str], ...] = (
    ("raw.load_audit", """
create table if not exists raw.load_audit (
    batch_id uuid not null,
    source text not null,
    entity text not null,
    dt date,
    file text,
    status text not null check (status in ('loaded', 'rejected')),
    rows_read bigint not null default 0,
    rows_loaded bigint not null default 0,
    rows_quarantined bigint not null default 0,
    error text,
    loaded_at timestamptz not null default now(),
    -- the file as it was loaded: a later run reloads a date folder whose files changed
    file_size bigint,
    file_modified_at timestamptz,
    file_sha256 text,
    -- a CSV file's header line, so that its quarantined records can be replayed
    header text,
    -- when `lw quarantine replay` last loaded records of the file
    replayed_at timestamptz
)"""),
    ("raw.load_audit_source_entity_dt",
     "create index if not exists load_audit_source_entity_dt on raw.load_audit (source, entity, dt)"),
    ("raw.quarantine", """
create table if not exists raw.quarantine (
    batch_id uuid not null,
    source text not null,
    entity text not null,
    dt date,
    file text not null,
    line_number integer,
    rule text not null,
    raw_record text,
    quarantined_at timestamptz not null default now()
)"""),
    ("raw.quarantine_source_entity_dt",
     "create index if not exists quarantine_source_entity_dt on raw.quarantine (source, entity, dt)"),
    ("raw.extract_watermarks", """
create table if not exists raw.extract_watermarks (
    source_table text primary key,
    watermark timestamptz not null,
    updated_at timestamptz not null default now()
)"""),
    # One row per build: a warehouse DAG run (kind `dag`, run_id its Airflow run id) or a
    # dbt command that writes (kind `dbt`, run_id `dbt:<invocation id>`, from the dbt
    # project's on-run-start hook): when it started, what it planned, when its build
    # succeeded in full and when it ended. A date folder loaded after the start of the
    # last successful build may not have been read by it; the next build reprocesses from
    # its date. A build that has not ended holds the warehouse (raw.take_warehouse).
    ("raw.warehouse_builds", """
create table if not exists raw.warehouse_builds (
    run_id text primary key,
    started_at timestamptz not null default now(),
    built_at timestamptz,
    ended_at timestamptz,
    kind text not null default 'dag',
    recompute_from date,
    as_of_date date,
    heartbeat_at timestamptz,
    connections text[] not null default '{}'
)"""),
)

# Functions of the build guard and plan: one definition for the warehouse DAG
# (warehouse_tasks.plan_build) and the dbt project's hooks (macros/warehouse_builds.sql),
# so that plain `dbt build` gets the same safety and plan as a DAG run. (signature, body)
FUNCTIONS: tuple[tuple[str, str], ...] = (
    # The oldest date folder (re)delivered, or whose quarantine was replayed, since the
    # start of the last successful build: incremental models reprocess deliveries from it.
    # Shop extractions are not date folders (their rows carry updated_at).
    ("raw.planned_recompute_from()", """
create or replace function raw.planned_recompute_from() returns date
language sql stable as $$
    select min(dt)
    from raw.load_audit
    where
        source <> 'shop'
        and dt is not null
        and greatest(loaded_at, replayed_at)
            > (select max(started_at) from raw.warehouse_builds where built_at is not null)
$$"""),
    # The latest date folder delivered (a quiet day's empty file included): the as-of date
    # of a build that is not given one.
    ("raw.latest_delivered_date()", """
create or replace function raw.latest_delivered_date() returns date
language sql stable as $$
    select max(dt) from raw.load_audit where source <> 'shop' and status = 'loaded'
$$"""),
    # This session's connection, as recorded by a build: pid and start, so that a reused
    # pid is not mistaken for it.
    ("raw.connection_token()", """
create or replace function raw.connection_token() returns text
language sql stable as $$
    select pid || '@' || backend_start from pg_stat_activity where pid = pg_backend_pid()
$$"""),
    # Whether a dbt build is still running: one of the connections it recorded is open, or
    # it recorded one within `grace` (dbt opens a connection per model, and closes it after).
    ("raw.build_is_alive(text[], timestamptz, interval)", """
create or replace function raw.build_is_alive(
    connections text[], heartbeat_at timestamptz, grace interval default '2 minutes'
)
returns boolean
language sql stable as $$
    select heartbeat_at > now() - grace
        or exists (
            select from pg_stat_activity as activity
            where activity.pid || '@' || activity.backend_start = any(connections)
        )
$$"""),
    # Take the warehouse for a build (serialised by a transaction lock):
    # - a `dbt` build refuses to start (an exception naming the holder) while another
    #   build holds it; a `dbt` build whose process died has ended;
    # - a `dag` run returns NULL while a `dbt` build holds it (the caller waits and tries
    #   again), and ends an earlier `dag` run that never ended (runs are serialised by
    #   Airflow: it was interrupted).
    # Logs the build with its plan and returns its run_id.
    ("raw.take_warehouse(text, text, date, interval)", """
create or replace function raw.take_warehouse(
    build_run_id text, build_kind text, build_as_of date, grace interval default '2 minutes'
) returns text
language plpgsql as $$
declare
    holder record;
begin
    perform pg_advisory_xact_lock(hashtext('lifecycle_warehouse.warehouse_builds'));
    update raw.warehouse_builds as b set ended_at = now()
    where b.ended_at is null and b.kind = 'dbt' and b.run_id <> build_run_id
      and not raw.build_is_alive(b.connections, b.heartbeat_at, grace);
    for holder in
        select * from raw.warehouse_builds as b
        where b.ended_at is null and b.run_id <> build_run_id
        order by b.started_at
    loop
        if build_kind = 'dag' and holder.kind = 'dag' then
            raise warning 'warehouse run % (started %) never ended, it was interrupted: ended now',
                holder.run_id, holder.started_at;
            update raw.warehouse_builds set ended_at = now() where run_id = holder.run_id;
        elsif build_kind = 'dag' then
            return null;
        else
            raise exception 'the warehouse is being built by % % (started %): one build writes it at a time. %',
                case holder.kind when 'dag' then 'warehouse run' else 'dbt build' end,
                holder.run_id, to_char(holder.started_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                case holder.kind
                    when 'dag' then 'Wait for it to end; if it is not running any more, `lw builds --end '
                        || holder.run_id || '` ends it.'
                    else 'Wait for it to end (`lw builds` lists the builds).'
                end;
        end if;
    end loop;
    insert into raw.warehouse_builds as b
        (run_id, kind, recompute_from, as_of_date, heartbeat_at, connections)
    values (
        build_run_id, build_kind, raw.planned_recompute_from(),
        coalesce(build_as_of, raw.latest_delivered_date()), now(), array[raw.connection_token()]
    )
    on conflict (run_id) do update set
        ended_at = null, recompute_from = excluded.recompute_from,
        as_of_date = excluded.as_of_date, heartbeat_at = excluded.heartbeat_at,
        connections = b.connections || excluded.connections;
    return build_run_id;
end
$$"""),
    # A build is alive: records this connection (dbt: before each model, seed, snapshot).
    ("raw.build_heartbeat(text)", """
create or replace function raw.build_heartbeat(build_run_id text) returns void
language sql as $$
    update raw.warehouse_builds
    set heartbeat_at = now(),
        connections = case when raw.connection_token() = any(connections) then connections
                           else connections || raw.connection_token() end
    where run_id = build_run_id and ended_at is null
$$"""),
    # A build ended (and, when `built`, built every model: later builds plan from its start).
    ("raw.end_build(text, boolean)", """
create or replace function raw.end_build(build_run_id text, built boolean) returns void
language sql as $$
    update raw.warehouse_builds
    set ended_at = coalesce(ended_at, now()),
        built_at = case when built then coalesce(built_at, now()) else built_at end
    where run_id = build_run_id
$$"""),
)
# Columns added to a bookkeeping table after its first release: (table, column, type, the
# value of the rows already there). A warehouse created before gets them from
# ensure_raw_schema. Runs logged before ended_at existed have ended; files loaded before
# the file columns existed have no recorded size or checksum (a look-back run reloads
# such a folder once).
ADDED_COLUMNS = (
    ("warehouse_builds", "ended_at", "timestamptz", "coalesce(built_at, started_at)"),
    ("warehouse_builds", "kind", "text not null default 'dag'", "'dag'"),
    ("warehouse_builds", "recompute_from", "date", "null"),
    ("warehouse_builds", "as_of_date", "date", "null"),
    ("warehouse_builds", "heartbeat_at", "timestamptz", "null"),
    ("warehouse_builds", "connections", "text[] not null default '{}'", "'{}'"),
    ("load_audit", "file_size", "bigint", "null"),
    ("load_audit", "file_modified_at", "timestamptz", "null"),
    ("load_audit", "file_sha256", "text", "null"),
    ("load_audit", "header", "text", "null"),
    ("load_audit", "replayed_at", "timestamptz", "null"),
)


def _columns_sql(columns, metadata) -> sql.Composed:
    parts = [
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type)) for c in columns
    ] + [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(ddl)) for name, ddl in metadata]
    return sql.SQL(",\n    ").join(parts)


def raw_relations() -> list[tuple[str, sql.Composable]]:
    """(qualified name, `create … if not exists` statement) of every table and index of
    the raw schema: one table per contract entity, the load bookkeeping, their indexes."""
    relations: list[tuple[str, sql.Composable]] = []
    for entity in contract.FILE_ENTITIES:
        table = sql.Identifier(RAW_SCHEMA, entity.raw_table)
        relations.append((
            f"{RAW_SCHEMA}.{entity.raw_table}",
            sql.SQL("create table if not exists {} (\n    {}\n)").format(
                table, _columns_sql(entity.columns, FILE_METADATA_COLUMNS)
            ),
        ))
        index = f"{entity.raw_table}__dt"
        relations.append((
            f"{RAW_SCHEMA}.{index}",
            sql.SQL("create index if not exists {} on {} (_dt)").format(sql.Identifier(index), table),
        ))
    for raw_table, column in RAW_LOOKUP_INDEXES:
        index = f"{raw_table}__{column}_hash"
        relations.append((
            f"{RAW_SCHEMA}.{index}",
            sql.SQL("create index if not exists {} on {} using hash ({})").format(
                sql.Identifier(index), sql.Identifier(RAW_SCHEMA, raw_table), sql.Identifier(column)
            ),
        ))
    for shop in contract.SHOP_TABLES:
        table = sql.Identifier(RAW_SCHEMA, shop.raw_table)
        relations.append((
            f"{RAW_SCHEMA}.{shop.raw_table}",
            sql.SQL("create table if not exists {} (\n    {},\n    primary key ({})\n)").format(
                table,
                _columns_sql(shop.columns, SHOP_METADATA_COLUMNS),
                sql.SQL(", ").join(map(sql.Identifier, shop.primary_key)),
            ),
        ))
        index = f"{shop.raw_table}__updated_at"
        relations.append((
            f"{RAW_SCHEMA}.{index}",
            sql.SQL("create index if not exists {} on {} (updated_at)").format(sql.Identifier(index), table),
        ))
        # Every version of a shop row the extraction saw (rows change in place: a plan
        # upgraded, an order shipped); the table above holds the latest one.
        versions = sql.Identifier(RAW_SCHEMA, shop.versions_table)
        relations.append((
            f"{RAW_SCHEMA}.{shop.versions_table}",
            sql.SQL("create table if not exists {} (\n    {}\n)").format(
                versions, _columns_sql(shop.columns, SHOP_METADATA_COLUMNS)
            ),
        ))
        index = f"{shop.versions_table}__key"
        relations.append((
            f"{RAW_SCHEMA}.{index}",
            sql.SQL("create index if not exists {} on {} ({}, updated_at)").format(
                sql.Identifier(index), versions, sql.SQL(", ").join(map(sql.Identifier, shop.primary_key))
            ),
        ))
    relations.extend((name, sql.SQL(statement)) for name, statement in AUDIT_RELATIONS)
    return relations


# format_type() of each contract type, to compare a raw table with the contract.
_CATALOG_TYPES = {
    contract.TEXT: "text",
    contract.TIMESTAMPTZ: "timestamp with time zone",
    contract.DATE: "date",
    contract.NUMERIC: "numeric",
    contract.INTEGER: "integer",
    contract.BIGINT: "bigint",
    contract.JSONB: "jsonb",
}


def _contract_columns() -> list[tuple[str, str, str]]:
    """(raw table, column, contract type) of every contract column."""
    tables = [(e.raw_table, e.columns) for e in contract.FILE_ENTITIES]
    tables += [(t.raw_table, t.columns) for t in contract.SHOP_TABLES]
    return [(table, c.name, c.type) for table, columns in tables for c in columns]


def retyped_columns(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(raw table, column, contract type) of the raw columns whose type differs from the
    contract: a warehouse created before a contract change (shop ids were bigint until ids
    became opaque text). ensure_raw_schema converts them."""
    columns = _contract_columns()
    return [
        (table, column, contract_type)
        for table, column, contract_type, catalog_type in conn.execute(
            "select wanted.table_name, wanted.column_name, wanted.contract_type,"
            " format_type(a.atttypid, a.atttypmod)"
            " from unnest(%s::text[], %s::text[], %s::text[])"
            "   as wanted (table_name, column_name, contract_type)"
            " join pg_attribute as a"
            "   on a.attrelid = to_regclass(quote_ident(%s) || '.' || quote_ident(wanted.table_name))"
            "  and a.attname = wanted.column_name and not a.attisdropped",
            ([t for t, _, _ in columns], [c for _, c, _ in columns], [k for _, _, k in columns],
             RAW_SCHEMA),
        ).fetchall()
        if catalog_type != _CATALOG_TYPES[contract_type]
    ]


def raw_schema_complete(conn: psycopg.Connection) -> bool:
    """True when every raw table, index and added column already exists, every contract
    column has its contract type and no retired index is left (catalog queries, no locks)."""
    with conn.transaction():  # leaves the connection as it found it
        if retyped_columns(conn):
            return False
        missing = conn.execute(
            "select count(*) from unnest(%s::text[]) as n where to_regclass(n) is null",
            ([name for name, _ in raw_relations()],),
        ).fetchone()[0]
        missing += conn.execute(
            "select count(*) from unnest(%s::text[]) as f where to_regprocedure(f) is null",
            ([signature for signature, _ in FUNCTIONS],),
        ).fetchone()[0]
        missing += conn.execute(  # a retired index still there is work left too
            "select count(*) from unnest(%s::text[]) as n where to_regclass(n) is not null",
            ([f"{RAW_SCHEMA}.{index}" for index in RETIRED_RAW_INDEXES],),
        ).fetchone()[0]
        missing += conn.execute(
            "select count(*) from unnest(%s::text[], %s::text[]) as added (table_name, column_name)"
            " where not exists (select from information_schema.columns as c"
            " where c.table_schema = %s and c.table_name = added.table_name"
            " and c.column_name = added.column_name)",
            ([t for t, _, _, _ in ADDED_COLUMNS], [c for _, c, _, _ in ADDED_COLUMNS], RAW_SCHEMA),
        ).fetchone()[0]
    return missing == 0


def ensure_raw_schema(conn: psycopg.Connection) -> None:
    """Create the raw schema and its tables if missing, in one transaction.

    A transaction-scoped advisory lock serialises concurrent callers (parallel DAG runs),
    which would otherwise race on `create ... if not exists`. When everything exists it
    returns after a catalog lookup: `create index if not exists` takes a SHARE lock on its
    table before finding the index, so it would wait for every running load of that table
    (every load writes raw.load_audit) and serialise parallel ingestion tasks.
    """
    if raw_schema_complete(conn):
        return
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('lifecycle_warehouse.bootstrap'))")
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(RAW_SCHEMA)))
        new_versions = [t for t in contract.SHOP_TABLES
                        if conn.execute("select to_regclass(%s) is null",
                                        (f"{RAW_SCHEMA}.{t.versions_table}",)).fetchone()[0]]
        for _, statement in raw_relations():
            conn.execute(statement)
        for index in RETIRED_RAW_INDEXES:
            conn.execute(sql.SQL("drop index if exists {}").format(sql.Identifier(RAW_SCHEMA, index)))
        for shop in new_versions:
            # a warehouse created before versions were kept: its latest rows are their first versions
            columns = sql.SQL(", ").join(
                map(sql.Identifier, [c.name for c in shop.columns] + [n for n, _ in SHOP_METADATA_COLUMNS]))
            conn.execute(sql.SQL("insert into {} ({}) select {} from {}").format(
                sql.Identifier(RAW_SCHEMA, shop.versions_table), columns, columns,
                sql.Identifier(RAW_SCHEMA, shop.raw_table),
            ))
        for table, column, column_type in retyped_columns(conn):
            # e.g. bigint shop ids to text: every value keeps its text (123 -> '123')
            _drop_dependent_dbt_views(conn, table)
            conn.execute(sql.SQL("alter table {} alter column {} type {} using {}::{}").format(
                sql.Identifier(RAW_SCHEMA, table), sql.Identifier(column), sql.SQL(column_type),
                sql.Identifier(column), sql.SQL(column_type),
            ))
        for table, column, column_type, existing_rows_value in ADDED_COLUMNS:
            exists = conn.execute(
                "select exists (select from information_schema.columns"
                " where table_schema = %s and table_name = %s and column_name = %s)",
                (RAW_SCHEMA, table, column),
            ).fetchone()[0]
            if not exists:
                qualified = sql.Identifier(RAW_SCHEMA, table)
                conn.execute(sql.SQL("alter table {} add column {} {}").format(
                    qualified, sql.Identifier(column), sql.SQL(column_type)
                ))
                if existing_rows_value != "null":  # a new column is null already
                    conn.execute(sql.SQL("update {} set {} = {}").format(
                        qualified, sql.Identifier(column), sql.SQL(existing_rows_value)
                    ))
        for _, body in FUNCTIONS:
            conn.execute(body)


# Schemas whose views dbt owns and recreates on its next build.
DBT_VIEW_SCHEMAS = ("staging", "intermediate", "marts")


def _drop_dependent_dbt_views(conn: psycopg.Connection, table: str) -> None:
    """PostgreSQL cannot retype a column that a view reads: drop the dbt views on the raw
    table first (the next dbt build recreates them). A view outside dbt's schemas is
    someone else's: refuse, naming it, rather than drop it."""
    views = conn.execute(
        """
        select distinct n.nspname, v.relname
        from pg_depend d
        join pg_rewrite r on r.oid = d.objid
        join pg_class v on v.oid = r.ev_class
        join pg_namespace n on n.oid = v.relnamespace
        where d.classid = 'pg_rewrite'::regclass and d.refobjid = %s::regclass and v.oid <> d.refobjid
        order by 1, 2
        """,
        (f"{RAW_SCHEMA}.{table}",),
    ).fetchall()
    foreign = [f"{schema}.{name}" for schema, name in views if schema not in DBT_VIEW_SCHEMAS]
    if foreign:
        raise RuntimeError(
            f"{RAW_SCHEMA}.{table} needs a column type change (bootstrap.retyped_columns), but view(s) "
            f"{', '.join(foreign)} read it: drop them, run `make up` again, then recreate them")
    for schema, name in views:
        log.info("dropping dbt view %s.%s to retype %s.%s (the next dbt build recreates it)",
                 schema, name, RAW_SCHEMA, table)
        conn.execute(sql.SQL("drop view if exists {} cascade").format(sql.Identifier(schema, name)))


def bootstrap(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_raw_schema(conn)
