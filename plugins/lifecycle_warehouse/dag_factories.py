"""The file-ingestion DAG, built once for each landing-zone source (crm, web, marketing):
the three differ only by source, so they share this definition and the DAG files only
name the source and carry its documentation.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from lifecycle_warehouse import contract, ingest_tasks
from lifecycle_warehouse.orchestration import RAW_ASSETS, ingest_dag_kwargs, run_dates


def file_ingest_dag(source: str, doc_md: str):
    entities = [e.entity for e in contract.file_entities(source)]

    @dag(**ingest_dag_kwargs(source, doc_md))
    def file_ingest():
        @task
        def prepare_raw_schema() -> None:
            """Create the raw tables if they are missing (idempotent)."""
            ingest_tasks.prepare_raw_schema()

        @task
        def load_entity(entity: str, params=None, data_interval_start=None, data_interval_end=None):
            """Load every date folder of one entity in the run's dates (one transaction each)."""
            start, end = run_dates(params, data_interval_start, data_interval_end)
            return ingest_tasks.load_files(source, entity, start, end)

        @task(outlets=[RAW_ASSETS[source]])
        def summarize(results) -> dict:
            """Log the run's totals and rejected files; mark the source's raw data as updated."""
            # Indexing (not iterating) the mapped results: iteration probes one XCom past
            # the end, which Airflow logs as an error.
            return ingest_tasks.summarize_file_loads(source, [results[i] for i in range(len(results))])

        loads = load_entity.expand(entity=entities)
        prepare_raw_schema() >> loads
        summarize(loads)

    return file_ingest()
