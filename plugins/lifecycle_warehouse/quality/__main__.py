"""Command line of the quality gate (the Makefile and `lw` call these). Its GX files are
written by `python -m lifecycle_warehouse.generate`.

    python -m lifecycle_warehouse.quality gate --stage raw|marts --data-interval-end 2026-10-31 [--run-id ID]
    python -m lifecycle_warehouse.quality report [--open]
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date, datetime, timezone

from lifecycle_warehouse import settings
from lifecycle_warehouse.quality import report, suites


def _gate(args) -> int:
    from lifecycle_warehouse.quality import QualityGateFailed, run_gate

    end = (datetime.fromisoformat(args.data_interval_end) if "T" in args.data_interval_end
           else date.fromisoformat(args.data_interval_end))
    run_id = args.run_id or f"manual__{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    logging.getLogger("lifecycle_warehouse.quality.gate").setLevel(logging.CRITICAL)  # the report says it all
    try:
        result = run_gate(settings.warehouse_url(), args.stage, run_id, end, docs="always")
    except QualityGateFailed as failed:
        print(failed, file=sys.stderr)
        return 1
    print(result.report())
    return 0


def _report(args) -> int:
    path = report.docs_index()
    if not path.exists():
        print(f"no Data Docs yet at {path}: they are built by a failing gate, after a publish "
              "(the warehouse DAG) and by `python -m lifecycle_warehouse.quality gate …`", file=sys.stderr)
        return 1
    print(path.as_uri())
    if args.open:
        report.open_docs(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifecycle_warehouse.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gate = sub.add_parser("gate", help="run a quality gate against WAREHOUSE_URL")
    gate.add_argument("--stage", choices=suites.STAGES, required=True)
    gate.add_argument("--data-interval-end", required=True, help="exclusive end: a date (midnight UTC) or ISO time")
    gate.add_argument("--run-id")
    gate.set_defaults(func=_gate)
    rep = sub.add_parser("report", help="print (and --open) the Data Docs index")
    rep.add_argument("--open", action="store_true")
    rep.set_defaults(func=_report)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
