"""People and their lifecycle: who becomes known when and how, who engages, who buys,
how often they come back, who drops out and who is won back; their orders (with items,
coupons, status history and refunds), subscriptions and loyalty points.

The repeat-purchase process is BG/NBD (Fader, Hardie & Lee 2005) and order values follow
Gamma-Gamma (Fader & Hardie 2013), with the planted parameters of `Rates`, so that the
warehouse's CLV fit can be compared with the truth. On top of it, churned customers are
sometimes won back (reactivation) and some orders are cancelled attempts: both are
documented deviations that make the data realistic, not textbook.

Everything here is drawn from `random.Random` streams named after their purpose, in a
fixed order, so the same seed gives the same world.
"""

from __future__ import annotations

import random
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import NamedTuple

from lifecycle_warehouse.simulator import catalog
from lifecycle_warehouse.simulator.clock import DAY, HOUR, MINUTE, Clock
from lifecycle_warehouse.simulator.config import Rates, SimulationConfig

VALID_STATUSES = ("paid", "shipped", "delivered", "refunded")


def stream(seed: int, name: str) -> random.Random:
    """An independent, reproducible random stream per concern (str seeds hash with SHA-512,
    so they do not depend on PYTHONHASHSEED)."""
    return random.Random(f"lifecycle-warehouse:{seed}:{name}")


class Chooser:
    """Weighted choice from fixed weights with one random() call (faster than
    random.choices for a single draw)."""

    __slots__ = ("values", "cdf")

    def __init__(self, pairs):
        pairs = list(pairs)
        self.values = [v for v, _ in pairs]
        total = sum(w for _, w in pairs)
        self.cdf = list(accumulate(w / total for _, w in pairs))
        self.cdf[-1] = 1.0

    def __call__(self, rng: random.Random):
        return self.values[bisect_right(self.cdf, rng.random())]


@dataclass(eq=False)
class Refund:
    order: Order
    amount_cents: int
    reason: str
    refunded_at: float
    partial: bool
    refund_id: int | str = 0  # str when the shop's ids are text or uuids


@dataclass(eq=False)
class Order:
    person: Person
    ordered_at: float
    channel: str
    currency: str
    cancelled_attempt: bool
    is_first: bool = False  # first valid order of the person (as placed)
    after_winback: bool = False
    items: list[tuple[catalog.Product, int, int]] = field(default_factory=list)  # product, qty, unit cents
    subtotal: int = 0
    discount: int = 0
    shipping: int = 0
    tax: int = 0
    total: int = 0
    coupon: str | None = None
    paid_at: float | None = None
    shipped_at: float | None = None
    delivered_at: float | None = None
    cancelled_at: float | None = None
    refund: Refund | None = None
    status: str = "pending"  # current state at the end of the simulation
    updated_at: float = 0.0
    order_id: int | str = 0
    # Every status step (time, status), in time order, also those after the end of the
    # simulation; a step with status None (a partial refund) only moves updated_at.
    steps: list[tuple[float, str | None]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.status in VALID_STATUSES

    def state_before(self, t: float) -> tuple[str, float]:
        """(status, updated_at) of the order as it was just before `t` (steps before `t`);
        `state_before(clock.end)` is its final state. Only meaningful once ordered before `t`."""
        return state_before(self.steps, t)


def state_before(steps: list[tuple[float, str | None]], t: float) -> tuple[str, float]:
    """Status and time of the last change among `steps` before `t` (pending at the first step)."""
    status, updated_at = "pending", steps[0][0]
    for when, step_status in steps:
        if when >= t:
            break
        updated_at = when
        if step_status is not None:
            status = step_status
    return status, updated_at


class SubscriptionVersion(NamedTuple):
    """A subscription's row from `at` on: created at its start and at every change
    (upgrade, downgrade, pause, resume, cancel)."""

    at: float  # the row's updated_at
    status: str
    plan_index: int
    mrr_cents: int
    canceled_at: float | None


@dataclass(eq=False)
class Subscription:
    person: Person
    plan_index: int
    mrr_cents: int
    currency: str
    started_at: float
    status: str = "active"
    canceled_at: float | None = None
    updated_at: float = 0.0
    subscription_id: int | str = 0
    # Its history up to the end of the simulation, oldest first; the last version is the
    # final state above (status, plan_index, mrr_cents, canceled_at, updated_at).
    versions: list[SubscriptionVersion] = field(default_factory=list)

    def version_before(self, t: float) -> SubscriptionVersion | None:
        """The subscription as it was just before `t` (None if it started at or after `t`)."""
        found = None
        for version in self.versions:
            if version.at >= t:
                break
            found = version
        return found


@dataclass(eq=False)
class LoyaltyEvent:
    occurred_at: float
    event_type: str  # earned, redeemed, expired, referral
    points: int
    reference: object  # an Order, a referred Person, or None


@dataclass(eq=False)
class Person:
    """A person who becomes known to the company (CRM contact and/or shop customer)."""

    pid: int
    kind: str  # "web" (signs up on the site), "crm" (event / list import), "store" (shop only)
    channel: str  # acquisition channel; the CRM's lead_source
    acquired_at: float
    country: catalog.Country
    engaged: bool = False
    engaged_until: float = 0.0
    purchase_times: list[tuple[float, bool]] = field(default_factory=list)  # (time, after win-back)
    alive_intervals: list[tuple[float, float]] = field(default_factory=list)
    nu: float = 0.0  # Gamma-Gamma spend rate of this person
    preferred_categories: tuple[str, ...] = ()
    referrer: Person | None = None
    referred: list[Person] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    subscription: Subscription | None = None
    loyalty: list[LoyaltyEvent] = field(default_factory=list)
    first_name: str = ""
    last_name: str = ""
    email: str = ""  # canonical: lower-case, no spaces
    email_crm: str = ""  # as stored in the CRM
    email_shop: str = ""  # as stored in the shop
    email_variant: str | None = None
    phone: str | None = None
    city: str = ""
    contact_id: str | None = None
    customer_id: int | str | None = None
    customer_created_at: float = 0.0
    customer_updated_at: float = 0.0

    @property
    def has_contact(self) -> bool:
        return self.kind != "store"

    @property
    def has_web(self) -> bool:
        return self.kind != "store"

    def alive_at(self, t: float) -> bool:
        """Not dropped out at t (between a purchase and the dropout, or after a win-back)."""
        for a, b in self.alive_intervals:
            if a <= t < b:
                return True
        return False

    def engaged_at(self, t: float) -> bool:
        return self.engaged and self.acquired_at <= t < self.engaged_until

    def valid_orders(self) -> list[Order]:
        return [o for o in self.orders if o.valid]


@dataclass
class World:
    clock: Clock
    persons: list[Person]
    orders: list[Order]  # every order placed before the end, by order_id
    refunds: list[Refund]
    subscriptions: list[Subscription]
    products: tuple[catalog.Product, ...]
    campaigns: list[catalog.Campaign]
    site: catalog.Site


# --------------------------------------------------------------------------------------


def build_world(config: SimulationConfig, clock: Clock) -> World:
    rates = config.rates
    products = catalog.products()
    persons = _acquire(config, clock, stream(config.seed, "people"))
    _assign_referrers(persons, stream(config.seed, "referrals"))
    _identities(persons, config.seed, stream(config.seed, "identity"), rates)
    orders, refunds, subscriptions = _orders(persons, clock, rates, products, stream(config.seed, "orders"))
    if config.shop_ids != "integer":
        _name_shop_ids(config.shop_ids, persons, orders, refunds, subscriptions)
    campaigns = catalog.build_campaigns(clock.start_date, clock.days, config.history_days)
    return World(clock, persons, orders, refunds, subscriptions, products, campaigns, catalog.site(products))


def _acquire(config: SimulationConfig, clock: Clock, rng: random.Random) -> list[Person]:
    """Acquisition times over [history start, end) with a linearly growing rate, then
    each person's channel, engagement, conversion and purchase process."""
    rates = config.rates
    g = rates.acquisition_growth
    span = clock.end - clock.history_start
    fractions = []
    for _ in range(config.customers):
        u = rng.random()
        # inverse CDF of a density proportional to 1 + g*x on [0, 1)
        x = u if g == 0 else (-1.0 + (1.0 + g * (2.0 + g) * u) ** 0.5) / g
        fractions.append(x)
    fractions.sort()
    times = [clock.diurnal(clock.history_start + x * span) for x in fractions]
    times.sort()

    channel_of = Chooser(rates.acquisition_channels)
    country_of = Chooser((c, c.weight) for c in catalog.COUNTRIES)
    persons = []
    for pid, acquired_at in enumerate(times):
        if rng.random() < rates.p_store_only:
            kind, channel = "store", "store"
        else:
            channel = channel_of(rng)
            kind = "crm" if channel in ("event", "import") else "web"
        person = Person(pid, kind, channel, acquired_at, country_of(rng))
        person.preferred_categories = tuple(rng.sample(catalog.CATEGORIES, 2))
        # Gamma-Gamma: this person's spend rate nu ~ Gamma(q, rate gamma)
        person.nu = rng.gammavariate(rates.gg_q, 1.0 / rates.gg_gamma)
        _lifecycle(person, clock, rates, rng)
        persons.append(person)
    return persons


def _lifecycle(person: Person, clock: Clock, rates: Rates, rng: random.Random) -> None:
    """Engagement, first order and the repeat-purchase process of one person."""
    if person.kind == "store":
        first = person.acquired_at
    else:
        person.engaged = rng.random() < rates.p_engaged
        person.engaged_until = person.acquired_at + rng.expovariate(1.0 / rates.engaged_mean_days) * DAY
        if person.engaged:
            converts = rng.random() < rates.p_first_order_engaged
            delay = rng.expovariate(1.0 / rates.first_order_mean_days_engaged) * DAY
        else:
            converts = rng.random() < rates.p_first_order_not_engaged
            delay = rng.expovariate(1.0 / rates.first_order_mean_days_not_engaged) * DAY
        if not converts:
            return
        first = clock.diurnal(person.acquired_at + delay)
        if first <= person.acquired_at:
            first = person.acquired_at + rng.uniform(10 * MINUTE, 2 * HOUR)
    if first >= clock.end:
        return

    # BG/NBD: purchases/week lambda ~ Gamma(r, rate alpha); dropout p ~ Beta(a, b)
    lam_per_day = min(rng.gammavariate(rates.bgnbd_r, 1.0 / rates.bgnbd_alpha), 1.5) / 7.0
    p_drop = rng.betavariate(rates.bgnbd_a, rates.bgnbd_b)
    times = [(first, False)]
    alive_from = t = first
    while True:
        t += rng.expovariate(lam_per_day) * DAY if lam_per_day > 0 else clock.end
        if t >= clock.end:
            person.alive_intervals.append((alive_from, clock.end))
            break
        times.append((t, False))
        if rng.random() < p_drop:
            person.alive_intervals.append((alive_from, t))
            if rng.random() >= rates.p_winback:
                break
            t += rng.uniform(rates.winback_min_days, rates.winback_max_days) * DAY
            if t >= clock.end:
                break
            times.append((t, True))
            alive_from = t
            p_drop = rng.betavariate(rates.bgnbd_a, rates.bgnbd_b)
    # realistic time of day; keep the order (two purchases on one day stay in sequence)
    person.purchase_times = sorted((clock.diurnal(x) if i else x, w) for i, (x, w) in enumerate(times))


def _assign_referrers(persons: list[Person], rng: random.Random) -> None:
    """A person acquired through the referral programme was referred by an existing
    customer with at least two purchases by then."""
    eligible = sorted(
        (p.purchase_times[1][0], p.pid) for p in persons if p.has_contact and len(p.purchase_times) >= 2
    )
    eligible_times = [t for t, _ in eligible]
    for person in persons:
        if person.channel != "referral":
            continue
        n = bisect_right(eligible_times, person.acquired_at)
        if n:
            referrer = persons[eligible[rng.randrange(n)][1]]
            person.referrer = referrer
            referrer.referred.append(person)


def _ascii_fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def vary_digits(text: str, rng: random.Random, n: int = 4) -> str:
    """Replace the last `n` digits of a phone number, keeping its format."""
    chars = list(text)
    for i in range(len(chars) - 1, -1, -1):
        if n == 0:
            break
        if chars[i].isdigit():
            chars[i] = str(rng.randrange(10))
            n -= 1
    return "".join(chars)


# Faker is slow (~50 µs a call), so each locale gets pools of names, cities and phone
# numbers, sized by how many persons live there (capped); persons draw from the pools.
POOL_NAMES, POOL_CITIES, POOL_PHONES = 400, 150, 200


def _identities(persons: list[Person], seed: int, rng: random.Random, rates: Rates) -> None:
    """Names, emails, phones and cities from seeded Faker pools per locale, plus the
    planted email case/whitespace differences between CRM and shop."""
    from faker import Faker

    per_country: dict[str, int] = {}
    for person in persons:
        per_country[person.country.code] = per_country.get(person.country.code, 0) + 1
    pools = {}
    for n, country in enumerate(catalog.COUNTRIES):
        count = per_country.get(country.code, 0)
        if not count:
            continue
        fake = Faker(country.locale)
        fake.seed_instance(seed * 101 + n)
        pools[country.code] = (
            [fake.first_name() for _ in range(min(count, POOL_NAMES))],
            [fake.last_name() for _ in range(min(count, POOL_NAMES))],
            [fake.city() for _ in range(min(count, POOL_CITIES))],
            [fake.phone_number() for _ in range(min(count, POOL_PHONES))],
        )
    for person in persons:
        first_names, last_names, cities, phones = pools[person.country.code]
        person.first_name = rng.choice(first_names)
        person.last_name = rng.choice(last_names)
        person.city = rng.choice(cities)
        person.phone = vary_digits(rng.choice(phones), rng) if rng.random() < rates.p_phone else None
    used: set[str] = set()
    contact_no = 0
    for person in persons:
        first, last = _ascii_fold(person.first_name) or "user", _ascii_fold(person.last_name) or "mail"
        pattern = rng.randrange(4)
        local = (
            f"{first}.{last}", f"{first}{last}", f"{first[0]}.{last}", f"{first}_{last}{rng.randrange(10, 99)}"
        )[pattern]
        domain = rng.choice(person.country.email_domains)
        email = f"{local}@{domain}"
        suffix = 2
        while email in used:
            email = f"{local}{suffix}@{domain}"
            suffix += 1
        used.add(email)
        person.email = person.email_crm = person.email_shop = email
        if person.has_contact:
            contact_no += 1
            person.contact_id = f"C{contact_no:07d}"
            if person.purchase_times and rng.random() < rates.p_email_variant:
                person.email_variant = rng.choice(("shop_capitalised", "shop_spaces", "crm_upper", "crm_spaces"))
                if person.email_variant == "shop_capitalised":
                    local_part, _, dom = email.partition("@")
                    person.email_shop = ".".join(s.capitalize() for s in local_part.split(".")) + "@" + dom.capitalize()
                elif person.email_variant == "shop_spaces":
                    person.email_shop = f" {email} "
                elif person.email_variant == "crm_upper":
                    person.email_crm = email.upper()
                else:
                    person.email_crm = f"  {email}"


# --- orders ---------------------------------------------------------------------------


def _orders(persons, clock: Clock, rates: Rates, products, rng: random.Random):
    """Turn purchase times into orders with items, money, statuses, refunds, loyalty
    points and subscriptions; then number customers, orders, refunds and subscriptions
    in the order the shop would have created them."""
    by_category: dict[str, list[catalog.Product]] = {}
    for p in products:
        by_category.setdefault(p.category, []).append(p)
    prices = {(p.sku, c): catalog.list_price_cents(p.usd_price, c) for p in products for c in catalog.PRICE_FACTORS}
    channel_choosers = {
        "web": Chooser(rates.order_channels_web),
        "crm": Chooser(rates.order_channels_crm),
        "store": Chooser(rates.order_channels_store),
    }
    plan_of = Chooser((i, w) for i, (_, w, _) in enumerate(rates.plans))
    coupon_other = Chooser((c, 1.0) for c in catalog.COUPONS_OTHER)

    for person in persons:
        if not person.purchase_times:
            continue
        currency = person.country.currency
        choose_channel = channel_choosers[person.kind]
        first_valid = True
        for t, after_winback in person.purchase_times:
            channel = choose_channel(rng)
            if rng.random() < rates.p_cancelled_attempt:
                attempt = Order(person, t - rng.uniform(5 * MINUTE, 2 * HOUR), channel, currency, True)
                _fill_items(attempt, person, rates, by_category, prices, rng)
                _money(attempt, person, rates, first_valid, coupon_other, rng)
                person.orders.append(attempt)
            order = Order(person, t, channel, currency, False, is_first=first_valid, after_winback=after_winback)
            _fill_items(order, person, rates, by_category, prices, rng)
            _money(order, person, rates, first_valid, coupon_other, rng)
            person.orders.append(order)
            first_valid = False
        for order in person.orders:
            _status_history(order, clock, rates, rng)
        if person.has_contact and rng.random() < rates.p_subscribe:
            first = next((o for o in person.orders if not o.cancelled_attempt), None)
            if first is not None and first.channel in ("web", "app") and first.paid_at is not None:
                _subscription(person, first.paid_at + rng.uniform(MINUTE, 2 * HOUR), clock, rates, plan_of, rng)
        person.orders.sort(key=lambda o: o.ordered_at)

    for person in persons:
        if person.has_contact:
            _loyalty(person, clock, rates, rng)
        for order in person.orders:
            # a loyalty redemption may have lowered the total after the refund was drawn
            if order.refund is not None:
                refund = order.refund
                refund.amount_cents = min(refund.amount_cents, order.total) if refund.partial else order.total

    placed = [o for p in persons for o in p.orders if o.ordered_at < clock.end]
    placed.sort(key=lambda o: (o.ordered_at, o.person.pid))
    customers = sorted(
        (p for p in persons if p.orders and p.orders[0].ordered_at < clock.end),
        key=lambda p: (p.orders[0].ordered_at, p.pid),
    )
    for n, person in enumerate(customers, start=1):
        person.customer_id = n
        person.customer_created_at = person.orders[0].ordered_at
        person.customer_updated_at = person.customer_created_at
        # some customers edit their profile later (updated_at moves, the row is re-extracted);
        # the shop row as of an earlier time is the one before the edit (shop.customer_updated_before)
        if rng.random() < 0.1:
            later = person.customer_created_at + rng.expovariate(1 / 120.0) * DAY
            if later < clock.end:
                person.customer_updated_at = later
    for n, order in enumerate(placed, start=100001):
        order.order_id = n
    refunds = sorted(
        (o.refund for o in placed if o.refund is not None and o.refund.refunded_at < clock.end),
        key=lambda r: (r.refunded_at, r.order.order_id),
    )
    for n, refund in enumerate(refunds, start=1):
        refund.refund_id = n
    subscriptions = sorted(
        (p.subscription for p in persons if p.subscription is not None and p.subscription.started_at < clock.end),
        key=lambda s: (s.started_at, s.person.pid),
    )
    for n, sub in enumerate(subscriptions, start=1):
        sub.subscription_id = n
    return placed, refunds, subscriptions


def _name_shop_ids(kind: str, persons, orders, refunds, subscriptions) -> None:
    """Replace the shop's integer ids by text or uuid ids (the same world otherwise)."""
    from lifecycle_warehouse.simulator.ids import shop_id

    for person in persons:
        if person.customer_id is not None:
            person.customer_id = shop_id(kind, "customers", person.customer_id)
    for order in orders:
        order.order_id = shop_id(kind, "orders", order.order_id)
    for refund in refunds:
        refund.refund_id = shop_id(kind, "refunds", refund.refund_id)
    for subscription in subscriptions:
        subscription.subscription_id = shop_id(kind, "subscriptions", subscription.subscription_id)


def _fill_items(order: Order, person: Person, rates: Rates, by_category, prices, rng: random.Random) -> None:
    """Pick catalogue items that add up to about a Gamma-Gamma draw of the order value."""
    target_usd = min(max(rng.gammavariate(rates.gg_p, 1.0 / person.nu), 8.0), 2500.0)
    remaining = int(target_usd * catalog.PRICE_FACTORS[order.currency] * 100)
    lines: dict[str, list] = {}
    for _ in range(4):
        category = (
            rng.choice(person.preferred_categories) if rng.random() < 0.7 else rng.choice(catalog.CATEGORIES)
        )
        options = [p for p in by_category[category] if prices[(p.sku, order.currency)] <= remaining * 1.15]
        if not options:
            if lines:
                break
            options = [min(by_category[category], key=lambda p: p.usd_price)]
        product = rng.choice(options)
        price = prices[(product.sku, order.currency)]
        qty = 2 if rng.random() < 0.12 and 2 * price <= remaining else 1
        if product.sku in lines:
            lines[product.sku][1] += qty
        else:
            lines[product.sku] = [product, qty, price]
        remaining -= qty * price
        if remaining < 1000:
            break
    order.items = [tuple(v) for v in lines.values()]


def _money(order: Order, person: Person, rates: Rates, first_valid: bool, coupon_other, rng) -> None:
    """subtotal - discount + shipping + tax = total, in cents of the order's currency."""
    order.subtotal = sum(qty * price for _, qty, price in order.items)
    percent = 0
    free_shipping = False
    if rng.random() < rates.p_coupon:
        code, percent = catalog.COUPONS_FIRST_ORDER[0] if first_valid else coupon_other(rng)
        order.coupon = code
        free_shipping = code == "FREESHIP"
    order.discount = round(order.subtotal * percent / 100)
    _price(order, free_shipping)


def _price(order: Order, free_shipping: bool = False) -> None:
    net = order.subtotal - order.discount
    if order.channel == "store" or free_shipping or net >= catalog.FREE_SHIPPING_FROM_CENTS:
        order.shipping = 0
    else:
        order.shipping = catalog.SHIPPING_CENTS
    order.tax = round(net * order.person.country.tax_rate)
    order.total = net + order.shipping + order.tax


def _status_history(order: Order, clock: Clock, rates: Rates, rng: random.Random) -> None:
    """Status transitions of an order, and its state at the end of the simulation."""
    t0 = order.ordered_at
    steps: list[tuple[float, str | None]] = [(t0, "pending")]
    if order.cancelled_attempt:
        order.cancelled_at = t0 + rng.uniform(2 * MINUTE, 90 * MINUTE)
        steps.append((order.cancelled_at, "cancelled"))
    else:
        if order.channel == "store":
            order.paid_at = t0
            order.delivered_at = t0
            steps += [(t0, "paid"), (t0, "delivered")]
        else:
            if rng.random() < rates.p_slow_payment:
                order.paid_at = t0 + rng.uniform(1 * DAY, 5 * DAY)
            else:
                order.paid_at = t0 + rng.uniform(30.0, 20 * MINUTE)
            order.shipped_at = order.paid_at + rng.uniform(4 * HOUR, 72 * HOUR)
            order.delivered_at = order.shipped_at + rng.uniform(1 * DAY, 6 * DAY)
            steps += [(order.paid_at, "paid"), (order.shipped_at, "shipped"), (order.delivered_at, "delivered")]
        if rng.random() < rates.p_refund:
            refunded_at = order.delivered_at + rng.uniform(1 * DAY, 30 * DAY)
            partial = rng.random() < rates.p_partial_refund and len(order.items) > 1
            if partial:
                product, qty, price = order.items[rng.randrange(len(order.items))]
                amount = min(qty * price, order.total)
            else:
                amount = order.total
            order.refund = Refund(order, amount, rng.choice(catalog.REFUND_REASONS), refunded_at, partial)
            steps.append((refunded_at, None if partial else "refunded"))
    order.steps = steps
    order.status, order.updated_at = state_before(steps, clock.end)


def _subscription(person, started_at, clock: Clock, rates: Rates, plan_of, rng) -> None:
    """A monthly plan with upgrades, downgrades, pauses and cancellation, month by month;
    every change is recorded as a version (`Subscription.versions`)."""
    if started_at >= clock.end:
        return
    plan = plan_of(rng)
    sub = Subscription(person, plan, 0, person.country.currency, started_at, updated_at=started_at)

    def record() -> None:
        mrr = catalog.list_price_cents(rates.plans[plan][2], sub.currency)
        sub.versions.append(SubscriptionVersion(sub.updated_at, sub.status, plan, mrr, sub.canceled_at))

    record()
    t = started_at
    while True:
        t += 30 * DAY
        if t >= clock.end:
            break
        u = rng.random()
        if sub.status == "paused":
            if u < 0.5:
                sub.status, sub.updated_at = "active", t
                record()
            continue
        if u < rates.subscription_monthly_cancel:
            sub.status, sub.canceled_at, sub.updated_at = "canceled", t, t
            record()
            break
        u -= rates.subscription_monthly_cancel
        if u < rates.subscription_monthly_pause:
            sub.status, sub.updated_at = "paused", t
            record()
            continue
        u -= rates.subscription_monthly_pause
        if u < rates.subscription_monthly_upgrade and plan < len(rates.plans) - 1:
            plan, sub.updated_at = plan + 1, t
            record()
            continue
        u -= rates.subscription_monthly_upgrade
        if u < rates.subscription_monthly_downgrade and plan > 0:
            plan, sub.updated_at = plan - 1, t
            record()
    sub.plan_index = plan
    sub.mrr_cents = catalog.list_price_cents(rates.plans[plan][2], sub.currency)
    person.subscription = sub


def _loyalty(person: Person, clock: Clock, rates: Rates, rng: random.Random) -> None:
    """Points earned on paid orders, referral bonuses, redemptions at later orders (as a
    LOYALTY500 coupon worth 5.00) and expiry after a year without earning."""
    activity: list[tuple[float, int, object]] = []  # (time, kind, object): 0 order, 1 referral
    for order in person.orders:
        if not order.cancelled_attempt:
            activity.append((order.ordered_at, 0, order))
    for referred in person.referred:
        activity.append((referred.acquired_at, 1, referred))
    activity.sort(key=lambda a: (a[0], a[1]))
    balance = 0
    last_earned = None
    expire_after = rates.points_expire_after_days * DAY
    events = person.loyalty
    for t, kind, obj in activity:
        if t >= clock.end:
            break
        if balance > 0 and last_earned is not None and t - last_earned > expire_after:
            events.append(LoyaltyEvent(last_earned + expire_after, "expired", balance, None))
            balance = 0
        if kind == 1:
            events.append(LoyaltyEvent(t, "referral", rates.referral_points, obj))
            balance += rates.referral_points
            last_earned = t
            continue
        order: Order = obj
        if balance >= rates.redeem_threshold_points and rng.random() < rates.p_redeem:
            order.coupon = catalog.COUPON_LOYALTY[0]
            order.discount = min(500, order.subtotal)
            _price(order)
            events.append(LoyaltyEvent(t, "redeemed", rates.redeem_threshold_points, order))
            balance -= rates.redeem_threshold_points
        if order.paid_at is not None and order.paid_at < clock.end:
            points = (order.total // 100) * rates.points_per_currency_unit
            if points > 0:
                events.append(LoyaltyEvent(order.paid_at, "earned", points, order))
                balance += points
                last_earned = order.paid_at
    if balance > 0 and last_earned is not None and last_earned + expire_after < clock.end:
        events.append(LoyaltyEvent(last_earned + expire_after, "expired", balance, None))
    events.sort(key=lambda e: e.occurred_at)
