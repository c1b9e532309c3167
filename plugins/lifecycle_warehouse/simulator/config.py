"""What a simulation run is asked to do (`SimulationConfig`), the behaviour it plants
(`Rates`) and what it reports back (`SimulationResult`).

Every probability, mean and distribution the simulator draws from lives in `Rates`, so
that the truth file can record all of them and tests can compare the warehouse's KPIs
with the values that were planted. docs/simulator.md explains each one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from pathlib import Path

DEFAULT_START = date(2026, 9, 1)
SHOP_ID_KINDS = ("integer", "text", "uuid")

# Lifecycle, channel and delivery rates. Probabilities are per person, per session, per
# event or per order as their docstring-like comments say.


@dataclass(frozen=True)
class Rates:
    # --- acquisition (awareness -> known) -------------------------------------------
    # Acquisition rate at the end of the horizon relative to its start, minus one
    # (1.0: twice as many new people per day at the end as at the beginning).
    acquisition_growth: float = 1.0
    # Known persons who only ever buy in a store / marketplace: shop customer, no CRM contact.
    p_store_only: float = 0.12
    # How the other known persons were acquired (CRM `lead_source`, first touch on the web).
    # `event` and `import` persons are created in the CRM without a web sign-up.
    acquisition_channels: tuple[tuple[str, float], ...] = (
        ("organic_search", 0.22),
        ("direct", 0.14),
        ("paid_search", 0.20),
        ("paid_social", 0.15),
        ("display", 0.05),
        ("affiliate", 0.06),
        ("referral", 0.07),
        ("event", 0.05),
        ("import", 0.06),
    )
    # Share of first-time web visitors who sign up (identify); the others stay anonymous.
    p_identify: float = 0.06
    # Anonymous sessions a web sign-up had before signing up (1 + geometric with this mean).
    pre_signup_sessions_mean: float = 1.5
    pre_signup_window_days: float = 14.0
    # Anonymous-only visitor: probability of each further return visit; mean days between visits.
    p_anonymous_return: float = 0.35
    anonymous_return_mean_days: float = 6.0

    # --- devices and identity -----------------------------------------------------
    p_second_device: float = 0.30
    p_use_second_device: float = 0.35  # per session, once a person has a second device
    p_logged_in: float = 0.85  # session on an identified device carries user_id throughout
    p_login_on_new_device: float = 0.40  # session on a not-yet-identified device logs in
    device_types: tuple[tuple[str, float], ...] = (
        ("desktop", 0.45),
        ("mobile", 0.48),
        ("tablet", 0.07),
    )

    # --- engagement ---------------------------------------------------------------
    p_engaged: float = 0.60  # contact engages after acquisition
    engaged_mean_days: float = 45.0  # how long the engaged phase lasts (exponential)
    sessions_per_day_engaged: float = 0.22
    sessions_per_day_customer: float = 0.05  # while an alive (not dropped-out) customer
    sessions_per_day_base: float = 0.012  # every known web person, any time
    # Share of returning sessions that come from each traffic source (paid = retargeting / brand search).
    returning_sources: tuple[tuple[str, float], ...] = (
        ("direct", 0.40),
        ("organic_search", 0.25),
        ("organic_social", 0.08),
        ("referral_site", 0.04),
        ("paid_search", 0.13),
        ("retargeting", 0.10),
    )

    # --- conversion ---------------------------------------------------------------
    p_first_order_engaged: float = 0.50  # P(first order | engaged), eventually
    p_first_order_not_engaged: float = 0.08
    first_order_mean_days_engaged: float = 12.0
    first_order_mean_days_not_engaged: float = 90.0

    # --- repeat purchases: BG/NBD (Fader, Hardie & Lee 2005), time in weeks ---------
    # lambda ~ Gamma(shape r, rate alpha) purchases/week; after each repeat purchase the
    # customer drops out with probability p ~ Beta(a, b).
    bgnbd_r: float = 0.45
    bgnbd_alpha: float = 8.0
    bgnbd_a: float = 0.8
    bgnbd_b: float = 2.5
    # --- spend per order: Gamma-Gamma (Fader & Hardie 2013), in USD -----------------
    # nu ~ Gamma(shape q, rate gamma); order value z ~ Gamma(shape p, rate nu); E[z] = p*gamma/(q-1).
    gg_p: float = 6.0
    gg_q: float = 4.0
    gg_gamma: float = 40.0

    # --- churn and reactivation ---------------------------------------------------
    # A dropped-out customer is won back (one more purchase, then a new BG/NBD life)
    # with this probability, after a gap drawn uniformly between min and max days.
    p_winback: float = 0.25
    winback_min_days: float = 190.0
    winback_max_days: float = 540.0

    # --- orders -------------------------------------------------------------------
    # Order channel mix by kind of person.
    order_channels_web: tuple[tuple[str, float], ...] = (
        ("web", 0.72), ("app", 0.18), ("marketplace", 0.06), ("store", 0.04),
    )
    order_channels_crm: tuple[tuple[str, float], ...] = (
        ("web", 0.50), ("app", 0.10), ("store", 0.30), ("marketplace", 0.10),
    )
    order_channels_store: tuple[tuple[str, float], ...] = (("store", 0.75), ("marketplace", 0.25))
    # A valid order is preceded by a cancelled attempt (failed payment, changed mind).
    p_cancelled_attempt: float = 0.04
    p_slow_payment: float = 0.08  # paid 1-5 days after ordering (bank transfer): pending meanwhile
    p_refund: float = 0.06  # of delivered orders
    p_partial_refund: float = 0.35  # of refunds: one line refunded, order stays delivered
    p_coupon: float = 0.15
    p_purchase_tracked: float = 0.95  # web order whose session reaches the web export (no ad blocker)

    # --- subscriptions ------------------------------------------------------------
    p_subscribe: float = 0.12  # at a customer's first web/app order
    plans: tuple[tuple[str, float, float], ...] = (  # plan, weight, monthly price in USD
        ("basic", 0.55, 9.99),
        ("plus", 0.33, 19.99),
        ("premium", 0.12, 39.99),
    )
    subscription_monthly_upgrade: float = 0.03
    subscription_monthly_downgrade: float = 0.015
    subscription_monthly_cancel: float = 0.05
    subscription_monthly_pause: float = 0.01

    # --- web sessions -------------------------------------------------------------
    p_bounce: float = 0.40  # browse session: one page_view and nothing else
    extra_pages_mean: float = 3.0  # further pages of a non-bounced browse session
    p_product_page: float = 0.55  # a further page is a product page (page_view + view_item)
    p_add_to_cart: float = 0.12  # non-bounced browse session adds to cart
    p_remove_from_cart: float = 0.15  # given add_to_cart
    p_begin_checkout: float = 0.40  # given add_to_cart (browse sessions never purchase)
    engagement_time_median_s: float = 22.0
    engagement_time_sigma: float = 0.9  # lognormal sigma of page engagement time

    # --- delivery quirks of the web export ----------------------------------------
    p_late: float = 0.03  # event delivered 1-3 days after the day it occurred
    late_max_days: int = 3
    p_duplicate: float = 0.005  # event delivered twice (same event_id)
    p_duplicate_next_day: float = 0.5  # the second copy is in the next day's file
    p_gzip_day: float = 0.3  # a day's web file is gzipped

    # --- email --------------------------------------------------------------------
    p_unsubscribed_before_start: float = 0.10  # contacts created before the window
    p_email_bounce: float = 0.02  # hard bounce: no further sends
    p_open_engaged: float = 0.40  # engaged or alive customer at send time
    p_open_other: float = 0.15
    p_reopen: float = 0.25
    p_click_given_open: float = 0.22
    p_unsubscribe: float = 0.005  # of delivered
    p_spam_report: float = 0.0008  # of delivered
    open_delay_mean_hours: float = 5.0

    # --- surveys ------------------------------------------------------------------
    p_nps_response: float = 0.18  # per delivered order of a contact
    p_csat_response: float = 0.12
    # Relationship NPS: once in the window, every contact who has bought is asked.
    p_nps_relationship_response: float = 0.12
    loyal_min_orders: int = 3  # survey answered with at least this many valid orders: loyal distribution
    nps_loyal: tuple[float, ...] = (  # P(score = 0..10)
        0.01, 0.005, 0.005, 0.01, 0.01, 0.02, 0.04, 0.08, 0.17, 0.30, 0.35,
    )
    nps_other: tuple[float, ...] = (
        0.03, 0.02, 0.03, 0.03, 0.04, 0.07, 0.08, 0.17, 0.18, 0.17, 0.18,
    )
    csat: tuple[float, ...] = (0.05, 0.07, 0.13, 0.35, 0.40)  # P(score = 1..5)
    p_survey_comment: float = 0.30

    # --- loyalty programme --------------------------------------------------------
    points_per_currency_unit: int = 1
    redeem_threshold_points: int = 500
    p_redeem: float = 0.35  # at an order while the balance reaches the threshold
    referral_points: int = 250
    points_expire_after_days: int = 365  # balance expires after this long without earning

    # --- CRM ----------------------------------------------------------------------
    p_subscriber_only: float = 0.25  # new web contact starts as `subscriber`, else `lead`
    profile_updates_per_year: float = 0.3  # phone / city changes of a contact
    p_phone: float = 0.70
    # Identity: emails differ in case / surrounding spaces between CRM and shop.
    p_email_variant: float = 0.08

    def validate(self) -> None:
        """Fail early, naming the rate, instead of producing nonsense data."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"Rates.{f.name} must be a probability in [0, 1], got {value}")
            if isinstance(value, (int, float)) and not f.name.startswith("p_") and value < 0:
                raise ValueError(f"Rates.{f.name} must not be negative, got {value}")
        for name in (
            "pre_signup_window_days", "anonymous_return_mean_days", "engaged_mean_days",
            "first_order_mean_days_engaged", "first_order_mean_days_not_engaged", "bgnbd_r", "bgnbd_alpha",
            "bgnbd_a", "bgnbd_b", "gg_p", "gg_gamma", "engagement_time_median_s", "open_delay_mean_hours",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"Rates.{name} must be positive, got {getattr(self, name)}")
        if self.extra_pages_mean < 1:
            raise ValueError(f"Rates.extra_pages_mean must be at least 1, got {self.extra_pages_mean}")
        for name in (
            "acquisition_channels", "device_types", "returning_sources", "order_channels_web",
            "order_channels_crm", "order_channels_store",
        ):
            total = sum(w for _, w in getattr(self, name))
            if not math.isclose(total, 1.0, abs_tol=1e-9):
                raise ValueError(f"Rates.{name} weights must sum to 1, got {total}")
        for name, size in (("nps_loyal", 11), ("nps_other", 11), ("csat", 5)):
            dist = getattr(self, name)
            if len(dist) != size or not math.isclose(sum(dist), 1.0, abs_tol=1e-9):
                raise ValueError(f"Rates.{name} must be {size} probabilities summing to 1")
        if not math.isclose(sum(w for _, w, _ in self.plans), 1.0, abs_tol=1e-9):
            raise ValueError("Rates.plans weights must sum to 1")
        if self.p_late and not 1 <= self.late_max_days <= 3:
            raise ValueError("Rates.late_max_days must be 1-3 (the contract allows 3 days)")
        if self.gg_q <= 1:
            raise ValueError("Rates.gg_q must be > 1 (finite mean order value)")
        if self.winback_min_days > self.winback_max_days:
            raise ValueError("Rates.winback_min_days must not exceed winback_max_days")

    def expected_repeat_within_days(self, days: float) -> float:
        """P(a new customer makes a repeat purchase within `days`) under the planted BG/NBD:
        nobody drops out before the first repeat, so it is 1 - E[exp(-lambda t)]."""
        weeks = days / 7.0
        return 1.0 - (self.bgnbd_alpha / (self.bgnbd_alpha + weeks)) ** self.bgnbd_r

    def expected_order_value_usd(self) -> float:
        return self.gg_p * self.gg_gamma / (self.gg_q - 1.0)


@dataclass(frozen=True)
class SimulationConfig:
    """One simulation run. `None` paths/URLs fall back to `lifecycle_warehouse.settings`."""

    start: date = DEFAULT_START
    days: int = 60
    customers: int = 3000
    seed: int = 42
    history_days: int = 730
    # Type of the shop's ids: "integer" (1, 2, …), "text" (e.g. ord_3f9a1c…) or "uuid".
    shop_ids: str = "integer"
    landing_dir: Path | None = None
    shop_url: str | None = None
    truth_file: Path | None = None
    progress: bool = False
    rates: Rates = field(default_factory=Rates)
    # Write the shop as it was at the end of this day (its state at the next midnight UTC,
    # exclusive) instead of its final state; the simulated world is the same either way.
    shop_as_of: date | None = None
    # Write only the shop database: no landing files, no truth file.
    shop_only: bool = False

    @property
    def history_start_date(self) -> date:
        return self.start - timedelta(days=self.history_days)

    @property
    def last_day(self) -> date:
        """The last day of the file window (the simulation ends at the midnight after it)."""
        return self.start + timedelta(days=self.days - 1)

    def validate(self) -> None:
        if not isinstance(self.start, date):
            raise ValueError(f"start must be a date, got {self.start!r}")
        if self.days < 1:
            raise ValueError(f"days must be at least 1, got {self.days}")
        if self.customers < 0:
            raise ValueError(f"customers must not be negative, got {self.customers}")
        if self.history_days < 0:
            raise ValueError(f"history_days must not be negative, got {self.history_days}")
        if self.shop_ids not in SHOP_ID_KINDS:
            raise ValueError(f"shop_ids must be one of {', '.join(SHOP_ID_KINDS)}, got {self.shop_ids!r}")
        if self.shop_as_of is not None:
            if not isinstance(self.shop_as_of, date) or isinstance(self.shop_as_of, datetime):
                raise ValueError(f"shop_as_of must be a date, got {self.shop_as_of!r}")
            if not self.history_start_date <= self.shop_as_of <= self.last_day:
                raise ValueError(
                    f"shop_as_of must fall within the simulated clock, {self.history_start_date} "
                    f"(history start) … {self.last_day} (last day of the window), got {self.shop_as_of}"
                )
        self.rates.validate()

    def resolved(self) -> SimulationConfig:
        """The same config with defaults filled in from settings (env vars / embedded server)."""
        from lifecycle_warehouse import settings

        return replace(
            self,
            landing_dir=Path(self.landing_dir) if self.landing_dir else settings.landing_dir(),
            shop_url=self.shop_url or settings.shop_writer_url(),
            truth_file=Path(self.truth_file) if self.truth_file else settings.simulator_truth_file(),
        )


@dataclass
class SimulationResult:
    """Counts per source/entity for a summary; the full detail is in the truth file."""

    files: dict[str, int] = field(default_factory=dict)  # "crm/contacts" -> files written
    rows: dict[str, int] = field(default_factory=dict)  # "crm/contacts" / "shop/orders" -> rows
    truth_file: Path | None = None
    elapsed_s: float = 0.0
    web_events_per_s: float = 0.0
    shop_only: bool = False  # only the shop database was written (no landing files, no truth file)
    shop_as_of: date | None = None  # the shop holds its state at the end of this day

    def summary(self) -> str:
        width = max(len(k) for k in self.rows) if self.rows else 10
        lines = [f"{'source/entity':<{width}}  {'files':>6}  {'rows':>10}"]
        for key in sorted(self.rows):
            files = self.files.get(key)
            lines.append(f"{key:<{width}}  {'' if files is None else files:>6}  {self.rows[key]:>10,}")
        if self.shop_as_of is not None:
            lines.append(f"shop as of the end of {self.shop_as_of} (rows and versions before "
                         f"{self.shop_as_of + timedelta(days=1)} 00:00 UTC)")
        if self.shop_only:
            lines.append("shop only: no landing files and no truth file written")
            lines.append(f"elapsed: {self.elapsed_s:.1f} s")
        else:
            lines.append(f"truth file: {self.truth_file}")
            lines.append(f"elapsed: {self.elapsed_s:.1f} s ({self.web_events_per_s:,.0f} web events/s)")
        return "\n".join(lines)
