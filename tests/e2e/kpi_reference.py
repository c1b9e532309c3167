"""Reference values for the warehouse's KPIs, computed in plain Python straight from what
the sources delivered: the landing-zone files (CSV / JSONL, gzipped or not), the shop
database (plain selects) and the FX seed. Nothing here reads a dbt model or mart, so a
KPI that agrees with these numbers agrees with docs/kpis.md by two independent routes.

Where docs/kpis.md leaves room, the reference follows the convention the warehouse
documents in its models (and says so next to the code):
- a web event delivered twice (same event_id) counts once;
- for CRM rows delivered more than once, the latest delivery wins (contacts: the latest
  `updated_at`); an ad-spend line (day, channel, campaign, tags) restated later is replaced;
- money goes to the reporting currency at the latest FX rate on or before the date (the
  seed's first rate before it starts), rounded to cents per row; an order and its refunds
  at the order date's rate, a subscription at its start date's rate;
- a person with orders is a shop customer merged with every shop customer sharing the
  email after trimming and lower-casing (docs/sources.md: the CRM contact with that email
  is the same person, so the contact adds no merge of its own);
- bounce rate and cart abandonment count a session on the UTC date of its first event;
- an email (contact, campaign) pair belongs to the date of its first `delivered` event;
- the shop holds its current state: the pipeline extracted the rows with `updated_at`
  before the end of its last interval, so the reference reads exactly those rows; and
  the subscriptions as an earlier extraction saw them (a file the test wrote then), so
  that MRR follows each subscription's history (docs/kpis.md, project notes: a version
  counts from its change, the first one seen from the start, paused ones not at all);
- refunds count only on valid orders (net revenue never loses money that revenue never
  had);
- attribution (for ROAS): a web session's person is the CRM contact of the earliest
  identified event of its first event's anonymous id, the same person as the shop
  customers sharing the contact's email; its traffic source is its landing hit (first
  page_view); its channel the first rule of the channel_mapping seed that matches. The
  touches of a conversion (a person's first valid order) are the person's sessions with a
  campaign tag or an external referrer started in the 30 days up to the order.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import cached_property
from pathlib import Path

import psycopg

from lifecycle_warehouse import contract

UTC = timezone.utc
REPO = Path(__file__).resolve().parents[2]
FX_SEED = REPO / "dbt_project" / "seeds" / "fx_rates.csv"
CHANNEL_MAPPING_SEED = REPO / "dbt_project" / "seeds" / "channel_mapping.csv"

VALID_ORDER_STATUSES = frozenset({"paid", "shipped", "delivered", "refunded"})
ACTIVE_WINDOW_DAYS = 180
ATTRIBUTION_WINDOW = timedelta(days=30)
KPI_ATTRIBUTION_MODEL = "last_touch"  # dbt var kpi_attribution_model
ATTRIBUTION_MODELS = ("first_touch", "last_touch", "linear", "position_based")
CENT = Decimal("0.01")

Period = Callable[[date], date]
"""Maps a date to the period it is reported in: the day itself, or its month."""


def by_day(day: date) -> date:
    return day


def by_month(day: date) -> date:
    return day.replace(day=1)


def ratio(numerator: int | Decimal | Fraction, denominator: int | Decimal | Fraction) -> Fraction | None:
    """numerator / denominator, exactly; None for a zero denominator (docs/kpis.md: NULL)."""
    if not denominator:
        return None
    return Fraction(numerator) / Fraction(denominator)


@dataclass(frozen=True)
class Window:
    """The pipeline's dates, first and last inclusive."""

    start: date
    last: date

    @property
    def end_at(self) -> datetime:
        """End of the last day (exclusive): the pipeline's last interval ends here."""
        return datetime.combine(self.last + timedelta(days=1), time(), UTC)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.last - self.start).days + 1)]

    def __contains__(self, day: date) -> bool:
        return self.start <= day <= self.last


# --- reading the landing zone -------------------------------------------------------------


def parse_timestamp(text: str | None) -> datetime | None:
    """An ISO-8601 timestamp of the contract; one without an offset is UTC."""
    if text is None or not str(text).strip():
        return None
    value = datetime.fromisoformat(str(text).strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_date(value: datetime) -> date:
    return value.astimezone(UTC).date()


@dataclass(frozen=True)
class Delivered:
    """One record as delivered, with where it came from (for first / latest delivery)."""

    dt: date
    file: str
    position: int  # record index within its file
    record: dict

    @property
    def order(self) -> tuple[date, str, int]:
        return (self.dt, self.file, self.position)


def _open_text(path: Path) -> io.TextIOWrapper:
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def delivered_records(landing: Path, source: str, entity: str, window: Window) -> list[Delivered]:
    """Every record of `<source>/<entity>` in the date folders of the window, as delivered.
    CSV: an empty field is None; JSONL: one object per non-blank line."""
    fmt = contract.file_entity(source, entity).format
    out: list[Delivered] = []
    for day in window.days():
        folder = landing / source / entity / f"dt={day.isoformat()}"
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_"))):
            with _open_text(path) as handle:
                if fmt == "csv":
                    rows: Iterable[dict] = (
                        {k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(handle)
                    )
                else:
                    rows = (json.loads(line, parse_float=Decimal) for line in handle if line.strip())
                for position, record in enumerate(rows):
                    out.append(Delivered(day, path.name, position, record))
    return out


def first_deliveries(records: Iterable[Delivered], key: str) -> list[dict]:
    """One record per `key`: the earliest delivery (at-least-once web events)."""
    chosen: dict[str, Delivered] = {}
    for item in records:
        k = item.record[key]
        if k not in chosen or item.order < chosen[k].order:
            chosen[k] = item
    return [d.record for d in chosen.values()]


def latest_deliveries(records: Iterable[Delivered], key: Callable[[dict], object],
                      version: Callable[[dict], object] = lambda r: 0) -> list[dict]:
    """One record per key: the highest `version`, then the latest delivery."""
    chosen: dict[object, tuple[object, tuple, dict]] = {}
    for item in records:
        k = key(item.record)
        rank = (version(item.record), item.order)
        if k not in chosen or rank > chosen[k][:2]:
            chosen[k] = (rank[0], rank[1], item.record)
    return [c[2] for c in chosen.values()]


# --- money ---------------------------------------------------------------------------------


class FxRates:
    """USD per unit of each currency, by date, from the seed `fx_rates.csv`."""

    def __init__(self, series: dict[str, list[tuple[date, Decimal]]]):
        self._dates = {cur: [d for d, _ in rows] for cur, rows in series.items()}
        self._rates = {cur: [r for _, r in rows] for cur, rows in series.items()}

    @classmethod
    def from_seed(cls, path: Path = FX_SEED) -> FxRates:
        series: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                series[row["currency"].strip().upper()].append(
                    (date.fromisoformat(row["rate_date"]), Decimal(row["usd_per_unit"]))
                )
        return cls({cur: sorted(rows) for cur, rows in series.items()})

    def usd_per_unit(self, currency: str, day: date) -> Decimal:
        """The latest rate on or before `day`; before the series starts, its first rate."""
        currency = currency.upper()
        if currency not in self._dates:
            raise KeyError(f"{FX_SEED.name}: no rates for currency {currency}")
        index = bisect.bisect_right(self._dates[currency], day) - 1
        return self._rates[currency][max(index, 0)]

    def to_reporting(self, amount: Decimal, currency: str, day: date, reporting: str) -> Decimal:
        """`amount` in `currency` at `day`'s rate, rounded to cents (half away from zero)."""
        if currency.upper() == reporting.upper():
            value = Decimal(amount)
        else:
            value = Decimal(amount) * self.usd_per_unit(currency, day)
            if reporting.upper() != "USD":
                value = value / self.usd_per_unit(reporting, day)
        return value.quantize(CENT, rounding=ROUND_HALF_UP)


# --- the shop --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    order_id: str  # ids are opaque: their text, whatever their type in the shop
    customer_id: str | None
    person: str | None
    status: str
    currency: str
    total: Decimal
    ordered_at: datetime
    revenue: Decimal  # reporting currency

    @property
    def is_valid(self) -> bool:
        return self.status in VALID_ORDER_STATUSES

    @property
    def order_date(self) -> date:
        return utc_date(self.ordered_at)


@dataclass(frozen=True)
class Refund:
    refund_id: str
    order_id: str
    refunded_at: datetime
    amount_reporting: Decimal | None  # None: its order (hence its currency) is unknown


@dataclass(frozen=True)
class SubscriptionVersion:
    """A subscription as one extraction saw it."""

    subscription_id: str
    customer_id: str | None
    status: str
    mrr_reporting: Decimal  # at the start date's rate; no mrr given: 0
    started_at: datetime | None
    canceled_at: datetime | None
    updated_at: datetime

    @property
    def last_change_date(self) -> date:
        return utc_date(min(self.canceled_at, self.updated_at) if self.canceled_at else self.updated_at)


@dataclass(frozen=True)
class MrrSpan:
    """Days [first_date, end_date) during which one version of a subscription is MRR."""

    person: str
    mrr: Decimal
    first_date: date
    end_date: date | None

    def covers(self, day: date) -> bool:
        return self.first_date <= day and (self.end_date is None or day < self.end_date)


@dataclass(frozen=True)
class Customer:
    customer_id: str
    email: str | None  # as stored in the shop
    created_at: datetime | None

    @property
    def person(self) -> str:
        """Shop customers sharing a normalised email are one person; one without email
        is a person of its own."""
        email = normalized_email(self.email)
        return f"email:{email}" if email else f"customer:{self.customer_id}"


@dataclass
class Shop:
    """The shop rows the pipeline could extract (updated before the end of the window)."""

    customers: dict[int, Customer]
    orders: list[Order]
    refunds: list[Refund]
    subscriptions: list[SubscriptionVersion]  # as extracted last
    subscription_versions: list[SubscriptionVersion]  # every version extracted, in time order

    @cached_property
    def valid_person_orders(self) -> dict[str, list[Order]]:
        """Each person's valid orders in time order (ties: order_id)."""
        persons: dict[str, list[Order]] = defaultdict(list)
        for order in sorted(self.orders, key=lambda o: (o.ordered_at, o.order_id)):
            if order.is_valid and order.person is not None:
                persons[order.person].append(order)
        return persons

    def customers_by_person(self) -> dict[str, list[Customer]]:
        """The shop customers of each person, including ids that orders or subscriptions
        point at but the extracted customers lack (each a person of its own)."""
        persons: dict[str, list[Customer]] = defaultdict(list)
        for customer in self.customers.values():
            persons[customer.person].append(customer)
        referenced = {o.customer_id for o in self.orders} | {s.customer_id for s in self.subscriptions}
        for customer_id in sorted(referenced - set(self.customers) - {None}):
            persons[f"customer:{customer_id}"].append(Customer(customer_id, None, None))
        return dict(persons)

    def refunded_by_order(self) -> dict[int, Decimal]:
        out: dict[int, Decimal] = defaultdict(Decimal)
        for refund in self.refunds:
            if refund.amount_reporting is not None:
                out[refund.order_id] += refund.amount_reporting
        return out

    @cached_property
    def valid_order_ids(self) -> frozenset[str]:
        return frozenset(o.order_id for o in self.orders if o.is_valid)

    def person_of_customer(self, customer_id: str) -> str:
        customer = self.customers.get(customer_id)
        return customer.person if customer else f"customer:{customer_id}"

    @cached_property
    def mrr_spans(self) -> list[MrrSpan]:
        """docs/kpis.md (MRR history): each version counts from its change (the first one
        seen from the subscription's start) until the next version or the subscription's
        end (canceled_at; a row marked canceled without it, from that change), in whole
        UTC days; a paused version not at all."""
        by_subscription: dict[str, list[SubscriptionVersion]] = defaultdict(list)
        for version in self.subscription_versions:
            by_subscription[version.subscription_id].append(version)
        spans = []
        for versions in by_subscription.values():
            for number, version in enumerate(versions):
                if version.status == "paused" or version.customer_id is None:
                    continue
                following = versions[number + 1].updated_at if number + 1 < len(versions) else None
                ended = ((version.canceled_at or version.updated_at) if version.status == "canceled"
                         else version.canceled_at)
                if number == 0:
                    counts_from = version.started_at
                else:
                    counts_from = max(t for t in (version.started_at, version.updated_at) if t is not None)
                limits = [t for t in (following, ended) if t is not None]
                counts_until = min(limits) if limits else None
                if counts_from is None:
                    continue
                first, end = utc_date(counts_from), utc_date(counts_until) if counts_until else None
                if end is not None and end <= first:
                    continue
                spans.append(MrrSpan(self.person_of_customer(version.customer_id), version.mrr_reporting,
                                     first, end))
        return spans

    def mrr_by_person(self, day: date) -> dict[str, Decimal]:
        out: dict[str, Decimal] = defaultdict(Decimal)
        for span in self.mrr_spans:
            if span.covers(day):
                out[span.person] += span.mrr
        return out


def normalized_email(email: str | None) -> str | None:
    """docs/sources.md: emails match after trimming and lower-casing."""
    if email is None:
        return None
    return email.strip(" \t\r\n").lower() or None


SUBSCRIPTION_COLUMNS = (
    "subscription_id", "customer_id", "status", "mrr", "currency", "started_at", "canceled_at", "updated_at",
)


def read_subscription_rows(shop_url: str, before: datetime) -> list[dict]:
    """The shop's subscriptions changed before `before`, as JSON-ready dicts (a test
    keeps those of an earlier extraction in a file: the shop itself keeps no history)."""
    with psycopg.connect(shop_url) as conn:
        conn.execute("set timezone = 'UTC'")
        rows = conn.execute(
            "select subscription_id::text, customer_id::text, status, mrr::text, currency, started_at, "
            "canceled_at, updated_at from public.subscriptions where updated_at < %s order by subscription_id",
            (before,),
        ).fetchall()
    return [
        {column: value.isoformat() if isinstance(value, datetime) else value
         for column, value in zip(SUBSCRIPTION_COLUMNS, row)}
        for row in rows
    ]


def read_shop(shop_url: str, window: Window, fx: FxRates, reporting: str = "USD",
              earlier_subscriptions: Iterable[dict] = ()) -> Shop:
    """The shop tables as the pipeline saw them at the end of the window; the
    subscriptions also as earlier extractions saw them (`earlier_subscriptions`, rows of
    read_subscription_rows)."""
    end = window.end_at
    with psycopg.connect(shop_url) as conn:
        conn.execute("set timezone = 'UTC'")
        customers = {
            row[0]: Customer(*row)
            for row in conn.execute(
                "select customer_id::text, email, created_at from public.customers where updated_at < %s", (end,)
            )
        }
        order_rows = conn.execute(
            "select order_id::text, customer_id::text, status, currency, total, ordered_at, updated_at "
            "from public.orders where updated_at < %s order by order_id", (end,)
        ).fetchall()
        refund_rows = conn.execute(
            "select refund_id::text, order_id::text, amount, refunded_at from public.refunds "
            "where updated_at < %s order by refund_id", (end,)
        ).fetchall()

    def person(customer_id: str | None) -> str | None:
        if customer_id is None:
            return None  # a guest order belongs to no person
        customer = customers.get(customer_id)
        # a customer the orders point at but not extracted yet is a person of its own
        return customer.person if customer else f"customer:{customer_id}"

    orders, order_fx = [], {}
    for order_id, customer_id, status, currency, total, ordered_at, updated_at in order_rows:
        if ordered_at is None:
            raise AssertionError(f"shop order {order_id} has no ordered_at: the reference cannot date it")
        fx_date = utc_date(ordered_at)
        currency = currency.strip().upper()
        order_fx[order_id] = (currency, fx_date)
        orders.append(Order(order_id, customer_id, person(customer_id), status, currency, total,
                            ordered_at, fx.to_reporting(total, currency, fx_date, reporting)))
    refunds = []
    for refund_id, order_id, amount, refunded_at in refund_rows:
        known = order_fx.get(order_id)
        amount_reporting = fx.to_reporting(amount, known[0], known[1], reporting) if known else None
        refunds.append(Refund(refund_id, order_id, refunded_at, amount_reporting))
    def version(row: dict) -> SubscriptionVersion:
        started_at, canceled_at, updated_at = (parse_timestamp(row[c]) for c in ("started_at", "canceled_at",
                                                                                  "updated_at"))
        fx_date = utc_date(started_at or updated_at)
        mrr = row["mrr"]
        return SubscriptionVersion(
            row["subscription_id"], row["customer_id"], row["status"],
            fx.to_reporting(Decimal(mrr), row["currency"].strip().upper(), fx_date, reporting)
            if mrr is not None else Decimal(0),
            started_at, canceled_at, updated_at,
        )

    latest = [version(row) for row in read_subscription_rows(shop_url, end)]
    # one version per (subscription, updated_at): an unchanged row extracted again is the same version
    versions = {(v.subscription_id, v.updated_at): v for v in map(version, earlier_subscriptions)}
    versions.update({(v.subscription_id, v.updated_at): v for v in latest})
    history = [versions[key] for key in sorted(versions)]
    return Shop(customers, orders, refunds, latest, history)


# --- the files -------------------------------------------------------------------------------


@dataclass
class Files:
    """The landing-zone records of the window, deduplicated as described above."""

    web_events: list[dict]
    contacts: list[dict]
    email_events: list[dict]
    ad_spend: list[dict]
    survey_responses: list[dict]
    loyalty_events: list[dict]
    dates: set[date] = field(default_factory=set)  # every business date seen (data range)


def read_files(landing: Path, window: Window) -> Files:
    def records(source: str, entity: str) -> list[Delivered]:
        return delivered_records(landing, source, entity, window)

    web = first_deliveries(records("web", "events"), "event_id")
    for event in web:
        event["occurred_at"] = parse_timestamp(event["occurred_at"])
    contacts = latest_deliveries(records("crm", "contacts"), key=lambda r: r["contact_id"],
                                 version=lambda r: parse_timestamp(r["updated_at"]))
    email = latest_deliveries(records("crm", "email_events"), key=lambda r: r["event_id"])
    ads = latest_deliveries(
        records("marketing", "ad_spend"),
        key=lambda r: (r["date"], r["channel"], _clean(r["campaign_id"]), _clean(r["utm_source"], lower=True),
                       _clean(r["utm_medium"], lower=True), _clean(r["utm_campaign"])),
    )
    surveys = latest_deliveries(records("crm", "survey_responses"), key=lambda r: r["response_id"])
    loyalty = latest_deliveries(records("crm", "loyalty_events"), key=lambda r: r["loyalty_event_id"])
    files = Files(web, contacts, email, ads, surveys, loyalty)
    files.dates.update(utc_date(e["occurred_at"]) for e in web)
    files.dates.update(utc_date(parse_timestamp(c["created_at"])) for c in contacts)
    files.dates.update(utc_date(parse_timestamp(e["occurred_at"])) for e in email)
    files.dates.update(date.fromisoformat(a["date"]) for a in ads)
    files.dates.update(utc_date(parse_timestamp(s["submitted_at"])) for s in surveys)
    files.dates.update(utc_date(parse_timestamp(event["occurred_at"])) for event in loyalty)
    return files


def _clean(value: str | None, lower: bool = False) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip().lower() if lower else value.strip()


def contact_of_email(contacts: list[dict]) -> dict[str, str]:
    """Normalised email -> contact_id of its CRM contact (latest version of each contact;
    should two contacts share an email, the earliest created)."""
    ranked = sorted(contacts, key=lambda c: (parse_timestamp(c["created_at"]), c["contact_id"]))
    out: dict[str, str] = {}
    for contact in ranked:
        email = normalized_email(contact["email"])
        if email is not None:
            out.setdefault(email, contact["contact_id"])
    return out


# --- KPIs from the files ---------------------------------------------------------------------


def web_kpis(events: list[dict], period: Period) -> dict[date, dict]:
    """unique_visitors, sessions, session_conversion_rate, avg_engagement_time_s (by the
    event's date) and bounce_rate, cart_abandonment_rate (by the session's first event)."""
    visitors: dict[date, set] = defaultdict(set)
    sessions: dict[date, set] = defaultdict(set)
    purchase_sessions: dict[date, set] = defaultdict(set)
    engagement: dict[date, list[Decimal]] = defaultdict(list)
    by_session: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        p = period(utc_date(event["occurred_at"]))
        name = event["event_name"]
        sessions[p].add(event["session_id"])
        by_session[event["session_id"]].append(event)
        if name == "page_view":
            visitors[p].add(event["anonymous_id"])
            msec = (event.get("properties") or {}).get("engagement_time_msec")
            if msec is not None:
                engagement[p].append(Decimal(msec) / 1000)
        elif name == "purchase":
            purchase_sessions[p].add(event["session_id"])

    page_view_sessions: dict[date, int] = defaultdict(int)
    bounced: dict[date, int] = defaultdict(int)
    cart: dict[date, int] = defaultdict(int)
    purchased: dict[date, int] = defaultdict(int)
    for session_events in by_session.values():
        p = period(utc_date(min(e["occurred_at"] for e in session_events)))
        names = [e["event_name"] for e in session_events]
        page_views = names.count("page_view")
        converting = {"add_to_cart", "begin_checkout", "purchase"} & set(names)
        if page_views:
            page_view_sessions[p] += 1
        if page_views == 1 and not converting:
            bounced[p] += 1
        cart[p] += "add_to_cart" in names
        # Purchases among the cart sessions (docs/kpis.md, project note on cart abandonment).
        purchased[p] += "add_to_cart" in names and "purchase" in names

    out: dict[date, dict] = {}
    for p in set(sessions) | set(page_view_sessions):
        purchase_over_cart = ratio(purchased[p], cart[p])
        out[p] = {
            "unique_visitors": len(visitors[p]),
            "sessions": len(sessions[p]),
            "session_conversion_rate": ratio(len(purchase_sessions[p]), len(sessions[p])),
            "avg_engagement_time_s": ratio(sum(engagement[p], Decimal(0)), len(engagement[p])),
            "bounce_rate": ratio(bounced[p], page_view_sessions[p]),
            # docs/kpis.md: 1 - cart sessions with a purchase / sessions with an add_to_cart
            "cart_abandonment_rate": None if purchase_over_cart is None else 1 - purchase_over_cart,
            # components, for aggregate checks
            "_page_views_timed": len(engagement[p]),
            "_page_view_sessions": page_view_sessions[p],
            "_bounced_sessions": bounced[p],
            "_cart_sessions": cart[p],
            "_purchase_sessions": purchased[p],
        }
    return out


def email_kpis(email_events: list[dict], period: Period) -> dict[date, dict]:
    """Of the (contact, campaign) pairs delivered in the period (first `delivered` event),
    the share ever opened / clicked / unsubscribed in the data."""
    delivered_at: dict[tuple, datetime] = {}
    seen: dict[tuple, set[str]] = defaultdict(set)
    for event in email_events:
        pair = (event["contact_id"], event["campaign_id"])
        seen[pair].add(event["event_type"])
        if event["event_type"] == "delivered":
            at = parse_timestamp(event["occurred_at"])
            if pair not in delivered_at or at < delivered_at[pair]:
                delivered_at[pair] = at
    counts: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for pair, at in delivered_at.items():
        c = counts[period(utc_date(at))]
        c["delivered"] += 1
        c["opened"] += "open" in seen[pair]
        c["clicked"] += "click" in seen[pair]
        c["unsubscribed"] += "unsubscribe" in seen[pair]
    return {
        p: {
            "email_open_rate": ratio(c["opened"], c["delivered"]),
            "email_click_rate": ratio(c["clicked"], c["delivered"]),
            "email_unsubscribe_rate": ratio(c["unsubscribed"], c["delivered"]),
            "_delivered_pairs": c["delivered"],
            "_opened_pairs": c["opened"],
            "_clicked_pairs": c["clicked"],
            "_unsubscribed_pairs": c["unsubscribed"],
        }
        for p, c in counts.items()
    }


def crm_kpis(files: Files, period: Period) -> dict[date, dict]:
    """new_contacts, nps, csat, reward_redemption_rate, referrals."""
    new_contacts: dict[date, int] = defaultdict(int)
    for contact in files.contacts:
        new_contacts[period(utc_date(parse_timestamp(contact["created_at"])))] += 1
    survey: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for response in files.survey_responses:
        s = survey[period(utc_date(parse_timestamp(response["submitted_at"])))]
        score = int(response["score"])
        if response["survey_type"] == "nps":
            s["nps"] += 1
            s["promoters"] += score >= 9
            s["detractors"] += score <= 6
        elif response["survey_type"] == "csat":
            s["csat"] += 1
            s["satisfied"] += score >= 4
    loyalty: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for event in files.loyalty_events:
        c = loyalty[period(utc_date(parse_timestamp(event["occurred_at"])))]
        c[event["event_type"]] += 1
        c[f"points:{event['event_type']}"] += abs(int(event["points"]))
    out: dict[date, dict] = defaultdict(dict)
    for p in set(new_contacts) | set(survey) | set(loyalty):
        s, c = survey[p], loyalty[p]
        nps = ratio(100 * (s["promoters"] - s["detractors"]), s["nps"])
        csat = ratio(100 * s["satisfied"], s["csat"])
        out[p] = {
            "new_contacts": new_contacts[p],
            "nps": nps,
            "csat": csat,
            "reward_redemption_rate": ratio(c["points:redeemed"], c["points:earned"]),
            "referrals": c["referral"],
            "_nps_answers": s["nps"],
            "_nps_promoters": s["promoters"],
            "_nps_detractors": s["detractors"],
            "_csat_answers": s["csat"],
            "_csat_satisfied": s["satisfied"],
        }
    return out


def ad_kpis(ad_spend: list[dict], period: Period, fx: FxRates, reporting: str = "USD") -> dict[date, dict]:
    """ad_impressions, ad_clicks, ad_spend (each line converted at its date's rate), ad_ctr."""
    sums: dict[date, list] = defaultdict(lambda: [0, 0, Decimal(0), 0])
    for line in ad_spend:
        day = date.fromisoformat(line["date"])
        s = sums[period(day)]
        s[0] += int(line["impressions"])
        s[1] += int(line["clicks"])
        s[2] += fx.to_reporting(Decimal(line["spend"]), line["currency"], day, reporting)
        s[3] += 1
    return {
        p: {"ad_impressions": i, "ad_clicks": c, "ad_spend": spend, "ad_ctr": ratio(c, i), "_ad_lines": n}
        for p, (i, c, spend, n) in sums.items()
    }


# --- KPIs from the shop ----------------------------------------------------------------------


def order_kpis(shop: Shop, period: Period) -> dict[date, dict]:
    """orders, revenue, refunds, net_revenue, aov, new_customers, purchase_frequency."""
    out: dict[date, dict] = defaultdict(lambda: {
        "orders": 0, "revenue": Decimal(0), "refunds": Decimal(0), "new_customers": 0,
        "_person_orders": 0, "_ordering_persons": set(), "_first_order_revenue": Decimal(0),
    })
    first_orders = {orders[0].order_id for orders in shop.valid_person_orders.values()}
    for order in shop.orders:
        if not order.is_valid:
            continue
        o = out[period(order.order_date)]
        o["orders"] += 1
        o["revenue"] += order.revenue
        if order.person is not None:
            o["_person_orders"] += 1
            o["_ordering_persons"].add(order.person)
        if order.order_id in first_orders:
            o["new_customers"] += 1
            o["_first_order_revenue"] += order.revenue
    for refund in shop.refunds:
        # a refund of an order that never counted in revenue (cancelled) does not count
        if refund.amount_reporting is not None and refund.order_id in shop.valid_order_ids:
            out[period(utc_date(refund.refunded_at))]["refunds"] += refund.amount_reporting
    for o in out.values():
        o["net_revenue"] = o["revenue"] - o["refunds"]
        o["aov"] = ratio(o["revenue"], o["orders"])
        o["purchase_frequency"] = ratio(o["_person_orders"], len(o["_ordering_persons"]))
        o["_ordering_persons"] = len(o["_ordering_persons"])
    return dict(out)


def active_persons(shop: Shop, day: date) -> set[str]:
    """Persons whose last valid order on or before `day` is within 180 days of its end:
    a valid order dated day - 179 … day."""
    first = day - timedelta(days=ACTIVE_WINDOW_DAYS - 1)
    return {
        person for person, orders in shop.valid_person_orders.items()
        if any(first <= o.order_date <= day for o in orders)
    }


def state_kpis(shop: Shop, days: Iterable[date]) -> dict[date, dict]:
    """active_customers, repeat_purchase_rate and mrr at the end of each day."""
    persons = shop.valid_person_orders
    order_dates = {person: [o.order_date for o in orders] for person, orders in persons.items()}
    out = {}
    for day in days:
        first = day - timedelta(days=ACTIVE_WINDOW_DAYS - 1)
        active = sum(1 for dates in order_dates.values() if any(first <= d <= day for d in dates))
        buyers = sum(1 for dates in order_dates.values() if dates[0] <= day)
        repeat = sum(1 for dates in order_dates.values() if len(dates) >= 2 and dates[1] <= day)
        mrr = sum((span.mrr for span in shop.mrr_spans if span.covers(day)), Decimal(0))
        out[day] = {
            "active_customers": active,
            "repeat_purchase_rate": ratio(repeat, buyers),
            "mrr": mrr,
            "_buyers": buyers,
            "_repeat_buyers": repeat,
        }
    return out


def retention_kpis(shop: Shop, months: Iterable[date], as_of: date) -> dict[date, dict]:
    """Monthly churn_rate and customer_retention_rate (docs/kpis.md): S active at the start
    of the month (the end of the day before), E active at its end (the as-of date for the
    current month), N persons whose first valid order falls in the month."""
    persons = shop.valid_person_orders
    out = {}
    for month in months:
        next_month = (month + timedelta(days=32)).replace(day=1)
        end_day = min(next_month - timedelta(days=1), as_of)
        start_set = active_persons(shop, month - timedelta(days=1))
        end_set = active_persons(shop, end_day)
        new = sum(1 for orders in persons.values() if month <= orders[0].order_date <= end_day)
        out[month] = {
            "active_customers_at_start": len(start_set),
            "churn_rate": ratio(len(start_set - end_set), len(start_set)),
            "customer_retention_rate": ratio(len(end_set) - new, len(start_set)),
        }
    return out


def mrr_movements(shop: Shop, months: Iterable[date], as_of: date) -> dict[date, dict]:
    """Monthly new, expansion, contraction and churned MRR, per person: MRR at the end of
    the day before the month against MRR at its end (the as-of date for the current
    month)."""
    out = {}
    for month in months:
        next_month = (month + timedelta(days=32)).replace(day=1)
        start = shop.mrr_by_person(month - timedelta(days=1))
        end = shop.mrr_by_person(min(next_month - timedelta(days=1), as_of))
        sums = {"new_mrr": Decimal(0), "expansion_mrr": Decimal(0), "contraction_mrr": Decimal(0),
                "churned_mrr": Decimal(0)}
        for person in set(start) | set(end):
            before, after = start.get(person, Decimal(0)), end.get(person, Decimal(0))
            if before == 0 and after > 0:
                sums["new_mrr"] += after
            elif before > 0 and after == 0:
                sums["churned_mrr"] += before
            elif after > before:
                sums["expansion_mrr"] += after - before
            elif after < before:
                sums["contraction_mrr"] += before - after
        out[month] = sums
    return out


def churn_and_reactivation(shop: Shop, months: Iterable[date], as_of: date) -> dict[date, dict]:
    """Monthly churned_customers (activity ends: 180 days after a valid order not followed
    by another within them, in whole days, up to the as-of date), reactivated_customers
    (valid orders more than 180 days after the person's previous one), the persons churned
    at the start of the month (buyers - active customers the day before) and
    reactivation_rate."""
    churns: dict[date, int] = defaultdict(int)
    reactivations: dict[date, int] = defaultdict(int)
    for orders in shop.valid_person_orders.values():
        dates = [o.order_date for o in orders]
        for number, day in enumerate(dates):
            following = dates[number + 1] if number + 1 < len(dates) else None
            if following is None or (following - day).days > ACTIVE_WINDOW_DAYS:
                churn_day = day + timedelta(days=ACTIVE_WINDOW_DAYS)
                if churn_day <= as_of:
                    churns[by_month(churn_day)] += 1
            if number and (day - dates[number - 1]).days > ACTIVE_WINDOW_DAYS:
                reactivations[by_month(day)] += 1
    months = list(months)
    before = state_kpis(shop, [m - timedelta(days=1) for m in months])
    out = {}
    for month in months:
        state = before[month - timedelta(days=1)]
        churned_at_start = state["_buyers"] - state["active_customers"]
        out[month] = {
            "churned_customers": churns[month],
            "reactivated_customers": reactivations[month],
            "churned_customers_at_start": churned_at_start,
            "reactivation_rate": ratio(reactivations[month], churned_at_start),
        }
    return out


def months_between(first: date, last: date) -> int:
    return (last.year - first.year) * 12 + last.month - first.month


def cohort_retention(shop: Shop, as_of: date) -> dict[tuple[date, int], dict]:
    """Cohort month x months since the first valid order, up to the as-of month: cohort
    size, persons with a valid order in the month, their share, and the cohort's
    cumulative net revenue (valid orders' revenue minus their refunds) per member."""
    persons = shop.valid_person_orders
    refunded = shop.refunded_by_order()
    cohorts: dict[date, set[str]] = defaultdict(set)
    activity: dict[tuple[date, int], set[str]] = defaultdict(set)
    net: dict[tuple[date, int], Decimal] = defaultdict(Decimal)
    for person, orders in persons.items():
        cohort = by_month(orders[0].order_date)
        cohorts[cohort].add(person)
        for order in orders:
            k = months_between(cohort, order.order_date)
            activity[(cohort, k)].add(person)
            net[(cohort, k)] += order.revenue - refunded.get(order.order_id, Decimal(0))
    out = {}
    for cohort, members in cohorts.items():
        cumulative = Decimal(0)
        for k in range(months_between(cohort, as_of) + 1):
            cumulative += net[(cohort, k)]
            active = len(activity[(cohort, k)])
            out[(cohort, k)] = {
                "cohort_size": len(members),
                "active_customers": active,
                "retention_rate": ratio(active, len(members)),
                "revenue_per_customer_cumulative": ratio(cumulative, len(members)),
            }
    return out


# --- attribution (ROAS) --------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelRule:
    priority: int
    utm_source: re.Pattern | None
    utm_medium: re.Pattern | None
    referrer_domain: re.Pattern | None
    channel: str

    def matches(self, utm_source: str | None, utm_medium: str | None, referrer_domain: str | None) -> bool:
        # an empty pattern matches anything; a pattern never matches a missing value
        return all(
            pattern is None or (value is not None and pattern.search(value) is not None)
            for pattern, value in ((self.utm_source, utm_source), (self.utm_medium, utm_medium),
                                   (self.referrer_domain, referrer_domain))
        )


def channel_rules(seed: Path = CHANNEL_MAPPING_SEED) -> list[ChannelRule]:
    """The channel_mapping seed's rules by ascending priority (case-insensitive regular
    expressions, as PostgreSQL's `~*`)."""
    with seed.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))

    def pattern(text: str) -> re.Pattern | None:
        return re.compile(text, re.IGNORECASE) if text else None

    return sorted(
        (ChannelRule(int(r["priority"]), pattern(r["utm_source"]), pattern(r["utm_medium"]),
                     pattern(r["referrer_domain"]), r["channel"]) for r in rows),
        key=lambda rule: rule.priority,
    )


def channel_of(rules: list[ChannelRule], utm_source: str | None, utm_medium: str | None,
               referrer_domain: str | None) -> str | None:
    """`direct` without tags or external referrer, else the first matching rule's channel."""
    if utm_source is None and utm_medium is None and referrer_domain is None:
        return "direct"
    return next((rule.channel for rule in rules if rule.matches(utm_source, utm_medium, referrer_domain)), None)


_URL_HOST = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?([^/?#:]+)")


def url_host(url: str | None) -> str | None:
    """Lower-cased host of an absolute URL without a leading `www.`."""
    match = _URL_HOST.match(url) if url else None
    return re.sub(r"^www\.", "", match.group(1).lower()) or None if match else None


@dataclass(frozen=True)
class Session:
    session_id: str
    person: str | None  # in the shop's person keys: "email:<normalised email>"
    started_at: datetime
    channel: str | None
    is_touch: bool  # campaign tags or an external referrer


def web_sessions(events: list[dict], contacts: list[dict], rules: list[ChannelRule]) -> list[Session]:
    """The web sessions, their person and their traffic source (the landing hit: the first
    page_view, else the first event with a page, else the first event)."""
    def in_time_order(event: dict) -> tuple:
        return (event["occurred_at"], event["event_id"])

    identified: dict[str, str] = {}  # anonymous id -> user_id of its earliest identified event
    by_session: dict[str, list[dict]] = defaultdict(list)
    for event in sorted(events, key=in_time_order):
        user_id = _clean(event.get("user_id"))
        if user_id is not None:
            identified.setdefault(event["anonymous_id"], user_id)
        by_session[event["session_id"]].append(event)
    email_of_contact = {c["contact_id"]: normalized_email(c["email"]) for c in contacts}

    sessions = []
    for session_id, session_events in by_session.items():
        contact_id = identified.get(session_events[0]["anonymous_id"])
        email = email_of_contact.get(contact_id) if contact_id else None
        landing = min(session_events, key=lambda e: (
            0 if e["event_name"] == "page_view" else 1 if _clean(e.get("page_url")) else 2, *in_time_order(e)))
        referrer_host, page_host = url_host(landing.get("referrer")), url_host(landing.get("page_url"))
        referrer_domain = None if referrer_host == page_host else referrer_host
        utm_source, utm_medium = _clean(landing.get("utm_source"), lower=True), _clean(landing.get("utm_medium"), lower=True)
        tags = [utm_source, utm_medium, *(_clean(landing.get(f"utm_{t}")) for t in ("campaign", "content", "term"))]
        sessions.append(Session(
            session_id, f"email:{email}" if email else None, session_events[0]["occurred_at"],
            channel_of(rules, utm_source, utm_medium, referrer_domain),
            any(tag is not None for tag in tags) or referrer_domain is not None,
        ))
    return sessions


@dataclass(frozen=True)
class Credit:
    """What one attribution model credits one channel for one conversion."""

    order_id: str
    conversion_date: date
    model: str
    channel: str
    weight: Fraction
    revenue: Decimal


def _weight(model: str, number: int, count: int) -> Fraction:
    """docs/kpis.md (Attribution): the share of touch `number` (1-based) of `count`."""
    if model == "first_touch":
        return Fraction(number == 1)
    if model == "last_touch":
        return Fraction(number == count)
    if model == "linear":
        return Fraction(1, count)
    if count <= 2:
        return Fraction(1, count)
    return Fraction(2, 5) if number in (1, count) else Fraction(1, 5) / (count - 2)


def attribution_credits(shop: Shop, sessions: list[Session]) -> list[Credit]:
    """Every model's credits of every conversion (a person's first valid order): its
    touches are the person's touch sessions started in the 30 days up to the order; a
    conversion without any is credited in full to `direct`."""
    touches: dict[str, list[Session]] = defaultdict(list)
    for session in sessions:
        if session.is_touch and session.person is not None:
            touches[session.person].append(session)
    credits = []
    for person, orders in shop.valid_person_orders.items():
        order = orders[0]
        window = sorted(
            (t for t in touches.get(person, ()) if order.ordered_at - ATTRIBUTION_WINDOW <= t.started_at <= order.ordered_at),
            key=lambda t: (t.started_at, t.session_id),
        )
        for model in ATTRIBUTION_MODELS:
            if not window:
                credits.append(Credit(order.order_id, order.order_date, model, "direct", Fraction(1), order.revenue))
            for number, touch in enumerate(window, start=1):
                weight = _weight(model, number, len(window))
                if weight:
                    credits.append(Credit(order.order_id, order.order_date, model, touch.channel, weight,
                                          Decimal(order.revenue) * Decimal(weight.numerator) / weight.denominator))
    return credits


def spend_by_channel(ad_spend: list[dict], period: Period, fx: FxRates,
                     reporting: str = "USD") -> dict[date, dict[str, list[Decimal]]]:
    """Each period's ad lines per channel, in the reporting currency."""
    out: dict[date, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    for line in ad_spend:
        day = date.fromisoformat(line["date"])
        out[period(day)][line["channel"]].append(fx.to_reporting(Decimal(line["spend"]), line["currency"], day, reporting))
    return out


def roas(credits: list[Credit], ad_spend: list[dict], period: Period, fx: FxRates,
         reporting: str = "USD") -> dict[date, Fraction | None]:
    """docs/kpis.md (ROAS): per period, the revenue that KPI_ATTRIBUTION_MODEL credits to
    the channels with ad spend in the period, over the period's spend (None without)."""
    spend = spend_by_channel(ad_spend, period, fx, reporting)
    attributed: dict[date, Decimal] = defaultdict(Decimal)
    for credit in credits:
        p = period(credit.conversion_date)
        if credit.model == KPI_ATTRIBUTION_MODEL and any(line > 0 for line in spend.get(p, {}).get(credit.channel, ())):
            attributed[p] += credit.revenue
    periods = set(spend) | set(attributed)
    return {p: ratio(attributed[p], sum((sum(lines, Decimal(0)) for lines in spend.get(p, {}).values()), Decimal(0)))
            for p in periods}


def channel_attribution(credits: list[Credit], ad_spend: list[dict], fx: FxRates,
                        reporting: str = "USD") -> dict[tuple[date, str, str], dict]:
    """Month x channel x model: conversions (sum of weights), credited revenue, the
    channel's spend, cac and roas (None without spend)."""
    spend = spend_by_channel(ad_spend, by_month, fx, reporting)
    rows: dict[tuple[date, str, str], dict] = defaultdict(lambda: {"conversions": Fraction(0), "revenue": Decimal(0)})
    for credit in credits:
        row = rows[(by_month(credit.conversion_date), credit.channel, credit.model)]
        row["conversions"] += credit.weight
        row["revenue"] += credit.revenue
    for month, channels in spend.items():
        for channel in channels:
            for model in ATTRIBUTION_MODELS:
                rows[(month, channel, model)]  # a row for every channel with spend
    out = {}
    for (month, channel, model), row in rows.items():
        channel_spend = sum(spend.get(month, {}).get(channel, ()), Decimal(0))
        out[(month, channel, model)] = {
            **row,
            "spend": channel_spend,
            "cac": ratio(channel_spend, row["conversions"]) if channel_spend else None,
            "roas": ratio(row["revenue"], channel_spend),
        }
    return out


# --- everything together -------------------------------------------------------------------


@dataclass
class Reference:
    """The sources of one pipeline window, and the KPIs computed from them."""

    window: Window
    files: Files
    shop: Shop
    fx: FxRates
    reporting: str = "USD"

    @classmethod
    def load(cls, landing: Path, shop_url: str, window: Window, reporting: str = "USD",
             fx_seed: Path = FX_SEED, earlier_subscriptions: Iterable[dict] = ()) -> Reference:
        fx = FxRates.from_seed(fx_seed)
        shop = read_shop(shop_url, window, fx, reporting, earlier_subscriptions)
        return cls(window, read_files(landing, window), shop, fx, reporting)

    @cached_property
    def credits(self) -> list[Credit]:
        sessions = web_sessions(self.files.web_events, self.files.contacts, channel_rules())
        return attribution_credits(self.shop, sessions)

    def roas(self, period: Period) -> dict[date, Fraction | None]:
        return roas(self.credits, self.files.ad_spend, period, self.fx, self.reporting)

    def channel_attribution(self) -> dict[tuple[date, str, str], dict]:
        return channel_attribution(self.credits, self.files.ad_spend, self.fx, self.reporting)

    @property
    def data_start(self) -> date:
        """The first date with data in any source: kpi_daily starts there."""
        dates = set(self.files.dates)
        dates.update(o.order_date for o in self.shop.orders)
        dates.update(utc_date(r.refunded_at) for r in self.shop.refunds)
        dates.update(utc_date(s.started_at) for s in self.shop.subscriptions if s.started_at)
        return min(dates)

    @property
    def data_end(self) -> date:
        """The last date with data in any source: the as-of date."""
        dates = set(self.files.dates)
        dates.update(o.order_date for o in self.shop.orders)
        dates.update(utc_date(r.refunded_at) for r in self.shop.refunds)
        dates.update(s.last_change_date for s in self.shop.subscriptions)
        return max(dates)

    def file_kpis(self, period: Period) -> dict[date, dict]:
        """KPIs of the landing files per period (only periods with data are keyed)."""
        out: dict[date, dict] = defaultdict(dict)
        for part in (web_kpis(self.files.web_events, period), email_kpis(self.files.email_events, period),
                     crm_kpis(self.files, period),
                     ad_kpis(self.files.ad_spend, period, self.fx, self.reporting)):
            for p, values in part.items():
                out[p].update(values)
        return dict(out)

    def daily(self, days: Iterable[date]) -> dict[date, dict]:
        """Every KPI the reference computes, for each of `days`, with docs/kpis.md's
        zeros for a day without events and None for a rate without a denominator."""
        days = list(days)
        files = self.file_kpis(by_day)
        orders = order_kpis(self.shop, by_day)
        states = state_kpis(self.shop, days)
        roas_by_day = self.roas(by_day)
        out = {}
        for day in days:
            row = {**_EMPTY_FLOWS, **files.get(day, {}), **orders.get(day, {}), **states[day]}
            row["roas"] = roas_by_day.get(day)
            row["net_revenue"] = row["revenue"] - row["refunds"]
            # cac = ad_spend / new_customers: NULL without new customers or without ad lines
            row["cac"] = ratio(row["ad_spend"], row["new_customers"]) if row["_ad_lines"] else None
            out[day] = row
        return out


_EMPTY_FLOWS: dict[str, object] = {
    "unique_visitors": 0, "sessions": 0, "new_contacts": 0, "ad_impressions": 0, "ad_clicks": 0,
    "ad_spend": Decimal(0), "ad_ctr": None, "bounce_rate": None, "avg_engagement_time_s": None,
    "email_open_rate": None, "email_click_rate": None, "email_unsubscribe_rate": None,
    "session_conversion_rate": None, "cart_abandonment_rate": None, "orders": 0, "revenue": Decimal(0),
    "refunds": Decimal(0), "aov": None, "new_customers": 0, "nps": None, "csat": None,
    "reward_redemption_rate": None, "referrals": 0, "_first_order_revenue": Decimal(0), "_ad_lines": 0,
}
