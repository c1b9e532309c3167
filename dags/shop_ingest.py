"""
### Shop database ingestion

Extracts the shop's operational PostgreSQL tables (customers, orders, order_items,
refunds, subscriptions; `SHOP_DB_URL`) into `raw.shop_*`. The shop is only read.

- Incremental on `updated_at`: rows changed since the stored watermark minus an overlap
  window (late commits), up to the end of the run's data interval. The first run has no
  watermark and takes the shop's whole history.
- Upsert by primary key; a row never moves back in time. Watermarks live in
  `raw.extract_watermarks`, one per table, and only move forward.
- Rerunning an interval is harmless: it upserts the same rows again.
- Emits the `raw_shop` Asset that the warehouse DAG is scheduled on.
"""

from airflow.sdk import dag, task

from lifecycle_warehouse import contract, ingest_tasks
from lifecycle_warehouse.orchestration import RAW_ASSETS, asset_event_extra, ingest_dag_kwargs, run_dates

SOURCE = "shop"


@dag(**ingest_dag_kwargs(SOURCE, __doc__))
def shop_ingest():
    @task
    def prepare_raw_schema() -> None:
        """Create the raw tables if they are missing (idempotent)."""
        ingest_tasks.prepare_raw_schema()

    @task
    def extract_table(table: str, params=None, data_interval_start=None, data_interval_end=None):
        """Extract one shop table's rows changed up to the end of the run's dates."""
        _, end = run_dates(params, data_interval_start, data_interval_end)
        return ingest_tasks.extract_shop_table(table, end)

    @task(outlets=[RAW_ASSETS[SOURCE]])
    def summarize(results, params=None, data_interval_start=None, data_interval_end=None,
                  outlet_events=None) -> dict:
        """Log rows extracted per table; mark the raw shop data as updated for the run's
        dates (the warehouse run it triggers reads them)."""
        start, end = run_dates(params, data_interval_start, data_interval_end)
        outlet_events[RAW_ASSETS[SOURCE]].extra = asset_event_extra(start, end)
        return ingest_tasks.summarize_shop_extracts([results[i] for i in range(len(results))])

    extracts = extract_table.expand(table=[t.table for t in contract.SHOP_TABLES])
    prepare_raw_schema() >> extracts
    summarize(extracts)


shop_ingest()
