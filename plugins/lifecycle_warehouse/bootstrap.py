"""Create the `raw` schema of the warehouse: one table per contract entity, plus the load
audit, the quarantine, the extraction watermarks and the log of warehouse builds. Idempotent (`if not exists`), run by
the first task of every ingestion DAG and by `lw bootstrap`; never at DAG parse time.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from lifecycle_warehouse import contract

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
# Extra lookup indexes of raw file tables, (raw table, column). stg_web__events and
# stg_crm__email_events keep one delivery of an event by looking up its other deliveries
# by event_id, so that incremental runs read only their window of the raw table.
# int_lifecycle__email_deliveries reads the events of the pairs it recomputes by contact_id.
RAW_LOOKUP_INDEXES = (
    ("web_events", "event_id"),
    ("crm_email_events", "event_id"),
    ("crm_email_events", "contact_id"),
)
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
    # One row per warehouse DAG run: when it started, when its dbt build succeeded and when
    # the run ended (succeeded or not). A date folder loaded after the start of the last
    # successful build may not have been read by it; the next build reprocesses from its
    # date (warehouse_tasks.plan_build). A run that has not ended holds the warehouse: a
    # manual `lw dbt build` waits for it (warehouse_tasks.manual_build).
    ("raw.warehouse_builds", """
create table if not exists raw.warehouse_builds (
    run_id text primary key,
    started_at timestamptz not null default now(),
    built_at timestamptz,
    ended_at timestamptz
)"""),
)
# Columns added to a bookkeeping table after its first release: (table, column, type, the
# value of the rows already there). A warehouse created before gets them from
# ensure_raw_schema. Runs logged before ended_at existed have ended; files loaded before
# the file columns existed have no recorded size or checksum (a look-back run reloads
# such a folder once).
ADDED_COLUMNS = (
    ("warehouse_builds", "ended_at", "timestamptz", "coalesce(built_at, started_at)"),
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
        index = f"{raw_table}__{column}"
        relations.append((
            f"{RAW_SCHEMA}.{index}",
            sql.SQL("create index if not exists {} on {} ({})").format(
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
    """True when every raw table, index and added column already exists and every contract
    column has its contract type (catalog queries, no locks)."""
    with conn.transaction():  # leaves the connection as it found it
        if retyped_columns(conn):
            return False
        missing = conn.execute(
            "select count(*) from unnest(%s::text[]) as n where to_regclass(n) is null",
            ([name for name, _ in raw_relations()],),
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
        for _, statement in raw_relations():
            conn.execute(statement)
        for table, column, column_type in retyped_columns(conn):
            # e.g. bigint shop ids to text: every value keeps its text (123 -> '123')
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


def bootstrap(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_raw_schema(conn)
