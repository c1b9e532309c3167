"""Where simulated data goes: date folders of the landing zone, and the shop database.

Landing zone: `<landing>/<source>/<entity>/dt=YYYY-MM-DD/<name>.<csv|jsonl>[.gz]`. A date
folder is one delivery, so the writer deletes it before writing it again (a rerun
replaces, never accumulates) and writes each file under a hidden temporary name that is
renamed when complete, then marks the folder complete with an empty `_SUCCESS` file, so a
loader never picks up half a delivery. gzip files are written with a zero mtime and no
file name, so the same content gives the same bytes.

Shop: tables of `contract.SHOP_TABLES` in schema public, dropped and recreated, filled
with COPY.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from lifecycle_warehouse import contract
from lifecycle_warehouse.ingest.deliveries import MARKER
from lifecycle_warehouse.simulator.clock import Clock


def check_fields(entity: contract.FileEntity, fields: tuple[str, ...]) -> None:
    """Fail loudly when the contract's columns and what a row builder produces differ."""
    expected = tuple(c.name for c in entity.columns)
    if fields != expected:
        raise RuntimeError(
            f"simulator writes {entity.source}/{entity.entity} columns {fields}, "
            f"but the contract says {expected}: update the simulator"
        )


class DayFiles:
    """One file per day of the window for one source/entity, opened lazily.

    Every day gets a file even if nothing is written to it (an empty delivery). At most
    `max_open` files are open at once; a closed plain file is reopened for appending,
    gzip files are kept open until `finish_before` or `close` (appending to a gzip file
    would start a second member). CSV rows are queued per day and written in blocks.
    """

    BLOCK_ROWS = 2000

    def __init__(
        self,
        landing_dir: Path,
        entity: contract.FileEntity,
        clock: Clock,
        *,
        name: str | None = None,
        gzip_days: Iterable[int] = (),
        max_open: int = 64,
    ):
        self.entity = entity
        self.clock = clock
        self.dir = Path(landing_dir) / entity.source / entity.entity
        self.name = name or entity.entity
        self.gzip_days = frozenset(gzip_days)
        self.max_open = max_open
        self.rows = [0] * clock.days
        self._open: OrderedDict[int, TextIO] = OrderedDict()
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._buffers: dict[int, list[tuple]] = {}
        self._raw: dict[int, object] = {}

    # --- paths ------------------------------------------------------------------
    def folder(self, day: int) -> Path:
        return self.dir / f"dt={self.clock.date_of_index(day).isoformat()}"

    def file_name(self, day: int) -> str:
        suffix = f".{self.entity.format}" + (".gz" if day in self.gzip_days else "")
        return self.name + suffix

    def _tmp(self, day: int) -> Path:
        return self.folder(day) / f".{self.file_name(day)}.tmp"

    # --- writing ------------------------------------------------------------------
    def handle(self, day: int) -> TextIO:
        fh = self._open.get(day)
        if fh is not None:
            self._open.move_to_end(day)
            return fh
        if day in self._finished:
            raise RuntimeError(f"{self.dir}: day {day} was already finished")
        if not 0 <= day < self.clock.days:
            raise ValueError(f"{self.dir}: day index {day} outside the window")
        while len(self._open) >= self.max_open:
            victim = next((d for d in self._open if d not in self.gzip_days), None)
            if victim is None:
                break
            self._open.pop(victim).close()
        if day not in self._started:
            self._reset_folder(day)
            fh = self._create(day)
            self._started.add(day)
            if self.entity.format == "csv":
                csv.writer(fh, lineterminator="\n").writerow([c.name for c in self.entity.columns])
        else:
            fh = open(self._tmp(day), "a", encoding="utf-8", newline="")
        self._open[day] = fh
        return fh

    def write_row(self, day: int, row: tuple) -> None:
        """Queue a CSV row (contract column order) for `day`; rows are written in blocks."""
        buffer = self._buffers.get(day)
        if buffer is None:
            buffer = self._buffers[day] = []
        buffer.append(row)
        self.rows[day] += 1
        if len(buffer) >= self.BLOCK_ROWS:
            self._flush(day)

    def write_text(self, day: int, text: str, rows: int) -> None:
        """Append already formatted lines (e.g. JSON lines) to `day`'s file."""
        self.handle(day).write(text)
        self.rows[day] += rows

    def _flush(self, day: int) -> None:
        buffer = self._buffers.pop(day, None)
        if buffer:
            csv.writer(self.handle(day), lineterminator="\n").writerows(buffer)

    def _reset_folder(self, day: int) -> None:
        folder = self.folder(day)
        # Only ever delete below <landing>/<source>/<entity>/dt=...
        if folder.parent != self.dir or not folder.name.startswith("dt="):
            raise RuntimeError(f"refusing to delete {folder}: not a date folder of {self.dir}")
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)

    def _create(self, day: int) -> TextIO:
        path = self._tmp(day)
        if day in self.gzip_days:
            raw = open(path, "wb")
            self._raw[day] = raw  # GzipFile does not close a file object it was given
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)
            return io.TextIOWrapper(gz, encoding="utf-8", newline="")
        return open(path, "w", encoding="utf-8", newline="")

    def _finish(self, day: int) -> None:
        if day in self._finished:
            return
        self._flush(day)
        if day not in self._started:
            self.handle(day)  # an empty delivery: header only / empty file
        fh = self._open.pop(day, None)
        if fh is not None:
            fh.close()
        raw = self._raw.pop(day, None)
        if raw is not None:
            raw.close()
        os.replace(self._tmp(day), self.folder(day) / self.file_name(day))
        # the delivery is complete: a loader may read the folder now (docs/sources.md)
        (self.folder(day) / MARKER).touch()
        self._finished.add(day)

    def finish_before(self, day: int) -> None:
        """Complete every file of a day before `day` (nothing more will be written to it)."""
        for d in range(min(day, self.clock.days)):
            if d not in self._finished:
                self._finish(d)

    def close(self) -> None:
        self.finish_before(self.clock.days)

    @property
    def files(self) -> int:
        return len(self._finished)

    @property
    def total_rows(self) -> int:
        return sum(self.rows)


# --- shop database ------------------------------------------------------------------


def shop_ddl(table: contract.ShopTable, id_type: str = "bigint"):
    """`create table` of a shop table, its id columns of type `id_type` (bigint, text, uuid)."""
    from psycopg import sql

    columns = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name),
            sql.SQL(id_type if c.name in contract.SHOP_ID_COLUMNS else c.type),
            sql.SQL(" not null" if c.required else ""),
        )
        for c in table.columns
    ]
    columns.append(sql.SQL("primary key ({})").format(sql.SQL(", ").join(map(sql.Identifier, table.primary_key))))
    return sql.SQL("create table public.{} (\n    {}\n)").format(
        sql.Identifier(table.table), sql.SQL(",\n    ").join(columns)
    )


def write_shop(url: str, rows: dict[str, Iterable[tuple]], id_type: str = "bigint") -> dict[str, int]:
    """Drop and recreate the shop tables and fill them with COPY, in one transaction, so
    that a reader sees either the previous shop or the new one. `rows[table]` yields
    tuples in the contract's column order (str / int / None values, text format); id
    columns are of type `id_type`."""
    import psycopg
    from psycopg import sql

    counts: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        with conn.transaction():
            for table in contract.SHOP_TABLES:
                conn.execute(sql.SQL("drop table if exists public.{} cascade").format(sql.Identifier(table.table)))
                conn.execute(shop_ddl(table, id_type))
                copy_sql = sql.SQL("copy public.{} ({}) from stdin").format(
                    sql.Identifier(table.table), sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)
                )
                n = 0
                with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                    for row in rows.get(table.table, ()):
                        copy.write_row(row)
                        n += 1
                counts[table.table] = n
                conn.execute(
                    sql.SQL("create index {} on public.{} (updated_at)").format(
                        sql.Identifier(f"{table.table}_updated_at_idx"), sql.Identifier(table.table)
                    )
                )
        for table in contract.SHOP_TABLES:
            conn.execute(sql.SQL("analyze public.{}").format(sql.Identifier(table.table)))
        conn.commit()
    return counts
