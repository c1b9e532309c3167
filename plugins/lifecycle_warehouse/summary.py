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
        if _exists(conn, "audit.gate_runs"):
            _print_gates(console, conn)
        if _exists(conn, "analytics.kpi_monthly"):
            _print_headline_kpis(console, conn, date_from, date_to)
        if _exists(conn, "analytics.clv_model_params") and _exists(conn, "analytics.customer_clv"):
            from lifecycle_warehouse.clv.report import print_published

            print_published(console, conn)
    console.print("Details: `make psql`, then `select * from raw.load_audit` / `raw.quarantine`.")


def _print_gates(console: Console, conn: psycopg.Connection) -> None:
    """The latest quality gate of each stage: passed or not, with its expectation counts."""
    for stage, success, expectations, errors, warnings, docs in conn.execute(
        """
        select distinct on (stage) stage, success, expectations, errors, warnings, docs_path
        from audit.gate_runs order by stage, finished_at desc
        """
    ):
        mark = "[green]✓ passed[/]" if success else "[red]✗ failed[/]"
        console.print(f"Quality gate {stage}: {mark} ({expectations} expectations, {errors} errors, "
                      f"{warnings} warnings){'  — Data Docs: ' + docs if docs else ''}")


# (column of analytics.kpi_monthly, label, format) — the KPIs a manager asks for first.
HEADLINE_KPIS = (
    ("revenue", "revenue", "money"),
    ("orders", "orders", "int"),
    ("aov", "average order value", "money"),
    ("new_customers", "new customers", "int"),
    ("active_customers", "active customers (month end)", "int"),
    ("repeat_purchase_rate", "repeat purchase rate", "pct"),
    ("churn_rate", "churn rate", "pct"),
    ("customer_retention_rate", "customer retention rate", "pct"),
    ("session_conversion_rate", "session conversion rate", "pct"),
    ("email_open_rate", "email open rate", "pct"),
    ("nps", "NPS", "num"),
    ("csat", "CSAT", "num"),
    ("mrr", "MRR (month end)", "money"),
)


def _format(value, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "pct":
        return f"{100 * value:.1f} %"
    if kind == "int":
        return f"{value:,.0f}"
    return f"{value:.1f}"


def month_heading(month: date, is_complete: bool | None) -> str:
    """A month's column heading: `2026-10`, or `2026-10 (partial)` for the month of the
    as-of date (kpi_monthly.is_complete false)."""
    return month.strftime("%Y-%m") + ("" if is_complete or is_complete is None else " (partial)")


def _print_headline_kpis(console: Console, conn: psycopg.Connection, date_from: date, date_to: date) -> None:
    """Headline KPIs of the window's months, and where people are in the lifecycle, read
    from `analytics` (what BI sees: only published, validated data)."""
    available = {r[0] for r in conn.execute(
        "select column_name from information_schema.columns "
        "where table_schema = 'analytics' and table_name = 'kpi_monthly'"
    )}
    kpis = [k for k in HEADLINE_KPIS if k[0] in available]
    # is_complete: false for the month of the build's as-of date (a warehouse built before
    # the column existed counts every month as complete)
    complete = sql.SQL("is_complete" if "is_complete" in available else "true")
    query = sql.SQL(
        "select month, {}, {} from analytics.kpi_monthly where month >= %s and month <= %s order by month"
    ).format(complete, sql.SQL(", ").join(sql.Identifier(k[0]) for k in kpis))
    rows = conn.execute(query, (date_from.replace(day=1), date_to)).fetchall()
    if not rows:
        return
    table = Table(title="Headline KPIs (analytics.kpi_monthly, reporting currency)")
    table.add_column("KPI")
    for row in rows:
        table.add_column(month_heading(row[0], row[1]), justify="right")
    for index, (_, label, kind) in enumerate(kpis, start=2):
        table.add_row(label, *(_format(row[index], kind) for row in rows))
    console.print(table)
    if any(not row[1] for row in rows):
        console.print("(partial): the month is not over at the as-of date of the last build; its flows "
                      "cover only part of it, so do not compare them with full months.")
    if _exists(conn, "analytics.dim_customers"):
        stages = conn.execute(
            "select lifecycle_stage, count(*) from analytics.dim_customers group by 1 order by 2 desc"
        ).fetchall()
        console.print("Lifecycle stages now: " + " · ".join(f"{stage} {count:,}" for stage, count in stages))
