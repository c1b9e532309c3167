"""Incremental extraction of the shop's operational database (docs/sources.md §2).

Rows change after they are written (status moves, refunds), so each table is read by
`updated_at` from its watermark minus an overlap window up to the end of the data interval,
streamed with COPY from the shop into a TEMP table of the warehouse, and upserted into
`raw.shop_<table>` by primary key without ever moving a row back in time. Upsert, watermark
and audit row commit together. The shop is only ever read, in a read-only transaction.

Ids are opaque: whatever their type in the shop (integer, text, uuid), raw keeps their text.
The watermark never moves past the run's end nor the shop server's clock, so a row dated in
the future cannot stop later rows from being extracted. A row without `updated_at` cannot
be extracted incrementally: the first extraction (no watermark yet) takes it, later ones
count such rows (`rows_without_updated_at`). A row deleted in the shop stays in raw: hard
deletes are not propagated.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import psycopg
from psycopg import sql

from lifecycle_warehouse import bootstrap, contract
from lifecycle_warehouse.contract import ShopTable
from lifecycle_warehouse.ingest import connect

log = logging.getLogger(__name__)

SOURCE_SCHEMA = "public"
DEFAULT_OVERLAP = timedelta(days=3)
_STAGE = "lw_shop_stage"


class ShopSchemaError(RuntimeError):
    """The shop's table does not have the columns the contract lists."""


@dataclass
class ExtractResult:
    table: str
    batch_id: uuid.UUID
    since: datetime | None  # exclusive lower bound: watermark - overlap; None on the first run
    until: datetime  # exclusive upper bound: the end of the data interval
    rows_extracted: int  # rows read from the shop (raw.load_audit.rows_read)
    rows_upserted: int  # rows inserted or changed in raw (raw.load_audit.rows_loaded)
    watermark_before: datetime | None
    watermark_after: datetime | None
    rows_without_updated_at: int = 0  # shop rows with a NULL updated_at (taken on the first run only)


def watermark_key(table: str) -> str:
    """Key of a table in raw.extract_watermarks."""
    return f"{SOURCE_SCHEMA}.{table}"


def _as_utc(moment: datetime | date) -> datetime:
    """Aware datetime in UTC; a naive one is taken as UTC (like every timestamp of the
    contract), a date as its midnight UTC."""
    if not isinstance(moment, datetime):
        return datetime.combine(moment, time(0), tzinfo=timezone.utc)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def extract_all(
    shop_url: str, warehouse_url: str, interval_end: datetime, overlap: timedelta = DEFAULT_OVERLAP
) -> list[ExtractResult]:
    """Extract every shop table of the contract (each in its own warehouse transaction)."""
    return [
        extract_table(shop_url, warehouse_url, t.table, interval_end, overlap)
        for t in contract.SHOP_TABLES
    ]


def extract_table(
    shop_url: str,
    warehouse_url: str,
    table: str,
    interval_end: datetime,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> ExtractResult:
    """Copy the rows of `public.<table>` changed since the watermark (minus `overlap`) and
    before `interval_end` into `raw.shop_<table>`; on the first run, every row before
    `interval_end` (the shop's whole history). Idempotent: the same interval twice leaves
    the same rows."""
    spec = contract.shop_table(table)
    if overlap < timedelta(0):
        raise ValueError(f"overlap must not be negative, got {overlap}")
    until = _as_utc(interval_end)
    app = "lifecycle_warehouse.ingest.shop"
    with connect(warehouse_url, "WAREHOUSE_URL", autocommit=True, application_name=app) as wh:
        bootstrap.ensure_raw_schema(wh)
        # Read-only twice over: the session's default (the server refuses every write, even
        # one outside psycopg's transactions) and each transaction; the embedded server's
        # shop_reader role also has SELECT only.
        with connect(shop_url, "SHOP_DB_URL", application_name=app,
                     options="-c default_transaction_read_only=on") as source:
            source.read_only = True
            source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            result = _extract(source, wh, spec, until, overlap)
    window = f"({result.since.isoformat() if result.since else '-infinity'}, {until.isoformat()})"
    log.info(
        "shop:%s.%s: %d rows extracted (updated_at in %s), %d inserted or changed in raw.%s; "
        "watermark %s -> %s",
        SOURCE_SCHEMA, table, result.rows_extracted, window, result.rows_upserted, spec.raw_table,
        _show(result.watermark_before), _show(result.watermark_after),
    )
    if result.rows_without_updated_at:
        log.warning(
            "shop:%s.%s: %d rows have no updated_at: %s", SOURCE_SCHEMA, table,
            result.rows_without_updated_at,
            "taken by this first extraction" if result.since is None else
            "later changes to them cannot be extracted (only the first extraction takes them)",
        )
    return result


def _show(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "none"


def _extract(
    source: psycopg.Connection, wh: psycopg.Connection, spec: ShopTable, until: datetime,
    overlap: timedelta,
) -> ExtractResult:
    """Stage, upsert, advance the watermark and audit in one warehouse transaction, from
    one snapshot of the shop."""
    batch_id = uuid.uuid4()
    with wh.transaction(), _shop_snapshot(source, spec):
        wh.execute("set local timezone = 'UTC'")
        wh.execute(
            "select pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"lifecycle_warehouse.ingest.shop:{spec.table}",),
        )
        shop_now, without_updated_at = source.execute(
            sql.SQL("select now(), count(*) from {} where updated_at is null").format(
                sql.Identifier(SOURCE_SCHEMA, spec.table))
        ).fetchone()
        before = _watermark(wh, spec.table)
        since = None
        if before is not None:
            if before > shop_now:
                log.warning("shop:%s.%s: the stored watermark %s is ahead of the shop's clock (%s): "
                            "reading from the shop's clock instead", SOURCE_SCHEMA, spec.table,
                            before.isoformat(), shop_now.isoformat())
            since = min(before, shop_now) - overlap
        wh.execute(
            sql.SQL("create temp table {} ({}) on commit drop").format(
                sql.Identifier(_STAGE), _column_defs(spec)
            )
        )
        extracted = _copy_from_shop(source, wh, spec, since, until)
        upserted = wh.execute(upsert_sql(spec, batch_id)).rowcount
        after = _advance_watermark(wh, spec.table, until, shop_now)
        wh.execute(
            "insert into raw.load_audit (batch_id, source, entity, dt, file, status,"
            " rows_read, rows_loaded, rows_quarantined)"
            " values (%s, 'shop', %s, %s, %s, 'loaded', %s, %s, 0)",
            (batch_id, spec.table, until.date(), f"shop:{SOURCE_SCHEMA}.{spec.table}",
             extracted, upserted),
        )
        wh.execute(sql.SQL("drop table {}").format(sql.Identifier(_STAGE)))
    return ExtractResult(spec.table, batch_id, since, until, extracted, upserted, before, after,
                         without_updated_at)


@contextmanager
def _shop_snapshot(shop: psycopg.Connection, spec: ShopTable) -> Iterator[None]:
    """One read-only, repeatable-read transaction on the shop (the connection's settings);
    a table without the contract's columns becomes ShopSchemaError."""
    try:
        with shop.transaction():
            shop.execute("set local timezone = 'UTC'")  # a shop timestamp without zone is UTC
            yield
    except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable) as exc:
        raise ShopSchemaError(
            f"shop table {SOURCE_SCHEMA}.{spec.table} does not match the contract "
            f"(columns {', '.join(c.name for c in spec.columns)}): {exc}"
        ) from exc


def _column_defs(spec: ShopTable) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type)) for c in spec.columns
    )


def _watermark(conn: psycopg.Connection, table: str) -> datetime | None:
    row = conn.execute(
        "select watermark from raw.extract_watermarks where source_table = %s",
        (watermark_key(table),),
    ).fetchone()
    return row[0] if row else None


def extract_query(spec: ShopTable, since: datetime | None, until: datetime) -> sql.Composable:
    """`COPY (select …) TO STDOUT` for the shop. Each column is cast to its contract type so
    that the binary rows match the warehouse's staging table whatever the shop's own types
    (e.g. integer ids, numeric(12,2), varchar). Bounds are literals: COPY takes no parameters."""
    columns = sql.SQL(", ").join(
        sql.SQL("{c}::{t}").format(c=sql.Identifier(c.name), t=sql.SQL(c.type))
        for c in spec.columns
    )
    if since is None:  # the first extraction takes the whole history, undated rows too
        where = sql.SQL("updated_at < {} or updated_at is null").format(sql.Literal(until))
    else:
        where = sql.SQL("updated_at > {} and updated_at < {}").format(
            sql.Literal(since), sql.Literal(until)
        )
    return sql.SQL(
        "copy (select {columns} from {table} where {where}) to stdout (format binary)"
    ).format(columns=columns, table=sql.Identifier(SOURCE_SCHEMA, spec.table), where=where)


def _copy_from_shop(
    shop: psycopg.Connection, wh: psycopg.Connection, spec: ShopTable,
    since: datetime | None, until: datetime,
) -> int:
    """Stream the changed rows block by block from the shop into the warehouse staging
    table; returns how many."""
    query = extract_query(spec, since, until)
    target = sql.SQL("copy {} from stdin (format binary)").format(sql.Identifier(_STAGE))
    with shop.cursor().copy(query) as source, wh.cursor().copy(target) as sink:
        for block in source:
            sink.write(block)
    count = sql.SQL("select count(*) from {}").format(sql.Identifier(_STAGE))
    return wh.execute(count).fetchone()[0]


def upsert_sql(spec: ShopTable, batch_id: uuid.UUID) -> sql.Composable:
    """Insert new keys; update a known key only with a version at least as new, and only
    when something changed (a re-extracted identical row is left alone). A dated version
    replaces an undated one. Every row inserted or changed is also appended to the
    versions table (`raw.shop_<table>_versions`): the history of rows changed in place."""
    table = sql.Identifier(bootstrap.RAW_SCHEMA, spec.raw_table)
    versions = sql.Identifier(bootstrap.RAW_SCHEMA, spec.versions_table)
    cols = [sql.Identifier(c.name) for c in spec.columns]
    keys = [sql.Identifier(k) for k in spec.primary_key]
    non_keys = [sql.Identifier(c.name) for c in spec.columns if c.name not in spec.primary_key]
    assignments = [sql.SQL("{c} = excluded.{c}").format(c=c) for c in non_keys] + [
        sql.SQL("_batch_id = excluded._batch_id"),
        sql.SQL("_extracted_at = excluded._extracted_at"),
    ]
    return sql.SQL(
        "with upserted as (\n"
        "insert into {table} as t ({cols}, _batch_id, _extracted_at)\n"
        "select distinct on ({keys}) {cols}, {batch}, now() from {stage}\n"
        "order by {keys}, updated_at desc nulls last\n"
        "on conflict ({keys}) do update set {assignments}\n"
        "where excluded.updated_at > t.updated_at\n"
        "   or (t.updated_at is null and excluded.updated_at is not null)\n"
        "   or (excluded.updated_at is not distinct from t.updated_at\n"
        "       and ({old}) is distinct from ({new}))\n"
        "returning {cols}, _batch_id, _extracted_at)\n"
        "insert into {versions} ({cols}, _batch_id, _extracted_at)\n"
        "select {cols}, _batch_id, _extracted_at from upserted"
    ).format(
        table=table,
        versions=versions,
        cols=sql.SQL(", ").join(cols),
        keys=sql.SQL(", ").join(keys),
        batch=sql.Literal(batch_id),
        stage=sql.Identifier(_STAGE),
        assignments=sql.SQL(", ").join(assignments),
        old=sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in non_keys),
        new=sql.SQL(", ").join(sql.SQL("excluded.{}").format(c) for c in non_keys),
    )


def _advance_watermark(
    conn: psycopg.Connection, table: str, until: datetime, shop_now: datetime
) -> datetime | None:
    """Watermark = the newest updated_at extracted, but never past the run's end nor the
    shop's clock: a row dated in the future would otherwise hide every row written after
    it. It never moves back, except from beyond the shop's clock (a watermark set there
    before this rule existed)."""
    conn.execute(
        "update raw.extract_watermarks set watermark = %s, updated_at = now()"
        " where source_table = %s and watermark > %s",
        (shop_now, watermark_key(table), shop_now),
    )
    conn.execute(
        sql.SQL(
            "insert into raw.extract_watermarks as w (source_table, watermark)\n"
            "select %(key)s, least(max(updated_at), %(until)s, %(shop_now)s) from {}\n"
            "having max(updated_at) is not null\n"
            "on conflict (source_table) do update\n"
            "set watermark = least(greatest(w.watermark, excluded.watermark), %(shop_now)s),\n"
            "    updated_at = now()"
        ).format(sql.Identifier(_STAGE)),
        {"key": watermark_key(table), "until": until, "shop_now": shop_now},
    )
    return _watermark(conn, table)
