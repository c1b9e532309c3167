"""Load landing-zone date folders into the raw layer (docs/sources.md §1 and §4).

A `dt=` folder is one unit and one transaction: its previous rows (data and quarantine) are
deleted, each file is streamed into a TEMP staging table with COPY (`records` splits it into
records), and validation and casting run as one set-based statement per file
(`validation_sql`, generated from `contract`). Good records go to `raw.<source>_<entity>`,
bad ones to `raw.quarantine` with the first rule they fail, and every file gets a
`raw.load_audit` row.

A file that cannot be used at all (unreadable, corrupt gzip, header without a contract column)
is rejected whole and the rest of the folder still loads; any other error rolls the whole
folder back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import psycopg
from psycopg import sql

from lifecycle_warehouse import bootstrap, contract
from lifecycle_warehouse.contract import FileEntity
from lifecycle_warehouse.ingest import connect
from lifecycle_warehouse.ingest.records import (
    CSV,
    JSONL,
    CsvRecord,
    FileRejected,
    HeaderMap,
    JsonlRecord,
    csv_records,
    decode_lines,
    file_format,
    jsonl_records,
    map_header,
    read_lines,
)
from lifecycle_warehouse.ingest.validation_sql import STAGE, load_sql, stage_ddl

log = logging.getLogger(__name__)

LOADED = "loaded"
REJECTED = "rejected"

# The validated rows are materialised once and read by both inserts; enough memory keeps a
# typical daily file out of temp files. Transaction-local.
_WORK_MEM = "64MB"

@dataclass
class FileResult:
    file: str  # path relative to the landing dir, as in raw.load_audit.file
    status: str  # "loaded" or "rejected"
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    error: str | None = None
    rules: dict[str, int] = field(default_factory=dict)  # quarantined records per rule


@dataclass
class DeliveryResult:
    source: str
    entity: str
    dt: date
    batch_id: uuid.UUID | None  # None when there was no delivery (nothing changed)
    files: list[FileResult] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return self.batch_id is not None

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    @property
    def rejected(self) -> list[FileResult]:
        return [f for f in self.files if f.status == REJECTED]


# --------------------------------------------------------------------------- public API


def load_interval(
    warehouse_url: str,
    landing_dir: Path,
    source: str,
    start: date,
    end: date,
    entities: Sequence[str] | None = None,
) -> list[DeliveryResult]:
    """Load every date folder with start <= dt < end of each entity of `source` (all its
    contract entities, or only `entities`). Datetimes (an Airflow data interval) are taken in
    UTC: a folder is in the interval when its date's midnight is."""
    targets = _entities(source, entities)
    dates = interval_dates(start, end)
    results: list[DeliveryResult] = []
    with connect(
        warehouse_url, "WAREHOUSE_URL", autocommit=True,
        application_name="lifecycle_warehouse.ingest.files",
    ) as conn:
        bootstrap.ensure_raw_schema(conn)
        for entity in targets:
            for dt in dates:
                results.append(load_delivery(conn, Path(landing_dir), entity, dt))
    return results


def load_delivery(
    conn: psycopg.Connection, landing_dir: Path, entity: FileEntity, dt: date
) -> DeliveryResult:
    """Load (or reload) one date folder in one transaction, replacing what an earlier load of
    the same (entity, dt) wrote. Pass an autocommit connection (or one with no transaction
    open): the load commits when it returns; inside a caller's transaction it becomes a
    savepoint and the caller commits."""
    landing_dir = Path(landing_dir)
    bootstrap.ensure_raw_schema(conn)
    folder = delivery_folder(landing_dir, entity, dt)
    label = f"{entity.source}/{entity.entity} dt={dt.isoformat()}"
    if not folder.is_dir():
        log.warning("%s: no delivery (%s does not exist); nothing loaded", label, folder)
        return DeliveryResult(entity.source, entity.entity, dt, None)
    paths = delivery_files(folder)
    for ignored in sorted(set(_visible_files(folder)) - set(paths)):
        log.warning("%s: ignoring %s (not a .csv/.jsonl[.gz] file)", label, ignored.name)
    if not paths:
        log.warning("%s: %s holds no data file; treated as not delivered", label, folder)
        return DeliveryResult(entity.source, entity.entity, dt, None)

    result = DeliveryResult(entity.source, entity.entity, dt, uuid.uuid4())
    with conn.transaction():
        conn.execute("set local timezone = 'UTC'")
        conn.execute(sql.SQL("set local work_mem = {}").format(sql.Literal(_WORK_MEM)))
        conn.execute(
            "select pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key(entity, dt),)
        )
        _delete_previous(conn, entity, dt)
        for path in paths:
            file_result = _load_file_or_reject(
                conn, landing_dir, path, entity, dt, result.batch_id
            )
            _write_audit(conn, entity, dt, result.batch_id, file_result)
            _log_file(file_result)
            result.files.append(file_result)
    log.info(
        "%s: batch %s committed: %d file(s), %d rows loaded, %d quarantined, %d file(s) rejected",
        label, result.batch_id, len(result.files), result.rows_loaded,
        result.rows_quarantined, len(result.rejected),
    )
    return result


# --------------------------------------------------------------------------- folders and dates


def lock_key(entity: FileEntity, dt: date) -> str:
    """Advisory-lock key serialising concurrent loads of the same (entity, dt)."""
    return f"lifecycle_warehouse.ingest.files:{entity.raw_table}:{dt.isoformat()}"


def delivery_folder(landing_dir: Path, entity: FileEntity, dt: date) -> Path:
    return Path(landing_dir) / entity.source / entity.entity / f"dt={dt.isoformat()}"


def _visible_files(folder: Path) -> list[Path]:
    # `_SUCCESS`-style markers and dotfiles are not deliveries.
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_"))]


def delivery_files(folder: Path) -> list[Path]:
    """The data files of a date folder, sorted by name."""
    return sorted((p for p in _visible_files(folder) if file_format(p)), key=lambda p: p.name)


def _as_date(value: date, *, ceil: bool) -> date:
    """A date, or a datetime (naive = UTC) rounded to a date in UTC."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    day = value.date()
    return day + timedelta(days=1) if ceil and value.time() != time(0) else day


def interval_dates(start: date, end: date) -> list[date]:
    """Dates d with start <= d < end; for datetimes, those whose UTC midnight is in the interval."""
    first, stop = _as_date(start, ceil=True), _as_date(end, ceil=True)
    return [first + timedelta(days=i) for i in range((stop - first).days)]


def _entities(source: str, names: Sequence[str] | None) -> list[FileEntity]:
    if source == "shop":
        raise ValueError("the shop is a database, not files: use lifecycle_warehouse.ingest.shop")
    available = contract.file_entities(source)
    if not available:
        known = sorted({e.source for e in contract.FILE_ENTITIES})
        raise ValueError(f"unknown file source {source!r}; the contract has {', '.join(known)}")
    if names is None:
        return list(available)
    by_name = {e.entity: e for e in available}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(
            f"unknown {source} entit{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
            f"the contract has {', '.join(by_name)}"
        )
    return [by_name[n] for n in names]


# --------------------------------------------------------------------------- loading


def _delete_previous(conn: psycopg.Connection, entity: FileEntity, dt: date) -> None:
    table = sql.Identifier(bootstrap.RAW_SCHEMA, entity.raw_table)
    deleted = conn.execute(sql.SQL("delete from {} where _dt = %s").format(table), (dt,)).rowcount
    conn.execute(
        "delete from raw.quarantine where source = %s and entity = %s and dt = %s",
        (entity.source, entity.entity, dt),
    )
    if deleted:
        log.info("%s dt=%s: replacing %d rows of an earlier load", entity.raw_table, dt, deleted)


def _load_file_or_reject(
    conn: psycopg.Connection, landing_dir: Path, path: Path, entity: FileEntity, dt: date,
    batch_id: uuid.UUID,
) -> FileResult:
    """Load one file inside a savepoint; a FileRejected undoes just this file."""
    rel = path.relative_to(landing_dir).as_posix()
    try:
        with conn.transaction():
            return _load_file(conn, path, rel, entity, dt, batch_id)
    except FileRejected as exc:
        return FileResult(rel, REJECTED, error=f"{rel}: {exc}")


def _load_file(
    conn: psycopg.Connection, path: Path, rel: str, entity: FileEntity, dt: date,
    batch_id: uuid.UUID,
) -> FileResult:
    fmt = file_format(path)
    if fmt != entity.format:
        raise FileRejected(
            f"is a {fmt.upper() if fmt else 'unknown'} file but {entity.source}/{entity.entity} "
            f"is delivered as {entity.format.upper()}"
        )
    lines = decode_lines(read_lines(path))
    if fmt == CSV:
        records = csv_records(lines)
        header, header_record = _read_csv_header(entity, records)
        rows_read = _stage_csv(conn, len(header_record.fields), records)
    else:
        header, rows_read = None, _stage_jsonl(conn, jsonl_records(lines))

    counts = _validate_and_insert(conn, entity, fmt, header, batch_id=batch_id, dt=dt, file=rel)
    loaded = counts.pop(None, 0)
    quarantined = sum(counts.values())
    if loaded + quarantined != rows_read:  # every staged record lands exactly once
        raise RuntimeError(
            f"{rel}: {rows_read} records staged but {loaded} loaded + {quarantined} quarantined"
        )
    conn.execute(sql.SQL("drop table {}").format(STAGE_SQL))
    rules = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return FileResult(rel, LOADED, rows_read, loaded, quarantined, rules=rules)


def _validate_and_insert(
    conn: psycopg.Connection, entity: FileEntity, fmt: str, header: HeaderMap | None, **where
) -> dict[str | None, int]:
    statement = load_sql(entity, fmt, header, **where)
    if fmt != JSONL:
        return dict(conn.execute(statement).fetchall())
    try:
        with conn.transaction():
            return dict(conn.execute(statement).fetchall())
    except psycopg.DataError:  # SQLSTATE class 22, e.g. untranslatable \u0000, numeric overflow
        # A line passed the cheap 'json' test but is not valid jsonb: test with jsonb itself.
        strict = load_sql(entity, fmt, header, json_check="jsonb", **where)
        return dict(conn.execute(strict).fetchall())


STAGE_SQL = sql.Identifier(STAGE)


def _stage_jsonl(conn: psycopg.Connection, records: Iterable[JsonlRecord]) -> int:
    """COPY JSONL records into a new `lw_stage`; returns how many."""
    conn.execute(stage_ddl(JSONL))
    count = 0
    with conn.cursor().copy(
        sql.SQL("copy {} (line_number, line, pre_rule) from stdin").format(STAGE_SQL)
    ) as copy:
        for record in records:
            copy.write_row(record)
            count += 1
    return count


def _read_csv_header(entity: FileEntity, records: Iterator[CsvRecord]) -> tuple[HeaderMap, CsvRecord]:
    first = next(records, None)
    if first is None:
        raise FileRejected("empty file: a CSV delivery needs at least its header row")
    if first.problem is not None or first.fields is None:
        raise FileRejected(f"header (line {first.line_number}): {first.problem}")
    return map_header(entity, first.fields), first


def _stage_csv(conn: psycopg.Connection, width: int, records: Iterable[CsvRecord]) -> int:
    """COPY CSV records of a file whose header has `width` fields into a new `lw_stage`; a
    record with another number of fields is staged with that problem. Returns how many."""
    conn.execute(stage_ddl(CSV, width))
    empty = (None,) * width
    count = 0
    with conn.cursor().copy(sql.SQL("copy {} from stdin").format(STAGE_SQL)) as copy:
        for record in records:
            problem = record.problem
            if problem is None and len(record.fields) != width:
                problem = f"expected {width} fields, found {len(record.fields)}"
            if problem is None:
                copy.write_row((record.line_number, record.text, None, *record.fields))
            else:
                copy.write_row((record.line_number, record.text, problem, *empty))
            count += 1
    return count


def _write_audit(
    conn: psycopg.Connection, entity: FileEntity, dt: date, batch_id: uuid.UUID, result: FileResult
) -> None:
    # loaded_at: when the file's load ended (clock_timestamp), not when the folder's
    # transaction began (now()): the warehouse DAG plans a build from the folders loaded
    # after the last successful one started (warehouse_tasks.plan_build), and a long load
    # begun before that start may commit after it
    conn.execute(
        "insert into raw.load_audit (batch_id, source, entity, dt, file, status, rows_read,"
        " rows_loaded, rows_quarantined, error, loaded_at)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())",
        (
            batch_id, entity.source, entity.entity, dt, result.file, result.status,
            result.rows_read, result.rows_loaded, result.rows_quarantined, result.error,
        ),
    )


def _log_file(result: FileResult) -> None:
    if result.status == REJECTED:
        log.warning("%s: REJECTED, nothing loaded: %s", result.file, result.error)
        return
    summary = (
        f"{result.rows_read} rows read, {result.rows_loaded} loaded, "
        f"{result.rows_quarantined} quarantined"
    )
    if result.rules:
        shown = "; ".join(f"{count}x {rule}" for rule, count in list(result.rules.items())[:5])
        more = f"; {len(result.rules) - 5} more rules" if len(result.rules) > 5 else ""
        log.warning("%s: %s (%s%s)", result.file, summary, shown, more)
    else:
        log.info("%s: %s", result.file, summary)
