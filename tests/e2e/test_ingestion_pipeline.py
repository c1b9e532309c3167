"""End to end, for real: simulate a few days of every source, run the four ingestion DAGs
with Airflow, and check what reached `raw` against the files and the shop database;
then rerun (nothing changes) and corrupt a delivery on purpose (quarantine, rejection)."""

from __future__ import annotations

import csv
import gzip
import io
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from lifecycle_warehouse import contract
from lifecycle_warehouse.ingest import deliveries

pytestmark = pytest.mark.e2e

from tests.e2e.scenario import PIPELINE_DAYS, PIPELINE_LAST, SPARE_DAY, START

DAYS = PIPELINE_DAYS
LAST = PIPELINE_LAST


def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def records_in_files(landing: Path, entity: contract.FileEntity) -> int:
    """Records delivered for an entity over the window, counted straight from the files."""
    total = 0
    for day in range(DAYS):
        folder = landing / entity.source / entity.entity / f"dt={START + timedelta(days=day)}"
        for path in deliveries.delivery_files(folder):
            with _open_text(path) as handle:
                if entity.format == "csv":
                    total += sum(1 for _ in csv.DictReader(handle))
                else:
                    total += sum(1 for line in handle if line.strip())
    return total


def table_fingerprint(conn: psycopg.Connection, table: str) -> tuple[int, str]:
    """Row count and a checksum of every business column and the file/line of each row
    (load metadata that changes on every load — batch id, load time — is left out)."""
    columns = [
        r[0] for r in conn.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'raw' and table_name = %s and column_name not in "
            "('_batch_id', '_loaded_at', '_extracted_at') order by ordinal_position", (table,),
        )
    ]
    row = sql.SQL("row({})::text").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
    query = sql.SQL("select count(*), coalesce(md5(string_agg({row}, '|' order by {row})), '') from {table}").format(
        row=row, table=sql.Identifier("raw", table)
    )
    return conn.execute(query).fetchone()


def fingerprints(url: str) -> dict[str, tuple[int, str]]:
    tables = [e.raw_table for e in contract.FILE_ENTITIES] + [t.raw_table for t in contract.SHOP_TABLES]
    with psycopg.connect(url) as conn:
        return {t: table_fingerprint(conn, t) for t in tables}


@pytest.fixture(scope="module")
def loaded(pipeline):
    return pipeline[1]


def test_every_file_record_reaches_raw_or_quarantine(instance, loaded):
    url = instance.url("warehouse")
    with psycopg.connect(url) as conn:
        for entity in contract.FILE_ENTITIES:
            delivered = records_in_files(instance.landing, entity)
            in_raw = conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier("raw", entity.raw_table))
            ).fetchone()[0]
            quarantined = conn.execute(
                "select count(*) from raw.quarantine where source = %s and entity = %s",
                (entity.source, entity.entity),
            ).fetchone()[0]
            assert in_raw + quarantined == delivered, entity.raw_table
            assert quarantined == 0, f"the simulator writes clean {entity.raw_table} data"
            if entity.entity in ("contacts", "events", "email_events", "ad_spend"):
                assert delivered > 0, f"the simulator delivers {entity.raw_table} every day"
        # load_audit: one row per file, counts reconcile. (A shop extraction's rows_loaded
        # counts the rows it inserted or changed: an extraction re-reads its overlap window.)
        bad = conn.execute(
            "select file from raw.load_audit where status = 'loaded' and ("
            "(source <> 'shop' and rows_read <> rows_loaded + rows_quarantined)"
            " or (source = 'shop' and rows_loaded > rows_read))"
        ).fetchall()
        assert bad == []
        files_on_disk = sum(
            len(deliveries.delivery_files(instance.landing / e.source / e.entity / f"dt={START + timedelta(days=day)}"))
            for e in contract.FILE_ENTITIES for day in range(DAYS)
        )
        audited = conn.execute(
            "select count(*) from raw.load_audit where source <> 'shop' and dt <= %s", (LAST,)
        ).fetchone()[0]
        assert audited == files_on_disk


def test_shop_history_extracted_up_to_interval_end(instance, loaded):
    end = LAST + timedelta(days=1)
    with psycopg.connect(instance.url("shop")) as shop, psycopg.connect(instance.url("warehouse")) as wh:
        for table in contract.SHOP_TABLES:
            expected = shop.execute(
                sql.SQL("select count(*) from {} where updated_at < %s").format(sql.Identifier("public", table.table)),
                (end,),
            ).fetchone()[0]
            got = wh.execute(sql.SQL("select count(*) from {}").format(sql.Identifier("raw", table.raw_table))).fetchone()[0]
            assert got == expected, table.table
        oldest = wh.execute("select min(ordered_at) from raw.shop_orders").fetchone()[0]
        assert oldest.date() < START - timedelta(days=365), "the first extraction takes the shop's whole history"
        # the shop's ids are uuids: raw keeps their text, every one of them
        shop_ids = {r[0] for r in shop.execute("select order_id::text from public.orders where updated_at < %s", (end,))}
        raw_ids = {r[0] for r in wh.execute("select order_id from raw.shop_orders")}
        assert raw_ids == shop_ids and all(uuid.UUID(i) for i in raw_ids)


def test_web_duplicates_and_late_events_kept_in_raw(instance, loaded):
    with psycopg.connect(instance.url("warehouse")) as conn:
        duplicates = conn.execute(
            "select count(*) - count(distinct event_id) from raw.web_events"
        ).fetchone()[0]
        late = conn.execute(
            "select count(*) from raw.web_events where occurred_at < _dt"
        ).fetchone()[0]
    assert duplicates > 0, "at-least-once deliveries are kept as delivered (staging deduplicates)"
    assert late > 0, "late events are loaded with their delivery date"


def test_rerun_changes_nothing(instance, loaded):
    before = fingerprints(instance.url("warehouse"))
    instance.lw("pipeline", "--from", str(START), "--to", str(LAST), "--ingest-only")
    assert fingerprints(instance.url("warehouse")) == before


def test_corrupted_delivery_is_quarantined_and_the_rest_loads(instance, loaded):
    # The spare day: loaded here only, so the marts other tests check are not affected.
    day = SPARE_DAY
    instance.lw("pipeline", "--from", str(day), "--to", str(day), "--ingest-only")
    folder = instance.landing / "crm" / "contacts" / f"dt={day}"
    path = sorted(p for p in folder.iterdir() if p.suffix == ".csv")[0]
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) >= 3, "the simulator writes a few contacts a day"
    header = next(csv.reader([lines[0]]))
    broken_line_number = 2  # the first data row (the header is line 1)
    fields = next(csv.reader([lines[1]]))
    fields[header.index("created_at")] = "yesterday-ish"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    lines[1] = out.getvalue()
    path.write_text("".join(lines), encoding="utf-8")
    # A second file in the same delivery lacks a required column: rejected whole.
    (folder / "zz_partner_export.csv").write_text("contact_id,created_at,updated_at\nX1,2026-09-02,2026-09-02\n")

    with psycopg.connect(instance.url("warehouse")) as conn:
        before = conn.execute("select count(*) from raw.crm_contacts where _dt = %s", (day,)).fetchone()[0]

    instance.lw("pipeline", "--from", str(day), "--to", str(day), "--ingest-only")

    relative = str(path.relative_to(instance.landing))
    with psycopg.connect(instance.url("warehouse")) as conn:
        after = conn.execute("select count(*) from raw.crm_contacts where _dt = %s", (day,)).fetchone()[0]
        assert after == before - 1
        quarantined = conn.execute(
            "select file, line_number, rule, raw_record from raw.quarantine "
            "where source = 'crm' and entity = 'contacts' and dt = %s", (day,),
        ).fetchall()
        assert [(q[0], q[1], q[2]) for q in quarantined] == [(relative, broken_line_number, "created_at: not a timestamp")]
        assert quarantined[0][3].rstrip("\r\n") == lines[1].rstrip("\n")
        status, error, loaded_rows = conn.execute(
            "select status, error, rows_loaded from raw.load_audit where file like '%%zz_partner_export.csv' "
            "order by loaded_at desc limit 1"
        ).fetchone()
        assert status == "rejected" and loaded_rows == 0
        assert "email" in error
        # The history of loads is kept.
        loads_of_file = conn.execute(
            "select count(*) from raw.load_audit where file = %s", (relative,)
        ).fetchone()[0]
        assert loads_of_file == 2  # the clean delivery, then the corrupted one


def test_a_run_whose_tasks_did_not_run_is_not_reported_as_a_success(instance, loaded):
    """Airflow marks a run whose logical date is before its DAG's start date successful,
    without running a task: `make pipeline` must say it failed, and why."""
    env = {**instance.env, "LW_START_DATE": "2099-01-01"}
    result = subprocess.run(
        [sys.executable, "-m", "lifecycle_warehouse.cli", "pipeline", "--from", str(START), "--to", str(START),
         "--dag", "marketing_ingest"],
        env=env, capture_output=True, text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "no task ran" in output and "LW_START_DATE" in output
    assert "pipeline finished" not in output
