"""`simulate`: build the simulated world, write the landing zone and the shop database,
and record the truth file (or, with `shop_only`, write only the shop database)."""

from __future__ import annotations

import logging
import time

from lifecycle_warehouse.simulator import crm, ids, marketing, model, shop, truth, web
from lifecycle_warehouse.simulator.clock import Clock
from lifecycle_warehouse.simulator.config import SimulationConfig, SimulationResult
from lifecycle_warehouse.simulator.writers import write_shop

log = logging.getLogger(__name__)


DROPS_TABLES_FLAG = "--i-know-this-drops-tables"


def foreign_shop_refusal(shop_url: str) -> str | None:
    """Why the simulator must not write to `shop_url` without DROPS_TABLES_FLAG, or None when
    it is the embedded server's shop: simulating drops and recreates the contract's shop
    tables, and SHOP_DB_URL is meant to point at a real shop, which the pipeline only reads."""
    from lifecycle_warehouse import embedded, settings
    from lifecycle_warehouse.ingest import describe_url

    if embedded.is_embedded(shop_url, settings.pgdata_dir()):
        return None
    return (
        f"refusing to simulate into the shop database {describe_url(shop_url)}: it is not the embedded "
        "server, and simulating drops and recreates its tables (customers, orders, order_items, refunds, "
        "subscriptions). SHOP_DB_URL is meant to point at your real shop, which the pipeline only reads. "
        f"To simulate into that database anyway, add {DROPS_TABLES_FLAG} "
        f"(make sources SOURCES_ARGS={DROPS_TABLES_FLAG})."
    )


def simulate(config: SimulationConfig) -> SimulationResult:
    """Write `config.days` days of CRM, web and ad-spend files from `config.start` into the
    landing zone, fill the shop database with `config.history_days` of history up to the
    end of the window, and write the truth file. Same config and seed: same bytes.

    `config.shop_as_of`: the shop database holds the shop as it was at the end of that day
    instead of its final state (the world, and everything else written, is the same).
    `config.shop_only`: build the same world but write only the shop database."""
    started = time.perf_counter()
    config.validate()
    config = config.resolved()
    rates = config.rates
    clock = Clock(config.start, config.days, config.history_days)
    landing = config.landing_dir

    log.info("simulating %s persons, %s days from %s (seed %s)", config.customers, config.days, config.start,
             config.seed)
    phase = time.perf_counter()

    def done(what: str) -> None:
        nonlocal phase
        now = time.perf_counter()
        log.info("  %-28s %6.1f s", what, now - phase)
        phase = now

    world = model.build_world(config, clock)
    done(f"people and orders ({len(world.orders):,} orders)")
    plan_names = tuple(name for name, _, _ in rates.plans)
    as_of = None
    if config.shop_as_of is not None:
        as_of = shop.as_of_cutoff(config.shop_as_of)
        log.info("  shop as of the end of %s", config.shop_as_of)

    if config.shop_only:
        shop_counts = write_shop(config.shop_url, shop.shop_rows(world, plan_names, as_of=as_of),
                                 ids.SOURCE_TYPES[config.shop_ids])
        done("shop database (shop only)")
        return SimulationResult(
            rows={f"shop/{table}": n for table, n in shop_counts.items()},
            truth_file=None,
            elapsed_s=time.perf_counter() - started,
            shop_only=True,
            shop_as_of=config.shop_as_of,
        )

    crm_out = crm.write_crm(world, rates, config.seed, landing)
    done(f"crm files ({sum(crm_out.rows.values()):,} rows)")
    sessions, plan_stats = web.plan_sessions(world, rates, config.seed, crm_out.clicks)
    done(f"web sessions ({len(sessions):,})")
    web_out = web.write_events(world, sessions, rates, config.seed, landing, progress=config.progress)
    web_seconds = time.perf_counter() - phase
    done(f"web events ({web_out.rows:,})")
    del sessions
    ad_files, ad_stats = marketing.write_ad_spend(world, web_out.landings, config.seed, landing)
    shop_counts = write_shop(config.shop_url, shop.shop_rows(world, plan_names, as_of=as_of),
                             ids.SOURCE_TYPES[config.shop_ids])
    done("ad spend and shop database")

    files = dict(crm_out.files)
    rows = dict(crm_out.rows)
    files["web/events"], rows["web/events"] = web_out.files, web_out.rows
    files["marketing/ad_spend"], rows["marketing/ad_spend"] = ad_files.files, ad_files.total_rows
    for table, n in shop_counts.items():
        rows[f"shop/{table}"] = n
    truth_doc = truth.build_truth(config, world, crm_out.stats, web_out.stats, plan_stats, ad_stats, files, rows)
    if config.shop_as_of is not None:
        # `rows` counts the shop as written (as of that day); realized.shop is its final state
        truth_doc["config"]["shop_as_of"] = config.shop_as_of.isoformat()
    truth.write_truth(config.truth_file, truth_doc)

    elapsed = time.perf_counter() - started
    return SimulationResult(
        files=files,
        rows=rows,
        truth_file=config.truth_file,
        elapsed_s=elapsed,
        web_events_per_s=web_out.rows / web_seconds if web_seconds > 0 else 0.0,
        shop_as_of=config.shop_as_of,
    )
