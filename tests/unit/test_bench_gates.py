"""The pure parts of the quality-gates benchmark (lifecycle_warehouse/bench/gates.py): the
SQL translation of every suite, GX's verdicts read from a gate result, the phase accounting
and the report. No database, no GX run, and never a timing assertion."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lifecycle_warehouse.bench import gates
from lifecycle_warehouse.quality import suites
from lifecycle_warehouse.quality.gate import ExpectationOutcome, GateResult


@pytest.mark.parametrize("stage", suites.STAGES)
def test_every_suite_renders_one_query_with_a_verdict_per_expectation(stage):
    for suite in suites.suites(stage):
        query = gates.suite_sql(suite)
        columns = re.findall(r" as (e\d+)\b", query)
        assert sorted(columns) == sorted(gates.verdict_column(i) for i in range(len(suite.expectations))), suite.name
        assert "{batch}" not in query
        assert query.startswith("select") and query.endswith(") as checks")


def test_the_suites_use_only_translated_types():
    used = {e.type for s in suites.suites() for e in s.expectations}
    assert used <= gates.SUPPORTED


def _suite(*expectations) -> suites.Suite:
    return suites.Suite("raw", "raw.people", tuple(expectations))


def test_an_unknown_expectation_type_raises():
    suite = _suite(suites.not_null("id"), suites.Expectation("expect_column_mean_to_be_between", {"column": "x"}))
    with pytest.raises(ValueError, match="expect_column_mean_to_be_between"):
        gates.suite_sql(suite)


def test_an_untranslated_kwarg_raises():
    suite = _suite(suites.Expectation("expect_column_values_to_not_be_null", {"column": "id", "mostly": 0.9}))
    with pytest.raises(ValueError, match="mostly"):
        gates.suite_sql(suite)


def test_a_small_suite_renders_the_expected_sql():
    query = gates.suite_sql(_suite(
        suites.columns_present(["id", "Name"]),
        suites.not_null("id"),
        suites.unique("id"),
        suites.unique_together(["id", "_dt"]),
        suites.in_set("status", ["ok", "it's"]),
        suites.Expectation("expect_column_values_to_be_between",
                           {"column": "score", "min_value": 0, "max_value": 1, "strict_max": True}),
        suites.length_is("country", 2),
        suites.matches("email", "^[a-z]+$"),
        suites.min_rows(3),
        suites.no_rows("no score above 1", "select id from {batch} where score > 1"),
    ))
    # one scan of the relation for the aggregates, NULLs ignored by `filter`
    assert 'from "raw"."people"\n) as checks' in query
    assert 'count(*) as row_count' in query
    assert "'name'" in query and '\'"raw"."people"\'::regclass' in query  # case-insensitive, like GX
    assert 'count(*) filter (where "id" is null) = 0 as e1' in query
    assert 'count("id") = count(distinct "id") as e2' in query
    assert ('not exists (select from "raw"."people" where "id" is not null and "_dt" is not null '
            'group by "id", "_dt" having count(*) > 1) as e3') in query
    assert "count(*) filter (where \"status\" not in ('ok', 'it''s')) = 0 as e4" in query
    assert 'count(*) filter (where not ("score" >= 0 and "score" < 1)) = 0 as e5' in query
    assert 'count(*) filter (where length("country") <> 2) = 0 as e6' in query
    assert "count(*) filter (where not (\"email\" ~ '^[a-z]+$')) = 0 as e7" in query
    assert "count(*) >= 3 as e8" in query
    assert 'select id from "raw"."people" where score > 1\n    ) as unexpected) = 0 as e9' in query


def test_an_exact_column_match_also_refuses_extra_columns():
    exact = suites.Expectation("expect_table_columns_to_match_set", {"column_set": ["id"], "exact_match": True})
    assert "<> all(" in gates.suite_sql(_suite(exact))
    assert "<> all(" not in gates.suite_sql(_suite(suites.columns_present(["id"])))


def _outcome(suite, e, success=False, **kwargs) -> ExpectationOutcome:
    return ExpectationOutcome(suite=suite.name, expectation=e.type, severity=e.severity, success=success,
                              expectation_id=gates.expectation_id(suite, e), **kwargs)


def _result(evaluated, failures=(), warnings=()) -> GateResult:
    return GateResult(stage="raw", run_id="r", data_interval_end=datetime(2026, 9, 3, tzinfo=timezone.utc),
                      success=not failures, failures=list(failures), warnings=list(warnings), evaluated=evaluated,
                      docs_path=Path("index.html"), gate_run_id="g")


def test_gx_verdicts_are_read_from_the_gate_result():
    people = _suite(suites.not_null("id"), suites.unique("id"))
    orders = suites.Suite("raw", "raw.orders", (suites.not_null("order_id"),))
    gone = suites.Suite("raw", "raw.gone", (suites.not_null("x"),))
    missing = ExpectationOutcome(suite=gone.name, expectation="relation_exists", severity=suites.ERROR,
                                 success=False, error="relation raw.gone does not exist")
    # 2 + 1 expectations, and the missing relation reported once
    result = _result(4, failures=[missing], warnings=[_outcome(people, people.expectations[1], error="boom")])
    verdicts, unknown = gates.gx_verdicts(result, [people, orders, gone])
    success = {key: v["success"] for key, v in verdicts.items()}
    assert success == {
        gates.expectation_id(people, people.expectations[0]): True,
        gates.expectation_id(people, people.expectations[1]): False,
        gates.expectation_id(orders, orders.expectations[0]): True,
        gates.expectation_id(gone, gone.expectations[0]): False,
    }
    assert verdicts[gates.expectation_id(people, people.expectations[1])]["error"] == "boom"
    assert unknown == []


def test_compare_lists_disagreements_and_unknown_expectations():
    people = _suite(suites.not_null("id"), suites.unique("id"))
    stranger = suites.Suite("raw", "raw.people", (suites.in_set("id", [1]),))
    ids = [gates.expectation_id(people, e) for e in people.expectations]
    sql = {"suites": {people.name: {"error": None, "verdicts": {ids[0]: False, ids[1]: True}}}}
    result = _result(3, failures=[_outcome(stranger, stranger.expectations[0])])
    disagreements = gates.compare(result, sql, [people])
    assert [(d.get("what"), d["gx"], d["sql"]) for d in disagreements] == [
        (None, False, None),  # GX ran an expectation suites.py does not have: a stale project
        ("GX evaluated 3 expectations, suites.py has 2", None, None),
        ("expect_column_values_to_not_be_null(id)", True, False),
    ]


def test_phases_are_exclusive_and_add_up():
    ticks = iter([0.0, 1.0, 1.5, 2.0, 3.0, 3.25, 10.0, 12.0])
    phases = gates.Phases(clock=lambda: next(ticks))
    phases.enter("python")       # 0
    phases.enter("checkpoint")   # 1
    phases.before_query()        # 1.5
    phases.after_query()         # 2
    phases.leave()               # 3: checkpoint 2 s, of which a 0.5 s query
    phases.before_query()        # 3.25
    phases.failed_query(None)    # 10: a query that raised is closed too
    phases.leave()               # 12: python 12 s, of which 2 s checkpoint and a 6.75 s query
    assert phases.seconds == {"queries": 0.5 + 6.75, "checkpoint": 1.5, "python": 3.25}
    assert sum(phases.seconds.values()) == 12.0
    assert phases.queries == 2


def _stage(gx_s, queries_s, sql_s, disagreements=()):
    overhead = {"context_s": 0.1, "checkpoint_s": 0.05, "docs_s": 0.5, "bookkeeping_s": 0.05}
    overhead["python_s"] = gx_s - queries_s - sum(overhead.values())
    return {"suites": 2, "expectations": 10, "gx_s": gx_s, "sql_s": sql_s, "ratio": gx_s / sql_s,
            "gx_queries_s": queries_s, "gx_queries": 40, "gx_overhead_s": gx_s - queries_s,
            "gx_overhead": overhead, "sql_queries": 2, "verdicts_agree": not disagreements,
            "disagreements": list(disagreements)}


def test_markdown_reports_the_table_and_what_dominates():
    results = {"data_interval_end": "2026-09-03T00:00:00+00:00", "repeats": 3, "target_ratio": 1.5,
               "gx_import_s": 4.0, "raw": _stage(4.0, 1.0, 0.5), "marts": _stage(6.0, 0.5, 0.25)}
    results["gate_vs_sql"] = 10.0 / 0.75
    lines = gates.markdown(results)
    assert lines[0] == "## Quality gates"
    assert "| raw | 10 | 4.00 | 1.00 | 3.00 | 0.50 | 8.0× |" in lines
    assert "| marts | 10 | 6.00 | 0.50 | 5.50 | 0.25 | 24.0× |" in lines
    assert "| both | 20 | 10.00 | 1.50 | 8.50 | 0.75 | 13.3× |" in lines
    text = "\n".join(lines)
    assert "above the 1.5× target" in text
    assert "Most of it is GX's validation machinery in Python (7.10 s, 71%)" in text
    assert "4.00 s more" in text
    assert "agree on every expectation" in text


def test_markdown_lists_disagreements():
    wrong = {"suite": "raw_people", "expectation": "expect_column_values_to_be_unique",
             "what": "expect_column_values_to_be_unique(id)", "gx": True, "sql": False}
    results = {"data_interval_end": "2026-09-03T00:00:00+00:00", "repeats": 1, "target_ratio": 1.5,
               "gx_import_s": None, "raw": _stage(1.0, 0.5, 0.9, [wrong]), "marts": _stage(1.0, 0.5, 0.9)}
    results["gate_vs_sql"] = 2.0 / 1.8
    text = "\n".join(gates.markdown(results))
    assert "within the 1.5× target" in text
    assert "- raw_people: expect_column_values_to_be_unique(id): GX True, SQL False" in text
    assert "Importing" not in text
