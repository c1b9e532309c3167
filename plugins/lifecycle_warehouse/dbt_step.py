"""The warehouse DAG's dbt step: one `dbt build` of the whole project, then one Airflow task
per model and seed that reports its outcome (and its data tests'), so that the UI shows
which model failed, and a failed model is retried on its own.

Why not one `dbt build --select <model>` per task (astronomer-cosmos' default): every dbt
invocation pays ~3 s of start-up and parsing, which made the DAG's dbt step 7× one `dbt
build` of the same project. Why not Cosmos' ExecutionMode.WATCHER, which has the same
shape: its producer pushes an XCom per dbt node from dbt's log callback (about 0.2 s each
under `airflow dags test`, 475 nodes here: 112 s for a 20 s build), and its sensors must run
beside the producer (deferred, or poking), which `dags test` cannot do. docs/benchmark.md
has the measurements.

- `build_all` (the step's first task) runs `dbt build` for the run (environment variable
  LW_WAREHOUSE_RUN_ID: the dbt project takes its plan, macros/warehouse_builds.sql) and
  returns one small summary per model and seed: dbt's status, message and time, and the
  failed data tests reported with it. It fails only when dbt could not build at all (an
  error before any node ran, a failed hook, no results), never for a failed node.
- `report` (one task per model or seed, in the dbt graph's order) succeeds when its node
  and its tests passed; raises dbt's message when they did not (so its downstream tasks do
  not run); and builds the node itself (`dbt build --select <node>`, its tests included)
  when it is retried, or when `build_all` skipped it (an upstream node failed, then
  passed on its own retry).

A data test is reported with its model; a test over several models (relationships, a
singular test in tests/*.sql) with the one of them built last, whose task also waits for
the others. A node built alone takes the tests that can run then (dbt's indirect selection
`buildable`): a relationships test to a model built later waits for that model's build.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lifecycle_warehouse import dbt_runner

log = logging.getLogger(__name__)

# Resource types that get a task (tests are reported with their node; unit tests run in
# `make test`; exposures and hooks have nothing to show).
BUILT_TYPES = ("model", "seed", "snapshot")
EXCLUDE = ("resource_type:unit_test", "resource_type:exposure")
FAILED = ("error", "fail", "runtime error")
# The warehouse DAG run a dbt command builds for (macros/warehouse_builds.sql).
RUN_ID_ENV = "LW_WAREHOUSE_RUN_ID"


class DbtStepError(RuntimeError):
    """dbt could not build at all, or a node did not build: the message says which and why."""


@dataclass(frozen=True)
class Node:
    """A model, seed or snapshot of the project, as a task of the dbt step."""

    name: str
    unique_id: str
    resource_type: str
    upstream: tuple[str, ...]  # names of the nodes whose tasks come first
    tests: tuple[str, ...]  # unique ids of the data tests reported with it


def manifest_path() -> Path:
    return dbt_runner.DBT_PROJECT_DIR / "target" / "manifest.json"


def nodes_of(manifest: Mapping) -> list[Node]:
    """The step's tasks from dbt's manifest, in a topological order: one per model, seed and
    snapshot, with the data tests each reports and the nodes it waits for."""
    all_nodes = manifest["nodes"]
    built = {uid: node for uid, node in all_nodes.items() if node["resource_type"] in BUILT_TYPES}
    parents = {uid: [p for p in _depends_on(node) if p in built] for uid, node in built.items()}
    order = _topological(parents)
    position = {uid: i for i, uid in enumerate(order)}

    tests: dict[str, list[str]] = {uid: [] for uid in built}
    waits: dict[str, set[str]] = {uid: set(parents[uid]) for uid in built}
    for uid, node in all_nodes.items():
        if node["resource_type"] != "test":
            continue
        tested = [p for p in _depends_on(node) if p in built]
        if not tested:
            continue
        # a test over several nodes (relationships, a singular test) can only pass once all
        # are built: it is reported with the one built last, whose task waits for the others
        owner = max(tested, key=position.__getitem__)
        tests[owner].append(uid)
        waits[owner].update(p for p in tested if p != owner)
    return [
        Node(
            name=built[uid]["name"],
            unique_id=uid,
            resource_type=built[uid]["resource_type"],
            upstream=tuple(sorted(built[p]["name"] for p in waits[uid])),
            tests=tuple(sorted(tests[uid])),
        )
        for uid in order
    ]


def _depends_on(node: Mapping) -> list[str]:
    return node.get("depends_on", {}).get("nodes", [])  # a seed depends on no node


def _topological(parents: Mapping[str, list[str]]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(uid: str) -> None:
        if uid in seen:
            return
        seen.add(uid)
        for parent in sorted(parents[uid]):
            visit(parent)
        order.append(uid)

    for uid in sorted(parents):
        visit(uid)
    return order


def load_nodes(path: Path | None = None) -> list[Node]:
    """The nodes of the manifest `dbt parse` wrote (read when the DAG file is parsed: a
    file, no database)."""
    return nodes_of(json.loads((path or manifest_path()).read_text(encoding="utf-8")))


# --------------------------------------------------------------------------- results


def summarise(run_results: Mapping, nodes: Iterable[Node]) -> dict[str, dict]:
    """Per node name: dbt's status, message and seconds, and its failed tests (name,
    status, message). A node that dbt did not run is absent."""
    by_id = {r["unique_id"]: r for r in run_results.get("results", [])}
    summary = {}
    for node in nodes:
        result = by_id.get(node.unique_id)
        if result is None:
            continue
        failed_tests = [
            {"test": test_id.split(".")[2], "status": by_id[test_id]["status"],
             "message": by_id[test_id].get("message") or ""}
            for test_id in node.tests
            if test_id in by_id and by_id[test_id]["status"] in FAILED
        ]
        summary[node.name] = {
            "status": result["status"],
            "message": result.get("message") or "",
            "seconds": round(result.get("execution_time") or 0.0, 3),
            "failed_tests": failed_tests,
        }
    return summary


def problem(name: str, result: Mapping) -> str | None:
    """Why a node's result is not a success, or None."""
    if result["status"] in FAILED:
        return f"dbt {name}: {result['status']}: {result['message']}"
    if result["failed_tests"]:
        tests = "; ".join(f"{t['test']} ({t['status']}: {t['message']})" for t in result["failed_tests"])
        return f"dbt {name}: built, but its data tests failed: {tests}"
    return None


def _target_dir() -> Path:
    return Path(os.environ.get("DBT_TARGET_PATH") or dbt_runner.DBT_PROJECT_DIR / "target")


def _run_dbt(args: list[str], run_id: str) -> tuple[int, dict | None]:
    """`dbt <args>` in this process, building for the warehouse run (its output goes to the
    task log), and its run results. The run id goes in the environment (RUN_ID_ENV,
    macros/warehouse_builds.sql), not in `--vars`: a change of vars makes dbt parse the
    whole project again (~6 s)."""
    results_file = _target_dir() / "run_results.json"
    results_file.unlink(missing_ok=True)  # never read an older invocation's results
    previous = os.environ.get(RUN_ID_ENV)
    os.environ[RUN_ID_ENV] = run_id
    try:
        code = dbt_runner.run_in_process(args)
    finally:
        if previous is None:
            del os.environ[RUN_ID_ENV]
        else:
            os.environ[RUN_ID_ENV] = previous
    results = json.loads(results_file.read_text(encoding="utf-8")) if results_file.exists() else None
    return code, results


def build_all(run_id: str, nodes: list[Node] | None = None) -> dict[str, dict]:
    """The step's one `dbt build` (no unit tests): the summary per node. Raises
    DbtStepError when dbt could not build at all."""
    nodes = nodes if nodes is not None else load_nodes()
    code, results = _run_dbt(["build", "--exclude", *EXCLUDE], run_id)
    if results is None:
        raise DbtStepError(f"`dbt build` wrote no run results (exit {code}): it could not start; see its output above")
    hooks = [r for r in results["results"] if r["unique_id"].startswith("operation.") and r["status"] in FAILED]
    if hooks:
        raise DbtStepError("; ".join(f"dbt hook {r['unique_id'].split('.')[-1]}: {r.get('message')}" for r in hooks))
    summary = summarise(results, nodes)
    if not summary:
        raise DbtStepError(f"`dbt build` ran no model or seed (exit {code}); see its output above")
    failed = [name for name, result in summary.items() if problem(name, result)]
    log.info("dbt build: %d node(s) built in %.1f s, %d failed%s", len(summary), results.get("elapsed_time") or 0,
             len(failed), f": {', '.join(failed)}" if failed else "")
    return summary


def report(name: str, summary: Mapping[str, dict], run_id: str, try_number: int) -> None:
    """The task of one node: its outcome in `build_all`, or, on a retry or when `build_all`
    did not build it, a build of it alone. Raises DbtStepError naming what failed."""
    result = summary.get(name)
    if try_number <= 1 and result is not None and result["status"] != "skipped":
        reason = problem(name, result)
        if reason:
            raise DbtStepError(reason + " (a retry of this task builds it alone)")
        log.info("dbt %s: %s in %.2f s, its data tests passed", name, result["status"], result["seconds"])
        return
    why = "a retry" if try_number > 1 else "not built by the step's dbt build (an upstream node failed first)"
    log.info("dbt %s: %s: building it alone", name, why)
    code, results = _run_dbt(["build", "--select", name, "--indirect-selection", "buildable",
                              "--exclude", *EXCLUDE], run_id)
    if results is None:
        raise DbtStepError(f"`dbt build --select {name}` wrote no run results (exit {code})")
    own = summarise(results, [n for n in load_nodes() if n.name == name])
    if name not in own:
        raise DbtStepError(f"`dbt build --select {name}` did not build {name} (exit {code})")
    reason = problem(name, own[name])
    if reason:
        raise DbtStepError(reason)
    log.info("dbt %s: %s in %.2f s, its data tests passed", name, own[name]["status"], own[name]["seconds"])
