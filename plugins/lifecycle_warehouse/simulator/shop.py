"""Rows of the shop's operational tables (current state at the end of the simulation),
in the contract's column order, as text values for COPY."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

from lifecycle_warehouse import contract
from lifecycle_warehouse.simulator.clock import Clock
from lifecycle_warehouse.simulator.model import World

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


# Prefixes of text ids, in the style of Stripe's (cus_…, sub_…).
_PREFIXES = {"customers": "cus", "orders": "ord", "refunds": "re", "subscriptions": "sub"}
_UUID_NAMESPACE = uuid.UUID("1b6f3c52-8d0e-4f7a-9c1e-5a2b7d9e0f43")
# The type of each id column in the shop database, by kind of id (columns in
# contract.SHOP_ID_COLUMNS; the raw layer keeps the text of any of them).
SOURCE_TYPES = {"integer": "bigint", "text": "text", "uuid": "uuid"}


def shop_id(kind: str, table: str, number: int) -> int | str:
    """The shop's id of the `number`-th row of `table`: the number itself, a text id such as
    `ord_3f9a1c0b2d4e6f70` (not in the numbers' order), or a uuid."""
    if kind == "integer":
        return number
    if kind == "uuid":
        return str(uuid.uuid5(_UUID_NAMESPACE, f"{table}:{number}"))
    digest = hashlib.blake2b(f"{table}:{number}".encode(), digest_size=8).hexdigest()
    return f"{_PREFIXES[table]}_{digest}"


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


def shop_rows(world: World, plan_names: tuple[str, ...]) -> dict[str, Iterator[tuple]]:
    check_contract()
    clock: Clock = world.clock
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
