"""The short report that ends `make pipeline` and `make demo`: what was loaded, what was
quarantined and why, and where to look next. Reads only the warehouse."""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

# The latest load of each file in the range (load_audit keeps every load).
LATEST_LOADS = """
with latest as (
    select distinct on (source, entity, dt, coalesce(file, ''))
        source, entity, dt, file, status, rows_read, rows_loaded, rows_quarantined, error
    from raw.load_audit
    where source <> 'shop' and dt >= %(start)s and dt < %(end)s
    order by source, entity, dt, coalesce(file, ''), loaded_at desc
)
select source, entity,
    count(distinct dt) as deliveries,
    count(*) as files,
    count(*) filter (where status = 'rejected') as rejected_files,
    coalesce(sum(rows_loaded), 0) as rows_loaded,
    coalesce(sum(rows_quarantined), 0) as rows_quarantined
from latest
group by source, entity
order by source, entity
"""

QUARANTINE_RULES = """
select source || '/' || entity, rule, count(*) as records, min(file || ':' || line_number)
from raw.quarantine
where dt >= %(start)s and dt < %(end)s
group by source, entity, rule
order by records desc
limit 10
"""

REJECTED_FILES = """
select distinct on (file) file, error
from raw.load_audit
where status = 'rejected' and dt >= %(start)s and dt < %(end)s
order by file, loaded_at desc
limit 10
"""


def _exists(conn: psycopg.Connection, relation: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()[0]


def print_summary(console: Console, warehouse_url: str, date_from: date, date_to: date) -> None:
    window = {"start": date_from, "end": date_to + timedelta(days=1)}
    with psycopg.connect(warehouse_url) as conn:
        if not _exists(conn, "raw.load_audit"):
            console.print("Nothing loaded yet: run `make pipeline FROM=… TO=…`.")
            return
        table = Table(title=f"Landing-zone loads {date_from} … {date_to} (latest load of each file)")
        for column in ("source/entity", "deliveries", "files", "rejected", "rows loaded", "quarantined"):
            table.add_column(column, justify="left" if column == "source/entity" else "right")
        for source, entity, deliveries, files, rejected, loaded, quarantined in conn.execute(LATEST_LOADS, window):
            table.add_row(f"{source}/{entity}", str(deliveries), str(files),
                          f"[red]{rejected}[/]" if rejected else "0", f"{loaded:,}",
                          f"[yellow]{quarantined:,}[/]" if quarantined else "0")
        console.print(table)

        shop = Table(title="Shop database extracts (rows in raw, watermark)")
        shop.add_column("table")
        shop.add_column("rows in raw", justify="right")
        shop.add_column("watermark")
        for name, watermark in conn.execute(
            "select source_table, watermark from raw.extract_watermarks order by source_table"
        ):
            raw_table = sql.Identifier("raw", f"shop_{name.split('.')[-1]}")
            exists = _exists(conn, raw_table.as_string(conn))
            rows = conn.execute(sql.SQL("select count(*) from {}").format(raw_table)).fetchone()[0] if exists else 0
            shop.add_row(name, f"{rows:,}", str(watermark))
        console.print(shop)

        rules = conn.execute(QUARANTINE_RULES, window).fetchall()
        if rules:
            quarantine = Table(title="Quarantined records by rule (raw.quarantine)")
            for column in ("source/entity", "rule", "records", "first at file:line"):
                quarantine.add_column(column)
            for row in rules:
                quarantine.add_row(row[0], row[1], f"{row[2]:,}", row[3])
            console.print(quarantine)
        for file, error in conn.execute(REJECTED_FILES, window):
            console.print(f"[red]rejected[/] {file}: {error}")
    console.print("Details: `make psql`, then `select * from raw.load_audit` / `raw.quarantine`.")
