"""Someone is told (lifecycle_warehouse.alerts): a receiver on 127.0.0.1 stands in for Slack or
a mail server (LW_ALERT_URL=json://127.0.0.1:<port>/alerts, Apprise's JSON POST).

- A real Airflow run (DAG.test through airflow_runs, SQLite metadata) of a throwaway DAG with
  the project's DEFAULT_ARGS: a task that always fails (one retry), a gate that fails with
  AirflowFailException, a mapped task with one failing instance (like load_entity), a task
  that succeeds on its retry and one that never runs. Exactly
  one alert per failure, with DAG, task, run, reason and a rerun command; none for a retry.
- The ingestion DAG's rejected-file alert (summarize): one alert listing the run's files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lifecycle_warehouse import alerts

from tests.sandbox import airflow_with_dags

DAGS = textwrap.dedent('''
    from datetime import datetime, timedelta

    from airflow.sdk import dag, get_current_context, task
    from airflow.sdk.exceptions import AirflowFailException

    from lifecycle_warehouse.orchestration import DEFAULT_ARGS

    # The project's default arguments (its on_failure_callback), with a retry that does not wait.
    ARGS = {**DEFAULT_ARGS, "retries": 1, "retry_delay": timedelta(seconds=0)}


    @dag(dag_id="tiny_alerts", schedule=None, start_date=datetime(2020, 1, 1), catchup=False, default_args=ARGS)
    def tiny_alerts():
        @task
        def always_fails():
            raise RuntimeError("the shop database refused the connection {{ not a template }}")

        @task
        def after_the_failure(value):
            print("never runs")

        @task
        def raw_gate():
            raise AirflowFailException(
                "Quality gate 'raw' FAILED for run r: 40 expectations, 1 error(s), 0 warning(s).\\n"
                "[error] raw.web_events: no folder for dt=2026-01-02 (a daily entity)")

        @task
        def flaky():
            if get_current_context()["ti"].try_number == 1:
                raise RuntimeError("a first try that fails on purpose")

        @task
        def load_entity(entity):
            if entity == "surveys":
                raise ValueError(f"{entity}: the folder cannot be read")

        after_the_failure(always_fails())
        raw_gate()
        load_entity.expand(entity=["customers", "surveys"])
        flaky()


    tiny_alerts()
''')


class Receiver:
    """An HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                received.append({"path": self.path, "body": json.loads(self.rfile.read(length) or b"null")})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.mark.e2e
def test_a_failing_run_sends_one_alert_per_failure(tmp_path, receiver):
    env = airflow_with_dags(tmp_path, "tiny_alerts.py", DAGS, LW_ALERT_URL=receiver.url)
    run = subprocess.run(
        [sys.executable, "-m", "lifecycle_warehouse.airflow_runs", "--from", "2026-01-01", "--to", "2026-01-02",
         "tiny_alerts"], env=env, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "[lw] task up_for_retry: tiny_alerts.always_fails (try 1)" in output
    assert "[lw] task success: tiny_alerts.flaky (try 2)" in output

    by_title = {}
    for alert in receiver.received:
        assert alert["path"] == "/alerts"
        by_title.setdefault(alert["body"]["title"], []).append(alert["body"])
    # one alert per failure: none for a try that is retried, a retry that succeeds, or a
    # task that never ran because its upstream failed
    assert sorted(by_title) == ["[lifecycle-warehouse] tiny_alerts.always_fails failed",
                                "[lifecycle-warehouse] tiny_alerts.load_entity[1] failed",
                                "[lifecycle-warehouse] tiny_alerts.raw_gate failed"], receiver.received
    assert all(len(bodies) == 1 for bodies in by_title.values()), receiver.received

    failed = by_title["[lifecycle-warehouse] tiny_alerts.always_fails failed"][0]
    assert failed["type"] == "failure"
    message = failed["message"]
    assert "DAG: tiny_alerts" in message and "Task: always_fails" in message
    assert "Run: manual__" in message, "the run id"
    assert "Try: 2 of 2" in message, "after its retry"
    # sent as written: the error's braces are not rendered as a template
    assert "RuntimeError: the shop database refused the connection {{ not a template }}" in message
    assert ("airflow tasks clear tiny_alerts --task-regex '^always_fails$' --downstream "
            "--start-date 2026-01-03T00:00:00+00:00 --end-date 2026-01-03T00:00:00+00:00 --yes") in message

    gate = by_title["[lifecycle-warehouse] tiny_alerts.raw_gate failed"][0]["message"]
    assert "Task: raw_gate" in gate and "Try: 1 of 2" in gate, "a failed gate is not retried"
    assert "AirflowFailException: Quality gate 'raw' FAILED" in gate
    assert "[error] raw.web_events: no folder for dt=2026-01-02 (a daily entity)" in gate
    assert "airflow tasks clear tiny_alerts --task-regex '^raw_gate$'" in gate

    mapped = by_title["[lifecycle-warehouse] tiny_alerts.load_entity[1] failed"][0]["message"]
    assert "Task: load_entity[1]" in mapped and "ValueError: surveys: the folder cannot be read" in mapped


def delivery(entity, dt, files):
    return {"source": "crm", "entity": entity, "dt": dt, "batch_id": 1, "note": None,
            "reason": "in the run's dates", "files": files}


def file(path, status="loaded", error=None):
    return {"file": path, "status": status, "error": error, "rows_read": 10, "rows_loaded": 0 if error else 10,
            "rows_quarantined": 0}


def summarize(results, run_id):
    """The crm_ingest DAG's own summarize task, called directly (its interval: 2026-10-07)."""
    from collections import defaultdict
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from lifecycle_warehouse.dag_factories import file_ingest_dag

    task = file_ingest_dag("crm", "### crm").get_task("summarize")
    return task.python_callable(
        results, params={}, data_interval_start=datetime(2026, 10, 7, tzinfo=timezone.utc),
        data_interval_end=datetime(2026, 10, 8, tzinfo=timezone.utc),
        outlet_events=defaultdict(lambda: SimpleNamespace(extra=None)),
        dag_run=SimpleNamespace(dag_id="crm_ingest", run_id=run_id))


def test_rejected_files_of_an_ingestion_run_send_one_alert(monkeypatch, receiver):
    """summarize (dag_factories.file_ingest_dag) on load_entity's results: one alert."""
    monkeypatch.setenv("LW_ALERT_URL", receiver.url)
    results = [
        [delivery("customers", "2026-10-07", [file("crm/customers/dt=2026-10-07/a.csv"),
                                              file("crm/customers/dt=2026-10-07/b.csv", "rejected",
                                                   "missing required column(s): email")])],
        [delivery("surveys", "2026-10-07", [file("crm/surveys/dt=2026-10-07/s.jsonl.gz", "rejected",
                                                 "not gzip: Not a gzipped file")])],
    ]
    assert summarize(results, "manual__x")["rejected_files"] == 2
    assert len(receiver.received) == 1
    body = receiver.received[0]["body"]
    assert body["type"] == "warning"
    assert body["title"] == "[lifecycle-warehouse] crm_ingest: 2 file(s) of crm rejected"
    assert "DAG: crm_ingest" in body["message"] and "Run: manual__x" in body["message"]
    assert "crm/customers/dt=2026-10-07/b.csv: missing required column(s): email" in body["message"]
    assert "crm/surveys/dt=2026-10-07/s.jsonl.gz: not gzip: Not a gzipped file" in body["message"]
    assert ".venv/bin/lw pipeline --from 2026-10-07 --to 2026-10-07 --dag crm_ingest" in body["message"]

    # a run without rejected files sends nothing
    clean = [[delivery("customers", "2026-10-08", [file("crm/customers/dt=2026-10-08/a.csv")])]]
    assert summarize(clean, "manual__y")["rejected_files"] == 0
    assert len(receiver.received) == 1


def test_an_unreachable_alert_url_does_not_raise(monkeypatch):
    monkeypatch.setenv("LW_ALERT_URL", "json://127.0.0.1:9/alerts")  # nothing listens there
    alerts.send("title", "body")
