"""Publish: the last step of write-audit-publish. dbt writes the marts into the build schema
(`marts`), the quality gate audits them there, and this module makes `analytics.<relation>`
the validated copy of `marts.<relation>` for every BI relation, in one transaction.

How the swap stays invisible to BI: the `analytics` tables keep their identity (and their
grants); a publish deletes their rows and inserts the new ones in a single transaction.
That is plain MVCC, so any reader, whatever its isolation level and however long its
transaction, sees either the whole previous version or the whole new one: never a mix,
never an empty table, never an error, and it never waits for the publish. (Swapping tables
or schemas by renaming would make readers queue behind an exclusive lock, and a reader
whose snapshot predates the swap would see the new tables empty.) Only a structural change
(a new column, a changed type) takes a short exclusive lock on the affected table.

`analytics.publications` gets one row per publish (version, run, row counts): BI can show
"data as of", and the marts gate compares row counts with the published version.

A large incremental mart that lists the keys it rewrote since the last publish
(`marts.<relation>__unpublished`, dbt_project/macros/unpublished_keys.sql:
fct_lifecycle_transitions' persons) has only those keys' rows replaced, not every row
copied (through an index on the key that the publish keeps on the analytics table); the
same transaction empties the list. The whole copy is made instead when the
list says "everything" (a NULL key: a full build), the analytics table is new or changed
structure, or the result would not have the mart's row count (a check that costs one scan).
Only a publish from `marts` into `analytics` reads or empties the lists.

By default a publish refuses marts that the last marts gate run did not validate: the gate
must have passed, and the tables must be the very ones it saw (same oid, row count and
newest writing transaction, so that a mart rebuilt or changed in place since is refused).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from lifecycle_warehouse import connections
from lifecycle_warehouse.quality import audit
from lifecycle_warehouse.quality.suites import BUILD_SCHEMA, MART_RELATIONS

log = logging.getLogger(__name__)

PUBLISH_LOCK = "lifecycle_warehouse.publish"
APPLICATION = "lifecycle_warehouse.publish"  # its session in pg_stat_activity
BI_SCHEMA = "analytics"
# A structural change waits at most this long for BI queries on the table to finish.
LOCK_TIMEOUT = "60s"


class PublishRefused(RuntimeError):
    """The marts cannot be published; `analytics` was left as it was."""


@dataclass(frozen=True)
class Publication:
    version: int
    relations: dict[str, int]  # relation -> rows published
    published_at: datetime
    replaced_keys: dict[str, int] = field(default_factory=dict)  # relation -> keys replaced, when not copied whole


def _columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    """Column name -> SQL type, in column order ({} when the relation does not exist)."""
    rows = conn.execute(
        """
        select a.attname, format_type(a.atttypid, a.atttypmod)
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped
        order by a.attnum
        """,
        (schema, table),
    ).fetchall()
    return dict(rows)


def _last_passing_gate(conn: psycopg.Connection) -> tuple[str, dict]:
    """The last marts gate run, which must have passed: (run id, what it validated)."""
    last = conn.execute(
        "select run_id, success, relations, finished_at from audit.gate_runs "
        "where stage = 'marts' order by finished_at desc limit 1"
    ).fetchone()
    if last is None:
        raise PublishRefused("no marts quality gate has run: run it before publishing")
    run_id, success, validated, finished_at = last
    if not success:
        raise PublishRefused(
            f"the last marts quality gate (run {run_id}, {finished_at:%Y-%m-%d %H:%M} UTC) failed: "
            "analytics keeps its current version; see audit.suite_results for the failing expectations"
        )
    return run_id, validated


def _check_same_tables(conn: psycopg.Connection, from_schema: str, relations: tuple[str, ...],
                       run_id: str, validated: dict) -> None:
    """The marts are the very tables, with the very rows, that the passing gate run validated."""
    names = [f"{from_schema}.{relation}" for relation in relations]
    for name, now in audit.relation_facts(conn, names).items():
        seen = validated.get(name) or {}  # the gate's record (with rows_checked for a batch)
        if now["oid"] is None or any(now[fact] != seen.get(fact) for fact in now):
            raise PublishRefused(
                f"{name} is not the table the last marts gate validated (run {run_id}): it was rebuilt "
                "or changed since; run the marts gate again before publishing"
            )


def _sync_structure(conn: psycopg.Connection, source: sql.Composable, target: sql.Composable,
                    from_schema: str, to_schema: str, relation: str) -> bool:
    """Create the analytics table, or bring its columns in line with the mart's; whether its
    rows are still those of the last publish (false when created or a column was added or
    changed type)."""
    wanted = _columns(conn, from_schema, relation)
    if not wanted:
        raise PublishRefused(f"{from_schema}.{relation} does not exist: was the dbt build run?")
    current = _columns(conn, to_schema, relation)
    if not current:
        conn.execute(sql.SQL("create table {} as select * from {} with no data").format(target, source))
        return False
    dropped = [c for c in current if c not in wanted]
    if dropped:
        raise PublishRefused(
            f"{from_schema}.{relation} lacks column(s) {', '.join(dropped)} that BI reads in "
            f"{to_schema}.{relation}: renaming or removing a column needs a new model version "
            "(docs/sources.md, section 3)"
        )
    for column, type_ in wanted.items():
        if column not in current:
            log.info("publish: adding column %s.%s.%s %s", to_schema, relation, column, type_)
            conn.execute(sql.SQL("alter table {} add column {} {}").format(
                target, sql.Identifier(column), sql.SQL(type_)))
        elif current[column] != type_:
            log.warning("publish: %s.%s.%s changes type %s -> %s (rewrites the table)",
                        to_schema, relation, column, current[column], type_)
            conn.execute(sql.SQL("alter table {} alter column {} type {} using {}::{}").format(
                target, sql.Identifier(column), sql.SQL(type_), sql.Identifier(column), sql.SQL(type_)))
    return wanted == current


def _unpublished(schema: str, relation: str) -> sql.Identifier:
    return sql.Identifier(schema, f"{relation}__unpublished")


def _unpublished_key(conn: psycopg.Connection, schema: str, relation: str) -> str | None:
    """The key column of the mart's list of unpublished keys, if it has one (one column)."""
    columns = _columns(conn, schema, f"{relation}__unpublished")
    return next(iter(columns)) if len(columns) == 1 else None


def _replace_keys(conn: psycopg.Connection, from_schema: str, relation: str, target: sql.Composable,
                  columns: sql.Composable, key: str, source_rows: int | None) -> tuple[int, int] | None:
    """Replace the analytics rows of the mart's unpublished keys with the mart's: (rows in
    the table, keys replaced). None, with nothing written, when the list says "everything",
    or when the result would not have the mart's row count (the analytics table is not
    what the last publish left: a hand edit, another writer): then the caller copies it whole."""
    source = sql.Identifier(from_schema, relation)
    keys = _unpublished(from_schema, relation)
    listed, everything = conn.execute(sql.SQL("select count(*), count(*) filter (where {} is null) from {}").format(
        sql.Identifier(key), keys)).fetchone()
    if everything:
        return None
    if source_rows is None:
        source_rows = conn.execute(sql.SQL("select count(*) from {}").format(source)).fetchone()[0]
    # A few keys: one index lookup each (the planner, guessing from the list's size, would
    # read both tables whole); many: a hash join.
    in_keys = sql.SQL("{} = any(array(select {} from {}))" if listed * 20 < source_rows else
                      "{} in (select {} from {})").format(sql.Identifier(key), sql.Identifier(key), keys)
    with conn.transaction() as savepoint:
        conn.execute(sql.SQL("delete from {} where {}").format(target, in_keys))
        conn.execute(sql.SQL("insert into {} ({}) select {} from {} where {}").format(
            target, columns, columns, source, in_keys))
        rows = conn.execute(sql.SQL("select count(*) from {}").format(target)).fetchone()[0]
        if rows == source_rows:
            return rows, listed
        log.warning("publish: %s would have %d rows after replacing %d keys, the mart has %d: copying it whole",
                    target.as_string(conn), rows, listed, source_rows)
        raise psycopg.Rollback(savepoint)  # undoes the replacement, and ends the block
    return None


def _index_key(conn: psycopg.Connection, schema: str, relation: str, key: str) -> None:
    """An index on the analytics table's key column, so that the next publish finds the
    listed keys' rows through it rather than by reading the whole table (at a year, the
    delete of a day's 95,000 transitions among 7.4 million: 1.8 s, 0.2 s through it, warm).
    Built once, after the first (whole) copy."""
    conn.execute(sql.SQL("create index if not exists {} on {} ({})").format(
        sql.Identifier(f"{relation}__{key}"), sql.Identifier(schema, relation), sql.Identifier(key)))


def publish(
    warehouse_url: str,
    from_schema: str = BUILD_SCHEMA,
    to_schema: str = BI_SCHEMA,
    *,
    relations: tuple[str, ...] = MART_RELATIONS,
    run_id: str | None = None,
    require_validated: bool = True,
) -> Publication:
    """Copy every BI relation from the build schema into `analytics`, in one transaction."""
    if from_schema == to_schema:
        raise ValueError("from_schema and to_schema must differ")
    with connections.connect(warehouse_url, autocommit=True, application_name=APPLICATION) as conn:
        audit.ensure_schemas(conn)
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (PUBLISH_LOCK,))
            conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(to_schema)))
            conn.execute(audit.publications_ddl(to_schema))
            if require_validated:
                gate_run_id, validated = _last_passing_gate(conn)
                run_id = run_id or gate_run_id
            # Nobody rebuilds a mart while it is being checked and copied.
            for relation in relations:
                if conn.execute("select to_regclass(%s)", (f"{from_schema}.{relation}",)).fetchone()[0] is None:
                    raise PublishRefused(f"{from_schema}.{relation} does not exist: was the dbt build run?")
                conn.execute(sql.SQL("lock table {} in share mode").format(sql.Identifier(from_schema, relation)))
            if require_validated:
                _check_same_tables(conn, from_schema, relations, gate_run_id, validated)

            keyed = from_schema == BUILD_SCHEMA and to_schema == BI_SCHEMA
            counts: dict[str, int] = {}
            replaced_keys: dict[str, int] = {}
            for relation in relations:
                source = sql.Identifier(from_schema, relation)
                target = sql.Identifier(to_schema, relation)
                unchanged = _sync_structure(conn, source, target, from_schema, to_schema, relation)
                columns = sql.SQL(", ").join(map(sql.Identifier, _columns(conn, from_schema, relation)))
                key = _unpublished_key(conn, from_schema, relation) if keyed else None
                if key is not None and unchanged:
                    rows = validated[f"{from_schema}.{relation}"]["row_count"] if require_validated else None
                    replaced = _replace_keys(conn, from_schema, relation, target, columns, key, rows)
                    if replaced is not None:
                        counts[relation], replaced_keys[relation] = replaced
                if relation not in counts:
                    conn.execute(sql.SQL("delete from {}").format(target))
                    cur = conn.execute(sql.SQL("insert into {} ({}) select {} from {}").format(
                        target, columns, columns, source))
                    counts[relation] = cur.rowcount
                if key is not None:
                    conn.execute(sql.SQL("delete from {}").format(_unpublished(from_schema, relation)))
                    _index_key(conn, to_schema, relation, key)

            version, published_at = conn.execute(
                sql.SQL(
                    "insert into {} (version, run_id, published_at, relations) "
                    "select coalesce(max(version), 0) + 1, %s, now(), %s from {} "
                    "returning version, published_at"
                ).format(sql.Identifier(to_schema, "publications"), sql.Identifier(to_schema, "publications")),
                (run_id, Jsonb(counts)),
            ).fetchone()
        # Fresh statistics for BI queries (outside the swap: ANALYZE only reads). A table with
        # some keys replaced is left to autovacuum, which analyzes it once enough has changed.
        for relation in relations:
            if relation not in replaced_keys:
                conn.execute(sql.SQL("analyze {}").format(sql.Identifier(to_schema, relation)))
    log.info("published version %d to %s: %s", version, to_schema, ", ".join(
        f"{r} ({n} rows" + (f", {replaced_keys[r]} keys replaced)" if r in replaced_keys else ")")
        for r, n in counts.items()))
    return Publication(version=version, relations=counts, published_at=published_at,
                       replaced_keys=replaced_keys)
