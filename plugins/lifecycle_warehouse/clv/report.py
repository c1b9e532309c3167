"""How `lw clv` and the demo summary show a CLV fit: parameter tables, the backtest's
tracking and conditional-expectation tables, and the P(alive) distribution."""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from rich.console import Console
from rich.table import Table

P_ALIVE_BANDS = """
select band, count(*) from (
    select case when p_alive < 0.2 then '0.0–0.2' when p_alive < 0.4 then '0.2–0.4'
                when p_alive < 0.6 then '0.4–0.6' when p_alive < 0.8 then '0.6–0.8' else '0.8–1.0' end as band
    from {schema}.customer_clv where p_alive is not null
) banded group by band order by band
"""


def _number(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def parameter_table(result: Mapping) -> Table:
    when = result.get("as_of") or result.get("calibration_end")
    table = Table(title=f"CLV models as of {when} ({result['n_customers']:,} customers, time in {result['time_unit']})")
    for column in ("model", "parameters", "log-likelihood", "customers", "converged"):
        table.add_column(column, justify="left" if column in ("model", "parameters") else "right")
    for model, names in (("bg_nbd", ("r", "alpha", "a", "b")), ("gamma_gamma", ("p", "q", "gamma"))):
        fit = result.get(model)
        if fit is None:
            table.add_row(model, "not fitted", "—", "—", "[red]no[/]")
            continue
        table.add_row(model, ", ".join(f"{name} = {fit[name]:.4g}" for name in names),
                      _number(fit["log_likelihood"], 1),
                      f"{fit.get('n_customers', result['n_customers']):,}",
                      "yes" if fit["converged"] else "[red]no[/]")
    return table


def print_result(console: Console, result: Mapping) -> None:
    """`lw clv fit` / `lw clv backtest` as tables."""
    console.print(parameter_table(result))
    if result.get("problem"):
        console.print(f"[red]✗ {result['problem']}[/]")
    holdout = result.get("holdout")
    if not holdout:
        return
    console.print(
        f"Holdout {result['calibration_end']} … {result['holdout_end']} ({holdout['days']} days): "
        f"actual repeat purchase days {holdout['actual_repeat_purchases']:,}, "
        f"predicted {_number(holdout['predicted_repeat_purchases'], 1)}")
    by_x = Table(title="Conditional expectations: mean holdout purchase days by calibration x")
    for column in ("x", "customers", "actual", "predicted"):
        by_x.add_column(column, justify="right")
    for row in holdout["by_x"]:
        by_x.add_row(row["x"], f"{row['customers']:,}", _number(row["actual_mean"]), _number(row["predicted_mean"]))
    console.print(by_x)
    weeks = Table(title="Tracking: repeat purchase days per holdout week")
    for column in ("week", "actual", "predicted", "cumulative actual", "cumulative predicted"):
        weeks.add_column(column, justify="right")
    actual_total = predicted_total = 0.0
    for row in holdout["by_week"]:
        actual_total += row["actual"]
        predicted_total += row["predicted"] or 0.0
        weeks.add_row(str(row["week"]), f"{row['actual']:,}", _number(row["predicted"], 1),
                      f"{actual_total:,.0f}", _number(predicted_total if row["predicted"] is not None else None, 1))
    console.print(weeks)


def print_published(console: Console, conn: psycopg.Connection, schema: str = "analytics") -> None:
    """The demo summary's CLV part: the published fit and the P(alive) distribution."""
    params = conn.execute(
        f"select model, parameter, value, log_likelihood, n_customers, status, message, as_of "
        f"from {schema}.clv_model_params order by model, parameter").fetchall()
    if not params:
        return
    table = Table(title=f"CLV models as of {params[0][7]} (analytics.clv_model_params, time in weeks)")
    for column in ("model", "parameters", "log-likelihood", "customers", "status"):
        table.add_column(column, justify="left" if column in ("model", "parameters", "status") else "right")
    by_model: dict[str, list] = {}
    for row in params:
        by_model.setdefault(row[0], []).append(row)
    for model, rows in by_model.items():
        _, _, _, log_likelihood, n_customers, status, message, _ = rows[0]
        values = ", ".join(f"{r[1]} = {r[2]:.4g}" for r in rows if r[2] is not None) or "—"
        table.add_row(model, values, _number(log_likelihood, 1), f"{n_customers:,}",
                      status if status == "converged" else f"[red]{status}: {message}[/]")
    console.print(table)
    bands = conn.execute(P_ALIVE_BANDS.format(schema=schema)).fetchall()
    if bands:
        total = sum(count for _, count in bands)
        alive = Table(title=f"P(alive) of the {total:,} customers with a valid order ({schema}.customer_clv)")
        alive.add_column("P(alive)")
        alive.add_column("customers", justify="right")
        alive.add_column("share", justify="right")
        for band, count in bands:
            alive.add_row(band, f"{count:,}", f"{count / total:.0%}")
        console.print(alive)
    segments = conn.execute(
        f"select rfm_segment, count(*), round(avg(predicted_clv_365d), 2) from {schema}.customer_clv "
        f"group by 1 order by 2 desc").fetchall()
    if segments:
        seg = Table(title="RFM segments")
        for column in ("segment", "customers", "mean predicted CLV 365d"):
            seg.add_column(column, justify="left" if column == "segment" else "right")
        for name, count, mean_clv in segments:
            seg.add_row(name, f"{count:,}", _number(mean_clv, 2))
        console.print(seg)
