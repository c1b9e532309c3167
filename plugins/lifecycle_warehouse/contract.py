"""The source contract (docs/sources.md) as data: one place that says what each source
delivers, which columns are required, their types and accepted values.

The file loader builds its validation SQL from this, the warehouse bootstrap builds the
`raw` tables from it, and the simulator writes exactly these columns. Changing a column
here changes all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Types a contract column may have, as PostgreSQL types of the raw table.
TEXT = "text"
TIMESTAMPTZ = "timestamptz"
DATE = "date"
NUMERIC = "numeric"
INTEGER = "integer"
BIGINT = "bigint"
JSONB = "jsonb"
# Ids are opaque (docs/sources.md): an integer, text such as `sub_8f3a` or `B1`, or a uuid
# in the source, kept in raw as the text of the source's value and compared as text.
ID = TEXT

# Human wording of a failed type check, used in quarantine `rule` values.
TYPE_RULE = {
    TIMESTAMPTZ: "not a timestamp",
    DATE: "not a date",
    NUMERIC: "not a number",
    INTEGER: "not an integer",
    BIGINT: "not an integer",
    JSONB: "not a JSON object",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str = TEXT
    required: bool = False
    accepted: tuple[str, ...] | None = None  # enum values (compared case-sensitively)
    min_value: float | None = None
    max_value: float | None = None
    length: int | None = None  # exact length of a code, e.g. ISO country / currency


@dataclass(frozen=True)
class Check:
    """A rule across columns, as a SQL boolean over the typed values (true = row is good).

    The expression refers to columns by name; it is only evaluated on rows whose columns
    passed their own type checks.
    """

    rule: str
    sql: str


@dataclass(frozen=True)
class FileEntity:
    source: str
    entity: str
    format: str  # "csv" or "jsonl"
    columns: tuple[Column, ...]
    checks: tuple[Check, ...] = field(default=())

    @property
    def raw_table(self) -> str:
        return f"{self.source}_{self.entity}"

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class ShopTable:
    table: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def raw_table(self) -> str:
        return f"shop_{self.table}"

    @property
    def versions_table(self) -> str:
        """Every version of the table's rows that the extraction saw."""
        return f"shop_{self.table}_versions"


HUBSPOT_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
EMAIL_EVENT_TYPES = ("sent", "delivered", "open", "click", "bounce", "unsubscribe", "spam_report")
CHANNELS = ("email", "paid_search", "paid_social", "display", "affiliate", "referral", "event")
# Channels of their own for traffic no ad bought (docs/kpis.md, Attribution): conversions
# and revenue, no spend (so no CAC nor ROAS). `direct`: no tag, no external referrer;
# `organic_referral`: an untagged link from another site.
ORGANIC_CHANNELS = ("organic_search", "organic_social", "organic_referral", "direct")
# Every channel a session, a lead source or an attribution credit may have.
SESSION_CHANNELS = CHANNELS + ORGANIC_CHANNELS
SURVEY_TYPES = ("nps", "csat")
LOYALTY_EVENT_TYPES = ("earned", "redeemed", "expired", "referral")
ORDER_STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "refunded")
ORDER_CHANNELS = ("web", "app", "store", "marketplace")
SUBSCRIPTION_STATUSES = ("active", "paused", "canceled")
DEVICE_TYPES = ("desktop", "mobile", "tablet")

FILE_ENTITIES: tuple[FileEntity, ...] = (
    FileEntity(
        "crm",
        "contacts",
        "csv",
        (
            Column("contact_id", required=True),
            Column("email", required=True),
            Column("first_name"),
            Column("last_name"),
            Column("phone"),
            Column("country", length=2),
            Column("city"),
            Column("lead_source"),
            Column("lifecycle_stage", accepted=HUBSPOT_STAGES),
            Column("created_at", TIMESTAMPTZ, required=True),
            Column("updated_at", TIMESTAMPTZ, required=True),
        ),
    ),
    FileEntity(
        "crm",
        "email_events",
        "csv",
        (
            Column("event_id", required=True),
            Column("contact_id", required=True),
            Column("campaign_id", required=True),
            Column("event_type", required=True, accepted=EMAIL_EVENT_TYPES),
            Column("occurred_at", TIMESTAMPTZ, required=True),
            Column("url"),
        ),
    ),
    FileEntity(
        "crm",
        "campaigns",
        "csv",
        (
            Column("campaign_id", required=True),
            Column("name", required=True),
            Column("channel", required=True, accepted=CHANNELS),
            Column("start_date", DATE),
            Column("end_date", DATE),
            Column("budget", NUMERIC, min_value=0),
            Column("currency", length=3),
        ),
    ),
    FileEntity(
        "crm",
        "survey_responses",
        "csv",
        (
            Column("response_id", required=True),
            Column("contact_id", required=True),
            Column("survey_type", required=True, accepted=SURVEY_TYPES),
            Column("score", INTEGER, required=True),
            Column("submitted_at", TIMESTAMPTZ, required=True),
            Column("comment"),
        ),
        checks=(
            Check("score: nps must be 0–10", "survey_type <> 'nps' or score between 0 and 10"),
            Check("score: csat must be 1–5", "survey_type <> 'csat' or score between 1 and 5"),
        ),
    ),
    FileEntity(
        "crm",
        "loyalty_events",
        "csv",
        (
            Column("loyalty_event_id", required=True),
            Column("contact_id", required=True),
            Column("event_type", required=True, accepted=LOYALTY_EVENT_TYPES),
            Column("points", INTEGER, required=True),
            Column("occurred_at", TIMESTAMPTZ, required=True),
            Column("reference"),
        ),
    ),
    FileEntity(
        "web",
        "events",
        "jsonl",
        (
            Column("event_id", required=True),
            Column("event_name", required=True),
            Column("occurred_at", TIMESTAMPTZ, required=True),
            Column("anonymous_id", required=True),
            Column("user_id"),
            Column("session_id", required=True),
            Column("page_url"),
            Column("page_title"),
            Column("referrer"),
            Column("utm_source"),
            Column("utm_medium"),
            Column("utm_campaign"),
            Column("utm_content"),
            Column("utm_term"),
            Column("device_type", accepted=DEVICE_TYPES),
            Column("country", length=2),
            Column("properties", JSONB),
        ),
    ),
    FileEntity(
        "marketing",
        "ad_spend",
        "csv",
        (
            Column("date", DATE, required=True),
            Column("channel", required=True, accepted=CHANNELS),
            Column("campaign_id"),
            Column("utm_source"),
            Column("utm_medium"),
            Column("utm_campaign"),
            Column("impressions", BIGINT, required=True, min_value=0),
            Column("clicks", BIGINT, required=True, min_value=0),
            Column("spend", NUMERIC, required=True, min_value=0),
            Column("currency", required=True, length=3),
        ),
    ),
)

SHOP_TABLES: tuple[ShopTable, ...] = (
    ShopTable(
        "customers",
        ("customer_id",),
        (
            Column("customer_id", ID, required=True),
            Column("email"),
            Column("created_at", TIMESTAMPTZ),
            Column("updated_at", TIMESTAMPTZ, required=True),
        ),
    ),
    ShopTable(
        "orders",
        ("order_id",),
        (
            Column("order_id", ID, required=True),
            Column("customer_id", ID),
            Column("status", accepted=ORDER_STATUSES),
            Column("currency"),
            Column("subtotal", NUMERIC),
            Column("discount", NUMERIC),
            Column("shipping", NUMERIC),
            Column("tax", NUMERIC),
            Column("total", NUMERIC),
            Column("coupon_code"),
            Column("channel", accepted=ORDER_CHANNELS),
            Column("ordered_at", TIMESTAMPTZ),
            Column("updated_at", TIMESTAMPTZ, required=True),
        ),
    ),
    ShopTable(
        "order_items",
        ("order_id", "line_number"),
        (
            Column("order_id", ID, required=True),
            Column("line_number", INTEGER, required=True),
            Column("sku"),
            Column("product_name"),
            Column("category"),
            Column("quantity", INTEGER),
            Column("unit_price", NUMERIC),
            Column("updated_at", TIMESTAMPTZ, required=True),
        ),
    ),
    ShopTable(
        "refunds",
        ("refund_id",),
        (
            Column("refund_id", ID, required=True),
            Column("order_id", ID),
            Column("amount", NUMERIC),
            Column("reason"),
            Column("refunded_at", TIMESTAMPTZ),
            Column("updated_at", TIMESTAMPTZ, required=True),
        ),
    ),
    ShopTable(
        "subscriptions",
        ("subscription_id",),
        (
            Column("subscription_id", ID, required=True),
            Column("customer_id", ID),
            Column("plan"),
            Column("status", accepted=SUBSCRIPTION_STATUSES),
            Column("mrr", NUMERIC),
            Column("currency"),
            Column("started_at", TIMESTAMPTZ),
            Column("canceled_at", TIMESTAMPTZ),
            Column("updated_at", TIMESTAMPTZ, required=True),
        ),
    ),
)

SOURCES: tuple[str, ...] = ("crm", "web", "marketing", "shop")
# The id columns of the shop tables (any type in the shop: integer, text, uuid).
SHOP_ID_COLUMNS = ("customer_id", "order_id", "refund_id", "subscription_id")


def file_entities(source: str | None = None) -> tuple[FileEntity, ...]:
    return tuple(e for e in FILE_ENTITIES if source is None or e.source == source)


def file_entity(source: str, entity: str) -> FileEntity:
    for e in FILE_ENTITIES:
        if e.source == source and e.entity == entity:
            return e
    raise KeyError(f"no contract for {source}/{entity}")


def shop_table(table: str) -> ShopTable:
    for t in SHOP_TABLES:
        if t.table == table:
            return t
    raise KeyError(f"no contract for shop table {table}")
