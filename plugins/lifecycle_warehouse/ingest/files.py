"""Load landing-zone date folders into the raw layer (docs/sources.md §1 and §4).

A `dt=` folder is one unit and one transaction: its previous rows (data and quarantine) are
deleted, each file is streamed into a TEMP staging table with COPY, and validation and
casting run as one set-based statement per file (`validation_sql`, generated from
`contract`). A file is first staged straight from its bytes (PostgreSQL splits the lines or
CSV records) and loaded optimistically; when that cannot be done exactly (any record to
quarantine, mixed line ends, a CSV record over several lines, bytes that are not UTF-8…)
it is undone and the file staged again record by record (`records` splits it) for the
careful statement, which quarantines each bad record with its rule. A large file is staged
from its bytes in chunks, on a second connection while the folder's transaction inserts the
chunks already staged (`chunks`). Good records go to `raw.<source>_<entity>`,
bad ones to `raw.quarantine` with the first rule they fail, and every file gets a
`raw.load_audit` row (with its size, modification time, SHA-256 and, for CSV, its header).
`deliveries` decides which folders a run loads.

A file that cannot be used at all (unreadable, corrupt gzip, header without a contract column)
is rejected whole and the rest of the folder still loads. A folder whose every file is
rejected replaces nothing: the previous load stays, the rejected files are audited, and the
run fails (`DeliveryRejected`). Any other error rolls the whole folder back.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import psycopg
from psycopg import pq, sql

from lifecycle_warehouse import bootstrap, contract, settings
from lifecycle_warehouse.contract import FileEntity
from lifecycle_warehouse.ingest import chunks, connect, deliveries
from lifecycle_warehouse.ingest.deliveries import DataFile, Folder, Skipped
from lifecycle_warehouse.ingest.records import (
    CSV,
    JSONL,
    CsvRecord,
    FileRejected,
    HeaderMap,
    JsonlRecord,
    LineTooLong,
    RULE_NOT_JSON,
    RULE_TOO_DEEP,
    csv_records,
    decode_lines,
    file_format,
    jsonl_records,
    map_header,
    read_lines,
)
from lifecycle_warehouse.ingest.validation_sql import (
    STAGE,
    insert_typed_sql,
    load_sql,
    optimistic_load_sql,
    stage_ddl,
    staged_count_sql,
)

log = logging.getLogger(__name__)

LOADED = "loaded"
REJECTED = "rejected"

# The validated rows are materialised once and read by both inserts; enough memory keeps a
# typical daily file out of temp files. Transaction-local.
_WORK_MEM = "64MB"
STAGE_SQL = sql.Identifier(STAGE)


class DeliveryRejected(RuntimeError):
    """Every file of one or more date folders was rejected: those folders kept their
    previous load (if any). The message names each folder and file with its reason."""


@dataclass
class FileResult:
    file: str  # path relative to the landing dir, as in raw.load_audit.file
    status: str  # "loaded" or "rejected"
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    error: str | None = None
    rules: dict[str, int] = field(default_factory=dict)  # quarantined records per rule
    size: int | None = None
    modified_at: datetime | None = None
    sha256: str | None = None
    header: str | None = None  # a CSV file's header line


@dataclass
class DeliveryResult:
    source: str
    entity: str
    dt: date
    batch_id: uuid.UUID | None  # None when nothing was loaded (see `note`)
    files: list[FileResult] = field(default_factory=list)
    reason: str | None = None  # why the folder was loaded (deliveries.IN_INTERVAL, LATE, CHANGED)
    note: str | None = None  # why nothing was loaded: not delivered, not complete yet, …
    kept_previous: bool = False  # every file was rejected: the previous load stays

    @property
    def delivered(self) -> bool:
        return self.batch_id is not None and not self.kept_previous

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    @property
    def rejected(self) -> list[FileResult]:
        return [f for f in self.files if f.status == REJECTED]

    @property
    def label(self) -> str:
        return f"{self.source}/{self.entity} dt={self.dt.isoformat()}"


# --------------------------------------------------------------------------- public API


def load_interval(
    warehouse_url: str,
    landing_dir: Path,
    source: str,
    start: date,
    end: date,
    entities: Sequence[str] | None = None,
    *,
    lookback_days: int | None = None,
    settle_seconds: float | None = None,
    now: float | None = None,
) -> list[DeliveryResult]:
    """Load the date folders of each entity of `source` (all its contract entities, or only
    `entities`) for a run covering start <= dt < end, and the folders of the look-back
    window before `start` that are new or changed since their last load
    (`deliveries.plan_folders`; settings LW_LOOKBACK_DAYS, LW_SETTLE_SECONDS,
    LW_SUCCESS_MARKER_SOURCES unless given). Datetimes (an Airflow data interval) are taken
    in UTC: a folder is in the interval when its date's midnight is.

    Returns one result per folder of the run's dates and per folder loaded from the
    look-back. Raises DeliveryRejected, once every folder has been tried, when every file
    of a folder was rejected."""
    targets = _entities(source, entities)
    lookback_days = settings.lookback_days() if lookback_days is None else lookback_days
    settle_seconds = settings.settle_seconds() if settle_seconds is None else settle_seconds
    require_marker = source in settings.success_marker_sources()
    landing_dir = Path(landing_dir)
    results: list[DeliveryResult] = []
    with connect(
        warehouse_url, "WAREHOUSE_URL", autocommit=True,
        application_name="lifecycle_warehouse.ingest.files",
    ) as conn:
        bootstrap.ensure_raw_schema(conn)
        for entity in targets:
            planned, skipped = deliveries.plan_folders(
                conn, landing_dir, entity, start, end, lookback_days=lookback_days,
                settle_seconds=settle_seconds, require_marker=require_marker,
                now=time.time() if now is None else now,
            )
            entity_results = [_not_loaded(s) for s in skipped]
            for folder in planned:
                entity_results.append(load_folder(conn, landing_dir, folder, ensure_schema=False,
                                                  warehouse_url=warehouse_url))
            results += sorted(entity_results, key=lambda r: r.dt)
    failed = [r for r in results if r.kept_previous]
    if failed:
        raise DeliveryRejected(
            "every file of " + ("this date folder" if len(failed) == 1 else "these date folders")
            + " was rejected; nothing of it was loaded and the previous load (if any) stays:\n"
            + "\n".join(f"  {r.label}: " + "; ".join(f.error or f.file for f in r.files) for r in failed)
            + "\nFix the files and deliver the folder again."
        )
    return results


def _not_loaded(skipped: Skipped) -> DeliveryResult:
    entity = skipped.entity
    log.warning("%s/%s dt=%s: nothing loaded: %s", entity.source, entity.entity,
                skipped.dt.isoformat(), skipped.reason)
    return DeliveryResult(entity.source, entity.entity, skipped.dt, None, note=skipped.reason)


def load_delivery(
    conn: psycopg.Connection, landing_dir: Path, entity: FileEntity, dt: date, *,
    warehouse_url: str | None = None,
) -> DeliveryResult:
    """Load (or reload) one date folder as it is now, whether or not it looks complete.
    See load_folder."""
    landing_dir = Path(landing_dir)
    bootstrap.ensure_raw_schema(conn)
    folder = deliveries.delivery_folder(landing_dir, entity, dt)
    if not folder.is_dir():
        return _not_loaded(Skipped(entity, dt, f"not delivered ({folder} does not exist)"))
    for ignored in deliveries.ignored_files(folder):
        log.warning("%s/%s dt=%s: ignoring %s (not a .csv/.jsonl[.gz] file)",
                    entity.source, entity.entity, dt, ignored.name)
    files = deliveries.data_files(landing_dir, folder)
    if not files:
        return _not_loaded(Skipped(entity, dt, "the folder holds no data file: not delivered"))
    return load_folder(conn, landing_dir, Folder(entity, dt, deliveries.IN_INTERVAL, files),
                       ensure_schema=False, warehouse_url=warehouse_url)


def load_folder(
    conn: psycopg.Connection, landing_dir: Path, folder: Folder, *, ensure_schema: bool = True,
    warehouse_url: str | None = None,
) -> DeliveryResult:
    """Load one date folder in one transaction, replacing what an earlier load of the same
    (entity, dt) wrote, unless every file is rejected: then the earlier load stays and only
    the rejected files' audit rows are written (`kept_previous`). Pass an autocommit
    connection (or one with no transaction open): the load commits when it returns; inside
    a caller's transaction it becomes a savepoint and the caller commits. `ensure_schema`:
    check (and create) the raw schema first; False when the caller just did.
    `warehouse_url` (where `conn` connects): large files are staged in chunks on a second
    connection to it (`chunks`), when the load is its own transaction; without it, each
    file is staged in `conn` alone."""
    entity, dt = folder.entity, folder.dt
    if ensure_schema:
        bootstrap.ensure_raw_schema(conn)
    result = DeliveryResult(entity.source, entity.entity, dt, uuid.uuid4(), reason=folder.reason)
    # A second connection reads the chunks only once committed, and drops what a rollback
    # left once the folder's transaction has ended: so not inside a caller's transaction.
    own_transaction = conn.info.transaction_status == pq.TransactionStatus.IDLE
    stager = chunks.Stager(warehouse_url) if warehouse_url and own_transaction else None
    try:
        _replace_folder(conn, entity, dt, folder, result, stager)
    finally:
        if stager is not None:
            stager.close()
    if result.kept_previous:
        log.error("%s: every file was rejected: nothing replaced, the previous load stays "
                  "(batch %s records the rejected files)", result.label, result.batch_id)
    else:
        log.info(
            "%s (%s): batch %s committed: %d file(s), %d rows loaded, %d quarantined, "
            "%d file(s) rejected",
            result.label, folder.reason, result.batch_id, len(result.files), result.rows_loaded,
            result.rows_quarantined, len(result.rejected),
        )
    return result


# --------------------------------------------------------------------------- helpers


def _replace_folder(
    conn: psycopg.Connection, entity: FileEntity, dt: date, folder: Folder, result: DeliveryResult,
    stager: chunks.Stager | None = None,
) -> None:
    """The folder's transaction: the previous load deleted, each file loaded (or rejected),
    and the audit written; the previous load kept when every file was rejected."""
    with conn.transaction():
        if stager is not None and conn.execute("show transaction_isolation").fetchone()[0] != "read committed":
            stager = None  # a snapshot taken now would not see the chunks committed later
        # UTC: how timestamps without an offset are read (the stager's session reads them alike)
        conn.execute(sql.SQL("set local timezone = {}").format(sql.Literal(chunks.FOLDER_TIMEZONE)))
        conn.execute(sql.SQL("set local work_mem = {}").format(sql.Literal(_WORK_MEM)))
        conn.execute(
            "select pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key(entity, dt),)
        )
        with conn.transaction() as replacement:
            _delete_previous(conn, entity, dt)
            for data_file in folder.files:
                file_result = _load_file_or_reject(conn, data_file, entity, dt, result.batch_id, stager)
                _log_file(file_result)
                result.files.append(file_result)
            if not any(f.status == LOADED for f in result.files):
                result.kept_previous = True
                raise psycopg.Rollback(replacement)
        for file_result in result.files:
            _write_audit(conn, entity, dt, result.batch_id, file_result)


def lock_key(entity: FileEntity, dt: date) -> str:
    """Advisory-lock key serialising concurrent loads of the same (entity, dt)."""
    return f"lifecycle_warehouse.ingest.files:{entity.raw_table}:{dt.isoformat()}"


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
    conn: psycopg.Connection, data_file: DataFile, entity: FileEntity, dt: date,
    batch_id: uuid.UUID, stager: chunks.Stager | None = None,
) -> FileResult:
    """Load one file inside a savepoint; a FileRejected undoes just this file."""
    rel = data_file.rel
    if data_file.refused:  # outside the landing zone, or a name like a path out of it
        return FileResult(rel, REJECTED, error=f"{rel}: {data_file.refused}",
                          size=data_file.size, modified_at=data_file.modified_at)
    known = {"size": data_file.size, "modified_at": data_file.modified_at}
    # The file's SHA-256 (for its audit row) is computed in a thread while the file loads:
    # hashlib and file reads release the GIL, so the hash overlaps the database's work
    # instead of adding a pass over the file before it. A file that cannot be read for its
    # hash is rejected, its load (if any) undone.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lw-sha256") as pool:
        hashed = pool.submit(data_file.with_sha256)
        try:
            try:
                with conn.transaction():
                    result = _load_file(conn, data_file.path, rel, entity, dt, batch_id, known, stager)
                    result.sha256 = _sha256(hashed)
                    return result
            except FileRejected as exc:
                return FileResult(rel, REJECTED, error=f"{rel}: {exc}", sha256=_sha256(hashed), **known)
        except _Unreadable as exc:
            return FileResult(rel, REJECTED, error=f"{rel}: cannot read the file: {exc}", **known)


class _Unreadable(Exception):
    """The file could not be read to compute its SHA-256."""


def _sha256(hashed: Future[DataFile]) -> str | None:
    try:
        return hashed.result().sha256
    except OSError as exc:
        raise _Unreadable(exc) from exc


def _load_file(
    conn: psycopg.Connection, path: Path, rel: str, entity: FileEntity, dt: date,
    batch_id: uuid.UUID, known: dict, stager: chunks.Stager | None = None,
) -> FileResult:
    fmt = file_format(path)
    if fmt != entity.format:
        raise FileRejected(
            f"is a {fmt.upper() if fmt else 'unknown'} file but {entity.source}/{entity.entity} "
            f"is delivered as {entity.format.upper()}"
        )
    fast = _load_file_optimistically(conn, path, rel, entity, fmt, dt, batch_id, known, stager)
    if fast is not None:
        return fast
    where = {"batch_id": batch_id, "dt": dt, "file": rel}
    try:
        with conn.transaction():
            header, header_text, rows_read = _stage_carefully(conn, path, entity, fmt)
            counts = validate_and_insert(conn, entity, fmt, header, **where)
    except psycopg.errors.StatementTooComplex:
        if fmt != JSONL:
            raise
        # a line nested deeper than PostgreSQL's parser can go (stack depth): find it
        too_deep = _too_deep_lines(conn, path)
        header, header_text, rows_read = _stage_carefully(conn, path, entity, fmt, too_deep)
        counts = validate_and_insert(conn, entity, fmt, header, **where)
    loaded = counts.pop(None, 0)
    quarantined = sum(counts.values())
    if fmt == JSONL and rows_read and counts.get(RULE_NOT_JSON) == rows_read:
        # not one line parses: not JSONL at all (an HTML error page, a binary file)
        first = _first_line(path)
        if _cr_only(first):
            raise FileRejected(_CR_ONLY)
        raise FileRejected(
            f"not a JSONL file: none of its {rows_read} line(s) is valid JSON (first line: "
            f"{_shown(first.strip())!r})"
        )
    if loaded + quarantined != rows_read:  # every staged record lands exactly once
        raise RuntimeError(
            f"{rel}: {rows_read} records staged but {loaded} loaded + {quarantined} quarantined"
        )
    conn.execute(sql.SQL("drop table {}").format(STAGE_SQL))
    rules = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return FileResult(rel, LOADED, rows_read, loaded, quarantined, rules=rules, header=header_text,
                      **known)


def _stage_carefully(
    conn: psycopg.Connection, path: Path, entity: FileEntity, fmt: str,
    too_deep: frozenset[int] = frozenset(),
) -> tuple[HeaderMap | None, str | None, int]:
    """Stage the file record by record: (header, header line, records staged); the JSONL
    lines numbered in `too_deep` are staged with RULE_TOO_DEEP."""
    lines = decode_lines(read_lines(path))
    if fmt == CSV:
        records = csv_records(lines)
        header, header_record = _read_csv_header(entity, records)
        return header, header_record.text, stage_csv(conn, len(header_record.fields), records)
    jsonl = jsonl_records(lines)
    if too_deep:
        jsonl = (r._replace(problem=RULE_TOO_DEEP) if r.line_number in too_deep else r for r in jsonl)
    return None, None, stage_jsonl(conn, jsonl)


# A line with fewer opening brackets than this is not nested deeper than PostgreSQL parses
# (thousands of levels with the default max_stack_depth): only longer ones are tested.
_DEEP_CANDIDATE = 1000


def _too_deep_lines(conn: psycopg.Connection, path: Path) -> frozenset[int]:
    """Numbers of the JSONL lines PostgreSQL cannot parse for their nesting ("stack depth
    limit exceeded"): each line with many brackets is parsed alone, in a savepoint."""
    found = set()
    for record in jsonl_records(decode_lines(read_lines(path))):
        if record.problem or record.text.count("[") + record.text.count("{") < _DEEP_CANDIDATE:
            continue
        try:
            with conn.transaction():
                conn.execute("select pg_input_is_valid(%(l)s, 'json'), pg_input_is_valid(%(l)s, 'jsonb')",
                             {"l": record.text})
        except psycopg.errors.StatementTooComplex:
            found.add(record.line_number)
    return frozenset(found)


class _NotExact(Exception):
    """The optimistic load cannot give exactly what the careful one gives for this file."""


def _load_file_optimistically(
    conn: psycopg.Connection, path: Path, rel: str, entity: FileEntity, fmt: str, dt: date,
    batch_id: uuid.UUID, known: dict, stager: chunks.Stager | None = None,
) -> FileResult | None:
    """Stage the file from its bytes (COPY splits the lines or CSV records: no Python per
    record) and insert it without testing values first, in a savepoint: in one TEMP table,
    or for a large file in chunks, staged on the `stager`'s connection while this one
    inserts (`chunks`). The result when every record loaded; None (and nothing done) when
    the file needs the careful load."""
    chunked = (stager is not None and (known.get("size") or 0) > chunks.MIN_CHUNKED_BYTES
               and stager.available())
    try:
        with conn.transaction():
            header, header_text, width = None, None, 0
            if fmt == CSV:
                header, header_record = _read_csv_header(entity, csv_records(decode_lines(read_lines(path))))
                if "\n" in header_record.text or "\r" in header_record.text:
                    raise _NotExact("header over several lines")
                header_text = header_record.text
                width = len(header_record.fields)
            staging = (stager.staging(path, entity, fmt, header, width) if chunked
                       else _staged_here(conn, path, fmt, width))
            staged = loaded = 0
            with staging as staged_chunks:
                for chunk in staged_chunks:
                    if chunk.good is None:  # staged here, as text: validated as it is inserted
                        why = chunk.exact(fmt, chunk.crlf)
                        if why:
                            raise _NotExact(why)
                        chunk_loaded = conn.execute(optimistic_load_sql(
                            entity, fmt, header, batch_id=batch_id, dt=dt, file=rel, stage=chunk.table,
                        )).rowcount
                        chunk_staged = chunk.rows
                        if fmt == JSONL and chunk_loaded != chunk_staged:  # blank lines are not records
                            chunk_staged = conn.execute(staged_count_sql(fmt, chunk.table)).fetchone()[0]
                    else:  # validated and typed by the stager: every record good
                        chunk_loaded = conn.execute(insert_typed_sql(
                            entity, batch_id=batch_id, dt=dt, file=rel, chunk=chunk.table,
                        )).rowcount
                        chunk_staged = chunk.staged
                    if chunk_loaded != chunk_staged:
                        raise _NotExact(f"{chunk_staged - chunk_loaded} record(s) to quarantine")
                    conn.execute(sql.SQL("drop table {}").format(chunk.table))
                    staged, loaded = staged + chunk_staged, loaded + chunk_loaded
    except (_NotExact, chunks.NotExact, FileRejected, LineTooLong, psycopg.Error, OSError) as why:
        log.debug("%s: loading it record by record (%s)", rel, why)
        if chunked:
            assert stager is not None
            stager.discard()  # the savepoint's rollback released them
        return None
    return FileResult(rel, LOADED, staged, loaded, 0, rules={}, header=header_text, **known)


@contextmanager
def _staged_here(conn: psycopg.Connection, path: Path, fmt: str, width: int) -> Iterator[Iterator[chunks.Chunk]]:
    """The file staged in `conn`, in one TEMP table (`lw_stage`): a single chunk."""

    def stage() -> Iterator[chunks.Chunk]:
        conn.execute(stage_ddl(fmt, width, numbered=True))
        chunk = chunks.Chunk(STAGE_SQL, 0, 2 if fmt == CSV else 1)
        cursor = conn.cursor()
        with cursor.copy(chunks.copy_sql(STAGE_SQL, fmt, width, header=True, freeze=False)) as copy:
            for _, piece in chunks.pieces(path, fmt, None):  # LineTooLong: the careful load quarantines it
                copy.write(piece)
                chunk.feed(piece)
        chunk.rows = cursor.rowcount
        if chunk.rows < 0:  # not reported: count
            chunk.rows = conn.execute(sql.SQL("select count(*) from {}").format(STAGE_SQL)).fetchone()[0]
        yield chunk

    yield stage()


def _first_line(path: Path) -> str:
    return next(iter(decode_lines(read_lines(path))), ("", None))[0]


def _shown(text: str, limit: int = 60) -> str:
    return text[:limit] + ("…" if len(text) > limit else "")


_CR_ONLY = ("its lines end with CR only (classic Mac OS line ends): the contract needs LF or "
            "CRLF line ends")


def _cr_only(text: str) -> bool:
    """A CR inside a file's first line (not its CRLF end): the file's lines end with CR."""
    return "\r" in text.rstrip("\r\n")


def validate_and_insert(
    conn: psycopg.Connection, entity: FileEntity, fmt: str, header: HeaderMap | None, **where
) -> dict[str | None, int]:
    """Validate what `lw_stage` holds and insert it (validation_sql.load_sql): the count
    loaded (key None) and quarantined per rule."""
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


def stage_jsonl(conn: psycopg.Connection, records: Iterable[JsonlRecord]) -> int:
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
        if _cr_only(first.text):
            raise FileRejected(_CR_ONLY)
        raise FileRejected(f"header (line {first.line_number}): {first.problem}")
    return map_header(entity, first.fields), first


def stage_csv(conn: psycopg.Connection, width: int, records: Iterable[CsvRecord]) -> int:
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
        " rows_loaded, rows_quarantined, error, loaded_at, file_size, file_modified_at,"
        " file_sha256, header)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp(), %s, %s, %s, %s)",
        (
            batch_id, entity.source, entity.entity, dt, result.file, result.status,
            result.rows_read, result.rows_loaded, result.rows_quarantined, result.error,
            result.size, result.modified_at, result.sha256, result.header,
        ),
    )


def _log_file(result: FileResult) -> None:
    if result.status == REJECTED:
        log.error("%s: REJECTED, nothing loaded from it: %s", result.file, result.error)
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
