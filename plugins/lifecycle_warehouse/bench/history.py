"""Part of `lw bench`: how the cost of a daily run grows with the history already in the warehouse.

Evidence for the requirement "a daily run costs in proportion to the day's data, not to all
history". For each history length H it simulates H + 1 days of sources (H + 2 when the
daily_run part runs in place), loads days 1..H into `raw` and builds the warehouse once (the
history), then loads day H + 1 and times the incremental `dbt build` a daily run does, model
by model (a table per model with the ratio of the daily seconds at the longest and the
shortest history).

It runs on the bench's server (bench/run.py), its own landing zones and its own dbt target
folder, so it touches neither the developer's warehouse nor `dbt_project/target`. Airflow
is not involved: the loads call the same functions as the ingestion DAGs' tasks (the
daily_run part runs the DAGs). The warehouse of the longest history, as it was after its
full build, is kept as a database the daily_run part starts from; in place (a warehouse too
big to copy) the daily_run part goes on from the history's warehouse as this part leaves it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import psycopg
from psycopg import sql
from rich.table import Table

from lifecycle_warehouse import bootstrap, contract, settings
from lifecycle_warehouse.bench import databases

# Measured days 2026-06-29 and 2026-09-21 from the default start: both Mondays, when the
# simulated company sends no bulk e-mail, so the two days hold comparable data.
DEFAULT_HISTORIES = (28, 112)
DEFAULT_START = date(2026, 6, 1)

# Kinds of dbt nodes, by the first part of their unique_id, whose seconds are summed.
NODE_KINDS = ("model", "test", "unit_test", "seed")
# dbt statuses of a node that failed or did not run because something upstream failed: the
# build's times then mislead. (`warn` is a passing test of severity warn; exposures: no-op.)
FAILED_STATUSES = ("error", "fail", "runtime error", "skipped")

# Relations counted after the daily run, to show how much history each H holds.
COUNTED_RELATIONS = ("raw.web_events", "intermediate.int_web__events", "marts.kpi_daily")

Report = Callable[[str], None]


class BenchError(RuntimeError):
    """The benchmark could not produce a measurement (a load or a dbt build failed)."""


@dataclass(frozen=True)
class BenchConfig:
    customers: int = 3000
    histories: tuple[int, ...] = DEFAULT_HISTORIES
    seed: int = 42
    start: date = DEFAULT_START
    # One dbt thread: a node's execution_time then measures that node, not the nodes
    # that happened to run beside it on the machine's two cores.
    threads: int = 1
    # The day's build is run this many times (the daily run, then reruns of the same day)
    # and the fastest time of each node is kept: a shared machine's hiccups only add time.
    repeats: int = 3
    # Web traffic per person, times the simulator's: each known person's browse sessions
    # and the anonymous-only visitors (`traffic_rates`); orders and e-mails stay as they are.
    web_traffic: float = 1.0
    # Days simulated after the history: the measured day, and for a daily run measured in
    # place (on the history's warehouse, no copies: the large profile) the day after it.
    days_after: int = 1
    # Delete the history's landing folders once loaded, but for the daily run's look-back
    # window (LW_LOOKBACK_DAYS): a year at the large profile's traffic is ~15 GB of files
    # that no daily run reads again.
    prune_landing: bool = False
    # Where the bench keeps its server, landing zones and dbt target: next to the
    # project's embedded server (`.warehouse/`, ignored by git).
    work_dir: Path = field(default_factory=lambda: settings.pgdata_dir().parent)

    @property
    def pgdata(self) -> Path:
        return self.work_dir / "bench-pgdata"

    @property
    def dbt_target_dir(self) -> Path:
        return self.work_dir / "bench-target"

    def landing_dir(self, history_days: int) -> Path:
        return self.work_dir / f"bench-landing-{history_days}"

    def truth_file(self, history_days: int) -> Path:
        return self.work_dir / f"bench-truth-{history_days}.json"


# --- pure parts: parsing, summarising, rendering (unit-tested) ---------------------------


def parse_repeats(text: str) -> int:
    """`lw bench --repeats`: how many times the day's build runs (at least once)."""
    try:
        repeats = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if repeats < 1:
        raise argparse.ArgumentTypeError(f"the day's build must run at least once: {text!r}")
    return repeats


def parse_histories(text: str) -> tuple[int, ...]:
    """`"30,120"` -> (30, 120): distinct positive day counts, ascending."""
    try:
        days = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of day counts: {text!r}") from None
    if not days:
        raise argparse.ArgumentTypeError("give at least one history length, e.g. 30,120")
    if min(days) < 1:
        raise argparse.ArgumentTypeError(f"history lengths must be at least 1 day: {text!r}")
    return tuple(sorted(days))


def traffic_rates(web_traffic: float):
    """The simulator's rates with `web_traffic` times the web visits: each person's browse
    sessions per day, and the anonymous-only visitors (the simulator draws them in
    proportion to web sign-ups, through the share of first-time visitors who sign up)."""
    from lifecycle_warehouse.simulator.config import Rates

    if web_traffic <= 0:
        raise ValueError(f"web traffic must be positive, got {web_traffic}")
    rates = Rates()
    if web_traffic == 1:
        return rates
    anonymous_per_signup = (1 - rates.p_identify) / rates.p_identify * web_traffic
    return replace(
        rates,
        sessions_per_day_base=rates.sessions_per_day_base * web_traffic,
        sessions_per_day_engaged=rates.sessions_per_day_engaged * web_traffic,
        sessions_per_day_customer=rates.sessions_per_day_customer * web_traffic,
        p_identify=1 / (1 + anonymous_per_signup),
    )


def node_kind(unique_id: str) -> str:
    """`model.lifecycle_warehouse.kpi_daily` -> `model` (test, unit_test, seed, …)."""
    return unique_id.split(".", 1)[0]


def node_name(unique_id: str) -> str:
    """`model.lifecycle_warehouse.kpi_daily` -> `kpi_daily` (drops kind and package)."""
    return unique_id.split(".", 2)[-1]


def summarise_run_results(run_results: Mapping) -> dict:
    """Seconds per model and per kind of node from a dbt `run_results.json` document."""
    models: dict[str, float] = {}
    seconds = dict.fromkeys(NODE_KINDS, 0.0)
    counts = dict.fromkeys(NODE_KINDS, 0)
    failed: list[str] = []
    for result in run_results.get("results", []):
        unique_id = result["unique_id"]
        kind = node_kind(unique_id)
        elapsed = float(result.get("execution_time") or 0.0)
        if kind == "model":
            models[node_name(unique_id)] = elapsed
        if kind in seconds:
            seconds[kind] += elapsed
            counts[kind] += 1
        if result.get("status") in FAILED_STATUSES:
            failed.append(f"{unique_id}: {result.get('status')}")
    return {
        "dbt_elapsed_seconds": run_results.get("elapsed_time"),
        "models": models,
        **{f"{kind}_seconds": seconds[kind] for kind in NODE_KINDS},
        "node_counts": counts,
        "failed": failed,
    }


def fastest_of(builds: Sequence[Mapping]) -> dict:
    """One build summary from several runs of the same build: the fastest seconds of each
    model, of each kind of node and of the wall clock (noise on a shared machine only adds
    time), the other fields of the first run, and every run's wall seconds."""
    if not builds:
        raise ValueError("fastest_of needs at least one build")
    first = builds[0]
    names = {name for build in builds for name in build["models"]}
    fastest = dict(first)
    fastest["models"] = {
        name: min(build["models"][name] for build in builds if name in build["models"]) for name in names
    }
    for key in ("wall_seconds", "dbt_elapsed_seconds", *(f"{kind}_seconds" for kind in NODE_KINDS)):
        values = [build[key] for build in builds if build.get(key) is not None]
        fastest[key] = min(values) if values else None
    fastest["runs_wall_seconds"] = [build["wall_seconds"] for build in builds]
    return fastest


def ratio(smallest: float | None, largest: float | None) -> float | None:
    """largest / smallest, or None when it means nothing (a missing or zero base)."""
    if smallest is None or largest is None or smallest <= 0:
        return None
    return largest / smallest


def _number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _row(label: str, values: Sequence[float | int | None]) -> list[str]:
    """A table row: label, one value per history (shortest first), ratio last/first."""
    return [label, *(_number(v) for v in values), _number(ratio(values[0], values[-1]))]


def model_rows(results: Mapping) -> list[list[str]]:
    """Daily-run seconds of every model at each history, slowest (at the longest
    history) first, with the ratio longest / shortest."""
    runs = results["histories"]
    names = {name for run in runs for name in run["daily_build"]["models"]}

    def seconds(name: str) -> list[float | None]:
        return [run["daily_build"]["models"].get(name) for run in runs]

    ordered = sorted(names, key=lambda name: (-(seconds(name)[-1] or 0.0), name))
    return [_row(name, seconds(name)) for name in ordered]


def total_rows(results: Mapping) -> list[list[str]]:
    """The totals of each history: daily build and load, then the history's full build."""
    runs = results["histories"]

    def values(getter: Callable[[Mapping], float | int | None]) -> list[float | int | None]:
        return [getter(run) for run in runs]

    return [
        _row("daily `dbt build`, wall (s)", values(lambda r: r["daily_build"]["wall_seconds"])),
        _row("daily: sum of model seconds", values(lambda r: r["daily_build"]["model_seconds"])),
        _row("daily: sum of data-test seconds", values(lambda r: r["daily_build"]["test_seconds"])),
        _row("daily: sum of unit-test seconds", values(lambda r: r["daily_build"]["unit_test_seconds"])),
        _row("daily: sum of seed seconds", values(lambda r: r["daily_build"]["seed_seconds"])),
        _row("daily: load of the day (s)", values(lambda r: r["day_load"]["seconds"])),
        _row("daily: rows loaded for the day", values(lambda r: r["day_load"]["rows"])),
        _row("daily: web events of the day", values(lambda r: r["day_load"]["rows_by_entity"].get("web/events"))),
        _row("history: load (s)", values(lambda r: r["history_load"]["seconds"])),
        _row("history: rows loaded", values(lambda r: r["history_load"]["rows"])),
        _row("history: full `dbt build`, wall (s)", values(lambda r: r["full_build"]["wall_seconds"])),
    ]


def context_rows(results: Mapping) -> list[list[str]]:
    """Rows of a few relations after the daily run: how much history each H holds."""
    runs = results["histories"]
    return [_row(relation, [run["row_counts"].get(relation) for run in runs]) for relation in COUNTED_RELATIONS]


def header(results: Mapping, first: str) -> list[str]:
    return [first, *(f"H={run['history_days']}" for run in results["histories"]), "ratio"]


def history_growth(results: Mapping) -> float | None:
    """How many times longer the longest history is than the shortest."""
    days = [run["history_days"] for run in results["histories"]]
    return ratio(days[0], days[-1]) if days else None


def how_to_read(results: Mapping) -> str:
    growth = history_growth(results)
    return (
        f"Each H column is one day's incremental build after H days of history, planned as the "
        f"warehouse DAG plans it (var recompute_from: the day's date folder), the fastest of its "
        f"runs (the daily run and retries of it); ratio = its seconds at "
        f"the longest history / at the shortest. History grew {_number(growth)}×: a ratio near 1 means the "
        f"cost does not grow with history, a ratio near {_number(growth)} means it scans all history. "
        "Ratios of nodes that take under ~0.1 s are noise; the machine is shared, so compare "
        "orders of magnitude."
    )


def _markdown_table(head: list[str], rows: list[list[str]]) -> list[str]:
    aligns = ["---", *("---:" for _ in head[1:])]
    return [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(aligns) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def markdown(results: Mapping) -> list[str]:
    """The part's section of bench/results.md: parameters, how to read, the per-model table,
    totals and context."""
    params = results["parameters"]
    histories = ", ".join(str(h) for h in params["histories"])
    return [
        "## Daily `dbt build` vs. length of history",
        "",
        (
            f"{params['customers']:,} customers, seed {params['seed']}, start {params['start']}, "
            f"histories {histories} days, dbt threads {params['threads']}, "
            f"fastest of {params.get('repeats', 1)} runs of the day."
        ),
        "",
        f"**How to read.** {how_to_read(results)}",
        "",
        "### Daily run, seconds per model",
        "",
        *_markdown_table(header(results, "model"), model_rows(results)),
        "",
        "### Totals",
        "",
        *_markdown_table(header(results, ""), total_rows(results)),
        "",
        "### Context: rows after the daily run",
        "",
        *_markdown_table(header(results, "relation"), context_rows(results)),
    ]


def rich_table(results: Mapping) -> Table:
    """The per-model table and the totals, for the terminal."""
    table = Table(title="Daily run seconds by history length (H = days already loaded)")
    for n, column in enumerate(header(results, "model / total")):
        table.add_column(column, justify="left" if n == 0 else "right")
    for row in model_rows(results):
        table.add_row(*row)
    table.add_section()
    for row in total_rows(results):
        table.add_row(*row)
    return table


# --- measuring: server, sources, loads, dbt ----------------------------------------------


@contextmanager
def environment_set(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore them: the package's
    functions find the warehouse, shop and landing zone through settings (env first)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _recreate_databases(admin_url: str) -> tuple[str, str]:
    """Empty `warehouse` and `shop` databases on the bench server; returns their URLs."""
    return databases.recreate(admin_url, "warehouse"), databases.recreate(admin_url, "shop")


def _warm_imports() -> None:
    """Import the loaders (and Airflow's SDK, via orchestration) before anything is timed:
    a first import costs seconds that no daily run pays."""
    from lifecycle_warehouse import ingest_tasks, orchestration  # noqa: F401
    from lifecycle_warehouse.ingest import files, shop  # noqa: F401


def _simulate_sources(config: BenchConfig, history_days: int) -> dict:
    """H + `days_after` days of files in the bench landing zone and the shop database filled."""
    from lifecycle_warehouse.simulator import SimulationConfig, simulate

    landing = config.landing_dir(history_days)
    shutil.rmtree(landing, ignore_errors=True)  # our own folder: no files of an older bench
    started = time.perf_counter()
    result = simulate(SimulationConfig(
        start=config.start,
        days=history_days + config.days_after,
        customers=config.customers,
        seed=config.seed,
        landing_dir=landing,
        shop_url=settings.shop_writer_url(),
        truth_file=config.truth_file(history_days),
        progress=False,
        rates=traffic_rates(config.web_traffic),
    ))
    return {"seconds": time.perf_counter() - started, "rows": dict(result.rows)}


def prune_landing(landing_dir: Path, before: date) -> int:
    """Delete the contract's file entities' date folders of business dates before `before`
    (already loaded); the bytes freed."""
    from lifecycle_warehouse.ingest.deliveries import delivery_folder

    freed = 0
    for entity in contract.FILE_ENTITIES:
        parent = delivery_folder(landing_dir, entity, before).parent
        for folder in sorted(parent.glob("dt=*")) if parent.is_dir() else []:
            try:
                folder_date = date.fromisoformat(folder.name.removeprefix("dt="))
            except ValueError:
                continue  # not a date folder of ours: leave it
            if folder_date < before:
                freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                shutil.rmtree(folder)
    return freed


def _load_interval(start: date, end: date) -> dict:
    """Load business dates [start, end) into raw as the ingestion DAGs' tasks do: every
    file entity of the contract, then every shop table up to the end of the interval."""
    from lifecycle_warehouse import ingest_tasks

    rows: dict[str, int] = {}
    started = time.perf_counter()
    for entity in contract.FILE_ENTITIES:
        deliveries = ingest_tasks.load_files(entity.source, entity.entity, start, end)
        rows[f"{entity.source}/{entity.entity}"] = sum(
            f["rows_loaded"] for delivery in deliveries for f in delivery["files"]
        )
    for table in contract.SHOP_TABLES:
        extract = ingest_tasks.extract_shop_table(table.table, end)
        rows[f"shop/{table.table}"] = extract["rows_upserted"]
    return {"seconds": time.perf_counter() - started, "rows": sum(rows.values()), "rows_by_entity": rows}


def _dbt(config: BenchConfig, args: list[str], url: str) -> int:
    """dbt with the bench's own target and log folders (others use dbt_project/target)."""
    from lifecycle_warehouse import dbt_runner

    env = {
        "DBT_TARGET_PATH": str(config.dbt_target_dir),
        "DBT_LOG_PATH": str(config.dbt_target_dir / "logs"),
    }
    return dbt_runner.run(args, url=url, check=False, env=env)


def _dbt_build(config: BenchConfig, url: str, what: str) -> dict:
    """One timed `dbt build` (incremental unless the warehouse is empty), planned as every
    build is (the dbt project's on-run-start hook: macros/warehouse_builds.sql), and its
    run_results summarised; fails when a node failed, since its times would mislead."""
    run_results_file = config.dbt_target_dir / "run_results.json"
    run_results_file.unlink(missing_ok=True)  # never read an older invocation's results
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    # as the warehouse DAG runs it: models, seeds and data tests; unit tests are for CI
    code = _dbt(
        config,
        ["build", "--exclude", "resource_type:unit_test", "--quiet", "--threads", str(config.threads)],
        url,
    )
    wall = time.perf_counter() - started
    summary = summarise_run_results(json.loads(run_results_file.read_text())) if run_results_file.exists() else None
    if code != 0 or summary is None or summary["failed"]:
        failed = "; ".join((summary or {}).get("failed", [])[:10]) or "see dbt's output above"
        raise BenchError(f"{what}: `dbt build` failed (exit {code}): {failed}")
    with psycopg.connect(url) as conn:
        recompute_from = conn.execute(
            "select recompute_from from raw.warehouse_builds where kind = 'dbt' order by started_at desc limit 1"
        ).fetchone()[0]
    return {"wall_seconds": wall, "load_average_1m_before": load_before,
            "recompute_from": recompute_from.isoformat() if recompute_from else None, **summary}


def _forget_last_build(url: str) -> None:
    """The last successful build counts as failed: the next build is planned as it was
    (the deliveries since the build before it are new again)."""
    with psycopg.connect(url, autocommit=True) as conn:
        forgotten = conn.execute(
            "update raw.warehouse_builds set built_at = null where run_id ="
            " (select run_id from raw.warehouse_builds where built_at is not null order by started_at desc limit 1)"
        ).rowcount
    if forgotten != 1:
        raise BenchError("no successful build to rerun")


def _row_counts(url: str) -> dict[str, int | None]:
    with psycopg.connect(url) as conn:
        counts = {}
        for relation in COUNTED_RELATIONS:
            exists = conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()[0]
            query = sql.SQL("select count(*) from {}").format(sql.Identifier(*relation.split(".")))
            counts[relation] = conn.execute(query).fetchone()[0] if exists else None
    return counts


def _bench_history(config: BenchConfig, admin_url: str, history_days: int, report: Report,
                   keep_history_as: str | None) -> dict:
    """Everything measured for one history length H, on fresh databases."""
    warehouse_url, shop_url = _recreate_databases(admin_url)
    measured_day = config.start + timedelta(days=history_days)
    variables = {
        "WAREHOUSE_URL": warehouse_url,
        "SHOP_DB_URL": shop_url,
        "LANDING_DIR": str(config.landing_dir(history_days)),
    }
    with environment_set(variables):
        bootstrap.bootstrap(warehouse_url)
        report(f"H={history_days}: simulating {history_days + config.days_after} days from {config.start} …")
        simulation = _simulate_sources(config, history_days)
        report(f"H={history_days}: loading the history {config.start} … {measured_day - timedelta(days=1)} …")
        history_load = _load_interval(config.start, measured_day)
        if config.prune_landing:
            history_load["pruned_landing_bytes"] = prune_landing(
                config.landing_dir(history_days), measured_day - timedelta(days=settings.lookback_days() + 1))
        report(f"H={history_days}: full `dbt build` of the history …")
        full_build = _dbt_build(config, warehouse_url, f"H={history_days}, full build")
        if keep_history_as:
            databases.copy(admin_url, "warehouse", keep_history_as)
        report(f"H={history_days}: loading the measured day {measured_day} and the daily `dbt build` …")
        day_load = _load_interval(measured_day, measured_day + timedelta(days=1))
        # the daily run, then reruns of the same run: each planned as the first was (the
        # previous rerun's success is forgotten, so the day's deliveries are still new to the
        # plan); they may find fewer rows to rewrite
        daily_builds = []
        for run in range(config.repeats):
            if run:
                _forget_last_build(warehouse_url)
            daily_builds.append(
                _dbt_build(config, warehouse_url, f"H={history_days}, daily build {run + 1}/{config.repeats}"))
        daily_build = fastest_of(daily_builds)
        runs = ", ".join(f"{seconds:.1f}" for seconds in daily_build["runs_wall_seconds"])
        report(f"H={history_days}: daily build {daily_build['wall_seconds']:.1f} s wall, fastest of {runs} "
               f"(full build {full_build['wall_seconds']:.1f} s)")
        return {
            "history_days": history_days,
            "measured_day": measured_day.isoformat(),
            "simulation": simulation,
            "history_load": history_load,
            "full_build": full_build,
            "day_load": day_load,
            "daily_build": daily_build,
            "row_counts": _row_counts(warehouse_url),
        }


def _parameters(config: BenchConfig) -> dict:
    parameters = asdict(config)
    parameters.update(start=config.start.isoformat(), work_dir=str(config.work_dir),
                      histories=list(config.histories))
    return parameters


def run_histories(config: BenchConfig, admin_url: str, report: Report = print,
                  keep_history_as: str | None = None) -> dict:
    """Measure every history length on the bench's server (admin_url: its `postgres`
    database). With `keep_history_as`, the warehouse of the longest history, as it was
    after its full build, is kept as that database."""
    _warm_imports()
    results = {"parameters": _parameters(config), "histories": []}
    warehouse_url = databases.database_url(admin_url, "warehouse")
    # Parse once, untimed, so that every timed build pays the same partial parse.
    if _dbt(config, ["parse", "--quiet"], warehouse_url) != 0:
        raise BenchError("`dbt parse` failed: see dbt's output above")
    for history_days in config.histories:
        keep = keep_history_as if history_days == config.histories[-1] else None
        results["histories"].append(_bench_history(config, admin_url, history_days, report, keep))
    return results
