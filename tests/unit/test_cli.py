"""`lw dbt`: how a manual build gets the plan's var recompute_from (cli.with_recompute_from)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from lifecycle_warehouse.cli import with_recompute_from

PLANNED = date(2026, 9, 1)


def test_nothing_to_reprocess_leaves_the_arguments_alone():
    assert with_recompute_from(["build", "--select", "kpi_daily"], None) == ["build", "--select", "kpi_daily"]


def test_the_plan_is_passed_as_a_var():
    args = with_recompute_from(["build", "--select", "kpi_daily"], PLANNED)
    assert args[:3] == ["build", "--select", "kpi_daily"]
    assert args[3] == "--vars" and json.loads(args[4]) == {"recompute_from": "2026-09-01"}


@pytest.mark.parametrize("given", [["--vars", "{late_data_lookback_days: 5}"], ["--vars={late_data_lookback_days: 5}"]])
def test_the_plan_joins_the_vars_given(given):
    args = with_recompute_from(["build", *given], PLANNED)
    value = args[-1].removeprefix("--vars=")
    assert json.loads(value) == {"late_data_lookback_days": 5, "recompute_from": "2026-09-01"}
    assert len(args) == 1 + len(given)


def test_only_the_last_vars_counts_as_dbt_reads_it():
    args = with_recompute_from(["run", "--vars", "{a: 1}", "--vars", "{b: 2}"], PLANNED)
    assert args[:3] == ["run", "--vars", "{a: 1}"]
    assert json.loads(args[4]) == {"b": 2, "recompute_from": "2026-09-01"}


@pytest.mark.parametrize("given", [
    ["--vars", "{recompute_from: 2026-08-01}"],  # chosen by hand
    ["--vars", "{recompute_from: ''}"],  # turned off by hand
    ["--vars"],  # no value: dbt reports it
    ["--vars", "not a mapping"],
])
def test_vars_that_set_it_or_that_dbt_rejects_are_left_alone(given):
    assert with_recompute_from(["build", *given], PLANNED) == ["build", *given]
