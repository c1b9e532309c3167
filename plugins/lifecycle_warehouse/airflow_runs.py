"""Run the project's DAGs for real with Airflow's own test runner (`DAG.test`, what
`airflow dags test` calls), several DAGs in one process so that Airflow's start-up (~6 s)
is paid once.

    python -m lifecycle_warehouse.airflow_runs --from 2026-09-01 --to 2026-10-30 crm_ingest web_ingest

Each DAG gets one run whose logical date is the day after `--to` (so its data interval
is the last day) and whose conf covers the whole range (`date_from`, `date_to`). The
process must run in `runtime.environment()` (the CLI does that).

A listener (`TaskReporter`) writes a `[lw] task <state>: <dag>.<task> (try n) in s` line to
the output when a task starts and ends, and, when `lw pipeline` passes a pipe in
LW_PIPELINE_EVENTS_FD, one JSON event per task and DAG on it (see pipeline_console).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date, datetime, timedelta, timezone
from typing import IO, Any

from airflow.listeners import hookimpl

from lifecycle_warehouse.pipeline_console import EVENTS_FD_ENV, marker_line


class TaskReporter:
    """An Airflow listener (called in-process by DAG.test's task runner): a marker line in
    the output when a task starts and ends, and a JSON event on the parent's pipe, if any."""

    def __init__(self, events: IO[str] | None = None):
        self.events = events
        self.started: dict[tuple, float] = {}

    @classmethod
    def install(cls) -> TaskReporter:
        from airflow.sdk.listener import get_listener_manager

        reporter = cls(_events_pipe())
        get_listener_manager().add_listener(reporter)
        return reporter

    def send(self, event: dict[str, Any], marker: bool = False) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        if marker:
            out = sys.__stdout__ or sys.stdout
            out.write(marker_line(event) + "\n")
            out.flush()
        if self.events is not None:
            try:
                self.events.write(json.dumps(event, default=str) + "\n")
                self.events.flush()
            except (OSError, ValueError):
                self.events = None  # the console went away: the log still gets everything

    @staticmethod
    def _key(ti) -> tuple:
        return (ti.dag_id, ti.task_id, ti.map_index, ti.try_number)

    def _task_event(self, ti, kind: str) -> dict[str, Any]:
        map_index = ti.map_index if ti.map_index is not None else -1
        return {"event": kind, "dag": ti.dag_id, "task": ti.task_id, "map_index": map_index, "try": ti.try_number}

    def _finished(self, ti, state: str, error=None) -> None:
        started = self.started.pop(self._key(ti), None)
        if started is not None:
            seconds = time.monotonic() - started
        elif getattr(ti, "start_date", None) is not None:
            seconds = (datetime.now(timezone.utc) - ti.start_date).total_seconds()
        else:
            seconds = None
        event = self._task_event(ti, "task_finished")
        event.update(state=state, seconds=None if seconds is None else round(seconds, 3),
                     max_tries=getattr(ti, "max_tries", None), error=describe_error(error))
        self.send(event, marker=True)

    @hookimpl
    def on_task_instance_running(self, previous_state, task_instance):
        self.started[self._key(task_instance)] = time.monotonic()
        self.send(self._task_event(task_instance, "task_started"), marker=True)

    @hookimpl
    def on_task_instance_success(self, previous_state, task_instance):
        self._finished(task_instance, "success")

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error):
        state = getattr(task_instance.state, "value", task_instance.state)
        self._finished(task_instance, "up_for_retry" if state == "up_for_retry" else "failed", error)

    @hookimpl
    def on_task_instance_skipped(self, previous_state, task_instance):
        self._finished(task_instance, "skipped")


def _events_pipe() -> IO[str] | None:
    """The write end of `lw pipeline`'s event pipe, kept from the processes tasks start."""
    fd = os.environ.pop(EVENTS_FD_ENV, "")
    if not fd.isdigit():
        return None
    try:
        os.set_inheritable(int(fd), False)
        return os.fdopen(int(fd), "w", encoding="utf-8")
    except OSError:
        return None


def describe_error(error) -> str | None:
    """`Type: message` of a task's exception (at most 8,000 characters)."""
    if error is None:
        return None
    if isinstance(error, BaseException):
        message = str(error)
        text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    else:
        text = str(error)
    return text[:8000]


def run_dags(dag_ids: list[str], date_from: date, date_to: date) -> list[tuple[str, str, float]]:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.settings import DAGS_FOLDER

    bag = DagBag(dag_folder=DAGS_FOLDER)
    if bag.import_errors:
        for path, error in bag.import_errors.items():
            print(f"DAG import error in {path}:\n{error}", file=sys.stderr)
        raise SystemExit("Some DAG files do not import; fix them first.")
    day_after = date_to + timedelta(days=1)
    logical_date = datetime(day_after.year, day_after.month, day_after.day, tzinfo=timezone.utc)
    conf = {"date_from": date_from.isoformat(), "date_to": date_to.isoformat()}
    reporter = TaskReporter.install()
    outcomes = []
    for dag_id in dag_ids:
        dag = bag.get_dag(dag_id)
        if dag is None:
            raise SystemExit(f"No DAG {dag_id!r} in {DAGS_FOLDER}")
        started = time.monotonic()
        print(f"==> {dag_id}: one run for {date_from} … {date_to}", flush=True)
        reporter.send({"event": "dag_started", "dag": dag_id, "tasks": len(dag.tasks),
                       "width": max((len(task_id) for task_id in dag.task_ids), default=0), **conf})
        run = dag.test(logical_date=logical_date, run_conf=conf)
        state = str(getattr(run, "state", "unknown"))
        problem = tasks_not_run(run) if state == "success" else None
        if problem:
            print(f"==> {dag_id}: the run says success, but {problem}", flush=True)
            state = "incomplete"
        outcomes.append((dag_id, state, time.monotonic() - started))
        print(f"==> {dag_id}: {state} in {outcomes[-1][2]:.1f} s", flush=True)
        reporter.send({"event": "dag_finished", "dag": dag_id, "state": state, "seconds": round(outcomes[-1][2], 3),
                       "problem": problem, "not_succeeded": [] if state == "success" else not_succeeded(run)})
        if state != "success":
            break
    return outcomes


def tasks_not_run(run) -> str | None:
    """Why a DAG run that Airflow marked successful did not do its work, or None when every
    task of it succeeded. Airflow marks a run successful when it has no task instance at
    all (its logical date is before the DAG's start date), and none of the project's DAGs
    skips a task on purpose: a skipped task or one that never ran means work not done."""
    instances = run.get_task_instances()
    if not instances:
        return ("no task ran: Airflow created the run without task instances (is the logical date "
                f"{run.logical_date} before the DAG's start date? see LW_START_DATE)")
    left = sorted(f"{ti.task_id}{'' if ti.map_index < 0 else f'[{ti.map_index}]'} ({ti.state or 'never ran'})"
                  for ti in instances if ti.state != "success")
    if left:
        return f"{len(left)} task(s) did not succeed: {', '.join(left[:10])}{' …' if len(left) > 10 else ''}"
    return None


def not_succeeded(run) -> list[dict[str, Any]]:
    """The task instances of a run that did not succeed (for the console's summary)."""
    try:
        instances = run.get_task_instances()
    except Exception:  # the console's summary must not hide the run's own outcome
        return []
    return [{"task": ti.task_id, "map_index": ti.map_index, "state": str(ti.state) if ti.state else None}
            for ti in sorted(instances, key=lambda ti: (ti.task_id, ti.map_index)) if ti.state != "success"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="date_from", type=date.fromisoformat, required=True)
    parser.add_argument("--to", dest="date_to", type=date.fromisoformat, required=True)
    parser.add_argument("dag_ids", nargs="+")
    args = parser.parse_args(argv)
    outcomes = run_dags(args.dag_ids, args.date_from, args.date_to)
    # run_dags stops at the first failed DAG, so success means every DAG ran and succeeded.
    succeeded = len(outcomes) == len(args.dag_ids) and all(o[1] == "success" for o in outcomes)
    return 0 if succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
