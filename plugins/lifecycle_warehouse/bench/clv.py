"""Bench part `clv`: fit and score the CLV models for many customers (issue 22: 100,000
in under 10 s on 2 cores).

Purchases are drawn from the models' own generative processes (BG/NBD: purchase rate
λ ~ Gamma(r, α), dropout p ~ Beta(a, b) after each repeat purchase; Gamma-Gamma: ν ~
Gamma(q, γ), each purchase's amount ~ Gamma(p, ν)), vectorised, over a year of history with
first purchases spread over it. Two figures:

- `fit_score_s`: purchases in memory -> summary -> both fits -> every customer's scores
  (the work `lw clv fit` and the DAG's task do besides the database);
- `warehouse_s`: `clv.warehouse.write_marts` on a database holding those purchases as
  `marts.fct_orders`: read, fit, score, and write `customer_clv` (RFM in SQL) and
  `clv_model_params` — the DAG's `fit_clv` task.

Also checks that the fit does not depend on row order (purchases shuffled: same parameters).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import psycopg

from lifecycle_warehouse import settings
from lifecycle_warehouse.bench import databases
from lifecycle_warehouse.clv import analysis, models

DATABASE = "bench_clv"
# The simulator's defaults (docs/simulator.md), in weeks.
TRUE_BG_NBD = models.BgNbdParams(r=0.45, alpha=8.0, a=0.8, b=2.5)
TRUE_GAMMA_GAMMA = models.GammaGammaParams(p=6.0, q=4.0, gamma=40.0)
RFM_SEED = settings.PROJECT_ROOT / "dbt_project" / "seeds" / "rfm_segments.csv"


def simulate_purchases(customers: int, history_days: int, seed: int, start: date,
                       bg: models.BgNbdParams = TRUE_BG_NBD, gg: models.GammaGammaParams = TRUE_GAMMA_GAMMA):
    """(customer index, day, amount) of every purchase, each customer's first purchase on a
    day uniform over the history, then the models' processes up to its last day."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, history_days, customers)
    horizon = (history_days - 1 - first) / 7.0  # weeks each customer is observed after the first day
    rate = rng.gamma(bg.r, 1.0 / bg.alpha, customers)
    dropout = rng.beta(bg.a, bg.b, customers)
    nu = rng.gamma(gg.q, 1.0 / gg.gamma, customers)
    owners, weeks = [np.arange(customers)], [np.zeros(customers)]
    now = np.zeros(customers)
    alive = np.ones(customers, dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        nxt = now[idx] + rng.exponential(1.0, len(idx)) / rate[idx]
        bought = nxt <= horizon[idx]
        alive[idx[~bought]] = False
        idx, nxt = idx[bought], nxt[bought]
        owners.append(idx)
        weeks.append(nxt)
        now[idx] = nxt
        alive[idx[rng.random(len(idx)) < dropout[idx]]] = False
    owner = np.concatenate(owners)
    day = np.datetime64(start, "D") + first[owner] + np.floor(np.concatenate(weeks) * 7.0).astype(np.int64)
    amount = np.round(rng.gamma(gg.p, 1.0 / nu[owner]), 2)
    return owner, day, np.maximum(amount, 0.01)


def _fit_and_score(keys, days, amounts, as_of: date) -> tuple[float, analysis.ClvFit]:
    started = time.perf_counter()
    summary = analysis.summarise(keys, days, amounts, as_of)
    fitted = analysis.fit(summary)
    analysis.score(summary, fitted, settings.clv_annual_discount_rate())
    return time.perf_counter() - started, fitted


def _load_orders(url: str, keys, days, amounts) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema marts")
        conn.execute("create schema reference")
        conn.execute("create table marts.fct_orders (order_id bigint, customer_key text, ordered_at timestamptz, "
                     "is_valid boolean, revenue numeric(18, 2), net_revenue numeric(18, 2))")
        with conn.cursor().copy("copy marts.fct_orders from stdin") as copy:
            for i, (key, day, amount) in enumerate(zip(keys.tolist(), days.astype(str).tolist(), amounts.tolist(),
                                                       strict=True)):
                copy.write_row((i, f"c{key:07d}", f"{day} 12:00:00+00", True, amount, amount))
        conn.execute("create table reference.rfm_segments (priority integer, rfm_segment text, r_min integer, "
                     "r_max integer, f_min integer, f_max integer, m_min integer, m_max integer, description text)")
        with conn.cursor().copy("copy reference.rfm_segments from stdin with (format csv, header true)") as copy:
            copy.write(RFM_SEED.read_bytes())
        conn.execute("analyze marts.fct_orders")


def run_clv(admin_url: str, customers: int, history_days: int = 365, seed: int = 42,
            start: date = date(2026, 1, 1), repeats: int = 3, report: Callable[[str], None] = print) -> dict:
    """Time the fit and scoring of `customers` customers, in memory and in the warehouse."""
    as_of = start + timedelta(days=history_days - 1)
    report(f"CLV: simulating {customers:,} customers over {history_days} days …")
    keys, days, amounts = simulate_purchases(customers, history_days, seed, start)
    _fit_and_score(keys[:1000], days[:1000], amounts[:1000], as_of)  # imports scipy and warms up
    runs = [_fit_and_score(keys, days, amounts, as_of) for _ in range(repeats)]
    seconds, fitted = min(runs, key=lambda run: run[0])
    order = np.random.default_rng(seed + 1).permutation(len(keys))
    _, shuffled = _fit_and_score(keys[order], days[order], amounts[order], as_of)
    order_independent = shuffled.as_dict() == fitted.as_dict()
    report(f"CLV: fit and score in memory {seconds:.2f} s (fastest of {repeats}); writing the marts …")
    url = databases.recreate(admin_url, DATABASE)
    try:
        _load_orders(url, keys, days, amounts)
        from lifecycle_warehouse.clv import warehouse

        warehouse_runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            warehouse.write_marts(url, as_of)
            warehouse_runs.append(time.perf_counter() - started)
    finally:
        databases.drop(admin_url, [DATABASE])
    result = fitted.as_dict()
    return {
        "customers": customers,
        "purchases": int(len(keys)),
        "history_days": history_days,
        "repeat_buyers": None if fitted.gamma_gamma is None else fitted.gamma_gamma.n_customers,
        "fit_score_s": seconds,
        "warehouse_s": min(warehouse_runs),
        "order_independent": order_independent,
        "true_parameters": {"bg_nbd": vars(TRUE_BG_NBD), "gamma_gamma": vars(TRUE_GAMMA_GAMMA)},
        "fitted": {"bg_nbd": result["bg_nbd"], "gamma_gamma": result["gamma_gamma"]},
        "converged": fitted.converged,
    }


def markdown(results: dict) -> list[str]:
    fitted, true = results["fitted"], results["true_parameters"]

    def params(model: str, names: tuple[str, ...]) -> str:
        if fitted[model] is None:
            return "not fitted"
        return ", ".join(f"{n} {fitted[model][n]:.3g} ({true[model][n]:g})" for n in names)

    return [
        "## CLV: fit and score (BG/NBD, Gamma-Gamma)",
        "",
        f"{results['customers']:,} customers, {results['purchases']:,} purchases over {results['history_days']} "
        f"days, drawn from the models' own processes ({results['repeat_buyers']:,} repeat buyers).",
        "",
        "| step | seconds |",
        "| --- | ---: |",
        f"| purchases in memory → summary → both fits → every customer's scores | {results['fit_score_s']:.2f} |",
        f"| the DAG's `fit_clv`: read fct_orders, fit, score, write customer_clv (RFM in SQL) "
        f"and clv_model_params | {results['warehouse_s']:.2f} |",
        "",
        f"Fitted (true): BG/NBD {params('bg_nbd', ('r', 'alpha', 'a', 'b'))}; Gamma-Gamma "
        f"{params('gamma_gamma', ('p', 'q', 'gamma'))}. Converged: {results['converged']}. "
        f"Same parameters with the purchases shuffled: {results['order_independent']}.",
    ]
