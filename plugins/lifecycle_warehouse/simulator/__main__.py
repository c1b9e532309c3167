"""`python -m lifecycle_warehouse.simulator`: write the landing zone, fill the shop
database and write the truth file (defaults from lifecycle_warehouse.settings).
`--shop-only` writes only the shop database; `--shop-as-of D` writes the shop as it was at
the end of day D."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path

from lifecycle_warehouse import settings
from lifecycle_warehouse.simulator.config import DEFAULT_START, SHOP_ID_KINDS, SimulationConfig
from lifecycle_warehouse.simulator.simulation import DROPS_TABLES_FLAG, foreign_shop_refusal, simulate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lifecycle_warehouse.simulator",
        description="Simulate CRM, web, ad-spend files and the shop database of a fictitious company.",
    )
    parser.add_argument("--start", type=date.fromisoformat, default=DEFAULT_START,
                        help=f"first day of the file window, YYYY-MM-DD (default {DEFAULT_START})")
    parser.add_argument("--days", type=int, default=60, help="days of files to write (default 60)")
    parser.add_argument("--customers", type=int, default=3000,
                        help="persons who become known over history and window (default 3000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--history-days", type=int, default=730,
                        help="days of shop history before --start (default 730)")
    parser.add_argument("--landing-dir", type=Path, help="landing zone root (default: settings.landing_dir())")
    parser.add_argument("--shop-url", help="shop database URL (default: SHOP_DB_URL or the embedded server)")
    parser.add_argument("--truth-file", type=Path, help="truth JSON (default: settings.simulator_truth_file())")
    parser.add_argument("--shop-ids", choices=SHOP_ID_KINDS, default="integer",
                        help="type of the shop's ids (default integer)")
    parser.add_argument("--shop-as-of", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="write the shop as it was at the end of this day (rows and versions before the "
                             "next midnight UTC) instead of its final state; within history and window")
    parser.add_argument("--shop-only", action="store_true",
                        help="write only the shop database (no landing files, no truth file)")
    parser.add_argument(DROPS_TABLES_FLAG, dest="i_know_this_drops_tables", action="store_true",
                        help="allow a shop database other than the embedded one (its tables are dropped)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = SimulationConfig(
        start=args.start, days=args.days, customers=args.customers, seed=args.seed,
        history_days=args.history_days, shop_ids=args.shop_ids, landing_dir=args.landing_dir,
        shop_url=args.shop_url, truth_file=args.truth_file, progress=not args.no_progress,
        shop_as_of=args.shop_as_of, shop_only=args.shop_only,
    )
    try:
        refusal = None if args.i_know_this_drops_tables else foreign_shop_refusal(config.resolved().shop_url)
        if refusal:
            print(f"error: {refusal}", file=sys.stderr)
            return 2
        result = simulate(config)
    except (ValueError, settings.ConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
