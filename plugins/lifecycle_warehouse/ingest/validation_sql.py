"""The SQL that validates and loads a staged file, generated from the contract
(docs/sources.md §1 and §4): one statement per file casts each contract column, finds the
first rule a record breaks, and writes good records to `raw.<source>_<entity>` and bad ones
to `raw.quarantine`. Snapshot tests in tests/unit/test_ingest_sql.py show what it generates.

The staged relation (`lw_stage`, a TEMP table the loader fills with COPY) holds for JSONL
(line_number, line, pre_rule) and for CSV (line_number, raw_record, pre_rule, f0, f1, …).

Two variants. The careful statement (`load_sql`) tests every value before casting it, so
that any record can be quarantined with its rule. The optimistic one
(`optimistic_load_sql`), for a file staged straight from its bytes, casts without testing
(a value that does not cast raises) and inserts only good records: the loader keeps its
result when every record was good, and otherwise undoes it and runs the careful one. Both
apply the same rules (where the optimistic one tests a pattern more cheaply, it refuses
more: such a file goes the careful way), so they load the same rows. A large file staged in
chunks (`chunks`) runs the optimistic statement's own validation and casts on the
stager's connection, into a typed chunk (`typed_chunk_sql`), which the folder's
transaction inserts (`insert_typed_sql`).
"""

from __future__ import annotations

import uuid
from datetime import date

from psycopg import sql

from lifecycle_warehouse import bootstrap, contract
from lifecycle_warehouse.contract import Column, FileEntity
from lifecycle_warehouse.ingest.records import CSV, JSONL, RULE_NOT_JSON, RULE_NOT_OBJECT, HeaderMap

STAGE = "lw_stage"
# jsonb_build_object takes at most 100 arguments: build `_extra` in chunks of 50 pairs.
_EXTRA_CHUNK = 50
# Shown values of an unknown enum are cut to this length in the rule text.
_SHOWN_VALUE = 60


def stage_ddl(fmt: str, width: int = 0, numbered: bool = False, first_line: int | None = None) -> sql.Composable:
    """`create temp table lw_stage …` for a JSONL file, or a CSV file of `width` fields.
    `numbered`: COPY numbers the records itself, one per line in file order (the first
    after a CSV header is line 2; for a chunk of a file, `first_line`)."""
    if first_line is None:
        first_line = 2 if fmt == CSV else 1
    line_number = sql.SQL(
        "line_number bigint generated always as identity (start with {} cache 10000)"
        if numbered else "line_number integer"
    ).format(sql.Literal(first_line))
    if fmt == JSONL:
        columns = sql.SQL("{}, line text, pre_rule text").format(line_number)
    else:
        fields = [sql.SQL("{} text").format(_ident(f"f{i}")) for i in range(width)]
        columns = sql.SQL(", ").join([sql.SQL("{}, raw_record text, pre_rule text").format(line_number), *fields])
    return sql.SQL("create temp table {} ({}) on commit drop").format(_ident(STAGE), columns)


# Numbers are plain decimals: a character outside these makes a value no number even where
# PostgreSQL would read one: NaN / Infinity / inf, and PostgreSQL 16's `1_000` and
# `0x10` / `0o17` / `0b101` integer spellings.
_NOT_PLAIN_NUMBER = "[^-+.0-9eE[:space:]]"
# ISO-8601 has no era: PostgreSQL would read `2024-03-01 BC` as a date before year 1.
_NO_ERA = "{v} not ilike '%bc%'"
_ISO_DATE_FIRST = "{v} like '____-__-__%'"
_PATTERNS = {
    contract.TIMESTAMPTZ: _ISO_DATE_FIRST + " and " + _NO_ERA,
    contract.DATE: "{v} like '____-__-__'",
    contract.NUMERIC: "{v} !~ '" + _NOT_PLAIN_NUMBER + "'",
    contract.INTEGER: "{v} !~ '" + _NOT_PLAIN_NUMBER + "'",
    contract.BIGINT: "{v} !~ '" + _NOT_PLAIN_NUMBER + "'",
}

# The optimistic statement's own patterns, where a cheaper test rules out at least what the
# careful one does (a value it rules out only makes the file take the careful load): a
# timestamp with any `b` is refused, without ILIKE's lower-casing of every value (ISO-8601
# has no letter b; a zone name like 'Europe/Berlin' or 'BST' goes the careful way).
_OPTIMISTIC_PATTERNS = {
    **_PATTERNS,
    contract.TIMESTAMPTZ: _ISO_DATE_FIRST + " and {v} not like '%b%' and {v} not like '%B%'",
}

# A line of a JSONL file staged from its bytes that holds nothing (skipped, as the reader
# skips blank lines: Python's whitespace as far as a file of records can hold it).
# A line that starts with `{` is not blank: tested first, it spares the lines of records
# btrim, which in a UTF-8 database measures every character of the line (a third of the
# cost of parsing it as jsonb).
BLANK_LINE = "line is null or (line not like '{%' and btrim(line, e' \\t\\r\\n\\f' || chr(11)) = '')"


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _value_name(index: int) -> sql.Identifier:
    return _ident(f"_lw_v{index}")


def valid_expr(column: Column, value: sql.Composable, fmt: str) -> sql.Composable | None:
    """SQL boolean: the (non-null) raw value can be cast to the column's type; None for text.

    Stricter than the cast where the contract is: timestamps and dates must be ISO-8601
    (PostgreSQL alone would also accept 'now', 'infinity', '03/04/2024' or a BC era),
    numbers plain decimals (not NaN / Infinity, nor `1_000` or `0x10`), JSON columns
    objects (_PATTERNS).
    """
    t = column.type
    if t == contract.TEXT:
        return None
    if t == contract.JSONB:
        if fmt == JSONL:  # already jsonb, extracted with ->
            return sql.SQL("jsonb_typeof({v}) = 'object'").format(v=value)
        return sql.SQL(
            "(pg_input_is_valid({v}, 'jsonb') and jsonb_typeof({v}::jsonb) = 'object')"
        ).format(v=value)
    valid = sql.SQL("pg_input_is_valid({v}, {t})").format(v=value, t=sql.Literal(t))
    # LIKE rather than a regular expression for dates: a third of the cost, and with the
    # cast check it still pins the ISO 'YYYY-MM-DD' start.
    pattern = _PATTERNS.get(t)
    if pattern is None:
        return valid
    return sql.SQL("({ok} and {valid})").format(ok=sql.SQL(pattern).format(v=value), valid=valid)


def optimistic_typed_expr(column: Column, value: sql.Composable, fmt: str) -> sql.Composable:
    """The value cast to the column's type without testing it first: NULL when the contract's
    own pattern rules it out (as in valid_expr, or more: _OPTIMISTIC_PATTERNS), a raised error
    when the cast fails."""
    t = column.type
    if t == contract.TEXT:
        return value
    if t == contract.JSONB:
        if fmt == JSONL:
            return sql.SQL("case when jsonb_typeof({v}) = 'object' then {v} end").format(v=value)
        return sql.SQL("case when jsonb_typeof({v}::jsonb) = 'object' then {v}::jsonb end").format(v=value)
    pattern = _OPTIMISTIC_PATTERNS.get(t)
    cast = sql.SQL("{v}::{t}").format(v=value, t=sql.SQL(t))
    if pattern is None:
        return cast
    return sql.SQL("case when {ok} then {cast} end").format(ok=sql.SQL(pattern).format(v=value), cast=cast)


def typed_expr(column: Column, value: sql.Composable, fmt: str) -> sql.Composable:
    """The value cast to the column's type, NULL when it is not valid for it (the optimistic
    statement's: optimistic_typed_expr)."""
    valid = valid_expr(column, value, fmt)
    if valid is None:
        return value
    if column.type == contract.JSONB and fmt == JSONL:  # already jsonb
        return sql.SQL("case when {ok} then {v} end").format(ok=valid, v=value)
    return sql.SQL("case when {ok} then {v}::{t} end").format(
        ok=valid, v=value, t=sql.SQL(column.type)
    )


def _number(value: float) -> str:
    return f"{value:g}"


def column_rules(column: Column, value: sql.Composable, typed: sql.Composable) -> list[
    tuple[sql.Composable, sql.Composable]
]:
    """(condition, rule text) pairs for one column, in the order they are checked: required,
    type, accepted values, length, min, max. `value` is the raw value (NULL when empty),
    `typed` its cast (NULL when not valid)."""
    name = column.name
    rules: list[tuple[sql.Composable, sql.Composable]] = []
    if column.required:  # empty values are already NULL
        rules.append((sql.SQL("{v} is null").format(v=value), sql.Literal(f"{name}: required")))
    if column.type != contract.TEXT:
        rules.append((
            sql.SQL("({v} is not null and {t} is null)").format(v=value, t=typed),
            sql.Literal(f"{name}: {contract.TYPE_RULE[column.type]}"),
        ))
    if column.accepted is not None:
        rules.append((
            sql.SQL("{v} <> all({values}::text[])").format(
                v=value, values=sql.Literal(list(column.accepted))
            ),
            sql.SQL("{prefix} || left({v}, {n}) || ''''").format(
                prefix=sql.Literal(f"{name}: unknown value '"), v=value, n=sql.Literal(_SHOWN_VALUE)
            ),
        ))
    if column.length is not None:
        rules.append((
            sql.SQL("length({v}) <> {n}").format(v=value, n=sql.Literal(column.length)),
            sql.Literal(f"{name}: must be {column.length} characters long"),
        ))
    if column.min_value is not None:
        rules.append((
            sql.SQL("{t} < {m}").format(t=typed, m=sql.Literal(column.min_value)),
            sql.Literal(f"{name}: must be at least {_number(column.min_value)}"),
        ))
    if column.max_value is not None:
        rules.append((
            sql.SQL("{t} > {m}").format(t=typed, m=sql.Literal(column.max_value)),
            sql.Literal(f"{name}: must be at most {_number(column.max_value)}"),
        ))
    return rules


def rule_expr(entity: FileEntity) -> sql.Composable:
    """SQL text expression: the first rule a staged record fails, NULL when it is good.

    Evaluated over a relation with `_lw_pre_rule` (a problem found while reading), the raw
    value of each contract column as `_lw_v<i>` (text, NULL when empty) and its typed value
    under the column's own name, so that the entity's checks can refer to columns by name.
    """
    branches: list[sql.Composable] = [sql.SQL("when _lw_pre_rule is not null then _lw_pre_rule")]
    for index, column in enumerate(entity.columns):
        for condition, rule in column_rules(column, _value_name(index), _ident(column.name)):
            branches.append(sql.SQL("when {c} then {r}").format(c=condition, r=rule))
    for check in entity.checks:
        branches.append(
            sql.SQL("when ({c}) is false then {r}").format(
                c=sql.SQL(check.sql), r=sql.Literal(check.rule)
            )
        )
    return sql.SQL("case\n    {}\nend").format(sql.SQL("\n    ").join(branches))


def _extra_csv(extras: list[tuple[str, int]]) -> sql.Composable:
    if not extras:
        return sql.SQL("null::jsonb")
    chunks = []
    for i in range(0, len(extras), _EXTRA_CHUNK):
        pairs = [
            sql.SQL("{k}, nullif({f}, '')").format(k=sql.Literal(key), f=_ident(f"f{index}"))
            for key, index in extras[i : i + _EXTRA_CHUNK]
        ]
        chunks.append(sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(pairs)))
    return sql.SQL(" || ").join(chunks)


def values_sql(
    entity: FileEntity, fmt: str, header: HeaderMap | None, json_check: str = "json", optimistic: bool = False,
    stage: sql.Composable | None = None,
) -> sql.Composable:
    """The staged records with each contract column's raw value (`_lw_v<i>`, NULL when empty),
    the `_extra` object and any problem already known (`_lw_pre_rule`).

    JSONL lines are parsed once. `json_check` is the type used to test a line before casting it
    to jsonb: 'json' is ~4x cheaper than 'jsonb' but accepts a few texts jsonb refuses (a
    \\u0000 escape, a lone surrogate, a number beyond numeric's range); the loader retries
    with 'jsonb' when the cheap test let such a line through. Optimistic: no test (a line
    that is not JSON raises), and blank lines (staged as they come) are skipped here.
    `stage`: the staged relation (default `lw_stage`).
    """
    stage = _ident(STAGE) if stage is None else stage
    if fmt == CSV:
        assert header is not None
        values = [
            sql.SQL("nullif({f}, '') as {v}").format(
                f=_ident(f"f{header.positions[c.name]}"), v=_value_name(i)
            )
            for i, c in enumerate(entity.columns)
        ]
        return sql.SQL(
            "select line_number as _lw_line, raw_record as _lw_record, pre_rule as _lw_pre_rule,\n"
            "  {values},\n  {extra} as _lw_extra\nfrom {stage}"
        ).format(values=sql.SQL(",\n  ").join(values), extra=_extra_csv(header.extras), stage=stage)

    keys = sql.Literal([c.name for c in entity.columns])
    values = []
    for i, c in enumerate(entity.columns):
        key = sql.Literal(c.name)
        if c.type == contract.JSONB:
            expr = sql.SQL("nullif(j -> {k}, 'null'::jsonb)").format(k=key)
        else:
            expr = sql.SQL("nullif(j ->> {k}, '')").format(k=key)
        values.append(sql.SQL("{e} as {v}").format(e=expr, v=_value_name(i)))
    if optimistic:
        parsed = sql.SQL(
            "select line_number, line, pre_rule, line::jsonb as j\n"
            "      from {stage} where not ({blank}) offset 0"
        ).format(stage=stage, blank=sql.SQL(BLANK_LINE))
    else:
        parsed = sql.SQL(
            "select line_number, line, pre_rule,\n"
            "             case when pre_rule is null and pg_input_is_valid(line, {check})\n"
            "                  then line::jsonb end as j\n"
            "      from {stage} offset 0"
        ).format(check=sql.Literal(json_check), stage=stage)
    return sql.SQL(
        "select line_number as _lw_line, line as _lw_record,\n"
        "  coalesce(pre_rule, case when j is null then {not_json}\n"
        "                          when jsonb_typeof(j) <> 'object' then {not_object}\n"
        "                     end) as _lw_pre_rule,\n"
        "  {values},\n"
        "  case when jsonb_typeof(j) = 'object'\n"
        "       then nullif(j - {keys}::text[], '{{}}'::jsonb) end as _lw_extra\n"
        "from ({parsed}) parsed"
    ).format(
        not_json=sql.Literal(RULE_NOT_JSON), not_object=sql.Literal(RULE_NOT_OBJECT),
        values=sql.SQL(",\n  ").join(values), keys=keys, parsed=parsed,
    )


def validated_sql(
    entity: FileEntity, fmt: str, header: HeaderMap | None, json_check: str = "json"
) -> sql.Composable:
    """Every staged record with its typed contract columns, `_lw_extra`, `_lw_line`, the rule
    it fails (`_lw_rule`, NULL when good) and, for bad records only, its text (`_lw_record`).

    `offset 0` keeps each level from being flattened into the next, so that every value is
    extracted, tested and cast once per record however many rules refer to it.
    """
    names = [_ident(c.name) for c in entity.columns]
    raw_values = [_value_name(i) for i in range(len(entity.columns))]
    typed = [
        sql.SQL("{e} as {n}").format(e=typed_expr(c, _value_name(i), fmt), n=_ident(c.name))
        for i, c in enumerate(entity.columns)
    ]
    return sql.SQL(
        "select _lw_line, _lw_extra, {names}, _lw_rule,\n"
        "       case when _lw_rule is not null then _lw_record end as _lw_record\n"
        "from (\n"
        "  select _lw_line, _lw_record, _lw_extra, {names},\n  {rule} as _lw_rule\n"
        "  from (\n"
        "    select _lw_line, _lw_record, _lw_pre_rule, _lw_extra, {raw_values},\n    {typed}\n"
        "    from ({values} offset 0) v\n"
        "    offset 0) t\n"
        "  offset 0) r"
    ).format(
        names=sql.SQL(", ").join(names),
        rule=rule_expr(entity),
        raw_values=sql.SQL(", ").join(raw_values),
        typed=sql.SQL(",\n    ").join(typed),
        values=values_sql(entity, fmt, header, json_check),
    )


def load_sql(
    entity: FileEntity, fmt: str, header: HeaderMap | None, *, batch_id: uuid.UUID, dt: date,
    file: str, json_check: str = "json",
) -> sql.Composable:
    """One statement that validates the staged file once and writes both the good records
    (raw table) and the bad ones (quarantine). Returns (rule, count) rows: rule NULL for the
    loaded count, then one row per quarantine rule."""
    names = sql.SQL(", ").join(_ident(c.name) for c in entity.columns)
    batch, day, path = sql.Literal(batch_id), sql.Literal(dt), sql.Literal(file)
    return sql.SQL(
        "with v as materialized ({validated}),\n"
        "quarantined as (\n"
        "  insert into raw.quarantine\n"
        "    (batch_id, source, entity, dt, file, line_number, rule, raw_record)\n"
        "  select {batch}, {source}, {entity}, {dt}, {file}, _lw_line, _lw_rule, _lw_record\n"
        "  from v where _lw_rule is not null\n"
        "  returning rule),\n"
        "loaded as (\n"
        "  insert into {table} ({names}, _batch_id, _dt, _file, _line_number, _loaded_at, _extra)\n"
        "  select {names}, {batch}, {dt}, {file}, _lw_line, now(), _lw_extra\n"
        "  from v where _lw_rule is null\n"
        "  returning 1)\n"
        "select null::text as rule, count(*) from loaded\n"
        "union all\n"
        "select rule, count(*) from quarantined group by rule"
    ).format(
        validated=validated_sql(entity, fmt, header, json_check),
        batch=batch, source=sql.Literal(entity.source), entity=sql.Literal(entity.entity),
        dt=day, file=path, names=names,
        table=sql.Identifier(bootstrap.RAW_SCHEMA, entity.raw_table),
    )


def staged_count_sql(fmt: str, stage: sql.Composable | None = None) -> sql.Composable:
    """The number of records staged (a JSONL file staged from its bytes keeps its blank lines)
    in `stage` (default `lw_stage`)."""
    stage = _ident(STAGE) if stage is None else stage
    if fmt == JSONL:
        return sql.SQL("select count(*) from {} where not ({})").format(stage, sql.SQL(BLANK_LINE))
    return sql.SQL("select count(*) from {}").format(stage)


def optimistic_load_sql(
    entity: FileEntity, fmt: str, header: HeaderMap | None, *, batch_id: uuid.UUID, dt: date, file: str,
    stage: sql.Composable | None = None,
) -> sql.Composable:
    """One `insert … select` of the staged file's good records into the raw table, casting
    without testing (a value that does not cast raises). Its row count is the records
    loaded: the loader keeps the result only when that is every record staged (COPY's
    count, or when it differs, staged_count_sql, which leaves out blank lines). Each line
    is parsed once and each value extracted and cast once (`offset 0`); the careful
    statement's rules (rule_expr) filter the records in the scan that feeds the insert.
    `stage`: the staged relation (default `lw_stage`)."""
    return sql.SQL("{insert}\n{rows}").format(
        insert=_insert_head(entity, batch_id=batch_id, dt=dt, file=file),
        rows=_optimistic_rows(entity, fmt, header, stage),
    )


def typed_chunk_sql(
    entity: FileEntity, fmt: str, header: HeaderMap | None, *, stage: sql.Composable, table: sql.Composable,
) -> sql.Composable:
    """`create unlogged table <table> as` the staged records that optimistic_load_sql would
    insert, typed (`_lw_line`, the contract columns, `_lw_extra`): a chunk of a large file,
    validated and cast on the stager's connection (`chunks`) and inserted by
    insert_typed_sql. Its row count is the good records."""
    names = sql.SQL(", ").join(_ident(c.name) for c in entity.columns)
    return sql.SQL(
        "create unlogged table {table} with (autovacuum_enabled = false) as\n"
        "select _lw_line, {names}, _lw_extra\n{rows}"
    ).format(table=table, names=names, rows=_optimistic_rows(entity, fmt, header, stage))


def insert_typed_sql(
    entity: FileEntity, *, batch_id: uuid.UUID, dt: date, file: str, chunk: sql.Composable,
) -> sql.Composable:
    """The `insert … select` of a typed chunk (typed_chunk_sql) into the raw table."""
    return sql.SQL("{insert}\nfrom {chunk}").format(
        insert=_insert_head(entity, batch_id=batch_id, dt=dt, file=file), chunk=chunk)


def _insert_head(entity: FileEntity, *, batch_id: uuid.UUID, dt: date, file: str) -> sql.Composable:
    names = sql.SQL(", ").join(_ident(c.name) for c in entity.columns)
    return sql.SQL(
        "insert into {table} ({names}, _batch_id, _dt, _file, _line_number, _loaded_at, _extra)\n"
        "select {names}, {batch}, {dt}, {file}, _lw_line, now(), _lw_extra"
    ).format(
        table=sql.Identifier(bootstrap.RAW_SCHEMA, entity.raw_table), names=names,
        batch=sql.Literal(batch_id), dt=sql.Literal(dt), file=sql.Literal(file),
    )


def _optimistic_rows(
    entity: FileEntity, fmt: str, header: HeaderMap | None, stage: sql.Composable | None,
) -> sql.Composable:
    """`from (…) t where …`: the good staged records, cast without testing."""
    raw_values = [_value_name(i) for i in range(len(entity.columns))]
    typed = [
        sql.SQL("{e} as {n}").format(e=optimistic_typed_expr(c, _value_name(i), fmt), n=_ident(c.name))
        for i, c in enumerate(entity.columns)
    ]
    return sql.SQL(
        "from (\n"
        "  select _lw_line, _lw_pre_rule, _lw_extra, {raw_values},\n  {typed}\n"
        "  from ({values} offset 0) v\n"
        "  offset 0) t\n"
        "where ({rule}) is null"
    ).format(
        raw_values=sql.SQL(", ").join(raw_values),
        typed=sql.SQL(",\n  ").join(typed),
        values=values_sql(entity, fmt, header, optimistic=True, stage=stage),
        rule=rule_expr(entity),
    )
