"""The warehouse DAG's dbt step (lifecycle_warehouse.dbt_step) with real dbt on a real
warehouse, without Airflow: one `dbt build` whose failed data test is reported by the
task of its model (its downstream models were skipped), and the retries that build one
model alone once the data is fixed. The DAG wiring is in tests/test_dagbag.py; a whole
run in the e2e tests. Runtime: ~60 s."""

from __future__ import annotations

import psycopg
import pytest

from lifecycle_warehouse import dbt_runner, dbt_step, warehouse_tasks
from lifecycle_warehouse.bootstrap import bootstrap
from tests.integration.test_dbt_incremental import LIFECYCLE_FIXTURE

RUN_ID = "manual__test-dbt-step"


@pytest.fixture
def planned_warehouse(warehouse_url, tmp_path, monkeypatch):
    # the step reads the project's manifest (as the DAG does); a fresh clone has none before
    # the first `dbt parse` (the e2e run makes one when it runs first)
    if not (dbt_runner.DBT_PROJECT_DIR / "target" / "manifest.json").exists():
        dbt_runner.parse_manifest(url=warehouse_url)
    bootstrap(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(LIFECYCLE_FIXTURE.read_text())
        conn.execute("call lifecycle_dev.deliver('2024-06-20')")
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "logs"))
    warehouse_tasks.plan_build(warehouse_url, RUN_ID)  # the run holds the warehouse, as in the DAG
    return warehouse_url


def test_a_failed_data_test_is_reported_by_its_model_and_a_retry_builds_it_alone(planned_warehouse):
    with psycopg.connect(planned_warehouse, autocommit=True) as conn:
        order_id = conn.execute(
            "update raw.shop_orders set status = 'on_hold' where order_id = "
            "(select min(order_id) from raw.shop_orders) returning order_id"
        ).fetchone()[0]

    summary = dbt_step.build_all(RUN_ID)
    orders = summary["stg_shop__orders"]
    assert orders["status"] == "success", "the view builds; its accepted_values test fails"
    assert [t["test"] for t in orders["failed_tests"]] == ["accepted_values_stg_shop__orders_status__pending__paid__shipped__delivered__cancelled__refunded"]
    assert summary["int_orders__orders"]["status"] == "skipped", "dbt build skips what reads a failed model"
    assert summary["stg_crm__contacts"]["status"] == "success"

    with pytest.raises(dbt_step.DbtStepError, match="stg_shop__orders: built, but its data tests failed: accepted_values"):
        dbt_step.report("stg_shop__orders", summary, RUN_ID, try_number=1)
    dbt_step.report("stg_crm__contacts", summary, RUN_ID, try_number=1)  # only reported

    # the retry builds the model alone: still failing while the data is bad, then passing
    with pytest.raises(dbt_step.DbtStepError, match="accepted_values"):
        dbt_step.report("stg_shop__orders", summary, RUN_ID, try_number=2)
    with psycopg.connect(planned_warehouse, autocommit=True) as conn:
        conn.execute("update raw.shop_orders set status = 'paid' where order_id = %s", (order_id,))
    dbt_step.report("stg_shop__orders", summary, RUN_ID, try_number=3)
    # the models the step's build skipped build themselves once their upstream passed, as
    # their tasks run in the graph's order
    nodes = dbt_step.load_nodes()
    upstream = {node.name: set(node.upstream) for node in nodes}
    needed, todo = set(), ["int_orders__orders"]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += upstream[name]
    skipped = [n.name for n in nodes if n.name in needed and summary[n.name]["status"] == "skipped"]
    assert "int_orders__orders" in skipped and len(skipped) > 1
    for name in skipped:
        dbt_step.report(name, summary, RUN_ID, try_number=1)
    with psycopg.connect(planned_warehouse) as conn:
        assert conn.execute("select count(*) from intermediate.int_orders__orders").fetchone()[0] > 0


def test_dbt_connections_get_the_statement_timeout(warehouse_url, tmp_path, monkeypatch):
    """Nothing hangs: dbt's sessions run with the project's statement timeout (PGOPTIONS,
    since dbt's profile has no options), and the password comes from the password file."""
    import subprocess

    monkeypatch.setenv("LW_STATEMENT_TIMEOUT_SECONDS", "1234")
    env = dbt_runner.dbt_env(warehouse_url)
    env.update(DBT_TARGET_PATH=str(tmp_path / "target"), DBT_LOG_PATH=str(tmp_path / "logs"))
    shown = subprocess.run(
        [dbt_runner.dbt_executable(), "show", "--inline",
         "select current_setting('statement_timeout') as statement_timeout", "--output", "json", "--quiet"],
        env=env, cwd=dbt_runner.DBT_PROJECT_DIR, capture_output=True, text=True, check=True,
    ).stdout
    assert '"statement_timeout": "1234s"' in shown, shown
