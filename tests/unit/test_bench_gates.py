"""The pure parts of the quality-gates benchmark (lifecycle_warehouse/bench/gates.py): the
SQL translation of every suite, GX's verdicts read from a gate result, the phase accounting
and the report. No database, no GX run, and never a timing assertion."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lifecycle_warehouse.bench import gates
from lifecycle_warehouse.quality import compile, suites
from lifecycle_warehouse.quality.gate import ExpectationOutcome, GateResult


@pytest.mark.parametrize("stage", suites.STAGES)
def test_every_suite_renders_one_query_with_a_row_per_rule(stage):
    for suite in suites.suites(stage):
        query = gates.suite_sql(suite)
        rules = [int(i) for i in re.findall(r"^    \((-?\d+), '", query, re.MULTILINE)]
        assert rules == list(range(-1, len(suite.expectations))), suite.name
        assert "{batch}" not in query and "{table}" not in query and "{deliveries}" not in query
        assert query.startswith("with ") and query.endswith("order by r.rule")
        # what GX runs: the same query, the relation left to GX as {batch}, other braces doubled
        gx = compile.suite_query(suite, for_gx=True)
        # once, or once per branch of a batch that can be every row (Batch.all_when)
        assert gx.count("{batch}") == (2 if suite.batch is not None and suite.batch.all_when else 1)
        assert gx.replace("{batch}", compile.relation_sql(suite.relation)).replace("{{", "{").replace("}}", "}") == query


def test_raw_tables_are_validated_by_delivery_and_marts_whole_but_transitions():
    for suite in suites.suites("raw"):
        query = gates.suite_sql(suite)
        if suite.relation == "raw.load_audit":
            assert suite.batch is None  # small; its rules pick the run's deliveries themselves
        elif suite.table.startswith("shop_"):
            assert "_extracted_at > (select started_at from lw_last_build)" in query
        else:  # file tables: the run's date folders, filtered on _dt (partition pruning)
            assert "_dt >= (select min(dt) from lw_deliveries)" in query, suite.name
            assert "greatest(loaded_at, replayed_at) > (select started_at from lw_last_build)" in query
    for suite in suites.suites("marts"):
        query = gates.suite_sql(suite)
        assert 'select * from "marts".' in query
        if suite.table == "fct_lifecycle_transitions":  # the persons rewritten since the last publish
            assert suite.batch is suites.TRANSITIONS_BATCH
            assert "where not (exists (select from lw_unpublished where customer_key is null))" in query
            assert "customer_key = any(array(select customer_key from lw_unpublished))" in query
        else:
            assert suite.batch is None


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
    # the batch: the whole relation; one scan of it for the column rules, NULLs ignored by `filter`
    assert 'lw_batch as not materialized (\n    select * from "raw"."people" as lw_rows\n)' in query
    assert "count(*) as lw_row_count" in query and "from lw_batch\n)" in query
    assert "'name'" in query and '\'"raw"."people"\'::regclass' in query  # case-insensitive, like GX
    assert 'count(*) filter (where "id" is null) as lw_r1' in query
    assert 'count("id") - count(distinct "id") as lw_r2' in query
    assert ('(select coalesce(sum(rows_with_value - 1), 0) from (select "id", "_dt", count(*) as rows_with_value '
            'from lw_batch where "id" is not null and "_dt" is not null group by "id", "_dt" having count(*) > 1)') in query
    assert "count(*) filter (where \"status\" not in ('ok', 'it''s')) as lw_r4" in query
    assert 'count(*) filter (where not ("score" >= 0 and "score" < 1)) as lw_r5' in query
    assert 'count(*) filter (where length("country") <> 2) as lw_r6' in query
    assert "count(*) filter (where not (\"email\" ~ '^[a-z]+$')) as lw_r7" in query
    # a verdict without a count: the row count rule, its count shown as observed
    assert "(8, 'expect_table_row_count_to_be_between', null, (null)::bigint, lw_scan.lw_row_count::text, " \
           "not (lw_scan.lw_row_count >= 3))" in query
    assert "select id from lw_batch where score > 1\n    ) as lw_unexpected))::bigint" in query
    assert "where coalesce(r.failed, r.unexpected_count > 0)" in query


def test_examples_are_a_few_offending_rows_of_one_rule():
    suite = suites.Suite("raw", "raw.people", (suites.unique("id"), suites.not_null("email"), suites.min_rows(1),
                                                suites.no_rows("x", "select id from {batch} where x")))
    assert suite.example_key == ("id",)  # the suite's first uniqueness rule names a row
    assert compile.examples_query(suite, 1, 5).endswith(
        'select "id", "email" from lw_batch where "email" is null\n) as lw_offending limit 5')
    assert 'group by "id" having count(*) > 1' in compile.examples_query(suite, 0, 5)
    assert compile.examples_query(suite, 2, 5) is None  # no rows to show for a row count
    assert "select id from lw_batch where x" in compile.examples_query(suite, 3, 5)


def test_a_rule_reading_deliveries_needs_a_batch_of_deliveries():
    with pytest.raises(ValueError, match="deliveries"):
        gates.suite_sql(_suite(suites.no_rows("x", "select 1 from {batch} where _dt in (select dt from {deliveries})")))


def test_the_gx_project_holds_one_expectation_per_suite_listing_every_rule():
    import json

    files = suites.project_files()
    for suite in suites.suites():
        written = json.loads(files[f"expectations/{suite.name}.json"])
        (expectation,) = written["expectations"]
        assert expectation["type"] == suites.SUITE_EXPECTATION == "expect_suite_rules_to_pass"
        assert [r["id"] for r in expectation["meta"]["rules"]] == [gates.expectation_id(suite, e)
                                                                   for e in suite.expectations]
        assert len(expectation["notes"]) == len(suite.expectations) + 1
        assert expectation["kwargs"]["unexpected_rows_query"] == compile.suite_query(suite, for_gx=True)
        blocking = any(e.severity == suites.ERROR or e.severity_setting for e in suite.expectations)
        assert expectation["severity"] == (suites.ERROR if blocking else suites.WARNING)


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


def test_a_suite_whose_query_could_not_run_fails_every_rule_once():
    people = _suite(suites.not_null("id"), suites.unique("id"))
    crashed = ExpectationOutcome(suite=people.name, expectation=suites.SUITE_EXPECTATION, severity=suites.ERROR,
                                 success=False, error="column x does not exist", expectation_id="suite-id")
    verdicts, unknown = gates.gx_verdicts(_result(1, failures=[crashed]), [people])
    assert [v["success"] for v in verdicts.values()] == [False, False] and unknown == []
    assert {v["error"] for v in verdicts.values()} == {"column x does not exist"}


def test_compare_lists_disagreements_and_unknown_expectations():
    people = _suite(suites.not_null("id"), suites.unique("id"))
    stranger = suites.Suite("raw", "raw.people", (suites.in_set("id", [1]),))
    ids = [gates.expectation_id(people, e) for e in people.expectations]
    sql = {"suites": {people.name: {"error": None, "verdicts": {ids[0]: False, ids[1]: True}}}}
    result = _result(3, failures=[_outcome(stranger, stranger.expectations[0])])
    disagreements = gates.compare(result, sql, [people])
    assert [(d.get("what"), d["gx"], d["sql"]) for d in disagreements] == [
        (None, False, None),  # GX ran an expectation suites.py does not have: a stale project
        ("GX evaluated 3 rules, suites.py has 2", None, None),
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
    assert "agree on every rule" in text


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
