"""The quality-gates benchmark's hand-written SQL (lifecycle_warehouse/bench/gates.py) on a
real PostgreSQL (the very query per suite the gate's GX expectation runs, quality/compile.py):
on a small table with planted faults (a NULL, a duplicate, a value out of
its set, a bound reached, a row after the run's interval end...) every verdict is GX's
(the expected verdicts follow GX's semantics: NULLs ignored but by not_null, a NULL in a
compound key never a duplicate, bounds inclusive unless strict); a suite whose query cannot run
fails every rule; and every raw suite's query runs on the bootstrapped
schema, and counts its rows by delivery. No GX run, no timing assertion."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

from lifecycle_warehouse import bootstrap
from lifecycle_warehouse.bench import gates
from lifecycle_warehouse.quality import audit, suites

END = date(2026, 9, 3)  # the run's data interval end

PEOPLE = """
create schema t;
create table t.people (
    id int, code text, email text, score numeric, country char(2), status text,
    group_key text, sub int, seen_at timestamptz
);
insert into t.people values
    (1, 'a', 'ann@x', 0,  'DE', 'ok', 'g1', null, '2026-09-02 08:00+00'),
    (2, 'b', null,    10, 'FR', null, 'g1', null, '2026-09-02 09:00+00'),
    (3, 'b', 'bob@x', 5,  'FR', 'ok', 'g2', 1,    '2026-09-01 10:00+00'),
    (4, 'c', null,    7,  'XX', 'ok', 'g2', 2,    '2026-09-03 00:00+00'),
    (5, 'd', 'BAD',   3,  'DE', 'ok', 'g3', 1,    '2026-08-31 12:00+00');
"""

E = suites.Expectation
# (expectation, GX's verdict on t.people)
CHECKS = [
    (suites.columns_present(["id", "CODE", "email"]), True),  # GX matches unquoted names case-insensitively
    (suites.columns_present(["id", "nickname"]), False),
    (E("expect_table_columns_to_match_set", {"column_set": ["id", "code"], "exact_match": True}), False),
    (suites.not_null("id"), True),
    (suites.not_null("email"), False),
    (suites.unique("id"), True),
    (suites.unique("code"), False),  # 'b' twice
    (suites.unique("email"), True),  # two NULLs are no duplicate
    (suites.unique_together(["group_key", "sub"]), True),  # ('g1', NULL) twice: NULL keys never collide
    (suites.unique_together(["code", "country"]), False),  # ('b', 'FR') twice
    (suites.in_set("country", ["DE", "FR"]), False),  # 'XX'
    (suites.in_set("status", ["ok"]), True),  # a NULL status is not unexpected
    (suites.between("score", 0, 10), True),  # bounds inclusive
    (E("expect_column_values_to_be_between", {"column": "score", "min_value": 0, "max_value": 10,
                                               "strict_max": True}), False),
    (suites.between("score", min_value=1), False),
    (suites.length_is("country", 2), True),
    (suites.length_is("code", 2), False),
    (suites.matches("email", "^[a-z]+@[a-z]+$"), False),  # 'BAD'
    (suites.matches("email", "^[A-Za-z@]+$"), True),
    (suites.min_rows(5), True),
    (suites.min_rows(6), False),
    (suites.no_rows("seen before the run's interval end",
                    "select id, seen_at from {batch} where seen_at >= current_setting('lw.data_interval_end')::timestamptz"),
     False),  # id 4, at the end: the session carries the run's dates
    (suites.no_rows("no negative score", "select id from {batch} where score < 0"), True),
    (suites.no_rows("ids join themselves", "select p.id from {batch} p join t.people q on q.id = p.id where q.id is null"),
     True),
]


@pytest.fixture
def people_url(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(PEOPLE)
    return warehouse_url


def _verdicts(url, *suite_list):
    return gates.run_sql_checks(url, "test", END, suite_list=suite_list)


def test_sql_verdicts_are_gx_verdicts_on_planted_faults(people_url):
    suite = suites.Suite("test", "t.people", tuple(e for e, _ in CHECKS))
    checked = _verdicts(people_url, suite)["suites"][suite.name]
    assert checked["error"] is None and checked["rows"] == 5
    got = [(gates.describe(e), checked["verdicts"][gates.expectation_id(suite, e)]) for e in suite.expectations]
    assert got == [(gates.describe(e), verdict) for e, verdict in CHECKS]


def test_a_failing_query_fails_every_rule_of_its_suite(people_url):
    """As the gate reports it: the suite's one query could not run (one error, every rule failed)."""
    broken = suites.Suite("test", "t.people", (suites.not_null("id"), suites.not_null("nickname")))
    gone = suites.Suite("test", "t.gone", (suites.not_null("id"),))
    checked = _verdicts(people_url, broken, gone)["suites"]
    assert "nickname" in checked[broken.name]["error"]
    assert list(checked[broken.name]["verdicts"].values()) == [False, False]
    assert "gone" in checked[gone.name]["error"]
    assert list(checked[gone.name]["verdicts"].values()) == [False]


def test_every_raw_suite_runs_on_the_bootstrapped_schema(warehouse_url):
    bootstrap.bootstrap(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        audit.ensure_schemas(conn)  # audit.gate_runs, read by the shop suites
    checked = gates.run_sql_checks(warehouse_url, "raw", END)
    assert {name: c["error"] for name, c in checked["suites"].items() if c["error"]} == {}
    assert len(checked["suites"]) == len(suites.suites("raw"))
