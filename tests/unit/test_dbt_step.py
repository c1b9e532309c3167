"""The warehouse DAG's dbt step (lifecycle_warehouse.dbt_step), without dbt: which tasks the
manifest gives and what each waits for, how a build's results become each task's outcome,
and when a task builds its node alone."""

from __future__ import annotations

import os

import pytest

from lifecycle_warehouse import dbt_step

P = "lifecycle_warehouse"


def _node(kind: str, name: str, parents=(), attached=None) -> tuple[str, dict]:
    uid = f"{kind}.{P}.{name}"
    node = {"unique_id": uid, "name": name, "resource_type": kind,
            "depends_on": {"nodes": [f"{p.split(':')[0]}.{P}.{p.split(':')[1]}" for p in parents]}}
    if kind == "seed":
        node["depends_on"] = {"macros": []}  # a seed depends on no node: dbt omits the key
    if attached:
        node["attached_node"] = f"model.{P}.{attached}"
    return uid, node


MANIFEST = {"nodes": dict([
    _node("seed", "fx_rates"),
    _node("model", "stg_orders"),
    _node("model", "stg_refunds"),
    _node("model", "orders", ["model:stg_orders", "seed:fx_rates"]),
    _node("model", "kpi_daily", ["model:orders"]),
    _node("model", "cohorts", ["model:orders"]),
    # a generic test on stg_refunds that reads stg_orders (relationships)
    _node("test", "relationships_refunds_orders", ["model:stg_refunds", "model:stg_orders"], attached="stg_refunds"),
    _node("test", "not_null_orders_id", ["model:orders"], attached="orders"),
    # a singular test over two sibling marts: reported with one, which waits for the other
    _node("test", "assert_marts_agree", ["model:kpi_daily", "model:cohorts"]),
    _node("unit_test", "orders_unit", ["model:orders"]),
])}


def test_one_task_per_model_and_seed_in_graph_order_with_the_tests_it_reports():
    nodes = {n.name: n for n in dbt_step.nodes_of(MANIFEST)}
    assert set(nodes) == {"fx_rates", "stg_orders", "stg_refunds", "orders", "kpi_daily", "cohorts"}
    order = [n.name for n in dbt_step.nodes_of(MANIFEST)]
    assert order.index("orders") > max(order.index("stg_orders"), order.index("fx_rates"))
    assert nodes["orders"].upstream == ("fx_rates", "stg_orders")
    assert nodes["orders"].tests == (f"test.{P}.not_null_orders_id",)
    # the relationships test is reported with its model, which then waits for the other one
    assert nodes["stg_refunds"].tests == (f"test.{P}.relationships_refunds_orders",)
    assert nodes["stg_refunds"].upstream == ("stg_orders",)
    # the singular test goes to one of the two marts, which waits for the other
    owner = next(n for n in nodes.values() if f"test.{P}.assert_marts_agree" in n.tests)
    other = {"kpi_daily", "cohorts"} - {owner.name}
    assert owner.name in {"kpi_daily", "cohorts"} and other <= set(owner.upstream)
    assert not nodes[other.pop()].tests


def test_a_test_on_a_model_that_reads_a_later_model_is_reported_with_the_later_one():
    # e.g. a relationships test from int_identity__shop_customers to int_identity__persons,
    # which reads it: the test can only pass once both are built
    manifest = {"nodes": dict([
        _node("model", "a"),
        _node("model", "b", ["model:a"]),
        _node("test", "a_vs_b", ["model:a", "model:b"], attached="a"),
    ])}
    nodes = {n.name: n for n in dbt_step.nodes_of(manifest)}
    assert nodes["a"].upstream == () and nodes["b"].upstream == ("a",)
    assert nodes["a"].tests == () and nodes["b"].tests == (f"test.{P}.a_vs_b",)


def _results(*rows) -> dict:
    return {"results": [{"unique_id": uid, "status": status, "message": msg, "execution_time": 0.5}
                        for uid, status, msg in rows]}


def test_summary_names_failed_tests_and_problems():
    nodes = dbt_step.nodes_of(MANIFEST)
    summary = dbt_step.summarise(_results(
        (f"model.{P}.orders", "success", "SELECT 10"),
        (f"test.{P}.not_null_orders_id", "fail", "Got 2 results, configured to fail if != 0"),
        (f"model.{P}.kpi_daily", "skipped", ""),
        (f"model.{P}.stg_orders", "error", "relation does not exist"),
    ), nodes)
    assert set(summary) == {"orders", "kpi_daily", "stg_orders"}
    assert "not_null_orders_id (fail: Got 2 results" in dbt_step.problem("orders", summary["orders"])
    assert "relation does not exist" in dbt_step.problem("stg_orders", summary["stg_orders"])
    assert dbt_step.problem("kpi_daily", summary["kpi_daily"]) is None


def _ok(seconds: float = 0.5) -> dict:
    return {"status": "success", "message": "", "seconds": seconds, "failed_tests": []}


def test_report_succeeds_fails_or_builds_alone(monkeypatch):
    builds = []
    monkeypatch.setattr(dbt_step, "_run_dbt", lambda args, run_id: builds.append((args, run_id)) or (0, _results(
        (f"model.{P}.kpi_daily", "success", "INSERT 0 1"))))
    monkeypatch.setattr(dbt_step, "load_nodes", lambda: dbt_step.nodes_of(MANIFEST))
    failed = {**_ok(), "failed_tests": [{"test": "not_null_orders_id", "status": "fail", "message": "Got 2"}]}
    summary = {"orders": failed, "cohorts": _ok(), "kpi_daily": {**_ok(), "status": "skipped"}}

    dbt_step.report("cohorts", summary, "run-1", try_number=1)
    assert builds == [], "a node the step built is only reported"
    with pytest.raises(dbt_step.DbtStepError, match="orders: built, but its data tests failed: not_null_orders_id"):
        dbt_step.report("orders", summary, "run-1", try_number=1)
    assert builds == [], "a first failure is reported, not built again"

    # skipped by the step's build (an upstream node failed, then passed on its own retry)
    dbt_step.report("kpi_daily", summary, "run-1", try_number=1)
    args, run_id = builds[-1]
    assert args[:5] == ["build", "--select", "kpi_daily", "--indirect-selection", "buildable"]
    assert run_id == "run-1"
    # a retry builds the node alone, and fails with dbt's reason when it fails again
    monkeypatch.setattr(dbt_step, "_run_dbt", lambda args, run_id: (1, _results(
        (f"model.{P}.orders", "success", "SELECT 10"), (f"test.{P}.not_null_orders_id", "fail", "Got 2"))))
    with pytest.raises(dbt_step.DbtStepError, match="not_null_orders_id"):
        dbt_step.report("orders", summary, "run-1", try_number=2)


def test_dbt_builds_for_the_run_through_the_environment_not_vars(monkeypatch, tmp_path):
    """The run id reaches dbt as LW_WAREHOUSE_RUN_ID, only for that invocation: a `--vars`
    that changes at every run would make dbt parse the whole project again."""
    seen = []
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path))
    monkeypatch.delenv(dbt_step.RUN_ID_ENV, raising=False)
    monkeypatch.setattr(dbt_step.dbt_runner, "run_in_process",
                        lambda args: seen.append((args, os.environ.get(dbt_step.RUN_ID_ENV))) or 0)
    assert dbt_step._run_dbt(["build"], "scheduled__2026-09-02") == (0, None)
    assert seen == [(["build"], "scheduled__2026-09-02")]
    assert dbt_step.RUN_ID_ENV not in os.environ
    monkeypatch.setenv(dbt_step.RUN_ID_ENV, "outer")
    dbt_step._run_dbt(["build"], "inner")
    assert seen[-1][1] == "inner" and os.environ[dbt_step.RUN_ID_ENV] == "outer"


def test_build_all_fails_only_when_dbt_could_not_build(monkeypatch):
    nodes = dbt_step.nodes_of(MANIFEST)
    monkeypatch.setattr(dbt_step, "_run_dbt", lambda args, run_id: (2, None))
    with pytest.raises(dbt_step.DbtStepError, match="no run results"):
        dbt_step.build_all("run-1", nodes)
    monkeypatch.setattr(dbt_step, "_run_dbt", lambda args, run_id: (1, _results(
        (f"operation.{P}.{P}-on-run-start-0", "error", "warehouse run run-1 does not hold the warehouse"))))
    with pytest.raises(dbt_step.DbtStepError, match="does not hold the warehouse"):
        dbt_step.build_all("run-1", nodes)
    monkeypatch.setattr(dbt_step, "_run_dbt", lambda args, run_id: (1, _results(
        (f"model.{P}.stg_orders", "error", "boom"), (f"model.{P}.orders", "skipped", ""))))
    summary = dbt_step.build_all("run-1", nodes)
    assert summary["stg_orders"]["status"] == "error" and summary["orders"]["status"] == "skipped"
