"""The pure parts of `lw bench` (lifecycle_warehouse/bench/: history, daily_run, run): parsing
the options, summarising dbt's run_results.json and Airflow's task spans, the headline
figures and results.md. No database, no dbt, and never a timing assertion: the benchmark
measures speed, tests do not."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from datetime import datetime, timedelta, timezone

from lifecycle_warehouse.bench import daily_run, run
from lifecycle_warehouse.bench import history as bench


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
        "day_load": {"seconds": 0.5, "rows": 1200, "rows_by_entity": {"web/events": 1000}},
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
    markdown = "\n".join(bench.markdown(RESULTS))

    assert "| model | H=30 | H=120 | ratio |" in markdown
    assert "| int_lifecycle__stage_intervals | 2.00 | 8.00 | 4.00 |" in markdown
    assert "| daily `dbt build`, wall (s) | 12.00 | 18.00 | 1.50 |" in markdown
    assert "| daily: rows loaded for the day | 1,200 | 1,200 | 1.00 |" in markdown
    assert "| raw.web_events | 30,000 | 120,000 | 4.00 |" in markdown
    assert "History grew 4.00×" in markdown
    assert "300 customers" in markdown


# --- run: parts, headline figures, results files -----------------------------------------


def test_parts_that_start_from_the_history_bring_it_and_run_in_order():
    assert run.parse_parts("loads") == ("loads",)
    assert run.parse_parts("loads, gates") == ("history", "gates", "loads")
    assert run.parse_parts("daily_run") == ("history", "daily_run")
    with pytest.raises(ValueError, match="unknown part"):
        run.parse_parts("history,speed")
    with pytest.raises(ValueError):
        run.parse_parts(" , ")


def test_headline_figures_come_from_the_parts_that_ran():
    results = {"history": RESULTS, "loads": {"raw_load_jsonl_vs_copy": 1.3, "raw_load_csv_vs_copy": 1.25,
                                             "raw_load_peak_rss_mb": 41.0}}

    figures = run.headline(results)

    assert set(figures) == set(run.TARGETS)
    assert figures["daily_vs_full_build"] == 18.0 / 1200.0  # longest history: daily / full build
    assert figures["daily_vs_history_length"] == 18.0 / 12.0
    assert figures["raw_load_jsonl_vs_copy"] == 1.3
    assert figures["gate_vs_sql"] is None and figures["daily_end_to_end_s"] is None


def _full_results(**figures) -> dict:
    results = {"generated_at": "2026-12-06T10:00:00+00:00", "profile": {"name": "small"}, "parts": ["history"],
               "environment": {**RESULTS["environment"], "airflow_version": "3.3.0",
                               "great_expectations_version": "1.9.0"},
               "history": RESULTS}
    results.update(run.headline(results))
    results.update(figures)
    return results


def test_results_md_says_which_targets_are_met():
    markdown = run.render_markdown(_full_results(raw_load_csv_vs_copy=1.25, gate_vs_sql=1.5))

    assert "| daily `dbt build` / full build, longest history | `daily_vs_full_build` | 0.01 | ≤ 0.2 | yes |" \
        in markdown
    assert "`raw_load_csv_vs_copy` | 1.25 | ≤ 1.2 | **no** |" in markdown
    assert "`gate_vs_sql` | 1.50 | ≤ 1.5 | yes |" in markdown  # a target of ≤ holds at equality
    assert "`daily_end_to_end_s` | – | < 180 | – |" in markdown  # the part did not run
    assert "## Daily `dbt build` vs. length of history" in markdown
    assert "## Raw loads" not in markdown


def test_results_are_written_as_json_and_markdown(tmp_path):
    results = _full_results()

    json_path, md_path = run.write_results(results, tmp_path / "bench")

    assert json_path.read_text().startswith("{")
    assert '"daily_vs_full_build"' in json_path.read_text()
    assert md_path.read_text() == run.render_markdown(results)


# --- daily_run: Airflow's task spans ------------------------------------------------------

T0 = datetime(2026, 9, 22, 6, tzinfo=timezone.utc)


def _span(dag_id: str, task_id: str, start: float, end: float) -> daily_run.TaskSpan:
    return daily_run.TaskSpan(dag_id, task_id, T0 + timedelta(seconds=start), T0 + timedelta(seconds=end), "success")


SPANS = [
    _span("crm_ingest", "load", 0, 4),
    _span("web_ingest", "load", 10, 16),
    _span("warehouse", "plan_build", 20, 21),
    _span("warehouse", "raw_quality_gate", 21, 25),
    _span("warehouse", "dbt_build.build_all", 26, 56),
    _span("warehouse", "dbt_build.stg_web__events", 56.5, 57),
    _span("warehouse", "dbt_build.kpi_daily", 57, 58),
    _span("warehouse", "record_build", 58, 58.5),
    _span("warehouse", "marts_quality_gate", 59, 64),
    _span("warehouse", "publish", 64, 65),
    _span("warehouse", "end_build", 65, 65.5),
]


def test_the_dbt_step_is_its_groups_first_start_to_last_end():
    assert daily_run.dbt_step_seconds(SPANS) == 32.0  # 26 → 58, the waits between its tasks included
    assert daily_run.dbt_step_seconds(SPANS[:2]) == 0.0


def test_end_to_end_sums_the_dag_runs_and_splits_them_into_steps():
    daily = daily_run.end_to_end(SPANS)

    assert daily["seconds"] == 4 + 6 + 45.5  # each DAG run's span; the gaps between runs are not counted
    assert daily["steps_seconds"] == {"ingest": 10.0, "plan": 1.0, "raw gate": 4.0, "dbt": 32.5,
                                      "marts gate": 5.0, "publish": 1.5}
    assert list(daily["steps_seconds"]) == ["ingest", "plan", "raw gate", "dbt", "marts gate", "publish"]
    assert daily["between_tasks_seconds"] == 55.5 - 54.0
    assert round(sum(daily["steps_share"].values()), 6) == round(54.0 / 55.5, 6)


def _daily_results(*, in_place: bool) -> dict:
    spans = SPANS
    figures = daily_run._mode_figures(spans, None if in_place else 30.0)
    return {"day": "2027-06-01", "history_days": 364, "in_place": in_place,
            "end_to_end": daily_run.end_to_end(spans), "airflow_startup_seconds": 7.0,
            "dbt_build_seconds": None if in_place else 30.0, "modes": {"report": figures},
            "warehouse_dag_dbt_vs_dbt_build": figures["vs_dbt_build"]}


def test_a_daily_run_in_place_reports_its_dbt_step_and_no_comparison():
    results = _daily_results(in_place=True)

    lines = "\n".join(daily_run.markdown(results))

    assert results["warehouse_dag_dbt_vs_dbt_build"] is None
    assert "dbt step took 32.0 s" in lines and "were not compared" in lines
    assert "| plain `dbt build`" not in lines
    assert run.headline({"daily_run": results})["warehouse_dag_dbt_vs_dbt_build"] is None
    assert "plain `dbt build` (subprocess) | 30.0 | 1.00" in "\n".join(daily_run.markdown(_daily_results(in_place=False)))


# --- profiles and the simulated traffic ---------------------------------------------------


def test_the_large_profile_is_the_issues_size_and_runs_the_daily_run_in_place():
    large = run.PROFILES["large"]
    config = run.config_for(large)

    assert (large.customers, config.histories[-1], large.load_lines) == (100_000, 364, 2_000_000)
    assert large.in_place and not large.dbt_step_modes  # no copies, so nothing to compare on
    assert (config.web_traffic, config.days_after) == (4.0, 2)  # the daily run's day is simulated too
    assert run.config_for(run.PROFILES["medium"]).days_after == 1
    assert run.config_for(large, customers=500, web_traffic=None).customers == 500
    assert config.prune_landing and not run.config_for(run.PROFILES["medium"]).prune_landing


def test_pruning_deletes_only_date_folders_before_the_day(tmp_path):
    from datetime import date

    def folder(entity: str, name: str, size: int) -> None:
        path = tmp_path / entity / name
        path.mkdir(parents=True)
        (path / "part.jsonl").write_bytes(b"x" * size)

    folder("web/events", "dt=2027-05-20", 10)
    folder("web/events", "dt=2027-05-27", 20)  # the day itself: kept
    folder("crm/contacts", "dt=2027-05-01", 5)
    folder("crm/contacts", "not-a-date", 7)  # not ours: kept
    (tmp_path / "web" / "events" / "_SUCCESS").write_text("")

    assert bench.prune_landing(tmp_path, date(2027, 5, 27)) == 15
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_dir())
    assert left == ["crm", "crm/contacts", "crm/contacts/not-a-date", "web", "web/events", "web/events/dt=2027-05-27"]
    assert bench.prune_landing(tmp_path / "missing", date(2027, 5, 27)) == 0


def test_web_traffic_scales_browse_sessions_and_anonymous_visitors_only():
    from lifecycle_warehouse.simulator.config import Rates

    plain, busy = Rates(), bench.traffic_rates(4.0)

    assert bench.traffic_rates(1.0) == plain
    assert busy.sessions_per_day_engaged == pytest.approx(4 * plain.sessions_per_day_engaged)
    assert busy.sessions_per_day_base == pytest.approx(4 * plain.sessions_per_day_base)
    assert busy.sessions_per_day_customer == pytest.approx(4 * plain.sessions_per_day_customer)
    # anonymous-only visitors per web sign-up: (1 - p) / p, four times as many
    assert (1 - busy.p_identify) / busy.p_identify == pytest.approx(4 * (1 - plain.p_identify) / plain.p_identify)
    assert busy.p_first_order_engaged == plain.p_first_order_engaged  # orders, e-mails as they were
    with pytest.raises(ValueError, match="positive"):
        bench.traffic_rates(0)


def test_the_clv_part_simulates_purchases_the_models_can_fit():
    """bench/clv.py draws purchases from the models' own processes: first purchases over the
    history, none after its last day, positive amounts; the fit finds the planted
    parameters' neighbourhood (sampling error at 20,000 customers is a few %)."""
    from datetime import date

    from lifecycle_warehouse.bench import clv
    from lifecycle_warehouse.clv import analysis

    start = date(2026, 1, 1)
    keys, days, amounts = clv.simulate_purchases(20_000, 365, seed=5, start=start)
    assert days.min() >= np.datetime64(start) and days.max() <= np.datetime64("2026-12-31")
    assert amounts.min() > 0 and len(np.unique(keys)) == 20_000
    summary = analysis.summarise(keys, days, amounts, date(2026, 12, 31))
    fitted = analysis.fit(summary)
    assert fitted.converged
    assert fitted.bg_nbd.params.r == pytest.approx(clv.TRUE_BG_NBD.r, rel=0.2)
    assert fitted.gamma_gamma.params.p == pytest.approx(clv.TRUE_GAMMA_GAMMA.p, rel=0.2)
    results = {"customers": 20_000, "purchases": len(keys), "history_days": 365, "repeat_buyers": 1,
               "fit_score_s": 0.5, "warehouse_s": 2.0, "order_independent": True, "converged": True,
               "true_parameters": {"bg_nbd": vars(clv.TRUE_BG_NBD), "gamma_gamma": vars(clv.TRUE_GAMMA_GAMMA)},
               "fitted": {k: v for k, v in fitted.as_dict().items() if k in ("bg_nbd", "gamma_gamma")}}
    text = "\n".join(clv.markdown(results))
    assert "## CLV" in text and "r 0.4" in text
    assert run.parse_parts("clv") == ("clv",)
    assert run.headline({"clv": results})["clv_fit_score_s"] == 0.5
