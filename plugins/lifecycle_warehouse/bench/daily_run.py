"""Part of `lw bench`: one daily run end to end through Airflow, and the warehouse DAG's
dbt step against one plain `dbt build` of the same data.

It starts from the history part's warehouse of the longest history, as it was after the
history's full build (a database copy: `create database … template …`), and the landing
zone and shop of that history. Then, with real Airflow runs (`DAG.test`, as `make demo`
runs them), on its own Airflow metadata database on the bench server:

1. the four ingestion DAGs load the measured day; the warehouse is copied again
   (`loaded`: raw holds the day, nothing is built yet);
2. the warehouse DAG runs (plan, raw gate, dbt step, marts gate, publish): with 1, the
   **daily run end to end**. Each task's start and end come from Airflow's task_instance
   table: the shares of ingest, gates, dbt and publish;
3. on fresh copies of `loaded`: one plain `dbt build` (models, seeds and data tests, as
   the DAG builds them; a subprocess, as a user runs it), and the warehouse DAG again for
   each other dbt step mode asked for (`LW_DBT_STEP`: `cosmos`, `cosmos_watcher`). The
   ratio of each mode's dbt step (first task start to last task end of group `dbt_build`)
   to the plain build is the DAG's overhead over dbt.

In place (the large profile: a warehouse of 100,000 customers and a year takes tens of GB,
and each copy as much again), it goes on from the history part's warehouse as that part
leaves it (the measured day built) and runs the day after: steps 1 and 2 without copies,
no step 3.

Every DAG runs under `dags test` in one process per call, tasks one after another; a
deployment's scheduler adds its own latency per task, and runs the ingestion DAGs side by
side. The end-to-end figure is the sum of the five runs' spans (Airflow's start-up per
process excluded; it is reported apart).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg

from lifecycle_warehouse.bench import databases
from lifecycle_warehouse.bench.history import BenchError, environment_set

INGESTION_DAGS = ("crm_ingest", "web_ingest", "marketing_ingest", "shop_ingest")
WAREHOUSE_DAG = "warehouse"
DBT_GROUP = "dbt_build"
# The tasks of the warehouse DAG as steps of a daily run, in their order.
WAREHOUSE_STEPS = {
    "plan_build": "plan",
    "raw_quality_gate": "raw gate",
    "record_build": "dbt",  # logs the build: part of the dbt step's cost
    "marts_quality_gate": "marts gate",
    "publish": "publish",
    "end_build": "publish",
}
STEP_ORDER = ("ingest", "plan", "raw gate", "dbt", "marts gate", "publish")
COMPARED_MODES = ("cosmos", "cosmos_watcher")
# What the DAG's dbt step builds: models, seeds, snapshots and their data tests.
DBT_BUILD_ARGS = ["build", "--exclude", "resource_type:unit_test", "resource_type:exposure"]

Report = Callable[[str], None]


class DailyRunError(BenchError):
    """An Airflow run or the plain build failed: its figures would mislead."""


@dataclass(frozen=True)
class TaskSpan:
    dag_id: str
    task_id: str
    start: datetime
    end: datetime
    state: str

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


# --- pure parts (unit-tested) ------------------------------------------------------------


def step_of(dag_id: str, task_id: str) -> str:
    """The step of a daily run a task belongs to."""
    if dag_id in INGESTION_DAGS:
        return "ingest"
    if task_id.startswith(f"{DBT_GROUP}."):
        return "dbt"
    return WAREHOUSE_STEPS.get(task_id, "other")


def span_seconds(spans: Iterable[TaskSpan]) -> float:
    """First start to last end: what the tasks cost together, waits between them included."""
    spans = list(spans)
    if not spans:
        return 0.0
    return (max(s.end for s in spans) - min(s.start for s in spans)).total_seconds()


def dbt_step_seconds(spans: Iterable[TaskSpan]) -> float:
    """The warehouse DAG's dbt step: every task of group `dbt_build`, first start to last end."""
    return span_seconds(s for s in spans if s.task_id.startswith(f"{DBT_GROUP}."))


def end_to_end(spans: Sequence[TaskSpan]) -> dict:
    """The daily run's seconds (the sum of each DAG run's span: they run one after another)
    and each step's seconds and share. A step's seconds are its tasks' spans within each
    DAG run (ingest: the ingestion DAGs' whole spans)."""
    by_dag: dict[str, list[TaskSpan]] = {}
    for s in spans:
        by_dag.setdefault(s.dag_id, []).append(s)
    total = sum(span_seconds(dag_spans) for dag_spans in by_dag.values())
    steps: dict[str, float] = {}
    for dag_id, dag_spans in by_dag.items():
        if dag_id in INGESTION_DAGS:
            steps["ingest"] = steps.get("ingest", 0.0) + span_seconds(dag_spans)
            continue
        by_step: dict[str, list[TaskSpan]] = {}
        for s in dag_spans:
            by_step.setdefault(step_of(dag_id, s.task_id), []).append(s)
        for step, step_spans in by_step.items():
            # the dbt step's record_build follows the group: count the group's span plus it
            seconds = (dbt_step_seconds(step_spans) + sum(x.seconds for x in step_spans if x.task_id == "record_build")
                       if step == "dbt" else sum(x.seconds for x in step_spans))
            steps[step] = steps.get(step, 0.0) + seconds
    accounted = sum(steps.values())
    ordered = {step: steps[step] for step in (*STEP_ORDER, "other") if step in steps}
    return {
        "seconds": total,
        "steps_seconds": ordered,
        "steps_share": {step: (seconds / total if total else None) for step, seconds in ordered.items()},
        # between tasks: Airflow's own work under `dags test` (state changes, XCom, logs)
        "between_tasks_seconds": max(total - accounted, 0.0),
        "dag_runs_seconds": {dag_id: span_seconds(dag_spans) for dag_id, dag_spans in by_dag.items()},
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return numerator / denominator


def markdown(results: Mapping) -> list[str]:
    """The part's section of bench/results.md."""
    daily = results["end_to_end"]
    lines = [
        "## One daily run end to end (Airflow)",
        "",
        f"Day {results['day']} after {results['history_days']} days of history, every DAG under `dags test` "
        f"(tasks one after another): **{daily['seconds']:.1f} s** "
        f"(plus Airflow's start-up, {results['airflow_startup_seconds']:.1f} s per process, twice).",
        "",
        "| step | seconds | share |",
        "| --- | ---: | ---: |",
    ]
    for step, seconds in daily["steps_seconds"].items():
        lines.append(f"| {step} | {seconds:.1f} | {daily['steps_share'][step]:.0%} |")
    lines.append(f"| between tasks (Airflow) | {daily['between_tasks_seconds']:.1f} | "
                 f"{daily['between_tasks_seconds'] / daily['seconds']:.0%} |")
    if results.get("in_place"):
        step = results["modes"]["report"]["dbt_step_seconds"]
        return [*lines, "",
                f"Run in place on the history's warehouse (too big to copy): the warehouse DAG's dbt step took "
                f"{step:.1f} s; the plain `dbt build` and the other dbt step modes, which need copies of the "
                "warehouse, were not compared (the medium profile compares them)."]
    lines += [
        "",
        "## The warehouse DAG's dbt step against one `dbt build`",
        "",
        "Same data (copies of the warehouse with the day loaded, nothing built yet), same build: "
        "models, seeds and data tests. A mode's seconds: its task group `dbt_build`, first start to last end.",
        "",
        "| dbt step | seconds | × `dbt build` | tasks |",
        "| --- | ---: | ---: | ---: |",
        f"| plain `dbt build` (subprocess) | {results['dbt_build_seconds']:.1f} | 1.00 | – |",
    ]
    for mode, figures in results["modes"].items():
        lines.append(f"| warehouse DAG, `LW_DBT_STEP={mode}` | {figures['dbt_step_seconds']:.1f} | "
                     f"{figures['vs_dbt_build']:.2f} | {figures['tasks']} |")
    return lines


# --- measuring ---------------------------------------------------------------------------


def _airflow_database(admin_url: str, airflow_home: Path) -> str:
    """The bench server's own Airflow metadata database (kept between benches). One not
    migrated yet (new, or its server was removed) is migrated, whatever the markers of an
    earlier one in AIRFLOW_HOME say."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = 'airflow'").fetchone() is None:
            conn.execute("create database airflow")
    url = databases.database_url(admin_url, "airflow")
    with psycopg.connect(url) as conn:
        migrated = conn.execute("select to_regclass('public.alembic_version') is not null").fetchone()[0]
    if not migrated:
        for marker in airflow_home.glob(".migrated-*"):
            marker.unlink()
    return url


def _run_dags(dag_ids: Sequence[str], day: date, env: Mapping[str, str], report: Report) -> float:
    """One run of each DAG for `day` in one process; its wall seconds. Raises when one failed."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "lifecycle_warehouse.airflow_runs", "--from", day.isoformat(), "--to", day.isoformat(),
         *dag_ids],
        env=dict(env), capture_output=True, text=True,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-40:])
        raise DailyRunError(f"Airflow run of {', '.join(dag_ids)} for {day} failed:\n{tail}")
    report(f"  {', '.join(dag_ids)}: {wall:.1f} s (one process)")
    return wall


def _task_spans(airflow_url: str, dag_ids: Sequence[str], logical_date: datetime) -> list[TaskSpan]:
    """Every task instance of the runs of `dag_ids` at `logical_date` (dags test replaces an
    earlier run of the same date, so there is one)."""
    with psycopg.connect(airflow_url) as conn:
        rows = conn.execute(
            """
            select ti.dag_id, ti.task_id, ti.start_date, ti.end_date, ti.state
            from task_instance as ti
            join dag_run as dr on dr.dag_id = ti.dag_id and dr.run_id = ti.run_id
            where ti.dag_id = any(%s) and dr.logical_date = %s
            """,
            (list(dag_ids), logical_date),
        ).fetchall()
    spans = [TaskSpan(*row) for row in rows if row[2] is not None and row[3] is not None]
    failed = sorted(f"{s.dag_id}.{s.task_id} ({s.state})" for s in spans if s.state != "success")
    if failed or not spans:
        raise DailyRunError(f"tasks did not succeed: {', '.join(failed) or 'no task ran'}")
    return spans


def _airflow_startup_seconds(wall: float, spans: Sequence[TaskSpan]) -> float:
    """A process's wall time outside its DAG runs: Airflow's import, DagBag parse, shutdown."""
    by_dag: dict[str, list[TaskSpan]] = {}
    for s in spans:
        by_dag.setdefault(s.dag_id, []).append(s)
    return max(wall - sum(span_seconds(v) for v in by_dag.values()), 0.0)


def _plain_dbt_build(warehouse_url: str, env: Mapping[str, str]) -> float:
    """One `dbt build` as a user runs it (`lw dbt build`: a dbt process), timed."""
    from lifecycle_warehouse import dbt_runner

    started = time.perf_counter()
    code = dbt_runner.run([*DBT_BUILD_ARGS, "--quiet"], url=warehouse_url, check=False,
                          env={k: env[k] for k in ("DBT_TARGET_PATH", "DBT_LOG_PATH")})
    wall = time.perf_counter() - started
    if code != 0:
        raise DailyRunError(f"plain `dbt build` failed (exit {code}): see dbt's output above")
    return wall


def run_daily(admin_url: str, *, history_template: str, shop_url: str, landing_dir: Path, day: date,
              history_days: int, work_dir: Path, modes: Sequence[str] = (), report: Report = print,
              keep_database: str = "bench_daily", in_place: bool = False) -> dict:
    """Measure the daily run of `day` end to end and the dbt step modes (module docstring).
    Leaves the warehouse of the end-to-end run in database `keep_database` (for the gates
    part); drops the other copies. `in_place`: the run goes on in database
    `history_template` itself, which then holds its warehouse; no copies, so neither the
    plain build nor other modes are compared (a warehouse too big to copy)."""
    from lifecycle_warehouse import dbt_runner, runtime

    # The warehouse DAG is drawn from dbt_project/target/manifest.json (as `lw pipeline`
    # does, parse first: a fresh clone has none, an old one may be stale).
    if dbt_runner.run(["parse", "--quiet"], url=databases.database_url(admin_url, history_template),
                      check=False) != 0:
        raise DailyRunError("`dbt parse` failed: see dbt's output above")
    airflow_home = work_dir / "bench-airflow"
    airflow_url = _airflow_database(admin_url, airflow_home)
    daily_url = (databases.database_url(admin_url, history_template) if in_place
                 else databases.copy(admin_url, history_template, keep_database))
    target = work_dir / "bench-target"
    variables = {
        "WAREHOUSE_URL": daily_url,
        "SHOP_DB_URL": shop_url,
        "LANDING_DIR": str(landing_dir),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": runtime.sqlalchemy_url(airflow_url),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": runtime.sqlalchemy_url(airflow_url),
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(target / "logs"),
        "LW_DBT_STEP": "report",
    }
    with environment_set(variables):
        runtime.ensure_airflow_db(on_migrate=lambda: report("  migrating the bench's Airflow metadata database …"))
        env = runtime.environment()
        after = day + timedelta(days=1)  # airflow_runs' logical date: the interval is `day`
        logical_date = datetime(after.year, after.month, after.day, tzinfo=timezone.utc)
        report(f"daily run of {day} end to end (Airflow{', in place' if in_place else ''}) …")
        ingest_wall = _run_dags(INGESTION_DAGS, day, env, report)
        ingest_spans = _task_spans(airflow_url, INGESTION_DAGS, logical_date)
        loaded = f"{keep_database}_loaded"
        if not in_place:
            databases.copy(admin_url, keep_database, loaded)
        warehouse_wall = _run_dags([WAREHOUSE_DAG], day, env, report)
        warehouse_spans = _task_spans(airflow_url, [WAREHOUSE_DAG], logical_date)
        spans = ingest_spans + warehouse_spans
        results: dict = {
            "day": day.isoformat(),
            "history_days": history_days,
            "in_place": in_place,
            "end_to_end": end_to_end(spans),
            "airflow_startup_seconds": (_airflow_startup_seconds(ingest_wall, ingest_spans)
                                        + _airflow_startup_seconds(warehouse_wall, warehouse_spans)) / 2,
            "tasks": [{"dag_id": s.dag_id, "task_id": s.task_id, "seconds": round(s.seconds, 3)} for s in spans],
        }
        if in_place:
            results["dbt_build_seconds"] = None
            modes_results = {"report": _mode_figures(warehouse_spans, None)}
        else:
            report("plain `dbt build` of the same day on a copy …")
            copy_url = databases.copy(admin_url, loaded, f"{keep_database}_compare")
            results["dbt_build_seconds"] = _plain_dbt_build(copy_url, {**env, "WAREHOUSE_URL": copy_url})
            report(f"  {results['dbt_build_seconds']:.1f} s")
            modes_results = {"report": _mode_figures(warehouse_spans, results["dbt_build_seconds"])}
            for mode in modes:
                if mode == "report":
                    continue
                report(f"warehouse DAG with LW_DBT_STEP={mode} on a copy …")
                copy_url = databases.copy(admin_url, loaded, f"{keep_database}_compare")
                _run_dags([WAREHOUSE_DAG], day, {**env, "WAREHOUSE_URL": copy_url, "LW_DBT_STEP": mode}, report)
                mode_spans = _task_spans(airflow_url, [WAREHOUSE_DAG], logical_date)
                modes_results[mode] = _mode_figures(mode_spans, results["dbt_build_seconds"])
            databases.drop(admin_url, [loaded, f"{keep_database}_compare"])
        results["modes"] = modes_results
        results["warehouse_dag_dbt_vs_dbt_build"] = modes_results["report"]["vs_dbt_build"]
        compared = ("" if in_place else
                    f" vs dbt build {results['dbt_build_seconds']:.1f} s ("
                    + ", ".join(f"{m} {f['vs_dbt_build']:.2f}×" for m, f in modes_results.items()) + ")")
        report(f"daily run end to end {results['end_to_end']['seconds']:.1f} s; dbt step "
               + ", ".join(f"{m} {f['dbt_step_seconds']:.1f} s" for m, f in modes_results.items()) + compared)
        return results


def _mode_figures(spans: Sequence[TaskSpan], dbt_build_seconds: float | None) -> dict:
    step = dbt_step_seconds(spans)
    tasks = [s for s in spans if s.task_id.startswith(f"{DBT_GROUP}.")]
    return {
        "dbt_step_seconds": step,
        "vs_dbt_build": ratio(step, dbt_build_seconds),
        "tasks": len(tasks),
        "slowest_tasks": sorted(({"task_id": s.task_id, "seconds": round(s.seconds, 2)} for s in tasks),
                                key=lambda t: -t["seconds"])[:5],
    }
