"""The quarantine, after the fact: what it holds, and replaying it once the contract is fixed.

`replay` re-validates quarantined records with today's contract (say an `event_type` value
was added) and loads those that now pass into raw, as if their file had been loaded today:
same batch, file, line number and date folder. Records that still fail stay in
`raw.quarantine`, with the rule they break now. Each date folder is one transaction, which
also updates the `raw.load_audit` row of every file concerned (rows loaded and quarantined,
so that `rows_read = rows_loaded + rows_quarantined` still holds, and `replayed_at`, so that
the next warehouse build reprocesses the date). A record whose text is not what was
delivered (undecodable bytes, a NUL character: the quarantine keeps an escaped text) keeps
its rule; a CSV record needs its file's header, which the load recorded (or, for files
loaded before it was, the file itself if it is still in the landing zone).

Delivering the folder again still replaces everything, replayed records included.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

from lifecycle_warehouse import bootstrap, contract
from lifecycle_warehouse.contract import FileEntity
from lifecycle_warehouse.ingest import connect, files
from lifecycle_warehouse.ingest.records import (
    CSV,
    CsvRecord,
    FileRejected,
    JsonlRecord,
    csv_records,
    decode_lines,
    is_read_only_rule,
    map_header,
    read_lines,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """Which quarantined records: every filter that is set must hold (rule: a substring,
    any case)."""

    source: str | None = None
    entity: str | None = None
    rule: str | None = None
    date_from: date | None = None
    date_to: date | None = None  # inclusive

    def where(self) -> tuple[str, dict]:
        clauses, params = ["true"], {}
        if self.source:
            clauses.append("source = %(source)s")
            params["source"] = self.source
        if self.entity:
            clauses.append("entity = %(entity)s")
            params["entity"] = self.entity
        if self.rule:
            clauses.append("strpos(lower(rule), lower(%(rule)s)) > 0")
            params["rule"] = self.rule
        if self.date_from:
            clauses.append("dt >= %(date_from)s")
            params["date_from"] = self.date_from
        if self.date_to:
            clauses.append("dt <= %(date_to)s")
            params["date_to"] = self.date_to
        return " and ".join(clauses), params


@dataclass
class FolderReplay:
    source: str
    entity: str
    dt: date
    replayed: int = 0  # records re-validated
    loaded: int = 0  # of which now in raw
    still_quarantined: Counter = field(default_factory=Counter)  # rule -> records
    not_replayable: dict[str, int] = field(default_factory=dict)  # why -> records


def counts(warehouse_url: str, selection: Selection = Selection()) -> list[tuple[str, str, str, date, int]]:
    """(source, entity, rule, dt, records) of the quarantine, most records first."""
    where, params = selection.where()
    with connect(warehouse_url, "WAREHOUSE_URL", autocommit=True) as conn:
        bootstrap.ensure_raw_schema(conn)
        return conn.execute(
            f"select source, entity, rule, dt, count(*) from raw.quarantine where {where}"
            " group by source, entity, rule, dt order by source, entity, dt, count(*) desc, rule",
            params,
        ).fetchall()


def replay(warehouse_url: str, landing_dir: Path, selection: Selection = Selection()) -> list[FolderReplay]:
    """Re-validate the selected quarantined records with today's contract; load those that
    pass. One transaction per date folder; returns what happened in each."""
    where, params = selection.where()
    with connect(warehouse_url, "WAREHOUSE_URL", autocommit=True,
                 application_name="lifecycle_warehouse.ingest.quarantine") as conn:
        bootstrap.ensure_raw_schema(conn)
        folders = conn.execute(
            f"select distinct source, entity, dt from raw.quarantine where {where} order by 1, 2, 3",
            params,
        ).fetchall()
        out = []
        for source, entity_name, dt in folders:
            entity = contract.file_entity(source, entity_name)
            out.append(_replay_folder(conn, Path(landing_dir), entity, dt, where, params))
    return out


def _replay_folder(
    conn: psycopg.Connection, landing_dir: Path, entity: FileEntity, dt: date, where: str, params: dict
) -> FolderReplay:
    result = FolderReplay(entity.source, entity.entity, dt)
    with conn.transaction():
        conn.execute("set local timezone = 'UTC'")
        # the same lock as a load of this folder: a replay and a re-delivery do not interleave
        conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (files.lock_key(entity, dt),))
        records = conn.execute(
            f"delete from raw.quarantine where {where}"
            " and source = %(s)s and entity = %(e)s and dt = %(dt)s"
            " returning batch_id, file, line_number, rule, raw_record",
            {**params, "s": entity.source, "e": entity.entity, "dt": dt},
        ).fetchall()
        by_file: dict[tuple, list[tuple]] = defaultdict(list)
        for batch_id, file, line_number, rule, raw_record in records:
            by_file[(batch_id, file)].append((line_number, rule, raw_record))
        for (batch_id, file), quarantined in sorted(by_file.items(), key=lambda kv: kv[0][1]):
            _replay_file(conn, landing_dir, entity, dt, batch_id, file, quarantined, result)
    log.info("%s/%s dt=%s: %d quarantined record(s) replayed, %d loaded, %d still quarantined%s",
             entity.source, entity.entity, dt, result.replayed, result.loaded,
             sum(result.still_quarantined.values()),
             "".join(f"; {n} not replayable: {why}" for why, n in result.not_replayable.items()))
    return result


def _header(conn: psycopg.Connection, landing_dir: Path, batch_id, file: str) -> str | None:
    """The CSV header line of a loaded file: recorded by its load, else read from the file."""
    row = conn.execute(
        "select header from raw.load_audit where batch_id = %s and file = %s and header is not null limit 1",
        (batch_id, file),
    ).fetchone()
    if row:
        return row[0]
    path = landing_dir / file
    try:
        first = next(iter(decode_lines(read_lines(path))), None)
    except (FileRejected, OSError):
        return None
    return first[0].rstrip("\r\n") if first and first[1] is None else None


def _put_back(conn: psycopg.Connection, entity: FileEntity, dt: date, batch_id, file: str,
              quarantined: list[tuple]) -> None:
    with conn.cursor().copy(
        "copy raw.quarantine (batch_id, source, entity, dt, file, line_number, rule, raw_record)"
        " from stdin"
    ) as copy:
        for line_number, rule, raw_record in quarantined:
            copy.write_row((batch_id, entity.source, entity.entity, dt, file, line_number, rule, raw_record))


def _replay_file(
    conn: psycopg.Connection, landing_dir: Path, entity: FileEntity, dt: date, batch_id, file: str,
    quarantined: list[tuple], result: FolderReplay,
) -> None:
    header = None
    if entity.format == CSV:
        header_line = _header(conn, landing_dir, batch_id, file)
        header_fields = None
        if header_line is None:
            problem = "the file's header is unknown (not recorded, and the file is gone)"
        else:
            header_fields = next(csv_records([(header_line, None)])).fields or []
            try:
                header, problem = map_header(entity, header_fields), None
            except FileRejected as exc:
                problem = f"its header does not fit today's contract: {exc}"
        if problem:
            _put_back(conn, entity, dt, batch_id, file, quarantined)
            result.not_replayable[problem] = result.not_replayable.get(problem, 0) + len(quarantined)
            return
        staged = files.stage_csv(conn, len(header_fields), (_csv_record(*q) for q in quarantined))
    else:
        staged = files.stage_jsonl(conn, (
            JsonlRecord(line_number, raw_record, rule if is_read_only_rule(rule) else None)
            for line_number, rule, raw_record in quarantined
        ))
    counts = files.validate_and_insert(conn, entity, entity.format, header,
                                       batch_id=batch_id, dt=dt, file=file)
    conn.execute(sql.SQL("drop table {}").format(files.STAGE_SQL))
    loaded = counts.pop(None, 0)
    result.replayed += staged
    result.loaded += loaded
    result.still_quarantined.update(counts)
    conn.execute(
        "update raw.load_audit set rows_loaded = rows_loaded + %(n)s,"
        " rows_quarantined = rows_quarantined - %(n)s, replayed_at = clock_timestamp()"
        " where batch_id = %(batch)s and file = %(file)s",
        {"n": loaded, "batch": batch_id, "file": file},
    )


def _csv_record(line_number: int, rule: str, raw_record: str) -> CsvRecord:
    """One quarantined CSV record, parsed again from its text (which may span lines)."""
    if is_read_only_rule(rule):
        return CsvRecord(line_number, raw_record, None, rule)
    parsed = list(csv_records((line, None) for line in raw_record.splitlines(keepends=True)))
    if len(parsed) != 1:
        return CsvRecord(line_number, raw_record, None,
                         parsed[0].problem if parsed and parsed[0].problem else rule)
    return CsvRecord(line_number, raw_record, parsed[0].fields, parsed[0].problem)
