"""Write `fx_rates.csv`: a deterministic, plausible daily FX series for the reporting seeds.

The warehouse needs a rate for every (day, currency) the sources can carry, offline and
identical on every machine, so the series is generated once from a fixed seed and
committed. It is a mean-reverting random walk in log space (an Ornstein–Uhlenbeck process,
the usual toy model of a floating exchange rate) around 2023 levels, with ~7 % annual
volatility. Not market data: replace the CSV with real rates (same columns) in production.

    python dbt_project/seeds/generate_fx_rates.py           # rewrite the CSV
    python dbt_project/seeds/generate_fx_rates.py --check   # exit 1 if the CSV differs
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from datetime import date, timedelta
from pathlib import Path

CSV_PATH = Path(__file__).with_name("fx_rates.csv")
FIRST_DAY = date(2023, 1, 1)
LAST_DAY = date(2027, 12, 31)
SEED = 20230101

# currency -> (USD per unit on FIRST_DAY, long-run mean); USD is the pivot (always 1).
ANCHORS = {
    "EUR": (1.0705, 1.0900),
    "GBP": (1.2083, 1.2600),
    "CAD": (0.7380, 0.7400),
}
DAILY_VOLATILITY = 0.07 / math.sqrt(365)  # ~7 % a year, like the majors
MEAN_REVERSION = 0.01  # per day: shocks half-decay in ~70 days


def _gauss(rng: random.Random) -> float:
    """Box–Muller on `random()` alone, whose sequence Python guarantees across versions."""
    u1 = 1.0 - rng.random()
    u2 = rng.random()
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def series() -> list[tuple[str, str, str]]:
    """Rows (rate_date, currency, usd_per_unit) ordered by date then currency."""
    rng = random.Random(SEED)
    log_rate = {c: math.log(start) for c, (start, _) in ANCHORS.items()}
    rows = []
    day = FIRST_DAY
    while day <= LAST_DAY:
        rows.append((day.isoformat(), "USD", "1.000000"))
        for currency, (_, mean) in ANCHORS.items():
            rows.append((day.isoformat(), currency, f"{math.exp(log_rate[currency]):.6f}"))
            pull = MEAN_REVERSION * (math.log(mean) - log_rate[currency])
            log_rate[currency] += pull + DAILY_VOLATILITY * _gauss(rng)
        day += timedelta(days=1)
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def render() -> str:
    lines = ["rate_date,currency,usd_per_unit"]
    lines += [",".join(row) for row in series()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = CSV_PATH.read_text() if CSV_PATH.exists() else ""
        if current != text:
            print(f"{CSV_PATH} is not what {Path(__file__).name} generates", file=sys.stderr)
            return 1
        return 0
    CSV_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
