"""Run a quality gate: the GX checkpoint of a stage (`raw` before dbt, `marts` after it)
against the warehouse, then decide, record and report.

- Each suite is ONE GX expectation (`expectation.ExpectSuiteRulesToPass`) running its rules
  as one SQL query in PostgreSQL (`compile.suite_query`); the query returns a row per
  failing rule, which the gate unpacks into one outcome per rule (a rule absent from the
  rows passed), with the rule's severity (a `severity_setting` read now). Nothing is
  pulled into pandas.
- The gate's connections carry the run's data interval end as the session setting
  `lw.data_interval_end` (and `timezone=UTC`, read-only transactions): checks compare with
  it, never with now().
- A failed rule of severity `critical`, a suite whose query could not run, or a missing
  relation is an error: the gate raises `QualityGateFailed` listing every one (suite, rule,
  column, observed, examples: a few offending rows, one LIMIT query per failed rule).
  Warnings are logged and recorded, and do not block.
- Every result goes to `audit.validation_results` (see `audit`). Data Docs
  (`<project>/gx/uncommitted/data_docs/local_site/index.html`) are built by a failing gate
  before it raises; a passing gate leaves them to `build_docs` (the DAG's publish), since
  rendering them costs more than the checks (`docs` changes that).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from lifecycle_warehouse import connections
from lifecycle_warehouse.quality import audit, compile, suites

log = logging.getLogger(__name__)

STAGES = suites.STAGES
Stage = Literal["raw", "marts"]
DOCS_INDEX = Path("uncommitted") / "data_docs" / "local_site" / "index.html"
EXAMPLE_ROWS = 5
# One gate at a time per process: the connection URL travels through an environment variable.
_PROCESS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ExpectationOutcome:
    """The verdict of one rule (or of a suite that could not run), in the words of a
    failure report."""

    suite: str
    expectation: str  # the rule's GX type, e.g. expect_column_values_to_be_unique
    severity: str  # critical | warning | info
    success: bool
    column: str | None = None
    description: str | None = None
    observed: Any = None  # GX's result object
    unexpected_count: int | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # the exception when the check could not run
    expectation_id: str | None = None

    @property
    def is_error(self) -> bool:
        """Blocks the gate: a failed critical expectation, or any check that could not run."""
        return not self.success and (self.severity == suites.ERROR or self.error is not None)

    @property
    def is_warning(self) -> bool:
        return not self.success and not self.is_error

    def observed_text(self) -> str:
        if self.error:
            return f"could not run: {self.error}"
        result = self.observed or {}
        parts = []
        if "observed_value" in result:
            value = result["observed_value"]
            if self.expectation == "unexpected_rows_expectation":
                parts.append(f"{value} offending row{'s' if value != 1 else ''}")
            else:
                parts.append(f"observed {value!r}")
        if result.get("unexpected_count") is not None:
            total = result.get("element_count")
            parts.append(f"{result['unexpected_count']} unexpected" + (f" of {total}" if total is not None else ""))
            sample = result.get("partial_unexpected_list")
            if sample:
                parts.append(f"e.g. {sample[:EXAMPLE_ROWS]!r}")
        if result.get("details", {}).get("mismatched"):
            parts.append(f"mismatched {result['details']['mismatched']!r}")
        if self.examples:
            parts.append("e.g. " + "; ".join(_format_row(row) for row in self.examples))
        return ", ".join(parts) or "failed"

    def describe(self) -> str:
        level = "ERROR" if self.is_error else "WARNING"
        what = self.description or self.expectation
        if self.description:
            what = f"{self.description} [{self.expectation}]"
        column = f" · column {self.column}" if self.column else ""
        return f"{level} {self.suite} · {what}{column} · {self.observed_text()}"


def _format_row(row: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in row.items()) + "}"


@dataclass(frozen=True)
class GateResult:
    stage: str
    run_id: str
    data_interval_end: datetime
    success: bool
    failures: list[ExpectationOutcome]
    warnings: list[ExpectationOutcome]
    evaluated: int
    docs_path: Path
    gate_run_id: str

    def report(self) -> str:
        verdict = "passed" if self.success else "FAILED"
        lines = [
            f"Quality gate '{self.stage}' {verdict} for run {self.run_id} "
            f"(data interval end {self.data_interval_end.isoformat()}): {self.evaluated} expectations, "
            f"{len(self.failures)} error(s), {len(self.warnings)} warning(s)."
        ]
        lines += [o.describe() for o in self.failures + self.warnings]
        lines.append(f"Data Docs: {self.docs_path.as_uri() if self.docs_path.is_absolute() else self.docs_path}")
        return "\n".join(lines)


class QualityGateFailed(RuntimeError):
    """An error-severity expectation failed: nothing may be built or published from this data."""

    def __init__(self, result: GateResult):
        super().__init__(result.report())
        self.result = result


def interval_end_instant(value: date | datetime) -> datetime:
    """A data interval end as an aware UTC instant (a date means its midnight, UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=timezone.utc)
    raise TypeError(f"data_interval_end must be a date or datetime, not {type(value).__name__}")


def sqlalchemy_url(warehouse_url: str, session: dict[str, str]) -> str:
    """The SQLAlchemy URL GX connects with: psycopg 3 driver, and session settings that
    carry the run's dates and delivery settings (suites.session_settings), UTC, read-only
    transactions and the project's timeouts (connections)."""
    parts = urlsplit(warehouse_url)
    if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise ValueError(
            f"WAREHOUSE_URL must be a postgresql:// URL (got scheme {parts.scheme!r}); "
            "key=value connection strings are not supported by the quality gate"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = " ".join(value for key, value in query if key == "options")
    ours = " ".join(f"-c {name}={_option_value(value)}" for name, value in session.items())
    ours += " -c timezone=UTC -c default_transaction_read_only=on"
    # nothing hangs: the project's timeouts and keepalives, unless the URL sets them
    if "statement_timeout" not in options:
        ours += f" {connections.statement_timeout_option()}"
    query = [(k, v) for k, v in query if k not in ("options", "application_name")]
    query += [("options", f"{options} {ours}".strip()), ("application_name", "lw-quality-gate")]
    given = {key for key, _ in query}
    query += [(key, str(value)) for key, value in connections.timeout_parameters().items() if key not in given]
    return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, urlencode(query), parts.fragment))


def _option_value(value: str) -> str:
    """A value for libpq's `options` (-c name=value): spaces and backslashes escaped."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """GX logs its configuration at INFO and lossy decimal conversions at WARNING; the gate
    reports what matters itself (every failure and warning, with the observed values)."""
    logger = logging.getLogger(logger_name)
    previous = logger.level
    if logger.getEffectiveLevel() < logging.ERROR:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextmanager
def _project_lock(gx_dir: Path) -> Iterator[None]:
    """One gate at a time on a GX project: its file stores are not safe for concurrent writers."""
    uncommitted = gx_dir / "uncommitted"
    uncommitted.mkdir(parents=True, exist_ok=True)
    with _PROCESS_LOCK, open(uncommitted / ".gate.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _checkpoint_relations(checkpoint) -> dict[str, Any]:
    """`schema.table` -> validation definition, for every validation of a checkpoint."""
    out = {}
    for vd in checkpoint.validation_definitions:
        asset = vd.data.data_asset
        out[f"{asset.schema_name}.{asset.table_name}"] = vd
    return out


def _severity(rule: dict[str, Any]) -> str:
    """A rule's severity: its setting's value when it has one (settings.gate_severity), read
    when the gate runs, else the severity written in the suite."""
    from lifecycle_warehouse import settings

    setting = (rule.get("meta") or {}).get("severity_setting")
    if setting:
        return {"error": suites.ERROR, "warning": suites.WARNING}[settings.gate_severity(setting)]
    severity = rule.get("severity") or suites.ERROR
    return getattr(severity, "value", severity)


def _exception(info) -> tuple[bool, str | None]:
    """Whether a check raised, and why. GX reports either one exception or one per metric."""
    if hasattr(info, "to_json_dict"):
        info = info.to_json_dict()
    info = info or {}
    reports = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for report in reports:
        if report.get("raised_exception") or report.get("exception_message"):
            message = (report.get("exception_message") or "exception").strip()
            return True, message.splitlines()[0][:500]
    return False, None


def _rule_column(rule: dict[str, Any]) -> str | None:
    kwargs = rule.get("kwargs") or {}
    return (kwargs.get("column") or (rule.get("meta") or {}).get("column")
            or (", ".join(kwargs["column_list"]) if "column_list" in kwargs else None))


# Rules whose result is a verdict on the relation, not a count of rows at fault.
_NO_COUNT = {"expect_table_row_count_to_be_between", "expect_table_columns_to_match_set"}


def _rule_outcome(suite_name: str, rule: dict[str, Any], row: dict[str, Any] | None,
                  rows_checked: int | None) -> ExpectationOutcome:
    """One rule's outcome from its row of the suite's query (None: the rule passed)."""
    kind = rule["type"]
    unexpected = None if row is None else row.get("unexpected_count")
    if kind == "unexpected_rows_expectation":
        observed: dict[str, Any] = {"observed_value": unexpected or 0}
    elif kind in _NO_COUNT:
        observed = {"element_count": rows_checked}
        if row is not None:
            observed["observed_value"] = row.get("observed")
    else:
        observed = {"unexpected_count": unexpected or 0, "element_count": rows_checked}
    return ExpectationOutcome(
        suite=suite_name, expectation=kind, severity=_severity(rule), success=row is None,
        column=_rule_column(rule), description=rule.get("description"), observed=observed,
        unexpected_count=(unexpected or 0) if kind not in _NO_COUNT else unexpected,
        expectation_id=rule.get("id"),
    )


def _outcomes(checkpoint_result) -> tuple[list[ExpectationOutcome], dict[str, int | None]]:
    """One outcome per rule of every suite (a rule absent from its query's rows passed), or
    one error for a suite whose query could not run; and the rows checked per suite."""
    outcomes: list[ExpectationOutcome] = []
    rows_checked: dict[str, int | None] = {}
    for suite_result in checkpoint_result.run_results.values():
        for r in suite_result.results:
            config = r.expectation_config
            raised, message = _exception(r.exception_info)
            result = r.result.to_json_dict() if hasattr(r.result, "to_json_dict") else dict(r.result or {})
            rules = (config.meta or {}).get("rules") if config.type == suites.SUITE_EXPECTATION else None
            if raised or rules is None:
                # the suite's query could not run (or an expectation of another type: a stale project)
                outcomes.append(ExpectationOutcome(
                    suite=suite_result.suite_name, expectation=config.type, severity=suites.ERROR,
                    success=bool(r.success) and not raised and rules is not None,
                    description=config.description if not raised else "the suite's query runs",
                    observed=result, error=message if raised else f"not a {suites.SUITE_EXPECTATION} expectation",
                    expectation_id=config.id))
                continue
            details = result.get("details") or {}
            failed = {row["rule"]: row for row in details.get("failed_rules") or []}
            rows_checked[suite_result.suite_name] = details.get("rows_checked")
            outcomes += [_rule_outcome(suite_result.suite_name, rule, failed.pop(index, None),
                                       details.get("rows_checked"))
                         for index, rule in enumerate(rules)]
            if failed:  # rows naming rules the suite does not have: the query and its rules disagree
                outcomes.append(ExpectationOutcome(
                    suite=suite_result.suite_name, expectation=config.type, severity=suites.ERROR, success=False,
                    description="the suite's query reports its own rules",
                    error=f"rows for unknown rules {sorted(failed)}", expectation_id=config.id))
    return outcomes, rows_checked


def _build_docs(context, gx_dir: Path, run_id: str) -> None:
    """Render the validation pages of a run (every stage's results stored under its run
    name), the pages of suites changed since theirs were rendered, and the index (which
    lists the latest DOCS_INDEX_LIMIT results: its cost grows with that limit)."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    # The run's results, found by their folders (validations/<suite>/<run name>/<time>/<batch>.json)
    # rather than by listing the whole store.
    store = gx_dir / "uncommitted" / "validations"
    results = [
        ValidationResultIdentifier.from_tuple((suite_dir.name, run_id, run_time.name, result.stem))
        for suite_dir in (sorted(store.iterdir()) if store.exists() else []) if (suite_dir / run_id).is_dir()
        for run_time in sorted((suite_dir / run_id).iterdir()) for result in sorted(run_time.glob("*.json"))
    ]
    site = gx_dir / "uncommitted" / "data_docs" / "local_site" / "expectations"
    stale = [name for name in sorted({key.expectation_suite_identifier.name for key in results})
             if not (site / f"{name}.html").exists()
             or (site / f"{name}.html").stat().st_mtime < (gx_dir / "expectations" / f"{name}.json").stat().st_mtime]
    context.build_data_docs(resource_identifiers=results + [ExpectationSuiteIdentifier(name=n) for n in stale])


def build_docs(run_id: str, project_root: Path | str | None = None) -> Path:
    """Build the Data Docs of a run's gates (both stages) and the index; returns the index.
    A passing gate leaves this to a later step (the warehouse DAG's publish): rendering
    costs more than the checks (docs/benchmark.md); a failing gate builds them itself."""
    gx_dir = Path(project_root or suites.default_project_root()) / "gx"
    with _project_lock(gx_dir), _quiet("great_expectations"):
        import great_expectations as gx

        from lifecycle_warehouse.quality import expectation

        expectation.register()
        context = gx.get_context(mode="file", project_root_dir=str(gx_dir.parent))
        _build_docs(context, gx_dir, run_id)
    return gx_dir / DOCS_INDEX


def _examples(warehouse_url: str, session: dict[str, str],
              wanted: list[tuple[ExpectationOutcome, str]]) -> dict[int, list[dict[str, Any]]]:
    """A few offending rows of each failed rule (`wanted`: outcome, its examples query),
    fetched on one connection with the same session settings as GX's; by index in `wanted`."""
    found: dict[int, list[dict[str, Any]]] = {}
    if not wanted:
        return found
    try:
        with connections.connect(warehouse_url, autocommit=True, options="-c default_transaction_read_only=on") as conn:
            for name, value in {**session, "timezone": "UTC"}.items():
                conn.execute("select set_config(%s, %s, false)", (name, value))
            for index, (outcome, query) in enumerate(wanted):
                try:
                    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
                        found[index] = list(cur.execute(query).fetchall())
                except psycopg.Error as error:  # examples are a courtesy; the verdict stands without them
                    log.warning("could not fetch examples for %s (%s): %s", outcome.suite, outcome.expectation, error)
    except psycopg.Error as error:
        log.warning("could not fetch examples: %s", error)
    return found


def run_gate(
    warehouse_url: str,
    stage: Stage,
    run_id: str,
    data_interval_end: date | datetime,
    *,
    data_interval_start: date | datetime | None = None,
    project_root: Path | str | None = None,
    docs: Literal["always", "on_failure", "never"] = "on_failure",
) -> GateResult:
    """Validate every relation of `stage` with its suite; raise `QualityGateFailed` when an
    error-severity rule fails. The run's dates are [data_interval_start (default: the day
    before the end), data_interval_end). `project_root` is the folder holding `gx/`
    (default: the repo's `expectations/`). `docs`: when the gate builds Data Docs (the
    run's pages and the index): `on_failure` (default: a failing gate's docs show the
    failure before it raises; a passing gate leaves them to `build_docs`, a later step),
    `always`, or `never`."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: expected one of {', '.join(STAGES)}")
    end = interval_end_instant(data_interval_end)
    start = interval_end_instant(data_interval_start) if data_interval_start else end - timedelta(days=1)
    session = suites.session_settings(start, end)
    gx_dir = Path(project_root or suites.default_project_root()) / "gx"
    if not (gx_dir / "great_expectations.yml").exists():
        raise FileNotFoundError(
            f"no Great Expectations project in {gx_dir} (great_expectations.yml missing): "
            "run `python -m lifecycle_warehouse.generate`"
        )
    started = datetime.now(timezone.utc)
    gate_run_id = str(uuid.uuid4())

    with connections.connect(warehouse_url, autocommit=True) as conn:
        audit.ensure_schemas(conn)

    facts: dict[str, dict[str, Any]] = {}
    try:
        outcomes, facts = _validate(warehouse_url, stage, run_id, session, gx_dir, started, docs)
    except Exception as error:
        # A gate that could not run is a failed gate: recorded, so that no publish follows it.
        crashed = ExpectationOutcome(suite=f"{stage}_gate", expectation="gate_run", severity=suites.ERROR,
                                     success=False, description="the gate runs",
                                     error=f"{type(error).__name__}: {error}"[:500])
        result = GateResult(stage=stage, run_id=run_id, data_interval_end=end, success=False, failures=[crashed],
                            warnings=[], evaluated=0, docs_path=gx_dir / DOCS_INDEX, gate_run_id=gate_run_id)
        _record(warehouse_url, result, [], facts, started)
        raise

    failures = [o for o in outcomes if o.is_error]
    warnings = [o for o in outcomes if o.is_warning]
    result = GateResult(
        stage=stage, run_id=run_id, data_interval_end=end, success=not failures, failures=failures,
        warnings=warnings, evaluated=len(outcomes), docs_path=gx_dir / DOCS_INDEX, gate_run_id=gate_run_id,
    )
    _record(warehouse_url, result, outcomes, facts, started)

    for o in failures:
        log.error(o.describe())
    for o in warnings:
        log.warning(o.describe())
    log.info("Data Docs: %s", result.docs_path)
    if failures:
        raise QualityGateFailed(result)
    log.info("quality gate '%s' passed: %d expectations, %d warning(s)", stage, len(outcomes), len(warnings))
    return result


def _validate(warehouse_url: str, stage: str, run_id: str, session: dict[str, str], gx_dir: Path,
              started: datetime, docs: str) -> tuple[list[ExpectationOutcome], dict[str, dict[str, Any]]]:
    """Run the stage's checkpoint; returns every rule's outcome and what was validated."""
    with (_project_lock(gx_dir), _environment(suites.CONNECTION_ENV, sqlalchemy_url(warehouse_url, session)),
          _quiet("great_expectations")):
        import great_expectations as gx

        from lifecycle_warehouse.quality import expectation

        expectation.register()  # before the context reads the suites: their expectation type
        context = gx.get_context(mode="file", project_root_dir=str(gx_dir.parent))
        try:
            return _run_checkpoint(context, warehouse_url, stage, run_id, session, started, docs)
        finally:
            _close_connections(context)


def _close_connections(context) -> None:
    """Dispose GX's connection pools: a worker process must not keep idle warehouse sessions."""
    for datasource in context.data_sources.all().values():
        execution_engine = getattr(datasource, "_execution_engine", None)
        if execution_engine is not None:
            execution_engine.close()
        engine = getattr(datasource, "_engine", None)
        if engine is not None:
            engine.dispose()


def _ensure_unpublished_list(conn) -> None:
    """The transitions' suite reads the mart's list of persons rewritten since the last publish
    (suites.TRANSITIONS_BATCH). A mart without one (made by hand, or built by a version before
    the lists) gets one saying "everything", as a dbt build makes a new list say
    (dbt_project/macros/unpublished_keys.sql)."""
    mart, listed = f"{suites.MARTS}.fct_lifecycle_transitions", suites.TRANSITIONS_UNPUBLISHED
    if conn.execute("select to_regclass(%s) is not null and to_regclass(%s) is null", (mart, listed)).fetchone()[0]:
        with conn.transaction():
            conn.execute(f"create table if not exists {listed} (customer_key text unique)")
            conn.execute(f"insert into {listed} (customer_key) values (null) on conflict do nothing")


def _run_checkpoint(context, warehouse_url: str, stage: str, run_id: str, session: dict[str, str],
                    started: datetime, docs: str) -> tuple[list[ExpectationOutcome], dict[str, dict[str, Any]]]:
    """Validate (one query per suite), build the Data Docs, and add offending rows to the
    failed rules."""
    from great_expectations.core.run_identifier import RunIdentifier

    checkpoint = context.checkpoints.get(suites.checkpoint_name(stage))
    by_relation = _checkpoint_relations(checkpoint)
    defined = {s.relation: s for s in suites.suites(stage)}
    with connections.connect(warehouse_url, autocommit=True) as conn:
        if stage == "marts":
            _ensure_unpublished_list(conn)
        # The whole relation's row count where a rule or publish reads it; else (a raw
        # table validated by delivery) its oid: counting it would read the whole history.
        counted = [rel for rel in by_relation
                   if rel not in defined or defined[rel].batch is None or defined[rel].batch.table_facts]
        facts = audit.relation_facts(conn, by_relation, counted=counted)

    # GX runs every suite; a missing relation is reported once, not as a failed query.
    checkpoint_result = checkpoint.run(run_id=RunIdentifier(run_name=run_id, run_time=started))
    missing = {by_relation[rel].suite.name: rel for rel, fact in facts.items() if fact["oid"] is None}
    outcomes = [
        ExpectationOutcome(suite=suite, expectation="relation_exists", severity=suites.ERROR, success=False,
                           description=f"{rel} exists", error=f"relation {rel} does not exist")
        for suite, rel in missing.items()
    ]
    found, rows_checked = _outcomes(checkpoint_result)
    outcomes += [o for o in found if o.suite not in missing]
    for rel, vd in by_relation.items():
        if rel in defined and defined[rel].batch is not None and vd.suite.name in rows_checked:
            facts[rel]["rows_checked"] = rows_checked[vd.suite.name]
    if docs == "always" or (docs == "on_failure" and any(o.is_error for o in outcomes)):
        _build_docs(context, Path(context.root_directory), run_id)

    # Offending rows of failed rules make a failure self-explaining: one query per failed
    # rule, LIMIT EXAMPLE_ROWS, over the same batch of rows.
    by_suite = {s.name: s for s in defined.values()}
    wanted = []
    for position, o in enumerate(outcomes):
        s = by_suite.get(o.suite)
        if o.success or o.error is not None or s is None or o.suite in missing:
            continue
        ids = [suites.Expectation.to_json(e, s.name)["id"] for e in s.expectations]
        if o.expectation_id in ids:  # suites.py defines the rule the GX project ran
            query = compile.examples_query(s, ids.index(o.expectation_id), EXAMPLE_ROWS)
            if query is not None:
                wanted.append((position, o, query))
    examples = _examples(warehouse_url, session, [(o, query) for _, o, query in wanted])
    for index, (position, o, _) in enumerate(wanted):
        if examples.get(index):
            outcomes[position] = replace(o, examples=examples[index])
    return outcomes, facts


def _record(warehouse_url: str, result: GateResult, outcomes: list[ExpectationOutcome],
            facts: dict[str, dict[str, Any]], started: datetime) -> None:
    finished = datetime.now(timezone.utc)
    run = {
        "gate_run_id": result.gate_run_id, "run_id": result.run_id, "stage": result.stage,
        "data_interval_end": result.data_interval_end, "success": result.success,
        "expectations": result.evaluated, "errors": len(result.failures), "warnings": len(result.warnings),
        "relations": facts, "docs_path": str(result.docs_path), "started_at": started, "finished_at": finished,
    }
    rows = [
        {
            "gate_run_id": result.gate_run_id, "run_id": result.run_id, "stage": result.stage, "suite": o.suite,
            "expectation_id": o.expectation_id, "expectation": o.expectation, "description": o.description,
            "column_name": o.column, "severity": o.severity, "success": o.success,
            "unexpected_count": o.unexpected_count, "observed": o.observed, "examples": o.examples or None,
            "error": o.error, "data_interval_end": result.data_interval_end, "checked_at": finished,
        }
        for o in outcomes
    ]
    with connections.connect(warehouse_url, autocommit=True) as conn:
        audit.record_gate_run(conn, run, rows)
