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
    """Load one entity's date folders for the run's dates (and late or changed folders of
    the look-back window). A folder whose every file was rejected fails the task at once,
    without retries: the same files would be rejected again."""
    from airflow.sdk.exceptions import AirflowFailException

    from lifecycle_warehouse.ingest import files

    try:
        results = files.load_interval(
            settings.warehouse_url(), settings.landing_dir(), source, start, end, entities=[entity]
        )
    except files.DeliveryRejected as rejected:
        raise AirflowFailException(str(rejected)) from rejected
    return [_jsonable(r) for r in results]


def extract_shop_table(table: str, end: date) -> dict:
    """Extract one shop table up to the run's end. A table that does not match the contract
    fails the task at once, without retries (it would not match on a retry either); a shop
    that cannot be reached retries with backoff."""
    from airflow.sdk.exceptions import AirflowFailException

    from lifecycle_warehouse.ingest import shop
    from lifecycle_warehouse.orchestration import interval_end_instant

    try:
        result = shop.extract_table(
            settings.shop_db_url(), settings.warehouse_url(), table, interval_end_instant(end)
        )
    except shop.ShopSchemaError as mismatch:
        raise AirflowFailException(str(mismatch)) from mismatch
    return _jsonable(result)


def summarize_file_loads(source: str, results: list[list[dict]]) -> dict:
    """Totals of a file-ingestion run, logged as one table; rejected files are listed again
    so they stand out in the task log."""
    from lifecycle_warehouse.ingest.deliveries import IN_INTERVAL

    deliveries = [d for per_entity in results for d in per_entity]
    totals = {"deliveries": sum(1 for d in deliveries if d["batch_id"]), "files": 0,
              "rejected_files": 0, "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0,
              "not_loaded": 0}
    for delivery in deliveries:
        label = f"{delivery['source']}/{delivery['entity']} dt={delivery['dt']}"
        if delivery["note"]:
            totals["not_loaded"] += 1
            log.warning("NOT LOADED %s: %s", label, delivery["note"])
        elif delivery["reason"] != IN_INTERVAL:
            log.info("loaded %s: %s", label, delivery["reason"])
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
    """Totals of a shop extraction run; tables with rows that have no updated_at (which
    incremental extraction cannot follow) are named at warning level."""
    for r in results:
        log.info("shop %s: %s", r["table"], r)
        if r["rows_without_updated_at"]:
            log.warning("shop %s: %d rows have no updated_at: only the first extraction takes them, "
                        "later changes to them are not extracted", r["table"], r["rows_without_updated_at"])
    return {
        "tables": len(results),
        "rows_extracted": sum(r["rows_extracted"] for r in results),
        "rows_without_updated_at": sum(r["rows_without_updated_at"] for r in results),
    }
