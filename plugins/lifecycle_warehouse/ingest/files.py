"""Load landing-zone date folders into the raw layer (docs/sources.md §1 and §4).

A `dt=` folder is one unit and one transaction: its previous rows (data and quarantine) are
deleted, each file is streamed into a TEMP staging table with COPY, and validation and casting
run as set-based SQL generated from `contract`. Good records go to `raw.<source>_<entity>`,
bad ones to `raw.quarantine` with the first rule they fail, and every file gets a
`raw.load_audit` row. Python only splits bytes into records, because the quarantine must keep
each record's text as delivered and the line where it starts; it holds one record at a time.

A file that cannot be used at all (unreadable, corrupt gzip, header without a contract column)
is rejected whole and the rest of the folder still loads; any other error rolls the whole
folder back.
"""

from __future__ import annotations

import csv
import gzip
import logging
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

import psycopg
from psycopg import sql

from lifecycle_warehouse import bootstrap, contract
from lifecycle_warehouse.contract import Column, FileEntity
from lifecycle_warehouse.ingest import connect

log = logging.getLogger(__name__)

CSV = "csv"
JSONL = "jsonl"
_SUFFIXES = {CSV: (".csv", ".csv.gz"), JSONL: (".jsonl", ".jsonl.gz")}

LOADED = "loaded"
REJECTED = "rejected"

# Quarantine rules found while reading (before SQL sees the record).
RULE_NOT_UTF8 = "not valid UTF-8"
RULE_NUL = "contains a NUL character"  # PostgreSQL text cannot hold U+0000
RULE_NOT_JSON = "not valid JSON"
RULE_NOT_OBJECT = "not a JSON object"

_BOM = b"\xef\xbb\xbf"
_STAGE = "lw_stage"
# The validated rows are materialised once and read by both inserts; enough memory keeps a
# typical daily file out of temp files. Transaction-local.
_WORK_MEM = "64MB"
# jsonb_build_object takes at most 100 arguments: build `_extra` in chunks of 50 pairs.
_EXTRA_CHUNK = 50
# Shown values of an unknown enum are cut to this length in the rule text.
_SHOWN_VALUE = 60


class FileRejected(Exception):
    """The file as a whole cannot be loaded; the message says why (without the file name)."""


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


def file_format(path: Path) -> str | None:
    """"csv" / "jsonl" from the file name (`.csv`, `.jsonl`, optionally `.gz`), else None."""
    name = path.name.lower()
    for fmt, suffixes in _SUFFIXES.items():
        if name.endswith(suffixes):
            return fmt
    return None


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


# --------------------------------------------------------------------------- reading records


def _strip_eol(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def read_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes (split at b"\\n", line ends kept), decompressing `.gz`,
    streamed. Any read failure (missing, unreadable, truncated or corrupt gzip) becomes
    FileRejected, so the file is rejected and the rest of its folder still loads."""
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as stream:
            yield from stream
    except (OSError, EOFError, zlib.error) as exc:
        raise FileRejected(f"cannot read the file: {exc} ({type(exc).__name__})") from exc


def decode_lines(lines: Iterable[bytes]) -> Iterator[tuple[str, str | None]]:
    """(text, problem) per line: strict UTF-8, a BOM at the start of the file dropped. A line
    that is not UTF-8 is decoded with backslash escapes (for the quarantine) and its problem
    is RULE_NOT_UTF8; NUL characters, which PostgreSQL text cannot hold, are escaped too."""
    first = True
    for raw in lines:
        if first:
            first = False
            if raw.startswith(_BOM):
                raw = raw[len(_BOM):]
        try:
            text = raw.decode("utf-8")
            problem = None
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "backslashreplace")
            problem = RULE_NOT_UTF8
        if "\x00" in text:
            text = text.replace("\x00", "\\x00")
            problem = problem or RULE_NUL
        yield text, problem


class JsonlRecord(NamedTuple):
    line_number: int
    text: str  # the line without its line end
    problem: str | None


def jsonl_records(lines: Iterable[tuple[str, str | None]]) -> Iterator[JsonlRecord]:
    """One record per non-blank line; blank lines are skipped (they count for nothing)."""
    for number, (text, problem) in enumerate(lines, start=1):
        text = _strip_eol(text)
        if text and not text.isspace():
            yield JsonlRecord(number, text, problem)


class CsvRecord(NamedTuple):
    line_number: int  # line where the record starts (the header is line 1)
    text: str  # the record as delivered (quoted newlines included), without its final line end
    fields: list[str] | None  # None when the record could not be parsed
    problem: str | None


def csv_records(lines: Iterable[tuple[str, str | None]]) -> Iterator[CsvRecord]:
    """RFC 4180 records (the first one is the header) with the text and first line of each.

    A line without a quote is a whole record whose fields are its comma-separated parts, so
    it is split directly (the common case, several times faster). Any other line is handed
    to the csv module together with the lines it pulls to complete the record (quoted
    newlines); the module never reads ahead, so those lines are exactly the record's text.
    Blank lines are skipped. A malformed record (e.g. a stray quote) is reported with its
    problem and parsing goes on with the next line.
    """
    source = iter(lines)
    pending: list[str] = []  # lines the csv module consumed for the current record
    problems: list[str] = []
    handed_over: list[tuple[str, str | None]] = []

    def feed() -> Iterator[str]:
        while True:
            if handed_over:
                text, problem = handed_over.pop()
            else:
                item = next(source, None)
                if item is None:
                    return
                text, problem = item
            pending.append(text)
            if problem:
                problems.append(problem)
            yield text

    reader = csv.reader(feed(), strict=True)
    consumed = 0  # lines before the current record
    for text, problem in source:
        body = _strip_eol(text)
        if '"' not in body and "\r" not in body:
            consumed += 1
            if body:
                yield CsvRecord(consumed, body, body.split(","), problem)
            continue
        handed_over.append((text, problem))
        try:
            fields: list[str] | None = next(reader)
            error = None
        except csv.Error as exc:
            fields, error = None, f"malformed CSV: {exc}"
        start = consumed + 1
        consumed += len(pending)
        record_text = _strip_eol("".join(pending))
        # An undecodable line explains any parse error that follows from it.
        record_problem = problems[0] if problems else error
        pending.clear()
        problems.clear()
        if fields == [] and record_problem is None:
            continue
        yield CsvRecord(start, record_text, fields, record_problem)


class HeaderMap(NamedTuple):
    positions: dict[str, int]  # contract column -> 0-based field index
    extras: list[tuple[str, int]]  # (key in _extra, field index) of columns beyond the contract


def map_header(entity: FileEntity, header: Sequence[str]) -> HeaderMap:
    """Match a CSV header to the contract (names compared after trimming spaces).

    Every contract column must be present (docs/sources.md: "a listed column that is missing
    is an error for that file"); other columns go to `_extra`. A repeated extra column is kept
    as `name_2`, `name_3`…; a repeated contract column is ambiguous and rejects the file.
    """
    names = [h.strip() for h in header]
    listed = [c.name for c in entity.columns]
    missing = [n for n in listed if n not in names]
    if missing:
        required = [n for n in missing if n in entity.required]
        detail = f" (required: {', '.join(required)})" if required else ""
        raise FileRejected(f"missing column(s) in header: {', '.join(missing)}{detail}")
    repeated = sorted({n for n in listed if names.count(n) > 1})
    if repeated:
        raise FileRejected(f"column(s) appear more than once in header: {', '.join(repeated)}")
    positions = {n: names.index(n) for n in listed}
    extras: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in positions:
            continue
        seen[name] = seen.get(name, 0) + 1
        extras.append((name if seen[name] == 1 else f"{name}_{seen[name]}", index))
    return HeaderMap(positions, extras)


# --------------------------------------------------------------------------- validation SQL


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _value_name(index: int) -> sql.Identifier:
    return _ident(f"_lw_v{index}")


def valid_expr(column: Column, value: sql.Composable, fmt: str) -> sql.Composable | None:
    """SQL boolean: the (non-null) raw value can be cast to the column's type; None for text.

    Stricter than the cast where the contract is: timestamps and dates must be ISO-8601
    (PostgreSQL alone would also accept 'now', 'infinity' or '03/04/2024'), numbers finite
    (not NaN / Infinity), JSON columns objects.
    """
    t = column.type
    if t == contract.TEXT:
        return None
    if t == contract.JSONB:
        if fmt == JSONL:  # already jsonb, extracted with ->
            return sql.SQL("jsonb_typeof({v}) = 'object'").format(v=value)
        return sql.SQL(
            "(pg_input_is_valid({v}, 'jsonb') and jsonb_typeof({v}::jsonb) = 'object')"
        ).format(v=value)
    valid = sql.SQL("pg_input_is_valid({v}, {t})").format(v=value, t=sql.Literal(t))
    # LIKE rather than a regular expression: a third of the cost, and with the cast check it
    # still pins the ISO 'YYYY-MM-DD' start.
    if t == contract.TIMESTAMPTZ:
        return sql.SQL("({v} like '____-__-__%' and {valid})").format(v=value, valid=valid)
    if t == contract.DATE:
        return sql.SQL("({v} like '____-__-__' and {valid})").format(v=value, valid=valid)
    if t == contract.NUMERIC:  # every non-finite spelling (NaN, Infinity, inf) has an n
        return sql.SQL("({valid} and {v} !~* 'n')").format(v=value, valid=valid)
    return valid


def typed_expr(column: Column, value: sql.Composable, fmt: str) -> sql.Composable:
    """The value cast to the column's type, NULL when it is not valid for it."""
    valid = valid_expr(column, value, fmt)
    if valid is None:
        return value
    if column.type == contract.JSONB and fmt == JSONL:  # already jsonb
        return sql.SQL("case when {ok} then {v} end").format(ok=valid, v=value)
    return sql.SQL("case when {ok} then {v}::{t} end").format(
        ok=valid, v=value, t=sql.SQL(column.type)
    )


def _number(value: float) -> str:
    return f"{value:g}"


def column_rules(column: Column, value: sql.Composable, typed: sql.Composable) -> list[
    tuple[sql.Composable, sql.Composable]
]:
    """(condition, rule text) pairs for one column, in the order they are checked: required,
    type, accepted values, length, min, max. `value` is the raw value (NULL when empty),
    `typed` its cast (NULL when not valid)."""
    name = column.name
    rules: list[tuple[sql.Composable, sql.Composable]] = []
    if column.required:  # empty values are already NULL
        rules.append((sql.SQL("{v} is null").format(v=value), sql.Literal(f"{name}: required")))
    if column.type != contract.TEXT:
        rules.append((
            sql.SQL("({v} is not null and {t} is null)").format(v=value, t=typed),
            sql.Literal(f"{name}: {contract.TYPE_RULE[column.type]}"),
        ))
    if column.accepted is not None:
        rules.append((
            sql.SQL("{v} <> all({values}::text[])").format(
                v=value, values=sql.Literal(list(column.accepted))
            ),
            sql.SQL("{prefix} || left({v}, {n}) || ''''").format(
                prefix=sql.Literal(f"{name}: unknown value '"), v=value, n=sql.Literal(_SHOWN_VALUE)
            ),
        ))
    if column.length is not None:
        rules.append((
            sql.SQL("length({v}) <> {n}").format(v=value, n=sql.Literal(column.length)),
            sql.Literal(f"{name}: must be {column.length} characters long"),
        ))
    if column.min_value is not None:
        rules.append((
            sql.SQL("{t} < {m}").format(t=typed, m=sql.Literal(column.min_value)),
            sql.Literal(f"{name}: must be at least {_number(column.min_value)}"),
        ))
    if column.max_value is not None:
        rules.append((
            sql.SQL("{t} > {m}").format(t=typed, m=sql.Literal(column.max_value)),
            sql.Literal(f"{name}: must be at most {_number(column.max_value)}"),
        ))
    return rules


def rule_expr(entity: FileEntity) -> sql.Composable:
    """SQL text expression: the first rule a staged record fails, NULL when it is good.

    Evaluated over a relation with `_lw_pre_rule` (a problem found while reading), the raw
    value of each contract column as `_lw_v<i>` (text, NULL when empty) and its typed value
    under the column's own name, so that the entity's checks can refer to columns by name.
    """
    branches: list[sql.Composable] = [sql.SQL("when _lw_pre_rule is not null then _lw_pre_rule")]
    for index, column in enumerate(entity.columns):
        for condition, rule in column_rules(column, _value_name(index), _ident(column.name)):
            branches.append(sql.SQL("when {c} then {r}").format(c=condition, r=rule))
    for check in entity.checks:
        branches.append(
            sql.SQL("when ({c}) is false then {r}").format(
                c=sql.SQL(check.sql), r=sql.Literal(check.rule)
            )
        )
    return sql.SQL("case\n    {}\nend").format(sql.SQL("\n    ").join(branches))


def _extra_csv(extras: list[tuple[str, int]]) -> sql.Composable:
    if not extras:
        return sql.SQL("null::jsonb")
    chunks = []
    for i in range(0, len(extras), _EXTRA_CHUNK):
        pairs = [
            sql.SQL("{k}, nullif({f}, '')").format(k=sql.Literal(key), f=_ident(f"f{index}"))
            for key, index in extras[i : i + _EXTRA_CHUNK]
        ]
        chunks.append(sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(pairs)))
    return sql.SQL(" || ").join(chunks)


def values_sql(
    entity: FileEntity, fmt: str, header: HeaderMap | None, json_check: str = "json"
) -> sql.Composable:
    """The staged records with each contract column's raw value (`_lw_v<i>`, NULL when empty),
    the `_extra` object and any problem already known (`_lw_pre_rule`).

    JSONL lines are parsed once. `json_check` is the type used to test a line before casting it
    to jsonb: 'json' is ~4x cheaper than 'jsonb' but accepts a few texts jsonb refuses (a
    \\u0000 escape, a lone surrogate, a number beyond numeric's range); the loader retries
    with 'jsonb' when the cheap test let such a line through.
    """
    stage = _ident(_STAGE)
    if fmt == CSV:
        assert header is not None
        values = [
            sql.SQL("nullif({f}, '') as {v}").format(
                f=_ident(f"f{header.positions[c.name]}"), v=_value_name(i)
            )
            for i, c in enumerate(entity.columns)
        ]
        return sql.SQL(
            "select line_number as _lw_line, raw_record as _lw_record, pre_rule as _lw_pre_rule,\n"
            "  {values},\n  {extra} as _lw_extra\nfrom {stage}"
        ).format(values=sql.SQL(",\n  ").join(values), extra=_extra_csv(header.extras), stage=stage)

    keys = sql.Literal([c.name for c in entity.columns])
    values = []
    for i, c in enumerate(entity.columns):
        key = sql.Literal(c.name)
        if c.type == contract.JSONB:
            expr = sql.SQL("nullif(j -> {k}, 'null'::jsonb)").format(k=key)
        else:
            expr = sql.SQL("nullif(j ->> {k}, '')").format(k=key)
        values.append(sql.SQL("{e} as {v}").format(e=expr, v=_value_name(i)))
    return sql.SQL(
        "select line_number as _lw_line, line as _lw_record,\n"
        "  coalesce(pre_rule, case when j is null then {not_json}\n"
        "                          when jsonb_typeof(j) <> 'object' then {not_object}\n"
        "                     end) as _lw_pre_rule,\n"
        "  {values},\n"
        "  case when jsonb_typeof(j) = 'object'\n"
        "       then nullif(j - {keys}::text[], '{{}}'::jsonb) end as _lw_extra\n"
        "from (select line_number, line, pre_rule,\n"
        "             case when pre_rule is null and pg_input_is_valid(line, {check})\n"
        "                  then line::jsonb end as j\n"
        "      from {stage} offset 0) parsed"
    ).format(
        not_json=sql.Literal(RULE_NOT_JSON), not_object=sql.Literal(RULE_NOT_OBJECT),
        values=sql.SQL(",\n  ").join(values), keys=keys, check=sql.Literal(json_check), stage=stage,
    )


def validated_sql(
    entity: FileEntity, fmt: str, header: HeaderMap | None, json_check: str = "json"
) -> sql.Composable:
    """Every staged record with its typed contract columns, `_lw_extra`, `_lw_line`, the rule
    it fails (`_lw_rule`, NULL when good) and, for bad records only, its text (`_lw_record`).

    `offset 0` keeps each level from being flattened into the next, so that every value is
    extracted, tested and cast once per record however many rules refer to it.
    """
    names = [_ident(c.name) for c in entity.columns]
    raw_values = [_value_name(i) for i in range(len(entity.columns))]
    typed = [
        sql.SQL("{e} as {n}").format(e=typed_expr(c, _value_name(i), fmt), n=_ident(c.name))
        for i, c in enumerate(entity.columns)
    ]
    return sql.SQL(
        "select _lw_line, _lw_extra, {names}, _lw_rule,\n"
        "       case when _lw_rule is not null then _lw_record end as _lw_record\n"
        "from (\n"
        "  select _lw_line, _lw_record, _lw_extra, {names},\n  {rule} as _lw_rule\n"
        "  from (\n"
        "    select _lw_line, _lw_record, _lw_pre_rule, _lw_extra, {raw_values},\n    {typed}\n"
        "    from ({values} offset 0) v\n"
        "    offset 0) t\n"
        "  offset 0) r"
    ).format(
        names=sql.SQL(", ").join(names),
        rule=rule_expr(entity),
        raw_values=sql.SQL(", ").join(raw_values),
        typed=sql.SQL(",\n    ").join(typed),
        values=values_sql(entity, fmt, header, json_check),
    )


def load_sql(
    entity: FileEntity, fmt: str, header: HeaderMap | None, *, batch_id: uuid.UUID, dt: date,
    file: str, json_check: str = "json",
) -> sql.Composable:
    """One statement that validates the staged file once and writes both the good records
    (raw table) and the bad ones (quarantine). Returns (rule, count) rows: rule NULL for the
    loaded count, then one row per quarantine rule."""
    names = sql.SQL(", ").join(_ident(c.name) for c in entity.columns)
    batch, day, path = sql.Literal(batch_id), sql.Literal(dt), sql.Literal(file)
    return sql.SQL(
        "with v as materialized ({validated}),\n"
        "quarantined as (\n"
        "  insert into raw.quarantine\n"
        "    (batch_id, source, entity, dt, file, line_number, rule, raw_record)\n"
        "  select {batch}, {source}, {entity}, {dt}, {file}, _lw_line, _lw_rule, _lw_record\n"
        "  from v where _lw_rule is not null\n"
        "  returning rule),\n"
        "loaded as (\n"
        "  insert into {table} ({names}, _batch_id, _dt, _file, _line_number, _loaded_at, _extra)\n"
        "  select {names}, {batch}, {dt}, {file}, _lw_line, now(), _lw_extra\n"
        "  from v where _lw_rule is null\n"
        "  returning 1)\n"
        "select null::text as rule, count(*) from loaded\n"
        "union all\n"
        "select rule, count(*) from quarantined group by rule"
    ).format(
        validated=validated_sql(entity, fmt, header, json_check),
        batch=batch, source=sql.Literal(entity.source), entity=sql.Literal(entity.entity),
        dt=day, file=path, names=names,
        table=sql.Identifier(bootstrap.RAW_SCHEMA, entity.raw_table),
    )


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
        header, rows_read = _stage_csv(conn, entity, lines)
    else:
        header, rows_read = None, _stage_jsonl(conn, lines)

    counts = _validate_and_insert(conn, entity, fmt, header, batch_id=batch_id, dt=dt, file=rel)
    loaded = counts.pop(None, 0)
    quarantined = sum(counts.values())
    if loaded + quarantined != rows_read:  # every staged record lands exactly once
        raise RuntimeError(
            f"{rel}: {rows_read} records staged but {loaded} loaded + {quarantined} quarantined"
        )
    conn.execute(sql.SQL("drop table {}").format(_ident(_STAGE)))
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


def _stage_jsonl(conn: psycopg.Connection, lines: Iterable[tuple[str, str | None]]) -> int:
    conn.execute(
        sql.SQL(
            "create temp table {} (line_number integer, line text, pre_rule text) on commit drop"
        ).format(_ident(_STAGE))
    )
    count = 0
    with conn.cursor().copy(
        sql.SQL("copy {} (line_number, line, pre_rule) from stdin").format(_ident(_STAGE))
    ) as copy:
        for record in jsonl_records(lines):
            copy.write_row(record)
            count += 1
    return count


def _stage_csv(
    conn: psycopg.Connection, entity: FileEntity, lines: Iterable[tuple[str, str | None]]
) -> tuple[HeaderMap, int]:
    records = csv_records(lines)
    first = next(records, None)
    if first is None:
        raise FileRejected("empty file: a CSV delivery needs at least its header row")
    if first.problem is not None or first.fields is None:
        raise FileRejected(f"header (line {first.line_number}): {first.problem}")
    header = map_header(entity, first.fields)
    width = len(first.fields)
    columns = sql.SQL(", ").join(
        [sql.SQL("{} text").format(_ident(f"f{i}")) for i in range(width)]
    )
    conn.execute(
        sql.SQL(
            "create temp table {} (line_number integer, raw_record text, pre_rule text, {}) "
            "on commit drop"
        ).format(_ident(_STAGE), columns)
    )
    empty = (None,) * width
    count = 0
    with conn.cursor().copy(sql.SQL("copy {} from stdin").format(_ident(_STAGE))) as copy:
        for record in records:
            problem = record.problem
            if problem is None and len(record.fields) != width:
                problem = f"expected {width} fields, found {len(record.fields)}"
            if problem is None:
                copy.write_row((record.line_number, record.text, None, *record.fields))
            else:
                copy.write_row((record.line_number, record.text, problem, *empty))
            count += 1
    return header, count


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
