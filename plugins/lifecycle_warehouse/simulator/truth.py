"""The truth file: what was planted (seed, config, every rate) and what came out of the
draws (counts per source, and lifecycle figures computed straight from the simulated
people), so that tests can check the warehouse's KPIs against known values.

Realized figures follow the definitions of docs/kpis.md where they share a name (valid
order, active = last valid order within 180 days, repeat purchase rate, ...).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from lifecycle_warehouse import contract
from lifecycle_warehouse.simulator import catalog
from lifecycle_warehouse.simulator.clock import DAY
from lifecycle_warehouse.simulator.config import SimulationConfig
from lifecycle_warehouse.simulator.model import World

ACTIVE_DAYS = 180  # docs/kpis.md: active at t = last valid order within 180 days


def lifecycle_figures(world: World) -> dict:
    clock = world.clock
    end = clock.end
    stats = Counter()
    first_orders_in_window = 0
    for person in world.persons:
        valid = [o for o in person.orders if o.valid]
        if not valid:
            continue
        stats["persons_with_valid_order"] += 1
        if len(valid) >= 2:
            stats["persons_with_2plus_valid_orders"] += 1
        if clock.start <= valid[0].ordered_at < end:
            first_orders_in_window += 1
        if end - valid[-1].ordered_at <= ACTIVE_DAYS * DAY:
            stats["active_at_end"] += 1
        else:
            stats["churned_at_end"] += 1
        for prev, nxt in zip(valid, valid[1:]):
            if nxt.ordered_at - prev.ordered_at > ACTIVE_DAYS * DAY:
                stats["reactivations"] += 1
                if nxt.ordered_at >= clock.start:
                    stats["reactivations_in_window"] += 1
        stats["winback_orders"] += sum(1 for o in valid if o.after_winback)
    with_order = stats["persons_with_valid_order"]
    stats["new_customers_in_window"] = first_orders_in_window
    out = dict(sorted(stats.items()))
    out["repeat_purchase_rate_at_end"] = (
        round(stats["persons_with_2plus_valid_orders"] / with_order, 6) if with_order else None
    )
    return out


def shop_figures(world: World) -> dict:
    clock = world.clock
    by_status = Counter(o.status for o in world.orders)
    in_window = Counter(o.status for o in world.orders if o.ordered_at >= clock.start)
    revenue = Counter()
    for o in world.orders:
        if o.valid and o.ordered_at >= clock.start:
            revenue[o.currency] += o.total
    refunds = Counter()
    for r in world.refunds:
        refunds[r.order.currency] += r.amount_cents
    customers = [p for p in world.persons if p.customer_id is not None]
    variants = Counter(p.email_variant for p in customers if p.email_variant)
    subs = Counter(s.status for s in world.subscriptions)
    mrr = Counter()
    for s in world.subscriptions:
        if s.status != "canceled":
            mrr[s.currency] += s.mrr_cents
    return {
        "customers": len(customers),
        "customers_without_contact": sum(1 for p in customers if p.contact_id is None),
        "customers_with_email_variant": sum(variants.values()),
        "email_variants": dict(sorted(variants.items())),
        "orders": len(world.orders),
        "orders_by_status": {s: by_status.get(s, 0) for s in contract.ORDER_STATUSES},
        "orders_in_window_by_status": {s: in_window.get(s, 0) for s in contract.ORDER_STATUSES},
        "valid_orders": sum(by_status.get(s, 0) for s in ("paid", "shipped", "delivered", "refunded")),
        "orders_by_channel": dict(sorted(Counter(o.channel for o in world.orders).items())),
        "orders_with_coupon": sum(1 for o in world.orders if o.coupon),
        "order_items": sum(len(o.items) for o in world.orders),
        "valid_revenue_in_window_by_currency": {k: v / 100 for k, v in sorted(revenue.items())},
        "refunds": len(world.refunds),
        "partial_refunds": sum(1 for r in world.refunds if r.partial),
        "refunded_amount_by_currency": {k: v / 100 for k, v in sorted(refunds.items())},
        "subscriptions_by_status": dict(sorted(subs.items())),
        "mrr_at_end_by_currency": {k: v / 100 for k, v in sorted(mrr.items())},
        "first_ordered_at": clock.iso(world.orders[0].ordered_at) if world.orders else None,
    }


def channel_mapping(world: World) -> list[dict]:
    """utm_source / utm_medium / referrer combinations the simulator uses, with the
    ad-spend channel they belong to: the basis for the warehouse's channel-mapping seed."""
    seen = {}
    for c in world.campaigns:
        key = (c.spec.utm_source, c.spec.utm_medium)
        seen.setdefault(key, c.channel)
    rows = [{"utm_source": s, "utm_medium": m, "referrer_domain": None, "channel": ch} for (s, m), ch in seen.items()]
    implied = {"organic_search": "organic_search", "organic_social": "organic_social", "referral_site": "referral"}
    for kind, referrers in catalog.ORGANIC_REFERRERS.items():
        for ref in sorted(set(referrers)):
            domain = ref.split("/")[2]
            rows.append({"utm_source": None, "utm_medium": None, "referrer_domain": domain, "channel": implied[kind]})
    return rows


def build_truth(config: SimulationConfig, world: World, crm_stats: dict, web_stats: dict, plan_stats: dict,
                ad_stats: dict, files: dict, rows: dict) -> dict:
    rates = config.rates
    clock = world.clock
    known = world.persons
    contacts = [p for p in known if p.has_contact and p.acquired_at < clock.end]
    return {
        "seed": config.seed,
        "config": {
            "start": config.start.isoformat(),
            "days": config.days,
            "end_exclusive": clock.date_of_index(config.days).isoformat(),
            "customers": config.customers,
            "history_days": config.history_days,
            "history_start": clock.date_of(clock.history_start).isoformat(),
            "shop_ids": config.shop_ids,
            "landing_dir": str(config.landing_dir),
            # the shop URL may hold credentials: not written here
        },
        "rates": asdict(rates),
        "derived_from_rates": {
            "p_repeat_within_365d": round(rates.expected_repeat_within_days(365), 6),
            "p_repeat_within_90d": round(rates.expected_repeat_within_days(90), 6),
            "mean_purchases_per_week": rates.bgnbd_r / rates.bgnbd_alpha,
            "mean_dropout_p": rates.bgnbd_a / (rates.bgnbd_a + rates.bgnbd_b),
            "expected_order_value_usd": round(rates.expected_order_value_usd(), 4),
            "nps_loyal": _nps(rates.nps_loyal),
            "nps_other": _nps(rates.nps_other),
            "csat": round(100 * sum(rates.csat[3:]), 4),
            "price_list_factors_vs_usd": catalog.PRICE_FACTORS,
        },
        "realized": {
            "persons": {
                "known": len(known),
                "anonymous_only_visitors": plan_stats.get("anonymous_visitors", 0),
                "contacts": len(contacts),
                "contacts_without_orders": sum(1 for p in contacts if not p.orders),
                "engaged_contacts": sum(1 for p in contacts if p.engaged),
                "by_acquisition_channel": dict(sorted(Counter(p.channel for p in known).items())),
                "web_signups_in_window": plan_stats.get("web_signups_in_window", 0),
                # P(identify) as realized: sign-ups among first-time visitors of the window
                "identify_share_of_new_visitors": _share(
                    plan_stats.get("web_signups_in_window", 0),
                    plan_stats.get("web_signups_in_window", 0) + plan_stats.get("anonymous_visitors", 0),
                ),
                "first_order_share_engaged": _share(
                    sum(1 for p in contacts if p.engaged and any(o.valid for o in p.orders)),
                    sum(1 for p in contacts if p.engaged),
                ),
                "first_order_share_not_engaged": _share(
                    sum(1 for p in contacts if not p.engaged and any(o.valid for o in p.orders)),
                    sum(1 for p in contacts if not p.engaged),
                ),
                "referred_with_referrer": sum(1 for p in known if p.referrer is not None),
            },
            "lifecycle": lifecycle_figures(world),
            "shop": shop_figures(world),
            "crm": crm_stats,
            "web": {**web_stats, "planned": plan_stats},
            "marketing": ad_stats,
        },
        "channel_mapping": channel_mapping(world),
        "files": dict(sorted(files.items())),
        "rows": dict(sorted(rows.items())),
    }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _nps(dist: tuple[float, ...]) -> float:
    return round(100 * (sum(dist[9:]) - sum(dist[:7])), 4)


def write_truth(path: Path, truth: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(truth, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
