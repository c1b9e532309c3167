"""Builds on a real PostgreSQL: the plan (which date folder makes the incremental models
look further back than their late-data window; the as-of date) and the guard (one build
writes the warehouse at a time), for warehouse DAG runs (warehouse_tasks.plan_build /
record_build / end_build) and for dbt run by hand (the dbt project's hooks,
macros/warehouse_builds.sql: raw.take_warehouse). That incremental builds planned this
way equal a full refresh is tested in test_dbt_incremental.py."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from datetime import date

import psycopg
import pytest

from lifecycle_warehouse import contract, warehouse_tasks
from lifecycle_warehouse.bootstrap import bootstrap
from lifecycle_warehouse.ingest import files


def _load(url: str, source: str, dt: str | None, status: str = "loaded") -> None:
    """A row of raw.load_audit, as a loader writes it (loaded_at: now)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into raw.load_audit (batch_id, source, entity, dt, file, status)"
            " values (%s, %s, 'events', %s, %s, %s)",
            (uuid.uuid4(), source, dt, f"{source}/events/dt={dt}/part.jsonl", status),
        )


def _started_at(url: str, run_id: str):
    with psycopg.connect(url) as conn:
        return conn.execute("select started_at from raw.warehouse_builds where run_id = %s", (run_id,)).fetchone()[0]


@pytest.fixture
def warehouse(warehouse_url) -> str:
    bootstrap(warehouse_url)
    return warehouse_url


def test_nothing_to_reprocess_before_the_first_successful_build(warehouse):
    _load(warehouse, "web", "2026-09-01")

    assert warehouse_tasks.plan_build(warehouse, "run 1").recompute_from is None  # the first build is a full one
    _load(warehouse, "web", "2026-08-01")
    assert warehouse_tasks.plan_build(warehouse, "run 2").recompute_from is None  # run 1 never succeeded


def test_the_oldest_folder_loaded_since_the_last_successful_build_is_reprocessed(warehouse):
    _load(warehouse, "web", "2026-08-01")  # read by run 1
    warehouse_tasks.plan_build(warehouse, "run 1")
    warehouse_tasks.record_build(warehouse, "run 1")

    _load(warehouse, "web", "2026-09-02")
    _load(warehouse, "crm", "2026-08-20", status="rejected")  # a rejected re-delivery may have replaced rows too
    _load(warehouse, "shop", "2026-07-01")  # shop extractions are not date folders
    _load(warehouse, "marketing", None)

    assert warehouse_tasks.plan_build(warehouse, "run 2").recompute_from == date(2026, 8, 20)


def test_a_failed_build_leaves_its_folders_to_the_next_run(warehouse):
    warehouse_tasks.plan_build(warehouse, "run 1")
    warehouse_tasks.record_build(warehouse, "run 1")
    _load(warehouse, "web", "2026-08-15")

    assert warehouse_tasks.plan_build(warehouse, "run 2").recompute_from == date(2026, 8, 15)  # run 2 fails: not recorded
    assert warehouse_tasks.plan_build(warehouse, "run 3").recompute_from == date(2026, 8, 15)
    warehouse_tasks.record_build(warehouse, "run 3")
    assert warehouse_tasks.plan_build(warehouse, "run 4").recompute_from is None


def test_a_retried_plan_keeps_the_runs_first_start(warehouse):
    warehouse_tasks.plan_build(warehouse, "run 1")
    warehouse_tasks.record_build(warehouse, "run 1")
    _load(warehouse, "web", "2026-08-15")
    assert warehouse_tasks.plan_build(warehouse, "run 2").recompute_from == date(2026, 8, 15)
    first_start = _started_at(warehouse, "run 2")

    assert warehouse_tasks.plan_build(warehouse, "run 2").recompute_from == date(2026, 8, 15)  # a retry of the plan task
    assert _started_at(warehouse, "run 2") == first_start
    warehouse_tasks.record_build(warehouse, "run 2")
    _load(warehouse, "web", "2026-08-16")
    # a folder loaded after run 2 started is planned by run 3, whatever run 2 read of it
    assert warehouse_tasks.plan_build(warehouse, "run 3").recompute_from == date(2026, 8, 16)


def test_a_load_that_began_before_the_last_build_and_committed_after_it_is_planned(warehouse, tmp_path):
    """A folder load is one transaction: if it began before a build started and committed
    while the build ran, that build may not have read it. Its audit rows carry the time the
    load ended, so the next plan still finds it."""
    folder = tmp_path / "web" / "events" / "dt=2026-08-10"
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text(
        '{"event_id": "e1", "event_name": "page_view", "occurred_at": "2026-08-10T10:00:00Z",'
        ' "anonymous_id": "a1", "session_id": "s1"}\n'
    )
    with psycopg.connect(warehouse) as loading:  # its transaction begins with its first statement
        loading.execute("select 1")
        warehouse_tasks.plan_build(warehouse, "run 1")
        warehouse_tasks.record_build(warehouse, "run 1")
        files.load_delivery(loading, tmp_path, contract.file_entity("web", "events"), date(2026, 8, 10))
        loading.commit()

    assert warehouse_tasks.plan_build(warehouse, "run 2").recompute_from == date(2026, 8, 10)


def test_the_plan_creates_the_log_in_a_warehouse_upgraded_in_place(warehouse_url):
    # no bootstrap: the raw schema (and its log of builds) comes with the first plan
    assert warehouse_tasks.plan_build(warehouse_url, "run 1").recompute_from is None
    warehouse_tasks.record_build(warehouse_url, "run 1")


def test_recording_a_build_that_was_not_planned_fails(warehouse):
    with pytest.raises(RuntimeError, match="no planned build"):
        warehouse_tasks.record_build(warehouse, "never planned")


def test_the_as_of_date_is_the_runs_last_date_else_the_latest_folder_delivered(warehouse):
    _load(warehouse, "web", "2026-09-03")
    _load(warehouse, "crm", "2026-09-05", status="rejected")  # not a delivery of that date
    assert warehouse_tasks.plan_build(warehouse, "run 1").as_of_date == date(2026, 9, 3)
    assert warehouse_tasks.plan_build(warehouse, "run 2", as_of=date(2026, 9, 7)).as_of_date == date(2026, 9, 7)


# One build writes the warehouse at a time: a warehouse run from its plan to its end, or a
# dbt command that writes, from its on-run-start hook to its on-run-end hook
# (raw.take_warehouse, called by macros/warehouse_builds.sql; simulated here on a
# connection of the test, and run for real with dbt below).


def _dbt_takes(conn: psycopg.Connection, build_id: str = "dbt:test") -> None:
    """What the dbt project's on-run-start hook does, on this connection."""
    conn.execute("select raw.take_warehouse(%s, 'dbt', null)", (build_id,))


def _holders(url: str) -> list[str]:
    return [run_id for run_id, _, _ in warehouse_tasks.running_builds(url)]


def test_a_dbt_build_does_not_start_while_a_warehouse_run_holds_the_warehouse(warehouse):
    warehouse_tasks.plan_build(warehouse, "run 1")
    with psycopg.connect(warehouse, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException,
                           match=r"being built by warehouse run run 1 .*lw builds --end run 1"):
            _dbt_takes(conn)
        warehouse_tasks.record_build(warehouse, "run 1")  # its dbt build succeeded, the gates and publish follow
        with pytest.raises(psycopg.errors.RaiseException):
            _dbt_takes(conn)
        warehouse_tasks.end_build(warehouse, "run 1")
        _dbt_takes(conn)
    assert _holders(warehouse) == ["dbt:test"]


def test_a_warehouse_run_waits_for_a_dbt_build_to_end(warehouse):
    with psycopg.connect(warehouse, autocommit=True) as dbt_build:
        _dbt_takes(dbt_build)
        with pytest.raises(warehouse_tasks.BuildInProgress,
                           match=r"a dbt build \(dbt:test, since .*\) still runs after 0 s"):
            warehouse_tasks.plan_build(warehouse, "run 1", wait_seconds=0.2)
        with psycopg.connect(warehouse, autocommit=True) as other, pytest.raises(
                psycopg.errors.RaiseException, match="being built by dbt build dbt:test"):
            _dbt_takes(other, "dbt:other")
        assert _holders(warehouse) == ["dbt:test"], "a plan that gave up took nothing"

        # a plan that starts while the dbt build runs proceeds as soon as it ends
        threading.Timer(1.0, lambda: warehouse_tasks.end_build(warehouse, "dbt:test")).start()
        started = time.monotonic()
        assert warehouse_tasks.plan_build(warehouse, "run 1", wait_seconds=60).recompute_from is None
        assert 0.8 < time.monotonic() - started < 30
    assert _holders(warehouse) == ["run 1"]


def test_a_killed_dbt_build_holds_the_warehouse_no_longer(warehouse):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, psycopg\n"
         "conn = psycopg.connect(sys.argv[1], autocommit=True)\n"
         "conn.execute(\"select raw.take_warehouse('dbt:killed', 'dbt', null)\")\n"
         "print('holding', flush=True)\n"
         "time.sleep(600)\n",
         warehouse],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(warehouse_tasks.BuildInProgress):
            warehouse_tasks.plan_build(warehouse, "run 1", wait_seconds=0.2)
    finally:
        holder.kill()  # no cleanup code runs: its on-run-end hook never comes
        holder.wait()
    # between two models a dbt build has no connection open: its last heartbeat keeps it
    # alive for two minutes, after which it has ended
    with psycopg.connect(warehouse, autocommit=True) as conn:
        for _ in range(100):  # the server notices the closed connection
            if not conn.execute("select raw.build_is_alive(connections, now() - interval '1 hour')"
                                " from raw.warehouse_builds where run_id = 'dbt:killed'").fetchone()[0]:
                break
            time.sleep(0.1)
        assert _holders(warehouse) == ["dbt:killed"]
        conn.execute("update raw.warehouse_builds set heartbeat_at = now() - interval '3 minutes'"
                     " where run_id = 'dbt:killed'")
    assert _holders(warehouse) == []
    warehouse_tasks.plan_build(warehouse, "run 1", wait_seconds=10)
    assert _holders(warehouse) == ["run 1"]


def test_a_run_interrupted_before_its_end_is_ended_by_the_next_run(warehouse):
    warehouse_tasks.plan_build(warehouse, "run 1")  # killed: its end_build never ran
    warehouse_tasks.plan_build(warehouse, "run 2")  # runs are serialised: run 1 is not running
    assert _holders(warehouse) == ["run 2"]

    warehouse_tasks.end_build(warehouse, "run 2")
    warehouse_tasks.plan_build(warehouse, "run 2")  # the run cleared and rerun: it holds the warehouse again
    assert _holders(warehouse) == ["run 2"]


def test_a_log_created_before_runs_ended_gets_the_columns_and_its_runs_end(warehouse_url):
    bootstrap(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for column in ("ended_at", "kind", "recompute_from", "as_of_date", "heartbeat_at", "connections"):
            conn.execute(f"alter table raw.warehouse_builds drop column {column}")  # as released before
        conn.execute("drop function raw.take_warehouse")
        conn.execute("insert into raw.warehouse_builds (run_id, built_at) values ('old 1', now()), ('old 2', null)")

    # runs of the older release ended (it had no end): they must not hold the warehouse
    assert warehouse_tasks.running_builds(warehouse_url) == []
    warehouse_tasks.plan_build(warehouse_url, "run 1")
    assert _holders(warehouse_url) == ["run 1"]


# ... and with dbt itself: plain `dbt`, no `lw`, no DAG


def _plain_dbt(url: str, tmp_path, *args: str, run_id: str | None = None) -> subprocess.CompletedProcess:
    from lifecycle_warehouse import dbt_runner, dbt_step

    env = dbt_runner.dbt_env(url)
    env.update(DBT_TARGET_PATH=str(tmp_path / "target"), DBT_LOG_PATH=str(tmp_path / "logs"))
    if run_id:
        env[dbt_step.RUN_ID_ENV] = run_id
    return subprocess.run([dbt_runner.dbt_executable(), *args], env=env, cwd=dbt_runner.DBT_PROJECT_DIR,
                          capture_output=True, text=True)


def test_plain_dbt_takes_the_warehouse_and_refuses_while_a_run_holds_it(warehouse, tmp_path):
    warehouse_tasks.plan_build(warehouse, "scheduled__2026-09-02")
    refused = _plain_dbt(warehouse, tmp_path, "run", "--select", "stg_crm__contacts")
    assert refused.returncode != 0
    assert "being built by warehouse run scheduled__2026-09-02" in refused.stdout
    assert "lw builds --end scheduled__2026-09-02" in refused.stdout
    assert "SKIP" in refused.stdout, "nothing was built"

    # as one of that run's own commands, it builds
    own = _plain_dbt(warehouse, tmp_path, "run", "--select", "stg_crm__contacts",
                     run_id="scheduled__2026-09-02")
    assert own.returncode == 0, own.stdout[-3000:]

    warehouse_tasks.end_build(warehouse, "scheduled__2026-09-02")
    _load(warehouse, "web", "2026-08-15")
    built = _plain_dbt(warehouse, tmp_path, "run", "--select", "stg_crm__contacts")
    assert built.returncode == 0, built.stdout[-3000:]
    # the run id is read when executing, never when parsing: a command for another run (or
    # for none) keeps dbt's partial parse (a run id in --vars made every run parse it all)
    dbt_log = (tmp_path / "logs" / "dbt.log").read_text()
    assert dbt_log.count("Unable to do partial parsing") == 1, "only the first command (no saved manifest)"
    assert dbt_log.count("Nothing changed, skipping partial parsing") == 2, "own and built"
    with psycopg.connect(warehouse) as conn:
        kind, ended, built_at, recompute_from, connections = conn.execute(
            "select kind, ended_at is not null, built_at, recompute_from, cardinality(connections)"
            " from raw.warehouse_builds where run_id like 'dbt:%'").fetchone()
    assert (kind, ended, built_at) == ("dbt", True, None), "a partial build ends, and is not a build of everything"
    assert recompute_from is None  # no build of everything logged yet
    assert connections >= 2, "the hook's connection and the model's (heartbeat)"
    assert _holders(warehouse) == []

    # commands that only read take nothing
    assert _plain_dbt(warehouse, tmp_path, "ls", "--select", "stg_crm__contacts").returncode == 0
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select count(*) from raw.warehouse_builds where kind = 'dbt'").fetchone()[0] == 1
