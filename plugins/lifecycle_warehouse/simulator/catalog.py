"""The simulated company's fixed reference data: markets, products, web pages, traffic
sources and marketing campaigns. Plain data, no randomness: the seed decides who does
what, not what the shop sells.

The shop is "Northwind Outfitters", selling outdoor apparel and home goods in seven
countries and four currencies through web, app, stores and marketplaces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta

SITE = "https://shop.example.com"
BRAND = "Northwind Outfitters"


@dataclass(frozen=True)
class Country:
    code: str
    weight: float
    locale: str  # Faker locale for names, cities and phones
    currency: str
    tax_rate: float  # sales tax / VAT applied to (subtotal - discount)
    email_domains: tuple[str, ...]


COUNTRIES: tuple[Country, ...] = (
    Country("US", 0.38, "en_US", "USD", 0.07, ("gmail.com", "yahoo.com", "outlook.com", "icloud.com")),
    Country("GB", 0.14, "en_GB", "GBP", 0.20, ("gmail.com", "hotmail.co.uk", "btinternet.com", "outlook.com")),
    Country("DE", 0.16, "de_DE", "EUR", 0.19, ("gmail.com", "gmx.de", "web.de", "t-online.de")),
    Country("FR", 0.10, "fr_FR", "EUR", 0.20, ("gmail.com", "orange.fr", "free.fr", "laposte.net")),
    Country("CA", 0.10, "en_CA", "CAD", 0.13, ("gmail.com", "yahoo.ca", "outlook.com", "rogers.com")),
    Country("NL", 0.06, "nl_NL", "EUR", 0.21, ("gmail.com", "ziggo.nl", "kpnmail.nl", "hotmail.nl")),
    Country("ES", 0.06, "es_ES", "EUR", 0.21, ("gmail.com", "hotmail.es", "yahoo.es", "telefonica.net")),
)

# List prices per currency relative to USD (price lists, not FX rates: the warehouse
# converts with its own FX table, which should sit near these).
PRICE_FACTORS: dict[str, float] = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "CAD": 1.37}
SHIPPING_CENTS = 595  # flat shipping fee in the order's currency (web, app, marketplace)
FREE_SHIPPING_FROM_CENTS = 7500  # free shipping from this (subtotal - discount)


def list_price_cents(usd_price: float, currency: str) -> int:
    """A shelf price in `currency`: USD price times the price-list factor, ending in .95/.99."""
    raw = usd_price * PRICE_FACTORS[currency]
    whole = max(int(raw), 1)
    return whole * 100 + (95 if currency == "EUR" else 99)


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    usd_price: float


_PRODUCTS = (
    ("apparel", (
        ("Storm Shell Rain Jacket", 189.0), ("Merino Base Layer Top", 79.0), ("Fleece Pullover", 69.0),
        ("Trail Shorts", 49.0), ("Down Vest", 129.0), ("Organic Cotton Tee", 29.0), ("Softshell Pants", 99.0),
    )),
    ("footwear", (
        ("Ridge Hiking Boot", 169.0), ("Trail Running Shoe", 139.0), ("Camp Slide", 39.0),
        ("Winter Snow Boot", 189.0), ("Wool Hiking Socks (3 pack)", 24.0),
    )),
    ("accessories", (
        ("Daypack 22L", 89.0), ("Insulated Bottle 750ml", 34.0), ("Beanie", 25.0),
        ("Touchscreen Gloves", 29.0), ("Trekking Poles", 119.0), ("Headlamp 400lm", 45.0),
    )),
    ("home", (
        ("Stoneware Mug Set", 39.0), ("Wool Throw Blanket", 99.0), ("Enamel Camp Kettle", 49.0),
        ("Cedar Candle", 22.0), ("Linen Cushion Cover", 35.0),
    )),
    ("beauty", (
        ("SPF 50 Sun Stick", 16.0), ("Repair Hand Balm", 14.0), ("Lip Balm Trio", 12.0),
        ("Natural Insect Repellent", 18.0),
    )),
    ("outdoor", (
        ("Two-Person Tent", 349.0), ("Down Sleeping Bag", 279.0), ("Camp Stove", 89.0),
        ("Folding Camp Chair", 69.0), ("Water Filter", 59.0), ("Hammock", 79.0),
    )),
)


def products() -> tuple[Product, ...]:
    out = []
    for category, items in _PRODUCTS:
        for n, (name, price) in enumerate(items, start=1):
            out.append(Product(f"{category[:3].upper()}-{100 + n}", name, category, price))
    return tuple(out)


CATEGORIES: tuple[str, ...] = tuple(category for category, _ in _PRODUCTS)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-").replace("--", "-")


class Page:
    """A page of the web shop, with its URL and title already encoded as JSON strings
    (the event writer pastes them into hand-built JSON lines)."""

    __slots__ = ("kind", "path", "title", "product", "url", "url_json", "title_json", "context_json")

    def __init__(self, kind: str, path: str, title: str, product: Product | None = None):
        self.kind = kind  # home, category, product, cart, checkout, confirmation, signup, login, blog
        self.path = path
        self.title = title
        self.product = product
        self.url = SITE + path
        self.url_json = json.dumps(self.url)
        self.title_json = json.dumps(title, ensure_ascii=False)
        # `"page_url":…,"page_title":…` without the first key: the writer adds it
        self.context_json = f'{self.url_json},"page_title":{self.title_json}'


@dataclass(frozen=True)
class Site:
    home: Page
    categories: dict[str, Page]
    product_pages: dict[str, Page]  # by sku
    cart: Page
    checkout: Page
    confirmation: Page
    signup: Page
    login: Page
    blog: tuple[Page, ...]


def site(catalog: tuple[Product, ...]) -> Site:
    def page(kind, path, title, product=None):
        return Page(kind, path, f"{title} | {BRAND}", product)

    return Site(
        home=page("home", "/", "Outdoor clothing & gear"),
        categories={c: page("category", f"/c/{c}", c.capitalize()) for c in CATEGORIES},
        product_pages={p.sku: page("product", f"/p/{p.sku.lower()}/{_slug(p.name)}", p.name, p) for p in catalog},
        cart=page("cart", "/cart", "Your cart"),
        checkout=page("checkout", "/checkout", "Checkout"),
        confirmation=page("confirmation", "/checkout/confirmation", "Thank you for your order"),
        signup=page("signup", "/account/sign-up", "Create your account"),
        login=page("login", "/account/login", "Sign in"),
        blog=tuple(
            page("blog", f"/journal/{_slug(t)}", t)
            for t in ("Ten day hikes near the city", "How to layer for winter", "Caring for merino wool",
                      "Camp kitchen checklist", "Rain gear, explained")
        ),
    )


# --- marketing ------------------------------------------------------------------------

@dataclass(frozen=True)
class CampaignSpec:
    """An always-on or seasonal marketing campaign; `utm_*` tag its landing hits."""

    key: str
    name: str
    channel: str  # contract.CHANNELS
    utm_source: str
    utm_medium: str
    currency: str  # ad account currency
    monthly_budget: float
    cpc: float = 0.0  # cost per click in the account currency (0: no ad spend rows)
    ctr: float = 0.0  # clicks / impressions
    referrer: str | None = None  # referrer of the landing hit
    terms: tuple[str, ...] = ()  # utm_term values (search keywords)
    contents: tuple[str, ...] = ()  # utm_content values (ad variants)


ALWAYS_ON_CAMPAIGNS: tuple[CampaignSpec, ...] = (
    CampaignSpec("search_brand", "Google Search - Brand", "paid_search", "google", "cpc", "USD", 1500,
                 cpc=0.45, ctr=0.09, referrer="https://www.google.com/",
                 terms=("northwind outfitters", "northwind", "northwind shop")),
    CampaignSpec("search_generic", "Google Search - Generic", "paid_search", "google", "cpc", "USD", 6000,
                 cpc=1.25, ctr=0.035, referrer="https://www.google.com/",
                 terms=("rain jacket", "hiking boots", "merino base layer", "two person tent", "camp stove")),
    CampaignSpec("bing_generic", "Bing Search - Generic", "paid_search", "bing", "cpc", "USD", 900,
                 cpc=0.85, ctr=0.03, referrer="https://www.bing.com/", terms=("rain jacket", "hiking boots")),
    CampaignSpec("fb_prospecting", "Meta - Prospecting", "paid_social", "facebook", "paid_social", "EUR", 4000,
                 cpc=0.70, ctr=0.012, referrer="https://m.facebook.com/", contents=("video_15s", "carousel")),
    CampaignSpec("ig_retargeting", "Instagram - Retargeting", "paid_social", "instagram", "paid_social", "EUR",
                 1800, cpc=0.55, ctr=0.02, referrer="https://l.instagram.com/", contents=("story", "reel")),
    CampaignSpec("tiktok_awareness", "TikTok - Awareness", "paid_social", "tiktok", "paid_social", "USD", 1200,
                 cpc=0.40, ctr=0.009, referrer="https://www.tiktok.com/", contents=("ugc_01", "ugc_02")),
    CampaignSpec("gdn_remarketing", "Display - Remarketing", "display", "google", "display", "USD", 1500,
                 cpc=0.60, ctr=0.004, referrer="https://www.googleadservices.com/", contents=("banner_300x250",)),
    CampaignSpec("affiliate_network", "Affiliate Network", "affiliate", "awin", "affiliate", "USD", 1000,
                 cpc=0.50, ctr=0.02, referrer="https://www.outdoor-deals.example/"),
    CampaignSpec("refer_a_friend", "Refer a Friend", "referral", "referral", "referral", "USD", 500),
    CampaignSpec("outdoor_expo", "Outdoor Expo", "event", "event", "offline", "USD", 3000),
    CampaignSpec("welcome_series", "Welcome Series", "email", "newsletter", "email", "USD", 0),
)
SEASONAL_CAMPAIGN = CampaignSpec(
    "seasonal_sale", "Seasonal Sale - Social", "paid_social", "facebook", "paid_social", "EUR", 3000,
    cpc=0.65, ctr=0.015, referrer="https://m.facebook.com/", contents=("sale_carousel",),
)
SEASONAL_DAYS = 14

# Which campaign a paid first touch / paid returning visit comes through, by channel.
PAID_CHANNEL_CAMPAIGNS: dict[str, tuple[tuple[str, float], ...]] = {
    "paid_search": (("search_generic", 0.7), ("bing_generic", 0.1), ("search_brand", 0.2)),
    "paid_social": (("fb_prospecting", 0.65), ("tiktok_awareness", 0.35)),
    "display": (("gdn_remarketing", 1.0),),
    "affiliate": (("affiliate_network", 1.0),),
    "referral": (("refer_a_friend", 1.0),),
    "retargeting": (("ig_retargeting", 0.6), ("gdn_remarketing", 0.4)),
}
BRAND_SEARCH = (("search_brand", 1.0),)

# Unpaid sources: referrer only, no campaign tags.
ORGANIC_REFERRERS: dict[str, tuple[str, ...]] = {
    "organic_search": ("https://www.google.com/", "https://www.google.com/", "https://www.bing.com/",
                       "https://duckduckgo.com/"),
    "organic_social": ("https://www.instagram.com/", "https://www.facebook.com/", "https://t.co/",
                       "https://www.reddit.com/"),
    "referral_site": ("https://www.trailblog.example/best-rain-jackets", "https://gearreview.example/tents",
                      "https://www.outdoor-forum.example/t/boots"),
}


@dataclass
class Campaign:
    """A campaign as the CRM knows it (one row of crm/campaigns)."""

    campaign_id: str
    spec: CampaignSpec
    name: str
    utm_campaign: str
    start_date: date
    end_date: date | None
    created_on: date  # the CRM delivery that first holds it
    budget: float
    channel: str = field(init=False)

    def __post_init__(self):
        self.channel = self.spec.channel


def build_campaigns(start: date, days: int, history_days: int) -> list[Campaign]:
    """Campaigns of the simulated company, in the order they were created: the always-on
    ones (running since the start of the shop's history), a seasonal sale starting a third
    into the window, and one email campaign per newsletter (Tuesdays) and promotion (every
    other Friday) inside the window."""
    history_start = start - timedelta(days=history_days)
    specs: list[tuple[date, CampaignSpec, str, str, date, date | None, float]] = []
    for spec in ALWAYS_ON_CAMPAIGNS:
        specs.append((history_start, spec, spec.name, spec.key, history_start, None, spec.monthly_budget * 12))
    seasonal_start = start + timedelta(days=days // 3)
    specs.append((
        seasonal_start - timedelta(days=2), SEASONAL_CAMPAIGN,
        f"{SEASONAL_CAMPAIGN.name} {seasonal_start:%Y-%m}", f"seasonal_sale_{seasonal_start:%Y_%m}",
        seasonal_start, seasonal_start + timedelta(days=SEASONAL_DAYS - 1), SEASONAL_CAMPAIGN.monthly_budget,
    ))
    for send_day, kind in email_sends(start, days):
        spec = CampaignSpec(f"{kind}_{send_day:%Y%m%d}", "", "email", "newsletter", "email", "USD", 0)
        name = f"Newsletter {send_day:%Y-%m-%d}" if kind == "newsletter" else f"Promo {send_day:%Y-%m-%d}: 15% off"
        created = max(send_day - timedelta(days=3), start)
        specs.append((created, spec, name, f"{kind}_{send_day:%Y_%m_%d}", send_day, send_day, 0.0))
    specs.sort(key=lambda s: (s[0], s[3]))
    return [
        Campaign(f"CMP-{n:04d}", spec, name, utm, start_date, end_date, created, budget)
        for n, (created, spec, name, utm, start_date, end_date, budget) in enumerate(specs, start=1)
    ]


def email_sends(start: date, days: int) -> list[tuple[date, str]]:
    """(send day, kind) of the bulk emails inside the window: newsletters on Tuesdays,
    promotions on every other Friday."""
    out = []
    for i in range(days):
        day = start + timedelta(days=i)
        if day.weekday() == 1:
            out.append((day, "newsletter"))
        elif day.weekday() == 4 and day.isocalendar()[1] % 2 == 0:
            out.append((day, "promo"))
    return out


# --- survey comments: some hold commas, quotes and a line break on purpose (RFC 4180) ---
SURVEY_COMMENTS: tuple[str, ...] = (
    "Great quality, fast delivery.",
    "Jacket runs a bit small",
    'The "waterproof" boots leaked after a week',
    "Love it!",
    "Customer service was helpful, thanks",
    "Delivery took longer than promised",
    "Second order, still happy",
    "Packaging could use less plastic",
    "Tent was missing a pole.\nReplacement arrived quickly though.",
    "Prices are high, but worth it",
)

REFUND_REASONS: tuple[str, ...] = ("wrong_size", "damaged", "not_as_described", "changed_mind", "late_delivery")
COUPONS_FIRST_ORDER = (("WELCOME10", 10),)
COUPONS_OTHER = (("SAVE15", 15), ("FREESHIP", 0), ("AUTUMN20", 20))
COUPON_LOYALTY = ("LOYALTY500", None)  # fixed 5.00 off when 500 points are redeemed
