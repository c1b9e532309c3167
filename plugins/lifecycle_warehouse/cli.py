"""`lw`: the command behind the Makefile targets.

    lw up | stop | urls | psql [DB] | sources | pipeline --from D --to D | summary | clv … | bench | builds | airflow … | dbt …
    lw local-airflow start|stop|status | bi [start|stop|status|export]

Every command prints what it did and where the results are; errors say what to do next.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from rich.console import Console

from lifecycle_warehouse import bootstrap, embedded, settings

# Wide enough for the summary tables when the output is a log or a pipe, not a terminal.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)

INGESTION_DAGS = ("crm_ingest", "web_ingest", "marketing_ingest", "shop_ingest")
WAREHOUSE_DAG = "warehouse"


def _uses_embedded() -> bool:
    """The embedded server is needed unless every database is given from outside."""
    external = ("WAREHOUSE_URL", "SHOP_DB_URL", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    return not all(os.environ.get(variable) for variable in external)


def cmd_up(args) -> int:
    started = time.monotonic()
    if _uses_embedded():
        embedded.start(settings.pgdata_dir())
        console.print(f"[green]✓[/] embedded PostgreSQL running (data: {settings.pgdata_dir()}, unix socket only, "
                      f"passwords required; password file {embedded.passfile(settings.pgdata_dir())})")
    bootstrap.bootstrap(settings.warehouse_url())
    console.print("[green]✓[/] warehouse schema `raw` ready")
    _ensure_bi_reader()
    _ensure_airflow_db()
    console.print(f"[green]✓[/] Airflow metadata database ready ({time.monotonic() - started:.1f} s)")
    return cmd_urls(args)


def _ensure_bi_reader() -> None:
    """The read-only role BI tools use, when its password is in the environment."""
    if not os.environ.get("BI_READER_PASSWORD"):
        console.print("  BI_READER_PASSWORD is not set: role bi_reader not created "
                      "(set it and rerun `make up` to let a BI tool read `analytics`)")
        return
    from lifecycle_warehouse.access import ensure_bi_reader

    ensure_bi_reader(settings.warehouse_admin_url(), owner=_warehouse_owner())
    console.print("[green]✓[/] role bi_reader can read `analytics` (and nothing else)")


def _warehouse_owner() -> str | None:
    """The role that owns (and publishes) the warehouse: on the embedded server
    `warehouse_owner`; with WAREHOUSE_URL, the role of that URL (None: the connecting one)."""
    return None if os.environ.get("WAREHOUSE_URL") else embedded.OWNER_ROLE


def _ensure_airflow_db() -> None:
    from lifecycle_warehouse import runtime

    runtime.ensure_airflow_db(on_migrate=lambda: console.print(
        "  migrating Airflow's metadata database (first time only) …"))


def cmd_reset(args) -> int:
    """Empty the embedded warehouse (a new `warehouse` database): `make demo` regenerates
    every source from scratch, so the watermarks and rows of an earlier demo must go too."""
    if os.environ.get("WAREHOUSE_URL"):
        console.print("[red]✗ refusing to reset: WAREHOUSE_URL points at a server the project does not own[/]")
        return 2
    embedded.recreate_database(settings.pgdata_dir(), "warehouse")
    bootstrap.bootstrap(settings.warehouse_url())
    _ensure_bi_reader()
    console.print("[green]✓[/] embedded warehouse emptied (new database `warehouse`, schema `raw` ready)")
    return 0


def cmd_stop(args) -> int:
    from lifecycle_warehouse import local_airflow

    from lifecycle_warehouse import bi

    # First what reads the server: Superset (`make bi`), the local Airflow (`make airflow`).
    if bi.stop_server():
        console.print("[green]✓[/] Superset stopped")
    local_airflow.stop(say=_say)
    if embedded.stop(settings.pgdata_dir()):
        console.print(f"[green]✓[/] embedded PostgreSQL stopped ({settings.pgdata_dir()})")
    else:
        console.print("embedded PostgreSQL was not running")
    return 0


def cmd_urls(args) -> int:
    """The URLs the project uses. The embedded server's carry no password (they name its
    password file); a password in a URL from the environment is masked unless
    --show-secrets is given."""
    for name, getter in (("WAREHOUSE_URL", settings.warehouse_url), ("SHOP_DB_URL", settings.shop_db_url)):
        try:
            url = getter()
        except settings.ConfigurationError as error:
            console.print(f"[red]{name}: {error}[/]")
            return 1
        console.print(f"{name}={shown_url(url, show_secrets=getattr(args, 'show_secrets', False))}",
                      markup=False, highlight=False)
    return 0


def shown_url(url: str, *, show_secrets: bool) -> str:
    """`url` with its password masked (***), or with the password written in (taken from
    the embedded server's password file when the URL names it) when show_secrets."""
    from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.hostname is None and "@" not in parts.netloc and not parts.query:
        return url  # not a URL we can parse (a key=value string): printed as given
    user_info, at, host = parts.netloc.rpartition("@")
    user, colon, password = user_info.partition(":")
    if show_secrets:
        passfile = parse_qs(parts.query).get("passfile", [None])[0]
        if not password and passfile and embedded.is_embedded(url, settings.pgdata_dir()):
            password = quote(embedded.password(settings.pgdata_dir(), unquote(user)) or "", safe="")
        query = "&".join(p for p in parts.query.split("&") if not p.startswith("passfile="))
        netloc = f"{user}:{password}@{host}" if password else parts.netloc
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    if password:
        return urlunsplit(parts._replace(netloc=f"{user}:***{at}{host}"))
    return url


def cmd_psql(args) -> int:
    url = settings.shop_db_url() if args.database == "shop" else settings.warehouse_url()
    return embedded.run_psql(url)


def cmd_sources(args) -> int:
    from lifecycle_warehouse.simulator import SimulationConfig, simulate
    from lifecycle_warehouse.simulator.simulation import foreign_shop_refusal

    shop_url = settings.shop_writer_url()
    refusal = None if args.i_know_this_drops_tables else foreign_shop_refusal(shop_url)
    if refusal:
        console.print(f"[red]✗ {refusal}[/]")
        return 2
    config = SimulationConfig(
        start=args.start,
        days=args.days,
        customers=args.customers,
        seed=args.seed,
        shop_ids=args.shop_ids,
        landing_dir=settings.landing_dir(),
        shop_url=shop_url,
        truth_file=settings.simulator_truth_file(),
        progress=True,
        shop_as_of=args.shop_as_of,
        shop_only=args.shop_only,
    )
    try:
        config.validate()  # e.g. --shop-as-of outside history and window: refused before anything is written
    except ValueError as exc:
        console.print(f"[red]✗ {exc}[/]")
        return 2
    started = time.monotonic()
    result = simulate(config)
    console.print(f"[green]✓[/] simulated {args.days} days from {args.start} for {args.customers} customers "
                  f"(seed {args.seed}) in {time.monotonic() - started:.1f} s")
    if not args.shop_only:
        console.print(f"  landing zone: {settings.landing_dir()}")
    as_of = f" (as of the end of {args.shop_as_of})" if args.shop_as_of else ""
    console.print(f"  shop database{as_of}: {shown_url(shop_url, show_secrets=False)}")
    if not args.shop_only:
        console.print(f"  planted rates: {settings.simulator_truth_file()}")
    console.print(result.summary())
    return 0


def cmd_pipeline(args) -> int:
    if args.date_to < args.date_from:
        console.print(f"[red]TO ({args.date_to}) is before FROM ({args.date_from})[/]")
        return 2
    from lifecycle_warehouse.pipeline_lock import one_pipeline_at_a_time

    # One `lw pipeline` at a time per warehouse: a second one waits for the first (pipeline_lock).
    with one_pipeline_at_a_time(settings.warehouse_url(), f"{args.date_from}..{args.date_to}", say=_say):
        return _run_pipeline(args)


def _run_pipeline(args) -> int:
    from lifecycle_warehouse import runtime

    _ensure_airflow_db()
    # The warehouse DAG is rendered from dbt's manifest: rebuild it so that model changes
    # show up (~4 s).
    from lifecycle_warehouse import dbt_runner

    dbt_runner.parse_manifest()
    if args.dag:
        dags = args.dag
    else:
        dags = list(INGESTION_DAGS) + ([] if args.ingest_only else [WAREHOUSE_DAG])
    console.print(f"Running {', '.join(dags)} for {args.date_from} … {args.date_to} (real Airflow runs)")
    # Quiet by default: a line per task, Airflow's whole output in a log file (pipeline_console).
    from lifecycle_warehouse import pipeline_console

    verbose = pipeline_console.verbose_requested(args.verbose)
    started = time.monotonic()
    run = pipeline_console.run(
        [sys.executable, "-m", "lifecycle_warehouse.airflow_runs",
         "--from", args.date_from.isoformat(), "--to", args.date_to.isoformat(), *dags],
        runtime.environment(), console, verbose=verbose,
    )
    code = run.code
    elapsed = time.monotonic() - started
    if code != 0:
        where = "the task log above names" if verbose else "the lines above name"
        console.print(f"[red]✗ pipeline failed after {elapsed:.0f} s[/]: {where} the failing task; "
                      "once fixed, rerun (every load is idempotent):")
        for command in pipeline_console.rerun_commands(
                args.date_from, args.date_to, args.dag, args.ingest_only, dags, run.finished,
                via_make="MAKELEVEL" in os.environ, program=pipeline_console.lw_program()):
            console.print(f"    {command}", markup=False, highlight=False)
        return code
    console.print(f"[green]✓[/] pipeline finished in {elapsed:.0f} s")
    return cmd_summary(args)


def cmd_quarantine(args) -> int:
    """List the quarantine, or replay it with today's contract."""
    from rich.table import Table

    from lifecycle_warehouse.ingest import quarantine

    selection = quarantine.Selection(args.source, args.entity, args.rule, args.date_from, args.date_to)
    url = settings.warehouse_url()
    if args.action == "replay":
        replays = quarantine.replay(url, settings.landing_dir(), selection)
        if not replays:
            console.print("no quarantined record matches")
            return 0
        table = Table(title="Quarantine replayed with today's contract")
        for column in ("source/entity", "date folder", "replayed", "loaded", "still quarantined"):
            table.add_column(column, justify="left" if column in ("source/entity", "still quarantined") else "right")
        for r in replays:
            still = [f"{n} × {rule}" for rule, n in r.still_quarantined.most_common()]
            still += [f"{n} not replayable: {why}" for why, n in r.not_replayable.items()]
            table.add_row(f"{r.source}/{r.entity}", r.dt.isoformat(), f"{r.replayed:,}", f"{r.loaded:,}",
                          "\n".join(still) or "0")
        console.print(table)
        loaded = sum(r.loaded for r in replays)
        console.print(f"[green]✓[/] {loaded:,} record(s) loaded into raw; the next warehouse run "
                      "reprocesses their dates (`make pipeline` or the scheduled run)")
        return 0
    rows = quarantine.counts(url, selection)
    if not rows:
        console.print("the quarantine is empty" + (" for this selection" if selection != quarantine.Selection() else ""))
        return 0
    table = Table(title="raw.quarantine: records by source, entity, rule and date folder")
    for column in ("source/entity", "rule", "date folder", "records"):
        table.add_column(column, justify="right" if column == "records" else "left")
    for source, entity, rule, dt, records in rows:
        table.add_row(f"{source}/{entity}", rule, dt.isoformat() if dt else "–", f"{records:,}")
    console.print(table)
    console.print("Replay after fixing the contract: `lw quarantine replay [--source S] [--entity E] "
                  "[--rule TEXT] [--from D --to D]`")
    return 0


def cmd_summary(args) -> int:
    from lifecycle_warehouse import summary

    summary.print_summary(console, settings.warehouse_url(), args.date_from, args.date_to)
    return 0


def cmd_clv(args) -> int:
    """Fit the CLV models for any as-of date, or backtest them, without writing the marts."""
    import json

    from lifecycle_warehouse.clv import report, warehouse

    url = settings.warehouse_url()
    try:
        if args.action == "fit":
            if args.as_of is None:
                raise SystemExit("lw clv fit needs --as-of YYYY-MM-DD")
            summary, fitted = warehouse.fit_as_of(url, args.as_of)
            result = fitted.as_dict()
            result["repeat_buyers"] = summary.repeat_buyers
        else:
            if args.calibration_end is None or args.holdout_end is None:
                raise SystemExit("lw clv backtest needs --calibration-end D1 --holdout-end D2")
            result = warehouse.backtest(url, args.calibration_end, args.holdout_end)
    except (RuntimeError, ValueError) as error:
        console.print(f"[red]✗ {error}[/]")
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report.print_result(console, result)
    return 0 if result.get("problem") is None else 2


def cmd_bi(args) -> int:
    """Apache Superset with the Customer lifecycle dashboard (lifecycle_warehouse.bi)."""
    from lifecycle_warehouse import bi

    try:
        if args.action == "stop":
            console.print("[green]✓[/] Superset stopped" if bi.stop_server() else "Superset was not running")
            return 0
        if args.action == "status":
            pid = bi.running_pid()
            console.print(f"Superset runs (pid {pid}) on {bi.base_url()}" if pid else "Superset is not running")
            return 0
        if args.action == "export":
            written = bi.export_assets(bi.Api(bi.load_secrets().admin_password))
            console.print(f"[green]✓[/] {len(written)} file(s) written to {bi.ASSETS_DIR}: review and commit them")
            return 0
        started = bi.start(report=console.print)
    except bi.BiError as error:
        console.print(f"[red]✗ {error}[/]")
        return 1
    console.print(f"[green]✓[/] Superset: {started['url']}")
    if started["password"]:
        console.print(f"  login {started['user']} / {started['password']}  (generated once; kept in "
                      f"{started['password_file']}; set BI_ADMIN_PASSWORD to choose it)")
    else:
        console.print(f"  login {started['user']}, password in {started['password_file']} (or BI_ADMIN_PASSWORD)")
    console.print(f"  the warehouse is connected as bi_reader (analytics only); log: {started['log']}; "
                  "`make stop` stops it")
    return 0


def _histories(text: str) -> tuple[int, ...]:
    """argparse type of `lw bench --histories` (imports the bench module only when used)."""
    from lifecycle_warehouse.bench.history import parse_histories

    return parse_histories(text)


def _repeats(text: str) -> int:
    """argparse type of `lw bench --repeats` (imports the bench module only when used)."""
    from lifecycle_warehouse.bench.history import parse_repeats

    return parse_repeats(text)


def _parts(text: str) -> tuple[str, ...]:
    """argparse type of `lw bench --parts`."""
    from lifecycle_warehouse.bench.run import parse_parts

    try:
        return parse_parts(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _say(line: str) -> None:
    console.print(line, markup=False)


def cmd_local_airflow(args) -> int:
    """A real local Airflow in the background (`make airflow`): start, stop or status."""
    from lifecycle_warehouse import local_airflow

    if args.action == "start":
        return local_airflow.start(say=_say, executor=args.executor, workers=args.workers)
    if args.action == "stop":
        if not local_airflow.stop(say=_say):
            console.print("local Airflow was not running")
        return 0
    return local_airflow.status(say=_say)


def cmd_airflow(args) -> int:
    from lifecycle_warehouse import runtime

    return subprocess.call([runtime.airflow_bin(), *args.rest], env=runtime.environment())


def cmd_dbt(args) -> int:
    """dbt in the project, with the profile from WAREHOUSE_URL. The dbt project itself takes
    the warehouse and plans the build (macros/warehouse_builds.sql), as for plain dbt."""
    from lifecycle_warehouse import dbt_runner

    return dbt_runner.run(args.rest, check=False)


def cmd_builds(args) -> int:
    """The builds that hold the warehouse, or end one that was interrupted."""
    from lifecycle_warehouse import warehouse_tasks

    url = settings.warehouse_url()
    if args.end:
        warehouse_tasks.end_build(url, args.end)
        console.print(f"[green]✓[/] build {args.end} ended: other builds can start")
    running = warehouse_tasks.running_builds(url)
    if not running:
        console.print("no build holds the warehouse")
    for run_id, kind, started_at in running:
        what = "warehouse run" if kind == "dag" else "dbt build"
        console.print(f"{what} {run_id} holds the warehouse since {started_at:%Y-%m-%d %H:%M:%S %Z}")
    return 0


def cmd_bench(args) -> int:
    """Measure the project's performance (docs/benchmark.md)."""
    from lifecycle_warehouse.bench import history, run

    profile = run.PROFILES[args.profile]
    config = run.config_for(profile, customers=args.customers, histories=args.histories,
                            web_traffic=args.web_traffic, seed=args.seed,
                            start=args.start, threads=args.threads, repeats=args.repeats)
    parts = args.parts or run.PARTS
    out_dir = args.out.resolve() if args.out else run.default_out_dir()
    started = time.monotonic()
    try:
        results = run.run(profile, config, parts, report=console.print)
    except history.BenchError as error:
        console.print(f"[red]✗ {error}[/]")
        return 1
    json_path, md_path = run.write_results(results, out_dir)
    if results.get("history"):
        console.print(history.rich_table(results["history"]))
    for key in run.TARGETS:
        console.print(f"  {key}: {results[key] if results[key] is None else round(results[key], 2)}")
    console.print(f"[green]✓[/] benchmark finished in {time.monotonic() - started:.0f} s: {md_path}, {json_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lw", description="Lifecycle Warehouse commands")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the embedded PostgreSQL, create schemas, migrate Airflow").set_defaults(func=cmd_up)
    sub.add_parser("stop", help="stop Superset (lw bi), the local Airflow (lw local-airflow), then the embedded PostgreSQL"
                   ).set_defaults(func=cmd_stop)
    sub.add_parser("reset", help="empty the embedded warehouse (new `warehouse` database)").set_defaults(func=cmd_reset)
    urls = sub.add_parser("urls", help="print WAREHOUSE_URL and SHOP_DB_URL (passwords masked)")
    urls.add_argument("--show-secrets", action="store_true", help="print the passwords too")
    urls.set_defaults(func=cmd_urls)
    psql = sub.add_parser("psql", help="open psql on the warehouse (or the shop)")
    psql.add_argument("database", nargs="?", choices=("warehouse", "shop"), default="warehouse")
    psql.set_defaults(func=cmd_psql)

    sources = sub.add_parser("sources", help="simulate the sources: landing zone + shop database")
    sources.add_argument("--start", type=date.fromisoformat, default=date(2026, 9, 1))
    sources.add_argument("--days", type=int, default=60)
    sources.add_argument("--customers", type=int, default=3000)
    sources.add_argument("--seed", type=int, default=42)
    sources.add_argument("--shop-ids", choices=("integer", "text", "uuid"), default="integer",
                         help="type of the shop's ids: integer (default), text (e.g. ord_3f9a…) or uuid")
    sources.add_argument("--i-know-this-drops-tables", dest="i_know_this_drops_tables", action="store_true",
                         help="allow simulating into a shop database other than the embedded one "
                              "(its contract tables are dropped and recreated)")
    sources.add_argument("--shop-as-of", type=date.fromisoformat, metavar="YYYY-MM-DD",
                         help="write the shop as it was at the end of this day (rows and versions before the "
                              "next midnight UTC) instead of its final state")
    sources.add_argument("--shop-only", action="store_true",
                         help="write only the shop database (no landing files, no truth file)")
    sources.set_defaults(func=cmd_sources)

    quarantine = sub.add_parser("quarantine", help="quarantined records by source, entity, rule and date; "
                                                   "`replay` loads those that pass today's contract")
    quarantine.add_argument("action", nargs="?", choices=("list", "replay"), default="list")
    quarantine.add_argument("--source")
    quarantine.add_argument("--entity")
    quarantine.add_argument("--rule", help="records whose rule contains this text (any case)")
    quarantine.add_argument("--from", dest="date_from", type=date.fromisoformat, help="first date folder")
    quarantine.add_argument("--to", dest="date_to", type=date.fromisoformat, help="last date folder")
    quarantine.set_defaults(func=cmd_quarantine)

    clv = sub.add_parser("clv", help="fit the CLV models (BG/NBD, Gamma-Gamma) for a date, or backtest them; "
                                     "writes nothing (docs/clv.md)")
    clv.add_argument("action", choices=("fit", "backtest"))
    clv.add_argument("--as-of", dest="as_of", type=date.fromisoformat, metavar="YYYY-MM-DD",
                     help="fit: valid orders up to this day (inclusive)")
    clv.add_argument("--calibration-end", dest="calibration_end", type=date.fromisoformat, metavar="YYYY-MM-DD",
                     help="backtest: fit on valid orders up to this day")
    clv.add_argument("--holdout-end", dest="holdout_end", type=date.fromisoformat, metavar="YYYY-MM-DD",
                     help="backtest: compare predictions with the actual purchases up to this day")
    clv.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    clv.set_defaults(func=cmd_clv)

    bi = sub.add_parser("bi", help="Apache Superset with the Customer lifecycle dashboard on 127.0.0.1 (BI_PORT)")
    bi.add_argument("action", nargs="?", choices=("start", "stop", "status", "export"), default="start",
                    help="start (default; installs, imports the dashboard), stop, status, or export the "
                         "dashboard edited in Superset into bi/superset/")
    bi.set_defaults(func=cmd_bi)

    bench = sub.add_parser("bench", help="measure the project's performance (docs/benchmark.md)")
    bench.add_argument("--profile", choices=("small", "medium", "large"), default="small",
                       help="sizes of every part (default small: a few minutes; large: issue 21's sizes, hours)")
    bench.add_argument("--parts", type=_parts, default=None,
                       help="comma-separated: history,daily_run,gates,loads,clv (default all; daily_run and gates "
                            "start from history's warehouse, so they bring it)")
    bench.add_argument("--customers", type=int, help="persons of the simulation (default: the profile's)")
    bench.add_argument("--histories", type=_histories,
                       help="days of history before the measured day, e.g. 28,112 (default: the profile's)")
    bench.add_argument("--web-traffic", type=float,
                       help="web visits per person, times the simulator's (default: the profile's; large 4)")
    bench.add_argument("--seed", type=int, help="random seed (default 42)")
    bench.add_argument("--start", type=date.fromisoformat, help="first simulated day (default 2026-06-01)")
    bench.add_argument("--threads", type=int,
                       help="dbt threads of the history part's builds (default 1: each node's time is its own)")
    bench.add_argument("--repeats", type=_repeats,
                       help="runs of the history part's daily build; each node's fastest is kept (default 3)")
    bench.add_argument("--out", type=Path, default=None,
                       help="folder for results.json and results.md (default: bench/ in the repo)")
    bench.set_defaults(func=cmd_bench)

    builds = sub.add_parser("builds", help="the builds (warehouse DAG runs, dbt commands) that hold the warehouse")
    builds.add_argument("--end", metavar="RUN_ID", help="end a build that was interrupted (a DAG run before its end_build task)")
    builds.set_defaults(func=cmd_builds)

    for name, func, help_ in (("pipeline", cmd_pipeline, "run the DAGs over a date range"),
                              ("summary", cmd_summary, "print what was loaded and quarantined")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--from", dest="date_from", type=date.fromisoformat, required=True)
        p.add_argument("--to", dest="date_to", type=date.fromisoformat, required=True)
        if name == "pipeline":
            p.add_argument("--ingest-only", action="store_true", help="run the ingestion DAGs only")
            p.add_argument("--dag", action="append", choices=(*INGESTION_DAGS, WAREHOUSE_DAG),
                           help="run only this DAG (repeatable); default: every DAG, ingestion first")
            p.add_argument("--verbose", action="store_true",
                           help="stream Airflow's whole output (also LW_VERBOSE=1); default: a line per task, "
                                "the output in AIRFLOW_HOME/logs/pipeline/")
        p.set_defaults(func=func)

    local_airflow = sub.add_parser(
        "local-airflow", help="a real local Airflow in the background (scheduler, dag-processor, triggerer, "
                              "api-server on 127.0.0.1:$AIRFLOW_PORT, default 8080): start, stop, status")
    local_airflow.add_argument("action", choices=("start", "stop", "status"))
    local_airflow.add_argument("--executor", choices=("local", "celery"),
                               help="start: LocalExecutor (default, LW_AIRFLOW_EXECUTOR) or CeleryExecutor on the "
                                    "broker of LW_CELERY_BROKER_URL")
    local_airflow.add_argument("--workers", type=int, metavar="N",
                               help="start --executor celery: N `airflow celery worker` processes "
                                    "(LW_CELERY_WORKERS, default 2)")
    local_airflow.set_defaults(func=cmd_local_airflow)

    for name, func in (("airflow", cmd_airflow), ("dbt", cmd_dbt)):
        p = sub.add_parser(name, help=f"run {name} with the project's environment", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=func)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except settings.ConfigurationError as error:
        console.print(f"[red]✗ {error}[/]")
        return 1


if __name__ == "__main__":
    sys.exit(main())
