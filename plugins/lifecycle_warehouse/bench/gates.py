"""Benchmark part "quality gates": the GX gate against the same checks as hand-written SQL.

Target (issue 21): a quality gate takes at most 1.5x the time of the same checks written by
hand as SQL, one query per suite, on the same tables; GX's overhead is reported apart from
the checks themselves. Nothing here asserts speed: it measures and returns figures.

The gate runs each suite's rules as ONE query inside a GX checkpoint (one expectation of
type `expect_suite_rules_to_pass` per suite, `quality/compile.py`); the hand-written SQL is
that very query with the relation named, run on a plain connection. So the comparison
measures what GX and the gate add around the same checks.

What is measured, per stage (`raw`, `marts`), fastest of a few repeats (noise on a shared
machine only adds time):

- `gx_s`: wall seconds of `quality.gate.run_gate`, the real gate: GX context, checkpoint,
  validation, and the gate's own bookkeeping (audit rows, relation facts, examples of
  failed rules). A passing gate builds no Data Docs (a failing one does): the docs step
  that follows in the DAG (`gate.build_docs`) is timed apart (`docs_step_s`).
- `sql_s`: wall seconds of `run_sql_checks`: one connection with the gate's session
  settings, and one query per suite (`suite_sql`) returning a row per failing rule.
- The split of `gx_s` (exclusive seconds, so the parts add up to `gx_s`):
  `gx_queries_s`, the SQL GX sends, timed around each cursor execution by SQLAlchemy
  events on every engine (with psycopg 3 a cursor execution returns once the result is on
  the client, so this is PostgreSQL's time plus the round trip, not parsing of the rows);
  `gx_overhead_s` = the rest, itself split into getting the context, loading the
  checkpoint, building Data Docs (a failing gate only), the gate's bookkeeping, and
  "python": GX's validation machinery (metric graph, result objects, the result store).

The verdicts are compared too, per rule: the gate's (unpacked from GX's result) against
the SQL's. They must agree: a disagreement means the gate reads its query's rows wrongly.

Importing Great Expectations (seconds, once per process: once per gate task in Airflow) is
reported on its own (`gx_import_s`), outside the figures.

Both check the same rows: GX's batch is the whole table and `{batch}` in the query is
that table; the query itself selects the rows under validation (a raw table's rows of the
run's deliveries: `suites.Batch`). As in a daily run, where the raw gate runs before the
day's build, the builds since the last load are set aside while the gates run
(`_before_the_last_build`). The session carries the same settings
(`lw.data_interval_end`, ...) through the same connection options as the gate's
(`gate.sqlalchemy_url`).

    suite_sql(suite)           the one query of a suite: a row per failing rule
    run_sql_checks(url, stage, data_interval_end)   run them, timed, with the gate's session
    run_gates(url, data_interval_end)               both stages: GX vs SQL, split, verdicts
    markdown(results)          the "Quality gates" section of the benchmark's results.md
"""

from __future__ import annotations

import functools
import logging
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

from lifecycle_warehouse.quality import audit, compile, gate, suites

TARGET_RATIO = 1.5
# The parts of a gate run's wall time, in the order reports list them.
PHASES = ("queries", "context", "checkpoint", "docs", "bookkeeping", "python")
PHASE_LABELS = {
    "queries": "GX's SQL queries",
    "context": "getting the GX context",
    "checkpoint": "loading the checkpoint",
    "docs": "building Data Docs",
    "bookkeeping": "the gate's audit rows and relation facts",
    "python": "GX's validation machinery in Python",
}


# --- one SQL query per suite ---------------------------------------------------------------

SUPPORTED = compile.SUPPORTED


def suite_sql(suite: suites.Suite) -> str:
    """The suite's one query, the relation named: the very query the gate's GX expectation
    runs (`compile.suite_query`), which returns a row per failing rule (and the rows checked)."""
    return compile.suite_query(suite)


def expectation_id(suite: suites.Suite, e: suites.Expectation) -> str:
    """The id of a rule (the generated JSON's `meta.rules`), by which the gate reports it."""
    return e.to_json(suite.name)["id"]


def describe(e: suites.Expectation) -> str:
    """A short name for a rule in a report."""
    what = e.description or e.kwargs.get("column") or ", ".join(e.kwargs.get("column_list", ())) or ""
    return f"{e.type}({what})" if what else e.type


# --- running the SQL checks ----------------------------------------------------------------


def session(data_interval_end: date | datetime, data_interval_start: date | datetime | None = None) -> dict[str, str]:
    """The gate's session settings for a run, computed as `run_gate` computes them."""
    end = gate.interval_end_instant(data_interval_end)
    start = gate.interval_end_instant(data_interval_start) if data_interval_start else end - timedelta(days=1)
    return suites.session_settings(start, end)


def connect(warehouse_url: str, settings: dict[str, str]) -> psycopg.Connection:
    """A connection like the gate's: the very connection parameters GX gets (session
    settings, UTC, read-only transactions), under our own application name."""
    # Decoded from the SQLAlchemy URL's query string (form-encoded: libpq would read its `+`
    # literally) and passed as keywords.
    parts = urlsplit(gate.sqlalchemy_url(warehouse_url, settings))
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    params["application_name"] = "lw-bench-sql-checks"
    return psycopg.connect(urlunsplit(("postgresql", parts.netloc, parts.path, "", "")), autocommit=True, **params)


def run_sql_checks(warehouse_url: str, stage: str, data_interval_end: date | datetime,
                   data_interval_start: date | datetime | None = None, *,
                   suite_list: Sequence[suites.Suite] | None = None) -> dict[str, Any]:
    """Run every suite of `stage` (or `suite_list`) as one query each. Returns the wall
    seconds (connecting included, as the gate's are) and, per suite, its query's seconds,
    the rows checked, the error if the query failed (then every rule of the suite fails, as
    in the gate) and the verdicts: rule id -> success."""
    chosen = list(suite_list) if suite_list is not None else suites.suites(stage)
    queries = [(s, suite_sql(s)) for s in chosen]  # rendered before the clock starts
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with connect(warehouse_url, session(data_interval_end, data_interval_start)) as conn:
        for s, query in queries:
            results[s.name] = _run_suite(conn, s, query)
    return {"stage": stage, "seconds": time.perf_counter() - started, "suites": results}


def _query(conn: psycopg.Connection, query: str) -> tuple[list[dict[str, Any]], str | None]:
    """The query's rows, or none and the error."""
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query).fetchall(), None
    except psycopg.Error as exc:
        return [], f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"


def _run_suite(conn: psycopg.Connection, s: suites.Suite, query: str) -> dict[str, Any]:
    started = time.perf_counter()
    rows, error = _query(conn, query)
    seconds = time.perf_counter() - started
    failed = {r["rule"] for r in rows}
    # A query that cannot run fails every rule of its suite (as the gate reports it: one error).
    verdicts = {expectation_id(s, e): error is None and i not in failed for i, e in enumerate(s.expectations)}
    checked = next((r["unexpected_count"] for r in rows if r["rule"] == compile.ROWS_CHECKED), None)
    return {"seconds": seconds, "rows": checked, "error": error, "verdicts": verdicts}


# --- timing the GX gate, phase by phase ----------------------------------------------------


class Phases:
    """Exclusive wall seconds per phase of one gate run: a phase entered inside another
    (a query inside loading the checkpoint, say) is subtracted from the outer one, so the
    phases add up to the run's wall time. Single-threaded, as GX validates in the caller's
    thread."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.queries = 0
        self._clock = clock
        self._stack: list[list[Any]] = []  # [phase, started, seconds of inner phases]

    def enter(self, name: str) -> None:
        self._stack.append([name, self._clock(), 0.0])

    def leave(self) -> None:
        name, started, inner = self._stack.pop()
        elapsed = self._clock() - started
        self.seconds[name] += elapsed - inner
        if self._stack:
            self._stack[-1][2] += elapsed

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.enter(name)
        try:
            yield
        finally:
            self.leave()

    def timed(self, name: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with self.phase(name):
                return function(*args, **kwargs)
        return wrapper

    # SQLAlchemy events, on every engine: GX's queries.
    def before_query(self, *args, **kwargs) -> None:
        self.queries += 1
        self.enter("queries")

    def after_query(self, *args, **kwargs) -> None:
        self.leave()

    def failed_query(self, context) -> None:  # after_cursor_execute does not fire on an error
        if self._stack and self._stack[-1][0] == "queries":
            self.leave()


@contextmanager
def instrumented(phases: Phases) -> Iterator[None]:
    """Time the phases of gate runs in this block: wrap the functions the gate calls by
    module attribute (restored afterwards) and listen to every SQLAlchemy engine."""
    import great_expectations
    from great_expectations.core.factory.checkpoint_factory import CheckpointFactory
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    wrapped = [
        (great_expectations, "get_context", "context"),
        (CheckpointFactory, "get", "checkpoint"),
        (gate, "_build_docs", "docs"),
        (gate, "_examples", "bookkeeping"),
        (audit, "ensure_schemas", "bookkeeping"),
        (audit, "relation_facts", "bookkeeping"),
        (audit, "record_gate_run", "bookkeeping"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in wrapped]
    listeners = [("before_cursor_execute", phases.before_query), ("after_cursor_execute", phases.after_query),
                 ("handle_error", phases.failed_query)]
    for owner, name, phase in wrapped:
        setattr(owner, name, phases.timed(phase, getattr(owner, name)))
    for identifier, listener in listeners:
        event.listen(Engine, identifier, listener)
    try:
        yield
    finally:
        for identifier, listener in listeners:
            event.remove(Engine, identifier, listener)
        for owner, name, original in originals:
            setattr(owner, name, original)


def gx_import_seconds() -> float | None:
    """Seconds to import Great Expectations, paid once per process (so once per Airflow
    task); None when it is already imported."""
    if "great_expectations" in sys.modules:
        return None
    started = time.perf_counter()
    import great_expectations  # noqa: F401
    return time.perf_counter() - started


@contextmanager
def _gate_warnings_quiet() -> Iterator[None]:
    """The gate logs each warning on every run; repeated runs need not repeat them (the
    results count failed expectations). Errors still show."""
    logger = logging.getLogger(gate.__name__)
    previous = logger.level
    logger.setLevel(max(logging.ERROR, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(previous)


def time_gate(warehouse_url: str, stage: str, data_interval_end: date | datetime, *,
              project_root: Path | str | None = None) -> dict[str, Any]:
    """One run of the real gate: wall seconds, the exclusive seconds of each phase, GX's query
    count, and the gate's result (a failed gate's result, from QualityGateFailed, too). A
    passing gate leaves its Data Docs to a later step (the DAG's publish): that step's
    seconds (`docs_step_s`, `gate.build_docs`) are measured after, apart from the gate's."""
    phases = Phases()
    run_id = f"bench-gates-{uuid.uuid4().hex[:8]}"
    with instrumented(phases), _gate_warnings_quiet():
        started = time.perf_counter()
        with phases.phase("python"):  # the root: whatever no other phase claims
            try:
                result = gate.run_gate(warehouse_url, stage, run_id, data_interval_end, project_root=project_root)
            except gate.QualityGateFailed as failed:
                result = failed.result
        wall = time.perf_counter() - started
    seconds = {name: phases.seconds.get(name, 0.0) for name in PHASES}
    docs_step = None
    if result.success:
        started = time.perf_counter()
        gate.build_docs(run_id, project_root)
        docs_step = time.perf_counter() - started
    return {"seconds": wall, "phases": seconds, "queries": phases.queries, "result": result,
            "docs_step_s": docs_step}


def gx_verdicts(result: gate.GateResult, suite_list: Sequence[suites.Suite]) -> tuple[dict[str, dict], list[dict]]:
    """GX's verdict per rule id, from a gate result: every rule succeeded but those among
    its failures and warnings, and every one of a suite whose relation is missing or whose
    query could not run (each reported once). Also what makes that reading unsound:
    outcomes naming a rule `suites.py` does not know (a stale GX project), or a count of
    evaluated rules other than the suites'."""
    problems = result.failures + result.warnings
    broken = {o.suite: o.error for o in problems
              if o.expectation in ("relation_exists", suites.SUITE_EXPECTATION) and o.error}
    failed = {o.expectation_id: o for o in problems if o.expectation_id and o.suite not in broken}
    verdicts = {}
    for s in suite_list:
        for e in s.expectations:
            outcome = failed.pop(expectation_id(s, e), None)
            verdicts[expectation_id(s, e)] = {
                "success": outcome is None and s.name not in broken,
                "error": outcome.error if outcome else broken.get(s.name),
            }
    unknown = [{"suite": o.suite, "expectation": o.expectation, "what": o.description or o.column,
                "gx": False, "sql": None, "gx_error": "not in suites.py: is the GX project stale?"}
               for o in failed.values()]
    # Successes are inferred from absence: GX must have evaluated every rule.
    expected = sum(len(s.expectations) if s.name not in broken else 1 for s in suite_list)
    if result.evaluated != expected:
        unknown.append({"suite": None, "expectation": None, "what": f"GX evaluated {result.evaluated} "
                        f"rules, suites.py has {expected}", "gx": None, "sql": None, "gx_error": None})
    return verdicts, unknown


def compare(result: gate.GateResult, sql_checks: dict[str, Any],
            suite_list: Sequence[suites.Suite]) -> list[dict[str, Any]]:
    """Expectations whose GX and SQL verdicts differ (empty: they agree)."""
    gx, disagreements = gx_verdicts(result, suite_list)
    for s in suite_list:
        checked = sql_checks["suites"][s.name]
        for e in s.expectations:
            key = expectation_id(s, e)
            if gx[key]["success"] != checked["verdicts"][key]:
                disagreements.append({"suite": s.name, "expectation": e.type, "what": describe(e),
                                      "gx": gx[key]["success"], "sql": checked["verdicts"][key],
                                      "gx_error": gx[key]["error"], "sql_error": checked["error"]})
    return disagreements


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def bench_stage(warehouse_url: str, stage: str, data_interval_end: date | datetime, *, repeats: int = 3,
                project_root: Path | str | None = None, report: Callable[[str], Any] = print) -> dict[str, Any]:
    """Gate and SQL checks of one stage, `repeats` times each, alternating (so that both see
    the same cache state); the fastest run of each, and whether their verdicts agree."""
    suite_list = suites.suites(stage)
    gx_runs, sql_runs = [], []
    for attempt in range(1, repeats + 1):
        gx_runs.append(time_gate(warehouse_url, stage, data_interval_end, project_root=project_root))
        sql_runs.append(run_sql_checks(warehouse_url, stage, data_interval_end, suite_list=suite_list))
        report(f"{stage} {attempt}/{repeats}: GX gate {gx_runs[-1]['seconds']:.2f} s "
               f"({gx_runs[-1]['phases']['queries']:.2f} s in {gx_runs[-1]['queries']} queries), "
               f"hand SQL {sql_runs[-1]['seconds']:.2f} s")
    gx_best = min(gx_runs, key=lambda run: run["seconds"])
    sql_best = min(sql_runs, key=lambda run: run["seconds"])
    # Every run saw the same data: the first runs' verdicts stand for all.
    disagreements = compare(gx_runs[0]["result"], sql_runs[0], suite_list)
    phases = gx_best["phases"]
    return {
        "suites": len(suite_list),
        "expectations": sum(len(s.expectations) for s in suite_list),
        "gx_s": gx_best["seconds"],
        "sql_s": sql_best["seconds"],
        "ratio": ratio(gx_best["seconds"], sql_best["seconds"]),
        "gx_queries_s": phases["queries"],
        "gx_queries": gx_best["queries"],
        "gx_overhead_s": gx_best["seconds"] - phases["queries"],
        "gx_overhead": {f"{name}_s": phases[name] for name in PHASES if name != "queries"},
        "sql_queries": len(suite_list),
        "rows_checked": sum(c["rows"] or 0 for c in sql_best["suites"].values()),
        "sql_suites_s": {name: checked["seconds"] for name, checked in sql_best["suites"].items()},
        "gx_runs_s": [run["seconds"] for run in gx_runs],
        "docs_step_s": gx_best["docs_step_s"],
        "sql_runs_s": [run["seconds"] for run in sql_runs],
        "gate_passed": gx_runs[0]["result"].success,
        "gx_failed_expectations": len(gx_runs[0]["result"].failures) + len(gx_runs[0]["result"].warnings),
        "sql_errors": {name: c["error"] for name, c in sql_runs[0]["suites"].items() if c["error"]},
        "verdicts_agree": not disagreements,
        "disagreements": disagreements,
    }


def run_gates(warehouse_url: str, data_interval_end: date | datetime, *, repeats: int = 3,
              project_root: Path | str | None = None, report: Callable[[str], Any] = print) -> dict[str, Any]:
    """Both stages' gates against their hand-written SQL (see the module's docstring).
    `warehouse_url` is a built warehouse; gate runs add rows to its `audit` tables and
    results and Data Docs to the GX project's `uncommitted/` (of `project_root`, default the
    repo's `expectations/`)."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    stale = suites.stale_files(Path(project_root) if project_root else None)
    if stale:  # the gate would run other checks than suites.py says: verdicts would not compare
        raise RuntimeError(f"the GX project is stale ({', '.join(stale[:5])}): "
                           "run python -m lifecycle_warehouse.generate")
    with _before_the_last_build(warehouse_url) as set_aside:
        return _run_gates(warehouse_url, data_interval_end, repeats=repeats, project_root=project_root,
                          report=report, set_aside=set_aside)


@contextmanager
def _before_the_last_build(warehouse_url: str) -> Iterator[list[str]]:
    """The warehouse as a daily run's raw gate sees it: the raw gate validates the date
    folders (and shop rows) loaded since the last successful build, and runs before the
    day's build; the bench's warehouse has that build already (its daily build). So the
    builds started after the last load are set aside (built_at cleared) while the gates
    run, and restored after: the raw gate then validates the measured day's deliveries,
    as in a daily run."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        exists = conn.execute("select to_regclass('raw.warehouse_builds') is not null "
                              "and to_regclass('raw.load_audit') is not null").fetchone()[0]
        later = conn.execute(
            "update raw.warehouse_builds b set built_at = null from raw.warehouse_builds o "
            "where o.run_id = b.run_id and b.built_at is not null "
            "and b.started_at > (select max(greatest(loaded_at, replayed_at)) from raw.load_audit) "
            "returning b.run_id, o.built_at").fetchall() if exists else []
    try:
        yield [run_id for run_id, _ in later]
    finally:
        if later:
            with psycopg.connect(warehouse_url, autocommit=True) as conn:
                with conn.cursor() as cur:
                    cur.executemany("update raw.warehouse_builds set built_at = %s where run_id = %s",
                                    [(built_at, run_id) for run_id, built_at in later])


def _run_gates(warehouse_url: str, data_interval_end: date | datetime, *, repeats: int,
               project_root: Path | str | None, report: Callable[[str], Any], set_aside: list[str]) -> dict[str, Any]:
    import_s = gx_import_seconds()
    if import_s is not None:
        report(f"importing Great Expectations: {import_s:.2f} s (once per process, not in the figures)")
    results: dict[str, Any] = {
        "data_interval_end": gate.interval_end_instant(data_interval_end).isoformat(),
        "repeats": repeats,
        "target_ratio": TARGET_RATIO,
        "gx_import_s": import_s,
        "build_set_aside": set_aside,
    }
    for stage in suites.STAGES:
        results[stage] = bench_stage(warehouse_url, stage, data_interval_end, repeats=repeats,
                                     project_root=project_root, report=report)
    results["gate_vs_sql"] = ratio(sum(results[s]["gx_s"] for s in suites.STAGES),
                                   sum(results[s]["sql_s"] for s in suites.STAGES))
    return results


# --- the report ----------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}×"


def dominant(results: dict[str, Any]) -> tuple[str, float, float]:
    """The largest part of the gates' time over both stages: (phase, its seconds, all seconds)."""
    stages = [results[s] for s in suites.STAGES if s in results]
    totals = {name: sum(r["gx_queries_s"] if name == "queries" else r["gx_overhead"][f"{name}_s"] for r in stages)
              for name in PHASES}
    name = max(totals, key=totals.get)
    return name, totals[name], sum(r["gx_s"] for r in stages)


def _disagreement(d: dict[str, Any]) -> str:
    where = f"{d['suite']}: " if d["suite"] else ""
    verdicts = f": GX {d['gx']}, SQL {d['sql']}" if d["gx"] is not None or d["sql"] is not None else ""
    error = f" (GX: {d['gx_error']})" if d.get("gx_error") else ""
    return f"- {where}{d['what']}{verdicts}{error}"


def markdown(results: dict[str, Any]) -> list[str]:
    """The "Quality gates" section of the benchmark's results.md."""
    lines = [
        "## Quality gates",
        "",
        (f"The GX gate of each stage against the same checks as hand-written SQL (one query per suite, "
         f"same tables, same session settings); fastest of {results['repeats']} run(s), data interval end "
         f"{results['data_interval_end']}. Target: at most {results['target_ratio']}× the SQL."),
        "",
        "| stage | rules | GX gate s | of which queries s | GX overhead s | hand SQL s | ×SQL |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    stages = [s for s in suites.STAGES if s in results]
    for stage in stages:
        r = results[stage]
        lines.append(f"| {stage} | {r['expectations']} | {_s(r['gx_s'])} | {_s(r['gx_queries_s'])} "
                     f"| {_s(r['gx_overhead_s'])} | {_s(r['sql_s'])} | {_x(r['ratio'])} |")
    total = {key: sum(results[s][key] for s in stages) for key in ("expectations", "gx_s", "gx_queries_s",
                                                                      "gx_overhead_s", "sql_s")}
    lines.append(f"| both | {total['expectations']} | {_s(total['gx_s'])} | {_s(total['gx_queries_s'])} "
                 f"| {_s(total['gx_overhead_s'])} | {_s(total['sql_s'])} | {_x(results.get('gate_vs_sql'))} |")
    lines.append("")
    name, seconds, wall = dominant(results)
    queries = sum(results[s]["gx_queries"] for s in stages)
    parts = ", ".join(
        f"{PHASE_LABELS[p]} {_s(sum(results[s]['gx_overhead'][f'{p}_s'] for s in stages))} s"
        for p in PHASES if p not in ("queries", name))
    within = "within" if (results.get("gate_vs_sql") or 0) <= results["target_ratio"] else "above"
    lines.append(
        f"Both gates take {_s(wall)} s, {_x(results.get('gate_vs_sql'))} the hand-written SQL ({within} the "
        f"{results['target_ratio']}× target). Most of it is {PHASE_LABELS[name]} ({_s(seconds)} s, "
        f"{seconds / wall:.0%}). GX sends {queries} queries taking {_s(total['gx_queries_s'])} s, where the "
        f"hand-written checks need {sum(results[s]['sql_queries'] for s in stages)} "
        f"({_s(total['sql_s'])} s); the rest of the gates' time: {parts}.")
    rows = [f"{s} {results[s]['rows_checked']:,}" for s in stages if results[s].get("rows_checked") is not None]
    if rows:
        lines.append(f"Rows checked (the raw gate reads the run's deliveries): {', '.join(rows)}.")
    docs = [results[s].get("docs_step_s") for s in stages]
    if all(d is not None for d in docs):
        lines.append(f"A passing gate leaves its Data Docs to a later step (the DAG's publish): "
                     f"{_s(sum(docs))} s for both stages' pages and the index, not in the figures above.")
    if results.get("gx_import_s") is not None:
        lines.append(f"Importing Great Expectations, once per process (so once per gate task), takes "
                     f"{_s(results['gx_import_s'])} s more.")
    disagreements = [d for s in stages for d in results[s]["disagreements"]]
    lines.append("")
    if disagreements:
        lines.append(f"Verdicts disagree on {len(disagreements)} rule(s) (the gate reads its query's rows wrongly):")
        lines += [_disagreement(d) for d in disagreements]
    else:
        lines.append("GX and the hand-written SQL agree on every rule's verdict.")
    return lines
