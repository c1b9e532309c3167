"""The console of `lw pipeline` (pipeline_console): task lines, the failing task's log tail,
the rerun command, log files, and the plumbing (event pipe, log file) with a fake Airflow
process. The real Airflow run is in tests/integration/test_pipeline_console_airflow.py."""

from __future__ import annotations

import io
import json
import os
import sys
import textwrap
from datetime import date, datetime

from rich.console import Console

from lifecycle_warehouse import pipeline_console as pc

SITE = "/work/main/.venv/lib/python3.11/site-packages"


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=120, highlight=False, soft_wrap=True), out


def task_event(task: str, state: str | None = None, *, dag: str = "crm_ingest", try_: int = 1,
               seconds: float | None = 2.05, map_index: int = -1, error: str | None = None, max_tries: int = 2):
    event = {"event": "task_started" if state is None else "task_finished", "dag": dag, "task": task,
             "map_index": map_index, "try": try_}
    if state is not None:
        event.update(state=state, seconds=seconds, error=error, max_tries=max_tries)
    return event


def test_verbose_from_the_flag_or_lw_verbose():
    assert pc.verbose_requested(True, {})
    assert not pc.verbose_requested(False, {})
    for value in ("1", "true", "yes", "on"):
        assert pc.verbose_requested(False, {"LW_VERBOSE": value})
    for value in ("", "0", "false", "no", " off "):
        assert not pc.verbose_requested(False, {"LW_VERBOSE": value})


def test_marker_lines_name_the_dag_task_try_state_and_duration():
    assert pc.marker_line(task_event("load_contacts")) == "[lw] task started: crm_ingest.load_contacts (try 1)"
    assert pc.marker_line(task_event("load_contacts", "failed", try_=3, seconds=1.26)) == \
        "[lw] task failed: crm_ingest.load_contacts (try 3) in 1.3 s"
    assert pc.marker_line(task_event("load", "success", map_index=2, seconds=None)) == \
        "[lw] task success: crm_ingest.load[2] (try 1)"


def test_task_lines_show_symbol_label_duration_and_progress():
    line, colour = pc.task_line(task_event("load_contacts", "success", seconds=2.1), 3, 5, width=20)
    assert line == "  ✓ load_contacts             2.1 s   3/5"
    assert colour == "green"
    line, colour = pc.task_line(task_event("load_contacts", "up_for_retry", max_tries=2), 3, 5, width=20)
    assert line.startswith("  ↻ load_contacts") and line.endswith("failed on try 1, will retry (at most 3 tries)")
    assert colour == "yellow"
    line, colour = pc.task_line(task_event("raw_quality_gate", "failed", seconds=75), 3, 5, width=20)
    assert line.startswith("  ✗ raw_quality_gate") and "1 min 15 s" in line and line.endswith("failed on try 1")
    assert colour == "red"
    assert pc.task_line(task_event("t", "skipped"), 1, 1)[0].endswith("skipped")


def test_dag_lines_keep_the_words_scripts_read():
    assert pc.dag_header({"dag": "warehouse", "date_from": "2026-09-01", "date_to": "2026-10-30", "tasks": 40}) == \
        "==> warehouse: one run for 2026-09-01 … 2026-10-30 (40 tasks)"
    assert pc.dag_result({"dag": "warehouse", "state": "failed", "seconds": 95.24, "problem": None}) == \
        ["==> warehouse: failed in 95.2 s"]
    assert pc.dag_result({"dag": "web_ingest", "state": "incomplete", "seconds": 3.0,
                          "problem": "no task ran: … see LW_START_DATE"}) == [
        "==> web_ingest: the run says success, but no task ran: … see LW_START_DATE",
        "==> web_ingest: incomplete in 3.0 s",
    ]


def test_not_run_summary_leaves_out_tasks_already_reported():
    event = {"not_succeeded": [{"task": "gate", "map_index": -1, "state": "failed"},
                               *({"task": f"model_{i}", "map_index": -1, "state": "upstream_failed"} for i in range(7)),
                               {"task": "fan", "map_index": 0, "state": None}]}
    summary = pc.not_run_summary(event, {"gate"})
    assert summary.startswith("  8 task(s) did not run")
    assert "never ran: fan[0]" in summary
    assert "upstream_failed: model_0, model_1, model_2, model_3, model_4 and 2 more" in summary
    assert pc.not_run_summary({"not_succeeded": [{"task": "gate", "state": "failed"}]}, {"gate"}) is None


def traceback_lines(message: str) -> list[str]:
    return [
        "Traceback (most recent call last):",
        f'  File "{SITE}/airflow/sdk/execution_time/task_runner.py", line 1579, in _run_task_and_map_outcome',
        "    result = _execute_task(context=context, ti=ti, log=log)",
        "             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        f'  File "{SITE}/airflow/sdk/bases/operator.py", line 462, in wrapper',
        "    return func(self, *args, **kwargs)",
        f'  File "{SITE}/airflow/providers/standard/operators/python.py", line 254, in execute_callable',
        "    return runner.run(*self.op_args, **self.op_kwargs)",
        '  File "/work/main/plugins/lifecycle_warehouse/warehouse_tasks.py", line 154, in quality_gate',
        "    raise AirflowFailException(str(failed)) from failed",
        f"airflow.sdk.exceptions.AirflowFailException: {message}",
    ]


def test_library_frames_collapse_but_the_last_frame_stays():
    lines = traceback_lines("boom")
    assert pc.collapse_library_frames(lines) == [
        "Traceback (most recent call last):",
        "  … 3 frames in installed packages …",
        '  File "/work/main/plugins/lifecycle_warehouse/warehouse_tasks.py", line 154, in quality_gate',
        "    raise AirflowFailException(str(failed)) from failed",
        "airflow.sdk.exceptions.AirflowFailException: boom",
    ]
    # An error raised inside a library keeps the frame that raised it.
    inside = lines[:8] + ["psycopg.errors.UndefinedTable: relation does not exist"]
    collapsed = pc.collapse_library_frames(inside)
    assert collapsed[1] == "  … 2 frames in installed packages …"
    assert collapsed[2].endswith("in execute_callable") and collapsed[-1].startswith("psycopg.errors")
    # One library frame alone is not worth a line of its own.
    assert pc.collapse_library_frames(lines[:1] + lines[4:6] + lines[8:]) == lines[:1] + lines[4:6] + lines[8:]


def fake_log() -> list[str]:
    message = "Quality gate 'raw' FAILED: 120 expectations, 1 error(s)\n" \
              "raw.crm_survey_responses: expect_column_values_to_be_between(score) 1 unexpected\nData Docs: file:///x"
    return [
        "# lw pipeline",
        "==> warehouse: one run for 2026-09-01 … 2026-10-30",
        "[lw] task started: warehouse.plan_build (try 1)",
        "planning",
        "[lw] task success: warehouse.plan_build (try 1) in 0.5 s",
        "boilerplate between tasks",
        "[lw] task started: warehouse.raw_quality_gate (try 1)",
        "validating 12 relations",
        *[f"noise {i}" for i in range(50)],
        *traceback_lines(message.splitlines()[0]),
        *message.splitlines()[1:],
        "::group::Post Execute",
        "[lw] task failed: warehouse.raw_quality_gate (try 1) in 3.0 s",
        "[lw] task started: warehouse.end_build (try 1)",
        "[lw] task success: warehouse.end_build (try 1) in 0.1 s",
        "==> warehouse: failed in 9.0 s",
    ]


def test_the_section_of_a_task_runs_from_its_start_to_its_end_marker():
    lines = fake_log()
    section = pc.task_log_section(lines, "warehouse", "raw_quality_gate", 1)
    assert section[0] == "validating 12 relations"
    assert section[-1] == "::group::Post Execute"
    assert pc.task_log_section(lines, "warehouse", "raw_quality_gate", 2) is None
    assert pc.task_log_section(lines, "warehouse", "raw_quality", 1) is None
    # Failed before its start marker (e.g. a template error): from the task before's end.
    early = ["[lw] task success: d.a (try 1) in 1.0 s", "rendering failed", "[lw] task failed: d.b (try 1)"]
    assert pc.task_log_section(early, "d", "b", 1) == ["rendering failed"]


def test_the_tail_reaches_back_to_the_error_and_shortens_long_lines():
    section = pc.task_log_section(fake_log(), "warehouse", "raw_quality_gate", 1)
    error = "AirflowFailException: Quality gate 'raw' FAILED: 120 expectations, 1 error(s)\nraw.crm_…"
    shown = pc.tail(section, error, max_lines=3)
    assert shown[0].endswith("in quality_gate"), "from just above the exception's first line"
    assert shown[2].startswith("airflow.sdk.exceptions.AirflowFailException: Quality gate 'raw' FAILED")
    full = pc.tail(section, error)
    assert len(full) == pc.TAIL_LINES and full[-1] == "::group::Post Execute"
    assert full[full.index("Traceback (most recent call last):") + 1] == "  … 3 frames in installed packages …"
    assert any("crm_survey_responses" in line and "score" in line for line in shown)
    assert pc.error_shown(error, shown)
    assert pc.tail(section, None, max_lines=3) == ["raw.crm_survey_responses: expect_column_values_to_be_between(score) "
                                                   "1 unexpected", "Data Docs: file:///x", "::group::Post Execute"]
    assert len(pc.tail([f"line {i}" for i in range(500)], "line 3", max_lines=5, hard_max=20)) == 20
    long = pc.tail(["x" * 1000, "", "  "])
    assert long == ["x" * (pc.MAX_LINE_CHARS - 1) + "…"]
    assert not pc.error_shown("KeyError: 'score'", ["something else"])
    assert pc.error_shown(None, [])


def test_rerun_commands():
    args = dict(date_from=date(2026, 9, 1), date_to=date(2026, 10, 30))
    dags = ["crm_ingest", "web_ingest", "marketing_ingest", "shop_ingest", "warehouse"]
    finished = {"crm_ingest": "success", "web_ingest": "success", "marketing_ingest": "success",
                "shop_ingest": "success", "warehouse": "failed"}
    assert pc.rerun_commands(**args, dag_args=None, ingest_only=False, dags=dags, finished=finished,
                             via_make=True, program=".venv/bin/lw") == [
        "make pipeline FROM=2026-09-01 TO=2026-10-30",
        ".venv/bin/lw pipeline --from 2026-09-01 --to 2026-10-30 --dag warehouse",
    ]
    assert pc.rerun_commands(**args, dag_args=None, ingest_only=True, dags=dags[:4],
                             finished={"crm_ingest": "failed"}, via_make=True) == [
        "lw pipeline --from 2026-09-01 --to 2026-10-30 --ingest-only",
    ]
    assert pc.rerun_commands(**args, dag_args=["web_ingest", "warehouse"], ingest_only=False,
                             dags=["web_ingest", "warehouse"], finished={"web_ingest": "success",
                                                                          "warehouse": "incomplete"},
                             via_make=False) == [
        "lw pipeline --from 2026-09-01 --to 2026-10-30 --dag web_ingest --dag warehouse",
        "lw pipeline --from 2026-09-01 --to 2026-10-30 --dag warehouse",
    ]
    # Nothing finished (Airflow did not start): the same command only.
    assert pc.rerun_commands(**args, dag_args=None, ingest_only=False, dags=dags, finished={},
                             via_make=False) == ["lw pipeline --from 2026-09-01 --to 2026-10-30"]


def test_log_files_are_named_by_time_and_the_oldest_pruned(tmp_path):
    now = datetime(2026, 10, 30, 14, 25, 1)
    first = pc.new_log_file(tmp_path, now)
    assert first.name == "20261030-142501.log"
    first.write_text("")
    assert pc.new_log_file(tmp_path, now).name == "20261030-142501-2.log"
    for i in range(5):
        path = tmp_path / f"2026010{i}-000000.log"
        path.write_text("")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "notes.txt").write_text("kept")
    removed = pc.prune_logs(tmp_path, keep=3)
    assert sorted(p.name for p in removed) == ["20260100-000000.log", "20260101-000000.log", "20260102-000000.log"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "20260103-000000.log", "20260104-000000.log", "20261030-142501.log", "notes.txt"]


def test_parse_events_keeps_partial_lines_and_drops_garbage():
    events, rest = pc.parse_events(b'{"event": "dag_started"}\nnot json\n[1]\n{"no_event": 1}\n{"event": "ta')
    assert events == [{"event": "dag_started"}]
    assert rest == b'{"event": "ta'


def test_renderer_without_a_terminal_prints_plain_lines(tmp_path):
    console, out = plain_console()
    log = tmp_path / "run.log"
    log.write_text("\n".join(fake_log()) + "\n", encoding="utf-8")
    renderer = pc.Renderer(console)
    assert not renderer.live
    with renderer:
        renderer.handle({"event": "dag_started", "dag": "warehouse", "tasks": 3, "width": 16,
                         "date_from": "2026-09-01", "date_to": "2026-10-30"})
        renderer.handle(task_event("plan_build", dag="warehouse"))
        renderer.handle(task_event("plan_build", "success", dag="warehouse", seconds=0.5))
        renderer.handle(task_event("raw_quality_gate", "failed", dag="warehouse", seconds=3.0,
                                   error="AirflowFailException: Quality gate 'raw' FAILED: 120 expectations, 1 error(s)"))
        renderer.handle({"event": "task_finished", "dag": "warehouse"})  # malformed: ignored
        renderer.handle({"event": "dag_finished", "dag": "warehouse", "state": "failed", "seconds": 9.0,
                         "problem": None, "not_succeeded": [{"task": "raw_quality_gate", "map_index": -1,
                                                             "state": "failed"},
                                                            {"task": "publish", "map_index": -1,
                                                             "state": "upstream_failed"}]})
    renderer.report_failure(log)
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.splitlines()[:6] == [
        "==> warehouse: one run for 2026-09-01 … 2026-10-30 (3 tasks)",
        "  ✓ plan_build            0.5 s   1/3",
        "  ✗ raw_quality_gate      3.0 s   failed on try 1",
        "  1 task(s) did not run or did not finish — upstream_failed: publish",
        "==> warehouse: failed in 9.0 s",
        "✗ warehouse.raw_quality_gate failed (try 1); the last lines of its log:",
    ]
    assert "    raw.crm_survey_responses: expect_column_values_to_be_between(score) 1 unexpected" in text
    assert "its error:" not in text, "the error is in the lines shown"
    assert renderer.finished == {"warehouse": "failed"}


def test_renderer_prints_the_error_when_the_log_lacks_it(tmp_path):
    console, out = plain_console()
    renderer = pc.Renderer(console)
    renderer.handle(task_event("gate", "failed", error="KeyError: 'score'\nsecond line"))
    renderer.report_failure(tmp_path / "missing.log")
    text = out.getvalue()
    assert "✗ crm_ingest.gate failed (try 1); its error:\n    KeyError: 'score'\n    second line" in text
    assert "last lines" not in text


def test_a_run_whose_result_line_says_why_gets_no_log_tail(tmp_path):
    console, out = plain_console()
    renderer = pc.Renderer(console)
    renderer.handle({"event": "dag_finished", "dag": "web_ingest", "state": "incomplete", "seconds": 2.0,
                     "problem": "no task ran: …", "not_succeeded": []})
    (tmp_path / "run.log").write_text("noise\n")
    renderer.report_failure(tmp_path / "run.log")
    assert out.getvalue().splitlines() == ["==> web_ingest: the run says success, but no task ran: …",
                                           "==> web_ingest: incomplete in 2.0 s"]


FAKE_AIRFLOW = textwrap.dedent('''
    import json, os, sys
    events = os.fdopen(int(os.environ["LW_PIPELINE_EVENTS_FD"]), "w")
    def send(event):
        events.write(json.dumps(event) + "\\n"); events.flush()
    print("airflow start-up noise")
    print("DAG import error on stderr", file=sys.stderr)
    send({"event": "dag_started", "dag": "crm_ingest", "tasks": 2, "width": 5,
          "date_from": "2026-09-01", "date_to": "2026-09-02"})
    print("[lw] task started: crm_ingest.load (try 1)")
    print("loading thousands of rows")
    print("ValueError: bad rows")
    print("[lw] task failed: crm_ingest.load (try 1) in 1.0 s")
    send({"event": "task_finished", "dag": "crm_ingest", "task": "load", "map_index": -1, "try": 1,
          "state": "failed", "seconds": 1.0, "error": "ValueError: bad rows"})
    send({"event": "dag_finished", "dag": "crm_ingest", "state": "failed", "seconds": 1.5, "problem": None,
          "not_succeeded": []})
    sys.exit(int(sys.argv[1]))
''')


def test_run_sends_the_output_to_a_log_file_and_renders_the_events(tmp_path):
    console, out = plain_console()
    script = tmp_path / "fake_airflow.py"
    script.write_text(FAKE_AIRFLOW, encoding="utf-8")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "home")}
    run = pc.run([sys.executable, str(script), "1"], env, console)
    text = out.getvalue()
    assert run.code == 1 and run.finished == {"crm_ingest": "failed"}
    assert run.log_file.parent == tmp_path / "home" / "logs" / "pipeline"
    log = run.log_file.read_text(encoding="utf-8")
    assert "airflow start-up noise" in log and "DAG import error on stderr" in log
    assert "airflow start-up noise" not in text and "loading thousands of rows" in text
    assert "\n  ✗ load       1.0 s   failed on try 1\n" in text
    assert "==> crm_ingest: failed in 1.5 s" in text
    assert text.splitlines()[0].startswith(f"Airflow's full output: {run.log_file}")
    assert text.splitlines()[-1] == f"Airflow's full output: {run.log_file}"


def test_run_without_events_shows_the_end_of_the_log(tmp_path):
    """Airflow failed before any DAG (an import error): the log's last lines say why."""
    console, out = plain_console()
    command = [sys.executable, "-c", "import sys; print('starting'); sys.exit('Some DAG files do not import')"]
    run = pc.run(command, {**os.environ, "AIRFLOW_HOME": str(tmp_path)}, console)
    text = out.getvalue()
    assert run.code == 1 and run.finished == {}
    assert "The last lines of the Airflow output:" in text and "    Some DAG files do not import" in text


def test_verbose_run_streams_as_before(tmp_path, capfd):
    console, out = plain_console()
    run = pc.run([sys.executable, "-c", "print('every line of Airflow')"], {**os.environ, "AIRFLOW_HOME": str(tmp_path)},
                 console, verbose=True)
    assert run.code == 0 and run.log_file is None
    assert "every line of Airflow" in capfd.readouterr().out
    assert not (tmp_path / "logs").exists()


def test_events_are_json_the_renderer_reads():
    """airflow_runs' events go through json: a datetime-free dict round-trips."""
    event = task_event("load", "success")
    assert json.loads(json.dumps(event)) == event


def test_lw_pipeline_prints_the_rerun_commands_on_failure(monkeypatch, capsys, tmp_path):
    import contextlib

    from lifecycle_warehouse import cli, dbt_runner, pipeline_lock, runtime

    calls = []

    def fake_run(command, env, console, verbose=False, log_dir=None):
        calls.append((command, verbose))
        return pc.PipelineRun(1, tmp_path / "x.log", {dag: "success" for dag in cli.INGESTION_DAGS}
                              | {cli.WAREHOUSE_DAG: "failed"})

    monkeypatch.setattr(cli, "_ensure_airflow_db", lambda: None)
    monkeypatch.setattr(pipeline_lock, "one_pipeline_at_a_time", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql:///unused")
    monkeypatch.setattr(dbt_runner, "parse_manifest", lambda *a, **k: None)
    monkeypatch.setattr(runtime, "environment", lambda: {"AIRFLOW_HOME": str(tmp_path)})
    monkeypatch.setattr(pc, "run", fake_run)
    monkeypatch.setattr(pc, "lw_program", lambda: ".venv/bin/lw")
    monkeypatch.setenv("MAKELEVEL", "1")
    monkeypatch.delenv("LW_VERBOSE", raising=False)
    assert cli.main(["pipeline", "--from", "2026-09-01", "--to", "2026-10-30"]) == 1
    out = capsys.readouterr().out
    assert calls[0][0][-5:] == [*cli.INGESTION_DAGS, cli.WAREHOUSE_DAG] and calls[0][1] is False
    assert "pipeline failed after" in out and "pipeline finished" not in out
    assert "    make pipeline FROM=2026-09-01 TO=2026-10-30\n" in out
    assert "    .venv/bin/lw pipeline --from 2026-09-01 --to 2026-10-30 --dag warehouse\n" in out
    monkeypatch.delenv("MAKELEVEL")
    assert cli.main(["pipeline", "--from", "2026-09-01", "--to", "2026-10-30", "--dag", "warehouse",
                     "--verbose"]) == 1
    out = capsys.readouterr().out
    assert calls[1][1] is True
    assert "    .venv/bin/lw pipeline --from 2026-09-01 --to 2026-10-30 --dag warehouse\n" in out


def test_a_mapped_task_counts_once_towards_the_dags_tasks():
    console, out = plain_console()
    renderer = pc.Renderer(console)
    renderer.handle({"event": "dag_started", "dag": "shop_ingest", "tasks": 3, "width": 18,
                     "date_from": "2026-09-01", "date_to": "2026-09-02"})
    renderer.handle(task_event("prepare_raw_schema", "success", dag="shop_ingest"))
    for index in (1, 0, 2):
        renderer.handle(task_event("extract_table", "success", dag="shop_ingest", map_index=index))
    renderer.handle(task_event("summarize", "success", dag="shop_ingest"))
    counters = [line.split()[-1] for line in out.getvalue().splitlines()[1:]]
    assert counters == ["1/3", "2/3", "2/3", "2/3", "3/3"]
    assert "extract_table[1]" in out.getvalue()
