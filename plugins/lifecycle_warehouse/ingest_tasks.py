"""Task bodies of the ingestion DAGs, kept out of the DAG files so that they can be tested
and so that the DAG files stay thin. Each function opens its own connections (never at
import time) and returns a JSON-serialisable summary for XCom and the run's summary.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import date

from lifecycle_warehouse import bootstrap, settings

log = logging.getLogger(__name__)


def _jsonable(result) -> dict:
    """A loader's result dataclass as plain JSON types (dates, uuids as strings) for XCom."""
    return json.loads(json.dumps(dataclasses.asdict(result), default=str))


def prepare_raw_schema() -> None:
    bootstrap.bootstrap(settings.warehouse_url())


def load_files(source: str, entity: str, start: date, end: date) -> list[dict]:
    from lifecycle_warehouse.ingest import files

    results = files.load_interval(
        settings.warehouse_url(), settings.landing_dir(), source, start, end, entities=[entity]
    )
    return [_jsonable(r) for r in results]


def extract_shop_table(table: str, end: date) -> dict:
    from lifecycle_warehouse.ingest import shop
    from lifecycle_warehouse.orchestration import interval_end_instant

    result = shop.extract_table(
        settings.shop_db_url(), settings.warehouse_url(), table, interval_end_instant(end)
    )
    return _jsonable(result)


def summarize_file_loads(source: str, results: list[list[dict]]) -> dict:
    """Totals of a file-ingestion run, logged as one table; rejected files are listed again
    so they stand out in the task log."""
    deliveries = [d for per_entity in results for d in per_entity]
    totals = {"deliveries": len(deliveries), "files": 0, "rejected_files": 0,
              "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0}
    for delivery in deliveries:
        for f in delivery["files"]:
            totals["files"] += 1
            totals["rows_read"] += f["rows_read"]
            totals["rows_loaded"] += f["rows_loaded"]
            totals["rows_quarantined"] += f["rows_quarantined"]
            if f["status"] == "rejected":
                totals["rejected_files"] += 1
                log.error("REJECTED %s: %s", f["file"], f["error"])
    log.info("%s ingestion totals: %s", source, totals)
    if totals["rows_quarantined"]:
        log.warning(
            "%s: %d rows quarantined; see raw.quarantine (file, line_number, rule, raw_record)",
            source, totals["rows_quarantined"],
        )
    return totals


def summarize_shop_extracts(results: list[dict]) -> dict:
    for r in results:
        log.info("shop %s: %s", r.get("table"), r)
    return {"tables": len(results), "rows_extracted": sum(r.get("rows_extracted", 0) for r in results)}
