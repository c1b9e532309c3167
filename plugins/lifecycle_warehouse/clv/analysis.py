"""From purchases to customer lifetime value: the per-customer summary the models read, the
fit of both models, each customer's scores, and the backtest. Pure numpy: the warehouse
(`clv.warehouse`) and the tests (the CDNOW sample, simulated data) feed it the same way.

A purchase is (customer, UTC day, amount). The purchases of one customer on one day are one
transaction, their amounts summed (Fader, Hardie & Lee 2005 count days, not orders). As of a
date D (inclusive), for each customer whose first purchase day is on or before D:

- x: purchase days − 1 (repeat purchase days),
- t_x: weeks from the first to the last purchase day, T: weeks from the first purchase day
  to D (days / 7),
- mean_repeat_spend: the mean amount of the repeat days (the first day excluded), NaN when x = 0,
- total_spend: every day's amount summed (first day included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from lifecycle_warehouse.clv import models

DAYS_PER_WEEK = 7.0
TIME_UNIT = "weeks"
HORIZON_DAYS = 365
# The conditional-expectation table of the backtest groups calibration x = 0 … 6 and 7 or more.
BACKTEST_MAX_X = 7


@dataclass(frozen=True)
class CustomerSummary:
    keys: np.ndarray  # customer ids, sorted
    x: np.ndarray  # repeat purchase days
    t_x: np.ndarray  # weeks
    T: np.ndarray  # weeks
    mean_repeat_spend: np.ndarray  # NaN when x == 0
    total_spend: np.ndarray
    first_day: np.ndarray  # datetime64[D]
    last_day: np.ndarray  # datetime64[D]
    as_of: date

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def repeat_buyers(self) -> int:
        return int(np.count_nonzero(self.x > 0))


def _days(values) -> np.ndarray:
    return np.asarray(values, dtype="datetime64[D]")


def purchase_days(keys, days, amounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per (customer, day), amounts summed, sorted by customer then day."""
    keys = np.asarray(keys)
    days = _days(days)
    amounts = np.asarray(amounts, dtype=float)
    if not (len(keys) == len(days) == len(amounts)):
        raise ValueError("keys, days and amounts must have the same length")
    if len(keys) == 0:
        return keys, days, amounts
    order = np.lexsort((days, keys))
    keys, days, amounts = keys[order], days[order], amounts[order]
    starts = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]) | (days[1:] != days[:-1])])
    return keys[starts], days[starts], np.add.reduceat(amounts, starts)


def summarise(keys, days, amounts, as_of: date) -> CustomerSummary:
    """The per-customer summary as of `as_of` (inclusive) from purchases (one row per
    order, or per day: days are collapsed here). Purchases after `as_of` are ignored."""
    keys, days, amounts = purchase_days(keys, days, amounts)
    end = np.datetime64(as_of, "D")
    keep = days <= end
    keys, days, amounts = keys[keep], days[keep], amounts[keep]
    if len(keys) == 0:
        empty_days = np.array([], dtype="datetime64[D]")
        return CustomerSummary(keys, np.array([], dtype=np.int64), np.array([]), np.array([]), np.array([]),
                               np.array([]), empty_days, empty_days, as_of)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)] - 1
    purchase_days_count = ends - starts + 1
    first_day, last_day = days[starts], days[ends]
    total = np.add.reduceat(amounts, starts)
    x = purchase_days_count - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_repeat = np.where(x > 0, (total - amounts[starts]) / np.maximum(x, 1), np.nan)
    return CustomerSummary(
        keys=keys[starts], x=x.astype(np.int64),
        t_x=(last_day - first_day).astype(float) / DAYS_PER_WEEK,
        T=(end - first_day).astype(float) / DAYS_PER_WEEK,
        mean_repeat_spend=mean_repeat, total_spend=total, first_day=first_day, last_day=last_day, as_of=as_of,
    )


@dataclass(frozen=True)
class ClvFit:
    """Both models' fits as of a date. A model that cannot be fitted (no customers, no
    repeat buyers) has no Fit and says why in `not_fittable`."""

    as_of: date
    n_customers: int
    bg_nbd: models.Fit | None
    gamma_gamma: models.Fit | None
    not_fittable: str | None = None

    @property
    def converged(self) -> bool:
        return (self.bg_nbd is not None and self.bg_nbd.converged
                and self.gamma_gamma is not None and self.gamma_gamma.converged)

    @property
    def problem(self) -> str | None:
        """Why the predictions cannot be trusted (None when both fits converged)."""
        if self.not_fittable:
            return self.not_fittable
        for fit in (self.bg_nbd, self.gamma_gamma):
            if fit is not None and not fit.converged:
                return f"{fit.model} did not converge: {fit.message}"
        return None

    def as_dict(self) -> dict:
        """The JSON shape of `lw clv fit --json`."""
        def model_dict(fit: models.Fit | None, names: tuple[str, ...], with_count: bool) -> dict | None:
            if fit is None:
                return None
            out = {name: getattr(fit.params, name) for name in names}
            out["log_likelihood"] = fit.log_likelihood
            if with_count:
                out["n_customers"] = fit.n_customers
            out["converged"] = fit.converged
            out["message"] = fit.message
            return out

        return {
            "as_of": str(self.as_of),
            "time_unit": TIME_UNIT,
            "n_customers": self.n_customers,
            "bg_nbd": model_dict(self.bg_nbd, ("r", "alpha", "a", "b"), False),
            "gamma_gamma": model_dict(self.gamma_gamma, ("p", "q", "gamma"), True),
            "converged": self.converged,
            "problem": self.problem,
        }


def fit(summary: CustomerSummary) -> ClvFit:
    """BG/NBD on every customer, Gamma-Gamma on the repeat buyers with a positive mean
    repeat spend. No customers or no repeat buyers: nothing is fitted, `not_fittable` says why."""
    n = len(summary)
    if n == 0:
        return ClvFit(summary.as_of, 0, None, None,
                      f"no customer has a valid order on or before {summary.as_of}: nothing to fit")
    if summary.repeat_buyers == 0:
        return ClvFit(summary.as_of, n, None, None,
                      f"no repeat buyers: all {n} customers bought on one day only up to {summary.as_of}; "
                      "BG/NBD's dropout and Gamma-Gamma's spend cannot be estimated without repeat purchase days")
    bg = models.fit_bg_nbd(summary.x, summary.t_x, summary.T)
    spenders = (summary.x > 0) & (summary.mean_repeat_spend > 0)
    try:
        gg = models.fit_gamma_gamma(summary.x[spenders], summary.mean_repeat_spend[spenders])
    except models.ClvNotFittable as reason:
        return ClvFit(summary.as_of, n, bg, None, f"gamma_gamma: {reason}")
    return ClvFit(summary.as_of, n, bg, gg)


@dataclass(frozen=True)
class Scores:
    p_alive: np.ndarray
    predicted_purchases: np.ndarray  # repeat purchase days over the horizon, undiscounted
    expected_spend: np.ndarray  # per purchase day (Gamma-Gamma)
    predicted_clv: np.ndarray  # discounted


def score(summary: CustomerSummary, fitted: ClvFit, annual_discount_rate: float,
          horizon_days: int = HORIZON_DAYS) -> Scores | None:
    """Each customer's P(alive), expected purchase days and discounted value over the
    horizon; None when the models were not fitted."""
    if fitted.bg_nbd is None or fitted.gamma_gamma is None:
        return None
    bg, gg = fitted.bg_nbd.params, fitted.gamma_gamma.params
    horizon = horizon_days / DAYS_PER_WEEK
    # A repeat buyer whose repeat days cost nothing (free goods) has a mean spend of 0, which
    # the Gamma-Gamma likelihood excludes; its posterior mean at a vanishing spend,
    # γp / (px + q − 1), is the model's answer for it.
    spend_input = np.where(summary.x > 0, np.fmax(np.nan_to_num(summary.mean_repeat_spend, nan=0.0), 1e-9), 0.0)
    expected_spend = models.conditional_expected_spend(gg, summary.x, spend_input)
    discounted = models.discounted_expected_purchases(
        bg, summary.x, summary.t_x, summary.T, horizon, annual_discount_rate,
        periods_per_year=365.25 / DAYS_PER_WEEK)
    return Scores(
        p_alive=models.p_alive(bg, summary.x, summary.t_x, summary.T),
        predicted_purchases=models.conditional_expected_purchases(bg, horizon, summary.x, summary.t_x, summary.T),
        expected_spend=expected_spend,
        predicted_clv=discounted * expected_spend,
    )


def backtest(keys, days, amounts, calibration_end: date, holdout_end: date) -> dict:
    """Fit on the purchases up to `calibration_end` and compare, over (calibration_end,
    holdout_end], the predicted and the actual repeat purchase days of the customers known
    at calibration_end: in total, by holdout week (the tracking plot: week k ends 7k days
    after calibration_end, the last week may be shorter), and by calibration x (0 … 6 and
    7 or more: the conditional-expectation table)."""
    if holdout_end <= calibration_end:
        raise ValueError(f"holdout_end {holdout_end} must be after calibration_end {calibration_end}")
    keys, days, amounts = purchase_days(keys, days, amounts)
    summary = summarise(keys, days, amounts, calibration_end)
    fitted = fit(summary)
    result = {
        "calibration_end": str(calibration_end), "holdout_end": str(holdout_end), "time_unit": TIME_UNIT,
        **{k: v for k, v in fitted.as_dict().items() if k not in ("as_of",)},
    }
    holdout_days = (holdout_end - calibration_end).days
    weeks = math.ceil(holdout_days / DAYS_PER_WEEK)
    start, end = np.datetime64(calibration_end, "D"), np.datetime64(holdout_end, "D")
    in_holdout = (days > start) & (days <= end) & np.isin(keys, summary.keys)
    # holdout purchase days of each summarised customer (summary.keys is sorted)
    customer_index = np.searchsorted(summary.keys, keys[in_holdout])
    actual = np.bincount(customer_index, minlength=len(summary)).astype(float)
    week_of = ((days[in_holdout] - start).astype(int) - 1) // int(DAYS_PER_WEEK)
    actual_by_week = np.bincount(week_of, minlength=weeks)[:weeks]
    if fitted.bg_nbd is None:
        predicted = np.full(len(summary), np.nan)
        predicted_by_week = np.full(weeks, np.nan)
    else:
        params = fitted.bg_nbd.params
        edges = np.minimum(np.arange(weeks + 1) * DAYS_PER_WEEK, holdout_days) / DAYS_PER_WEEK
        cumulative = np.array([
            0.0 if t == 0 else float(np.sum(models.conditional_expected_purchases(
                params, t, summary.x, summary.t_x, summary.T)))
            for t in edges])
        predicted_by_week = np.diff(cumulative)
        predicted = models.conditional_expected_purchases(
            params, holdout_days / DAYS_PER_WEEK, summary.x, summary.t_x, summary.T)
    by_x = []
    for k in range(BACKTEST_MAX_X + 1):
        members = summary.x >= k if k == BACKTEST_MAX_X else summary.x == k
        count = int(np.count_nonzero(members))
        by_x.append({
            "x": f"{k}+" if k == BACKTEST_MAX_X else str(k), "customers": count,
            "actual_mean": float(actual[members].mean()) if count else None,
            "predicted_mean": float(predicted[members].mean()) if count and fitted.bg_nbd else None,
        })
    result["holdout"] = {
        "days": holdout_days,
        "actual_repeat_purchases": int(actual.sum()),
        "predicted_repeat_purchases": float(predicted.sum()) if fitted.bg_nbd else None,
        "by_week": [{"week": i + 1, "actual": int(actual_by_week[i]),
                     "predicted": float(predicted_by_week[i]) if fitted.bg_nbd else None}
                    for i in range(weeks)],
        "by_x": by_x,
    }
    return result
