"""The web-analytics export (Segment / GA4-like JSON lines): sessions of anonymous
visitors and known persons, with sign-ups, logins and identify calls that link an
anonymous_id to a CRM contact, product views, carts, checkouts and purchases that match
shop orders, campaign tags on landing hits, and the export's delivery quirks (late
events, at-least-once duplicates, some days gzipped).

Two phases: `plan_sessions` decides who visits when, from where and on which device
(small: one tuple per session); `write_events` expands the sessions in time order into
events and streams them as hand-built JSON lines into the day files, so a million events
never sit in memory.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lifecycle_warehouse import contract
from lifecycle_warehouse.simulator import catalog
from lifecycle_warehouse.simulator.clock import DAY, WEEKDAY_TRAFFIC, Clock
from lifecycle_warehouse.simulator.config import Rates
from lifecycle_warehouse.simulator.crm import EmailClick
from lifecycle_warehouse.simulator.model import Chooser, Order, World, stream
from lifecycle_warehouse.simulator.writers import DayFiles, check_fields

# Order of the keys of every JSON line; checked against the contract.
WEB_EVENT_FIELDS = (
    "event_id", "event_name", "occurred_at", "anonymous_id", "user_id", "session_id", "page_url",
    "page_title", "referrer", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term",
    "device_type", "country", "properties",
)

# How the user_id is set during a session.
ANONYMOUS, LOGGED_IN, SIGN_UP, LOGIN, IDENTIFY = range(5)
# What the session is for.
BROWSE, PURCHASE = range(2)

_J = json.dumps
# RFC 4122 variant nibble (8, 9, a or b) for a random hex digit: ids look like uuid4.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
_ENG_PREFIX_LEN = len('{"engagement_time_msec":')


class Source:
    """Where a session comes from, with the landing hit's JSON fragment prepared once."""

    __slots__ = ("channel", "referrer", "utm", "campaign", "landing_kind", "landing_fragment", "query")

    def __init__(self, channel: str, referrer: str | None = None,
                 utm: tuple[str | None, ...] = (None,) * 5, campaign: catalog.Campaign | None = None,
                 landing_kind: str = "home"):
        self.channel = channel  # direct, organic_search, organic_social, referral_site, or a campaign channel
        self.referrer = referrer
        self.utm = utm  # utm_source, utm_medium, utm_campaign, utm_content, utm_term
        self.campaign = campaign
        self.landing_kind = landing_kind  # home, category, product, blog
        names = ("referrer", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
        self.landing_fragment = ",".join(f'"{n}":{_J(v)}' for n, v in zip(names, (referrer,) + utm))
        parts = [f"{n}={v.replace(' ', '+')}" for n, v in zip(names[1:], utm) if v]
        self.query = "?" + "&".join(parts) if parts else ""


NO_SOURCE_FRAGMENT = Source("none").landing_fragment  # all null


class Sources:
    """Every traffic source of the simulated company, and choosers by channel."""

    def __init__(self, campaigns: list[catalog.Campaign]):
        self.by_campaign_key: dict[str, list[Source]] = {}
        for c in campaigns:
            spec = c.spec
            if spec.channel == "email":
                continue
            landing = {"paid_search": "product", "paid_social": "product", "display": "category",
                       "affiliate": "product", "referral": "home", "event": "home"}[spec.channel]
            variants = []
            for content in spec.contents or (None,):
                for term in spec.terms or (None,):
                    variants.append(Source(
                        spec.channel, spec.referrer,
                        (spec.utm_source, spec.utm_medium, c.utm_campaign, content, term), c, landing,
                    ))
            self.by_campaign_key.setdefault(spec.key, []).extend(variants)
        self.email: dict[str, Source] = {
            c.campaign_id: Source("email", None, (c.spec.utm_source, c.spec.utm_medium, c.utm_campaign, None, None),
                                  c, "home")
            for c in campaigns if c.spec.channel == "email"
        }
        self.direct = Source("direct", landing_kind="home")
        self.organic = {
            channel: [Source(channel, ref, landing_kind="blog" if channel == "referral_site" else "product")
                      for ref in refs]
            for channel, refs in catalog.ORGANIC_REFERRERS.items()
        }
        self.campaign_choosers = {
            channel: Chooser(pairs) for channel, pairs in catalog.PAID_CHANNEL_CAMPAIGNS.items()
        }
        self.brand = Chooser(catalog.BRAND_SEARCH)
        self.seasonal = [c for c in campaigns if c.spec.key == catalog.SEASONAL_CAMPAIGN.key]

    def for_channel(self, channel: str, t: float, clock: Clock, rng: random.Random) -> Source:
        """A source of `channel` (an acquisition channel or a returning-visit source)."""
        if channel == "direct":
            return self.direct
        if channel in self.organic:
            return rng.choice(self.organic[channel])
        if channel == "paid_social" and self.seasonal:
            sale = self.seasonal[0]
            day = clock.date_of(t)
            if sale.start_date <= day <= (sale.end_date or day) and rng.random() < 0.5:
                return rng.choice(self.by_campaign_key[sale.spec.key])
        key = self.campaign_choosers[channel](rng)
        return rng.choice(self.by_campaign_key[key])


@dataclass(eq=False)
class Device:
    anonymous_id: str
    device_type: str
    identified: bool = False


@dataclass
class WebOutput:
    files: int = 0
    rows: int = 0
    stats: dict = field(default_factory=dict)
    landings: Counter = field(default_factory=Counter)  # (campaign_id, day) -> landing sessions


def _uuid(rng: random.Random) -> str:
    h = "%032x" % rng.getrandbits(128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# --- planning -------------------------------------------------------------------------


def plan_sessions(world: World, rates: Rates, seed: int, clicks: list[EmailClick]) -> tuple[list[tuple], dict]:
    """Every session of the window as a sortable tuple:
    (start_ms, seq, device, user_id, mode, kind, source, country, currency, payload)."""
    clock = world.clock
    rng = stream(seed, "web-plan")
    sources = Sources(world.campaigns)
    device_type_of = Chooser(rates.device_types)
    returning_of = Chooser(rates.returning_sources)
    clicks_by_person: dict[int, list[EmailClick]] = {}
    for click in clicks:
        clicks_by_person.setdefault(click.person.pid, []).append(click)

    sessions: list[tuple] = []
    seq = 0
    stats = Counter()
    w_mean = sum(WEEKDAY_TRAFFIC) / 7
    w_max = max(WEEKDAY_TRAFFIC)

    def returning_source(t: float) -> Source:
        channel = returning_of(rng)
        if channel == "paid_search":
            return rng.choice(sources.by_campaign_key[sources.brand(rng)])
        return sources.for_channel(channel, t, clock, rng)

    # Known persons --------------------------------------------------------------------
    for person in world.persons:
        if not person.has_web or person.acquired_at >= clock.end:
            continue
        planned: list[tuple[float, str, object]] = []  # (time, what, detail)
        if person.kind == "web":
            first_source = sources.for_channel(person.channel, person.acquired_at, clock, rng)
            q = rates.pre_signup_sessions_mean / (1.0 + rates.pre_signup_sessions_mean)
            n_pre = 0
            while rng.random() < q:
                n_pre += 1
            pre = sorted(person.acquired_at - rng.uniform(0.02, rates.pre_signup_window_days) * DAY
                         for _ in range(n_pre))
            for i, t in enumerate(pre):
                planned.append((t, "pre", first_source if i == 0 else returning_source(t)))
            signup_source = returning_source(person.acquired_at) if pre else first_source
            planned.append((person.acquired_at, "signup", signup_source))
        # browse sessions: a Poisson process whose rate depends on the person's phase,
        # thinned by weekday
        base, eng, cust = rates.sessions_per_day_base, rates.sessions_per_day_engaged, rates.sessions_per_day_customer
        peak = base + (eng if person.engaged else 0.0) + (cust if person.alive_intervals else 0.0)
        t = max(clock.start, person.acquired_at)
        candidate_rate = peak * w_max / w_mean
        while peak > 0:
            t += rng.expovariate(candidate_rate) * DAY
            if t >= clock.end:
                break
            rate = base + (eng if person.engaged_at(t) else 0.0) + (cust if person.alive_at(t) else 0.0)
            if rng.random() * peak * w_max < rate * clock.weekday_weight(t):
                tt = clock.diurnal(t)
                planned.append((tt, "browse", None))
        for order in person.orders:
            if (order.channel == "web" and not order.cancelled_attempt and clock.start <= order.ordered_at < clock.end):
                if rng.random() < rates.p_purchase_tracked:
                    planned.append((order.ordered_at, "purchase", order))
                else:
                    stats["purchases_untracked"] += 1
        for click in clicks_by_person.get(person.pid, ()):
            planned.append((click.at, "email", click))
        planned.sort(key=lambda p: (p[0], p[1]))

        devices: list[Device] = [Device(_uuid(rng), device_type_of(rng))]
        devices[0].identified = person.kind == "web" and person.acquired_at < clock.start
        has_second = rng.random() < rates.p_second_device
        user_id = _J(person.contact_id)
        country, currency = person.country.code, person.country.currency
        for t, what, detail in planned:
            device = devices[0]
            if what not in ("pre", "signup") and has_second and rng.random() < rates.p_use_second_device:
                if len(devices) == 1:
                    devices.append(Device(_uuid(rng), device_type_of(rng)))
                device = devices[1]
            kind, payload = BROWSE, None
            if what == "pre":
                mode, source = ANONYMOUS, detail
            elif what == "signup":
                mode, source = SIGN_UP, detail
            elif what == "email":
                source = sources.email[detail.campaign.campaign_id]
                mode = (LOGGED_IN if rng.random() < rates.p_logged_in else ANONYMOUS) if device.identified else IDENTIFY
            elif what == "purchase":
                kind, payload, source = PURCHASE, detail, returning_source(t)
                mode = (LOGGED_IN if rng.random() < rates.p_logged_in else LOGIN) if device.identified else LOGIN
            else:
                source = returning_source(t)
                if device.identified:
                    mode = LOGGED_IN if rng.random() < rates.p_logged_in else ANONYMOUS
                else:
                    mode = LOGIN if rng.random() < rates.p_login_on_new_device else ANONYMOUS
            if mode in (SIGN_UP, LOGIN, IDENTIFY):
                device.identified = True
            if kind == PURCHASE:
                events, first_user_event = _purchase_events(payload, source, mode, world.site, rates, rng)
                start_ms = int(payload.ordered_at) * 1000 - events[-1][0]
                payload = (events, first_user_event)
            else:
                start_ms = int(t * 1000)
            if start_ms < clock.start * 1000 - 3 * 3600 * 1000 or t >= clock.end:
                continue
            sessions.append((start_ms, seq, device, user_id, mode, kind, source, country, currency, payload))
            seq += 1
            stats[f"sessions:{what}"] += 1

    # Anonymous-only visitors ----------------------------------------------------------
    signups_in_window = sum(
        1 for p in world.persons if p.kind == "web" and clock.start <= p.acquired_at < clock.end
    )
    n_anonymous = round(signups_in_window * (1 - rates.p_identify) / rates.p_identify) if rates.p_identify else 0
    stats["web_signups_in_window"] = signups_in_window
    stats["anonymous_visitors"] = n_anonymous
    web_channels = [(c, w) for c, w in rates.acquisition_channels if c not in ("event", "import")]
    channel_of = Chooser(web_channels)
    country_of = Chooser((c, c.weight) for c in catalog.COUNTRIES)
    span = clock.end - clock.start
    for _ in range(n_anonymous):
        country = country_of(rng)
        device = Device(_uuid(rng), device_type_of(rng))
        channel = channel_of(rng)
        t = clock.diurnal(clock.start + rng.random() * span)
        first = True
        while t < clock.end:
            source = sources.for_channel(channel, t, clock, rng) if first else returning_source(t)
            sessions.append((int(t * 1000), seq, device, "null", ANONYMOUS, BROWSE, source, country.code,
                             country.currency, None))
            seq += 1
            stats["sessions:anonymous_visitor"] += 1
            first = False
            if rng.random() >= rates.p_anonymous_return:
                break
            t = clock.diurnal(t + rng.expovariate(1.0 / rates.anonymous_return_mean_days) * DAY)
    sessions.sort(key=lambda s: (s[0], s[1]))
    return sessions, dict(sorted(stats.items()))


# --- session contents -----------------------------------------------------------------


class _Pages:
    """Pages and pre-encoded JSON pieces used while expanding sessions."""

    def __init__(self, site: catalog.Site, products: tuple[catalog.Product, ...], rates: Rates):
        self.site = site
        self.products = products
        self.categories = list(site.categories.values())
        self.product_pages = [site.product_pages[p.sku] for p in products]
        self.mu = math.log(rates.engagement_time_median_s * 1000.0)
        self.sigma = rates.engagement_time_sigma
        self._item_props: dict[tuple[str, str, int], str] = {}

    def item_props(self, product: catalog.Product, currency: str, quantity: int = 0) -> str:
        key = (product.sku, currency, quantity)
        s = self._item_props.get(key)
        if s is None:
            price = catalog.list_price_cents(product.usd_price, currency)
            s = (f'{{"product_id":"{product.sku}","category":"{product.category}",'
                 f'"value":{price // 100}.{price % 100:02d},"currency":"{currency}"'
                 + (f',"quantity":{quantity}' if quantity else "") + "}")
            self._item_props[key] = s
        return s

    def landing(self, source: Source, rng: random.Random) -> catalog.Page:
        """The page a session lands on: mostly the kind the source links to."""
        kind, r = source.landing_kind, rng.random()
        if kind == "category":
            return rng.choice(self.categories)
        if kind == "home":
            return rng.choice(self.categories) if r < 0.3 else self.site.home
        if r < 0.7:
            return rng.choice(self.product_pages if kind == "product" else self.site.blog)
        return rng.choice(self.categories) if r < 0.85 else self.site.home


def _engagement_ms(pages: _Pages, rng: random.Random) -> int:
    return max(300, int(rng.lognormvariate(pages.mu, pages.sigma)))


def _browse_events(mode: int, currency: str, source: Source, pages: _Pages, rates: Rates, rng: random.Random):
    """(offset_ms, event_name, page, properties_json) of a browsing session, and the
    index of the first event that carries the user_id (None: none does)."""
    site = pages.site
    events = []
    landing = pages.landing(source, rng)
    events.append((0, "session_start", landing, "{}"))
    first_user_event = 0 if mode == LOGGED_IN else None
    if mode == IDENTIFY:
        events.append((150, "identify", landing, "{}"))
        first_user_event = 1
    off = 250
    eng = _engagement_ms(pages, rng)
    events.append((off, "page_view", landing, f'{{"engagement_time_msec":{eng}}}'))
    viewed = []
    if landing.product is not None:
        events.append((off + 400, "view_item", landing, pages.item_props(landing.product, currency)))
        viewed.append(landing.product)
    off += eng + int(rng.uniform(400, 3000))
    if mode in (SIGN_UP, LOGIN):
        page = site.signup if mode == SIGN_UP else site.login
        eng = _engagement_ms(pages, rng)
        events.append((off, "page_view", page, f'{{"engagement_time_msec":{eng}}}'))
        off += eng
        first_user_event = len(events)
        if mode == SIGN_UP:
            events.append((off, "sign_up", page, '{"method":"email"}'))
            events.append((off + 120, "identify", page, "{}"))
        else:
            events.append((off, "login", page, '{"method":"email"}'))
        off += int(rng.uniform(800, 3000))
    elif rng.random() < rates.p_bounce:
        return events, first_user_event
    n_extra = 1
    q = (rates.extra_pages_mean - 1) / rates.extra_pages_mean if rates.extra_pages_mean > 1 else 0.0
    while rng.random() < q and n_extra < 25:
        n_extra += 1
    for _ in range(n_extra):
        eng = _engagement_ms(pages, rng)
        if rng.random() < rates.p_product_page:
            page = rng.choice(pages.product_pages)
            events.append((off, "page_view", page, f'{{"engagement_time_msec":{eng}}}'))
            events.append((off + 400, "view_item", page, pages.item_props(page.product, currency)))
            viewed.append(page.product)
        else:
            page = rng.choice(pages.categories) if rng.random() < 0.75 else rng.choice(site.blog)
            events.append((off, "page_view", page, f'{{"engagement_time_msec":{eng}}}'))
        off += eng + int(rng.uniform(400, 3000))
    if viewed and rng.random() < rates.p_add_to_cart:
        product = viewed[-1]
        page = site.product_pages[product.sku]
        events.append((off, "add_to_cart", page, pages.item_props(product, currency, 1)))
        off += int(rng.uniform(1000, 5000))
        eng = _engagement_ms(pages, rng)
        events.append((off, "page_view", site.cart, f'{{"engagement_time_msec":{eng}}}'))
        if rng.random() < rates.p_remove_from_cart:
            events.append((off + eng // 2, "remove_from_cart", site.cart, pages.item_props(product, currency, 1)))
        elif rng.random() < rates.p_begin_checkout:
            off += eng + int(rng.uniform(400, 3000))
            eng = _engagement_ms(pages, rng)
            price = catalog.list_price_cents(product.usd_price, currency)
            events.append((off, "page_view", site.checkout, f'{{"engagement_time_msec":{eng}}}'))
            events.append((off + 300, "begin_checkout", site.checkout,
                           f'{{"value":{price // 100}.{price % 100:02d},"currency":"{currency}","items":1}}'))
    return events, first_user_event


def _purchase_events(order: Order, source: Source, mode: int, site: catalog.Site, rates: Rates,
                     rng: random.Random) -> tuple[list[tuple], int | None]:
    """The session that ends in the order's purchase: product views, carting each line,
    checkout (logging in first if needed) and the purchase event at `ordered_at`."""
    mu = math.log(rates.engagement_time_median_s * 1000.0)

    def eng() -> int:
        return max(300, int(rng.lognormvariate(mu, rates.engagement_time_sigma)))

    cur = order.currency
    events = []
    first_user_event = 0 if mode == LOGGED_IN else None
    landing = site.home if source.landing_kind == "home" else site.product_pages[order.items[0][0].sku]
    events.append((0, "session_start", landing, "{}"))
    off = 250
    if landing.product is None:  # landed on the home page: go to the first product from there
        e = eng()
        events.append((off, "page_view", landing, f'{{"engagement_time_msec":{e}}}'))
        off += e + int(rng.uniform(400, 3000))
    for product, qty, price in order.items:
        page = site.product_pages[product.sku]
        e = eng()
        events.append((off, "page_view", page, f'{{"engagement_time_msec":{e}}}'))
        value = f"{price // 100}.{price % 100:02d}"
        props = f'"product_id":"{product.sku}","category":"{product.category}","value":{value},"currency":"{cur}"'
        events.append((off + 400, "view_item", page, "{" + props + "}"))
        events.append((off + int(e * 0.8), "add_to_cart", page, "{" + props + f',"quantity":{qty}}}'))
        off += e + int(rng.uniform(400, 3000))
    e = eng()
    events.append((off, "page_view", site.cart, f'{{"engagement_time_msec":{e}}}'))
    off += e + int(rng.uniform(400, 3000))
    if mode == LOGIN:
        e = eng()
        events.append((off, "page_view", site.login, f'{{"engagement_time_msec":{e}}}'))
        off += e
        first_user_event = len(events)
        events.append((off, "login", site.login, '{"method":"email"}'))
        off += int(rng.uniform(800, 3000))
    e = eng()
    total = f"{order.total // 100}.{order.total % 100:02d}"
    events.append((off, "page_view", site.checkout, f'{{"engagement_time_msec":{e}}}'))
    events.append((off + 300, "begin_checkout", site.checkout,
                   f'{{"value":{total},"currency":"{cur}","items":{len(order.items)}}}'))
    off += e + int(rng.uniform(30_000, 180_000))  # filling in the address and paying
    e = eng()
    events.append((off, "page_view", site.confirmation, f'{{"engagement_time_msec":{e}}}'))
    coupon = f',"coupon":"{order.coupon}"' if order.coupon else ""
    # The purchase comes last and carries the order: its offset anchors the session.
    events.append((off + 200, "purchase", site.confirmation,
                   f'{{"order_id":"{order.order_id}","value":{total},"currency":"{cur}"{coupon}}}'))
    return events, first_user_event


# --- writing --------------------------------------------------------------------------


def write_events(world: World, sessions: list[tuple], rates: Rates, seed: int, landing_dir: Path,
                 progress: bool = False) -> WebOutput:
    """Expand the sessions in time order into JSON lines, one file per delivery day."""
    clock = world.clock
    entity = contract.file_entity("web", "events")
    check_fields(entity, WEB_EVENT_FIELDS)
    rng = stream(seed, "web-events")
    day_rng = stream(seed, "web-files")
    gzip_days = [d for d in range(clock.days) if day_rng.random() < rates.p_gzip_day]
    files = DayFiles(landing_dir, entity, clock, name="events", gzip_days=gzip_days, max_open=16)
    pages = _Pages(world.site, world.products, rates)
    out = WebOutput()

    start_ms = int(clock.start * 1000)
    end_ms = int(clock.end * 1000)
    last_day = clock.days - 1
    day_ms = 86_400_000
    late_max = rates.late_max_days
    p_late = rates.p_late
    p_dup = rates.p_duplicate
    p_late_or_dup = p_late + p_dup
    p_dup_same = 1.0 - rates.p_duplicate_next_day
    iso_ms = clock.iso_ms
    getrandbits = rng.getrandbits
    random_ = rng.random
    # Lines wait in a list per delivery day and are written in blocks when the session
    # start moves to a new day (a day only receives events of the last few days) or when
    # too many are waiting.
    buffers: list[list[str]] = [[] for _ in range(clock.days)]

    def flush() -> None:
        for day, buffer in enumerate(buffers):
            if buffer:
                files.write_text(day, "".join(buffer), len(buffer))
                buffer.clear()

    lines = dupes = late = 0
    n_sessions = bounced = with_page_view = with_cart = with_purchase = with_cart_and_purchase = 0
    page_views = engagement_sum = 0
    event_counts: Counter = Counter()
    anonymous_ids: set[str] = set()
    identified_ids: set[str] = set()
    landings = out.landings
    current_day = 0
    waiting = 0  # value of `lines` at the last flush

    from tqdm import tqdm

    bar = tqdm(total=len(sessions), desc="web events", unit="session", disable=not progress, mininterval=0.5)
    for index, (s_ms, _, device, user_json, mode, kind, source, country, currency, payload) in enumerate(sessions):
        if index % 2048 == 0:
            bar.update(index - bar.n)
        day_of_start = (s_ms - start_ms) // day_ms
        if day_of_start > current_day:
            flush()
            files.finish_before(day_of_start)
            current_day = day_of_start
            waiting = lines
        elif lines - waiting > 50_000:
            flush()
            waiting = lines
        if kind == PURCHASE:
            events, first_user_event = payload
        else:
            events, first_user_event = _browse_events(mode, currency, source, pages, rates, rng)
        anon = device.anonymous_id
        h = "%032x" % getrandbits(128)
        session_id = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
        head_tail = f'"anonymous_id":"{anon}","user_id":'
        session_part = f',"session_id":"{session_id}","page_url":'
        device_part = f',"device_type":"{device.device_type}","country":"{country}","properties":'
        landing_fragment = source.landing_fragment
        landing_context = None
        s_page_views = 0
        s_cart = s_purchase = s_checkout = False
        wrote_any = False
        for i, (offset, name, page, props) in enumerate(events):
            ms = s_ms + offset
            if ms >= end_ms:
                break
            occ_day = (ms - start_ms) // day_ms
            if occ_day < 0:
                if occ_day < -late_max:
                    continue
                deliver = 0
            else:
                deliver = occ_day
            duplicate = False
            r = random_()
            if r < p_late_or_dup:
                if r < p_late:
                    deliver = min(occ_day + 1 + int(random_() * late_max), last_day) if occ_day >= 0 else 0
                else:
                    duplicate = True
            if i == 0 or (name == "page_view" and not s_page_views):  # the landing hit
                if landing_context is None:
                    landing_context = f'{_J(page.url + source.query)},"page_title":{page.title_json},{landing_fragment}'
                context = landing_context
            else:
                context = f"{page.context_json},{NO_SOURCE_FRAGMENT}"
            h = "%032x" % getrandbits(128)
            uid = user_json if first_user_event is not None and i >= first_user_event else "null"
            line = (
                f'{{"event_id":"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}","event_name":"{name}",'
                f'"occurred_at":"{iso_ms(ms)}",{head_tail}{uid}{session_part}{context}{device_part}{props}}}\n'
            )
            buffers[deliver].append(line)
            lines += 1
            if deliver > occ_day:
                late += 1
            if duplicate:
                again = deliver if random_() < p_dup_same else min(deliver + 1, last_day)
                buffers[again].append(line)
                lines += 1
                dupes += 1
            wrote_any = True
            event_counts[name] += 1
            if name == "page_view":
                s_page_views += 1
                engagement_sum += int(props[_ENG_PREFIX_LEN:-1])
            elif name == "add_to_cart":
                s_cart = True
            elif name == "begin_checkout":
                s_checkout = True
            elif name == "purchase":
                s_purchase = True
            if uid != "null":
                identified_ids.add(anon)
            if i == 0 and source.campaign is not None and occ_day >= 0:
                landings[(source.campaign.campaign_id, occ_day)] += 1
        if wrote_any:
            n_sessions += 1
            anonymous_ids.add(anon)
            page_views += s_page_views
            if s_page_views:
                with_page_view += 1
                if s_page_views == 1 and not (s_cart or s_checkout or s_purchase):
                    bounced += 1
            with_cart += s_cart
            with_purchase += s_purchase
            with_cart_and_purchase += s_cart and s_purchase
    flush()
    bar.update(len(sessions) - bar.n)
    bar.close()
    files.close()

    out.files = files.files
    out.rows = files.total_rows
    out.stats = {
        "lines_written": lines,
        "unique_events": lines - dupes,
        "duplicates_written": dupes,
        "late_events_written": late,
        "duplicate_share": round(dupes / (lines - dupes), 6) if lines > dupes else None,
        "late_share": round(late / (lines - dupes), 6) if lines > dupes else None,
        "gzip_days": [clock.date_of_index(d).isoformat() for d in gzip_days],
        "sessions": n_sessions,
        "sessions_with_page_view": with_page_view,
        "bounced_sessions": bounced,
        "bounce_rate": round(bounced / with_page_view, 6) if with_page_view else None,
        "sessions_with_add_to_cart": with_cart,
        "sessions_with_purchase": with_purchase,
        "sessions_with_add_to_cart_and_purchase": with_cart_and_purchase,
        "cart_abandonment_rate": round(1 - with_cart_and_purchase / with_cart, 6) if with_cart else None,
        "session_conversion_rate": round(with_purchase / n_sessions, 6) if n_sessions else None,
        "page_views": page_views,
        "avg_engagement_time_s": round(engagement_sum / page_views / 1000, 6) if page_views else None,
        "anonymous_ids": len(anonymous_ids),
        "anonymous_ids_with_user_id": len(identified_ids),
        "events_by_name": dict(sorted(event_counts.items())),
    }
    return out
