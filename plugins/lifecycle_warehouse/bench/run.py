"""`lw bench` (`make bench PROFILE=small|large`): every part of the benchmark on the bench's
own embedded PostgreSQL (`.warehouse/bench-pgdata`, stopped at the end), then
`bench/results.json` (one key per headline figure, then each part's details) and
`bench/results.md`. Speed is measured and written here, never asserted by a test.

Parts (docs/benchmark.md says what each measures):
- history: the daily `dbt build` against the length of history (and the full build);
- daily_run: one daily run end to end through Airflow, and the warehouse DAG's dbt step
  against one plain `dbt build` (starts from history's warehouse);
- gates: the quality gates (Great Expectations) against the same checks as one SQL query
  per suite (on the warehouse of the daily run, or of history's daily build);
- loads: raw file loads against `psql \\copy`, dlt and pandas `to_sql`;
- clv: the CLV models' fit and scoring of many customers (100,000 in both profiles).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psycopg

from lifecycle_warehouse import embedded, settings
from lifecycle_warehouse.bench import databases, history

PARTS = ("history", "daily_run", "gates", "loads", "clv")
# Parts that start from the warehouse the history part leaves.
NEEDS_HISTORY = ("daily_run", "gates")
HISTORY_DATABASE = "bench_history"  # the longest history after its full build
DAILY_DATABASE = "bench_daily"  # the warehouse after the daily run end to end

Report = Callable[[str], None]


@dataclass(frozen=True)
class Profile:
    """The sizes of one benchmark run."""

    name: str
    customers: int
    histories: tuple[int, ...]
    load_lines: int  # records of each raw file the loads part loads
    dbt_step_modes: tuple[str, ...]  # warehouse DAG modes compared with plain dbt, beside `report`
    gate_repeats: int
    clv_customers: int = 100_000  # customers whose CLV the clv part fits and scores
    web_traffic: float = 1.0  # web visits per person, times the simulator's (history.traffic_rates)
    # The daily_run part on the history's warehouse itself (no database copies: a warehouse
    # too big to copy); it then measures the day after the history part's day and compares
    # no dbt step modes.
    in_place: bool = False


PROFILES = {
    # A few minutes on 2 cores: every part, at sizes where fixed costs still show.
    "small": Profile("small", customers=1000, histories=(14, 56), load_lines=200_000, dbt_step_modes=(),
                     gate_repeats=3),
    # A year of 10,000 customers, 2M-line files and the Cosmos modes side by side on copies
    # of the warehouse. ~30 minutes on 2 cores, ~15 GB of disk.
    "medium": Profile("medium", customers=10_000, histories=(28, 364), load_lines=2_000_000,
                      dbt_step_modes=("cosmos_watcher", "cosmos"), gate_repeats=3),
    # Issue 21's sizes: 100,000 customers, a year (364 days, to a Monday; the daily run end
    # to end is the 366th day), ~100,000 web events a day (4× the simulator's traffic per
    # person), 2M-line files. The daily run in place. Hours on 2 cores; ~100 GB of disk at
    # the peak of its full build.
    "large": Profile("large", customers=100_000, histories=(28, 364), load_lines=2_000_000,
                     dbt_step_modes=(), gate_repeats=3, web_traffic=4.0, in_place=True),
}

# The headline figures: key of results.json, what it is, and the target.
TARGETS = {
    "warehouse_dag_dbt_vs_dbt_build": ("warehouse DAG's dbt step / one `dbt build`", "≤ 1.3", 1.3),
    "raw_load_jsonl_vs_copy": ("JSONL raw load / `psql \\copy`, same table shape", "≤ 1.2", 1.2),
    "raw_load_csv_vs_copy": ("CSV raw load / `psql \\copy`, same table shape", "≤ 1.2", 1.2),
    "raw_load_peak_rss_mb": ("raw loader's peak memory, MB", "< 200", 200),
    "gate_vs_sql": ("quality gates (GX) / the same checks as SQL", "≤ 1.5", 1.5),
    "daily_vs_full_build": ("daily `dbt build` / full build, longest history", "≤ 0.2", 0.2),
    "daily_vs_history_length": ("daily `dbt build`, longest / shortest history", "≤ 1.3", 1.3),
    "daily_end_to_end_s": ("daily run end to end (Airflow), seconds", "< 180", 180),
    "clv_fit_score_s": ("CLV fit and scores of 100,000 customers, seconds", "< 10", 10),
}


def parse_parts(text: str) -> tuple[str, ...]:
    """`lw bench --parts`: "gates,loads" -> ("history", "gates", "loads") (history first
    when a part needs its warehouse), in the order they run."""
    asked = {part.strip() for part in text.split(",") if part.strip()}
    unknown = asked - set(PARTS)
    if unknown or not asked:
        raise ValueError(f"unknown part(s) {', '.join(sorted(unknown)) or '(none)'}: expected some of {', '.join(PARTS)}")
    if asked & set(NEEDS_HISTORY):
        asked.add("history")
    return tuple(part for part in PARTS if part in asked)


def headline(results: Mapping) -> dict:
    """The key figures of the parts that ran (None for the others)."""
    figures: dict = dict.fromkeys(TARGETS)
    runs = (results.get("history") or {}).get("histories") or []
    if runs:
        longest, shortest = runs[-1], runs[0]
        figures["daily_vs_full_build"] = history.ratio(longest["full_build"]["wall_seconds"],
                                                       longest["daily_build"]["wall_seconds"])
        if len(runs) > 1:
            figures["daily_vs_history_length"] = history.ratio(shortest["daily_build"]["wall_seconds"],
                                                               longest["daily_build"]["wall_seconds"])
    daily = results.get("daily_run")
    if daily:
        figures["warehouse_dag_dbt_vs_dbt_build"] = daily["warehouse_dag_dbt_vs_dbt_build"]
        figures["daily_end_to_end_s"] = daily["end_to_end"]["seconds"]
    loads = results.get("loads")
    if loads:
        for key in ("raw_load_jsonl_vs_copy", "raw_load_csv_vs_copy", "raw_load_peak_rss_mb"):
            figures[key] = loads.get(key)
    gates = results.get("gates")
    if gates:
        figures["gate_vs_sql"] = gates.get("gate_vs_sql")
    clv = results.get("clv")
    if clv:
        figures["clv_fit_score_s"] = clv["fit_score_s"]
    return figures


def _met(key: str, value: float | None) -> str:
    if value is None:
        return "–"
    limit = TARGETS[key][2]
    strict = TARGETS[key][1].startswith("<")
    return "yes" if (value < limit if strict else value <= limit) else "**no**"


def render_markdown(results: Mapping) -> str:
    env = results["environment"]
    lines = [
        "# Benchmark",
        "",
        (f"`lw bench --profile {results['profile']['name']}` at {results['generated_at']}, parts "
         f"{', '.join(results['parts'])}; {env['cpu_count']} CPUs, PostgreSQL {env['postgres_version']}, "
         f"dbt-core {env['dbt_core_version']}, dbt-postgres {env['dbt_postgres_version']}, "
         f"apache-airflow {env['airflow_version']}, great-expectations {env['great_expectations_version']}. "
         "The machine may be shared: compare orders of magnitude. docs/benchmark.md says how to read each part."),
        "",
        "| figure | key | value | target | met |",
        "| --- | --- | ---: | ---: | :---: |",
    ]
    for key, (label, target, _) in TARGETS.items():
        value = results[key]
        shown = "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
        lines.append(f"| {label} | `{key}` | {shown} | {target} | {_met(key, value)} |")
    lines.append("")
    if results.get("history"):
        lines += [*history.markdown(results["history"]), ""]
    if results.get("daily_run"):
        from lifecycle_warehouse.bench import daily_run

        lines += [*daily_run.markdown(results["daily_run"]), ""]
    if results.get("gates"):
        from lifecycle_warehouse.bench import gates

        lines += [*gates.markdown(results["gates"]), ""]
    if results.get("loads"):
        from lifecycle_warehouse.bench import loads

        lines += [*loads.markdown(results["loads"]), ""]
    if results.get("clv"):
        from lifecycle_warehouse.bench import clv

        lines += [*clv.markdown(results["clv"]), ""]
    return "\n".join(lines)


def write_results(results: Mapping, out_dir: Path) -> tuple[Path, Path]:
    """Write results.json and results.md; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path.write_text(render_markdown(results))
    return json_path, md_path


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _environment_info(admin_url: str) -> dict:
    with psycopg.connect(admin_url) as conn:
        postgres_version = conn.execute("show server_version").fetchone()[0]
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python_version": platform.python_version(),
        "postgres_version": postgres_version,
        "dbt_core_version": _version("dbt-core"),
        "dbt_postgres_version": _version("dbt-postgres"),
        "airflow_version": _version("apache-airflow"),
        "great_expectations_version": _version("great-expectations"),
        "cosmos_version": _version("astronomer-cosmos"),
        "dlt_version": _version("dlt"),
        "pandas_version": _version("pandas"),
    }


def _quiet_loggers() -> None:
    """Importing Airflow's SDK turns on INFO logging for everything: keep the server's, the
    loaders' per-file lines and GX's import chatter out of the bench's output (warnings
    still show)."""
    for name in ("pgserver", "lifecycle_warehouse", "great_expectations"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run(profile: Profile, config: history.BenchConfig, parts: tuple[str, ...], report: Report = print) -> dict:
    """Every part asked for, on the bench's server; the results with their headline keys."""
    _quiet_loggers()
    report(f"starting the bench's embedded PostgreSQL in {config.pgdata} …")
    admin_url = embedded.start(config.pgdata)
    try:
        results: dict = {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "profile": {"name": profile.name, "load_lines": profile.load_lines,
                        "dbt_step_modes": list(profile.dbt_step_modes), "gate_repeats": profile.gate_repeats,
                        "web_traffic": config.web_traffic, "in_place": profile.in_place},
            "parts": list(parts),
            "environment": _environment_info(admin_url),
        }
        measured = None
        if "history" in parts:
            keep = None if profile.in_place else HISTORY_DATABASE
            results["history"] = history.run_histories(config, admin_url, report, keep_history_as=keep)
            longest = config.histories[-1]
            measured = config.start + timedelta(days=longest)
        warehouse = "warehouse"  # the history part's, after its daily build
        if "daily_run" in parts:
            from lifecycle_warehouse.bench import daily_run

            # in place: the day after the history part's (already built there); else the
            # same day again, on a copy of the warehouse as it was before that day
            if profile.in_place:
                measured += timedelta(days=1)
            results["daily_run"] = daily_run.run_daily(
                admin_url, history_template="warehouse" if profile.in_place else HISTORY_DATABASE,
                shop_url=databases.database_url(admin_url, "shop"),
                landing_dir=config.landing_dir(config.histories[-1]), day=measured,
                history_days=config.histories[-1], work_dir=config.work_dir, modes=profile.dbt_step_modes,
                report=report, keep_database=DAILY_DATABASE, in_place=profile.in_place)
            if not profile.in_place:
                warehouse = DAILY_DATABASE
        if "gates" in parts:
            from lifecycle_warehouse.bench import gates

            if "daily_run" not in parts:
                # the history part builds with dbt alone: the DAG's CLV task writes two marts
                from lifecycle_warehouse.clv.warehouse import write_marts

                write_marts(databases.database_url(admin_url, warehouse), measured)
            report(f"quality gates against SQL on the warehouse of {measured} …")
            results["gates"] = gates.run_gates(databases.database_url(admin_url, warehouse),
                                               measured + timedelta(days=1), repeats=profile.gate_repeats,
                                               report=report)
        if "loads" in parts:
            from lifecycle_warehouse.bench import loads

            results["loads"] = loads.run_loads(admin_url, config.work_dir / "bench-loads", profile.load_lines,
                                               report=report)
        if "clv" in parts:
            from lifecycle_warehouse.bench import clv

            results["clv"] = clv.run_clv(admin_url, profile.clv_customers, seed=config.seed, report=report)
        results.update(headline(results))
        return results
    finally:
        # the copies of the warehouse take disk (GBs at the large sizes); the server keeps
        # only the history part's databases, rebuilt by the next bench anyway
        databases.drop(admin_url, [HISTORY_DATABASE, DAILY_DATABASE])
        embedded.stop(config.pgdata)
        report(f"stopped the bench's embedded PostgreSQL ({config.pgdata})")


def config_for(profile: Profile, **overrides) -> history.BenchConfig:
    """The history part's configuration: the profile's sizes, then any option given."""
    config = history.BenchConfig(customers=profile.customers, histories=profile.histories,
                                 web_traffic=profile.web_traffic, days_after=2 if profile.in_place else 1,
                                 prune_landing=profile.in_place)
    given = {name: value for name, value in overrides.items() if value is not None}
    return replace(config, **given)


def default_out_dir() -> Path:
    return settings.PROJECT_ROOT / "bench"
