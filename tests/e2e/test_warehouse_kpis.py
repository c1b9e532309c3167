"""End to end: the KPIs BI reads in `analytics`, after a real pipeline run over simulated
sources, checked three ways:

1. against values recomputed in plain Python from the landing files and the shop tables
   (`kpi_reference.py`, which never reads a dbt model), for every day and month;
2. against the simulator's planted and realized rates (the truth file), within a tolerance
   set by the sample size;
3. for BI access: `bi_reader` reads `analytics` and nothing else, and no plain email is
   published.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.e2e.conftest import PLANTED_REFUND_ID
from tests.e2e.kpi_reference import (
    KPI_ATTRIBUTION_MODEL,
    Reference,
    Window,
    by_month,
    churn_and_reactivation,
    cohort_retention,
    contact_of_email,
    mrr_movements,
    normalized_email,
    order_kpis,
    retention_kpis,
    state_kpis,
)
from tests.e2e.scenario import PIPELINE_LAST, SHOP_FIRST_EXTRACT_LAST, START

pytestmark = pytest.mark.e2e

WINDOW = Window(START, PIPELINE_LAST)
REL_TOL = 1e-6  # money and rates; counts must be equal
ABS_TOL = 1e-12  # a rate of exactly 0 stored as 0E-20
Z = 4  # planted-rate checks allow this many standard errors

# kpi_daily columns recomputed from the landing files (compared on the window's days:
# the first day's file also holds a few events of the days before, not their full data).
FILE_KPIS = (
    "unique_visitors", "sessions", "new_contacts", "ad_impressions", "ad_clicks", "ad_spend", "ad_ctr",
    "bounce_rate", "avg_engagement_time_s", "email_open_rate", "email_click_rate",
    "email_unsubscribe_rate", "session_conversion_rate", "cart_abandonment_rate", "nps", "csat",
    "reward_redemption_rate", "referrals", "cac", "roas",
)
# kpi_daily columns recomputed from the shop tables (compared on every day: the shop's
# whole history is in scope, docs/sources.md §2).
SHOP_KPIS = (
    "orders", "revenue", "refunds", "net_revenue", "aov", "new_customers", "active_customers",
    "repeat_purchase_rate", "mrr",
)
# kpi_daily columns checked by invariants only (see test_kpis_without_an_independent_recomputation).
INVARIANT_KPIS = ("advocates",)


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def warehouse(pipeline) -> str:
    return pipeline[0].url("warehouse")


@pytest.fixture(scope="module")
def reference(pipeline) -> Reference:
    instance = pipeline[0]
    earlier = json.loads(instance.first_extract_subscriptions.read_text(encoding="utf-8"))
    return Reference.load(instance.landing, instance.url("shop"), WINDOW,
                          reporting=instance.env.get("REPORTING_CURRENCY", "USD"), earlier_subscriptions=earlier)


@pytest.fixture(scope="module")
def truth(pipeline) -> dict:
    return json.loads(pipeline[0].truth_file.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def kpi_daily(warehouse) -> dict[date, dict]:
    return {row["date"]: row for row in select(warehouse, "select * from analytics.kpi_daily order by date")}


@pytest.fixture(scope="module")
def expected_daily(reference, kpi_daily) -> dict[date, dict]:
    """The reference's KPIs for every day of kpi_daily and of the window."""
    return reference.daily(sorted(set(kpi_daily) | set(WINDOW.days())))


@pytest.fixture(scope="module")
def kpi_monthly(warehouse) -> dict[date, dict]:
    return {row["month"]: row for row in select(warehouse, "select * from analytics.kpi_monthly order by month")}


def select(url: str, query: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(url) as conn:
        cursor = conn.execute(query, params)
        columns = [c.name for c in cursor.description]
        return [dict(zip(columns, row)) for row in cursor]


def same(expected, got) -> bool:
    """Counts exactly; money and rates to REL_TOL; NULL only where a NULL is expected."""
    if expected is None or got is None:
        return expected is None and got is None
    if isinstance(expected, int) and not isinstance(expected, bool):
        return got == expected
    return math.isclose(float(expected), float(got), rel_tol=REL_TOL, abs_tol=ABS_TOL)


def shown(value) -> str:
    if isinstance(value, Fraction):
        return f"{float(value):.10g} (= {value})"
    return repr(value)


def differences(expected: dict, got: dict, columns, label: str = "") -> list[str]:
    """One line per (key, column) that differs: `column key: expected … got …`."""
    lines = []
    for key in sorted(expected):
        for column in columns:
            want = expected[key][column]
            have = got[key][column] if key in got else "<no row>"
            if key not in got or not same(want, have):
                lines.append(f"{label}{column} {key}: expected {shown(want)}, got {shown(have)}")
    return lines


def report(lines: list[str], limit: int = 30) -> str:
    more = f"\n… and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


# --- kpi_daily -----------------------------------------------------------------------------


def test_kpi_daily_has_one_row_per_day_from_the_first_data_to_the_last_pipeline_day(kpi_daily, reference):
    assert reference.data_end == PIPELINE_LAST, "the sources hold data up to the last pipeline day"
    first = reference.data_start
    expected = [first + timedelta(days=i) for i in range((PIPELINE_LAST - first).days + 1)]
    assert list(kpi_daily) == expected


@pytest.mark.parametrize("kpi", FILE_KPIS)
def test_kpi_daily_file_kpi_matches_the_landing_files(kpi, kpi_daily, expected_daily):
    expected = {day: expected_daily[day] for day in WINDOW.days()}
    lines = differences(expected, kpi_daily, [kpi])
    assert not lines, f"kpi_daily.{kpi} differs from the files' value on {len(lines)} day(s):\n{report(lines)}"


@pytest.mark.parametrize("kpi", SHOP_KPIS)
def test_kpi_daily_shop_kpi_matches_the_shop_tables(kpi, kpi_daily, expected_daily):
    lines = differences(expected_daily, kpi_daily, [kpi])
    assert not lines, f"kpi_daily.{kpi} differs from the shop's value on {len(lines)} day(s):\n{report(lines)}"


def test_kpi_daily_has_every_daily_kpi_column(kpi_daily):
    columns = set(next(iter(kpi_daily.values())))
    missing = set(FILE_KPIS + SHOP_KPIS + INVARIANT_KPIS) - columns
    assert not missing, f"kpi_daily lacks {sorted(missing)}"


def test_kpis_without_an_independent_recomputation(kpi_daily):
    """advocates needs the whole lifecycle stage machine (30-day engagement signals, NPS,
    referrals, 365-day order counts): recomputing it here would copy the warehouse's SQL
    rather than check it. Its invariant, every day: advocates are persons in the loyalty
    stage, which needs being active."""
    problems = []
    for day, row in kpi_daily.items():
        advocates, active = row["advocates"], row["active_customers"]
        if advocates is None or not 0 <= advocates <= active:
            problems.append(f"advocates {day}: {advocates} not within [0, active_customers = {active}]")
    assert not problems, report(problems)
    assert any(row["advocates"] for row in kpi_daily.values()), "some persons reach the loyalty stage"


def test_the_scenario_holds_what_the_kpis_must_get_right(reference, warehouse, kpi_daily):
    """The sources hold each trap the KPIs must not fall into; without them, the comparisons
    above could pass on a warehouse that gets them wrong."""
    # MRR history: subscriptions changed in place (plan or pause) between the extractions,
    # after the first one: a warehouse keeping only the latest rows rewrites their MRR
    first_versions, last_versions = {}, {}
    for version in reference.shop.subscription_versions:
        first_versions.setdefault(version.subscription_id, version)
        last_versions[version.subscription_id] = version
    changed = [
        sid for sid, first in first_versions.items()
        if (last_versions[sid].mrr_reporting, last_versions[sid].status) != (first.mrr_reporting, first.status)
        and first.updated_at.date() <= SHOP_FIRST_EXTRACT_LAST < last_versions[sid].updated_at.date()
    ]
    assert changed, "some subscriptions change plan or status in place after the first extraction"
    with psycopg.connect(warehouse) as conn:
        kept = conn.execute(
            "select count(*) from (select subscription_id from raw.shop_subscriptions_versions "
            "group by subscription_id having count(*) > 1) as changed"
        ).fetchone()[0]
    assert kept >= len(changed), f"raw keeps the versions of {kept} subscriptions, {len(changed)} changed"
    # refunds of valid orders only: the planted refund of a cancelled order is in raw, and
    # would lower that day's net revenue
    planted = next(r for r in reference.shop.refunds if r.refund_id == PLANTED_REFUND_ID)
    assert planted.order_id not in reference.shop.valid_order_ids
    assert same(kpi_daily[planted.refunded_at.date()]["refunds"],
                sum((r.amount_reporting for r in reference.shop.refunds
                     if r.refunded_at.date() == planted.refunded_at.date()
                     and r.order_id in reference.shop.valid_order_ids), Decimal(0)))
    # ROAS: conversions credited to organic channels and to paid ones (with spend)
    channels = {c.channel for c in reference.credits if c.model == KPI_ATTRIBUTION_MODEL}
    assert channels & {"organic_search", "organic_social", "organic_referral"}, channels
    assert channels & {"paid_search", "paid_social", "display"}, channels
    assert any(row["roas"] for row in kpi_daily.values()), "some conversions are attributed to paid channels"
    # quiet days: the as-of date is the run's last day, whatever the data holds
    assert max(kpi_daily) == PIPELINE_LAST


# --- kpi_monthly ---------------------------------------------------------------------------


def test_kpi_monthly_matches_the_sources(kpi_monthly, kpi_daily, reference):
    """Every month: the shop's flows, retention KPIs and end-of-month states; the months
    inside the window (where the files hold every day): the files' KPIs too, computed
    over the month's own events, not as averages of daily rates."""
    as_of = PIPELINE_LAST
    months = sorted(kpi_monthly)
    assert months[0] == by_month(reference.data_start) and months[-1] == by_month(as_of)

    orders = order_kpis(reference.shop, by_month)
    month_ends = {m: min((m + timedelta(days=32)).replace(day=1) - timedelta(days=1), as_of) for m in months}
    states = state_kpis(reference.shop, month_ends.values())
    retention = retention_kpis(reference.shop, months, as_of)
    movements = mrr_movements(reference.shop, months, as_of)
    churns = churn_and_reactivation(reference.shop, months, as_of)
    empty_orders = {"orders": 0, "revenue": Decimal(0), "refunds": Decimal(0), "net_revenue": Decimal(0),
                    "aov": None, "new_customers": 0, "purchase_frequency": None}
    expected = {
        m: {**empty_orders, **orders.get(m, {}), **states[month_ends[m]], **retention[m], **movements[m],
            **churns[m], "is_complete": month_ends[m] == (m + timedelta(days=32)).replace(day=1) - timedelta(days=1)}
        for m in months
    }
    shop_columns = ("orders", "revenue", "refunds", "net_revenue", "aov", "new_customers", "purchase_frequency",
                    "active_customers", "repeat_purchase_rate", "mrr", "active_customers_at_start", "churn_rate",
                    "customer_retention_rate", "new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr",
                    "churned_customers", "reactivated_customers", "churned_customers_at_start",
                    "reactivation_rate", "is_complete")
    lines = differences(expected, kpi_monthly, shop_columns, "kpi_monthly.")
    assert not kpi_monthly[by_month(as_of)]["is_complete"], "the as-of month is partial"
    assert any(expected[m]["expansion_mrr"] or expected[m]["contraction_mrr"] for m in months), (
        "plans change in place: some month has expansion or contraction MRR")

    files = reference.file_kpis(by_month)
    window_months = [m for m in months if m >= WINDOW.start]
    assert window_months, "the window holds the start of at least one month"
    file_columns = [c for c in FILE_KPIS if c not in ("cac", "roas")]
    lines += differences({m: files[m] for m in window_months}, kpi_monthly, file_columns, "kpi_monthly.")
    roas = reference.roas(by_month)
    lines += differences({m: {"roas": roas.get(m)} for m in months}, kpi_monthly, ["roas"], "kpi_monthly.")
    # Stocks are kpi_daily's value on the month's last day.
    for m in months:
        for column in ("active_customers", "repeat_purchase_rate", "mrr", "advocates"):
            if not same(kpi_daily[month_ends[m]][column], kpi_monthly[m][column]):
                lines.append(f"kpi_monthly.{column} {m}: {kpi_monthly[m][column]} is not kpi_daily's "
                             f"{kpi_daily[month_ends[m]][column]} of {month_ends[m]}")
    assert not lines, report(lines)


def test_channel_attribution_matches_the_sources(warehouse, reference):
    """Every month, channel and model: conversions credited, their revenue, the channel's
    spend, CAC and ROAS, from the sessions' channels (channel_mapping seed) and the shop's
    first orders; organic channels and direct have no spend, hence no CAC or ROAS."""
    rows = {
        (r["month"], r["channel"], r["attribution_model"]): r
        for r in select(warehouse, "select * from analytics.channel_attribution")
    }
    expected = reference.channel_attribution()
    assert rows.keys() == expected.keys(), (
        f"missing: {sorted(expected.keys() - rows.keys())[:10]}, "
        f"unexpected: {sorted(rows.keys() - expected.keys())[:10]}"
    )
    lines = differences(expected, rows, ("conversions", "revenue", "spend", "cac", "roas"), "channel_attribution.")
    assert not lines, report(lines)


def test_the_pipeline_summary_marks_the_partial_month(pipeline):
    output = pipeline[1].stdout
    assert "Headline KPIs" in output, output[-3000:]
    assert f"{PIPELINE_LAST:%Y-%m} (partial)" in output, output[-3000:]


# --- fct_orders ----------------------------------------------------------------------------


def test_fct_orders_has_one_row_per_extracted_shop_order(warehouse, reference):
    fetched = select(warehouse, "select * from analytics.fct_orders")
    rows = {r["order_id"]: r for r in fetched}
    orders = {o.order_id: o for o in reference.shop.orders}
    assert len(rows) == len(fetched), "order_id is unique"
    assert rows.keys() == orders.keys(), (
        f"missing: {sorted(orders.keys() - rows.keys())[:10]}, "
        f"unexpected: {sorted(rows.keys() - orders.keys())[:10]}"
    )
    refunded = reference.shop.refunded_by_order()
    first_orders = {o[0].order_id for o in reference.shop.valid_person_orders.values()}
    expected = {
        o.order_id: {
            "status": o.status,
            "currency": o.currency,
            "revenue": o.revenue,
            "refunded_amount": refunded.get(o.order_id, Decimal(0)),
            "net_revenue": o.revenue - refunded.get(o.order_id, Decimal(0)),
            "is_first_order": o.order_id in first_orders,
        }
        for o in orders.values()
    }
    lines = []
    for order_id, want in expected.items():
        for column, value in want.items():
            have = rows[order_id][column]
            ok = have == value if isinstance(value, (str, bool)) else same(value, have)
            if not ok:
                lines.append(f"fct_orders.{column} of order {order_id}: expected {value!r}, got {have!r}")
    assert not lines, report(lines)

    # Identity resolution, checked by its effect: the orders each customer_key holds are
    # exactly those of one person (shop customers merged by normalised email).
    by_key: dict[str, set[int]] = {}
    for row in rows.values():
        if row["customer_key"] is not None:
            by_key.setdefault(row["customer_key"], set()).add(row["order_id"])
    by_person: dict[str, set[int]] = {}
    for o in orders.values():
        if o.person is not None:
            by_person.setdefault(o.person, set()).add(o.order_id)
    assert sorted(map(sorted, by_key.values())) == sorted(map(sorted, by_person.values()))


def test_dim_customers_joins_contacts_and_shop_customers_by_email(warehouse, reference, truth):
    """docs/sources.md: a contact and a shop customer are one person when their emails
    match after trimming and lower-casing (the simulator plants case and space variants).
    Each person's representative shop customer is its earliest created one; its order
    totals are those of its valid orders."""
    contacts = contact_of_email(reference.files.contacts)
    persons = reference.shop.valid_person_orders
    refunded = reference.shop.refunded_by_order()
    expected = {}
    for person, customers in reference.shop.customers_by_person().items():
        primary = min(customers, key=lambda c: (c.created_at is None, c.created_at, c.customer_id))
        email = normalized_email(primary.email)
        orders = persons.get(person, [])
        expected[primary.customer_id] = {
            "contact_id": contacts.get(email) if email else None,
            "email_sha256": hashlib.sha256(email.encode()).hexdigest() if email else None,
            "orders_count": len(orders),
            "net_revenue": sum((o.revenue - refunded.get(o.order_id, Decimal(0)) for o in orders), Decimal(0)),
        }
    email_of_contact = {c["contact_id"]: c["email"] for c in reference.files.contacts}
    variants = sum(
        1 for c in reference.shop.customers.values()
        if (contact_id := contacts.get(normalized_email(c.email) or "")) and email_of_contact[contact_id] != c.email
    )
    assert variants > 0, "the simulator plants email variants between the CRM and the shop"

    rows = {
        r["shop_customer_id"]: r
        for r in select(warehouse, "select * from analytics.dim_customers where shop_customer_id is not null")
    }
    assert rows.keys() == expected.keys()
    lines = []
    for customer_id, want in expected.items():
        have = rows[customer_id]
        for column, value in want.items():
            got = have[column]
            if not (got == value if column in ("contact_id", "email_sha256") else same(value, got)):
                lines.append(f"dim_customers.{column} of shop customer {customer_id}: expected {value!r}, got {got!r}")
    assert not lines, report(lines)
    unmatched = sum(1 for want in expected.values() if want["contact_id"] is None)
    assert unmatched == truth["realized"]["shop"]["customers_without_contact"]


def test_fct_orders_revenue_adds_up_to_kpi_daily(warehouse, kpi_daily, reference):
    daily = {
        r["order_date"]: r for r in select(
            warehouse,
            "select order_date, count(*) as orders, sum(revenue) as revenue from analytics.fct_orders "
            "where status = any(%s) group by order_date",
            (["paid", "shipped", "delivered", "refunded"],),
        )
    }
    lines = []
    for day, row in kpi_daily.items():
        got = daily.get(day, {"orders": 0, "revenue": Decimal(0)})
        if got["orders"] != row["orders"] or not same(got["revenue"], row["revenue"]):
            lines.append(f"{day}: fct_orders has {got['orders']} valid orders for {got['revenue']}, "
                         f"kpi_daily {row['orders']} for {row['revenue']}")
    assert not lines, report(lines)
    valid_revenue = sum((o.revenue for o in reference.shop.orders if o.is_valid), Decimal(0))
    assert same(valid_revenue, sum((r["revenue"] for r in daily.values()), Decimal(0)))
    assert sum(r["revenue"] for d, r in daily.items() if d in WINDOW) > 0, "the window has revenue"


# --- cohort_retention ----------------------------------------------------------------------


def test_cohort_retention_matches_the_shop(warehouse, reference):
    rows = {
        (r["cohort_month"], r["months_since_first_order"]): r
        for r in select(warehouse, "select * from analytics.cohort_retention")
    }
    expected = cohort_retention(reference.shop, PIPELINE_LAST)
    assert rows.keys() == expected.keys(), (
        f"missing: {sorted(expected.keys() - rows.keys())[:10]}, "
        f"unexpected: {sorted(rows.keys() - expected.keys())[:10]}"
    )
    month_zero = [k for k, r in rows.items() if k[1] == 0 and r["retention_rate"] != 1]
    assert not month_zero, f"month-0 retention is 1 by definition: {month_zero[:10]}"
    lines = differences(expected, rows, ("cohort_size", "active_customers", "retention_rate",
                                         "revenue_per_customer_cumulative"), "cohort_retention.")
    assert not lines, report(lines)
    assert sum(r["cohort_size"] for (c, k), r in expected.items() if k == 0) == len(reference.shop.valid_person_orders)


# --- planted rates -------------------------------------------------------------------------


def binomial_tolerance(p: float, n: int) -> float:
    """Z standard errors of a proportion p estimated from n trials."""
    assert n > 0
    return Z * math.sqrt(p * (1 - p) / n)


def test_window_kpis_agree_with_the_simulators_rates(kpi_monthly, kpi_daily, reference, truth):
    """The window's aggregate KPIs (kpi_monthly of the window's month, or the last day's
    state in kpi_daily) against what the simulator planted or realized.

    Tolerances are Z standard errors from the sample size:
    - a planted rate holds for every trial (a CSAT answer, a click after an open, an
      unsubscribe, a page's engagement time), so the window's share scatters around it
      with the binomial (or lognormal) error of the window's sample;
    - a realized figure covers every simulated day, one more than the pipeline's window:
      the warehouse's sample (n_w) is most of the truth's (n_t), and a subsample's share
      differs from the whole's with variance p(1-p)(1/n_w - 1/n_t), below the p(1-p)/n_t
      used here as long as n_w > n_t / 2: the tolerance is conservative."""
    month = by_month(START)
    assert month == START, "the window starts on the first of a month: kpi_monthly holds the window's month"
    window = kpi_monthly[month]
    files = reference.file_kpis(by_month)[month]  # sample sizes only
    rates, realized = truth["rates"], truth["realized"]
    web, email, surveys = realized["web"], realized["crm"]["email"], realized["crm"]["surveys"]
    checks: list[tuple[str, float | None, float, float]] = []  # name, got, expected, tolerance

    def proportion(name: str, got, expected: float, n: int) -> None:
        checks.append((name, got, expected, binomial_tolerance(expected, n)))

    proportion("bounce_rate vs realized", window["bounce_rate"], web["bounce_rate"], web["sessions_with_page_view"])
    proportion("cart_abandonment_rate vs realized", window["cart_abandonment_rate"], web["cart_abandonment_rate"],
               web["sessions_with_add_to_cart"])
    proportion("session_conversion_rate vs realized", window["session_conversion_rate"],
               web["session_conversion_rate"], web["sessions"])
    # Opens: engaged contacts and alive customers open with p_open_engaged, others with
    # p_open_other; the truth counts the delivered pairs of each kind.
    engaged, other = email["pairs_delivered:engaged"], email["pairs_delivered:other"]
    planted_open = (engaged * rates["p_open_engaged"] + other * rates["p_open_other"]) / (engaged + other)
    proportion("email_open_rate vs planted mix", window["email_open_rate"], planted_open, files["_delivered_pairs"])
    click_given_open = window["email_click_rate"] / window["email_open_rate"] if window["email_open_rate"] else None
    proportion("email clicks per open vs p_click_given_open", click_given_open, rates["p_click_given_open"],
               files["_opened_pairs"])
    proportion("email_unsubscribe_rate vs p_unsubscribe", window["email_unsubscribe_rate"], rates["p_unsubscribe"],
               files["_delivered_pairs"])
    # CSAT: every answer is drawn from the planted distribution, so 100 x P(4-5) holds.
    planted_csat = 100 * sum(rates["csat"][3:])
    checks.append(("csat vs planted", window["csat"], planted_csat,
                   100 * binomial_tolerance(planted_csat / 100, files["_csat_answers"])))
    # NPS mixes loyal and other buyers' distributions: against the realized score, with the
    # standard error of a mean of +100 / 0 / -100 answers.
    n_nps = surveys["nps_responses"]
    promoters, detractors = surveys["nps_promoters"] / n_nps, surveys["nps_detractors"] / n_nps
    nps_sd = 100 * math.sqrt(promoters + detractors - (promoters - detractors) ** 2)
    checks.append(("nps vs realized", window["nps"], surveys["nps"], Z * nps_sd / math.sqrt(n_nps)))
    # Page engagement time ~ lognormal(median, sigma): mean median * exp(sigma^2 / 2).
    median, sigma = rates["engagement_time_median_s"], rates["engagement_time_sigma"]
    mean = median * math.exp(sigma**2 / 2)
    sd = mean * math.sqrt(math.exp(sigma**2) - 1)
    checks.append(("avg_engagement_time_s vs planted lognormal", window["avg_engagement_time_s"], mean,
                   Z * sd / math.sqrt(files["_page_views_timed"])))
    # Customers at the end: the last pipeline day against the truth's end (a day later).
    lifecycle = realized["lifecycle"]
    buyers = lifecycle["persons_with_valid_order"]
    last = kpi_daily[PIPELINE_LAST]
    proportion("repeat_purchase_rate vs realized", last["repeat_purchase_rate"],
               lifecycle["repeat_purchase_rate_at_end"], buyers)
    share_active = lifecycle["active_at_end"] / buyers
    checks.append(("active_customers vs realized", last["active_customers"], lifecycle["active_at_end"],
                   buyers * binomial_tolerance(share_active, buyers)))

    failures = [
        f"{name}: got {got}, expected {expected:.6g} ± {tolerance:.3g}"
        for name, got, expected, tolerance in checks
        if got is None or abs(float(got) - expected) > tolerance
    ]
    assert not failures, "\n".join(failures)


# --- BI access -----------------------------------------------------------------------------


def bi_reader_url(instance, password: str | None = None) -> str:
    return make_conninfo(instance.url("warehouse"), user="bi_reader",
                         password=password if password is not None else instance.env["BI_READER_PASSWORD"])


def test_bi_reader_reads_analytics_and_nothing_else(pipeline):
    """What counts is privileges: the role may switch its read-only default off, and still
    cannot write; it cannot even look into raw, staging or marts."""
    instance = pipeline[0]
    with psycopg.connect(bi_reader_url(instance)) as conn:
        assert conn.execute("select current_user").fetchone()[0] == "bi_reader"
        assert conn.execute("select count(*) from analytics.kpi_daily").fetchone()[0] > 0
        conn.rollback()
        for relation in ("raw.web_events", "marts.dim_customers", "raw.crm_contacts", "staging.stg_crm__contacts"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("select 1 from {} limit 1").format(sql.Identifier(*relation.split("."))))
            conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("set transaction read write")
            conn.execute("delete from analytics.kpi_daily where false")
        conn.rollback()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bi_reader_url(instance, password="not-the-password")).close()


EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"


def test_analytics_publishes_no_plain_email(pipeline, warehouse):
    """No text, JSON, array or enum column of any relation BI can read holds an email
    address. The pattern is first shown to find the emails of raw.crm_contacts."""
    with psycopg.connect(warehouse) as conn:
        in_raw = conn.execute("select count(*) from raw.crm_contacts where email ~ %s", (EMAIL_PATTERN,)).fetchone()[0]
    assert in_raw > 0, "the pattern finds the CRM's emails"
    found = []
    with psycopg.connect(bi_reader_url(pipeline[0]), autocommit=True) as conn:
        columns = conn.execute(
            """
            select table_name, column_name
            from information_schema.columns
            where table_schema = 'analytics'
              and data_type in ('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY', 'USER-DEFINED')
            order by table_name, ordinal_position
            """
        ).fetchall()
        assert {"dim_customers", "fct_orders"} <= {table for table, _ in columns}, "text columns to check"
        for table, column in columns:
            hits = conn.execute(
                sql.SQL("select count(*) from {} where {}::text ~ %s").format(
                    sql.Identifier("analytics", table), sql.Identifier(column)
                ),
                (EMAIL_PATTERN,),
            ).fetchone()[0]
            if hits:
                found.append(f"analytics.{table}.{column}: {hits} row(s) with an email")
    assert not found, "\n".join(found)


def test_customer_clv_is_fitted_as_of_the_run_and_published(pipeline, warehouse):
    """The warehouse DAG fits the CLV models as of its last day: analytics.customer_clv holds
    every person of dim_customers with a valid order, with predictions in range and an RFM
    segment; clv_model_params holds the converged fit, which `lw clv fit` reproduces."""
    instance = pipeline[0]
    with psycopg.connect(warehouse) as conn:
        missing, extra = conn.execute(
            """
            select
                (select count(*) from analytics.dim_customers d where d.orders_count > 0 and not exists
                    (select 1 from analytics.customer_clv c where c.customer_key = d.customer_key)),
                (select count(*) from analytics.customer_clv c where not exists
                    (select 1 from analytics.dim_customers d where d.customer_key = c.customer_key
                     and d.orders_count > 0))
            """).fetchone()
        assert (missing, extra) == (0, 0)
        rows, as_of, out_of_range, segments = conn.execute(
            "select count(*), max(as_of), count(*) filter (where p_alive not between 0 and 1 "
            "or predicted_purchases_365d < 0 or predicted_clv_365d < 0 or p_alive is null), "
            "count(distinct rfm_segment) from analytics.customer_clv").fetchone()
        assert rows > 0 and as_of == PIPELINE_LAST and out_of_range == 0 and segments > 1
        params = {(m, p): (v, s) for m, p, v, s in conn.execute(
            "select model, parameter, value, status from analytics.clv_model_params")}
    assert {s for _, s in params.values()} == {"converged"}
    assert set(params) == {("bg_nbd", p) for p in ("r", "alpha", "a", "b")} | {
        ("gamma_gamma", p) for p in ("p", "q", "gamma")}
    fit = json.loads(instance.lw("clv", "fit", "--as-of", str(PIPELINE_LAST), "--json").stdout)
    assert fit["n_customers"] == rows
    for (model, parameter), (value, _) in params.items():
        assert fit[model][parameter] == pytest.approx(value, rel=1e-9), (model, parameter)
