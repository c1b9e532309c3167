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


def test_lw_sources_refuses_a_shop_that_is_not_the_embedded_one(tmp_path, monkeypatch, capsys):
    """SHOP_DB_URL is meant for a real shop: simulating there would drop its tables."""
    from lifecycle_warehouse import cli

    monkeypatch.setenv("LW_PGDATA", str(tmp_path / "pgdata"))
    monkeypatch.setenv("LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("SHOP_DB_URL", "postgresql://shop_reader:s3cret@shop.example.com:5432/shop")
    assert cli.main(["sources", "--days", "1", "--customers", "10"]) == 2
    out = capsys.readouterr().out
    assert "refusing to simulate into the shop database" in out and "--i-know-this-drops-tables" in out
    assert "host=shop.example.com" in out and "s3cret" not in out
    assert not (tmp_path / "landing").exists(), "nothing was written"


def test_a_url_is_embedded_only_when_it_is_the_embedded_servers_socket(tmp_path):
    from lifecycle_warehouse import embedded

    pgdata = tmp_path / "pgdata"
    assert embedded.is_embedded(f"postgresql://postgres:@/shop?host={pgdata}", pgdata)
    assert not embedded.is_embedded(f"postgresql://postgres:@/shop?host={tmp_path / 'other'}", pgdata)
    assert not embedded.is_embedded("postgresql://u@db.example.com/shop", pgdata)
    assert not embedded.is_embedded("postgresql:///shop", pgdata)
