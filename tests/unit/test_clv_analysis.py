"""From purchases to the models' inputs, and the backtest (lifecycle_warehouse.clv.analysis):
hand-made purchases with hand-computed summaries, and the CDNOW sample (Fader, Hardie & Lee
2005) through the same code the warehouse runs. No database."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from lifecycle_warehouse.clv import analysis

CDNOW = Path(__file__).parents[1] / "fixtures" / "cdnow" / "CDNOW_sample.txt"
CALIBRATION_END, HOLDOUT_END = date(1997, 9, 30), date(1998, 6, 30)  # weeks 1-39 and 40-78


def cdnow_purchases():
    rows = [line.split() for line in CDNOW.read_text().splitlines() if line.strip()]
    keys = np.array([r[1] for r in rows], dtype=object)  # the sample's own id, 0001 … 2357
    days = np.array([f"{r[2][:4]}-{r[2][4:6]}-{r[2][6:]}" for r in rows], dtype="datetime64[D]")
    return keys, days, np.array([float(r[4]) for r in rows])


def test_purchases_of_one_day_are_one_transaction_and_time_is_in_weeks():
    keys = ["b", "a", "a", "a", "a", "b", "c"]
    days = ["2026-01-08", "2026-01-01", "2026-01-01", "2026-01-15", "2026-01-29", "2026-01-08", "2026-02-01"]
    amounts = [5.0, 10.0, 20.0, 40.0, 60.0, 7.0, 3.0]
    summary = analysis.summarise(keys, days, amounts, date(2026, 1, 29))
    # c bought after the as-of date: not a customer yet; a's 29 Jan purchase is on the as-of day: counted
    assert summary.keys.tolist() == ["a", "b"]
    assert summary.x.tolist() == [2, 0]  # a: days 1, 15, 29 (two orders on the 1st are one day); b: one day
    assert summary.t_x.tolist() == [4.0, 0.0]  # 28 days / 7
    assert summary.T.tolist() == [4.0, 3.0]  # 1 Jan -> 29 Jan, 8 Jan -> 29 Jan
    assert summary.mean_repeat_spend[0] == 50.0  # (40 + 60) / 2: the first day (30) excluded
    assert np.isnan(summary.mean_repeat_spend[1])
    assert summary.total_spend.tolist() == [130.0, 12.0]
    assert summary.repeat_buyers == 1


def test_the_summary_does_not_depend_on_row_order():
    keys, days, amounts = cdnow_purchases()
    order = np.random.default_rng(3).permutation(len(keys))
    first = analysis.summarise(keys, days, amounts, CALIBRATION_END)
    shuffled = analysis.summarise(keys[order], days[order], amounts[order], CALIBRATION_END)
    for name in ("keys", "x", "t_x", "T", "total_spend"):
        assert getattr(first, name).tolist() == getattr(shuffled, name).tolist(), name
    assert analysis.fit(first).as_dict() == analysis.fit(shuffled).as_dict()


def test_the_summary_matches_the_published_cdnow_summary():
    """lifetimes' cdnow_customers_summary.csv (the paper's x, t_x, T, in weeks to 2
    decimals) from the same transactions: x exactly, times to their rounding."""
    published = np.loadtxt(CDNOW.with_name("cdnow_customers_summary.csv"), delimiter=",", skiprows=1)
    summary = analysis.summarise(*cdnow_purchases(), CALIBRATION_END)
    assert summary.keys.tolist() == [f"{int(i):04d}" for i in published[:, 0]]
    assert summary.x.tolist() == published[:, 1].astype(int).tolist()
    assert np.abs(summary.t_x - published[:, 2]).max() <= 0.005
    assert np.abs(summary.T - published[:, 3]).max() <= 0.005


def test_cdnow_reproduces_the_published_parameters():
    """Fader, Hardie & Lee (2005), 2,357 customers, weeks 1-39: r = 0.243, α = 4.414,
    a = 0.793, b = 2.426, LL = −9,582.4; Gamma-Gamma (Fader & Hardie 2013) on the 946 repeat
    buyers' mean repeat-day spend: p = 6.25, q = 3.74, γ = 15.44."""
    summary = analysis.summarise(*cdnow_purchases(), CALIBRATION_END)
    result = analysis.fit(summary).as_dict()
    assert result["n_customers"] == 2357 and result["converged"] and result["problem"] is None
    bg, gg = result["bg_nbd"], result["gamma_gamma"]
    assert [round(bg[k], 3) for k in ("r", "alpha", "a", "b")] == [0.243, 4.414, 0.793, 2.426]
    assert round(bg["log_likelihood"], 1) == -9582.4
    assert gg["n_customers"] == 946
    assert [round(gg[k], 2) for k in ("p", "q", "gamma")] == [6.25, 3.74, 15.44]


def test_cdnow_backtest_tracks_the_holdout():
    """Weeks 40-78: 1,882 actual repeat purchase days; the model's conditional expectations
    sum to ~1,653 (known figure for the published parameters). The weekly tracking adds
    up to the total, and the conditional-expectation table grows with x as in the paper."""
    result = analysis.backtest(*cdnow_purchases(), CALIBRATION_END, HOLDOUT_END)
    holdout = result["holdout"]
    assert result["calibration_end"] == "1997-09-30" and result["holdout_end"] == "1998-06-30"
    assert holdout["days"] == 273 and len(holdout["by_week"]) == 39
    assert holdout["actual_repeat_purchases"] == 1882
    assert holdout["predicted_repeat_purchases"] == pytest.approx(1653, abs=5)
    assert sum(w["actual"] for w in holdout["by_week"]) == 1882
    assert sum(w["predicted"] for w in holdout["by_week"]) == pytest.approx(holdout["predicted_repeat_purchases"])
    by_x = holdout["by_x"]
    assert [row["x"] for row in by_x] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert sum(row["customers"] for row in by_x) == 2357
    assert by_x[0]["customers"] == 1411  # one-time buyers of the calibration period
    # x = 0: 0.237 actual, 0.225 predicted (the paper's figure 5 shows the same closeness)
    assert by_x[0]["actual_mean"] == pytest.approx(0.2367, abs=1e-4)
    assert by_x[0]["predicted_mean"] == pytest.approx(0.225, abs=0.005)
    predicted = [row["predicted_mean"] for row in by_x]
    assert predicted == sorted(predicted)


def test_score_discounts_the_predicted_value():
    summary = analysis.summarise(*cdnow_purchases(), CALIBRATION_END)
    fitted = analysis.fit(summary)
    undiscounted = analysis.score(summary, fitted, annual_discount_rate=0.0)
    discounted = analysis.score(summary, fitted, annual_discount_rate=0.10)
    np.testing.assert_allclose(undiscounted.predicted_clv,
                               undiscounted.predicted_purchases * undiscounted.expected_spend, rtol=1e-9)
    assert np.all(discounted.predicted_clv < undiscounted.predicted_clv)
    # over one year, discounting at 10 % costs less than 10 %
    assert np.all(discounted.predicted_clv > undiscounted.predicted_clv / 1.10)
    assert np.all((discounted.p_alive >= 0) & (discounted.p_alive <= 1))
    assert np.all(discounted.p_alive[summary.x == 0] == 1.0)  # BG/NBD: no repeat yet, alive


@pytest.mark.parametrize("case, purchases, reason", [
    ("no customers", ([], [], []), "no customer has a valid order"),
    ("one purchase each", (["a", "b"], ["2026-01-01", "2026-01-05"], [10.0, 20.0]), "no repeat buyers"),
    ("all purchases on one day", (["a", "a", "b"], ["2026-01-01"] * 3, [10.0, 5.0, 20.0]), "no repeat buyers"),
])
def test_data_without_repeat_buyers_is_not_fittable_with_a_clear_reason(case, purchases, reason):
    summary = analysis.summarise(*purchases, date(2026, 2, 1))
    fitted = analysis.fit(summary)
    assert fitted.bg_nbd is None and fitted.gamma_gamma is None and not fitted.converged
    assert reason in fitted.problem
    assert analysis.score(summary, fitted, 0.1) is None
    result = analysis.backtest(*purchases, date(2026, 2, 1), date(2026, 3, 1))
    assert reason in result["problem"] and result["holdout"]["predicted_repeat_purchases"] is None


def test_backtest_refuses_a_holdout_before_its_calibration():
    with pytest.raises(ValueError, match="must be after calibration_end"):
        analysis.backtest(["a"], ["2026-01-01"], [1.0], date(2026, 2, 1), date(2026, 2, 1))


def test_a_repeat_buyer_of_free_goods_is_scored_below_the_population_mean():
    """Gamma-Gamma fits on positive spends only; a repeat buyer whose repeat days cost 0
    still gets a prediction: the model's posterior mean at a vanishing spend."""
    keys, days, amounts = cdnow_purchases()
    keys = np.r_[keys, ["free", "free", "free"]]
    days = np.r_[days, np.array(["1997-01-05", "1997-02-05", "1997-03-05"], dtype="datetime64[D]")]
    amounts = np.r_[amounts, [20.0, 0.0, 0.0]]
    summary = analysis.summarise(keys, days, amounts, CALIBRATION_END)
    fitted = analysis.fit(summary)
    scores = analysis.score(summary, fitted, 0.1)
    free = summary.keys.tolist().index("free")
    p, q, gamma = (getattr(fitted.gamma_gamma.params, k) for k in ("p", "q", "gamma"))
    assert scores.expected_spend[free] == pytest.approx(gamma * p / (p * 2 + q - 1), rel=1e-6)
    assert scores.expected_spend[free] < p * gamma / (q - 1)
    assert fitted.gamma_gamma.n_customers == 946  # the free repeat days are not in the fit
