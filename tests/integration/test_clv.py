"""CLV in the warehouse (lifecycle_warehouse.clv.warehouse and `lw clv`), on a real
PostgreSQL: the CDNOW sample as shop orders gives the published parameters in
marts.clv_model_params, one customer_clv row per customer with RFM segments from the seed,
and `lw clv fit / backtest --json` print what the issue promises. A shop without repeat
buyers is written with its reason, never a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import psycopg
import pytest

from lifecycle_warehouse import settings
from lifecycle_warehouse.clv import warehouse

from tests.unit.test_clv_analysis import CALIBRATION_END, HOLDOUT_END, cdnow_purchases

SEED = settings.PROJECT_ROOT / "dbt_project" / "seeds" / "rfm_segments.csv"


def make_orders(url: str, orders: list[tuple]) -> None:
    """marts.fct_orders with the columns CLV reads, and the RFM seed in `reference`.
    orders: (order_id, customer_key, ordered_at, is_valid, revenue, net_revenue)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema if not exists marts")
        conn.execute("create schema if not exists reference")
        conn.execute("drop table if exists marts.fct_orders")
        conn.execute("create table marts.fct_orders (order_id text, customer_key text, ordered_at timestamptz, "
                     "is_valid boolean, revenue numeric(18, 2), net_revenue numeric(18, 2))")
        with conn.cursor().copy("copy marts.fct_orders from stdin") as copy:
            for row in orders:
                copy.write_row(row)
        conn.execute("drop table if exists reference.rfm_segments")
        conn.execute("create table reference.rfm_segments (priority integer, rfm_segment text, r_min integer, "
                     "r_max integer, f_min integer, f_max integer, m_min integer, m_max integer, description text)")
        with conn.cursor().copy("copy reference.rfm_segments from stdin with (format csv, header true)") as copy:
            copy.write(SEED.read_bytes())


def cdnow_orders() -> list[tuple]:
    keys, days, amounts = cdnow_purchases()
    orders = [(str(i), key, f"{day}T12:00:00+00", True, amount, amount)
              for i, (key, day, amount) in enumerate(zip(keys.tolist(), days.astype(str).tolist(), amounts.tolist(),
                                                        strict=True))]
    # a refund lowers net revenue (historical_clv), not the spend the model learns from;
    # a cancelled order counts nowhere
    first = orders[0]
    assert first[1] == "0001"
    orders[0] = (*first[:5], first[5] - 5.0)
    orders.append(("c1", "0001", "1997-03-01T12:00:00+00", False, 99.0, 99.0))
    return orders


@pytest.fixture
def cdnow_warehouse(warehouse_url):
    make_orders(warehouse_url, cdnow_orders())
    return warehouse_url


def lw(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WAREHOUSE_URL": url}
    return subprocess.run([sys.executable, "-m", "lifecycle_warehouse.cli", "clv", *args],
                          env=env, capture_output=True, text=True)


def test_write_marts_on_cdnow(cdnow_warehouse):
    fitted = warehouse.write_marts(cdnow_warehouse, CALIBRATION_END, annual_discount_rate=0.1)
    assert fitted.converged
    with psycopg.connect(cdnow_warehouse) as conn:
        params = {(m, p): (v, s) for m, p, v, s in conn.execute(
            "select model, parameter, value, status from marts.clv_model_params")}
        assert {k: (round(v, 3 if k[0] == "bg_nbd" else 2), s) for k, (v, s) in params.items()} == {
            ("bg_nbd", "r"): (0.243, "converged"), ("bg_nbd", "alpha"): (4.414, "converged"),
            ("bg_nbd", "a"): (0.793, "converged"), ("bg_nbd", "b"): (2.426, "converged"),
            ("gamma_gamma", "p"): (6.25, "converged"), ("gamma_gamma", "q"): (3.74, "converged"),
            ("gamma_gamma", "gamma"): (15.44, "converged"),
        }
        assert conn.execute("select distinct as_of, time_unit, n_customers from marts.clv_model_params "
                            "where model = 'bg_nbd'").fetchall() == [(CALIBRATION_END, "weeks", 2357)]
        rows, customers, segments, bad_scores = conn.execute(
            "select count(*), count(distinct customer_key), count(rfm_segment), "
            "count(*) filter (where least(r_score, f_score, m_score) < 1 or greatest(r_score, f_score, m_score) > 5) "
            "from marts.customer_clv").fetchone()
        assert rows == customers == segments == 2357 and bad_scores == 0
        # predictions: every customer has them, in range; one-time buyers are alive (BG/NBD)
        assert conn.execute(
            "select count(*) from marts.customer_clv where p_alive is null or p_alive not between 0 and 1 "
            "or predicted_purchases_365d < 0 or predicted_clv_365d < 0 or (purchase_days = 1 and p_alive <> 1)"
        ).fetchone()[0] == 0
        # historical_clv: net revenue of the valid orders up to as_of, exact numeric
        assert conn.execute(
            "select historical_clv, purchase_days from marts.customer_clv where customer_key = '0001'"
        ).fetchone() == (conn.execute(
            "select sum(net_revenue) from marts.fct_orders where customer_key = '0001' and is_valid "
            "and ordered_at < '1997-10-01'").fetchone()[0], 3)
        # the best customers are champions, the one-time buyers of January are lost or hibernating
        top = conn.execute("select rfm_segment, r_score, f_score, m_score from marts.customer_clv "
                           "order by purchase_days desc, historical_clv desc limit 1").fetchone()
        assert top[2] == 5
        old_once = conn.execute(
            "select distinct rfm_segment from marts.customer_clv where purchase_days = 1 "
            "and last_purchase_date < '1997-02-01'").fetchall()
        assert {s for (s,) in old_once} <= {"lost", "hibernating"}


def test_lw_clv_fit_and_backtest_print_the_promised_json(cdnow_warehouse):
    fit = lw(cdnow_warehouse, "fit", "--as-of", str(CALIBRATION_END), "--json")
    assert fit.returncode == 0, fit.stderr
    result = json.loads(fit.stdout)
    assert {"as_of", "time_unit", "n_customers", "bg_nbd", "gamma_gamma"} <= set(result)
    assert result["as_of"] == "1997-09-30" and result["time_unit"] == "weeks" and result["n_customers"] == 2357
    assert {"r", "alpha", "a", "b", "log_likelihood"} <= set(result["bg_nbd"])
    assert {"p", "q", "gamma", "log_likelihood", "n_customers"} <= set(result["gamma_gamma"])
    assert round(result["bg_nbd"]["log_likelihood"], 1) == -9582.4
    with psycopg.connect(cdnow_warehouse) as conn:  # a fit writes nothing
        assert conn.execute("select to_regclass('marts.customer_clv')").fetchone()[0] is None

    backtest = lw(cdnow_warehouse, "backtest", "--calibration-end", str(CALIBRATION_END),
                  "--holdout-end", str(HOLDOUT_END), "--json")
    assert backtest.returncode == 0, backtest.stderr
    result = json.loads(backtest.stdout)
    assert {"calibration_end", "holdout_end", "time_unit", "n_customers", "bg_nbd", "gamma_gamma",
            "holdout"} <= set(result)
    assert result["holdout"]["actual_repeat_purchases"] == 1882
    assert result["holdout"]["predicted_repeat_purchases"] == pytest.approx(1653, abs=5)

    table = lw(cdnow_warehouse, "backtest", "--calibration-end", str(CALIBRATION_END),
               "--holdout-end", str(HOLDOUT_END))
    assert table.returncode == 0, table.stderr
    assert "Conditional expectations" in table.stdout and "Tracking" in table.stdout


def test_a_shop_without_repeat_buyers_is_written_with_its_reason(warehouse_url):
    make_orders(warehouse_url, [
        ("1", "a", "2026-01-01T10:00:00+00", True, 10.0, 10.0),
        ("2", "a", "2026-01-01T18:00:00+00", True, 5.0, 5.0),  # same day: one transaction
        ("3", "b", "2026-01-03T10:00:00+00", True, 20.0, 20.0),
    ])
    fitted = warehouse.write_marts(warehouse_url, date(2026, 1, 31))
    assert not fitted.converged and "no repeat buyers" in fitted.problem
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select distinct status, message like 'no repeat buyers%' "
                            "from marts.clv_model_params").fetchall() == [("not_fittable", True)]
        assert conn.execute("select customer_key, historical_clv, p_alive, rfm_segment is not null "
                            "from marts.customer_clv order by 1").fetchall() == [
            ("a", 15, None, True), ("b", 20, None, True)]
    result = lw(warehouse_url, "fit", "--as-of", "2026-01-31")
    assert result.returncode == 2, result.stderr
    assert "no repeat buyers" in result.stdout and "Traceback" not in result.stderr


def test_lw_clv_needs_a_built_warehouse(warehouse_url):
    result = lw(warehouse_url, "fit", "--as-of", "2026-01-31")
    assert result.returncode == 1 and "build the warehouse first" in result.stdout
