"""BG/NBD and Gamma-Gamma (lifecycle_warehouse.clv.models): the published CDNOW estimates,
recovery of planted parameters, the closed forms against hand and series computations,
degenerate inputs, input validation, row-order independence and discounting. No
database; a few seconds. Any warning (numpy's included) fails a test."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from lifecycle_warehouse.clv.models import (
    BgNbdParams,
    ClvNotFittable,
    GammaGammaParams,
    bg_nbd_log_likelihood,
    conditional_expected_purchases,
    conditional_expected_spend,
    discounted_expected_purchases,
    expected_purchases,
    fit_bg_nbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    p_alive,
)

pytestmark = pytest.mark.filterwarnings("error")

CDNOW = Path(__file__).resolve().parents[1] / "fixtures" / "cdnow"
# Fader, Hardie & Lee (2005), CDNOW sample, 39-week calibration: LL = -9582.4.
PAPER = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
# Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value", same data.
PAPER_SPEND = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
CALIBRATION_END = date(1997, 9, 30)  # 1997-01-01 .. 1997-09-30: 39 weeks
HOLDOUT_END = date(1998, 6, 30)  # the next 39 weeks, the end of the data set


# --------------------------------------------------------------------------- helpers


@dataclass
class Summary:
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    mean_repeat_spend: np.ndarray  # first purchase day excluded; NaN where x == 0
    mean_all_days: np.ndarray  # every calibration day, the first included


def summarise(days: dict, end: date) -> Summary:
    """The module's conventions, built from {customer: {day: amount}} up to `end`:
    x = purchase days - 1, times in weeks since the first purchase day."""
    rows = []
    for customer in sorted(days):
        spend = sorted((d, v) for d, v in days[customer].items() if d <= end)
        if not spend:
            continue
        first, last = spend[0][0], spend[-1][0]
        amounts = [v for _, v in spend]
        x = len(spend) - 1
        repeat = sum(amounts[1:]) / x if x else math.nan
        rows.append((x, (last - first).days / 7, (end - first).days / 7, repeat,
                     sum(amounts) / len(amounts)))
    return Summary(*(np.array(col, dtype=float) for col in zip(*rows)))


def purchase_days(transactions) -> dict:
    """{customer: {day: amount}}: a customer's purchases on one day are ONE transaction,
    their amounts summed."""
    days: dict = defaultdict(lambda: defaultdict(float))
    for customer, day, amount in transactions:
        days[customer][day] += amount
    return days


@pytest.fixture(scope="module")
def cdnow_days() -> dict:
    # customer id, id, yyyymmdd, quantity, amount (whitespace separated)
    transactions = []
    for line in (CDNOW / "CDNOW_sample.txt").read_text().splitlines():
        if line.strip():
            _, customer, ymd, _quantity, amount = line.split()
            day = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
            transactions.append((customer, day, float(amount)))
    assert len(transactions) == 6919
    return purchase_days(transactions)


@pytest.fixture(scope="module")
def cdnow_summary() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """lifetimes' cdnow_customers_summary.csv: x, t_x, T (weeks, 2 decimals)."""
    data = np.loadtxt(CDNOW / "cdnow_customers_summary.csv", delimiter=",", skiprows=1)
    assert data.shape == (2357, 4)
    return data[:, 1], data[:, 2], data[:, 3]


def hyp2f1_series(a: float, b: float, c: float, z: float) -> float:
    """Gauss's series sum_n (a)_n (b)_n / ((c)_n n!) z^n, 0 <= z < 1: an evaluation
    independent of scipy. Summed until the tail is negligible: the term ratio tends to z
    (from above or below, monotonically for the a, b, c used here), so once it is below
    1 the tail after a term is at most term * q / (1 - q) with q = max(ratio, z)."""
    term, total, n = 1.0, 1.0, 0
    while True:
        ratio = (a + n) * (b + n) / ((c + n) * (n + 1)) * z
        term *= ratio
        total += term
        n += 1
        bound = max(ratio, z)
        if ratio < 1 and abs(term) * bound / (1 - bound) < 1e-17 * abs(total):
            return total
        assert n < 1_000_000


def eq10_by_series(params: BgNbdParams, t: float, x: int, t_x: float, T: float) -> float:
    """Paper eq. (10), written as printed, with the 2F1 summed as a series."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + T + t)
    g = ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1_series(r + x, b + x, a + b + x - 1, z)
    numerator = (a + b + x - 1) / (a - 1) * (1 - g)
    odds_dead = a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 0.0
    return numerator / (1 + odds_dead)


def log_param_hessian(loglik, log_theta: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Central-difference Hessian of the total log-likelihood in log-parameter space."""
    k = len(log_theta)
    hessian = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            def at(si, sj, i=i, j=j):
                u = log_theta.copy()
                u[i] += si * h
                u[j] += sj * h
                return loglik(u)
            hessian[i, j] = hessian[j, i] = (
                at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / (4 * h * h)
    return hessian


def simulate_bg_nbd(rng, n, params: BgNbdParams, T):
    """The BG/NBD story: first purchase at 0; while alive, exponential gaps at rate
    lambda ~ Gamma(r, rate alpha); after each repeat purchase, dropout with probability
    p ~ Beta(a, b). Returns x and t_x within (0, T]."""
    lam = rng.gamma(params.r, 1.0 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    x, t_x, now = np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        nxt = now[idx] + rng.exponential(1.0, len(idx)) / lam[idx]
        bought = nxt <= T[idx]
        alive[idx[~bought]] = False
        idx, nxt = idx[bought], nxt[bought]
        x[idx] += 1
        t_x[idx] = now[idx] = nxt
        alive[idx[rng.random(len(idx)) < p[idx]]] = False
    return x, t_x


def simulate_spend(rng, x, params: GammaGammaParams):
    """Gamma-Gamma: nu ~ Gamma(q, rate gamma) per customer, each of the x repeat
    transactions z ~ Gamma(p, rate nu); returns the mean (NaN where x == 0)."""
    nu = rng.gamma(params.q, 1.0 / params.gamma, len(x))
    owner = np.repeat(np.arange(len(x)), x)
    z = rng.gamma(params.p, 1.0 / nu[owner])
    totals = np.bincount(owner, weights=z, minlength=len(x))
    with np.errstate(invalid="ignore"):
        return np.where(x > 0, totals / x, np.nan)


# --------------------------------------------------------------------------- CDNOW


def test_transaction_summary_matches_the_shipped_summary(cdnow_days, cdnow_summary):
    # Our day-level conventions rebuild lifetimes' (= the paper's) x exactly and t_x, T
    # to its 2-decimal rounding: one purchase day = one transaction.
    cal = summarise(cdnow_days, CALIBRATION_END)
    x, t_x, T = cdnow_summary
    assert np.array_equal(cal.x, x)
    assert np.abs(cal.t_x - t_x).max() <= 0.005
    assert np.abs(cal.T - T).max() <= 0.005


def test_bg_nbd_reproduces_the_paper_on_cdnow(cdnow_summary):
    fit = fit_bg_nbd(*cdnow_summary)
    assert fit.model == "bg_nbd" and fit.converged, fit.message
    assert fit.n_customers == 2357
    got = fit.params
    assert got.r == pytest.approx(0.243, abs=0.0015)
    assert got.alpha == pytest.approx(4.414, abs=0.0015)
    assert got.a == pytest.approx(0.793, abs=0.0015)
    assert got.b == pytest.approx(2.426, abs=0.0015)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.1)
    assert fit.log_likelihood == bg_nbd_log_likelihood(got, *cdnow_summary)
    # The published parameters are (to their rounding) the maximum.
    assert bg_nbd_log_likelihood(PAPER, *cdnow_summary) == pytest.approx(-9582.4, abs=0.1)


def test_gamma_gamma_reproduces_the_paper_with_the_first_day_excluded(cdnow_days):
    cal = summarise(cdnow_days, CALIBRATION_END)
    fit = fit_gamma_gamma(cal.x, cal.mean_repeat_spend)
    assert fit.model == "gamma_gamma" and fit.converged, fit.message
    assert fit.n_customers == 946  # persons with x > 0
    # Published: p = 6.25, q = 3.74, gamma = 15.44; we get 6.2496, 3.7442, 15.4435.
    # (lifetimes' docs say v = 15.45: its summary file rounds mbar to cents.)
    assert (round(fit.params.p, 2), round(fit.params.q, 2), round(fit.params.gamma, 2)) == (
        6.25, 3.74, 15.44)
    assert fit.log_likelihood == gamma_gamma_log_likelihood(
        fit.params, cal.x, cal.mean_repeat_spend)


def test_averaging_all_days_does_not_reproduce_the_paper(cdnow_days):
    # The other convention one might pick, mean spend over ALL calibration days (the
    # first included), fitted with x + 1 (the number of days averaged) or with x as the
    # count: far from the published 6.25 / 3.74 / 15.44. Recorded for the docs.
    cal = summarise(cdnow_days, CALIBRATION_END)
    repeat = cal.x > 0
    with_days = fit_gamma_gamma(cal.x[repeat] + 1, cal.mean_all_days[repeat]).params
    assert (round(with_days.p, 2), round(with_days.q, 2), round(with_days.gamma, 2)) == (
        7.86, 3.97, 13.33)
    with_x = fit_gamma_gamma(cal.x[repeat], cal.mean_all_days[repeat]).params
    assert (round(with_x.p, 2), round(with_x.q, 2), round(with_x.gamma, 2)) == (
        14.34, 3.95, 7.29)


def test_holdout_purchases_predicted_and_actual(cdnow_days, cdnow_summary):
    # The 39-week holdout (1997-10-01 .. 1998-06-30): the paper's parameters predict about
    # 1,653 repeat purchase days in all; the data hold 1,882 (distinct customer-days).
    predicted = conditional_expected_purchases(PAPER, 39.0, *cdnow_summary)
    assert predicted.shape == (2357,)
    assert predicted.sum() == pytest.approx(1653, abs=5)
    actual = sum(1 for spend in cdnow_days.values() for d in spend
                 if CALIBRATION_END < d <= HOLDOUT_END)
    assert actual == 1882


# --------------------------------------------------------------------------- recovery


def test_bg_nbd_recovers_planted_parameters():
    # 20,000 customers, observed 20 to 78 weeks. Tolerance: 4 asymptotic standard errors
    # (inverse Hessian of the log-likelihood at the optimum, log-parameter scale), and
    # the standard errors must be small (< 15 % relative) for that to mean something;
    # here they are 1.4 % (r) to 6.5 % (b).
    truth = BgNbdParams(r=0.5, alpha=6.0, a=0.7, b=2.5)
    rng = np.random.default_rng(2005)
    n = 20_000
    T = rng.uniform(20, 78, n)
    x, t_x = simulate_bg_nbd(rng, n, truth, T)
    fit = fit_bg_nbd(x, t_x, T)
    assert fit.converged, fit.message
    names = ("r", "alpha", "a", "b")
    log_est = np.log([getattr(fit.params, k) for k in names])
    hessian = log_param_hessian(
        lambda u: bg_nbd_log_likelihood(BgNbdParams(*np.exp(u)), x, t_x, T), log_est)
    se = np.sqrt(np.diag(np.linalg.inv(-hessian)))
    assert (se < 0.15).all(), se
    z = (log_est - np.log([getattr(truth, k) for k in names])) / se
    assert (np.abs(z) < 4).all(), dict(zip(names, z))


def test_gamma_gamma_recovers_planted_parameters():
    # Same tolerance rule; about 13,000 repeat buyers, relative SE 2 % (q) to 6 % (gamma).
    truth = GammaGammaParams(p=6.0, q=4.0, gamma=15.0)
    rng = np.random.default_rng(2013)
    n = 20_000
    x, _ = simulate_bg_nbd(rng, n, BgNbdParams(0.5, 6.0, 0.7, 2.5), rng.uniform(20, 78, n))
    mbar = simulate_spend(rng, x, truth)
    fit = fit_gamma_gamma(x, mbar)
    assert fit.converged, fit.message
    assert fit.n_customers == int((x > 0).sum())
    names = ("p", "q", "gamma")
    log_est = np.log([getattr(fit.params, k) for k in names])
    hessian = log_param_hessian(
        lambda u: gamma_gamma_log_likelihood(GammaGammaParams(*np.exp(u)), x, mbar), log_est)
    se = np.sqrt(np.diag(np.linalg.inv(-hessian)))
    assert (se < 0.15).all(), se
    z = (log_est - np.log([getattr(truth, k) for k in names])) / se
    assert (np.abs(z) < 4).all(), dict(zip(names, z))


# --------------------------------------------------------------------------- closed forms


def test_p_alive_is_one_without_repeat_purchases():
    assert np.array_equal(p_alive(PAPER, [0, 0], [0.0, 0.0], [0.0, 38.86]), [1.0, 1.0])


def test_p_alive_by_hand():
    # CDNOW customer 1: x = 2, t_x = 30.43, T = 38.86, the paper's parameters.
    #   a / (b + x - 1)             = 0.793 / 3.426            = 0.231465...
    #   (alpha + T) / (alpha + t_x) = 43.274 / 34.844          = 1.241935...
    #   ... ** (r + x) = 1.241935 ** 2.243 = exp(2.243 * 0.216671) = 1.625789...
    #   P(alive) = 1 / (1 + 0.231465 * 1.625789) = 1 / 1.376314   = 0.726579
    got = p_alive(PAPER, [2], [30.43], [38.86])
    assert got[0] == pytest.approx(1 / (1 + 0.793 / 3.426 * (43.274 / 34.844) ** 2.243), rel=1e-12)
    assert got[0] == pytest.approx(0.726579, abs=1e-6)


@pytest.mark.parametrize(
    ("params", "t", "x", "t_x", "T"),
    [
        (PAPER, 39.0, 2, 30.43, 38.86),
        (PAPER, 39.0, 0, 0.0, 38.86),
        (PAPER, 52.14, 7, 37.0, 38.0),
        (PAPER, 10.0, 1, 0.5, 3.0),
        (PAPER, 39.0, 60, 30.0, 38.86),  # large x: the printed form's power underflows
        (BgNbdParams(1.5, 10.0, 2.0, 5.0), 26.0, 3, 12.0, 20.0),
        # c - A - B = x + r + 1 - a is an integer (100) and z = 0.96: scipy's hyp2f1
        # returns inf on that branch, the module nudges c
        (BgNbdParams(2.0, 0.5, 3.0, 0.7), 39.0, 100, 0.5, 1.0),
    ],
)
def test_conditional_expected_purchases_against_the_series(params, t, x, t_x, T):
    got = conditional_expected_purchases(params, t, [x], [t_x], [T])
    assert got[0] == pytest.approx(eq10_by_series(params, t, x, t_x, T), rel=1e-9)


def test_expected_purchases_against_eq7_and_its_limits():
    r, alpha, a, b = PAPER.r, PAPER.alpha, PAPER.a, PAPER.b
    for t in (0.5, 39.0, 78.0):
        # eq. (7): (a+b-1)/(a-1) * [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))]
        by_series = (a + b - 1) / (a - 1) * (
            1 - (alpha / (alpha + t)) ** r * hyp2f1_series(r, b, a + b - 1, t / (alpha + t)))
        assert expected_purchases(PAPER, t) == pytest.approx(by_series, rel=1e-9)
    # A scalar gives a float, an array an array (a tracking plot).
    assert isinstance(expected_purchases(PAPER, 39.0), float)
    grid = np.array([0.0, 13.0, 39.0, 78.0])
    curve = expected_purchases(PAPER, grid)
    assert curve.shape == (4,) and curve[0] == 0.0 and (np.diff(curve) > 0).all()
    assert curve[2] == expected_purchases(PAPER, 39.0)
    # Early on purchases come at the mean rate E[lambda] = r / alpha = 0.055052 a week.
    assert expected_purchases(PAPER, 1e-6) / 1e-6 == pytest.approx(r / alpha, rel=1e-5)
    # In the long run a customer makes 1/p repeat purchases, E[1/p] = (a+b-1)/(a-1) for a > 1.
    assert expected_purchases(BgNbdParams(2.0, 0.5, 3.0, 0.7), 1e6) == pytest.approx(
        2.7 / 2.0, rel=1e-4)
    # A customer with no repeat purchase and T = 0 is the unconditional customer.
    assert conditional_expected_purchases(PAPER, 39.0, [0], [0.0], [0.0])[0] == pytest.approx(
        expected_purchases(PAPER, 39.0), rel=1e-14)


def test_conditional_expected_spend_by_hand():
    # E[M | x, mbar] = (gamma + x*mbar) * p / (p*x + q - 1)
    #   x = 2, mbar = 22.35: (15.44 + 44.70) * 6.25 / (12.5 + 2.74) = 375.875 / 15.24 = 24.663714
    #   x = 0: the population mean p*gamma/(q-1) = 96.5 / 2.74 = 35.218978 (spend ignored)
    got = conditional_expected_spend(PAPER_SPEND, [2, 0, 0], [22.35, np.nan, 0.0])
    assert got == pytest.approx([375.875 / 15.24, 96.5 / 2.74, 96.5 / 2.74], rel=1e-12)
    assert got[0] == pytest.approx(24.663714, abs=1e-6)
    # The estimate shrinks the customer's mean towards the population mean.
    many = conditional_expected_spend(PAPER_SPEND, [50], [22.35])[0]
    assert 22.35 < many < got[0] < got[1]


def test_conditional_expected_spend_needs_a_finite_mean():
    with pytest.raises(ValueError, match=r"needs p\*x \+ q > 1.*index 0"):
        conditional_expected_spend(GammaGammaParams(p=2.0, q=0.8, gamma=10.0), [0], [np.nan])


# --------------------------------------------------------------------------- edge cases


def test_no_customers_is_not_fittable():
    with pytest.raises(ClvNotFittable, match="no customers"):
        fit_bg_nbd([], [], [])
    with pytest.raises(ClvNotFittable, match="no customers"):
        fit_gamma_gamma([], [])


def test_one_purchase_per_customer():
    # Nobody came back: BG/NBD runs but says the parameters are not identified;
    # Gamma-Gamma has no repeat transaction to learn from.
    T = np.array([1.0, 5.0, 20.0, 38.0])
    zeros = np.zeros(4)
    fit = fit_bg_nbd(zeros, zeros, T)
    assert not fit.converged
    assert "not identified" in fit.message and "x == 0" in fit.message
    assert math.isfinite(fit.log_likelihood) and fit.log_likelihood <= 0
    with pytest.raises(ClvNotFittable, match=r"no repeat buyers: .*x > 0 .*all 4 customers"):
        fit_gamma_gamma(zeros, [30.0, 12.5, 8.0, 99.0])


def test_all_purchases_on_one_day():
    # Several purchases each, all on the customer's first day: one transaction each.
    day = date(1997, 3, 1)
    cal = summarise(purchase_days([("c1", day, 10.0), ("c1", day, 5.0),
                                   ("c2", day, 7.0), ("c2", day, 1.0), ("c2", day, 2.0)]),
                    CALIBRATION_END)
    assert np.array_equal(cal.x, [0, 0]) and np.array_equal(cal.mean_all_days, [15.0, 10.0])
    fit = fit_bg_nbd(cal.x, cal.t_x, cal.T)
    assert not fit.converged and "not identified" in fit.message
    with pytest.raises(ClvNotFittable, match="no repeat buyers"):
        fit_gamma_gamma(cal.x, cal.mean_repeat_spend)


def test_identical_spends_do_not_pass_as_converged():
    # No spread at all between or within customers: p and q run away.
    fit = fit_gamma_gamma([1, 2, 3, 1], [10.0, 10.0, 10.0, 10.0])
    assert not fit.converged and fit.message


@pytest.mark.parametrize(
    ("status", "gradient", "converged"),
    [
        (0, [1e-3, 0.0], True),  # L-BFGS-B's own convergence
        (2, [2e-8, -1e-8], True),  # the line search failed at a stationary point
        (2, [2e-8, 1e-3], False),  # failed elsewhere
        (1, [0.0, 0.0], False),  # iteration limit
    ],
)
def test_a_failed_line_search_at_a_stationary_point_counts_as_converged(status, gradient, converged):
    from scipy.optimize import OptimizeResult

    from lifecycle_warehouse.clv.models import _verdict

    result = OptimizeResult(x=np.log([6.25, 3.74]), status=status, success=status == 0,
                            message="ABNORMAL: " if status == 2 else "done", jac=np.array(gradient))
    theta, ok, message = _verdict(result, ("p", "q"))
    assert ok is converged and message
    assert theta == pytest.approx([6.25, 3.74])
    if status == 2:
        assert ("stationary point" in message) is converged


@pytest.mark.parametrize(
    ("x", "t_x", "T", "match"),
    [
        ([1, 2], [1.0], [2.0, 3.0], "equal lengths"),
        ([1, np.nan], [1.0, 1.0], [2.0, 2.0], r"x must be finite: first offending index 1"),
        ([1, 1], [1.0, np.inf], [2.0, 2.0], r"t_x must be finite: first offending index 1"),
        ([1, 1], [1.0, 1.0], [2.0, np.nan], r"T must be finite: first offending index 1"),
        ([1, -1], [1.0, 0.0], [2.0, 2.0], r"x must be a non-negative integer.*index 1"),
        ([1, 1.5], [1.0, 1.0], [2.0, 2.0], r"x must be a non-negative integer.*index 1"),
        ([1, 1], [-1.0, 1.0], [2.0, 2.0], r"t_x must be >= 0: first offending index 0"),
        ([1, 1, 1], [1.0, 1.0, 3.0], [2.0, 2.0, 2.5], r"t_x must be <= T: first offending index 2"),
        ([1, 0], [1.0, 1.0], [2.0, 2.0], r"t_x must be 0 when x == 0: first offending index 1"),
    ],
)
def test_invalid_purchase_inputs_name_the_rule(x, t_x, T, match):
    for call in (lambda: fit_bg_nbd(x, t_x, T),
                 lambda: p_alive(PAPER, x, t_x, T),
                 lambda: conditional_expected_purchases(PAPER, 39.0, x, t_x, T),
                 lambda: discounted_expected_purchases(PAPER, x, t_x, T, 52.0, 0.1)):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize(
    ("x", "spend", "match"),
    [
        ([1, 2], [1.0], "equal lengths"),
        ([1, -2], [1.0, 1.0], r"x must be a non-negative integer.*index 1"),
        ([1, 2], [1.0, 0.0], r"mean_repeat_spend must be finite and > 0 when x > 0.*index 1"),
        ([1, 2], [np.nan, 3.0], r"mean_repeat_spend must be finite and > 0 when x > 0.*index 0"),
    ],
)
def test_invalid_spend_inputs_name_the_rule(x, spend, match):
    with pytest.raises(ValueError, match=match):
        fit_gamma_gamma(x, spend)
    with pytest.raises(ValueError, match=match):
        conditional_expected_spend(PAPER_SPEND, x, spend)


def test_spend_is_ignored_without_repeat_purchases():
    # x == 0 rows may carry 0 or NaN spend; they do not enter the likelihood.
    x, spend = np.array([2, 0, 0, 3]), np.array([20.0, np.nan, 0.0, 30.0])
    assert gamma_gamma_log_likelihood(PAPER_SPEND, x, spend) == gamma_gamma_log_likelihood(
        PAPER_SPEND, [2, 3], [20.0, 30.0])


def test_scoring_no_customers_gives_empty_arrays():
    empty = np.array([])
    assert p_alive(PAPER, empty, empty, empty).shape == (0,)
    assert conditional_expected_purchases(PAPER, 39.0, empty, empty, empty).shape == (0,)
    assert discounted_expected_purchases(PAPER, empty, empty, empty, 52.0, 0.1).shape == (0,)
    assert conditional_expected_spend(PAPER_SPEND, empty, empty).shape == (0,)


# --------------------------------------------------------------------------- row order


def test_fits_do_not_depend_on_row_order(cdnow_days, cdnow_summary):
    order = np.random.default_rng(7).permutation(2357)
    x, t_x, T = cdnow_summary
    assert fit_bg_nbd(x[order], t_x[order], T[order]) == fit_bg_nbd(x, t_x, T)
    cal = summarise(cdnow_days, CALIBRATION_END)
    assert fit_gamma_gamma(cal.x[order], cal.mean_repeat_spend[order]) == fit_gamma_gamma(
        cal.x, cal.mean_repeat_spend)


# --------------------------------------------------------------------------- discounting


def test_discounted_purchases(cdnow_summary):
    horizon = 52.14
    plain = conditional_expected_purchases(PAPER, horizon, *cdnow_summary)
    undiscounted = discounted_expected_purchases(PAPER, *cdnow_summary, horizon, 0.0)
    np.testing.assert_allclose(undiscounted, plain, rtol=1e-12, atol=0)
    by_rate = [discounted_expected_purchases(PAPER, *cdnow_summary, horizon, rate)
               for rate in (0.0, 0.05, 0.1, 0.2, 1.0)]
    assert all((later > 0).all() and (later < earlier).all()
               for earlier, later in pairwise(by_rate))
    # A year at 10 %: the discount is between none and the full year's 1/1.1.
    ratio = by_rate[2] / plain
    assert ((ratio > 1 / 1.1) & (ratio < 1)).all()
    # Finer steps move the result little; zero horizon means nothing to expect.
    daily = discounted_expected_purchases(PAPER, *cdnow_summary, horizon, 0.1, steps=365)
    np.testing.assert_allclose(daily, by_rate[2], rtol=2e-3)
    assert (discounted_expected_purchases(PAPER, *cdnow_summary, 0.0, 0.1) == 0).all()
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        discounted_expected_purchases(PAPER, *cdnow_summary, horizon, 0.1, steps=0)
    with pytest.raises(ValueError, match="annual_discount_rate"):
        discounted_expected_purchases(PAPER, *cdnow_summary, horizon, -0.1)
