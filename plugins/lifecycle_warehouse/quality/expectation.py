"""The GX expectation type of the gate: every rule of a suite checked by ONE query.

`ExpectSuiteRulesToPass` (type `expect_suite_rules_to_pass` in the suites' JSON) is GX's
`UnexpectedRowsExpectation` whose query (`compile.suite_query`) returns one row per
failing rule of its suite (index, type, column, unexpected count) plus a row of the rows
checked. Unlike the stock expectation, it needs only the query's rows (the metric
`unexpected_rows_query.table`), not a second `count(*)` run of the same query: one query
per suite.

GX reads a suite's JSON through its registry of expectation types: importing this module
registers the type, so it must be imported before a context loads the suites
(`register()`; the gate does). Its rules are listed in the expectation's `meta.rules` and
`notes` (Data Docs show the notes); Data Docs show the failing rules as its observed value.
"""

from __future__ import annotations

from typing import Any, ClassVar

from great_expectations.core.result_format import ResultFormat
from great_expectations.expectations.core.unexpected_rows_expectation import UnexpectedRowsExpectation
from great_expectations.render.renderer.renderer import renderer
from great_expectations.render import LegacyDiagnosticRendererType

from lifecycle_warehouse.quality import compile, suites

EXPECTATION_TYPE = suites.SUITE_EXPECTATION


class ExpectSuiteRulesToPass(UnexpectedRowsExpectation):
    """Every rule of a suite passes: its one query (`unexpected_rows_query`) returns no row
    of a failing rule. Rules are listed in `meta.rules`."""

    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.table",)

    class Config:
        title = "Every rule of the suite passes (one SQL query)"

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None):
        rows = metrics["unexpected_rows_query.table"]
        return rules_result(rows, self._get_result_format(runtime_configuration=runtime_configuration))

    @classmethod
    @renderer(renderer_type=LegacyDiagnosticRendererType.OBSERVED_VALUE)
    def _diagnostic_observed_value_renderer(cls, configuration=None, result=None, runtime_configuration=None,
                                            **kwargs) -> str:
        rules = []
        if result is not None and result.expectation_config is not None:
            rules = (result.expectation_config.meta or {}).get("rules") or []
        return observed_text(result.result if result is not None else None, rules)


def rules_result(rows: list[dict[str, Any]], result_format: Any = ResultFormat.SUMMARY) -> dict[str, Any]:
    """GX's result of the suite's query: success when no rule failed; the failing rules'
    rows and the rows checked in `details` (a few rows: at most one per rule)."""
    if isinstance(result_format, dict):
        result_format = result_format.get("result_format", ResultFormat.SUMMARY)
    failed = [dict(r) for r in rows if r["rule"] != compile.ROWS_CHECKED]
    checked = next((r["unexpected_count"] for r in rows if r["rule"] == compile.ROWS_CHECKED), None)
    success = not failed
    if result_format == ResultFormat.BOOLEAN_ONLY:
        return {"success": success}
    return {"success": success,
            "result": {"observed_value": len(failed), "details": {"rows_checked": checked, "failed_rules": failed}}}


def observed_text(result: dict[str, Any] | None, rules: list[dict[str, Any]] = ()) -> str:
    """What Data Docs show as the observed value: the rows checked and each failing rule
    (its description from `rules`, the suite's `meta.rules`, when it has one)."""
    result = result or {}
    details = result.get("details") or {}
    failed = details.get("failed_rules") or []
    head = f"{details.get('rows_checked')} rows checked" if details.get("rows_checked") is not None else ""
    if not failed:
        return f"{head}; every rule passed" if head else "--"
    parts = []
    for r in failed:
        rule = rules[r["rule"]] if 0 <= r["rule"] < len(rules) else {}
        what = f"rule {r['rule']} " + (rule.get("description") or r["rule_type"])
        what += f" (column {r['column_name']})" if r.get("column_name") else ""
        if r.get("unexpected_count") is not None:
            what += f": {r['unexpected_count']} unexpected"
        if r.get("observed"):
            what += f": {r['observed']}"
        parts.append(what)
    return (f"{head}; " if head else "") + f"{len(failed)} rule(s) failed: " + "; ".join(parts)


def register() -> type[ExpectSuiteRulesToPass]:
    """The type is registered by importing this module: call before `gx.get_context`."""
    return ExpectSuiteRulesToPass
