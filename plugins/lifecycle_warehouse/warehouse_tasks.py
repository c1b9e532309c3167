"""Task bodies of the warehouse DAG that are not dbt: the build plan and log, the CLV fit,
the quality gates and the publish. Heavy imports (Great Expectations ~3 s) happen inside the
functions, never at parse time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime

import psycopg

from lifecycle_warehouse import connections, dbt_runner, settings
from lifecycle_warehouse.bootstrap import ensure_raw_schema

log = logging.getLogger(__name__)

# dbt's profile reads these; the warehouse DAG renders them at run time (never at parse
# time, so no URL or password ends up in the serialized DAG).
PROFILE_ENV_KEYS = ("LW_PGHOST", "LW_PGPORT", "LW_PGUSER", "LW_PGPASSWORD", "LW_PGDATABASE", "PGPASSFILE",
                    "PGOPTIONS")


def warehouse_profile_env(key: str) -> str:
    """Jinja macro of the warehouse DAG: one LW_PG* value derived from WAREHOUSE_URL."""
    return dbt_runner.profile_env(settings.warehouse_url())[key]


class BuildInProgress(RuntimeError):
    """Another build holds the warehouse."""


@dataclass(frozen=True)
class BuildPlan:
    """What a build reprocesses: deliveries from `recompute_from` on (None: the usual
    late-data window), and the KPI marts up to `as_of_date`."""

    recompute_from: date | None
    as_of_date: date | None


def plan_build(url: str, run_id: str, as_of: date | None = None, wait_seconds: float | None = None) -> BuildPlan:
    """Start this warehouse run: take the warehouse (raw.take_warehouse) and return its plan.

    recompute_from is the oldest date folder loaded since the start of the last successful
    build, which that build may not have read: incremental models reprocess the late-data
    window (the last `late_data_lookback_days` date folders), and a folder re-delivered or
    backfilled further back would otherwise be missed. None when there is none, or no
    successful build is logged yet (the first build of a warehouse is a full one). A retry
    of the plan keeps the run's first start, so it plans at least the same window.
    as_of_date is `as_of` (the run's last date), else the latest date folder delivered.

    While a dbt build started by hand runs, waits for it to end, up to `wait_seconds`
    (default settings.manual_build_wait_seconds()), then raises BuildInProgress. An earlier
    run that never ended (interrupted before its end_build) is ended here: runs are
    serialised, so it is not running any more. The dbt models of the run read this plan
    (macros/warehouse_builds.sql: LW_WAREHOUSE_RUN_ID names the run).
    """
    wait_seconds = settings.manual_build_wait_seconds() if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait_seconds
    with connections.connect(url, autocommit=True) as conn:
        ensure_raw_schema(conn)  # a warehouse upgraded in place may lack the log until its next load
        waited = False
        while conn.execute("select raw.take_warehouse(%s, 'dag', %s)", (run_id, as_of)).fetchone()[0] is None:
            holder = _holder(conn)
            if time.monotonic() >= deadline:
                raise BuildInProgress(
                    f"warehouse run {run_id} cannot start: a dbt build ({holder}) still runs after "
                    f"{wait_seconds:.0f} s (LW_MANUAL_BUILD_WAIT_SECONDS)"
                )
            if not waited:
                log.warning("a dbt build is running (%s): waiting up to %.0f s for it to end", holder, wait_seconds)
                waited = True
            time.sleep(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
        recompute_from, as_of_date = conn.execute(
            "select recompute_from, as_of_date from raw.warehouse_builds where run_id = %s", (run_id,)
        ).fetchone()
    if recompute_from is not None:
        log.info("date folders from %s were delivered since the last successful build: "
                 "incremental models reprocess deliveries from that date", recompute_from)
    log.info("the KPI marts run up to %s", as_of_date)
    return BuildPlan(recompute_from, as_of_date)


_POLL_SECONDS = 2.0


def _holder(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "select run_id, started_at from raw.warehouse_builds where ended_at is null and kind = 'dbt'"
        " order by started_at limit 1"
    ).fetchone()
    return f"{row[0]}, since {row[1]:%Y-%m-%d %H:%M:%S %Z}" if row else "a dbt build"


def record_build(url: str, run_id: str) -> None:
    """Log that this run's dbt build succeeded: later runs plan from its start."""
    with connections.connect(url, autocommit=True) as conn:
        updated = conn.execute(
            "update raw.warehouse_builds set built_at = now() where run_id = %s", (run_id,)
        ).rowcount
    if updated != 1:
        raise RuntimeError(f"warehouse run {run_id} has no planned build in raw.warehouse_builds")


def end_build(url: str, run_id: str) -> None:
    """Log that this build ended, whether it succeeded or not: it no longer holds the
    warehouse."""
    with connections.connect(url, autocommit=True) as conn:
        conn.execute("select raw.end_build(%s, false)", (run_id,))


def running_builds(url: str) -> list[tuple[str, str, datetime]]:
    """(run_id, kind, started_at) of the builds that hold the warehouse, oldest first (a
    dbt build whose process died no longer does)."""
    with connections.connect(url, autocommit=True) as conn:
        ensure_raw_schema(conn)
        return conn.execute(
            "select run_id, kind, started_at from raw.warehouse_builds"
            " where ended_at is null"
            " and (kind <> 'dbt' or raw.build_is_alive(connections, heartbeat_at))"
            " order by started_at"
        ).fetchall()


def fit_clv(as_of: date) -> dict:
    """Fit the CLV models on the valid orders up to `as_of` and write `marts.customer_clv`
    and `marts.clv_model_params` (lifecycle_warehouse.clv). A fit that does not converge is
    written with its reason and fails the marts gate, not this task."""
    from lifecycle_warehouse.clv.warehouse import write_marts

    fitted = write_marts(settings.warehouse_url(), as_of)
    return {"as_of": str(as_of), "n_customers": fitted.n_customers, "converged": fitted.converged,
            "problem": fitted.problem}


def quality_gate(stage: str, run_id: str, start: date, as_of: date) -> dict:
    """Validate a layer (`raw` before dbt, `marts` after) for a run covering [start, as_of);
    fails the task when an error-level expectation fails, after logging every failing
    expectation.

    A failed verdict fails at once, without retries: the same data would fail the same
    way. Retries stay for what can pass on a second try (a database that was restarting).
    A failing gate builds its Data Docs before it fails; a passing one leaves them to
    `publish_marts`, after BI has the new version (rendering costs more than the checks).
    """
    from airflow.sdk.exceptions import AirflowFailException

    from lifecycle_warehouse.quality import QualityGateFailed, run_gate

    try:
        result = run_gate(settings.warehouse_url(), stage=stage, run_id=run_id, data_interval_end=as_of,
                          data_interval_start=start)
    except QualityGateFailed as failed:
        raise AirflowFailException(str(failed)) from failed
    return {"stage": stage, "success": result.success, "warnings": len(result.warnings),
            "docs": str(result.docs_path)}


def publish_marts(run_id: str) -> dict:
    """Replace `analytics` with the validated marts in one transaction; then build the Data
    Docs of the run's gates (both stages passed), which the gates left for after publishing."""
    from lifecycle_warehouse.publish import publish

    publication = publish(settings.warehouse_url(), from_schema="marts", to_schema="analytics", run_id=run_id)
    log.info("published version %s of %d relations to analytics", publication.version, len(publication.relations))
    docs = _build_gate_docs(run_id)
    return {"version": publication.version, "rows": dict(publication.relations),
            "replaced_keys": dict(publication.replaced_keys), "docs": docs}


def _build_gate_docs(run_id: str) -> str | None:
    """The run's Data Docs; a failure to render them does not undo a publish (logged)."""
    from lifecycle_warehouse.quality.gate import build_docs

    started = time.monotonic()
    try:
        index = build_docs(run_id)
    except Exception:  # the report is a courtesy: the verdicts are in audit.validation_results
        log.exception("could not build the Data Docs of run %s", run_id)
        return None
    log.info("Data Docs of run %s built in %.1f s: %s", run_id, time.monotonic() - started, index)
    return str(index)
