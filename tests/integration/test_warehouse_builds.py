"""The warehouse DAG's build plan (warehouse_tasks.plan_build / record_build) on a real
PostgreSQL: which date folder makes the incremental models look further back than their
late-data window. The dbt side (the var moving every window) is tested in
test_dbt_incremental.py."""

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

    assert warehouse_tasks.plan_build(warehouse, "run 1") is None  # the first build is a full one
    _load(warehouse, "web", "2026-08-01")
    assert warehouse_tasks.plan_build(warehouse, "run 2") is None  # run 1 never succeeded


def test_the_oldest_folder_loaded_since_the_last_successful_build_is_reprocessed(warehouse):
    _load(warehouse, "web", "2026-08-01")  # read by run 1
    warehouse_tasks.plan_build(warehouse, "run 1")
    warehouse_tasks.record_build(warehouse, "run 1")

    _load(warehouse, "web", "2026-09-02")
    _load(warehouse, "crm", "2026-08-20", status="rejected")  # a rejected re-delivery may have replaced rows too
    _load(warehouse, "shop", "2026-07-01")  # shop extractions are not date folders
    _load(warehouse, "marketing", None)

    assert warehouse_tasks.plan_build(warehouse, "run 2") == date(2026, 8, 20)


def test_a_failed_build_leaves_its_folders_to_the_next_run(warehouse):
    warehouse_tasks.plan_build(warehouse, "run 1")
    warehouse_tasks.record_build(warehouse, "run 1")
    _load(warehouse, "web", "2026-08-15")

    assert warehouse_tasks.plan_build(warehouse, "run 2") == date(2026, 8, 15)  # run 2 fails: not recorded
    assert warehouse_tasks.plan_build(warehouse, "run 3") == date(2026, 8, 15)
    warehouse_tasks.record_build(warehouse, "run 3")
    assert warehouse_tasks.plan_build(warehouse, "run 4") is None


def test_a_retried_plan_keeps_the_runs_first_start(warehouse):
    warehouse_tasks.plan_build(warehouse, "run 1")
    warehouse_tasks.record_build(warehouse, "run 1")
    _load(warehouse, "web", "2026-08-15")
    assert warehouse_tasks.plan_build(warehouse, "run 2") == date(2026, 8, 15)
    first_start = _started_at(warehouse, "run 2")

    assert warehouse_tasks.plan_build(warehouse, "run 2") == date(2026, 8, 15)  # a retry of the plan task
    assert _started_at(warehouse, "run 2") == first_start
    warehouse_tasks.record_build(warehouse, "run 2")
    _load(warehouse, "web", "2026-08-16")
    # a folder loaded after run 2 started is planned by run 3, whatever run 2 read of it
    assert warehouse_tasks.plan_build(warehouse, "run 3") == date(2026, 8, 16)


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

    assert warehouse_tasks.plan_build(warehouse, "run 2") == date(2026, 8, 10)


def test_the_plan_creates_the_log_in_a_warehouse_upgraded_in_place(warehouse_url):
    # no bootstrap: the raw schema (and its log of builds) comes with the first plan
    assert warehouse_tasks.plan_build(warehouse_url, "run 1") is None
    warehouse_tasks.record_build(warehouse_url, "run 1")


def test_recording_a_build_that_was_not_planned_fails(warehouse):
    with pytest.raises(RuntimeError, match="no planned build"):
        warehouse_tasks.record_build(warehouse, "never planned")


# One build writes the warehouse at a time: a warehouse run from its plan to its end, or a
# manual `lw dbt build` (warehouse_tasks.manual_build).


def test_a_manual_build_does_not_start_while_a_warehouse_run_holds_the_warehouse(warehouse):
    warehouse_tasks.plan_build(warehouse, "run 1")
    with pytest.raises(warehouse_tasks.BuildInProgress, match="warehouse run run 1 .* holds the warehouse until its last task"):
        with warehouse_tasks.manual_build(warehouse, "lw dbt build"):
            pytest.fail("the manual build ran while run 1 held the warehouse")

    warehouse_tasks.record_build(warehouse, "run 1")  # its dbt build succeeded, the gates and publish follow
    with pytest.raises(warehouse_tasks.BuildInProgress):
        with warehouse_tasks.manual_build(warehouse, "lw dbt build"):
            pass

    warehouse_tasks.end_build(warehouse, "run 1")
    with warehouse_tasks.manual_build(warehouse, "lw dbt build"):
        pass


def test_a_warehouse_run_waits_for_a_manual_build_to_end(warehouse):
    with warehouse_tasks.manual_build(warehouse, "lw dbt build"):
        with pytest.raises(warehouse_tasks.BuildInProgress,
                           match=r"a manual dbt build \(lw dbt build \(pid \d+\), since .*\) still runs after 0 s"):
            warehouse_tasks.plan_build(warehouse, "run 1", wait_seconds=0.2)
        with pytest.raises(warehouse_tasks.BuildInProgress, match="another manual build is running"):
            with warehouse_tasks.manual_build(warehouse, "lw dbt run"):
                pass
    assert warehouse_tasks.running_builds(warehouse) == []  # the plan that gave up took nothing

    # a plan that starts while the manual build runs proceeds as soon as it ends
    manual_build = warehouse_tasks.manual_build(warehouse, "lw dbt build")
    manual_build.__enter__()
    threading.Timer(1.0, manual_build.__exit__, (None, None, None)).start()
    started = time.monotonic()
    assert warehouse_tasks.plan_build(warehouse, "run 1", wait_seconds=60) is None
    assert 0.8 < time.monotonic() - started < 30
    assert [run_id for run_id, _ in warehouse_tasks.running_builds(warehouse)] == ["run 1"]


def test_a_killed_manual_build_leaves_nothing_behind(warehouse):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from lifecycle_warehouse import warehouse_tasks\n"
         "with warehouse_tasks.manual_build(sys.argv[1], 'lw dbt build'):\n"
         "    print('holding', flush=True)\n"
         "    time.sleep(600)\n",
         warehouse],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(warehouse_tasks.BuildInProgress):
            warehouse_tasks.plan_build(warehouse, "run 1", wait_seconds=0.2)
    finally:
        holder.kill()  # no cleanup code runs: the server drops the lock with the connection
        holder.wait()
    warehouse_tasks.plan_build(warehouse, "run 1", wait_seconds=10)
    assert [run_id for run_id, _ in warehouse_tasks.running_builds(warehouse)] == ["run 1"]


def test_a_run_interrupted_before_its_end_is_ended_by_the_next_run(warehouse):
    warehouse_tasks.plan_build(warehouse, "run 1")  # killed: its end_build never ran
    warehouse_tasks.plan_build(warehouse, "run 2")  # runs are serialised: run 1 is not running
    assert [run_id for run_id, _ in warehouse_tasks.running_builds(warehouse)] == ["run 2"]

    warehouse_tasks.end_build(warehouse, "run 2")
    warehouse_tasks.plan_build(warehouse, "run 2")  # the run cleared and rerun: it holds the warehouse again
    assert [run_id for run_id, _ in warehouse_tasks.running_builds(warehouse)] == ["run 2"]


def test_a_log_created_before_runs_ended_gets_the_column_and_its_runs_end(warehouse_url):
    bootstrap(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("alter table raw.warehouse_builds drop column ended_at")  # as released before
        conn.execute("insert into raw.warehouse_builds (run_id, built_at) values ('old 1', now()), ('old 2', null)")

    # runs of the older release ended (it had no end): they must not hold the warehouse
    assert warehouse_tasks.running_builds(warehouse_url) == []
    with warehouse_tasks.manual_build(warehouse_url, "lw dbt build"):
        pass
    warehouse_tasks.plan_build(warehouse_url, "run 1")
    assert [run_id for run_id, _ in warehouse_tasks.running_builds(warehouse_url)] == ["run 1"]


def test_lw_dbt_build_does_not_start_while_a_warehouse_run_holds_the_warehouse(warehouse, monkeypatch, capsys):
    from lifecycle_warehouse import cli, dbt_runner

    monkeypatch.setenv("WAREHOUSE_URL", warehouse)
    monkeypatch.setattr(dbt_runner, "run", lambda *args, **kwargs: pytest.fail("dbt ran"))
    warehouse_tasks.plan_build(warehouse, "scheduled__2026-09-02")

    assert cli.main(["dbt", "build", "--select", "kpi_daily"]) == 1
    out = capsys.readouterr().out
    assert "`lw dbt build` did not start: warehouse run scheduled__2026-09-02" in out
    assert "holds the warehouse until its last task" in out
    assert "lw builds --end scheduled__2026-09-02" in out

    assert cli.main(["builds", "--end", "scheduled__2026-09-02"]) == 0
    monkeypatch.setattr(dbt_runner, "run", lambda args, **kwargs: 0)
    assert cli.main(["dbt", "build", "--select", "kpi_daily"]) == 0


def test_lw_dbt_build_is_planned_as_a_warehouse_run(warehouse, monkeypatch):
    from lifecycle_warehouse import cli, dbt_runner

    monkeypatch.setenv("WAREHOUSE_URL", warehouse)
    calls = []
    monkeypatch.setattr(dbt_runner, "run", lambda args, **kwargs: calls.append(args) or 0)
    warehouse_tasks.plan_build(warehouse, "run 1")
    warehouse_tasks.record_build(warehouse, "run 1")
    warehouse_tasks.end_build(warehouse, "run 1")
    _load(warehouse, "web", "2026-08-15")  # re-delivered after run 1 started

    assert cli.main(["dbt", "build", "--select", "int_web__events"]) == 0
    assert calls[-1][-2:] == ["--vars", '{"recompute_from": "2026-08-15"}']
    assert cli.main(["dbt", "ls", "--select", "int_web__events"]) == 0  # reads only: not planned
    assert calls[-1] == ["ls", "--select", "int_web__events"]
    assert warehouse_tasks.running_builds(warehouse) == []  # a manual build is not logged as a run
    assert warehouse_tasks.plan_build(warehouse, "run 2") == date(2026, 8, 15)
