"""The alerts' messages (lifecycle_warehouse.alerts), built from a fake Airflow context;
nothing is sent (tests/integration/test_alerts.py sends them to a receiver)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from types import SimpleNamespace

from airflow.sdk.exceptions import AirflowFailException

from lifecycle_warehouse import alerts
from lifecycle_warehouse.orchestration import DEFAULT_ARGS


def context(dag_id="crm_ingest", task_id="load_entity", map_index=-1, conf=None, exception=None,
            interval=(datetime(2026, 10, 7, tzinfo=timezone.utc), datetime(2026, 10, 8, tzinfo=timezone.utc))):
    ti = SimpleNamespace(dag_id=dag_id, task_id=task_id, map_index=map_index, try_number=3, max_tries=2)
    run = SimpleNamespace(run_id="scheduled__2026-10-08T00:00:00+00:00", conf=conf or {},
                          logical_date=interval[1] if interval else None)
    return {"ti": ti, "dag_run": run, "run_id": run.run_id, "params": dict(conf or {}),
            "data_interval_start": interval[0] if interval else None,
            "data_interval_end": interval[1] if interval else None,
            "logical_date": run.logical_date, "exception": exception}


def test_a_failed_task_names_dag_task_run_try_reason_and_the_rerun_command():
    title, body = alerts.task_failure_message(
        context(map_index=2, exception=RuntimeError("connection refused\nis the server running?")))
    assert title == "[lifecycle-warehouse] crm_ingest.load_entity[2] failed"
    assert "DAG: crm_ingest" in body
    assert "Task: load_entity[2]" in body
    assert "Run: scheduled__2026-10-08T00:00:00+00:00" in body
    assert "Try: 3 of 3" in body
    assert "    RuntimeError: connection refused\n    is the server running?" in body
    # the data interval is 2026-10-07: one day
    assert ".venv/bin/lw pipeline --from 2026-10-07 --to 2026-10-07 --dag crm_ingest" in body
    assert ("airflow tasks clear crm_ingest --task-regex '^load_entity$' --downstream "
            "--start-date 2026-10-08T00:00:00+00:00 --end-date 2026-10-08T00:00:00+00:00 --yes") in body


def test_the_rerun_command_covers_the_runs_range_from_its_params():
    _, body = alerts.task_failure_message(
        context(dag_id="warehouse", task_id="marts_gate", conf={"date_from": "2026-09-01", "date_to": "2026-10-30"},
                exception=AirflowFailException("Quality gate 'marts' FAILED for run r: 12 expectations, 1 error(s)\n"
                                               "[error] kpi_daily: revenue must not be negative")))
    assert ".venv/bin/lw pipeline --from 2026-09-01 --to 2026-10-30 --dag warehouse" in body
    assert "AirflowFailException: Quality gate 'marts' FAILED" in body
    assert "[error] kpi_daily: revenue must not be negative" in body


def test_without_readable_dates_or_for_another_dag_the_rerun_is_airflows_clear():
    _, body = alerts.task_failure_message(context(dag_id="warehouse", task_id="plan_build", interval=None,
                                                  exception=ValueError("no dates")))
    assert "lw pipeline" not in body
    assert "airflow tasks clear warehouse --task-regex '^plan_build$' --downstream --only-failed --yes" in body
    _, body = alerts.task_failure_message(context(dag_id="someone_elses", exception=ValueError("x")))
    assert "lw pipeline" not in body and "airflow tasks clear someone_elses" in body


def test_a_long_reason_is_cut_to_its_first_lines():
    reason = alerts.describe_reason(AirflowFailException("\n".join(f"line {i}" for i in range(100))))
    assert reason.splitlines()[0] == "AirflowFailException: line 0"
    assert len(reason.splitlines()) == alerts.REASON_LINES + 1
    assert "75 more lines in the task log" in reason
    assert "task was failed from outside" in alerts.describe_reason(None)


def test_rejected_files_are_listed_with_their_reasons():
    results = [[{"files": [{"file": "crm/customers/dt=2026-10-07/a.csv", "status": "loaded", "error": None},
                           {"file": "crm/customers/dt=2026-10-07/b.csv", "status": "rejected",
                            "error": "missing required column: email"}]}],
               [{"files": []}]]
    files = alerts.rejected_files(results)
    assert files == [("crm/customers/dt=2026-10-07/b.csv", "missing required column: email")]
    title, body = alerts.rejected_files_message("crm", files, "crm_ingest", "manual__1",
                                                (date(2026, 10, 7), date(2026, 10, 8)))
    assert title == "[lifecycle-warehouse] crm_ingest: 1 file(s) of crm rejected"
    assert "crm/customers/dt=2026-10-07/b.csv: missing required column: email" in body
    assert ".venv/bin/lw pipeline --from 2026-10-07 --to 2026-10-07 --dag crm_ingest" in body


def test_no_alert_url_means_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("LW_ALERT_URL", raising=False)
    assert alerts.send("title", "body") is False
    assert alerts.alert_rejected_files("crm", [[{"files": [{"file": "f", "status": "rejected", "error": "e"}]}]],
                                       "crm_ingest", "r", None) is False
    DEFAULT_ARGS["on_failure_callback"].notify(context(exception=RuntimeError("x")))  # does nothing


def test_every_task_gets_the_failure_alert():
    assert isinstance(DEFAULT_ARGS["on_failure_callback"], alerts.TaskFailureAlert)
