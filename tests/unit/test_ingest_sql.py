"""Snapshot tests of the validation SQL the file loader generates from the contract
(`ingest/validation_sql.py`): one file per entity under `snapshots/`, so a change to the
contract or the generator shows up in review as a diff of plain SQL.

    LW_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/test_ingest_sql.py   # rewrite them
"""

from __future__ import annotations

import os
import uuid
from datetime import date
from pathlib import Path

import pytest

from lifecycle_warehouse import contract
from lifecycle_warehouse.ingest import validation_sql
from lifecycle_warehouse.ingest.records import CSV, map_header

SNAPSHOTS = Path(__file__).with_name("snapshots")
BATCH = uuid.UUID("00000000-0000-0000-0000-000000000001")


def generated(entity: contract.FileEntity) -> str:
    header = None
    if entity.format == CSV:
        # the contract's columns in order, plus one extra column (schema drift)
        header = map_header(entity, [c.name for c in entity.columns] + ["partner_note"])
    statement = validation_sql.load_sql(
        entity, entity.format, header, batch_id=BATCH, dt=date(2024, 3, 1),
        file=f"{entity.source}/{entity.entity}/dt=2024-03-01/export.{entity.format}",
    )
    return statement.as_string(None) + "\n"


@pytest.mark.parametrize("entity", contract.FILE_ENTITIES, ids=lambda e: e.raw_table)
def test_generated_load_sql_matches_its_snapshot(entity):
    path = SNAPSHOTS / f"load_{entity.raw_table}.sql"
    text = generated(entity)
    if os.environ.get("LW_UPDATE_SNAPSHOTS"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path.name}: run with LW_UPDATE_SNAPSHOTS=1 and review it"
    assert text == path.read_text(encoding="utf-8"), (
        f"the SQL generated for {entity.raw_table} changed: review the diff, then rewrite the "
        "snapshot with LW_UPDATE_SNAPSHOTS=1"
    )


def test_snapshots_have_no_orphans():
    expected = {f"load_{e.raw_table}.sql" for e in contract.FILE_ENTITIES}
    assert {p.name for p in SNAPSHOTS.glob("load_*.sql")} == expected
