"""Task bodies of the warehouse DAG that are not dbt: the build plan and log, the quality
gates and the publish. Heavy imports (Great Expectations ~3 s) happen inside the
functions, never at parse time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime

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


# The oldest date folder (re)delivered, or whose quarantine was replayed, since the start
# of the last successful build. Shop extractions are not date folders (their rows carry
# updated_at), so they do not count.
_REDELIVERED_FROM_SQL = """
select min(dt)
from raw.load_audit
where
    source <> 'shop'
    and dt is not null
    and greatest(loaded_at, replayed_at)
        > (select max(started_at) from raw.warehouse_builds where built_at is not null)
"""


# One build writes the warehouse at a time. Incremental models and their change logs assume
# it (a consumer deletes the changes logged for it after reading them), and so does the
# publish (the marts it copies are the ones the marts gate validated). Warehouse DAG runs
# are serialised by Airflow (max_active_runs=1); a run holds the warehouse from its plan to
# its end (a row of raw.warehouse_builds without ended_at). A manual `lw dbt build` holds
# this session-level advisory lock for as long as it runs (a run's plan waits for it): its
# connection ends with the process, so a killed build never leaves the lock behind.
_MANUAL_BUILD_LOCK = "hashtext('lifecycle_warehouse.manual_build')"


class BuildInProgress(RuntimeError):
    """Another build holds the warehouse."""


def _try_manual_build_lock(conn: psycopg.Connection) -> bool:
    return conn.execute(f"select pg_try_advisory_lock({_MANUAL_BUILD_LOCK})").fetchone()[0]


def _manual_build_holder(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "select activity.application_name, activity.backend_start"
        " from pg_locks as locks inner join pg_stat_activity as activity using (pid)"
        " where locks.locktype = 'advisory' and locks.granted"
        " and locks.database = (select oid from pg_database where datname = current_database())"
        f" and locks.objid = ({_MANUAL_BUILD_LOCK})::oid"
        " limit 1"
    ).fetchone()
    return f"{row[0] or 'a manual build'}, since {row[1]:%Y-%m-%d %H:%M:%S %Z}" if row else "a manual build"


def plan_build(url: str, run_id: str, wait_seconds: float | None = None) -> date | None:
    """Start this warehouse run: take the warehouse and return the date to reprocess
    deliveries from (dbt var `recompute_from`): the oldest date folder loaded since the
    start of the last successful build, which that build may not have read. None when there
    is none, or no successful build is logged yet (the first build of a warehouse is a full
    one).

    Incremental models reprocess the late-data window (the last `late_data_lookback_days`
    date folders); a folder re-delivered or backfilled further back would otherwise be
    missed, and incremental runs would no longer equal a full refresh. A retry of the plan
    keeps the run's first start, so it plans at least the same window.

    While a manual build runs, waits for it to end, up to `wait_seconds` (default
    settings.manual_build_wait_seconds()), then raises BuildInProgress. An earlier run
    that never ended (interrupted before its end_build) is ended here: runs are
    serialised, so it is not running any more.
    """
    wait_seconds = settings.manual_build_wait_seconds() if wait_seconds is None else wait_seconds
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_raw_schema(conn)  # a warehouse upgraded in place may lack the log until its next load
        if not _try_manual_build_lock(conn):
            holder = _manual_build_holder(conn)
            log.warning("a manual dbt build is running (%s): waiting up to %.0f s for it to end",
                        holder, wait_seconds)
            try:
                conn.execute(f"set lock_timeout = {max(int(wait_seconds * 1000), 1)}")
                conn.execute(f"select pg_advisory_lock({_MANUAL_BUILD_LOCK})")
            except psycopg.errors.LockNotAvailable:
                raise BuildInProgress(
                    f"warehouse run {run_id} cannot start: a manual dbt build ({holder}) still runs "
                    f"after {wait_seconds:.0f} s (LW_MANUAL_BUILD_WAIT_SECONDS)"
                ) from None
            finally:
                conn.execute("reset lock_timeout")
        try:
            # inserted under the lock: a manual build that takes it next sees this run
            conn.execute(
                "insert into raw.warehouse_builds (run_id) values (%s)"
                " on conflict (run_id) do update set ended_at = null",
                (run_id,),
            )
        finally:
            conn.execute(f"select pg_advisory_unlock({_MANUAL_BUILD_LOCK})")
        for earlier_run, started_at in conn.execute(
            "update raw.warehouse_builds set ended_at = now()"
            " where ended_at is null and run_id <> %s returning run_id, started_at",
            (run_id,),
        ).fetchall():
            log.warning("warehouse run %s (started %s) never ended, it was interrupted: ended now",
                        earlier_run, started_at)
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


def end_build(url: str, run_id: str) -> None:
    """Log that this warehouse run ended, whether it succeeded or not: it no longer holds
    the warehouse."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "update raw.warehouse_builds set ended_at = now() where run_id = %s and ended_at is null",
            (run_id,),
        )


_RUNNING_BUILDS_SQL = (
    "select run_id, started_at from raw.warehouse_builds where ended_at is null order by started_at"
)


def running_builds(url: str) -> list[tuple[str, datetime]]:
    """(run_id, started_at) of the warehouse runs that have not ended, oldest first."""
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_raw_schema(conn)
        return conn.execute(_RUNNING_BUILDS_SQL).fetchall()


@contextmanager
def manual_build(url: str, description: str) -> Iterator[date | None]:
    """Hold the warehouse for a build started by hand (`lw dbt build`) and give its plan:
    what plan_build would return, without logging a run (the next run plans the same).
    Raises BuildInProgress when a warehouse run or another manual build holds the
    warehouse; while the body runs, a warehouse run's plan_build waits for it to end."""
    with psycopg.connect(
        url, autocommit=True, application_name=f"{description} (pid {os.getpid()})"[:63]
    ) as conn:
        ensure_raw_schema(conn)
        if not _try_manual_build_lock(conn):
            raise BuildInProgress(f"another manual build is running: {_manual_build_holder(conn)}")
        running = conn.execute(_RUNNING_BUILDS_SQL).fetchall()
        if running:
            run_id, started_at = running[-1]
            raise BuildInProgress(
                f"warehouse run {run_id} (started {started_at:%Y-%m-%d %H:%M:%S %Z}) holds the"
                " warehouse until its last task; wait for it to end. If it is not running any more"
                f" (interrupted before its end_build task), `lw builds --end {run_id}` ends it"
            )
        yield conn.execute(_REDELIVERED_FROM_SQL).fetchone()[0]
    # closing the connection released the lock


def quality_gate(stage: str, run_id: str, start: date, as_of: date) -> dict:
    """Validate a layer (`raw` before dbt, `marts` after) for a run covering [start, as_of);
    fails the task when an error-level expectation fails, after logging every failing
    expectation.

    A failed verdict fails at once, without retries: the same data would fail the same
    way. Retries stay for what can pass on a second try (a database that was restarting).
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
    """Replace `analytics` with the validated marts in one transaction."""
    from lifecycle_warehouse.publish import publish

    publication = publish(settings.warehouse_url(), from_schema="marts", to_schema="analytics", run_id=run_id)
    log.info("published version %s of %d relations to analytics", publication.version, len(publication.relations))
    return {"version": publication.version, "rows": dict(publication.relations)}
