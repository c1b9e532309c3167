"""What the quality gate checks, as data, and the writer of the GX project in `expectations/gx/`.

The Great Expectations project (suites, validation definitions, checkpoints and
`great_expectations.yml`) is JSON/YAML under version control, generated from this module so
that the raw suites follow the source contract (`contract.py`) and the thresholds of
`dbt_project.yml`. Edit this module, then regenerate:

    python -m lifecycle_warehouse.generate          # rewrite expectations/gx/ (and the KPI registry's files)
    python -m lifecycle_warehouse.generate --check  # fail if the committed files are stale

A suite is a list of rules in GX's vocabulary (`Expectation`: a GX expectation type, its
kwargs, its severity), checked on the suite's `batch` of rows. The GX project holds ONE
expectation per suite (`expect_suite_rules_to_pass`, quality/expectation.py) whose query
checks every rule at once (quality/compile.py) and whose `meta.rules` lists them.

Severity, per rule: GX's vocabulary. `critical` is an error (the gate blocks), `warning` is
reported and recorded but does not block.

Checks that depend on the run (timestamps not in the future, row counts of the run's
latest delivery) read the run's data interval end from the session setting
`lw.data_interval_end`, which the gate sets on its connections; they never use now(), so a
rerun of the same interval gives the same verdict.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from lifecycle_warehouse import contract, settings

ERROR = "critical"
WARNING = "warning"

DATASOURCE = "warehouse"
# The environment variable holding the SQLAlchemy URL of the warehouse while a gate runs
# (set by the gate from WAREHOUSE_URL; never written to a file).
CONNECTION_ENV = "LW_GX_WAREHOUSE_URL"
BATCH_DEFINITION = "whole_table"
STAGES = ("raw", "marts")
BUILD_SCHEMA = "marts"
LIFECYCLE_STAGES = ("awareness", "engagement", "conversion", "retention", "loyalty", "churned", "reactivated",
                    "lapsed")
ATTRIBUTION_MODELS = ("first_touch", "last_touch", "linear", "position_based")

# The run's data interval end (exclusive) and its UTC date, as SQL. Scalar subqueries: a
# query evaluates each once (an InitPlan), not once per row (the setting's cast of every
# row's comparison took 1.7 s over the 7.4 million transitions of a year).
E = "(select current_setting('lw.data_interval_end')::timestamptz)"
E_DATE = f"(select ({E} at time zone 'UTC')::date)"
# The first business date of the run (its data interval start, or date_from).
S_DATE = "(select (current_setting('lw.data_interval_start')::timestamptz at time zone 'UTC')::date)"
BATCH = "{batch}"
# Settings severities (`error`, `warning`) as GX severities.
_SEVERITY = {"error": ERROR, "warning": WARNING}


def session_settings(start, end, environment=None) -> dict[str, str]:
    """The session settings a gate's connections carry (`lw.<name>`): the run's dates and
    the delivery settings its checks read (settings.py), so that a check never reads
    now() nor an environment the database cannot see. `start`, `end`: aware datetimes."""
    from lifecycle_warehouse import settings as current

    return {
        "lw.data_interval_start": start.isoformat(),
        "lw.data_interval_end": end.isoformat(),
        "lw.max_bad_records_pct": str(current.max_bad_records_pct()),
        "lw.daily_entities": ",".join(sorted(current.daily_entities())),
        "lw.missing_grace_days": str(current.missing_grace_days()),
        "lw.lookback_days": str(current.lookback_days()),
    }

# A delivery of the run's last business date with fewer than COLLAPSE_RATIO x the rows of
# the day before is a collapse, when the day before had at least COLLAPSE_MIN_ROWS rows
# (below that, daily volumes are too small for a ratio to mean anything).
COLLAPSE_RATIO = 0.1
COLLAPSE_MIN_ROWS = 20
# Entities whose daily volume is steady: a collapse is an error. Others (campaign sends,
# new campaigns, surveys, loyalty) are bursty by nature: a collapse is a warning.
STEADY_VOLUME_TABLES = ("web_events", "marketing_ad_spend", "crm_contacts")
# Ids that are unique within one CRM delivery (across deliveries a record may change).
CRM_DELIVERY_KEYS = {
    "crm_contacts": "contact_id",
    "crm_email_events": "event_id",
    "crm_campaigns": "campaign_id",
    "crm_survey_responses": "response_id",
    "crm_loyalty_events": "loyalty_event_id",
}
# The column that names a record in failure examples, for entities not in CRM_DELIVERY_KEYS.
RECORD_KEYS = {"web_events": "event_id"}
# Date columns that say when something happened (timestamptz columns always do).
EVENT_DATE_COLUMNS = {"marketing_ad_spend": ("date",)}
# Shop timestamps that may legitimately lie ahead (a cancellation scheduled for the end of
# the billing period): checked, but only as a warning.
SHOP_FUTURE_TOLERATED = {"canceled_at"}
# Marts are rebuilt from all of raw, so a rerun of an older interval legitimately holds
# later data: a mart date after the run's interval end is reported, not blocking. (Raw
# timestamps after it, on deliveries the run covers, are errors.)
AFTER_INTERVAL = WARNING
# A mart whose row count falls below this share of the last published version collapsed.
MART_COLLAPSE_RATIO = 0.5
# Validation results listed on the Data Docs index (about 4 daily runs of both gates: 24
# suites each). Rebuilding the index reads every result it lists: at 1,000 it took ~12 s,
# more than the gates (docs/benchmark.md); the full history is in audit.validation_results.
DOCS_INDEX_LIMIT = 100
# Money sums compared across relations may differ by rounding: one cent plus half a cent per row.
MONEY_TOLERANCE = "0.01"


def _dbt_vars() -> dict[str, Any]:
    path = settings.PROJECT_ROOT / "dbt_project" / "dbt_project.yml"
    return yaml.safe_load(path.read_text())["vars"]


def valid_order_statuses() -> tuple[str, ...]:
    """The order statuses that count as a valid order (dbt var `valid_order_statuses`)."""
    return tuple(_dbt_vars()["valid_order_statuses"])


def late_data_lookback_days() -> int:
    return int(_dbt_vars()["late_data_lookback_days"])


def _sql_list(values) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def _sql(text: str) -> str:
    return textwrap.dedent(text).strip()


@dataclass(frozen=True)
class Expectation:
    """One GX expectation: its type (snake_case, as in the JSON), kwargs and severity."""

    type: str
    kwargs: dict[str, Any]
    severity: str = ERROR
    description: str | None = None
    column: str | None = None  # the column a SQL check is about, for reports
    # An environment variable (settings.SEVERITY_SETTINGS) that sets the severity at run
    # time; `severity` is its default.
    severity_setting: str | None = None

    def to_json(self, suite: str) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if self.column and "column" not in self.kwargs:
            meta["column"] = self.column
        if self.severity_setting:
            meta["severity_setting"] = self.severity_setting
        body = {
            "id": str(uuid.uuid5(_NAMESPACE, f"{suite}|{self.type}|{json.dumps(self.kwargs, sort_keys=True)}")),
            "kwargs": self.kwargs,
            "meta": meta,
            "severity": self.severity,
            "type": self.type,
        }
        if self.description:
            body["description"] = self.description
        return body


@dataclass(frozen=True)
class Batch:
    """The rows of its relation a suite validates, when not all of them (`compile`: the CTE
    `lw_batch`). `where`: a condition on the relation's rows; `ctes`: CTEs it reads
    (`name as (...)`); `deliveries`: a query of the date folders (`dt`) the batch holds,
    readable by the rules as `{deliveries}`; `table_facts`: the gate records the whole
    relation's row count (a rule compares with it), else only its oid; `all_when`: a
    condition (on no row) under which the batch is every row instead."""

    description: str
    where: str
    ctes: tuple[str, ...] = ()
    deliveries: str | None = None
    table_facts: bool = False
    all_when: str | None = None


@dataclass(frozen=True)
class Suite:
    """The rules on one relation (`schema.table`), checked on its `batch` of rows (None: all
    of them). `key`: the columns that name a row in failure examples (default: those of the
    suite's first uniqueness rule)."""

    stage: str
    relation: str
    expectations: tuple[Expectation, ...] = field(default=())
    batch: Batch | None = None
    key: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """GX names files after the suite and cannot read a name with dots back."""
        return self.relation.replace(".", "_", 1)

    @property
    def schema(self) -> str:
        return self.relation.split(".")[0]

    @property
    def table(self) -> str:
        return self.relation.split(".")[1]

    @property
    def example_key(self) -> tuple[str, ...]:
        if self.key:
            return self.key
        for e in self.expectations:
            if e.type == "expect_column_values_to_be_unique":
                return (e.kwargs["column"],)
            if e.type == "expect_compound_columns_to_be_unique":
                return tuple(e.kwargs["column_list"])
        return ()


_NAMESPACE = uuid.UUID("6f1d2c3e-9b0a-4c55-8e2f-2a7d61c0b9a1")


# --- expectation builders ----------------------------------------------------------------


def columns_present(columns, severity=ERROR) -> Expectation:
    return Expectation("expect_table_columns_to_match_set",
                       {"column_set": list(columns), "exact_match": False}, severity)


def not_null(column, severity=ERROR) -> Expectation:
    return Expectation("expect_column_values_to_not_be_null", {"column": column}, severity)


def unique(column, severity=ERROR) -> Expectation:
    return Expectation("expect_column_values_to_be_unique", {"column": column}, severity)


def unique_together(columns, severity=ERROR) -> Expectation:
    return Expectation("expect_compound_columns_to_be_unique", {"column_list": list(columns)}, severity)


def in_set(column, values, severity=ERROR) -> Expectation:
    return Expectation("expect_column_values_to_be_in_set",
                       {"column": column, "value_set": list(values)}, severity)


def between(column, min_value=None, max_value=None, severity=ERROR) -> Expectation:
    kwargs: dict[str, Any] = {"column": column}
    if min_value is not None:
        kwargs["min_value"] = min_value
    if max_value is not None:
        kwargs["max_value"] = max_value
    return Expectation("expect_column_values_to_be_between", kwargs, severity)


def length_is(column, length, severity=ERROR) -> Expectation:
    return Expectation("expect_column_value_lengths_to_equal", {"column": column, "value": length}, severity)


def matches(column, regex, severity=ERROR) -> Expectation:
    return Expectation("expect_column_values_to_match_regex", {"column": column, "regex": regex}, severity)


def min_rows(count=1, severity=ERROR) -> Expectation:
    return Expectation("expect_table_row_count_to_be_between", {"min_value": count}, severity)


def no_rows(description: str, query: str, severity=ERROR, column: str | None = None,
            severity_setting: str | None = None) -> Expectation:
    """A SQL check: the query selects the offending rows; any row fails the expectation.

    `{batch}` is the suite's rows under validation (its batch), `{table}` the whole
    relation, `{deliveries}` the batch's date folders (see `compile`). The selected columns
    are what a failure report shows as examples: keys and the values at fault, never
    personal data.
    """
    query = _sql(query)
    if severity_setting:
        severity = _SEVERITY[settings.SEVERITY_SETTINGS[severity_setting]]
    return Expectation("unexpected_rows_expectation", {"unexpected_rows_query": query},
                       severity, description, column, severity_setting)


# --- raw suites, from the source contract ------------------------------------------------


# The start of the last successful build (raw.warehouse_builds; -infinity before the first):
# what was loaded after it is the run's, as warehouse_tasks.plan_build finds it
# (raw.planned_recompute_from).
LAST_BUILD = """lw_last_build as (
    select coalesce(max(started_at), '-infinity'::timestamptz) as started_at
    from raw.warehouse_builds where built_at is not null
)"""


def file_batch(entity: contract.FileEntity) -> Batch:
    """A raw file table's rows of the date folders (re)loaded, or whose quarantine was
    replayed, since the start of the last successful build: the run's deliveries, all of
    them on the first build. Older folders passed an earlier gate and are not rebuilt from
    (dbt's incremental models read the run's plan); so the gate follows the day, not the
    history. `_dt >= min(...)` lets PostgreSQL prune partitions (and use the `_dt` index)."""
    return Batch(
        description="rows of the date folders loaded since the last successful build (all on the first)",
        ctes=(LAST_BUILD,),
        deliveries=f"""
            select distinct dt from raw.load_audit
            where source = '{entity.source}' and entity = '{entity.entity}' and dt is not null
              and greatest(loaded_at, replayed_at) > (select started_at from lw_last_build)
            """,
        where="_dt >= (select min(dt) from lw_deliveries) and _dt in (select dt from lw_deliveries)",
    )


# Shop rows taken by the extractions since the start of the last successful build (all on
# the first): an upsert stamps a row it inserts or changes with its extraction's time.
SHOP_BATCH = Batch(
    description="rows extracted since the last successful build (all on the first)",
    ctes=(LAST_BUILD,),
    where="_extracted_at > (select started_at from lw_last_build)",
    table_facts=True,  # the row count rule compares the whole table with earlier gate runs
)


def _file_metadata_columns() -> list[str]:
    from lifecycle_warehouse.bootstrap import FILE_METADATA_COLUMNS

    return [name for name, _ in FILE_METADATA_COLUMNS]


def _shop_metadata_columns() -> list[str]:
    from lifecycle_warehouse.bootstrap import SHOP_METADATA_COLUMNS

    return [name for name, _ in SHOP_METADATA_COLUMNS]


def _column_expectations(columns) -> list[Expectation]:
    out: list[Expectation] = []
    for c in columns:
        if c.required:
            out.append(not_null(c.name))
        if c.accepted:
            out.append(in_set(c.name, c.accepted))
        if c.length:
            out.append(length_is(c.name, c.length))
        if c.min_value is not None or c.max_value is not None:
            out.append(between(c.name, c.min_value, c.max_value))
    return out


def raw_file_suite(entity: contract.FileEntity) -> Suite:
    table = entity.raw_table
    key = CRM_DELIVERY_KEYS.get(table)
    example_key = key or RECORD_KEYS.get(table)
    located = ", ".join(([example_key] if example_key else []) + ["_dt", "_file", "_line_number"])
    exps: list[Expectation] = [columns_present([c.name for c in entity.columns] + _file_metadata_columns())]
    exps += [not_null(c) for c in ("_batch_id", "_dt", "_file", "_line_number", "_loaded_at")]
    exps += _column_expectations(entity.columns)
    for check in entity.checks:
        exps.append(no_rows(
            f"contract rule: {check.rule}",
            f"select {located} from {BATCH} where not ({check.sql})",
        ))
    # Per delivery: every rule above and below reads only the batch (the run's deliveries),
    # but for the collapse, which compares with the day before ({table}).
    if key:
        exps.append(unique_together([key, "_dt"], severity=WARNING))

    # Timestamps: a row delivered for business date D happened on D at the latest, and
    # never after the run's data interval end. Only deliveries the run covers are checked.
    for c in entity.columns:
        if c.type == contract.TIMESTAMPTZ:
            exps.append(no_rows(
                f"{c.name} not after its delivery date nor the run's data interval end",
                f"""
                select {located}, {c.name} from {BATCH}
                where _dt < {E_DATE}
                  and {c.name} >= least((_dt + 1)::timestamp at time zone 'UTC', {E})
                """,
                column=c.name,
            ))
    for name in EVENT_DATE_COLUMNS.get(table, ()):
        exps.append(no_rows(
            f"{name} not after its delivery date",
            f"select {located}, {name} from {BATCH} where _dt < {E_DATE} and {name} > _dt",
            column=name,
        ))
    if table == "web_events":
        days = late_data_lookback_days()
        exps.append(no_rows(
            f"web events at most {days} days older than their delivery (later ones miss the dbt look-back)",
            f"""
            select event_id, _dt, _file, _line_number, occurred_at from {BATCH}
            where _dt < {E_DATE}
              and occurred_at < (_dt - {days})::timestamp at time zone 'UTC'
            """,
            severity=WARNING, column="occurred_at",
        ))

    # Every delivery's latest load (raw.load_audit) is in the table, complete and alone:
    # catches an emptied or truncated table, rows lost or loaded twice. (A delivery whose
    # every file was rejected replaced nothing: the latest load that loaded a file counts.)
    # Per delivery: the run's deliveries (the batch) against their audit rows.
    exps.append(no_rows(
        "rows per delivery equal the rows loaded by its latest load (raw.load_audit)",
        f"""
        with audit_rows as (
            select dt, batch_id, rows_loaded, loaded_at from raw.load_audit
            where source = '{entity.source}' and entity = '{entity.entity}' and dt < {E_DATE}
              and status = 'loaded' and dt in (select dt from {{deliveries}})
        ),
        latest as (
            select distinct on (dt) dt, batch_id from audit_rows
            order by dt, loaded_at desc, batch_id desc
        ),
        expected as (
            select l.dt, l.batch_id, sum(a.rows_loaded) as rows_expected
            from latest l join audit_rows a on a.dt = l.dt and a.batch_id = l.batch_id
            group by l.dt, l.batch_id
        ),
        present as (
            select r._dt as dt, r._batch_id as batch_id, count(*) as rows_present
            from {BATCH} r where r._dt < {E_DATE} group by r._dt, r._batch_id
        )
        select coalesce(e.dt, p.dt) as dt, e.batch_id as latest_batch_id,
               p.batch_id as present_batch_id,
               coalesce(e.rows_expected, 0) as rows_expected,
               coalesce(p.rows_present, 0) as rows_present
        from expected e full join present p on p.dt = e.dt and p.batch_id = e.batch_id
        where coalesce(e.rows_expected, 0) <> coalesce(p.rows_present, 0)
        """,
    ))

    # Beyond the batch: the day before need not be a delivery of the run ({table}: two
    # date folders of the whole table).
    exps.append(no_rows(
        f"rows of the run's last delivery not below {COLLAPSE_RATIO:.0%} of the day before "
        f"(when that day had at least {COLLAPSE_MIN_ROWS})",
        f"""
        select last_day, rows_last_day, rows_day_before from (
            select {E_DATE} - 1 as last_day,
                   count(*) filter (where _dt = {E_DATE} - 1) as rows_last_day,
                   count(*) filter (where _dt = {E_DATE} - 2) as rows_day_before
            from {{table}} where _dt between {E_DATE} - 2 and {E_DATE} - 1
        ) counts
        where rows_day_before >= {COLLAPSE_MIN_ROWS}
          and rows_last_day < {COLLAPSE_RATIO} * rows_day_before
        """,
        severity=ERROR if table in STEADY_VOLUME_TABLES else WARNING,
    ))
    return Suite("raw", f"raw.{table}", tuple(exps), batch=file_batch(entity),
                 key=tuple(([example_key] if example_key else []) + ["_dt", "_file", "_line_number"]))


def raw_shop_suite(shop: contract.ShopTable) -> Suite:
    table = shop.raw_table
    keys = ", ".join(shop.primary_key)
    exps: list[Expectation] = [columns_present([c.name for c in shop.columns] + _shop_metadata_columns())]
    exps += [not_null(c) for c in ("_batch_id", "_extracted_at")]
    exps += _column_expectations([c for c in shop.columns if c.name != "updated_at"])
    # A row without updated_at was taken by the first extraction; later changes to it
    # cannot be extracted incrementally (docs/sources.md).
    exps.append(no_rows(
        "updated_at is set (a row without it is extracted once, its later changes never)",
        f"select {keys} from {BATCH} where updated_at is null",
        column="updated_at", severity_setting="LW_NULL_UPDATED_AT_SEVERITY",
    ))
    # Per extraction, like every rule but the row count's: the rows of the run's extractions.
    # (Across the table, the primary key constraint keeps the key unique.)
    exps.append(unique(shop.primary_key[0]) if len(shop.primary_key) == 1 else unique_together(shop.primary_key))
    for c in shop.columns:
        if c.type == contract.NUMERIC:
            exps.append(between(c.name, min_value=0, severity=WARNING))
    # Rows the run's extraction could have taken (updated up to its interval end) carry no
    # timestamp after that end. Later updates are later runs' business: rerun-stable.
    for c in shop.columns:
        if c.type == contract.TIMESTAMPTZ and c.name != "updated_at":
            exps.append(no_rows(
                f"{c.name} not after the run's data interval end (rows updated by then)",
                f"select {keys}, updated_at, {c.name} from {BATCH} "
                f"where updated_at <= {E} and {c.name} > {E}",
                severity=WARNING if c.name in SHOP_FUTURE_TOLERATED else ERROR,
                column=c.name,
            ))
    # Shop rows are upserted, never deleted: the table never has fewer rows than an earlier
    # gate run saw (audit.gate_runs), e.g. after being emptied by mistake. Beyond the batch:
    # the whole table ({table}), whose row count the gate records (SHOP_BATCH.table_facts).
    exps.append(no_rows(
        "row count never below what an earlier gate run saw (rows are upserted, never deleted)",
        f"""
        select rows_now, rows_seen_before from (
            select (select count(*) from {{table}}) as rows_now,
                   (select max((relations -> 'raw.{table}' ->> 'row_count')::bigint)
                    from audit.gate_runs
                    where stage = 'raw' and data_interval_end <= {E}) as rows_seen_before
        ) counts
        where rows_now < rows_seen_before
        """,
    ))
    return Suite("raw", f"raw.{table}", tuple(exps), batch=SHOP_BATCH, key=tuple(shop.primary_key))


# The date folders loaded since the start of the last successful build (the deliveries
# this run builds from; as warehouse_tasks.plan_build finds them), each with its latest
# delivery: a re-delivery replaces a folder, and only the latest one says what is in raw.
_RUN_DELIVERIES = f"""
        last_build as (
            select coalesce(max(started_at), '-infinity') as started_at
            from raw.warehouse_builds where built_at is not null
        ),
        latest as (
            select distinct on (source, entity, dt) source, entity, dt, batch_id
            from raw.load_audit
            where source <> 'shop' and dt < {E_DATE}
            order by source, entity, dt, loaded_at desc
        ),
        run_files as (
            select a.* from {BATCH} a
            inner join latest l on l.source = a.source and l.entity = a.entity and l.dt = a.dt
                and l.batch_id = a.batch_id
            where greatest(a.loaded_at, a.replayed_at) > (select started_at from last_build)
        )"""


def raw_load_audit_suite() -> Suite:
    """The deliveries themselves (raw.load_audit): files rejected or mostly quarantined in
    the deliveries this run builds from, and daily deliveries that never came. Its batch is
    the whole table (one row per file loaded: small): the rules pick the run's deliveries
    themselves (_RUN_DELIVERIES), or need every date (a hole in the daily deliveries)."""
    exps = [
        no_rows(
            "no file rejected whole in the deliveries since the last build (LW_REJECTED_FILE_SEVERITY)",
            f"""
            with {_RUN_DELIVERIES}
            select r.source, r.entity, r.dt, r.file, r.error from run_files r
            where r.status = 'rejected'
            """,
            column="status", severity_setting="LW_REJECTED_FILE_SEVERITY",
        ),
        no_rows(
            "no file with more than LW_MAX_BAD_RECORDS_PCT % of its records quarantined in the "
            "deliveries since the last build (LW_BAD_RECORDS_SEVERITY): most records of a file "
            "breaking a rule means the source changed its format",
            f"""
            with {_RUN_DELIVERIES}
            select r.source, r.entity, r.dt, r.file, r.rows_read, r.rows_quarantined,
                   round(100.0 * r.rows_quarantined / r.rows_read, 1) as quarantined_pct
            from run_files r
            where r.status = 'loaded' and r.rows_read > 0
              and 100.0 * r.rows_quarantined / r.rows_read
                  > current_setting('lw.max_bad_records_pct')::numeric
            """,
            column="rows_quarantined", severity_setting="LW_BAD_RECORDS_SEVERITY",
        ),
        no_rows(
            "every date folder of a daily entity (LW_DAILY_ENTITIES) is delivered, from the run's "
            "first date (or its look-back) to its end minus LW_MISSING_GRACE_DAYS",
            f"""
            with daily as (
                select split_part(name, '/', 1) as source, split_part(name, '/', 2) as entity
                from unnest(string_to_array(current_setting('lw.daily_entities'), ',')) as name
            ),
            bounds as (
                select d.source, d.entity,
                       greatest(
                           coalesce(min(a.dt), {S_DATE}),
                           least({S_DATE}, {E_DATE} - current_setting('lw.missing_grace_days')::int
                                 - current_setting('lw.lookback_days')::int)
                       ) as first_due,
                       {E_DATE} - current_setting('lw.missing_grace_days')::int - 1 as last_due
                from daily d
                left join {BATCH} a on a.source = d.source and a.entity = d.entity
                group by d.source, d.entity
            ),
            due as (
                select b.source, b.entity, day::date as dt
                from bounds b
                cross join generate_series(b.first_due, b.last_due, interval '1 day') as day
            )
            select due.source, due.entity, due.dt as missing_date from due
            left join {BATCH} a on a.source = due.source and a.entity = due.entity and a.dt = due.dt
                and a.status = 'loaded'
            where a.dt is null
            order by 1, 2, 3
            """,
            column="dt",
        ),
    ]
    return Suite("raw", "raw.load_audit", tuple(exps))


def raw_suites() -> list[Suite]:
    return ([raw_file_suite(e) for e in contract.FILE_ENTITIES] + [raw_shop_suite(t) for t in contract.SHOP_TABLES]
            + [raw_load_audit_suite()])


# --- mart suites: the BI relations of docs/sources.md section 3 ---------------------------

MARTS = "marts"


def _valid(alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return f"{prefix}status in ({_sql_list(valid_order_statuses())})"


def _utc_date(expression: str) -> str:
    return f"(({expression}) at time zone 'UTC')::date"


def _collapse(table: str, rows: str = BATCH) -> list[Expectation]:
    """The mart's row count (of `rows`: its whole table when the suite has a batch) against
    the version BI currently reads (analytics.publications)."""
    query = f"""
        select rows_now, rows_published from (
            select (select count(*) from {rows}) as rows_now,
                   (select (relations ->> '{table}')::bigint from analytics.publications
                    order by version desc limit 1) as rows_published
        ) counts
        where rows_now < {{ratio}} * rows_published
        """
    return [
        no_rows(f"row count not below {MART_COLLAPSE_RATIO:.0%} of the published version",
                query.replace("{ratio}", str(MART_COLLAPSE_RATIO))),
        no_rows("row count not below the published version", query.replace("{ratio}", "1"), severity=WARNING),
    ]


def _rates(columns, severity=ERROR) -> list[Expectation]:
    return [between(c, 0, 1, severity) for c in columns]


def _non_negative(columns, severity=ERROR) -> list[Expectation]:
    return [between(c, min_value=0, severity=severity) for c in columns]


def _ratio(table_key: str, column: str, numerator: str, denominator: str, severity=ERROR) -> Expectation:
    """A ratio KPI is NULL (never 0, never an error) when its denominator is 0, and else equals
    numerator / denominator. (It may be NULL with a non-zero denominator when the numerator's
    source has no data, e.g. no ad spend reported for the day.)"""
    return no_rows(
        f"{column} = {numerator} / {denominator}, NULL when {denominator} is 0",
        f"""
        select {table_key}, {column}, {numerator}, {denominator} from {BATCH}
        where case when coalesce({denominator}, 0) = 0 then {column} is not null
                   else abs({column} - {numerator}::numeric / {denominator}) > 0.0001 * greatest(1, abs({column}))
              end
        """,
        severity=severity, column=column,
    )


def _month_start(column: str) -> Expectation:
    return no_rows(f"{column} is the first day of a month",
                   f"select {column} from {BATCH} where {column} <> date_trunc('month', {column})::date",
                   column=column)


MRR_MOVEMENTS = ("new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr")
MRR_MOVEMENT_TYPES = ("new", "expansion", "contraction", "churned", "unchanged")
# A complete month whose orders fall below this share of the complete month before collapsed.
MONTH_COLLAPSE_RATIO = 0.1


def _kpi_expectations(grain: str, key: str) -> list[Expectation]:
    """The KPI registry's promises on a KPI mart: every column present, each KPI in its
    range, and each ratio or difference of two of its columns equal to its formula."""
    from lifecycle_warehouse import kpis

    registry = kpis.load()
    columns = [k.name for k in registry.of_grain(grain)]
    exps = [columns_present((key, *columns))]
    for kpi in registry.of_grain(grain):
        if kpi.min is not None or kpi.max is not None:
            exps.append(between(kpi.name, kpi.min, kpi.max))
        if kpi.max_warning is not None:
            exps.append(between(kpi.name, max_value=kpi.max_warning, severity=WARNING))
        if (kpi.kind == "ratio" and not kpi.scale and not kpi.complement
                and kpi.numerator in columns and kpi.denominator in columns):
            exps.append(_ratio(key, kpi.name, kpi.numerator, kpi.denominator))
        if kpi.kind == "difference" and kpi.at == "end" and set(kpi.of) <= set(columns):
            minuend, subtrahend = kpi.of
            exps.append(no_rows(
                f"{kpi.name} = {minuend} - {subtrahend}",
                f"select {key}, {minuend}, {subtrahend}, {kpi.name} from {BATCH} "
                f"where abs(coalesce({kpi.name}, 0) - (coalesce({minuend}, 0) - coalesce({subtrahend}, 0))) "
                f"> {MONEY_TOLERANCE}",
                column=kpi.name))
    return exps


def additive_kpis() -> tuple[str, ...]:
    """KPIs of both grains whose month is the sum of its days (flows: sums and differences
    of contribution measures; web distinct counts are not additive)."""
    from lifecycle_warehouse import kpis

    registry = kpis.load()
    return tuple(k.name for k in registry.kpis
                 if set(k.grains) == {"day", "month"} and k.kind in ("sum", "difference")
                 and registry.family(k, "day") == "flow")


def kpi_daily_suite() -> Suite:
    exps = [min_rows(), not_null("date"), unique("date")]
    exps += _collapse("kpi_daily")
    exps += _kpi_expectations("day", "date")
    exps += [
        no_rows("no KPI day at or after the run's data interval end",
                f"select date from {BATCH} where date >= {E_DATE}", severity=AFTER_INTERVAL, column="date"),
        no_rows("a row for the run's last day (the as-of date: quiet days have rows too)",
                f"select max(date) as last_date from {BATCH} having max(date) < {E_DATE} - 1",
                column="date"),
        no_rows("one row per day: no gaps between the first and the last day",
                f"""
                select missing_date from (
                    select generate_series(min(date), max(date), interval '1 day')::date as missing_date
                    from {BATCH}
                ) days
                where missing_date not in (select date from {BATCH})
                """, severity=WARNING, column="date"),
        no_rows("orders and revenue per day equal the valid orders of fct_orders on that day",
                f"""
                with orders as (
                    select {_utc_date('ordered_at')} as date, count(*) as orders, sum(revenue) as revenue
                    from {MARTS}.fct_orders where {_valid()} group by 1
                )
                select coalesce(k.date, o.date) as date, k.orders as kpi_orders, o.orders as fct_orders,
                       k.revenue as kpi_revenue, o.revenue as fct_revenue
                from {BATCH} k full join orders o on o.date = k.date
                where coalesce(k.orders, 0) <> coalesce(o.orders, 0)
                   or abs(coalesce(k.revenue, 0) - coalesce(o.revenue, 0))
                      > {MONEY_TOLERANCE} + 0.005 * coalesce(o.orders, 0)
                """, column="revenue"),
        no_rows("new_customers per day equal the first valid orders of fct_orders on that day",
                f"""
                with firsts as (
                    select {_utc_date('ordered_at')} as date, count(*) as new_customers
                    from {MARTS}.fct_orders where is_first_order and {_valid()} group by 1
                )
                select coalesce(k.date, f.date) as date, k.new_customers as kpi_new_customers,
                       f.new_customers as fct_first_orders
                from {BATCH} k full join firsts f on f.date = k.date
                where coalesce(k.new_customers, 0) <> coalesce(f.new_customers, 0)
                """, column="new_customers"),
    ]
    return Suite("marts", f"{MARTS}.kpi_daily", tuple(exps))


def kpi_monthly_suite() -> Suite:
    exps = [min_rows(), not_null("month"), unique("month"), _month_start("month"), not_null("is_complete")]
    exps += _collapse("kpi_monthly")
    exps += _kpi_expectations("month", "month")
    exps += [
        no_rows("only the month of the as-of date may be incomplete (every earlier month is complete)",
                f"select month, is_complete from {BATCH} "
                f"where not is_complete and month < (select max(month) from {BATCH})",
                column="is_complete"),
        # An incomplete month is never compared with complete ones: its flows are partial.
        no_rows(f"orders of a complete month not below {MONTH_COLLAPSE_RATIO:.0%} of the complete month "
                "before (an incomplete month is not compared)",
                f"""
                select month, orders, orders_month_before from (
                    select month, orders, lag(orders) over (order by month) as orders_month_before
                    from {BATCH} where is_complete
                ) months
                where orders_month_before >= {COLLAPSE_MIN_ROWS}
                  and orders < {MONTH_COLLAPSE_RATIO} * orders_month_before
                """, severity=WARNING, column="orders"),
    ]
    movement_sums = ", ".join(f"sum({c}) as {c}" for c in MRR_MOVEMENTS)
    movement_differs = " or ".join(
        f"abs(coalesce(k.{c}, 0) - coalesce(m.{c}, 0)) > {MONEY_TOLERANCE}" for c in MRR_MOVEMENTS)
    exps.append(no_rows(
        "MRR movements of a month equal the sums of fct_mrr_movements (" + ", ".join(MRR_MOVEMENTS) + ")",
        f"""
        with movements as (
            select month, {movement_sums} from {MARTS}.fct_mrr_movements group by month
        )
        select k.month, k.new_mrr, m.new_mrr as movements_new_mrr, k.churned_mrr,
               m.churned_mrr as movements_churned_mrr
        from {BATCH} k left join movements m on m.month = k.month
        where {movement_differs}
        """, column="new_mrr"))
    exps.append(no_rows("no KPI month after the run's data interval end",
                        f"select month from {BATCH} where month > date_trunc('month', {E_DATE} - 1)::date",
                        severity=AFTER_INTERVAL, column="month"))
    additive = additive_kpis()
    sums = ",\n                   ".join(f"sum({c}) as {c}" for c in additive)
    differs = "\n                   or ".join(
        f"abs(coalesce(m.{c}, 0) - coalesce(d.{c}, 0)) > {MONEY_TOLERANCE}" for c in additive)
    exps.append(no_rows(
        "additive KPIs of a month equal the sum of its days in kpi_daily (" + ", ".join(additive) + ")",
        f"""
        with daily as (
            select date_trunc('month', date)::date as month,
                   {sums}
            from {MARTS}.kpi_daily group by 1
        )
        select coalesce(m.month, d.month) as month,
               m.orders as monthly_orders, d.orders as daily_orders,
               m.revenue as monthly_revenue, d.revenue as daily_revenue
        from {BATCH} m full join daily d on d.month = m.month
        where m.month is null or d.month is null
                   or {differs}
        """))
    return Suite("marts", f"{MARTS}.kpi_monthly", tuple(exps))


def dim_customers_suite() -> Suite:
    columns = ("customer_key", "contact_id", "shop_customer_id", "email_sha256", "country",
               "acquisition_channel", "first_seen_at", "first_order_at", "last_order_at", "orders_count",
               "net_revenue", "lifecycle_stage", "lifecycle_stage_since")
    exps = [
        columns_present(columns), min_rows(), *_collapse("dim_customers"),
        not_null("customer_key"), unique("customer_key"),
        unique("contact_id"), unique("shop_customer_id"),
        # A hash, never an address: catches an email leaking into the BI layer.
        matches("email_sha256", "^[0-9a-f]{64}$"),
        not_null("lifecycle_stage"), in_set("lifecycle_stage", LIFECYCLE_STAGES),
        not_null("lifecycle_stage_since"),
        between("orders_count", min_value=0),
        between("net_revenue", min_value=0, severity=WARNING),  # FX of refund day vs order day
        no_rows("first_order_at <= last_order_at, both set exactly when orders_count > 0",
                f"""
                select customer_key, orders_count, first_order_at, last_order_at from {BATCH}
                where (coalesce(orders_count, 0) > 0) <> (first_order_at is not null)
                   or (first_order_at is null) <> (last_order_at is null)
                   or first_order_at > last_order_at
                """, column="first_order_at"),
        no_rows("lifecycle_stage_since not after the run's data interval end",
                f"select customer_key, lifecycle_stage_since from {BATCH} where lifecycle_stage_since > {E}",
                severity=AFTER_INTERVAL, column="lifecycle_stage_since"),
        no_rows("stage agrees with valid orders in fct_orders: none for awareness/engagement/lapsed, "
                "exactly one for conversion, two or more for retention, at least one otherwise",
                f"""
                with orders as (
                    select customer_key, count(*) as valid_orders from {MARTS}.fct_orders
                    where {_valid()} group by customer_key
                )
                select c.customer_key, c.lifecycle_stage, coalesce(o.valid_orders, 0) as valid_orders
                from {BATCH} c left join orders o on o.customer_key = c.customer_key
                where case c.lifecycle_stage
                        when 'awareness' then coalesce(o.valid_orders, 0) <> 0
                        when 'engagement' then coalesce(o.valid_orders, 0) <> 0
                        when 'lapsed' then coalesce(o.valid_orders, 0) <> 0
                        when 'conversion' then coalesce(o.valid_orders, 0) <> 1
                        when 'retention' then coalesce(o.valid_orders, 0) < 2
                        else coalesce(o.valid_orders, 0) < 1
                      end
                """, column="lifecycle_stage"),
        no_rows("orders_count and net_revenue equal the customer's valid orders in fct_orders",
                f"""
                with orders as (
                    select customer_key, count(*) as valid_orders, sum(net_revenue) as net_revenue
                    from {MARTS}.fct_orders where {_valid()} group by customer_key
                )
                select c.customer_key, c.orders_count, o.valid_orders, c.net_revenue, o.net_revenue as fct_net_revenue
                from {BATCH} c left join orders o on o.customer_key = c.customer_key
                where coalesce(c.orders_count, 0) <> coalesce(o.valid_orders, 0)
                   or abs(coalesce(c.net_revenue, 0) - coalesce(o.net_revenue, 0))
                      > {MONEY_TOLERANCE} + 0.005 * coalesce(o.valid_orders, 0)
                """, severity=WARNING, column="orders_count"),
    ]
    return Suite("marts", f"{MARTS}.dim_customers", tuple(exps))


def fct_orders_suite() -> Suite:
    columns = ("order_id", "customer_key", "ordered_at", "status", "currency", "revenue",
               "refunded_amount", "net_revenue", "is_first_order")
    exps = [
        columns_present(columns), min_rows(), *_collapse("fct_orders"),
        not_null("order_id"), unique("order_id"),
        not_null("ordered_at"), not_null("is_first_order"),
        not_null("status"), in_set("status", contract.ORDER_STATUSES),
        length_is("currency", 3),
        *_non_negative(["revenue", "refunded_amount"]),
        no_rows("ordered_at not after the run's data interval end",
                f"select order_id, ordered_at from {BATCH} where ordered_at > {E}",
                severity=AFTER_INTERVAL, column="ordered_at"),
        no_rows("net_revenue = revenue - refunded_amount",
                f"select order_id, revenue, refunded_amount, net_revenue from {BATCH} "
                f"where abs(coalesce(net_revenue, 0) - (coalesce(revenue, 0) - coalesce(refunded_amount, 0))) "
                f"> {MONEY_TOLERANCE}", column="net_revenue"),
        no_rows("refunded_amount not above revenue",
                f"select order_id, revenue, refunded_amount from {BATCH} "
                f"where refunded_amount > revenue + {MONEY_TOLERANCE}",
                severity=WARNING, column="refunded_amount"),
        no_rows("every order's customer_key is in dim_customers (NULL for a guest order)",
                f"select o.order_id, o.customer_key from {BATCH} o "
                f"left join {MARTS}.dim_customers c on c.customer_key = o.customer_key "
                f"where o.customer_key is not null and c.customer_key is null",
                column="customer_key"),
        no_rows("is_first_order marks exactly the earliest valid order of each customer",
                f"""
                select order_id, customer_key, is_first_order, is_valid_order from (
                    select order_id, customer_key, is_first_order, {_valid()} as is_valid_order,
                           row_number() over (partition by customer_key, {_valid()}
                                              order by ordered_at, order_id) as valid_rank
                    from {BATCH}
                ) ranked
                where is_first_order <> (is_valid_order and customer_key is not null and valid_rank = 1)
                """, column="is_first_order"),
    ]
    return Suite("marts", f"{MARTS}.fct_orders", tuple(exps))


# The persons whose transitions were rewritten since the last publish, as the mart lists
# them for the publish (dbt_project/macros/unpublished_keys.sql); a NULL row: everything.
TRANSITIONS_UNPUBLISHED = f"{MARTS}.fct_lifecycle_transitions__unpublished"
TRANSITIONS_BATCH = Batch(
    description="transitions of the persons rewritten since the last publish, all after a full build",
    ctes=(f"lw_unpublished as (select customer_key from {TRANSITIONS_UNPUBLISHED})",),
    where="customer_key = any(array(select customer_key from lw_unpublished))",  # one index lookup each
    all_when="exists (select from lw_unpublished where customer_key is null)",
    table_facts=True,  # the row count rules compare the whole table with the published version
)


def fct_lifecycle_transitions_suite() -> Suite:
    """The rules on one person's history (the chain and the uniqueness rule sort the
    7.4 million transitions of a year by person: 5.4 s and 2.2 s warm) read the persons
    rewritten since the last publish; the others (unchanged since, in marts and in
    analytics alike) passed the gate that saw them written. The publish replaces only
    those persons' rows (publish.py), and a build that rewrites everyone lists everything.
    The rules that read dim_customers, rebuilt whole at every build, and the row counts
    read the whole table ({table})."""
    exps = [
        columns_present(("customer_key", "from_stage", "to_stage", "transitioned_at",
                         "next_transitioned_at", "is_current")),
        no_rows("the table has rows", "select 1 as no_rows where not exists (select from {table})"),
        *_collapse("fct_lifecycle_transitions", rows="{table}"),
        not_null("customer_key"), not_null("to_stage"), not_null("transitioned_at"),
        in_set("to_stage", LIFECYCLE_STAGES), in_set("from_stage", LIFECYCLE_STAGES),
        unique_together(["customer_key", "transitioned_at"]),
        no_rows("from_stage differs from to_stage",
                f"select customer_key, transitioned_at, from_stage, to_stage from {BATCH} where from_stage = to_stage",
                column="to_stage"),
        no_rows("transitioned_at not after the run's data interval end",
                f"select customer_key, transitioned_at from {BATCH} where transitioned_at > {E}",
                severity=AFTER_INTERVAL, column="transitioned_at"),
        no_rows("every transition's customer_key is in dim_customers",
                "select t.customer_key, t.transitioned_at from {table} t "
                f"left join {MARTS}.dim_customers c on c.customer_key = t.customer_key where c.customer_key is null",
                column="customer_key"),
        # One sort of the transitions by person and instant checks the chain and what marks
        # the latest transition (is_current, next_transitioned_at), so that the rule after
        # it can find each person's latest transition by is_current, without sorting again.
        no_rows("history is a chain: each from_stage is the previous transition's to_stage, "
                "next_transitioned_at is the next transition's instant, and is_current marks the latest",
                f"""
                select customer_key, transitioned_at, from_stage, previous_to_stage,
                       next_transitioned_at, following_transitioned_at, is_current from (
                    select customer_key, transitioned_at, from_stage, next_transitioned_at, is_current,
                           lag(to_stage) over person_history as previous_to_stage,
                           lead(transitioned_at) over person_history as following_transitioned_at
                    from {BATCH}
                    window person_history as (partition by customer_key order by transitioned_at)
                ) chained
                where (previous_to_stage is not null and from_stage is distinct from previous_to_stage)
                   or next_transitioned_at is distinct from following_transitioned_at
                   or is_current is distinct from (following_transitioned_at is null)
                """, column="from_stage"),
        no_rows("the latest transition (is_current) gives dim_customers' lifecycle_stage and lifecycle_stage_since",
                f"""
                with latest as (
                    select t.customer_key, t.to_stage, t.transitioned_at
                    from {{table}} t where t.is_current
                )
                select c.customer_key, c.lifecycle_stage, l.to_stage as latest_to_stage,
                       c.lifecycle_stage_since, l.transitioned_at as latest_transitioned_at
                from {MARTS}.dim_customers c left join latest l on l.customer_key = c.customer_key
                where l.customer_key is null
                   or c.lifecycle_stage is distinct from l.to_stage
                   or c.lifecycle_stage_since is distinct from l.transitioned_at
                """, column="to_stage"),
    ]
    return Suite("marts", f"{MARTS}.fct_lifecycle_transitions", tuple(exps), batch=TRANSITIONS_BATCH)


def lifecycle_funnel_suite() -> Suite:
    exps = [
        columns_present(("month", "stage", "customers", "entered", "exited", "conversion_to_next_rate")),
        min_rows(), *_collapse("lifecycle_funnel"),
        not_null("month"), not_null("stage"), unique_together(["month", "stage"]),
        in_set("stage", LIFECYCLE_STAGES), _month_start("month"),
        *_non_negative(["customers", "entered", "exited"]),
        *_rates(["conversion_to_next_rate"]),
        no_rows("no funnel month after the run's data interval end",
                f"select month, stage from {BATCH} where month > date_trunc('month', {E_DATE} - 1)::date",
                severity=AFTER_INTERVAL, column="month"),
        no_rows("stocks and flows add up: customers at the end of a month = customers at the end "
                "of the month before + entered - exited",
                f"""
                select month, stage, customers, previous_customers, entered, exited from (
                    select month, stage, customers, entered, exited,
                           lag(customers) over (partition by stage order by month) as previous_customers,
                           lag(month) over (partition by stage order by month) as previous_month
                    from {BATCH}
                ) flows
                where previous_month = (month - interval '1 month')::date
                  and customers <> previous_customers + entered - exited
                """, column="customers"),
        no_rows("entered and exited per month and stage equal the transitions into and out of the stage",
                f"""
                with moves as (
                    select date_trunc('month', transitioned_at at time zone 'UTC')::date as month,
                           stage, sum(entered) as entered, sum(exited) as exited
                    from (
                        select transitioned_at, to_stage as stage, 1 as entered, 0 as exited
                        from {MARTS}.fct_lifecycle_transitions
                        union all
                        select transitioned_at, from_stage, 0, 1
                        from {MARTS}.fct_lifecycle_transitions where from_stage is not null
                    ) t group by 1, 2
                )
                select coalesce(f.month, m.month) as month, coalesce(f.stage, m.stage) as stage,
                       f.entered, m.entered as transitions_in, f.exited, m.exited as transitions_out
                from {BATCH} f full join moves m on m.month = f.month and m.stage = f.stage
                where coalesce(f.entered, 0) <> coalesce(m.entered, 0)
                   or coalesce(f.exited, 0) <> coalesce(m.exited, 0)
                """, column="entered"),
        no_rows("customers per stage in the last month equal dim_customers' current stages",
                f"""
                with last_month as (
                    select f.stage, f.customers from {BATCH} f
                    where f.month = (select max(m.month) from {BATCH} m)
                ),
                current_stages as (
                    select lifecycle_stage as stage, count(*) as customers
                    from {MARTS}.dim_customers group by 1
                )
                select coalesce(l.stage, c.stage) as stage, l.customers as funnel_customers,
                       c.customers as dim_customers
                from last_month l full join current_stages c on c.stage = l.stage
                where coalesce(l.customers, 0) <> coalesce(c.customers, 0)
                """, severity=WARNING, column="customers"),
    ]
    return Suite("marts", f"{MARTS}.lifecycle_funnel", tuple(exps))


def cohort_retention_suite() -> Suite:
    exps = [
        columns_present(("cohort_month", "months_since_first_order", "cohort_size", "active_customers",
                         "retention_rate", "net_revenue", "revenue_per_customer_cumulative")),
        min_rows(), *_collapse("cohort_retention"),
        not_null("cohort_month"), not_null("months_since_first_order"), not_null("cohort_size"),
        not_null("net_revenue"),
        unique_together(["cohort_month", "months_since_first_order"]), _month_start("cohort_month"),
        between("months_since_first_order", min_value=0), between("cohort_size", min_value=1),
        between("active_customers", min_value=0), *_rates(["retention_rate"]),
        between("revenue_per_customer_cumulative", min_value=0, severity=WARNING),
        no_rows("retention at month 0 is 1: the whole cohort ordered in its first month",
                f"select cohort_month, cohort_size, active_customers, retention_rate from {BATCH} "
                f"where months_since_first_order = 0 "
                f"and (retention_rate is distinct from 1 or active_customers is distinct from cohort_size)",
                column="retention_rate"),
        no_rows("retention_rate = active_customers / cohort_size, active_customers <= cohort_size",
                f"select cohort_month, months_since_first_order, cohort_size, active_customers, retention_rate "
                f"from {BATCH} where active_customers > cohort_size "
                f"or abs(retention_rate - active_customers::numeric / cohort_size) > 0.0001",
                column="retention_rate"),
        no_rows("cohort_size is the same in every row of a cohort",
                f"select cohort_month, min(cohort_size) as min_size, max(cohort_size) as max_size "
                f"from {BATCH} group by cohort_month having min(cohort_size) <> max(cohort_size)",
                column="cohort_size"),
        no_rows("no cohort month after the run's data interval end",
                f"select cohort_month, months_since_first_order from {BATCH} "
                f"where (cohort_month + make_interval(months => months_since_first_order))::date "
                f"> date_trunc('month', {E_DATE} - 1)::date",
                severity=AFTER_INTERVAL, column="months_since_first_order"),
        no_rows("cohort sizes equal the customers whose first valid order in fct_orders is in that month",
                f"""
                with firsts as (
                    select date_trunc('month', min(ordered_at) at time zone 'UTC')::date as cohort_month,
                           customer_key
                    from {MARTS}.fct_orders where {_valid()} group by customer_key
                ),
                cohorts as (select cohort_month, count(*) as customers from firsts group by 1),
                sizes as (select distinct cohort_month, cohort_size from {BATCH} b)
                select coalesce(s.cohort_month, c.cohort_month) as cohort_month, s.cohort_size,
                       c.customers as first_order_customers
                from sizes s full join cohorts c on c.cohort_month = s.cohort_month
                where coalesce(s.cohort_size, 0) <> coalesce(c.customers, 0)
                """, column="cohort_size"),
        no_rows("revenue_per_customer_cumulative never decreases within a cohort",
                f"""
                select cohort_month, months_since_first_order, revenue_per_customer_cumulative, previous from (
                    select cohort_month, months_since_first_order, revenue_per_customer_cumulative,
                           lag(revenue_per_customer_cumulative) over (
                               partition by cohort_month order by months_since_first_order) as previous
                    from {BATCH}
                ) r
                where revenue_per_customer_cumulative < previous - {MONEY_TOLERANCE}
                """, severity=WARNING, column="revenue_per_customer_cumulative"),
    ]
    return Suite("marts", f"{MARTS}.cohort_retention", tuple(exps))


def channel_attribution_suite() -> Suite:
    key = "month, channel, attribution_model"
    exps = [
        columns_present(("month", "channel", "attribution_model", "conversions", "revenue", "spend", "cac", "roas")),
        min_rows(severity=WARNING), *_collapse("channel_attribution"),
        not_null("month"), not_null("channel"), not_null("attribution_model"),
        unique_together(["month", "channel", "attribution_model"]), _month_start("month"),
        in_set("attribution_model", ATTRIBUTION_MODELS),
        *_non_negative(["conversions", "revenue", "spend", "cac", "roas"]),
        _ratio(key, "cac", "spend", "conversions"),
        _ratio(key, "roas", "revenue", "spend"),
        no_rows("each model distributes the same conversions and revenue in a month",
                f"""
                with totals as (
                    select month, attribution_model, sum(conversions) as conversions, sum(revenue) as revenue
                    from {BATCH} group by 1, 2
                )
                select month, min(conversions) as min_conversions, max(conversions) as max_conversions,
                       min(revenue) as min_revenue, max(revenue) as max_revenue
                from totals group by month
                having max(conversions) - min(conversions) > 0.0001
                    or max(revenue) - min(revenue) > {MONEY_TOLERANCE}
                """, column="conversions"),
        no_rows("spend of a channel and month is the same in every model",
                f"select month, channel, min(spend) as min_spend, max(spend) as max_spend from {BATCH} "
                f"group by month, channel having max(spend) - min(spend) > {MONEY_TOLERANCE}",
                column="spend"),
        no_rows("conversions of a month not above new customers in kpi_monthly",
                f"""
                select a.month, sum(a.conversions) as conversions, max(k.new_customers) as new_customers
                from {BATCH} a left join {MARTS}.kpi_monthly k on k.month = a.month
                where a.attribution_model = 'last_touch'
                group by a.month
                having sum(a.conversions) > coalesce(max(k.new_customers), 0) + 0.0001
                """, severity=WARNING, column="conversions"),
    ]
    return Suite("marts", f"{MARTS}.channel_attribution", tuple(exps))


def fct_mrr_movements_suite() -> Suite:
    exps = [
        columns_present(("month", "customer_key", "mrr_start", "mrr_end", "movement_type") + MRR_MOVEMENTS),
        # A shop without subscriptions has no movements.
        min_rows(severity=WARNING), *_collapse("fct_mrr_movements"),
        not_null("month"), not_null("customer_key"), not_null("movement_type"),
        unique_together(["month", "customer_key"]), _month_start("month"),
        in_set("movement_type", MRR_MOVEMENT_TYPES),
        *_non_negative(("mrr_start", "mrr_end") + MRR_MOVEMENTS),
        no_rows("mrr_end - mrr_start = new + expansion - contraction - churned",
                f"select month, customer_key, mrr_start, mrr_end, movement_type from {BATCH} "
                f"where abs((mrr_end - mrr_start) - (new_mrr + expansion_mrr - contraction_mrr - churned_mrr)) "
                f"> {MONEY_TOLERANCE}", column="mrr_end"),
        no_rows("a person's mrr_start is the mrr_end of the month before (0 without a row)",
                f"""
                select month, customer_key, mrr_start, previous_mrr_end from (
                    select month, customer_key, mrr_start,
                           case when lag(month) over w = (month - interval '1 month')::date
                                then lag(mrr_end) over w else 0 end as previous_mrr_end
                    from {BATCH}
                    window w as (partition by customer_key order by month)
                ) chained
                where abs(mrr_start - previous_mrr_end) > {MONEY_TOLERANCE}
                """, column="mrr_start"),
    ]
    return Suite("marts", f"{MARTS}.fct_mrr_movements", tuple(exps))


CLV_MODELS = {"bg_nbd": ("r", "alpha", "a", "b"), "gamma_gamma": ("p", "q", "gamma")}
CLV_STATUSES = ("converged", "not_converged", "not_fittable", "no_customers")


def customer_clv_suite() -> Suite:
    """lifecycle_warehouse.clv writes it after dbt: one row per person with a valid order
    up to the run's last date (as_of)."""
    columns = ("customer_key", "historical_clv", "p_alive", "predicted_purchases_365d", "predicted_clv_365d",
               "rfm_segment", "r_score", "f_score", "m_score", "as_of")
    as_of_customers = (f"select customer_key, net_revenue, last_order_at from {MARTS}.dim_customers "
                       f"where orders_count > 0 and first_order_at < (select max(as_of) + 1 from {MARTS}.customer_clv)")
    exps = [
        columns_present(columns), *_collapse("customer_clv"),
        not_null("customer_key"), unique("customer_key"), not_null("as_of"),
        not_null("rfm_segment"), not_null("historical_clv"),
        *[between(score, min_value=1, max_value=5) for score in ("r_score", "f_score", "m_score")],
        between("p_alive", min_value=0, max_value=1),
        between("predicted_purchases_365d", min_value=0), between("predicted_clv_365d", min_value=0),
        no_rows("as_of is the run's last date",
                f"select distinct as_of from {BATCH} where as_of <> {E_DATE} - 1", column="as_of"),
        no_rows("every customer has predictions when the fit converged",
                f"select customer_key from {BATCH} where p_alive is null and exists "
                f"(select 1 from {MARTS}.clv_model_params where status = 'converged')", column="p_alive"),
        no_rows("customers reconcile with dim_customers: exactly the persons whose first valid order is "
                "on or before as_of",
                f"""
                with customers as ({as_of_customers})
                select coalesce(v.customer_key, c.customer_key) as customer_key,
                       v.customer_key is not null as in_customer_clv, c.customer_key is not null as in_dim_customers
                from {BATCH} v full join customers c on c.customer_key = v.customer_key
                where v.customer_key is null or c.customer_key is null
                """, column="customer_key"),
        no_rows("historical_clv equals dim_customers' net_revenue (customers without orders after as_of)",
                f"""
                select v.customer_key, v.historical_clv, c.net_revenue
                from {BATCH} v join {MARTS}.dim_customers c on c.customer_key = v.customer_key
                where c.last_order_at < v.as_of + 1 and abs(v.historical_clv - c.net_revenue) > {MONEY_TOLERANCE}
                """, column="historical_clv"),
    ]
    return Suite("marts", f"{MARTS}.customer_clv", tuple(exps))


def clv_model_params_suite() -> Suite:
    """One row per fitted parameter of each CLV model, with the fit's status and reason."""
    parameters = [p for names in CLV_MODELS.values() for p in names]
    exps = [
        columns_present(("as_of", "model", "parameter", "value", "log_likelihood", "n_customers", "time_unit",
                         "status", "message")),
        min_rows(len(parameters)), unique_together(["model", "parameter"]),
        in_set("model", list(CLV_MODELS)), in_set("parameter", parameters), in_set("status", CLV_STATUSES),
        in_set("time_unit", ["weeks"]),
        no_rows("the CLV models' fit converged (LW_CLV_FIT_SEVERITY)",
                f"select distinct model, status, message from {BATCH} where status in ('not_converged', 'not_fittable')",
                column="status", severity_setting="LW_CLV_FIT_SEVERITY"),
        no_rows("parameters and log-likelihood of a converged fit are positive / finite",
                f"select model, parameter, value, log_likelihood from {BATCH} where status = 'converged' "
                f"and (value is null or not (value > 0 and value < 'Infinity'::float8) "
                f"or log_likelihood is null or not (log_likelihood > '-Infinity'::float8 "
                f"and log_likelihood < 'Infinity'::float8))", column="value"),
        no_rows("one as_of, the same as customer_clv's",
                f"select distinct p.as_of, c.as_of as customer_clv_as_of from {BATCH} p "
                f"full join (select distinct as_of from {MARTS}.customer_clv) c on c.as_of = p.as_of "
                f"where p.as_of is null or c.as_of is null", column="as_of"),
        no_rows("BG/NBD's n_customers equals the customers of customer_clv",
                f"select distinct n_customers, (select count(*) from {MARTS}.customer_clv) as customer_clv_rows "
                f"from {BATCH} where model = 'bg_nbd' and status = 'converged' "
                f"and n_customers <> (select count(*) from {MARTS}.customer_clv)", column="n_customers"),
    ]
    return Suite("marts", f"{MARTS}.clv_model_params", tuple(exps))


def mart_suites() -> list[Suite]:
    return [
        dim_customers_suite(), fct_orders_suite(), fct_lifecycle_transitions_suite(), kpi_daily_suite(),
        kpi_monthly_suite(), lifecycle_funnel_suite(), cohort_retention_suite(), channel_attribution_suite(),
        fct_mrr_movements_suite(), customer_clv_suite(), clv_model_params_suite(),
    ]


# The BI relations: what the marts gate validates and `publish` copies into `analytics`.
MART_RELATIONS: tuple[str, ...] = (
    "dim_customers", "fct_orders", "fct_lifecycle_transitions", "kpi_daily", "kpi_monthly",
    "lifecycle_funnel", "cohort_retention", "channel_attribution", "fct_mrr_movements", "customer_clv",
    "clv_model_params",
)


def suites(stage: str | None = None) -> list[Suite]:
    every = raw_suites() + mart_suites()
    return [s for s in every if stage is None or s.stage == stage]


# --- the GX project on disk --------------------------------------------------------------


def default_project_root() -> Path:
    """The folder holding the GX project (`<root>/gx/`)."""
    return settings.PROJECT_ROOT / "expectations"


def checkpoint_name(stage: str) -> str:
    return f"{stage}_gate"


def _id(kind: str, name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}|{name}"))


def _great_expectations_yml(all_suites: list[Suite]) -> str:
    assets = {}
    for s in all_suites:
        assets[s.relation] = {
            "type": "table",
            "id": _id("asset", s.relation),
            "batch_metadata": {},
            "batch_definitions": {BATCH_DEFINITION: {"id": _id("batch_definition", s.relation), "partitioner": None}},
            "table_name": s.table,
            "schema_name": s.schema,
        }
    config = {
        "config_version": 4.0,
        "config_variables_file_path": "uncommitted/config_variables.yml",
        "plugins_directory": "plugins/",
        "stores": {
            "expectations_store": {
                "class_name": "ExpectationsStore",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "suppress_store_backend_id": True,
                                  "base_directory": "expectations/"},
            },
            "validation_results_store": {
                "class_name": "ValidationResultsStore",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": "uncommitted/validations/"},
            },
            "checkpoint_store": {
                "class_name": "CheckpointStore",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "suppress_store_backend_id": True,
                                  "base_directory": "checkpoints/"},
            },
            "validation_definition_store": {
                "class_name": "ValidationDefinitionStore",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "suppress_store_backend_id": True,
                                  "base_directory": "validation_definitions/"},
            },
        },
        "expectations_store_name": "expectations_store",
        "validation_results_store_name": "validation_results_store",
        "checkpoint_store_name": "checkpoint_store",
        "data_docs_sites": {
            "local_site": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": "uncommitted/data_docs/local_site/"},
                # The index lists the latest results only, so that it stays quick to rebuild.
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                                       "validation_results_limit": DOCS_INDEX_LIMIT},
            }
        },
        "analytics_enabled": False,
        "progress_bars": {"globally": False, "metric_calculations": False},
        "data_context_id": _id("data_context", "lifecycle_warehouse"),
        "fluent_datasources": {
            DATASOURCE: {
                "type": "postgres",
                "id": _id("datasource", DATASOURCE),
                "assets": assets,
                # Resolved from the environment when a gate runs; no URL is ever stored here.
                "connection_string": "${" + CONNECTION_ENV + "}",
            }
        },
    }
    header = (
        "# Great Expectations 1.x project of the quality gate. GENERATED by\n"
        "# `python -m lifecycle_warehouse.generate` from plugins/lifecycle_warehouse/quality/suites.py:\n"
        "# edit that module, not this file. The connection string comes from the environment\n"
        f"# (${{{CONNECTION_ENV}}}, set by the gate from WAREHOUSE_URL); uncommitted/ is ignored by git.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


# The GX expectation type that runs a suite's rules as one query (quality/expectation.py).
SUITE_EXPECTATION = "expect_suite_rules_to_pass"


def suite_expectation(s: Suite) -> dict[str, Any]:
    """The one GX expectation of a suite: its rules compiled into one query (`compile`),
    every rule listed in `meta.rules` (as a stock GX expectation would be written: type,
    kwargs, severity) and, for Data Docs, in `notes`."""
    from lifecycle_warehouse.quality import compile

    rules = [e.to_json(s.name) for e in s.expectations]
    ids = [r["id"] for r in rules]
    if len(ids) != len(set(ids)):
        raise ValueError(f"suite {s.name} holds the same expectation twice")
    blocking = any(e.severity == ERROR or e.severity_setting for e in s.expectations)
    rows = s.batch.description if s.batch else "every row"
    notes = [f"{len(rules)} rules on `{s.relation}` ({rows}), checked by one SQL query; "
             "the query returns a row per failing rule (its index, type, column and unexpected count)."]
    for index, (e, rule) in enumerate(zip(s.expectations, rules)):
        what = e.description or _rule_text(e)
        severity = f"{e.severity}, or as set by {e.severity_setting}" if e.severity_setting else e.severity
        column = e.kwargs.get("column") or e.column
        notes.append(f"rule {index}: {what}" + (f" · column `{column}`" if column else "")
                     + f" · `{e.type}` · {severity}")
    return {
        "description": f"{len(rules)} rules on {s.relation} ({rows}): see the notes",
        "id": _id("suite_expectation", s.name),
        "kwargs": {"unexpected_rows_query": compile.suite_query(s, for_gx=True)},
        "meta": {"relation": s.relation, "batch": rows, "rules": rules},
        "notes": notes,
        "severity": ERROR if blocking else WARNING,
        "type": SUITE_EXPECTATION,
    }


def _bounds_text(kwargs: dict[str, Any]) -> str:
    """`>= min and <= max` of a between rule's kwargs (either bound may be absent)."""
    return " and ".join(f"{op} {kwargs[name]}" for name, op in (("min_value", ">="), ("max_value", "<="))
                        if kwargs.get(name) is not None)


def _rule_text(e: Expectation) -> str:
    """A rule without a description, in words (for notes)."""
    k = e.kwargs
    if e.type == "expect_table_columns_to_match_set":
        return f"columns {', '.join(k['column_set'])} present" + (" (and no other)" if k.get("exact_match") else "")
    if e.type == "expect_table_row_count_to_be_between":
        return "row count " + _bounds_text(k)
    if e.type == "expect_compound_columns_to_be_unique":
        return f"({', '.join(k['column_list'])}) unique together"
    if e.type == "expect_column_values_to_be_in_set":
        return f"values in {{{', '.join(map(str, k['value_set']))}}}"
    if e.type == "expect_column_values_to_be_between":
        return "values " + _bounds_text(k)
    if e.type == "expect_column_value_lengths_to_equal":
        return f"values of length {k['value']}"
    if e.type == "expect_column_values_to_match_regex":
        return f"values match `{k['regex']}`"
    return {"expect_column_values_to_not_be_null": "never null",
            "expect_column_values_to_be_unique": "values unique"}.get(e.type, e.type)


def project_files() -> dict[str, str]:
    """Every generated file of the GX project, by path relative to `<root>/gx/`."""
    all_suites = suites()
    gx_version = version("great_expectations")
    files: dict[str, str] = {"great_expectations.yml": _great_expectations_yml(all_suites),
                             ".gitignore": "uncommitted/\n"}
    for s in all_suites:
        suite_json = {
            "expectations": [suite_expectation(s)],
            "id": _id("suite", s.name),
            "meta": {"great_expectations_version": gx_version, "stage": s.stage, "relation": s.relation},
            "name": s.name,
            "notes": None,
        }
        files[f"expectations/{s.name}.json"] = json.dumps(suite_json, indent=2) + "\n"
        vd = {
            "data": {
                "asset": {"id": _id("asset", s.relation), "name": s.relation},
                "batch_definition": {"id": _id("batch_definition", s.relation), "name": BATCH_DEFINITION},
                "datasource": {"id": _id("datasource", DATASOURCE), "name": DATASOURCE},
            },
            "id": _id("validation_definition", s.name),
            "name": s.name,
            "suite": {"id": _id("suite", s.name), "name": s.name},
        }
        files[f"validation_definitions/{s.name}.json"] = json.dumps(vd, indent=2) + "\n"
    for stage in STAGES:
        checkpoint = {
            # Data Docs are built once per gate run by the gate (GX's UpdateDataDocsAction
            # would rebuild the site once per validation definition).
            "actions": [],
            "id": _id("checkpoint", stage),
            "name": checkpoint_name(stage),
            "result_format": "SUMMARY",
            "validation_definitions": [
                {"id": _id("validation_definition", s.name), "name": s.name} for s in all_suites if s.stage == stage
            ],
        }
        files[f"checkpoints/{checkpoint_name(stage)}.json"] = json.dumps(checkpoint, indent=2) + "\n"
    return files


_GENERATED_DIRS = ("expectations", "validation_definitions", "checkpoints")


def stale_files(root: Path | None = None) -> list[str]:
    """Generated files missing, different or left over in `<root>/gx/` (empty: up to date)."""
    gx_dir = (root or default_project_root()) / "gx"
    wanted = project_files()
    stale = [path for path, text in wanted.items()
             if not (gx_dir / path).exists() or (gx_dir / path).read_text() != text]
    for folder in _GENERATED_DIRS:
        for existing in sorted((gx_dir / folder).glob("*.json")) if (gx_dir / folder).exists() else []:
            relative = f"{folder}/{existing.name}"
            if relative not in wanted:
                stale.append(relative)
    return stale


def write_project(root: Path | None = None) -> list[str]:
    """(Re)write the GX project from this module; returns the paths that changed."""
    gx_dir = (root or default_project_root()) / "gx"
    changed = stale_files(root)
    wanted = project_files()
    for relative in changed:
        path = gx_dir / relative
        if relative in wanted:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted[relative])
        else:
            path.unlink()
    return changed
