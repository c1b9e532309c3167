"""BG/NBD purchase model and Gamma-Gamma spend model: closed-form likelihoods, maximum
likelihood fits and per-customer scores. numpy arrays in, numpy arrays out.

BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way", Marketing
Science 24(2)). While alive, a customer buys at Poisson rate lambda; after each repeat
purchase they drop out for good with probability p. Across customers
lambda ~ Gamma(shape r, rate alpha) and p ~ Beta(a, b). The likelihood of one customer
(paper eq. 6) is

    L = B(a, b+x)/B(a, b) * G(r+x)/G(r) * alpha^r / (alpha+T)^(r+x)
      + [x > 0] B(a+1, b+x-1)/B(a, b) * G(r+x)/G(r) * alpha^r / (alpha+t_x)^(r+x)

and the scores are P(alive | x, t_x, T) (eq. 13), the unconditional E[X(t)] (eq. 7) and
the conditional E[X(T, T+t) | x, t_x, T] (eq. 10).

Gamma-Gamma (Colombo & Jiang 1999; Fader & Hardie 2013, "The Gamma-Gamma Model of
Monetary Value"). Each transaction's value z ~ Gamma(shape p, rate nu), with
nu ~ Gamma(shape q, rate gamma) across customers, independent of the purchase process.
Only the mean mbar of a customer's x transaction values enters the likelihood:

    f(mbar | x) = G(px+q)/(G(px) G(q)) * gamma^q * mbar^(px-1) * x^(px)
                  / (gamma + x*mbar)^(px+q)

and E[M | x, mbar] = (gamma + x*mbar) * p / (p*x + q - 1), a weighted mean of the
population mean p*gamma/(q-1) and the customer's own mbar. This module's `gamma` is the
parameter lifetimes and pymc-marketing call `v`.

Conventions (the caller builds the inputs):
- x: number of repeat purchase days in the calibration period (purchase days - 1).
  Several purchases of one customer on one day count as one transaction, their amounts
  summed.
- t_x: time of the last purchase day since the first purchase day (0 when x == 0).
- T: time from the first purchase day to the as-of date (end of calibration).
- Time is in weeks (days / 7). alpha is in the same unit; r, a, b, p, q are unitless;
  gamma is in money units.
- mean_repeat_spend (Gamma-Gamma's mbar): the mean value of the x REPEAT transaction
  days, the first purchase day excluded (its value is ignored where x == 0; it may be 0
  or NaN there). This is the convention of Fader & Hardie's note and the one that
  reproduces their published CDNOW estimates p = 6.25, q = 3.74, gamma = 15.44 (we get
  6.2496, 3.7442, 15.4435). Averaging all calibration days, the first included, does not:
  with x + 1 as the count it gives p = 7.86, q = 3.97, gamma = 13.33, with x as the
  count p = 14.34, q = 3.95, gamma = 7.29 (tests/unit/test_clv_models.py).

Fitting. The inputs are compressed to unique rows ((x, t_x, T), or (x, mbar)) with
counts (sorted lexicographically, like np.unique(axis=0)), and the count-weighted
log-likelihood is maximised: the fit is then exactly independent of row order, and cheap
for many customers, whose rows repeat (t_x and T are whole days); the special functions
are evaluated once per distinct x. The optimizer is scipy's L-BFGS-B on the logarithms of the
parameters, with the analytic gradient (digamma), inside the box [-20, 20]. The box
holds every parameter a real data set gives (e^-20 = 2e-9 to e^20 = 5e8; alpha in weeks
or days and gamma in cents stay far inside it) and keeps gammaln/betaln finite and
accurate; a parameter that reaches it is running away to 0 or infinity (for example b
when nobody drops out, or r and alpha together when purchase rates are homogeneous), so
the MLE is at the edge of the parameter space and the fit is reported as not converged.
`Fit.converged` is: optimizer success (or a line search that failed at a point whose
gradient is below 1e-6: rounding, not a wrong point) AND all parameters finite and
positive AND no log-parameter within 0.01 of the box.

Numerics. Eq. (10) is evaluated through Euler's transformation of its 2F1 (no term grows
with x, so no overflow), with a nudge around a scipy hyp2f1 failure (inf when c - a - b
is an integer and z > 0.9); checked against mpmath and against the plain series in the
tests. The closed forms divide by a - 1: a fitted a within 1e-7 of 1 is evaluated at
1 + 1e-7 (the limit is finite; relative error about 1e-7). P(alive) is computed in logs
(expit), so large x cannot overflow. The (x, T)-only part of eq. (10) is computed once
per distinct (x, T), which keeps the weekly discounted sum cheap.

Degenerate inputs (decided here, tested):
- no customers: ClvNotFittable from both fits.
- every customer has x == 0 (one purchase day each): fit_bg_nbd runs and returns
  converged=False with the reason (a and b do not enter the likelihood and r/alpha runs
  to 0, so nothing is identified); fit_gamma_gamma raises ClvNotFittable (no person
  with a repeat transaction).
Scoring an empty input returns empty arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

__all__ = [
    "BgNbdParams",
    "ClvNotFittable",
    "Fit",
    "GammaGammaParams",
    "bg_nbd_log_likelihood",
    "conditional_expected_purchases",
    "conditional_expected_spend",
    "discounted_expected_purchases",
    "expected_purchases",
    "fit_bg_nbd",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "p_alive",
]

# Box for the log-parameters, and how close to it counts as "at the bound".
LOG_BOUND = 20.0
_AT_BOUND_MARGIN = 0.01
# L-BFGS-B on the mean log-likelihood per customer (order 1), so these are absolute
# enough: they stop far below the precision the paper's three decimals need.
_OPTIONS = {"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-8}
# L-BFGS-B's line search can fail (status 2, ABNORMAL) at the maximum itself, when no step
# changes the objective by more than rounding: it did on the CDNOW Gamma-Gamma fit on one
# CPU (AMD EPYC), with the published parameters found and a largest gradient component of
# 2e-8. Such a stop counts as converged when the point is stationary to this tolerance.
_STATIONARY_GTOL = 1e-6
_LINE_SEARCH_FAILED = 2


class ClvNotFittable(ValueError):
    """The data cannot identify the model at all (no customers, no repeat buyers)."""


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float


@dataclass(frozen=True)
class Fit:
    """Result of one model's fit. n_customers counts the customers that entered the
    likelihood (for Gamma-Gamma: those with x > 0)."""

    model: str
    params: BgNbdParams | GammaGammaParams
    log_likelihood: float
    n_customers: int
    converged: bool
    message: str
    iterations: int


# --------------------------------------------------------------------------- validation


def _column(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    # -0.0 + 0.0 == +0.0: np.unique must not see two spellings of zero.
    return arr + 0.0


def _fail(rule: str, bad: np.ndarray, **columns: np.ndarray) -> None:
    if bad.any():
        i = int(np.argmax(bad))
        shown = ", ".join(f"{k}={v[i].item()!r}" for k, v in columns.items())
        raise ValueError(f"{rule}: first offending index {i} ({shown})")


def _equal_lengths(**columns: np.ndarray) -> None:
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ValueError(f"inputs must have equal lengths (got {listed})")


def _validate_rft(x, t_x, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, t_x, T = _column("x", x), _column("t_x", t_x), _column("T", T)
    _equal_lengths(x=x, t_x=t_x, T=T)
    for name, col in (("x", x), ("t_x", t_x), ("T", T)):
        _fail(f"{name} must be finite", ~np.isfinite(col), **{name: col})
    _fail("x must be a non-negative integer (repeat purchase days)",
          (x < 0) | (x != np.floor(x)), x=x)
    _fail("t_x must be >= 0", t_x < 0, t_x=t_x)
    _fail("t_x must be <= T", t_x > T, t_x=t_x, T=T)
    _fail("t_x must be 0 when x == 0", (x == 0) & (t_x != 0), x=x, t_x=t_x)
    return x, t_x, T


def _validate_spend(x, mean_repeat_spend) -> tuple[np.ndarray, np.ndarray]:
    x, m = _column("x", x), _column("mean_repeat_spend", mean_repeat_spend)
    _equal_lengths(x=x, mean_repeat_spend=m)
    _fail("x must be finite", ~np.isfinite(x), x=x)
    _fail("x must be a non-negative integer (repeat purchase days)",
          (x < 0) | (x != np.floor(x)), x=x)
    pos = x > 0
    _fail("mean_repeat_spend must be finite and > 0 when x > 0",
          pos & ~(np.isfinite(m) & (m > 0)), x=x, mean_repeat_spend=m)
    # The value is ignored where x == 0 (lifetimes writes 0 there, others NaN).
    return x, np.where(pos, m, 1.0)


def _positive(name: str, value) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def _bg_params(params: BgNbdParams) -> tuple[float, float, float, float]:
    if not isinstance(params, BgNbdParams):
        raise TypeError(f"expected BgNbdParams, got {type(params).__name__}")
    return (_positive("r", params.r), _positive("alpha", params.alpha),
            _positive("a", params.a), _positive("b", params.b))


def _gg_params(params: GammaGammaParams) -> tuple[float, float, float]:
    if not isinstance(params, GammaGammaParams):
        raise TypeError(f"expected GammaGammaParams, got {type(params).__name__}")
    return (_positive("p", params.p), _positive("q", params.q),
            _positive("gamma", params.gamma))


def _time(name: str, t) -> np.ndarray:
    arr = np.asarray(t, dtype=float)
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise ValueError(f"{name} must be finite and >= 0, got {t!r}")
    return arr


def _unique_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique rows in lexicographic order, their counts, and each input row's index
    into them: what np.unique(np.column_stack(columns), axis=0, return_counts=True,
    return_inverse=True) returns, but with np.lexsort, which is ~10x faster than the
    structured-array sort np.unique(axis=0) does. Sorting makes it independent of the
    input order."""
    n = len(columns[0])
    if n == 0:
        return np.empty((0, len(columns))), np.empty(0), np.empty(0, dtype=np.intp)
    order = np.lexsort(columns[::-1])  # lexsort's last key is the primary one
    sorted_cols = [c[order] for c in columns]
    new_row = np.ones(n, dtype=bool)
    new_row[1:] = np.any([c[1:] != c[:-1] for c in sorted_cols], axis=0)
    starts = np.flatnonzero(new_row)
    rows = np.column_stack([c[starts] for c in sorted_cols])
    counts = np.diff(np.append(starts, n)).astype(float)
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(new_row) - 1
    return rows, counts, inverse


def _compress(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows (sorted, so independent of input order) and their counts."""
    rows, counts, _ = _unique_rows(*columns)
    return rows, counts


# --------------------------------------------------------------------------- likelihoods


def _levels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct x values and each row's index into them. The special functions of the
    likelihoods depend on x alone, and x takes few values: evaluating them once per
    level instead of once per row is what makes 100,000 customers cheap."""
    levels, index = np.unique(x, return_inverse=True)
    return levels, index.reshape(-1)


def _bg_nbd_ll(theta, x, t_x, T, gradient: bool = False, levels=None):
    """Per-row log-likelihood (paper eq. 6 in logs) and optionally its gradient with
    respect to (r, alpha, a, b), one column each."""
    r, alpha, a, b = theta
    xu, xi = _levels(x) if levels is None else levels
    pos_u = xu > 0
    # Where x == 0 the second term is absent; x_safe keeps betaln(a+1, b+x-1) defined.
    xs_u = np.where(pos_u, xu, 1.0)
    beta_ab = betaln(a, b)
    head = (gammaln(r + xu) - gammaln(r) + r * math.log(alpha))[xi]
    beta1 = (betaln(a, b + xu) - beta_ab)[xi]
    beta2 = np.where(pos_u, betaln(a + 1, b + xs_u - 1) - beta_ab, -np.inf)[xi]
    log_aT, log_atx = np.log(alpha + T), np.log(alpha + t_x)
    term1 = beta1 - (r + x) * log_aT
    term2 = beta2 - (r + x) * log_atx  # -inf where x == 0 (the term is absent)
    mix = np.logaddexp(term1, term2)
    ll = head + mix
    if not gradient:
        return ll
    w1, w2 = np.exp(term1 - mix), np.exp(term2 - mix)  # the two terms' shares of L
    psi_abx = digamma(a + b + xu)
    d_a_beta, d_b_beta = digamma(a) - digamma(a + b), digamma(b) - digamma(a + b)
    d_r = ((digamma(r + xu) - digamma(r) + math.log(alpha))[xi]
           - w1 * log_aT - w2 * log_atx)
    d_alpha = r / alpha - (r + x) * (w1 / (alpha + T) + w2 / (alpha + t_x))
    d_a = (w1 * (digamma(a) - psi_abx)[xi]
           + w2 * (digamma(a + 1) - psi_abx)[xi] - d_a_beta)
    d_b = (w1 * (digamma(b + xu) - psi_abx)[xi]
           + w2 * np.where(pos_u, digamma(b + xs_u - 1) - psi_abx, 0.0)[xi] - d_b_beta)
    return ll, np.column_stack([d_r, d_alpha, d_a, d_b])


def _gamma_gamma_ll(theta, x, m, gradient: bool = False, levels=None):
    """Per-row log density of mbar given x (x > 0 only), and optionally its gradient
    with respect to (p, q, gamma)."""
    p, q, g = theta
    xu, xi = _levels(x) if levels is None else levels
    px = p * x
    # log(x*m / (g + x*m)) and log(g / (g + x*m)), written to keep their precision.
    log_share_own = -np.log1p(g / (x * m))
    log_share_pop = -np.log1p(x * m / g)
    ll = ((gammaln(p * xu + q) - gammaln(p * xu) - gammaln(q))[xi]
          + q * log_share_pop + px * log_share_own - np.log(m))
    if not gradient:
        return ll
    psi_pxq = digamma(p * xu + q)
    d_p = x * ((psi_pxq - digamma(p * xu))[xi] + log_share_own)
    d_q = (psi_pxq - digamma(q))[xi] + log_share_pop
    d_g = q / g - (px + q) / (g + x * m)
    return ll, np.column_stack([d_p, d_q, d_g])


def bg_nbd_log_likelihood(params: BgNbdParams, x, t_x, T) -> float:
    """Total BG/NBD log-likelihood over the customers (the paper's LL)."""
    theta = _bg_params(params)
    x, t_x, T = _validate_rft(x, t_x, T)
    if len(x) == 0:
        return 0.0
    rows, counts = _compress(x, t_x, T)
    with np.errstate(all="ignore"):
        return float(counts @ _bg_nbd_ll(theta, rows[:, 0], rows[:, 1], rows[:, 2]))


def gamma_gamma_log_likelihood(params: GammaGammaParams, x, mean_repeat_spend) -> float:
    """Total Gamma-Gamma log-likelihood over the persons with x > 0 (the others carry
    no spend information and contribute nothing)."""
    theta = _gg_params(params)
    x, m = _validate_spend(x, mean_repeat_spend)
    pos = x > 0
    if not pos.any():
        return 0.0
    rows, counts = _compress(x[pos], m[pos])
    with np.errstate(all="ignore"):
        return float(counts @ _gamma_gamma_ll(theta, rows[:, 0], rows[:, 1]))


# --------------------------------------------------------------------------- fitting


def _maximise(per_row, rows: np.ndarray, counts: np.ndarray, start: np.ndarray):
    """L-BFGS-B on the log-parameters of the count-weighted mean log-likelihood."""
    weights = counts / counts.sum()
    columns = tuple(rows.T)
    levels = _levels(columns[0])

    def objective(log_theta):
        theta = np.exp(log_theta)
        ll, grad = per_row(theta, *columns, gradient=True, levels=levels)
        value = -(weights @ ll)
        # chain rule: d/d(log theta) = theta * d/d(theta)
        slope = -(weights @ grad) * theta
        if not (np.isfinite(value) and np.isfinite(slope).all()):
            return np.inf, np.zeros_like(log_theta)
        return value, slope

    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(start)
    with np.errstate(all="ignore"):
        result = minimize(objective, np.log(start), jac=True, method="L-BFGS-B",
                          bounds=bounds, options=_OPTIONS)
    return result


def _verdict(result, names: tuple[str, ...]) -> tuple[np.ndarray, bool, str]:
    log_theta = np.asarray(result.x, dtype=float)
    with np.errstate(over="ignore"):
        theta = np.exp(log_theta)
    problems = []
    stationary = (result.status == _LINE_SEARCH_FAILED and result.jac is not None
                  and np.all(np.abs(result.jac) <= _STATIONARY_GTOL))
    if not result.success and not stationary:
        problems.append(f"optimizer did not converge (L-BFGS-B status {result.status}: "
                        f"{str(result.message).strip()})")
    if not (np.isfinite(theta).all() and (theta > 0).all()):
        problems.append("parameters are not finite and positive")
    at_bound = [n for n, v in zip(names, log_theta)
                if not np.isfinite(v) or abs(v) >= LOG_BOUND - _AT_BOUND_MARGIN]
    if at_bound:
        problems.append(
            f"{', '.join(at_bound)} at the bound of the search box "
            f"(log-parameter in [-{LOG_BOUND:g}, {LOG_BOUND:g}]): the likelihood still "
            "rises as it runs to 0 or infinity, there is no interior maximum")
    if problems:
        message = "; ".join(problems)
    elif stationary and not result.success:
        message = (f"stationary point (largest gradient component {np.abs(result.jac).max():.1g}); "
                   f"the line search could not improve on it: {str(result.message).strip()}")
    else:
        message = str(result.message)
    return theta, not problems, message


def fit_bg_nbd(x, t_x, T) -> Fit:
    """Maximum likelihood BG/NBD fit. See the module docstring for the conventions."""
    x, t_x, T = _validate_rft(x, t_x, T)
    n = len(x)
    if n == 0:
        raise ClvNotFittable("no customers: BG/NBD needs at least one customer")
    rows, counts = _compress(x, t_x, T)
    # Start: r = a = b = 1 and alpha matching the crude purchase rate sum(x)/sum(T)
    # (r/alpha is the mean rate); any start works in log space, this one saves steps.
    total_x, total_T = counts @ rows[:, 0], counts @ rows[:, 2]
    alpha0 = total_T / total_x if total_x > 0 and total_T > 0 else 1.0
    alpha0 = float(np.clip(alpha0, math.exp(-10), math.exp(10)))
    result = _maximise(_bg_nbd_ll, rows, counts, np.array([1.0, alpha0, 1.0, 1.0]))
    theta, converged, message = _verdict(result, ("r", "alpha", "a", "b"))
    if total_x == 0:
        converged = False
        message = (f"not identified: all {n} customers have x == 0 (one purchase day "
                   "each), so a and b do not enter the likelihood and r/alpha runs to 0; "
                   "do not score with these parameters. Optimizer: " + message)
    params = BgNbdParams(*(float(v) for v in theta))
    return Fit(
        model="bg_nbd",
        params=params,
        log_likelihood=bg_nbd_log_likelihood(params, x, t_x, T),
        n_customers=n,
        converged=converged,
        message=message,
        iterations=int(result.nit),
    )


def fit_gamma_gamma(x, mean_repeat_spend) -> Fit:
    """Maximum likelihood Gamma-Gamma fit on the persons with x > 0 (filtered here).
    mean_repeat_spend is the mean of the repeat transactions (first day excluded)."""
    x, m = _validate_spend(x, mean_repeat_spend)
    n = len(x)
    if n == 0:
        raise ClvNotFittable("no customers: Gamma-Gamma needs at least one customer")
    pos = x > 0
    if not pos.any():
        raise ClvNotFittable(
            "no repeat buyers: Gamma-Gamma needs persons with x > 0 "
            f"(all {n} customers bought on one day only)")
    rows, counts = _compress(x[pos], m[pos])
    # Start: p = 1, q = 2 and gamma making the population mean p*gamma/(q-1) equal the
    # observed mean spend, so the start is on the data's money scale (euros or cents).
    mean_spend = float(counts @ rows[:, 1] / counts.sum())
    result = _maximise(_gamma_gamma_ll, rows, counts, np.array([1.0, 2.0, mean_spend]))
    theta, converged, message = _verdict(result, ("p", "q", "gamma"))
    params = GammaGammaParams(*(float(v) for v in theta))
    return Fit(
        model="gamma_gamma",
        params=params,
        log_likelihood=gamma_gamma_log_likelihood(params, x, m),
        n_customers=int(pos.sum()),
        converged=converged,
        message=message,
        iterations=int(result.nit),
    )


# --------------------------------------------------------------------------- scores


def _a_off_one(a: float) -> float:
    # The closed forms divide by (a - 1) and tend to a finite limit as a -> 1; a fit
    # landing exactly on 1 is moved off it by a relative 1e-7 (continuity).
    return 1.0 + 1e-7 if abs(a - 1.0) < 1e-7 else a


def p_alive(params: BgNbdParams, x, t_x, T) -> np.ndarray:
    """P(alive | x, t_x, T), paper eq. (13); 1 for x == 0 (no repeat purchase: the
    model's customer cannot have dropped out yet)."""
    r, alpha, a, b = _bg_params(params)
    x, t_x, T = _validate_rft(x, t_x, T)
    pos = x > 0
    x_safe = np.where(pos, x, 1.0)
    # 1 / (1 + exp(log_odds_dead)), in logs so large x cannot overflow the power.
    log_odds_dead = (math.log(a) - np.log(b + x_safe - 1)
                     + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
    return np.where(pos, expit(-log_odds_dead), 1.0)


def _alive_forecast(theta, x, T, t) -> np.ndarray:
    """E[X(T, T+t) | alive at T] for every row: (a+b+x-1)/(a-1) * [1 - G] with
    G = ((alpha+T)/(alpha+T+t))^(r+x) * 2F1(r+x, b+x; a+b+x-1; z), z = t/(alpha+T+t)."""
    r, alpha, a, b = theta
    a = _a_off_one(a)
    c = a + b + x - 1
    z = t / (alpha + T + t)
    # Euler's transformation 2F1(A, B; C; z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z) turns G
    # into (1-z)^(a-1) * 2F1(a+b-1-r, a-1; a+b+x-1; z): no parameter grows with x, so
    # nothing overflows for large x (the paper's form multiplies an underflowing power
    # by an exploding 2F1, and scipy returns inf there; the Pfaff form, argument
    # -t/(alpha+T), also gets inf from scipy for large x). Checked against mpmath at 40 digits on a wide
    # random grid: relative error below 1e-11.
    f = hyp2f1(a + b - 1 - r, a - 1, c, z)
    # scipy returns inf for z > 0.9 when c - A - B (here x + r + 1 - a) is exactly an
    # integer of some size (its integer-difference branch); the function is smooth in c,
    # so a relative nudge of 1e-12 gives the value to about 1e-13 (checked with mpmath).
    broken = ~np.isfinite(f)
    if np.any(broken):
        f = np.where(broken, hyp2f1(a + b - 1 - r, a - 1, c * (1 + 1e-12), z), f)
    g = np.exp((a - 1) * np.log1p(-z)) * f
    return c / (a - 1) * (1.0 - g)


def _by_unique_x_T(x, T):
    """The 2F1 part depends on (x, T) only, not on t_x: evaluate it once per pair."""
    rows, _, inverse = _unique_rows(x, T)
    return rows, inverse


def conditional_expected_purchases(params: BgNbdParams, t, x, t_x, T) -> np.ndarray:
    """E[X(T, T+t) | x, t_x, T]: expected repeat purchase days in the next t time units,
    paper eq. (10). t is a scalar horizon."""
    theta = _bg_params(params)
    if np.ndim(t) != 0:
        raise ValueError(f"t must be a scalar horizon, got shape {np.shape(t)}")
    horizon = float(_time("t", t))
    x, t_x, T = _validate_rft(x, t_x, T)
    alive = p_alive(params, x, t_x, T)
    rows, inverse = _by_unique_x_T(x, T)
    per_pair = _alive_forecast(theta, rows[:, 0], rows[:, 1], horizon)
    return alive * per_pair[inverse]


def expected_purchases(params: BgNbdParams, t) -> np.ndarray | float:
    """Unconditional E[X(t)] of a customer whose first purchase was at 0, paper eq. (7).
    t may be an array (a tracking plot); a scalar t gives a float."""
    r, alpha, a, b = _bg_params(params)
    times = _time("t", t)
    # Eq. (7) is eq. (10)'s alive-part at x = 0, T = 0 (alive by assumption).
    value = _alive_forecast((r, alpha, a, b), 0.0, 0.0, times)
    return float(value) if np.ndim(value) == 0 else value


def conditional_expected_spend(params: GammaGammaParams, x, mean_repeat_spend) -> np.ndarray:
    """Gamma-Gamma E[M | x, mbar] = (gamma + x*mbar) * p / (p*x + q - 1); the population
    mean p*gamma/(q-1) for x == 0. Needs p*x + q > 1 (else the mean is infinite)."""
    p, q, g = _gg_params(params)
    x, m = _validate_spend(x, mean_repeat_spend)
    denominator = p * x + q - 1
    _fail("the Gamma-Gamma mean spend is infinite (needs p*x + q > 1)",
          denominator <= 0, x=x)
    return (g + x * m) * p / denominator


def discounted_expected_purchases(
    params: BgNbdParams,
    x,
    t_x,
    T,
    horizon: float,
    annual_discount_rate: float,
    periods_per_year: float = 52.1775,
    steps: int | None = None,
) -> np.ndarray:
    """Discounted expected repeat purchase days over (T, T+horizon]:

        sum_k (E[X(T, T+t_k) | ..] - E[X(T, T+t_(k-1)) | ..]) / (1+rate)^(t_k / periods_per_year)

    with t_k = horizon * k / steps, k = 1..steps: the horizon (in the unit of t_x and T,
    weeks) cut into `steps` equal slices (default ceil(horizon): about weekly), each
    slice's expected purchases discounted at its end. With rate 0 this is
    conditional_expected_purchases(horizon)."""
    theta = _bg_params(params)
    horizon = float(_time("horizon", horizon))
    rate = float(annual_discount_rate)
    if not (math.isfinite(rate) and rate >= 0):
        raise ValueError(f"annual_discount_rate must be finite and >= 0, got {annual_discount_rate!r}")
    per_year = _positive("periods_per_year", periods_per_year)
    if steps is None:
        steps = max(1, math.ceil(horizon))
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    x, t_x, T = _validate_rft(x, t_x, T)
    alive = p_alive(params, x, t_x, T)
    rows, inverse = _by_unique_x_T(x, T)
    total = np.zeros(len(rows))
    previous = np.zeros(len(rows))
    for k in range(1, steps + 1):
        t_k = horizon * k / steps
        current = _alive_forecast(theta, rows[:, 0], rows[:, 1], t_k)
        total += (current - previous) / (1.0 + rate) ** (t_k / per_year)
        previous = current
    return alive * total[inverse]
