"""Rows of the shop's operational tables, in the contract's column order, as text values
for COPY: their current state at the end of the simulation, or, with `as_of`, the shop as
it was at an earlier time (every row created before it, each in its version of then)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

from lifecycle_warehouse import contract
from lifecycle_warehouse.simulator.clock import Clock, epoch_seconds
from lifecycle_warehouse.simulator.model import Person, World

FIELDS = {
    "customers": ("customer_id", "email", "created_at", "updated_at"),
    "orders": (
        "order_id", "customer_id", "status", "currency", "subtotal", "discount", "shipping", "tax", "total",
        "coupon_code", "channel", "ordered_at", "updated_at",
    ),
    "order_items": (
        "order_id", "line_number", "sku", "product_name", "category", "quantity", "unit_price", "updated_at",
    ),
    "refunds": ("refund_id", "order_id", "amount", "reason", "refunded_at", "updated_at"),
    "subscriptions": (
        "subscription_id", "customer_id", "plan", "status", "mrr", "currency", "started_at", "canceled_at",
        "updated_at",
    ),
}


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def check_contract() -> None:
    for table in contract.SHOP_TABLES:
        fields = FIELDS.get(table.table)
        if fields != tuple(c.name for c in table.columns):
            raise RuntimeError(
                f"simulator writes shop.{table.table} columns {fields}, but the contract says "
                f"{tuple(c.name for c in table.columns)}: update the simulator"
            )


def as_of_cutoff(day: date) -> float:
    """The shop as of the end of `day` is its state at the next midnight (UTC), exclusive:
    what happened before `day + 1, 00:00:00`."""
    return epoch_seconds(day + timedelta(days=1))


def customer_updated_before(person: Person, t: float) -> float:
    """`updated_at` of a customer's row just before `t`. The only change of a customer row
    is a later profile edit (it moves `updated_at`; email and created_at stay): edited
    before `t`, the edit's time; else the row as created (`updated_at = created_at`)."""
    return person.customer_updated_at if person.customer_updated_at < t else person.customer_created_at


def shop_rows(world: World, plan_names: tuple[str, ...], as_of: float | None = None) -> dict[str, Iterator[tuple]]:
    """Rows per shop table. `as_of` (epoch seconds, e.g. `as_of_cutoff(day)`): the shop as it
    was at that time — only rows created before it, each in its last version before it."""
    check_contract()
    clock: Clock = world.clock
    if as_of is not None:
        return _rows_as_of(world, plan_names, as_of)
    pg = clock.pg
    customers = sorted((p for p in world.persons if p.customer_id is not None), key=lambda p: p.customer_id)

    def customer_rows():
        for p in customers:
            yield (p.customer_id, p.email_shop, pg(p.customer_created_at), pg(p.customer_updated_at))

    def order_rows():
        for o in world.orders:
            yield (
                o.order_id, o.person.customer_id, o.status, o.currency, money(o.subtotal), money(o.discount),
                money(o.shipping), money(o.tax), money(o.total), o.coupon, o.channel, pg(o.ordered_at),
                pg(o.updated_at),
            )

    def item_rows():
        for o in world.orders:
            for n, (product, qty, price) in enumerate(o.items, start=1):
                yield (o.order_id, n, product.sku, product.name, product.category, qty, money(price), pg(o.ordered_at))

    def refund_rows():
        for r in world.refunds:
            yield (r.refund_id, r.order.order_id, money(r.amount_cents), r.reason, pg(r.refunded_at), pg(r.refunded_at))

    def subscription_rows():
        for s in world.subscriptions:
            yield (
                s.subscription_id, s.person.customer_id, plan_names[s.plan_index], s.status, money(s.mrr_cents),
                s.currency, pg(s.started_at), pg(s.canceled_at) if s.canceled_at is not None else None,
                pg(s.updated_at),
            )

    return {
        "customers": customer_rows(),
        "orders": order_rows(),
        "order_items": item_rows(),
        "refunds": refund_rows(),
        "subscriptions": subscription_rows(),
    }


def _rows_as_of(world: World, plan_names: tuple[str, ...], t: float) -> dict[str, Iterator[tuple]]:
    """`shop_rows` at time `t`: customers created, orders placed (with their items), refunds
    made and subscriptions started before `t`, each as it was just before `t`. Ids and every
    other value come from the same world as the final state."""
    pg = world.clock.pg
    customers = sorted(
        (p for p in world.persons if p.customer_id is not None and p.customer_created_at < t),
        key=lambda p: p.customer_id,
    )
    orders = [o for o in world.orders if o.ordered_at < t]  # world.orders is in ordered_at order

    def customer_rows():
        for p in customers:
            yield (p.customer_id, p.email_shop, pg(p.customer_created_at), pg(customer_updated_before(p, t)))

    def order_rows():
        for o in orders:
            status, updated_at = o.state_before(t)
            yield (
                o.order_id, o.person.customer_id, status, o.currency, money(o.subtotal), money(o.discount),
                money(o.shipping), money(o.tax), money(o.total), o.coupon, o.channel, pg(o.ordered_at),
                pg(updated_at),
            )

    def item_rows():
        for o in orders:
            for n, (product, qty, price) in enumerate(o.items, start=1):
                yield (o.order_id, n, product.sku, product.name, product.category, qty, money(price), pg(o.ordered_at))

    def refund_rows():
        for r in world.refunds:
            if r.refunded_at < t:
                yield (r.refund_id, r.order.order_id, money(r.amount_cents), r.reason, pg(r.refunded_at),
                       pg(r.refunded_at))

    def subscription_rows():
        for s in world.subscriptions:
            v = s.version_before(t)
            if v is None:
                continue
            yield (
                s.subscription_id, s.person.customer_id, plan_names[v.plan_index], v.status, money(v.mrr_cents),
                s.currency, pg(s.started_at), pg(v.canceled_at) if v.canceled_at is not None else None,
                pg(v.at),
            )

    return {
        "customers": customer_rows(),
        "orders": order_rows(),
        "order_items": item_rows(),
        "refunds": refund_rows(),
        "subscriptions": subscription_rows(),
    }
