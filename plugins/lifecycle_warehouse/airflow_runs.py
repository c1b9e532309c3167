"""Run the project's DAGs for real with Airflow's own test runner (`DAG.test`, what
`airflow dags test` calls), several DAGs in one process so that Airflow's start-up (~6 s)
is paid once.

    python -m lifecycle_warehouse.airflow_runs --from 2026-09-01 --to 2026-10-30 crm_ingest web_ingest

Each DAG gets one run whose logical date is the day after `--to` (so its data interval
is the last day) and whose conf covers the whole range (`date_from`, `date_to`). The
process must run in `runtime.environment()` (the CLI does that).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime, timedelta, timezone


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
    outcomes = []
    for dag_id in dag_ids:
        dag = bag.get_dag(dag_id)
        if dag is None:
            raise SystemExit(f"No DAG {dag_id!r} in {DAGS_FOLDER}")
        started = time.monotonic()
        print(f"==> {dag_id}: one run for {date_from} … {date_to}", flush=True)
        run = dag.test(logical_date=logical_date, run_conf=conf)
        state = str(getattr(run, "state", "unknown"))
        problem = tasks_not_run(run) if state == "success" else None
        if problem:
            print(f"==> {dag_id}: the run says success, but {problem}", flush=True)
            state = "incomplete"
        outcomes.append((dag_id, state, time.monotonic() - started))
        print(f"==> {dag_id}: {state} in {outcomes[-1][2]:.1f} s", flush=True)
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
