"""Customer lifetime value in the warehouse: read the valid orders of `marts.fct_orders`,
fit the models as of a date (`clv.analysis`), and write `marts.customer_clv` and
`marts.clv_model_params` for the marts gate to validate and `publish` to copy into
`analytics`.

What SQL does and what Python does: the database aggregates orders into purchase days and
computes every money column, the RFM scores and segments (the editable seed
`reference.rfm_segments`); Python fits the models and scores P(alive) and the predictions,
which reach the database by COPY. Both tables are replaced in one transaction.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

import numpy as np
import psycopg

from lifecycle_warehouse import connections, settings
from lifecycle_warehouse.clv import analysis

log = logging.getLogger(__name__)

SCHEMA = "marts"
MODEL_PARAMETERS = {"bg_nbd": ("r", "alpha", "a", "b"), "gamma_gamma": ("p", "q", "gamma")}
# clv_model_params.status
CONVERGED, NOT_CONVERGED, NOT_FITTABLE, NO_CUSTOMERS = "converged", "not_converged", "not_fittable", "no_customers"

# Purchases: the valid orders of known persons up to the as-of date (inclusive), per UTC day.
# The Gamma-Gamma spend is revenue (what the customer paid for the goods, in the reporting
# currency); refunds are not modelled (historical_clv, below, is net of them).
PURCHASES = """
select customer_key, (ordered_at at time zone 'UTC')::date as purchase_date, sum(revenue)::float8 as revenue
from marts.fct_orders
where is_valid and customer_key is not null and ordered_at < %(end)s
group by 1, 2
"""

# One row per person with a valid order up to the as-of date. RFM scores are quintiles by
# rank: 1 + floor(5 × percent_rank), so ties share a score and the lowest value scores 1;
# recency ranks the last purchase date (the latest scores 5), frequency the purchase days,
# monetary the net revenue. The segment is the first rule of the seed, by priority, that
# holds the three scores.
CUSTOMER_CLV = """
create table marts.customer_clv as
with

purchase_days as (
    select
        customer_key,
        (ordered_at at time zone 'UTC')::date as purchase_date,
        sum(net_revenue) as net_revenue
    from marts.fct_orders
    where is_valid and customer_key is not null and ordered_at < %(end)s
    group by 1, 2
),

customers as (
    select
        customer_key,
        min(purchase_date) as first_purchase_date,
        max(purchase_date) as last_purchase_date,
        count(*)::integer as purchase_days,
        sum(net_revenue) as historical_clv
    from purchase_days
    group by 1
),

scored as (
    select
        customers.*,
        least(5, 1 + floor(5 * percent_rank() over (order by last_purchase_date)))::integer as r_score,
        least(5, 1 + floor(5 * percent_rank() over (order by purchase_days)))::integer as f_score,
        least(5, 1 + floor(5 * percent_rank() over (order by historical_clv)))::integer as m_score
    from customers
)

select
    scored.customer_key,
    scored.first_purchase_date,
    scored.last_purchase_date,
    scored.purchase_days,
    scored.historical_clv,
    predictions.p_alive,
    predictions.predicted_purchases_365d,
    predictions.expected_spend_per_purchase::numeric(18, 2) as expected_spend_per_purchase,
    predictions.predicted_clv_365d::numeric(18, 2) as predicted_clv_365d,
    (%(as_of)s::date - scored.last_purchase_date) as recency_days,
    scored.r_score,
    scored.f_score,
    scored.m_score,
    segments.rfm_segment,
    %(as_of)s::date as as_of
from scored
left join clv_predictions as predictions on predictions.customer_key = scored.customer_key
left join lateral (
    select rules.rfm_segment
    from reference.rfm_segments as rules
    where scored.r_score between rules.r_min and rules.r_max
      and scored.f_score between rules.f_min and rules.f_max
      and scored.m_score between rules.m_min and rules.m_max
    order by rules.priority
    limit 1
) as segments on true
order by scored.customer_key
"""

CLV_MODEL_PARAMS = """
create table marts.clv_model_params (
    as_of date not null,
    model text not null,
    parameter text not null,
    value double precision,
    log_likelihood double precision,
    n_customers integer not null,
    time_unit text not null,
    status text not null,
    message text,
    iterations integer,
    fitted_at timestamptz not null default now(),
    primary key (model, parameter)
)
"""


def _end(as_of: date):
    return as_of + timedelta(days=1)


def read_purchases(conn: psycopg.Connection, as_of: date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer_key, purchase_date, revenue) per purchase day up to `as_of`."""
    rows = conn.execute(PURCHASES, {"end": _end(as_of)}).fetchall()
    if not rows:
        return np.array([], dtype=object), np.array([], dtype="datetime64[D]"), np.array([])
    keys, days, amounts = zip(*rows, strict=True)
    return np.array(keys, dtype=object), np.array(days, dtype="datetime64[D]"), np.array(amounts, dtype=float)


def fit_as_of(url: str, as_of: date) -> tuple[analysis.CustomerSummary, analysis.ClvFit]:
    """Fit both models on the warehouse's valid orders up to `as_of`; writes nothing."""
    with connections.connect(url, autocommit=True) as conn:
        _require_orders(conn)
        keys, days, amounts = read_purchases(conn, as_of)
    summary = analysis.summarise(keys, days, amounts, as_of)
    return summary, analysis.fit(summary)


def backtest(url: str, calibration_end: date, holdout_end: date) -> dict:
    """`analysis.backtest` on the warehouse's valid orders."""
    with connections.connect(url, autocommit=True) as conn:
        _require_orders(conn)
        keys, days, amounts = read_purchases(conn, holdout_end)
    return analysis.backtest(keys, days, amounts, calibration_end, holdout_end)


def _require_orders(conn: psycopg.Connection) -> None:
    if conn.execute("select to_regclass('marts.fct_orders') is null").fetchone()[0]:
        raise RuntimeError("marts.fct_orders does not exist: build the warehouse first (`make pipeline`)")


def _status(fitted: analysis.ClvFit, model: str) -> tuple[str, str | None]:
    fit = getattr(fitted, model)
    if fitted.n_customers == 0:
        return NO_CUSTOMERS, fitted.not_fittable
    if fit is None:
        return NOT_FITTABLE, fitted.not_fittable
    if not fit.converged:
        return NOT_CONVERGED, fit.message
    return CONVERGED, fit.message


def _parameter_rows(fitted: analysis.ClvFit) -> list[tuple]:
    rows = []
    for model, names in MODEL_PARAMETERS.items():
        fit = getattr(fitted, model)
        status, message = _status(fitted, model)
        for name in names:
            value = float(getattr(fit.params, name)) if fit is not None else None
            rows.append((fitted.as_of, model, name, value, fit.log_likelihood if fit else None,
                         fit.n_customers if fit else (fitted.n_customers if model == "bg_nbd" else 0),
                         analysis.TIME_UNIT, status, message, fit.iterations if fit else None))
    return rows


def write_marts(url: str, as_of: date, annual_discount_rate: float | None = None) -> analysis.ClvFit:
    """Fit as of `as_of` and replace `marts.customer_clv` and `marts.clv_model_params` in one
    transaction. A fit that did not converge (or could not run) is written with its status
    and reason, and the predictions are NULL: the marts gate fails on it
    (LW_CLV_FIT_SEVERITY), so that BI keeps the last good version."""
    rate = settings.clv_annual_discount_rate() if annual_discount_rate is None else annual_discount_rate
    with connections.connect(url) as conn:
        _require_orders(conn)
        keys, days, amounts = read_purchases(conn, as_of)
        summary = analysis.summarise(keys, days, amounts, as_of)
        fitted = analysis.fit(summary)
        scores = analysis.score(summary, fitted, rate) if fitted.converged else None
        conn.execute(
            "create temp table clv_predictions (customer_key text primary key, p_alive float8, "
            "predicted_purchases_365d float8, expected_spend_per_purchase float8, predicted_clv_365d float8) "
            "on commit drop")
        if scores is not None:
            with conn.cursor().copy("copy clv_predictions from stdin") as copy:
                for row in zip(summary.keys.tolist(), scores.p_alive.tolist(), scores.predicted_purchases.tolist(),
                               scores.expected_spend.tolist(), scores.predicted_clv.tolist(), strict=True):
                    copy.write_row(row)
        conn.execute(f"create schema if not exists {SCHEMA}")
        conn.execute("drop table if exists marts.customer_clv")
        conn.execute(CUSTOMER_CLV, {"end": _end(as_of), "as_of": as_of})
        conn.execute("alter table marts.customer_clv add primary key (customer_key)")
        conn.execute("drop table if exists marts.clv_model_params")
        conn.execute(CLV_MODEL_PARAMS)
        with conn.cursor().copy(
            "copy marts.clv_model_params (as_of, model, parameter, value, log_likelihood, n_customers, "
            "time_unit, status, message, iterations) from stdin"
        ) as copy:
            for row in _parameter_rows(fitted):
                copy.write_row(row)
    if fitted.problem:
        log.warning("CLV as of %s: %s", as_of, fitted.problem)
    else:
        log.info("CLV as of %s: %d customers, %d repeat buyers; BG/NBD %s; Gamma-Gamma %s", as_of,
                 fitted.n_customers, summary.repeat_buyers, fitted.bg_nbd.params, fitted.gamma_gamma.params)
    return fitted
