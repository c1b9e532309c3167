"""The quality gate: Great Expectations suites on the raw tables (before dbt) and on the
marts (after dbt, before publishing to `analytics`).

    from lifecycle_warehouse.quality import run_gate
    run_gate(warehouse_url, stage="marts", run_id=..., data_interval_end=date(2026, 10, 31))

Modules: `suites` (what is checked; writes the GX project's JSON), `compile` (a suite's
rules as one SQL query), `expectation` (the GX expectation type that runs it), `gate` (runs
a checkpoint, decides, records, raises), `audit` (the `audit` tables where every result is
kept), `report` (Data Docs). Importing this package is cheap: Great Expectations (~4 s to
import) is only loaded when a gate runs.
"""

from __future__ import annotations

from lifecycle_warehouse.quality.gate import (
    STAGES,
    ExpectationOutcome,
    GateResult,
    QualityGateFailed,
    run_gate,
)

__all__ = ["STAGES", "ExpectationOutcome", "GateResult", "QualityGateFailed", "run_gate"]
