"""`lw pipeline`'s console on a real Airflow run (DAG.test, through airflow_runs), cheaply:
two throwaway DAGs in a temporary dags folder, SQLite as Airflow's metadata database.

One Airflow process runs `tiny_ok` (a task that fails on its first try and succeeds on its
retry, then one that reads its result) and `tiny_fail` (its second task fails on purpose):
the console shows a line per finished task with its duration, the DAG result lines, and, for
the failure, the failing task's last lines (its error) and the log file; the log has it all.
"""

from __future__ import annotations

import io
import sys
import textwrap

import pytest
from rich.console import Console

from lifecycle_warehouse import pipeline_console

from tests.sandbox import airflow_with_dags

pytestmark = pytest.mark.e2e

DAGS = textwrap.dedent('''
    from datetime import datetime, timedelta

    from airflow.sdk import dag, get_current_context, task


    @dag(dag_id="tiny_ok", schedule=None, start_date=datetime(2020, 1, 1), catchup=False)
    def tiny_ok():
        @task(retries=1, retry_delay=timedelta(seconds=0))
        def flaky_extract():
            if get_current_context()["ti"].try_number == 1:
                raise RuntimeError("a first try that fails on purpose")
            print("extracted on the retry")
            return 1

        @task
        def load(value):
            print("loaded", value)

        load(flaky_extract())


    @dag(dag_id="tiny_fail", schedule=None, start_date=datetime(2020, 1, 1), catchup=False)
    def tiny_fail():
        @task
        def prepare():
            return 1

        @task(retries=0)
        def check_scores(value):
            print("checking crm_survey_responses")
            raise ValueError("crm_survey_responses.score: 1 value out of range [0, 10]")

        @task
        def publish(value):
            print("never runs")

        publish(check_scores(prepare()))


    tiny_ok()
    tiny_fail()
''')


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    return airflow_with_dags(tmp_path_factory.mktemp("pipeline_console"), "tiny.py", DAGS)


def test_a_real_run_shows_a_line_per_task_and_the_failing_tasks_error(airflow_env):
    out = io.StringIO()
    console = Console(file=out, width=120, highlight=False, soft_wrap=True)
    assert not console.is_terminal
    run = pipeline_console.run(
        [sys.executable, "-m", "lifecycle_warehouse.airflow_runs", "--from", "2026-01-01", "--to", "2026-01-02",
         "tiny_ok", "tiny_fail"],
        airflow_env, console,
    )
    text = out.getvalue()
    lines = text.splitlines()
    assert run.code == 1, text
    assert run.finished == {"tiny_ok": "success", "tiny_fail": "failed"}, text
    assert "\x1b" not in text, "no control sequences when the console is not a terminal"

    def line_of(prefix: str) -> str:
        found = [line for line in lines if line.strip().startswith(prefix)]
        assert len(found) == 1, (prefix, text)
        return found[0]

    assert line_of("==> tiny_ok: one run for 2026-01-01 … 2026-01-02 (2 tasks)")
    assert "failed on try 1, will retry" in line_of("↻ flaky_extract")
    assert line_of("✓ flaky_extract").rstrip().endswith("1/2")
    assert line_of("✓ load").rstrip().endswith("2/2")
    assert " s " in line_of("✓ load"), "the task's duration"
    assert line_of("==> tiny_ok: success in ")
    assert line_of("✓ prepare")
    assert "failed on try 1" in line_of("✗ check_scores")
    assert "publish" in line_of("1 task(s) did not run"), "publish is upstream_failed"
    assert line_of("==> tiny_fail: failed in ")
    # The failing task's last lines: its error, not the Airflow frames around it.
    assert "✗ tiny_fail.check_scores failed (try 1); the last lines of its log:" in text
    assert "ValueError: crm_survey_responses.score: 1 value out of range [0, 10]" in text
    assert "checking crm_survey_responses" in text
    assert "frames in installed packages" in text
    # The log file has Airflow's whole output, with a marker per task.
    assert run.log_file is not None and run.log_file.parent.name == "pipeline"
    assert f"Airflow's full output: {run.log_file}" in lines[-1]
    log = run.log_file.read_text(encoding="utf-8")
    assert "[lw] task up_for_retry: tiny_ok.flaky_extract (try 1)" in log
    assert "[lw] task failed: tiny_fail.check_scores (try 1)" in log
    assert "extracted on the retry" in log and "Traceback (most recent call last)" in log
    assert "extracted on the retry" not in text, "task output stays in the log"
