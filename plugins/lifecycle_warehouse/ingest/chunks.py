"""Staging a file from its bytes in chunks on a second connection, while the folder's own
connection loads the chunks already staged (files._load_file_optimistically; issue 21).

One backend works one statement at a time: staged in one TEMP table, a file is first
copied, then validated and cast, then inserted. Here a `Stager` (its own autocommit
connection, in a thread: psycopg releases the GIL while it waits) COPYs the file in chunks
of about CHUNK_BYTES into a TEMP table, validates and casts each with the optimistic
statement's own SQL into an UNLOGGED table `raw._lw_chunk_<token>_<n>` of typed good
records (validation_sql.typed_chunk_sql), committed on its own, and the folder's
transaction inserts each chunk as soon as it is committed (insert_typed_sql): the copy and
validation of chunk n+1 run on another core beside the insert of chunk n, which is all
that is left in the folder's transaction (the heap, its indexes, the WAL). A chunk with a
record to quarantine (or a value that does not cast) sends the file the careful way.

- A chunk ends at a line end, so that it holds whole lines; whether it also holds whole
  records (a quoted newline in a CSV field) is checked: every chunk must hold as many
  records as lines, with the line ends of the file's first line (`Chunk.exact`), else the
  file takes the careful way (a COPY that fails on a quoted field cut by a chunk's end
  does too).
- The stager's session validates in the folder transaction's time zone (FOLDER_TIMEZONE);
  it connects with the same URL, so it has the same role and database settings.
- Memory and disk stay flat in the file's size: 1 MiB blocks in memory, at most
  QUEUE_CHUNKS chunks staged ahead of the insert.
- The folder's transaction drops each chunk once inserted (final when it commits). What a
  rollback leaves, the stager drops: a file's chunks when its optimistic load is undone
  (`discard`), everything else once the folder's transaction has ended (`close`).
- Each stager holds a session advisory lock on its token while it lives: the chunks of a
  token nobody holds are a crashed load's, and each stager drops them when it connects.

Chunks live in the `raw` schema, which the loading role creates and owns (bootstrap).
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from lifecycle_warehouse import bootstrap
from lifecycle_warehouse.ingest import SourceUnavailableError, connect
from lifecycle_warehouse.contract import FileEntity
from lifecycle_warehouse.ingest.records import CSV, JSONL, HeaderMap, read_blocks
from lifecycle_warehouse.ingest.validation_sql import STAGE, stage_ddl, staged_count_sql, typed_chunk_sql

log = logging.getLogger(__name__)

# A chunk holds at least this many bytes (up to its next line end), the last one less. Big
# enough that a chunk's statements cost little beside its rows, small enough that the
# insert starts soon after the copy.
CHUNK_BYTES = 8 << 20
# Chunks staged but not yet inserted: the stager waits when it is this far ahead.
QUEUE_CHUNKS = 2
# Files up to this size are staged in the folder's own connection (one TEMP table): a
# second connection and its commits would cost more than the overlap saves.
MIN_CHUNKED_BYTES = CHUNK_BYTES
PREFIX = "_lw_chunk_"
# The folder's transaction casts timestamps in UTC (files._replace_folder): so does the stager.
FOLDER_TIMEZONE = "UTC"
_NAME = re.compile(re.escape(PREFIX) + r"([0-7][0-9a-f]{7})_[0-9]+")  # token: 31 bits
# First key of the stagers' advisory locks (the second is the token): two int4 keys, a lock
# space apart from the bigint keys of the folder locks.
_LOCK_CLASS = 0x4C574348  # "LWCH"
# The stager's TEMP buffers: room for a chunk's text (the default, 8MB, is less).
_TEMP_BUFFERS = "64MB"
# How long a stager waits to drop a chunk: a chunk still locked is a living load's.
_DROP_LOCK_TIMEOUT = "5s"


class NotExact(Exception):
    """The bytes show that staging from them cannot give exactly the careful load."""


class _Stopped(Exception):
    """The load stopped reading the chunks: the stager abandons the one it is copying."""


@dataclass
class Chunk:
    """A staged chunk: its table, its first line's number, what COPY counted and what its
    bytes hold; for a typed chunk (the stager's), its records and good records."""

    table: sql.Composable
    number: int
    first_line: int
    rows: int = 0  # records COPY staged (a JSONL file's blank lines included)
    staged: int | None = None  # records (a JSONL file's blank lines left out)
    good: int | None = None  # records in the typed chunk: every record staged
    newlines: int = 0
    last: bytes = b""  # its last byte
    crlf: bool | None = None  # its first line ends with CRLF; None: no line end in it
    stray_cr: bool = False  # a CR inside its first line, or ending it without LF

    def feed(self, piece: bytes) -> None:
        """Account for the next bytes of the chunk (its first line is scanned for CRs:
        COPY takes the line end of a chunk's first line for all of the chunk's lines)."""
        if self.crlf is None and not self.newlines:
            end = piece.find(b"\n")
            line = piece if end < 0 else piece[:end]
            if line:
                if self.last == b"\r" or b"\r" in line[:-1]:
                    self.stray_cr = True
                self.last = line[-1:]
            if end >= 0:
                self.crlf = self.last == b"\r"
        self.newlines += piece.count(b"\n")
        if piece:
            self.last = piece[-1:]

    @property
    def lines(self) -> int:
        return self.newlines + (self.last not in (b"", b"\n"))

    def exact(self, fmt: str, file_crlf: bool | None) -> str | None:
        """None when COPY staged the chunk exactly as the careful load reads it: one record
        per line (no CSV record over several lines, nothing after an end-of-data marker
        `\\.`), the line ends of the file's first line; else why not."""
        if self.stray_cr or (self.crlf is None and self.last == b"\r"):
            return "CR-only line ends" if self.number == 0 else "a carriage return inside a line"
        if self.number and self.crlf is not None and self.crlf != file_crlf:
            return "mixed line ends"
        header = 1 if fmt == CSV and self.number == 0 and self.lines else 0
        if self.rows != self.lines - header:
            return ("a CSV record over several lines (line numbers would shift)" if fmt == CSV
                    else "an end-of-data marker (\\.) in a line")
        return None


def pieces(path: Path, fmt: str, chunk_bytes: int | None) -> Iterator[tuple[int, bytes]]:
    """(chunk number, bytes) of the file in order (read_blocks: LineTooLong, FileRejected);
    a chunk ends at the first line end after `chunk_bytes` (None: one chunk). A JSONL
    file with a byte COPY would take for a separator raises NotExact."""
    number, filled = 0, 0
    for block in read_blocks(path):
        if fmt == JSONL and (b"\x01" in block or b"\x02" in block):
            raise NotExact("a control byte COPY would take for a separator")
        start = 0
        while start < len(block):
            room = len(block) - start if chunk_bytes is None else chunk_bytes - filled
            cut = -1 if len(block) - start <= room else block.find(b"\n", start + max(room, 1) - 1)
            if cut < 0:
                yield number, block[start:] if start else block
                filled += len(block) - start
                break
            yield number, block[start:cut + 1]
            number, filled, start = number + 1, 0, cut + 1


def copy_sql(table: sql.Composable, fmt: str, width: int, *, header: bool, freeze: bool) -> sql.Composable:
    """COPY of a file's bytes into a stage: CSV records into f0…, or JSONL lines whole."""
    options = ", freeze true" if freeze else ""
    if fmt == CSV:
        return sql.SQL("copy {} ({}) from stdin with (format csv, header {}{})").format(
            table, sql.SQL(", ").join(sql.Identifier(f"f{i}") for i in range(width)),
            sql.SQL("true" if header else "false"), sql.SQL(options))
    # one line, one field: quote and delimiter are bytes no JSONL file holds (checked)
    return sql.SQL(
        "copy {} (line) from stdin with (format csv, quote e'\\x01', delimiter e'\\x02'{})"
    ).format(table, sql.SQL(options))


class Stager:
    """A folder's second connection, opened when a file is first chunked. Use it while the
    folder's transaction runs and `close` it once that transaction has ended."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection | None = None
        self.token = ""
        self._next = 0  # number of the next chunk table (unique in the folder)
        self._tables: list[str] = []  # the chunk tables of the file being staged
        self._unavailable = False

    def available(self) -> bool:
        """Whether chunks can be staged: the stager connects (once), and its role may
        create tables in the raw schema. If not, the loader stages in its own connection."""
        if self._unavailable:
            return False
        try:
            conn = self._connection()
            if conn.execute("select has_schema_privilege(%s, 'CREATE')", (bootstrap.RAW_SCHEMA,)).fetchone()[0]:
                return True
            reason = f"the role may not create tables in the {bootstrap.RAW_SCHEMA} schema"
        except (psycopg.Error, SourceUnavailableError) as exc:
            reason = str(exc)
        log.warning("large files are staged in the loading connection alone: %s", reason)
        self._unavailable = True
        return False

    def _connection(self) -> psycopg.Connection:
        if self.conn is None:
            conn = connect(self.url, "WAREHOUSE_URL", autocommit=True,
                           application_name="lifecycle_warehouse.ingest.chunks")
            try:
                conn.execute(sql.SQL("set lock_timeout = {}").format(sql.Literal(_DROP_LOCK_TIMEOUT)))
                conn.execute(sql.SQL("set timezone = {}").format(sql.Literal(FOLDER_TIMEZONE)))
                # a chunk's TEMP stage in the backend's memory, not written out and read back
                conn.execute(sql.SQL("set temp_buffers = {}").format(sql.Literal(_TEMP_BUFFERS)))
                while True:
                    token = secrets.randbits(31)
                    if conn.execute("select pg_try_advisory_lock(%s::int4, %s::int4)", (_LOCK_CLASS, token)).fetchone()[0]:
                        break
                self.token = f"{token:08x}"
                drop_orphans(conn, own=self.token)
            except BaseException:
                conn.close()
                raise
            self.conn = conn
        return self.conn

    @contextmanager
    def staging(self, path: Path, entity: FileEntity, fmt: str, header: HeaderMap | None,
                width: int) -> Iterator[Iterator[Chunk]]:
        """The file's typed chunks, each once committed (a staging error, or NotExact, is
        raised where the chunk would come); leaving stops the stager and waits for it."""
        conn = self._connection()
        self._tables = []
        ready: queue.Queue[Any] = queue.Queue(QUEUE_CHUNKS)
        stop = threading.Event()
        thread = threading.Thread(target=self._stage, args=(conn, path, entity, fmt, header, width, ready, stop),
                                  name="lw-stager", daemon=True)
        thread.start()

        def chunks() -> Iterator[Chunk]:
            while (item := ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item

        try:
            yield chunks()
        finally:
            stop.set()
            while thread.is_alive():  # a stager waiting to hand over a chunk
                try:
                    ready.get(timeout=0.05)
                except queue.Empty:
                    pass
            thread.join()

    def _stage(self, conn: psycopg.Connection, path: Path, entity: FileEntity, fmt: str,
               header: HeaderMap | None, width: int, ready: queue.Queue[Any], stop: threading.Event) -> None:
        def hand_over(item: Any) -> None:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return
                except queue.Full:
                    pass

        try:
            source = pieces(path, fmt, CHUNK_BYTES)
            pending = next(source, None)
            stage = sql.Identifier(STAGE)
            number, line, file_crlf = 0, 1, None
            while True:
                name = f"{PREFIX}{self.token}_{self._next}"
                table = sql.Identifier(bootstrap.RAW_SCHEMA, name)
                self._next += 1
                first = 2 if fmt == CSV and number == 0 else line
                chunk = Chunk(table, number, first)
                with conn.transaction():
                    conn.execute(stage_ddl(fmt, width, numbered=True, first_line=first))
                    cursor = conn.cursor()
                    with cursor.copy(copy_sql(stage, fmt, width, header=number == 0, freeze=False)) as copy:
                        while pending is not None and pending[0] == number:
                            if stop.is_set():
                                raise _Stopped
                            copy.write(pending[1])
                            chunk.feed(pending[1])
                            pending = next(source, None)
                    chunk.rows = cursor.rowcount
                    if chunk.rows < 0:  # not reported: count
                        chunk.rows = conn.execute(sql.SQL("select count(*) from {}").format(stage)).fetchone()[0]
                    if number == 0:
                        file_crlf = chunk.crlf
                    why = chunk.exact(fmt, file_crlf)
                    if why:
                        raise NotExact(why)
                    chunk.good = conn.execute(typed_chunk_sql(entity, fmt, header, stage=stage, table=table)).rowcount
                    chunk.staged = chunk.rows
                    if fmt == JSONL and chunk.good != chunk.rows:  # blank lines are not records
                        chunk.staged = conn.execute(staged_count_sql(fmt, stage)).fetchone()[0]
                    if chunk.good != chunk.staged:
                        raise NotExact(f"{chunk.staged - chunk.good} record(s) to quarantine")
                    conn.execute(sql.SQL("drop table {}").format(stage))
                self._tables.append(name)
                hand_over(chunk)
                if pending is None or stop.is_set():
                    break
                number, line = number + 1, line + chunk.newlines
            hand_over(None)
        except _Stopped:
            pass
        except BaseException as exc:  # raised in the loading thread, where the chunk would come
            hand_over(exc)

    def discard(self) -> None:
        """Drop the chunks of the file last staged, once its optimistic load was undone
        (its savepoint's rollback released them; the chunks of the folder's other files
        stay locked until the folder's transaction ends)."""
        if self.conn is not None and not self.conn.closed:
            try:
                for name in self._tables:
                    _drop(self.conn, name)
            except psycopg.Error as exc:
                log.warning("could not drop the staged chunks %s: %s (the next load drops them)",
                            ", ".join(self._tables), exc)
            self._tables = []

    def close(self) -> None:
        """Drop what is left of the chunks (a rolled-back folder's) and disconnect, which
        releases the token's lock."""
        if self.conn is None:
            return
        try:
            drop_chunks(self.conn, self.token)
        except psycopg.Error as exc:
            log.warning("could not drop the staged chunks %s%s_*: %s (the next load drops them)",
                        PREFIX, self.token, exc)
        finally:
            self.conn.close()
            self.conn = None


def _chunk_tables(conn: psycopg.Connection) -> list[str]:
    return [name for (name,) in conn.execute(
        "select relname from pg_class where relnamespace = to_regnamespace(%s) and relkind = 'r'"
        " and starts_with(relname, %s)",
        (bootstrap.RAW_SCHEMA, PREFIX),
    ) if _NAME.fullmatch(name)]


def drop_chunks(conn: psycopg.Connection, token: str) -> None:
    """Drop the chunks of `token` (a table still locked by a transaction is left, with a
    warning, once _DROP_LOCK_TIMEOUT has passed)."""
    for name in _chunk_tables(conn):
        if name.startswith(f"{PREFIX}{token}_"):
            _drop(conn, name)


def drop_orphans(conn: psycopg.Connection, own: str | None = None) -> None:
    """Drop the chunks of loads that ended without dropping them (a crash, a lost
    connection): those whose token's lock nobody holds; `own`: this stager's token."""
    tokens = sorted({_NAME.fullmatch(name).group(1) for name in _chunk_tables(conn)})  # type: ignore[union-attr]
    for token in tokens:
        if token == own:
            drop_chunks(conn, token)  # a crashed load's that had the same token
            continue
        key = (_LOCK_CLASS, int(token, 16))
        if not conn.execute("select pg_try_advisory_lock(%s::int4, %s::int4)", key).fetchone()[0]:
            continue  # a living load's
        try:
            log.info("dropping the chunks %s%s_* a load left behind", PREFIX, token)
            drop_chunks(conn, token)
        finally:
            conn.execute("select pg_advisory_unlock(%s::int4, %s::int4)", key)


def _drop(conn: psycopg.Connection, name: str) -> None:
    try:
        conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(bootstrap.RAW_SCHEMA, name)))
    except psycopg.errors.LockNotAvailable:
        log.warning("staged chunk %s.%s is still in use: left for a later load to drop",
                    bootstrap.RAW_SCHEMA, name)
