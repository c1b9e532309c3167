"""The quality gate on a real PostgreSQL: GX suites from expectations/gx, run as SQL.

A tiny, hand-made but consistent warehouse (raw deliveries with their load audit, and
marts whose reconciliations hold) passes both gates and publishes; the same warehouse
broken on purpose (an emptied raw table, a score out of range in a source, a duplicated
order id, a rate above 1, revenue that no longer reconciles, a missing mart) fails the gate,
which names the failing expectation, and leaves `analytics` exactly as it was.

The GX project is a temporary copy of the repo's `expectations/` (results and Data Docs are
written under its `gx/uncommitted/`, never into the repo).
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from lifecycle_warehouse import bootstrap, contract, kpis, settings
from lifecycle_warehouse.publish import PublishRefused, publish
from lifecycle_warehouse.quality import QualityGateFailed, run_gate, suites
from lifecycle_warehouse.quality.gate import build_docs

DAY1, DAY2 = date(2026, 9, 1), date(2026, 9, 2)
END = date(2026, 9, 3)  # the run's data interval end: deliveries of DAY1 and DAY2 are covered


@pytest.fixture
def gx_root(tmp_path) -> Path:
    """A throwaway copy of the repo's GX project (without anything uncommitted)."""
    source = suites.default_project_root()
    target = tmp_path / "expectations"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("uncommitted"))
    return target


def ts(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)


# --- raw: deliveries as the file loader writes them ---------------------------------------


def deliver(conn, source: str, entity: str, dt: date, rows: list[dict]) -> uuid.UUID:
    """Write one date folder like ingest.files does: rows with load metadata, one audit row."""
    spec = contract.file_entity(source, entity)
    batch = uuid.uuid4()
    file = f"{source}/{entity}/dt={dt.isoformat()}/part-0.{spec.format}"
    conn.execute(sql.SQL("delete from {} where _dt = %s").format(sql.Identifier("raw", spec.raw_table)), (dt,))
    for line, row in enumerate(rows, start=2):
        names = list(row) + ["_batch_id", "_dt", "_file", "_line_number", "_loaded_at"]
        values = [json.dumps(v) if isinstance(v, dict) else v for v in row.values()]
        conn.execute(
            sql.SQL("insert into {} ({}) values ({})").format(
                sql.Identifier("raw", spec.raw_table),
                sql.SQL(", ").join(map(sql.Identifier, names)),
                sql.SQL(", ").join(sql.Placeholder() * len(names)),
            ),
            [*values, batch, dt, file, line, ts(dt + (END - DAY2), 1)],
        )
    conn.execute(
        "insert into raw.load_audit (batch_id, source, entity, dt, file, status, rows_read, rows_loaded) "
        "values (%s, %s, %s, %s, %s, 'loaded', %s, %s)",
        (batch, source, entity, dt, file, len(rows), len(rows)),
    )
    return batch


def shop_rows(conn, table: str, rows: list[dict]) -> None:
    batch = uuid.uuid4()
    for row in rows:
        names = list(row) + ["_batch_id", "_extracted_at"]
        conn.execute(
            sql.SQL("insert into {} ({}) values ({})").format(
                sql.Identifier("raw", f"shop_{table}"),
                sql.SQL(", ").join(map(sql.Identifier, names)),
                sql.SQL(", ").join(sql.Placeholder() * len(names)),
            ),
            [*row.values(), batch, ts(END, 0, 30)],
        )


def build_raw(url: str) -> None:
    """Two days of every source: three CRM contacts, a campaign, web sessions, ad spend, a shop."""
    bootstrap.bootstrap(url)
    with psycopg.connect(url, autocommit=True) as conn:
        def contact(cid, day, hour, stage="lead"):
            return {"contact_id": cid, "email": f"{cid}@example.com", "country": "DE",
                    "lifecycle_stage": stage, "created_at": ts(DAY1, 8), "updated_at": ts(day, hour)}

        deliver(conn, "crm", "contacts", DAY1, [contact("c1", DAY1, 9), contact("c2", DAY1, 10)])
        deliver(conn, "crm", "contacts", DAY2, [contact("c1", DAY2, 11, "customer"), contact("c3", DAY2, 12)])
        deliver(conn, "crm", "campaigns", DAY1, [
            {"campaign_id": "camp1", "name": "Welcome", "channel": "email", "budget": 100, "currency": "USD"}])
        deliver(conn, "crm", "campaigns", DAY2, [])
        deliver(conn, "crm", "email_events", DAY1, [
            {"event_id": "e1", "contact_id": "c1", "campaign_id": "camp1", "event_type": "delivered",
             "occurred_at": ts(DAY1, 9, 30)}])
        deliver(conn, "crm", "email_events", DAY2, [
            {"event_id": "e2", "contact_id": "c1", "campaign_id": "camp1", "event_type": "open",
             "occurred_at": ts(DAY2, 7)}])
        deliver(conn, "crm", "survey_responses", DAY1, [])
        deliver(conn, "crm", "survey_responses", DAY2, [
            {"response_id": "r1", "contact_id": "c1", "survey_type": "nps", "score": 10,
             "submitted_at": ts(DAY2, 13)}])
        deliver(conn, "crm", "loyalty_events", DAY1, [])
        deliver(conn, "crm", "loyalty_events", DAY2, [
            {"loyalty_event_id": "l1", "contact_id": "c1", "event_type": "earned", "points": 100,
             "occurred_at": ts(DAY2, 14)}])

        def event(eid, name, day, hour, session, anon="a1", user=None, **extra):
            return {"event_id": eid, "event_name": name, "occurred_at": ts(day, hour), "anonymous_id": anon,
                    "user_id": user, "session_id": session, "device_type": "mobile", "country": "DE", **extra}

        deliver(conn, "web", "events", DAY1, [
            event("w1", "page_view", DAY1, 8, "s1", utm_source="google", utm_medium="cpc"),
            event("w2", "sign_up", DAY1, 8, "s1", user="c1"),
            event("w3", "purchase", DAY1, 10, "s1", user="c1", properties={"order_id": 1, "value": 100}),
        ])
        deliver(conn, "web", "events", DAY2, [
            event("w3", "purchase", DAY1, 10, "s1", user="c1"),  # at-least-once: a duplicate is legal in raw
            event("w4", "page_view", DAY2, 9, "s2", anon="a2"),
            event("w5", "page_view", DAY2, 9, "s3", anon="a3", user="c3"),
        ])
        for day in (DAY1, DAY2):
            deliver(conn, "marketing", "ad_spend", day, [
                {"date": day, "channel": "paid_search", "impressions": 1000, "clicks": 50, "spend": 10,
                 "currency": "USD"},
                {"date": day, "channel": "display", "impressions": 500, "clicks": 5, "spend": 2.5,
                 "currency": "USD"},
            ])

        shop_rows(conn, "customers", [
            {"customer_id": 1, "email": "c1@example.com", "created_at": ts(DAY1, 9), "updated_at": ts(DAY1, 9)},
            {"customer_id": 2, "email": "store@example.com", "created_at": ts(DAY2, 9), "updated_at": ts(DAY2, 9)},
        ])
        shop_rows(conn, "orders", [
            {"order_id": 1, "customer_id": 1, "status": "paid", "currency": "USD", "subtotal": 100, "discount": 0,
             "shipping": 0, "tax": 0, "total": 100, "channel": "web", "ordered_at": ts(DAY1, 10),
             "updated_at": ts(DAY1, 10)},
            {"order_id": 2, "customer_id": 1, "status": "delivered", "currency": "USD", "subtotal": 50,
             "discount": 0, "shipping": 0, "tax": 0, "total": 50, "channel": "app", "ordered_at": ts(DAY2, 10),
             "updated_at": ts(DAY2, 18)},
            {"order_id": 3, "customer_id": 2, "status": "cancelled", "currency": "USD", "subtotal": 30,
             "discount": 0, "shipping": 0, "tax": 0, "total": 30, "channel": "store", "ordered_at": ts(DAY2, 11),
             "updated_at": ts(DAY2, 12)},
        ])
        shop_rows(conn, "order_items", [
            {"order_id": 1, "line_number": 1, "sku": "A", "category": "shoes", "quantity": 1, "unit_price": 100,
             "updated_at": ts(DAY1, 10)},
            {"order_id": 2, "line_number": 1, "sku": "B", "category": "bags", "quantity": 1, "unit_price": 50,
             "updated_at": ts(DAY2, 10)},
        ])
        shop_rows(conn, "refunds", [
            {"refund_id": 1, "order_id": 2, "amount": 10, "reason": "damaged", "refunded_at": ts(DAY2, 18),
             "updated_at": ts(DAY2, 18)},
        ])
        shop_rows(conn, "subscriptions", [
            {"subscription_id": 1, "customer_id": 1, "plan": "basic", "status": "active", "mrr": 20,
             "currency": "USD", "started_at": ts(DAY1, 12), "updated_at": ts(DAY1, 12)},
        ])


# --- marts: what dbt would build from that raw data ---------------------------------------

RATES = {"ad_ctr", "bounce_rate", "email_open_rate", "email_click_rate", "email_unsubscribe_rate",
         "session_conversion_rate", "cart_abandonment_rate", "repeat_purchase_rate", "churn_rate",
         "customer_retention_rate", "upsell_rate", "reward_redemption_rate"}


def _table(conn, name: str, rows: list[dict], types: dict[str, str]) -> None:
    columns = list(rows[0])
    conn.execute(sql.SQL("create table {} ({})").format(
        sql.Identifier("marts", name),
        sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(types.get(c, "numeric")))
                           for c in columns)))
    for row in rows:
        conn.execute(sql.SQL("insert into {} values ({})").format(
            sql.Identifier("marts", name), sql.SQL(", ").join(sql.Placeholder() * len(columns))),
            list(row.values()))


def _kpis(base: dict, **values) -> dict:
    """A KPI mart row: every column of the registry for its grain (NULL unless given)."""
    grain = "day" if "date" in base else "month"
    row = dict(base)
    if grain == "month":
        row["is_complete"] = True
    for kpi in kpis.load().of_grain(grain):
        row.setdefault(kpi.name, None)
    row.update(values)
    return row


def build_marts(url: str) -> None:
    """The BI relations for persons p1 (contact c1 = shop customer 1, two valid orders),
    p2 (shop customer 2, a cancelled order), p3 (c2) and p4 (c3, engaged)."""
    text = {"customer_key": "text", "contact_id": "text", "email_sha256": "text", "country": "text",
            "acquisition_channel": "text", "lifecycle_stage": "text", "status": "text", "currency": "text",
            "from_stage": "text", "to_stage": "text", "stage": "text", "channel": "text",
            "attribution_model": "text", "movement_type": "text", "shop_customer_id": "text",
            "order_id": "text", "is_first_order": "boolean", "is_complete": "boolean", "date": "date",
            "month": "date", "is_current": "boolean",
            "cohort_month": "date", "months_since_first_order": "integer"}
    for column in ("first_seen_at", "first_order_at", "last_order_at", "lifecycle_stage_since", "ordered_at",
                   "transitioned_at", "next_transitioned_at"):
        text[column] = "timestamptz"
    sha = "0" * 63

    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("drop schema if exists marts cascade")
        conn.execute("create schema marts")
        _table(conn, "dim_customers", [
            {"customer_key": "p1", "contact_id": "c1", "shop_customer_id": 1, "email_sha256": sha + "1",
             "country": "DE", "acquisition_channel": "paid_search", "first_seen_at": ts(DAY1, 8),
             "first_order_at": ts(DAY1, 10), "last_order_at": ts(DAY2, 10), "orders_count": 2,
             "net_revenue": 140, "lifecycle_stage": "retention", "lifecycle_stage_since": ts(DAY2, 10)},
            {"customer_key": "p2", "contact_id": None, "shop_customer_id": 2, "email_sha256": sha + "2",
             "country": None, "acquisition_channel": "store", "first_seen_at": ts(DAY2, 9),
             "first_order_at": None, "last_order_at": None, "orders_count": 0, "net_revenue": 0,
             "lifecycle_stage": "awareness", "lifecycle_stage_since": ts(DAY2, 9)},
            {"customer_key": "p3", "contact_id": "c2", "shop_customer_id": None, "email_sha256": sha + "3",
             "country": "DE", "acquisition_channel": "direct", "first_seen_at": ts(DAY1, 8),
             "first_order_at": None, "last_order_at": None, "orders_count": 0, "net_revenue": 0,
             "lifecycle_stage": "lapsed", "lifecycle_stage_since": ts(DAY2, 8)},
            {"customer_key": "p4", "contact_id": "c3", "shop_customer_id": None, "email_sha256": sha + "4",
             "country": "DE", "acquisition_channel": "direct", "first_seen_at": ts(DAY1, 8),
             "first_order_at": None, "last_order_at": None, "orders_count": 0, "net_revenue": 0,
             "lifecycle_stage": "engagement", "lifecycle_stage_since": ts(DAY2, 12)},
        ], text)
        _table(conn, "fct_orders", [
            {"order_id": 1, "customer_key": "p1", "ordered_at": ts(DAY1, 10), "status": "paid", "currency": "USD",
             "revenue": 100, "refunded_amount": 0, "net_revenue": 100, "is_first_order": True},
            {"order_id": 2, "customer_key": "p1", "ordered_at": ts(DAY2, 10), "status": "delivered",
             "currency": "USD", "revenue": 50, "refunded_amount": 10, "net_revenue": 40, "is_first_order": False},
            {"order_id": 3, "customer_key": "p2", "ordered_at": ts(DAY2, 11), "status": "cancelled",
             "currency": "USD", "revenue": 30, "refunded_amount": 0, "net_revenue": 30, "is_first_order": False},
        ], text)
        transitions = [
            {"customer_key": "p1", "from_stage": None, "to_stage": "awareness", "transitioned_at": ts(DAY1, 8)},
            {"customer_key": "p1", "from_stage": "awareness", "to_stage": "conversion",
             "transitioned_at": ts(DAY1, 10)},
            {"customer_key": "p1", "from_stage": "conversion", "to_stage": "retention",
             "transitioned_at": ts(DAY2, 10)},
            {"customer_key": "p2", "from_stage": None, "to_stage": "awareness", "transitioned_at": ts(DAY2, 9)},
            {"customer_key": "p3", "from_stage": None, "to_stage": "awareness", "transitioned_at": ts(DAY1, 8)},
            {"customer_key": "p3", "from_stage": "awareness", "to_stage": "lapsed", "transitioned_at": ts(DAY2, 8)},
            {"customer_key": "p4", "from_stage": None, "to_stage": "awareness", "transitioned_at": ts(DAY1, 8)},
            {"customer_key": "p4", "from_stage": "awareness", "to_stage": "engagement",
             "transitioned_at": ts(DAY2, 12)},
        ]
        for transition, following in zip(transitions, [*transitions[1:], None]):
            same_person = following is not None and following["customer_key"] == transition["customer_key"]
            transition["next_transitioned_at"] = following["transitioned_at"] if same_person else None
            transition["is_current"] = not same_person
        _table(conn, "fct_lifecycle_transitions", transitions, text)
        _table(conn, "kpi_daily", [
            _kpis({"date": DAY1}, unique_visitors=1, sessions=1, new_contacts=3, ad_impressions=1500,
                  ad_clicks=55, ad_spend=12.5, ad_ctr=55 / 1500, bounce_rate=0, email_open_rate=0,
                  email_click_rate=0, email_unsubscribe_rate=0, orders=1, revenue=100, refunds=0,
                  net_revenue=100, aov=100, new_customers=1, session_conversion_rate=1, cac=12.5, roas=8,
                  active_customers=1, buyers=1, repeat_buyers=0, repeat_purchase_rate=0, mrr=20, referrals=0,
                  advocates=0),
            _kpis({"date": DAY2}, unique_visitors=2, sessions=2, new_contacts=0, ad_impressions=1500,
                  ad_clicks=55, ad_spend=12.5, ad_ctr=55 / 1500, bounce_rate=1, orders=1, revenue=50, refunds=10,
                  net_revenue=40, aov=50, new_customers=0, session_conversion_rate=0, cac=None, roas=0,
                  active_customers=1, buyers=1, repeat_buyers=1, repeat_purchase_rate=1, mrr=20, nps=100,
                  reward_redemption_rate=0, referrals=0, advocates=0),
        ], text)
        _table(conn, "kpi_monthly", [
            _kpis({"month": date(2026, 9, 1)}, unique_visitors=3, sessions=3, new_contacts=3,
                  ad_impressions=3000, ad_clicks=110, ad_spend=25, ad_ctr=110 / 3000, bounce_rate=0.5,
                  email_open_rate=1, email_click_rate=0, email_unsubscribe_rate=0, orders=2, revenue=150,
                  refunds=10, net_revenue=140, aov=75, new_customers=1, session_conversion_rate=1 / 3, cac=25,
                  roas=4, active_customers=1, buyers=1, repeat_buyers=1, repeat_purchase_rate=1, mrr=20, nps=100,
                  reward_redemption_rate=0, referrals=0, advocates=0, churn_rate=None,
                  customer_retention_rate=None, purchase_frequency=2, new_mrr=20, expansion_mrr=0,
                  contraction_mrr=0, churned_mrr=0, upsell_rate=1),
        ], text)
        funnel = {"awareness": (1, 4, 3, 0.5), "engagement": (1, 1, 0, 0), "conversion": (0, 1, 1, 1),
                  "retention": (1, 1, 0, 0), "loyalty": (0, 0, 0, None), "churned": (0, 0, 0, None),
                  "reactivated": (0, 0, 0, None), "lapsed": (1, 1, 0, 0)}
        _table(conn, "lifecycle_funnel", [
            {"month": date(2026, 9, 1), "stage": stage, "customers": c, "entered": e, "exited": x,
             "conversion_to_next_rate": r}
            for stage, (c, e, x, r) in funnel.items()
        ], text)
        _table(conn, "cohort_retention", [
            {"cohort_month": date(2026, 9, 1), "months_since_first_order": 0, "cohort_size": 1,
             "active_customers": 1, "retention_rate": 1, "net_revenue": 140,
             "revenue_per_customer_cumulative": 140},
        ], text)
        _table(conn, "channel_attribution", [
            {"month": date(2026, 9, 1), "channel": channel, "attribution_model": model, "conversions": conv,
             "revenue": revenue, "spend": spend, "cac": spend / conv if conv else None,
             "roas": revenue / spend if spend else None}
            for model in ("first_touch", "last_touch", "linear", "position_based")
            for channel, conv, revenue, spend in (("paid_search", 1, 100, 20), ("display", 0, 0, 5))
        ], text)
        _table(conn, "fct_mrr_movements", [
            {"month": date(2026, 9, 1), "customer_key": "p1", "mrr_start": 0,
             "mrr_end": 20, "movement_type": "new", "new_mrr": 20, "expansion_mrr": 0, "contraction_mrr": 0,
             "churned_mrr": 0},
        ], text)
        _table(conn, "customer_clv", [
            {"customer_key": "p1", "historical_clv": 140, "p_alive": 0.8, "predicted_purchases_365d": 1.5,
             "predicted_clv_365d": 90, "rfm_segment": "new", "r_score": 1, "f_score": 1, "m_score": 1,
             "as_of": DAY2},
        ], {**text, "rfm_segment": "text", "as_of": "date"})
        _table(conn, "clv_model_params", [
            {"as_of": DAY2, "model": model, "parameter": parameter, "value": value, "log_likelihood": -3.5,
             "n_customers": 1, "time_unit": "weeks", "status": "converged", "message": "CONVERGENCE"}
            for model, parameter, value in (("bg_nbd", "r", 0.24), ("bg_nbd", "alpha", 4.4), ("bg_nbd", "a", 0.8),
                                            ("bg_nbd", "b", 2.4), ("gamma_gamma", "p", 6.2),
                                            ("gamma_gamma", "q", 3.7), ("gamma_gamma", "gamma", 15.4))
        ], {"as_of": "date", "model": "text", "parameter": "text", "time_unit": "text", "status": "text",
            "message": "text", "value": "float8", "log_likelihood": "float8"})


def analytics_fingerprint(url: str) -> dict[str, str]:
    """Every analytics table's content (md5 of its rows in order) and storage (relfilenode)."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'analytics' and c.relkind = 'r' order by 1")]
        return {
            t: conn.execute(sql.SQL(
                "select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) || ':' || "
                "(select relfilenode from pg_class where oid = {}::regclass) from {} x").format(
                sql.Literal(f"analytics.{t}"), sql.Identifier("analytics", t))).fetchone()[0]
            for t in tables
        }


def sql_exec(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def gate_fails(url: str, stage: str, gx_root: Path, run_id: str) -> str:
    with pytest.raises(QualityGateFailed) as failed:
        run_gate(url, stage, run_id, END, project_root=gx_root)
    return str(failed.value)


# --- the tests ----------------------------------------------------------------------------


def test_committed_gx_project_is_generated_from_the_contract():
    """expectations/gx is what quality/suites.py generates (regenerate after editing it),
    with a suite per raw table of the contract and per BI relation."""
    assert suites.stale_files() == [], "run `python -m lifecycle_warehouse.generate`"
    names = {s.relation for s in suites.suites()}
    assert {f"raw.{e.raw_table}" for e in contract.FILE_ENTITIES + contract.SHOP_TABLES} <= names
    assert {f"marts.{r}" for r in suites.MART_RELATIONS} <= names
    config = (settings.PROJECT_ROOT / "expectations" / "gx" / "great_expectations.yml").read_text()
    assert "${" + suites.CONNECTION_ENV + "}" in config and "postgresql://" not in config


def test_gate_connects_with_the_interval_end_as_a_session_setting(monkeypatch):
    """GX gets a SQLAlchemy URL carrying the run's dates and delivery settings, UTC and
    read-only sessions."""
    from urllib.parse import parse_qs, urlsplit

    from lifecycle_warehouse.quality.gate import interval_end_instant, sqlalchemy_url

    monkeypatch.setenv("LW_DAILY_ENTITIES", "web/events")
    end = interval_end_instant(END)
    assert end == datetime(2026, 9, 3, tzinfo=timezone.utc)
    session = suites.session_settings(end - timedelta(days=2), end)
    url = sqlalchemy_url("postgresql://wh:s%40cret@db:5433/warehouse?sslmode=require&options=-c%20work_mem%3D8MB",
                         session)
    parts = urlsplit(url)
    assert parts.scheme == "postgresql+psycopg" and parts.netloc == "wh:s%40cret@db:5433"
    query = parse_qs(parts.query)
    assert query["sslmode"] == ["require"]
    assert query["options"] == ["-c work_mem=8MB -c lw.data_interval_start=2026-09-01T00:00:00+00:00 "
                                "-c lw.data_interval_end=2026-09-03T00:00:00+00:00 "
                                "-c lw.max_bad_records_pct=5.0 -c lw.daily_entities=web/events "
                                "-c lw.missing_grace_days=1 -c lw.lookback_days=7 "
                                "-c timezone=UTC -c default_transaction_read_only=on "
                                "-c statement_timeout=1800000"]
    assert query["connect_timeout"] == ["10"] and query["keepalives"] == ["1"]
    with pytest.raises(ValueError, match="postgresql:// URL"):
        sqlalchemy_url("host=db dbname=warehouse", session)


def test_raw_gate_passes_records_results_and_blocks_broken_sources(warehouse_url, gx_root):
    build_raw(warehouse_url)
    result = run_gate(warehouse_url, "raw", "run-good", END, project_root=gx_root)
    assert result.success and not result.failures
    assert result.evaluated > 150  # one outcome per rule, from one GX expectation (one query) per suite
    # a passing gate leaves its Data Docs to a later step (the DAG's publish)
    assert not result.docs_path.exists()
    assert build_docs("run-good", gx_root) == result.docs_path
    assert result.docs_path.exists() and result.docs_path.is_relative_to(gx_root)
    assert "run-good" in result.docs_path.read_text()
    assert suites.stale_files(gx_root) == []  # a run writes under uncommitted/ only
    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute(
            "select count(*), count(distinct suite), bool_and(success or severity <> 'critical') "
            "from audit.validation_results where run_id = 'run-good'").fetchone()
        assert rows == (result.evaluated, len(suites.suites("raw")), True)
        assert conn.execute("select count(*) from analytics.data_quality_suites where run_id = 'run-good' "
                            "and success").fetchone()[0] == len(suites.suites("raw"))
        # GX's sessions were read-only and are closed once the gate returns.
        assert conn.execute("select count(*) from pg_stat_activity "
                            "where application_name = 'lw-quality-gate'").fetchone()[0] == 0

    # Broken on purpose: a table emptied, a shop table emptied, a score out of range.
    sql_exec(warehouse_url, "delete from raw.crm_contacts")
    sql_exec(warehouse_url, "delete from raw.shop_orders")
    sql_exec(warehouse_url, "update raw.crm_survey_responses set score = 11")
    message = gate_fails(warehouse_url, "raw", gx_root, "run-broken")
    assert "ERROR raw_crm_contacts · rows per delivery equal the rows loaded by its latest load" in message
    assert "ERROR raw_shop_orders · row count never below what an earlier gate run saw" in message
    assert "ERROR raw_crm_survey_responses · contract rule: score: nps must be 0–10" in message
    assert "response_id=r1" in message  # offending rows are shown
    with psycopg.connect(warehouse_url) as conn:
        failed = dict(conn.execute(
            "select suite, failed_expectations from audit.suite_results where run_id = 'run-broken' "
            "and not success").fetchall())
    assert set(failed) == {"raw_crm_contacts", "raw_shop_orders", "raw_crm_survey_responses"}


def test_raw_timestamps_are_judged_against_the_data_interval_end(warehouse_url, gx_root):
    """Not now(): the same data and interval give the same verdict on every rerun, and a
    delivery the run does not cover is not judged by it."""
    build_raw(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        # A contact delivered for DAY2 but updated on the next day: in the future for that delivery.
        conn.execute("update raw.crm_contacts set updated_at = %s where contact_id = 'c3'", (ts(END, 6),))
        # A duplicate within one delivery is only a warning.
        deliver(conn, "crm", "contacts", DAY1, [
            {"contact_id": "c1", "email": "c1@example.com", "created_at": ts(DAY1, 8), "updated_at": ts(DAY1, 9)},
            {"contact_id": "c1", "email": "c1@example.com", "created_at": ts(DAY1, 8), "updated_at": ts(DAY1, 9)},
            {"contact_id": "c2", "email": "c2@example.com", "created_at": ts(DAY1, 8), "updated_at": ts(DAY1, 10)},
        ])
    for rerun in ("first", "second"):
        message = gate_fails(warehouse_url, "raw", gx_root, f"run-{rerun}")
        assert "updated_at not after its delivery date nor the run's data interval end" in message
        assert "contact_id=c3" in message
    # A run whose interval ends before DAY2 does not cover that delivery: it passes, with the
    # duplicate reported as a warning.
    result = run_gate(warehouse_url, "raw", "run-day1", DAY2, project_root=gx_root)
    assert result.success
    assert [w.expectation for w in result.warnings if w.suite == "raw_crm_contacts"] == [
        "expect_compound_columns_to_be_unique"]
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute(
            "select severity, success from audit.validation_results where run_id = 'run-day1' "
            "and expectation = 'expect_compound_columns_to_be_unique' and suite = 'raw_crm_contacts'"
        ).fetchone() == ("warning", False)


def test_raw_gate_validates_the_runs_deliveries_only(warehouse_url, gx_root):
    """After a successful build, the raw gate reads the date folders loaded since its start
    (and shop rows extracted since), not the history: a folder broken after a build read it
    is not the run's; a re-delivered one is."""
    build_raw(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("insert into raw.warehouse_builds (run_id, started_at, built_at, ended_at)"
                     " values ('built', now(), now(), now())")
        conn.execute("update raw.crm_survey_responses set score = 11")  # an old folder, read by that build
        deliver(conn, "crm", "contacts", DAY2, [  # re-delivered since: the run's
            {"contact_id": "c9", "email": "c9@example.com", "country": "DEU", "created_at": ts(DAY1, 8),
             "updated_at": ts(DAY2, 9)}])
    message = gate_fails(warehouse_url, "raw", gx_root, "run-deliveries")
    assert "ERROR raw_crm_contacts · expect_column_value_lengths_to_equal · column country" in message
    assert "contact_id=c9" in message and "country=DEU" in message
    assert "raw_crm_survey_responses" not in message
    with psycopg.connect(warehouse_url) as conn:
        relations = conn.execute("select relations from audit.gate_runs where run_id = 'run-deliveries'"
                                 ).fetchone()[0]
    assert relations["raw.crm_contacts"]["rows_checked"] == 1 and relations["raw.crm_contacts"]["row_count"] is None
    assert relations["raw.web_events"]["rows_checked"] == 0
    assert relations["raw.shop_orders"]["rows_checked"] == 0 and relations["raw.shop_orders"]["row_count"] > 0


def test_raw_gate_catches_a_collapsed_delivery(warehouse_url, gx_root):
    build_raw(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        busy = [{"event_id": f"v{i}", "event_name": "page_view", "occurred_at": ts(DAY1, 12), "anonymous_id": f"a{i}",
                 "session_id": f"s{i}"} for i in range(suites.COLLAPSE_MIN_ROWS * 2)]
        deliver(conn, "web", "events", DAY1, busy)
        deliver(conn, "web", "events", DAY2, busy[:1])
    message = gate_fails(warehouse_url, "raw", gx_root, "run-collapse")
    assert "ERROR raw_web_events · rows of the run's last delivery not below 10% of the day before" in message
    assert "rows_last_day=1" in message and f"rows_day_before={suites.COLLAPSE_MIN_ROWS * 2}" in message


BREAKS = {
    "duplicated order id": (
        "insert into marts.fct_orders select * from marts.fct_orders where order_id = '3'",
        "ERROR marts_fct_orders · expect_column_values_to_be_unique · column order_id"),
    "a rate above 1": (
        "update marts.kpi_daily set bounce_rate = 1.2 where date = '2026-09-02'",
        "ERROR marts_kpi_daily · expect_column_values_to_be_between · column bounce_rate"),
    "revenue that does not reconcile": (
        "update marts.kpi_daily set revenue = revenue + 5, net_revenue = net_revenue + 5, aov = aov + 5 "
        "where date = '2026-09-01'",
        "ERROR marts_kpi_daily · orders and revenue per day equal the valid orders of fct_orders on that day"),
    "cohort retention at month 0 below 1": (
        "update marts.cohort_retention set active_customers = 0, retention_rate = 0",
        "ERROR marts_cohort_retention · retention at month 0 is 1"),
    "a published mart collapsing": (
        "delete from marts.fct_mrr_movements",
        "ERROR marts_fct_mrr_movements · row count not below 50% of the published version"),
    "a P(alive) above 1": (
        "update marts.customer_clv set p_alive = 1.2",
        "ERROR marts_customer_clv · expect_column_values_to_be_between · column p_alive"),
    "a CLV fit that did not converge": (
        "update marts.clv_model_params set status = 'not_converged', message = 'ABNORMAL_TERMINATION_IN_LNSRCH' "
        "where model = 'gamma_gamma'",
        "ERROR marts_clv_model_params · the CLV models' fit converged"),
    "customer_clv missing a customer of dim_customers": (
        "update marts.dim_customers set orders_count = 1, first_order_at = first_seen_at where customer_key = 'p4'",
        "ERROR marts_customer_clv · customers reconcile with dim_customers"),
    "a latest transition not marked current": (
        "update marts.fct_lifecycle_transitions set is_current = false where customer_key = 'p3' and to_stage = 'lapsed'",
        "ERROR marts_fct_lifecycle_transitions · history is a chain"),
    "a stage in dim_customers that is not the latest transition's": (
        "update marts.dim_customers set lifecycle_stage = 'loyalty' where customer_key = 'p1'",
        "ERROR marts_fct_lifecycle_transitions · the latest transition (is_current) gives dim_customers'"),
    "a missing mart": (
        "drop table marts.lifecycle_funnel",
        "ERROR marts_lifecycle_funnel · marts.lifecycle_funnel exists"),
}


def test_write_audit_publish(warehouse_url, gx_root):
    """Good marts pass and are published; marts broken on purpose fail the gate, which names
    every failing expectation, publish refuses, and analytics stays byte-for-byte as it was."""
    build_raw(warehouse_url)
    build_marts(warehouse_url)
    result = run_gate(warehouse_url, "marts", "run-1", END, project_root=gx_root)
    assert result.success, result.report()
    publication = publish(warehouse_url)
    assert publication.version == 1 and publication.relations["fct_orders"] == 3
    published = analytics_fingerprint(warehouse_url)
    assert set(suites.MART_RELATIONS) | {"publications"} == set(published)

    build_marts(warehouse_url)
    for statement, _ in BREAKS.values():
        sql_exec(warehouse_url, statement)
    message = gate_fails(warehouse_url, "marts", gx_root, "run-broken")
    for name, (_, expected) in BREAKS.items():
        assert expected in message, f"{name} not reported: {message}"
    # The failing gate left Data Docs showing its failed rules, one GX expectation per suite.
    docs = gx_root / "gx" / "uncommitted" / "data_docs" / "local_site"
    (page,) = (docs / "validations" / "marts_fct_orders" / "run-broken").glob("*/*.html")
    text = page.read_text()
    assert "rules on marts.fct_orders" in text and "rule(s) failed" in text
    assert "expect_column_values_to_be_unique (column order_id): 1 unexpected" in text
    assert "run-broken" in (docs / "index.html").read_text()
    assert "ABNORMAL_TERMINATION_IN_LNSRCH" in message, "the reason a CLV fit failed is reported"
    with pytest.raises(PublishRefused, match="last marts quality gate .* failed"):
        publish(warehouse_url)
    assert analytics_fingerprint(warehouse_url) == published

    # Marts changed after a passing gate are not published either.
    build_marts(warehouse_url)
    run_gate(warehouse_url, "marts", "run-2", END, project_root=gx_root)
    build_marts(warehouse_url)  # rebuilt: not the tables the gate saw
    with pytest.raises(PublishRefused, match="not the table the last marts gate validated"):
        publish(warehouse_url)
    assert analytics_fingerprint(warehouse_url) == published


def test_transitions_histories_are_checked_for_the_persons_rewritten_since_the_last_publish(warehouse_url, gx_root):
    """The transitions' rules run on the persons the mart lists as unpublished (every person
    when the list says "everything", as a list the gate creates for a mart without one);
    the publish then replaces only their rows, so BI keeps the validated history of the others."""
    listed = suites.TRANSITIONS_UNPUBLISHED
    relation = "marts.fct_lifecycle_transitions"

    def rows_checked(run_id: str) -> int:
        with psycopg.connect(warehouse_url) as conn:
            return conn.execute("select relations -> %s ->> 'rows_checked' from audit.gate_runs where run_id = %s",
                                (relation, run_id)).fetchone()[0]

    build_raw(warehouse_url)
    build_marts(warehouse_url)  # made by hand: no list
    assert run_gate(warehouse_url, "marts", "run-all", END, project_root=gx_root).success
    assert rows_checked("run-all") == "8"
    publish(warehouse_url)  # copies every mart, and empties the list
    published = analytics_fingerprint(warehouse_url)

    # p3's history breaks (its first transition loses the instant of the next); p3 unlisted: not read again.
    sql_exec(warehouse_url, f"update {relation} set next_transitioned_at = null where customer_key = 'p3' and from_stage is null")
    assert run_gate(warehouse_url, "marts", "run-none", END, project_root=gx_root).success
    assert rows_checked("run-none") == "0"
    publish(warehouse_url)
    assert analytics_fingerprint(warehouse_url)["fct_lifecycle_transitions"] == published["fct_lifecycle_transitions"]

    # Listed (rewritten by a build), the same person's history fails the gate.
    sql_exec(warehouse_url, f"insert into {listed} values ('p3'), ('p4')")
    message = gate_fails(warehouse_url, "marts", gx_root, "run-listed")
    assert "ERROR marts_fct_lifecycle_transitions · history is a chain" in message
    assert rows_checked("run-listed") == "4"
    sql_exec(warehouse_url, f"delete from {listed}")
    sql_exec(warehouse_url, f"insert into {listed} values (null)")
    gate_fails(warehouse_url, "marts", gx_root, "run-everything")
    assert rows_checked("run-everything") == "8"


def test_a_gate_that_cannot_run_is_recorded_as_failed(warehouse_url, gx_root):
    """So that no publish can follow it."""
    (gx_root / "gx" / "expectations" / "marts_kpi_daily.json").unlink()
    with pytest.raises(Exception, match="marts_kpi_daily"):
        run_gate(warehouse_url, "marts", "run-crash", END, project_root=gx_root)
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select success, errors from audit.gate_runs where run_id = 'run-crash'"
                            ).fetchone() == (False, 1)
    with pytest.raises(PublishRefused, match="failed"):
        publish(warehouse_url)


# --- the deliveries themselves (raw.load_audit) --------------------------------------------


def _latest_batch(conn, source: str, entity: str, dt: date) -> uuid.UUID:
    return conn.execute("select batch_id from raw.load_audit where source = %s and entity = %s and dt = %s"
                        " order by loaded_at desc limit 1", (source, entity, dt)).fetchone()[0]


def test_raw_gate_reports_every_rejected_file_with_a_severity_that_is_a_setting(warehouse_url, gx_root, monkeypatch):
    build_raw(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        batch = _latest_batch(conn, "crm", "contacts", DAY2)
        conn.execute(
            "insert into raw.load_audit (batch_id, source, entity, dt, file, status, error) values"
            " (%s, 'crm', 'contacts', %s, 'crm/contacts/dt=2026-09-02/partner.csv', 'rejected',"
            " 'crm/contacts/dt=2026-09-02/partner.csv: missing column(s) in header: email (required: email)')",
            (batch, DAY2))
    message = gate_fails(warehouse_url, "raw", gx_root, "run-rejected")
    assert "ERROR raw_load_audit · no file rejected whole in the deliveries since the last build" in message
    assert "partner.csv" in message and "missing column(s) in header" in message

    monkeypatch.setenv("LW_REJECTED_FILE_SEVERITY", "warning")
    result = run_gate(warehouse_url, "raw", "run-rejected-warning", END, project_root=gx_root)
    assert result.success
    assert [w.description.split(" (")[0] for w in result.warnings if w.suite == "raw_load_audit"] == [
        "no file rejected whole in the deliveries since the last build"]
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select severity from audit.validation_results where run_id = 'run-rejected-warning'"
                            " and suite = 'raw_load_audit' and not success").fetchone() == ("warning",)

    # a build that succeeded since then has read those deliveries: they are not this run's
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("insert into raw.warehouse_builds (run_id, started_at, built_at, ended_at)"
                     " values ('built', now(), now(), now())")
    monkeypatch.delenv("LW_REJECTED_FILE_SEVERITY")
    assert run_gate(warehouse_url, "raw", "run-after-build", END, project_root=gx_root).success


def test_raw_gate_reports_a_file_whose_records_are_mostly_quarantined(warehouse_url, gx_root, monkeypatch):
    build_raw(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("update raw.load_audit set rows_read = rows_loaded + 7, rows_quarantined = 7"
                     " where source = 'web' and dt = %s", (DAY2,))
    message = gate_fails(warehouse_url, "raw", gx_root, "run-bad-records")
    assert "ERROR raw_load_audit · no file with more than LW_MAX_BAD_RECORDS_PCT %" in message
    assert "quarantined_pct=70.0" in message and "web/events/dt=2026-09-02" in message
    monkeypatch.setenv("LW_MAX_BAD_RECORDS_PCT", "75")
    assert run_gate(warehouse_url, "raw", "run-bad-records-75", END, project_root=gx_root).success


def test_raw_gate_names_a_missing_daily_delivery(warehouse_url, gx_root, monkeypatch):
    build_raw(warehouse_url)
    day4 = DAY2 + timedelta(days=2)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:  # DAY3 never came
        deliver(conn, "web", "events", day4, [])
        deliver(conn, "marketing", "ad_spend", day4, [])
    end = day4 + timedelta(days=2)  # the run covers DAY1..day4 + 1; grace: its last day is not due yet
    with pytest.raises(QualityGateFailed) as failed:
        run_gate(warehouse_url, "raw", "run-hole", end, data_interval_start=DAY1, project_root=gx_root)
    message = str(failed.value)
    assert "ERROR raw_load_audit · every date folder of a daily entity (LW_DAILY_ENTITIES) is delivered" in message
    assert "source=marketing, entity=ad_spend, missing_date=2026-09-03" in message
    assert "source=web, entity=events, missing_date=2026-09-03" in message
    assert "missing_date=2026-09-05" not in message, "within the grace period"
    # CRM entities are not delivered daily: their quiet days are not missing
    assert "entity=contacts" not in message
    monkeypatch.setenv("LW_DAILY_ENTITIES", "")
    assert run_gate(warehouse_url, "raw", "run-no-daily", end, data_interval_start=DAY1, project_root=gx_root).success


def test_raw_gate_warns_about_shop_rows_without_updated_at(warehouse_url, gx_root):
    build_raw(warehouse_url)
    sql_exec(warehouse_url, "update raw.shop_refunds set updated_at = null")
    result = run_gate(warehouse_url, "raw", "run-undated", END, project_root=gx_root)
    assert result.success
    assert [(w.suite, w.column) for w in result.warnings if w.column == "updated_at"] == [
        ("raw_shop_refunds", "updated_at")]
