"""A suite's rules as ONE SQL query: what the gate's single GX expectation per suite runs
(`expectation.ExpectSuiteRulesToPass`), and what the benchmark runs by hand.

The rules stay in GX's vocabulary (`suites.Expectation`: `expect_column_values_to_be_unique`,
`unexpected_rows_expectation`, ...). Each one is translated here into an unexpected count
with GX's semantics (a NULL is never unexpected, except to not_null; a NULL in a compound key
never collides; bounds inclusive unless strict), so that a verdict is the one GX's own
expectation would give on the same rows. The query

- defines `lw_batch`, the rows under validation: the whole relation, or a slice of it that
  the suite defines (`suites.Batch`: e.g. a raw table's rows of the run's deliveries);
- scans `lw_batch` once for every column rule (one aggregate each, in `lw_scan`);
- evaluates the other rules (SQL checks, compound keys, the column set) as scalar subqueries;
- returns one row per FAILING rule, plus one row `rule = -1` giving the rows checked:

      rule  rule_type                               column_name  unexpected_count  observed
      -1    rows_checked                            null         1234              null
      3     expect_column_values_to_not_be_null     email        2                 null
      17    unexpected_rows_expectation             updated_at   1                 null

  `rule` is the rule's index in the suite; `unexpected_count` the rows at fault (for a
  uniqueness rule: the rows beyond the first of each duplicated value; for the column set:
  the columns missing, or extra when exact); `observed` what a rule without a count saw
  (the row count of `expect_table_row_count_to_be_between`, the columns missing).

A rule absent from the rows passed. Placeholders in a rule's SQL: `{batch}` (the rows
under validation), `{table}` (the whole relation: for rules that compare the batch with
rows outside it, e.g. the day before), `{deliveries}` (the suite's deliveries, one `dt` per
row, when its batch has some).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lifecycle_warehouse.quality import suites

BATCH = "lw_batch"
DELIVERIES = "lw_deliveries"
SCAN = "lw_scan"
ROWS_CHECKED = -1
# GX fetches at most this many rows of a query (great_expectations.constants.MAX_RESULT_RECORDS).
MAX_ROWS = 200
# Where GX's `{batch}` goes in the query handed to GX (braces are escaped for its str.format).
_GX_BATCH = "\x00batch\x00"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def relation_sql(relation: str) -> str:
    schema, table = relation.split(".", 1)
    return f"{ident(schema)}.{ident(table)}"


def literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {value!r} ({type(value).__name__})")


def _kwargs(e: suites.Expectation, required: set[str], optional: Collection[str] = ()) -> dict[str, Any]:
    """The rule's kwargs, refusing any we do not translate (e.g. `mostly`): a silently
    ignored kwarg would make the SQL check something other than GX's expectation does."""
    missing = required - set(e.kwargs)
    unknown = set(e.kwargs) - required - set(optional)
    if missing or unknown:
        raise ValueError(f"{e.type}: cannot translate kwargs {sorted(e.kwargs)} "
                         f"(missing {sorted(missing)}, unsupported {sorted(unknown)})")
    return e.kwargs


@dataclass(frozen=True)
class Check:
    """One rule in SQL. `scan`: an aggregate over lw_batch (its value is the unexpected
    count); else `unexpected`: a scalar expression over lw_scan. `failed`: the verdict when
    it is not `unexpected > 0`. `observed`: text shown for a rule without a count.
    `offending`: a query of a few offending rows (examples), over lw_batch."""

    scan: str | None = None
    unexpected: str | None = None
    failed: str | None = None
    observed: str | None = None
    offending: str | None = None


def _where_rows(column: str, condition: str, key: tuple[str, ...]) -> str:
    shown = ", ".join(dict.fromkeys([*map(ident, key), ident(column)]))
    return f"select {shown} from {BATCH} where {condition}"


def _not_null(e, s, key):
    column = ident(_kwargs(e, {"column"})["column"])
    condition = f"{column} is null"
    return Check(scan=f"count(*) filter (where {condition})",
                 offending=_where_rows(e.kwargs["column"], condition, key))


def _unique(e, s, key):
    column = ident(_kwargs(e, {"column"})["column"])
    return Check(scan=f"count({column}) - count(distinct {column})",
                 offending=f"select {column}, count(*) as rows_with_value from {BATCH} where {column} is not null "
                           f"group by {column} having count(*) > 1")


def _in_set(e, s, key):
    k = _kwargs(e, {"column", "value_set"})
    column = ident(k["column"])
    if not k["value_set"]:  # GX: every non-NULL value is unexpected
        condition = f"{column} is not null"
    else:
        condition = f"{column} not in ({', '.join(literal(v) for v in k['value_set'])})"
    return Check(scan=f"count(*) filter (where {condition})", offending=_where_rows(k["column"], condition, key))


def _bounds(value: str, k: dict[str, Any]) -> str:
    """`value` within min_value/max_value, strict when strict_min/strict_max (GX's between)."""
    if k.get("min_value") is None and k.get("max_value") is None:
        raise ValueError("min_value and max_value cannot both be None")
    parts = []
    if k.get("min_value") is not None:
        parts.append(f"{value} {'>' if k.get('strict_min') else '>='} {literal(k['min_value'])}")
    if k.get("max_value") is not None:
        parts.append(f"{value} {'<' if k.get('strict_max') else '<='} {literal(k['max_value'])}")
    return " and ".join(parts)


def _between(e, s, key):
    k = _kwargs(e, {"column"}, {"min_value", "max_value", "strict_min", "strict_max"})
    condition = f"not ({_bounds(ident(k['column']), k)})"
    return Check(scan=f"count(*) filter (where {condition})", offending=_where_rows(k["column"], condition, key))


def _lengths(e, s, key):
    k = _kwargs(e, {"column", "value"})
    condition = f"length({ident(k['column'])}) <> {literal(k['value'])}"
    return Check(scan=f"count(*) filter (where {condition})", offending=_where_rows(k["column"], condition, key))


def _regex(e, s, key):
    k = _kwargs(e, {"column", "regex"})
    condition = f"not ({ident(k['column'])} ~ {literal(k['regex'])})"
    return Check(scan=f"count(*) filter (where {condition})", offending=_where_rows(k["column"], condition, key))


def _row_count(e, s, key):
    k = _kwargs(e, set(), {"min_value", "max_value", "strict_min", "strict_max"})
    return Check(unexpected="null", failed=f"not ({_bounds(f'{SCAN}.lw_row_count', k)})",
                 observed=f"{SCAN}.lw_row_count::text")


def _compound_unique(e, s, key):
    # GX joins each row to its group's count on equality of every key column, so a row with
    # a NULL in the key joins no group and is never unexpected.
    columns = ", ".join(ident(c) for c in _kwargs(e, {"column_list"})["column_list"])
    present = " and ".join(f"{ident(c)} is not null" for c in e.kwargs["column_list"])
    duplicates = (f"select {columns}, count(*) as rows_with_value from {BATCH} where {present} "
                  f"group by {columns} having count(*) > 1")
    return Check(unexpected=f"(select coalesce(sum(rows_with_value - 1), 0) from ({duplicates}) as lw_duplicates)",
                 offending=duplicates)


def _columns_match(e, s, key):
    k = _kwargs(e, {"column_set"}, {"exact_match"})
    if any(c.startswith('"') for c in k["column_set"]):
        raise ValueError(f"{e.type}: quoted column names (matched case-sensitively by GX) are not supported")
    # GX compares unquoted names case-insensitively with the table's columns.
    expected = "array[" + ", ".join(literal(c.lower()) for c in k["column_set"]) + "]::text[]"
    actual = (f"select lower(attname::text) from pg_attribute "
              f"where attrelid = {literal(relation_sql(s.relation))}::regclass and attnum > 0 and not attisdropped")
    missing = f"from unnest({expected}) as lw_expected(name) where name not in ({actual})"
    extra = f"from ({actual}) as lw_actual(name) where name <> all({expected})"
    unexpected = f"(select count(*) {missing})"
    observed = f"'missing: ' || (select string_agg(name, ', ' order by name) {missing})"
    if k.get("exact_match"):
        unexpected += f" + (select count(*) {extra})"
        observed = f"concat_ws('; ', {observed}, 'extra: ' || (select string_agg(name, ', ' order by name) {extra}))"
    return Check(unexpected=unexpected, observed=observed)


def render(query: str, s: suites.Suite) -> str:
    """A rule's SQL with its placeholders bound to the compiled query's names."""
    if "{deliveries}" in query and (s.batch is None or not s.batch.deliveries):
        raise ValueError(f"suite {s.name}: a rule reads {{deliveries}} but the suite's batch has none")
    return (query.replace("{batch}", BATCH).replace("{table}", relation_sql(s.relation))
            .replace("{deliveries}", DELIVERIES))


def _unexpected_rows(e, s, key):
    query = render(_kwargs(e, {"unexpected_rows_query"})["unexpected_rows_query"], s)
    return Check(unexpected=f"(select count(*) from (\n{textwrap.indent(query, '        ')}\n    ) as lw_unexpected)",
                 offending=query)


TRANSLATIONS: dict[str, Callable[[suites.Expectation, suites.Suite, tuple[str, ...]], Check]] = {
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_values_to_be_unique": _unique,
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_values_to_be_between": _between,
    "expect_column_value_lengths_to_equal": _lengths,
    "expect_column_values_to_match_regex": _regex,
    "expect_table_row_count_to_be_between": _row_count,
    "expect_compound_columns_to_be_unique": _compound_unique,
    "expect_table_columns_to_match_set": _columns_match,
    "unexpected_rows_expectation": _unexpected_rows,
}
SUPPORTED = frozenset(TRANSLATIONS)


def checks(s: suites.Suite) -> list[Check]:
    """Every rule of the suite in SQL, in the suite's order."""
    out = []
    for e in s.expectations:
        if e.type not in TRANSLATIONS:
            raise ValueError(f"suite {s.name}: no SQL translation for expectation type {e.type!r} "
                             f"(supported: {', '.join(sorted(SUPPORTED))})")
        out.append(TRANSLATIONS[e.type](e, s, s.example_key))
    return out


def _ctes(s: suites.Suite, source: str) -> list[str]:
    """`lw_batch` (and what defines it) over `source`, the relation as the query names it."""
    batch = s.batch
    ctes = [] if batch is None else [textwrap.dedent(c).strip() for c in batch.ctes]
    if batch is not None and batch.deliveries:
        ctes.append(f"{DELIVERIES} as (\n{textwrap.indent(textwrap.dedent(batch.deliveries).strip(), '    ')}\n)")
    where = f"\n    where {batch.where}" if batch is not None and batch.where else ""
    if batch is not None and batch.all_when:
        # Two branches, each kept or skipped once for the query (a one-time filter): the
        # batch's rows through their condition (an index), or every row.
        rows = (f"select * from {source} as lw_rows\n    where not ({batch.all_when}) and {batch.where}\n"
                f"    union all\n    select * from {source} as lw_rows\n    where {batch.all_when}")
    else:
        rows = f"select * from {source} as lw_rows{where}"
    # Not materialized: the rules' conditions reach the scan (and its partitions or indexes).
    ctes.append(f"{BATCH} as not materialized (\n    {rows}\n)")
    return ctes


def suite_query(s: suites.Suite, *, for_gx: bool = False) -> str:
    """The suite's one query (see the module's docstring). `for_gx`: the relation is GX's
    `{batch}` (GX substitutes its batch, here the whole table) and every other brace is
    doubled for GX's str.format; else the relation is named."""
    if len(s.expectations) + 1 > MAX_ROWS:
        raise ValueError(f"suite {s.name}: {len(s.expectations)} rules, GX reads at most {MAX_ROWS - 1}")
    compiled = checks(s)
    scan = ["count(*) as lw_row_count"]
    rows = [f"({ROWS_CHECKED}, 'rows_checked', null::text, {SCAN}.lw_row_count::bigint, null::text, true)"]
    for index, (e, check) in enumerate(zip(s.expectations, compiled)):
        if check.scan is not None:
            scan.append(f"{check.scan} as lw_r{index}")
            unexpected = f"{SCAN}.lw_r{index}"
        else:
            unexpected = check.unexpected
        column = e.kwargs.get("column") or e.column or (", ".join(e.kwargs["column_list"])
                                                          if "column_list" in e.kwargs else None)
        rows.append(f"({index}, {literal(e.type)}, {literal(column)}, ({unexpected})::bigint, "
                    f"{check.observed or 'null'}, {check.failed or 'null'})")
    source = _GX_BATCH if for_gx else relation_sql(s.relation)
    ctes = _ctes(s, source)
    ctes.append(f"{SCAN} as (\n    select\n        " + ",\n        ".join(scan) + f"\n    from {BATCH}\n)")
    query = (
        "with " + ",\n".join(ctes) + "\n"
        "select r.rule, r.rule_type, r.column_name, r.unexpected_count, r.observed\n"
        f"from {SCAN} cross join lateral (values\n    " + ",\n    ".join(rows) + "\n"
        ") as r(rule, rule_type, column_name, unexpected_count, observed, failed)\n"
        "where coalesce(r.failed, r.unexpected_count > 0)\n"
        "order by r.rule"
    )
    if for_gx:
        # GX renders {batch} as a bare `(select ...)` in a query with a JOIN (this one has
        # one: `cross join`): aliased above as lw_rows.
        query = query.replace("{", "{{").replace("}", "}}").replace(_GX_BATCH, "{batch}")
    return query


def examples_query(s: suites.Suite, index: int, limit: int) -> str | None:
    """A few offending rows of the suite's `index`-th rule, with the suite's batch (None for
    a rule without rows: the row count, the column set)."""
    check = checks(s)[index]
    if check.offending is None:
        return None
    ctes = _ctes(s, relation_sql(s.relation))
    return ("with " + ",\n".join(ctes) + "\n"
            f"select * from (\n{textwrap.indent(check.offending, '    ')}\n) as lw_offending limit {int(limit)}")
