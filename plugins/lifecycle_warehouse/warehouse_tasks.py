"""Task bodies of the warehouse DAG that are not dbt: the quality gates and the publish.
Heavy imports (Great Expectations ~3 s) happen inside the functions, never at parse time.
"""

from __future__ import annotations

import logging
from datetime import date

from lifecycle_warehouse import dbt_runner, settings

log = logging.getLogger(__name__)

# dbt's profile reads these; the warehouse DAG renders them at run time (never at parse
# time, so no URL or password ends up in the serialized DAG).
PROFILE_ENV_KEYS = ("LW_PGHOST", "LW_PGPORT", "LW_PGUSER", "LW_PGPASSWORD", "LW_PGDATABASE")


def warehouse_profile_env(key: str) -> str:
    """Jinja macro of the warehouse DAG: one LW_PG* value derived from WAREHOUSE_URL."""
    return dbt_runner.profile_env(settings.warehouse_url())[key]


def quality_gate(stage: str, run_id: str, as_of: date) -> dict:
    """Validate a layer (`raw` before dbt, `marts` after); fails the task when an
    error-level expectation fails, after logging every failing expectation.

    A failed verdict fails at once, without retries: the same data would fail the same
    way. Retries stay for what can pass on a second try (a database that was restarting).
    """
    from airflow.sdk.exceptions import AirflowFailException

    from lifecycle_warehouse.quality import QualityGateFailed, run_gate

    try:
        result = run_gate(settings.warehouse_url(), stage=stage, run_id=run_id, data_interval_end=as_of)
    except QualityGateFailed as failed:
        raise AirflowFailException(str(failed)) from failed
    return {"stage": stage, "success": result.success, "warnings": len(result.warnings),
            "docs": str(result.docs_path)}


def publish_marts(run_id: str) -> dict:
    """Replace `analytics` with the validated marts in one transaction."""
    from lifecycle_warehouse.publish import publish

    publication = publish(settings.warehouse_url(), from_schema="marts", to_schema="analytics", run_id=run_id)
    log.info("published version %s of %d relations to analytics", publication.version, len(publication.relations))
    return {"version": publication.version, "rows": dict(publication.relations)}
