"""The pure parts of `lw bench` (lifecycle_warehouse/bench/history.py): parsing --histories,
summarising dbt's run_results.json, and the tables of results.md. No database, no dbt,
and never a timing assertion: the benchmark measures speed, tests do not."""

from __future__ import annotations

import argparse

import pytest

from lifecycle_warehouse import bench


def _node(unique_id: str, seconds: float, status: str = "success") -> dict:
    return {"unique_id": unique_id, "execution_time": seconds, "status": status}


RUN_RESULTS = {
    "elapsed_time": 9.5,
    "results": [
        _node("seed.lifecycle_warehouse.fx_rates", 0.5),
        _node("model.lifecycle_warehouse.stg_web__events", 0.25),
        _node("model.lifecycle_warehouse.int_web__events", 2.0),
        _node("test.lifecycle_warehouse.unique_int_web__events_event_id.1a2b3c", 0.75, "pass"),
        _node("test.lifecycle_warehouse.not_null_int_web__events_event_id.4d5e6f", 0.25, "pass"),
        _node("unit_test.lifecycle_warehouse.kpi_daily.kpi_daily_rates", 1.5, "pass"),
        _node("test.lifecycle_warehouse.relationships_orders_customer_id.7a8b9c", 0.5, "warn"),
        _node("exposure.lifecycle_warehouse.bi_dashboard", 0.0, "no-op"),
    ],
}


def _history(days: int, models: dict[str, float], wall: float) -> dict:
    """One history's entry of results.json, with what the tables read."""
    return {
        "history_days": days,
        "daily_build": {"wall_seconds": wall, "models": models, "model_seconds": sum(models.values()),
                        "test_seconds": 1.0, "unit_test_seconds": 2.0, "seed_seconds": 0.5},
        "full_build": {"wall_seconds": 10.0 * days},
        "day_load": {"seconds": 0.5, "rows": 1200},
        "history_load": {"seconds": 0.5 * days, "rows": 1200 * days},
        "row_counts": {"raw.web_events": 1000 * days, "intermediate.int_web__events": 990 * days,
                       "marts.kpi_daily": days + 1},
    }


RESULTS = {
    "generated_at": "2026-11-30T10:00:00+00:00",
    "environment": {"cpu_count": 2, "postgres_version": "16.2", "dbt_core_version": "1.11.16",
                    "dbt_postgres_version": "1.11.0"},
    "parameters": {"customers": 300, "histories": [30, 120], "seed": 42, "start": "2026-06-01", "threads": 1},
    "histories": [
        _history(30, {"int_web__events": 1.0, "int_lifecycle__stage_intervals": 2.0}, wall=12.0),
        _history(120, {"int_web__events": 1.1, "int_lifecycle__stage_intervals": 8.0}, wall=18.0),
    ],
}


def test_histories_are_parsed_sorted_and_deduplicated():
    assert bench.parse_histories("120,30") == (30, 120)
    assert bench.parse_histories(" 3, 6 ,6,") == (3, 6)


@pytest.mark.parametrize("text", ["", "30,abc", "0,30", "-5"])
def test_bad_histories_are_refused_with_a_message(text):
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_histories(text)


def test_run_results_are_summarised_per_model_and_per_kind():
    summary = bench.summarise_run_results(RUN_RESULTS)

    assert summary["models"] == {"stg_web__events": 0.25, "int_web__events": 2.0}
    assert summary["model_seconds"] == 2.25
    assert summary["test_seconds"] == 1.5
    assert summary["unit_test_seconds"] == 1.5
    assert summary["seed_seconds"] == 0.5
    assert summary["node_counts"] == {"model": 2, "test": 3, "unit_test": 1, "seed": 1}
    assert summary["dbt_elapsed_seconds"] == 9.5
    assert summary["failed"] == []  # a test of severity warn passed


def test_failed_erroring_and_skipped_nodes_are_listed():
    run_results = {"results": [
        _node("model.p.kpi_daily", 1.0, "error"),
        _node("test.p.unique_x.9", 0.1, "fail"),
        _node("model.p.kpi_monthly", 0.0, "skipped"),
        _node("model.p.fct_orders", 0.3, "success"),
    ]}

    assert bench.summarise_run_results(run_results)["failed"] == [
        "model.p.kpi_daily: error", "test.p.unique_x.9: fail", "model.p.kpi_monthly: skipped",
    ]


def _build(wall: float, models: dict[str, float], test_seconds: float) -> dict:
    return {"wall_seconds": wall, "dbt_elapsed_seconds": wall - 1.0, "models": models,
            "model_seconds": sum(models.values()), "test_seconds": test_seconds, "unit_test_seconds": 0.0,
            "seed_seconds": 0.5, "node_counts": {"model": len(models)}, "failed": []}


def test_fastest_of_keeps_each_nodes_fastest_run_and_every_wall_time():
    builds = [
        _build(30.0, {"kpi_daily": 1.5, "int_web__events": 0.9}, test_seconds=14.0),
        _build(28.0, {"kpi_daily": 0.7, "int_web__events": 1.2}, test_seconds=15.0),
        _build(35.0, {"kpi_daily": 0.9, "int_web__events": 1.0, "only_once": 0.2}, test_seconds=13.0),
    ]

    fastest = bench.fastest_of(builds)

    # per model, not per run: the fastest run differs from model to model
    assert fastest["models"] == {"kpi_daily": 0.7, "int_web__events": 0.9, "only_once": 0.2}
    assert fastest["wall_seconds"] == 28.0
    assert fastest["dbt_elapsed_seconds"] == 27.0
    assert fastest["test_seconds"] == 13.0
    assert fastest["runs_wall_seconds"] == [30.0, 28.0, 35.0]
    assert fastest["node_counts"] == {"model": 2}  # from the first run


def test_fastest_of_one_build_is_that_build():
    build = _build(30.0, {"kpi_daily": 1.5}, test_seconds=14.0)

    assert bench.fastest_of([build]) == {**build, "runs_wall_seconds": [30.0]}
    with pytest.raises(ValueError):
        bench.fastest_of([])


@pytest.mark.parametrize("text", ["0", "-2", "two"])
def test_bad_repeats_are_refused_with_a_message(text):
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_repeats(text)
    assert bench.parse_repeats("3") == 3


def test_ratio_is_missing_rather_than_infinite():
    assert bench.ratio(2.0, 8.0) == 4.0
    assert bench.ratio(0.0, 1.0) is None
    assert bench.ratio(None, 1.0) is None


def test_model_rows_put_the_slowest_model_at_the_longest_history_first():
    rows = bench.model_rows(RESULTS)

    assert rows == [
        ["int_lifecycle__stage_intervals", "2.00", "8.00", "4.00"],
        ["int_web__events", "1.00", "1.10", "1.10"],
    ]


def test_a_model_missing_at_one_history_gets_a_dash():
    results = {"histories": [_history(3, {"a": 1.0}, 5.0), _history(6, {"a": 1.0, "b": 2.0}, 6.0)]}

    assert ["b", "–", "2.00", "–"] in bench.model_rows(results)


def test_markdown_has_a_table_per_model_totals_and_how_to_read():
    markdown = bench.render_markdown(RESULTS)

    assert "| model | H=30 | H=120 | ratio |" in markdown
    assert "| int_lifecycle__stage_intervals | 2.00 | 8.00 | 4.00 |" in markdown
    assert "| daily `dbt build`, wall (s) | 12.00 | 18.00 | 1.50 |" in markdown
    assert "| daily: rows loaded for the day | 1,200 | 1,200 | 1.00 |" in markdown
    assert "| raw.web_events | 30,000 | 120,000 | 4.00 |" in markdown
    assert "History grew 4.00×" in markdown
    assert "300 customers" in markdown


def test_results_are_written_as_json_and_markdown(tmp_path):
    json_path, md_path = bench.write_results(RESULTS, tmp_path / "bench")

    assert json_path.read_text().startswith("{")
    assert md_path.read_text() == bench.render_markdown(RESULTS)
