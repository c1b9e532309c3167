"""Task bodies of the warehouse DAG that are not dbt: the build plan and log, the quality
gates and the publish. Heavy imports (Great Expectations ~3 s) happen inside the
functions, never at parse time.
"""

from __future__ import annotations

import logging
from datetime import date

import psycopg

from lifecycle_warehouse import dbt_runner, settings
from lifecycle_warehouse.bootstrap import ensure_raw_schema

log = logging.getLogger(__name__)

# dbt's profile reads these; the warehouse DAG renders them at run time (never at parse
# time, so no URL or password ends up in the serialized DAG).
PROFILE_ENV_KEYS = ("LW_PGHOST", "LW_PGPORT", "LW_PGUSER", "LW_PGPASSWORD", "LW_PGDATABASE")


def warehouse_profile_env(key: str) -> str:
    """Jinja macro of the warehouse DAG: one LW_PG* value derived from WAREHOUSE_URL."""
    return dbt_runner.profile_env(settings.warehouse_url())[key]


# The oldest date folder (re)delivered since the start of the last successful build.
# Shop extractions are not date folders (their rows carry updated_at), so they do not count.
_REDELIVERED_FROM_SQL = """
select min(dt)
from raw.load_audit
where
    source <> 'shop'
    and dt is not null
    and loaded_at > (select max(started_at) from raw.warehouse_builds where built_at is not null)
"""


def plan_build(url: str, run_id: str) -> date | None:
    """Log the start of this warehouse run and return the date to reprocess deliveries from
    (dbt var `recompute_from`): the oldest date folder loaded since the start of the last
    successful build, which that build may not have read. None when there is none, or no
    successful build is logged yet (the first build of a warehouse is a full one).

    Incremental models reprocess the late-data window (the last `late_data_lookback_days`
    date folders); a folder re-delivered or backfilled further back would otherwise be
    missed, and incremental runs would no longer equal a full refresh. A retry of the plan
    keeps the run's first start, so it plans at least the same window.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_raw_schema(conn)  # a warehouse upgraded in place may lack the log until its next load
        conn.execute(
            "insert into raw.warehouse_builds (run_id) values (%s) on conflict (run_id) do nothing", (run_id,)
        )
        recompute_from = conn.execute(_REDELIVERED_FROM_SQL).fetchone()[0]
    if recompute_from is not None:
        log.info("date folders from %s were delivered since the last successful build: "
                 "incremental models reprocess deliveries from that date", recompute_from)
    return recompute_from


def record_build(url: str, run_id: str) -> None:
    """Log that this run's dbt build succeeded: later runs plan from its start."""
    with psycopg.connect(url, autocommit=True) as conn:
        updated = conn.execute(
            "update raw.warehouse_builds set built_at = now() where run_id = %s", (run_id,)
        ).rowcount
    if updated != 1:
        raise RuntimeError(f"warehouse run {run_id} has no planned build in raw.warehouse_builds")


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
