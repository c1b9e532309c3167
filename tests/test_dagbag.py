"""Every DAG file imports, and follows the project's conventions (tags, retries, docs,
owner), without touching a database at parse time."""

from __future__ import annotations

import json
import os

import pytest

from lifecycle_warehouse import dbt_runner, dbt_step, settings
from lifecycle_warehouse.alerts import TaskFailureAlert

EXPECTED_DAGS = {"crm_ingest", "web_ingest", "marketing_ingest", "shop_ingest", "warehouse"}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    # The warehouse DAG is rendered from dbt's manifest: build it (no database needed).
    dummy = "postgresql://nobody@127.0.0.1:1/none"
    dbt_runner.parse_manifest(url=dummy)
    home = tmp_path_factory.mktemp("airflow_home")
    saved = dict(os.environ)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(settings.PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Parsing must not need a database: point at a server that does not exist,
            # so any connection at parse time would show up as an import error.
            "WAREHOUSE_URL": dummy,
            "SHOP_DB_URL": dummy,
        }
    )
    from airflow.dag_processing.dagbag import DagBag

    yield DagBag(dag_folder=str(settings.PROJECT_ROOT / "dags"))
    os.environ.clear()
    os.environ.update(saved)


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_expected_dags(dagbag):
    assert EXPECTED_DAGS <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_conventions(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags, "every DAG has tags"
    assert dag.doc_md and dag.doc_md.strip().startswith("###"), "doc_md is the file's Markdown docstring"
    assert dag.max_active_runs == 1
    for t in dag.tasks:
        assert t.retries >= 2, f"{dag_id}.{t.task_id} has retries={t.retries}"
        # nothing hangs: every task has a timeout, and retries back off
        assert t.execution_timeout is not None, f"{dag_id}.{t.task_id} has no execution_timeout"
        assert t.retry_exponential_backoff > 1, f"{dag_id}.{t.task_id} retries without backoff"
        # someone is told when it fails for good (LW_ALERT_URL; tests/integration/test_alerts.py)
        callbacks = t.on_failure_callback if isinstance(t.on_failure_callback, list) else [t.on_failure_callback]
        assert any(isinstance(c, TaskFailureAlert) for c in callbacks), f"{dag_id}.{t.task_id} sends no alert on failure"
    if dag_id == "warehouse":
        assert dag.dagrun_timeout is not None


def test_ingestion_dags_emit_assets(dagbag):
    for source in ("crm", "web", "marketing", "shop"):
        dag = dagbag.dags[f"{source}_ingest"]
        outlets = [o for t in dag.tasks for o in t.outlets]
        assert [o.name for o in outlets] == [f"raw_{source}"]


def test_warehouse_has_a_task_per_model_and_seed_after_one_dbt_build(dagbag):
    """One `dbt build` (build_all), then a task per model and seed in the dbt graph's order,
    so that the UI names a failed model; unit tests (fixtures, not data) stay in `make test`,
    so a scheduled run does not pay for them."""
    manifest = json.loads((dbt_runner.DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    built = {node["name"] for node in manifest["nodes"].values() if node["resource_type"] in ("model", "seed")}
    dag = dagbag.dags["warehouse"]
    tasks = {t.task_id.removeprefix("dbt_build."): t for t in dag.tasks if t.task_id.startswith("dbt_build.")}
    assert set(tasks) == built | {"build_all"}
    for name, task in tasks.items():
        if name != "build_all":
            assert "dbt_build.build_all" in task.get_flat_relative_ids(upstream=True), name
    assert "dbt_build.stg_shop__orders" in tasks["fct_orders"].get_flat_relative_ids(upstream=True)
    assert "resource_type:unit_test" in dbt_step.EXCLUDE


def test_warehouse_plans_the_build_before_dbt_and_logs_it_after(dagbag):
    """plan_build runs first (every dbt command of the run reads its plan in the dbt project,
    through the environment variable LW_WAREHOUSE_RUN_ID, see macros/warehouse_builds.sql); the build is logged
    as successful only after every dbt task."""
    dag = dagbag.dags["warehouse"]
    dbt_tasks = [task for task in dag.tasks if task.task_id.startswith("dbt_build.")]
    assert dbt_tasks
    for task in dbt_tasks:
        assert "plan_build" in task.get_flat_relative_ids(upstream=True), task.task_id
        assert "record_build" in task.get_flat_relative_ids(upstream=False), task.task_id
    assert dag.get_task("record_build").downstream_task_ids == {"fit_clv"}


def test_warehouse_fits_clv_after_dbt_and_before_the_marts_gate(dagbag):
    """customer_clv and clv_model_params are written from the freshly built fct_orders and
    validated by the marts gate like every other BI relation."""
    dag = dagbag.dags["warehouse"]
    fit = dag.get_task("fit_clv")
    assert "dbt_build.fct_orders" in fit.get_flat_relative_ids(upstream=True)
    assert fit.downstream_task_ids == {"marts_quality_gate"}


def test_warehouse_run_ends_whatever_happened_before(dagbag):
    """The run holds the warehouse from its plan to end_build (manual builds wait), so
    end_build is a teardown of the plan: it runs after every task, failed or not."""
    dag = dagbag.dags["warehouse"]
    end = dag.get_task("end_build")
    assert end.is_teardown
    assert dag.get_task("plan_build").is_setup
    assert {task.task_id for task in end.upstream_list} == {"plan_build", "publish"}
    assert dag.get_task("publish").downstream_task_ids == {"end_build"}


@pytest.mark.parametrize("mode", ["cosmos", "cosmos_watcher"])
def test_the_cosmos_dbt_steps_the_benchmark_compares_still_parse(dagbag, mode, monkeypatch):
    """LW_DBT_STEP=cosmos (a `dbt build --select <model>` task per model) and cosmos_watcher
    (Cosmos' watcher mode, its producer first): docs/benchmark.md measures them against the
    default."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("LW_DBT_STEP", mode)
    bag = DagBag(dag_folder=str(settings.PROJECT_ROOT / "dags" / "warehouse.py"))
    assert not bag.import_errors, bag.import_errors
    tasks = {t.task_id for t in bag.dags["warehouse"].tasks}
    if mode == "cosmos":
        assert "dbt_build.fct_orders_model_build" in tasks
    else:
        producer = bag.dags["warehouse"].get_task("dbt_build.dbt_producer_watcher")
        assert "dbt_build.fct_orders.run" in producer.get_flat_relative_ids(upstream=False)
