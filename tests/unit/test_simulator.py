"""The source simulator writes exactly the contract, deterministically, with the planted
quirks (late and duplicated web events, email case/whitespace differences) in the planted
shares, consistent money, statuses and identities, and a truth file that matches what it
wrote. Small configurations: a few seconds in all."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import uuid
from collections import Counter
from dataclasses import fields, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from lifecycle_warehouse import contract
from lifecycle_warehouse.ingest.deliveries import MARKER
from lifecycle_warehouse.simulator import Rates, SimulationConfig, simulate
from lifecycle_warehouse.simulator.__main__ import main as cli_main

START = date(2026, 9, 1)
DAYS = 4
HISTORY_DAYS = 365
SHOP_TABLE_NAMES = [t.table for t in contract.SHOP_TABLES]


# --- helpers --------------------------------------------------------------------------


def new_database(admin_url: str) -> str:
    name = f"simshop_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return admin_url.replace("/postgres?", f"/{name}?")


def config(tmp: Path, shop_url: str, **overrides) -> SimulationConfig:
    base = SimulationConfig(
        start=START, days=DAYS, customers=600, seed=11, history_days=HISTORY_DAYS,
        landing_dir=tmp / "landing", shop_url=shop_url, truth_file=tmp / "truth.json",
    )
    return replace(base, **overrides)


def day_folders(landing: Path, entity: contract.FileEntity, days: int = DAYS):
    for i in range(days):
        yield START + timedelta(days=i), landing / entity.source / entity.entity / f"dt={START + timedelta(days=i)}"


def data_file(folder: Path) -> Path:
    """The one data file of a date folder, which the simulator marks complete (`_SUCCESS`)."""
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 2 and MARKER in files, f"{folder}: expected one file and {MARKER}, found {files}"
    return folder / next(name for name in files if name != MARKER)


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


def csv_rows(path: Path) -> tuple[list[str], list[dict]]:
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header = next(reader)
    return header, [dict(zip(header, row)) for row in reader]


def web_events(landing: Path, days: int = DAYS) -> list[tuple[date, str, dict]]:
    """(dt of the delivery, raw line, parsed event) for every line of every web file."""
    entity = contract.file_entity("web", "events")
    out = []
    for dt, folder in day_folders(landing, entity, days):
        for line in read_text(data_file(folder)).splitlines():
            out.append((dt, line, json.loads(line)))
    return out


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def shop_dump(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        out = {}
        for table in contract.SHOP_TABLES:
            order = sql.SQL(", ").join(map(sql.Identifier, table.primary_key))
            out[table.table] = conn.execute(
                sql.SQL("select * from public.{} order by {}").format(sql.Identifier(table.table), order)
            ).fetchall()
        return out


def normalise(email: str) -> str:
    return email.strip().lower()


# --- one shared run for the structural checks ----------------------------------------


@pytest.fixture(scope="module")
def run(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim")
    url = new_database(pg_server)
    cfg = config(tmp, url)
    result = simulate(cfg)
    truth = json.loads(cfg.truth_file.read_text())
    return cfg, result, truth, url


def test_every_entity_has_one_file_per_day_with_exactly_the_contract_columns(run):
    cfg, _, _, _ = run
    for entity in contract.FILE_ENTITIES:
        expected = [c.name for c in entity.columns]
        folders = sorted((cfg.landing_dir / entity.source / entity.entity).iterdir())
        assert [f.name for f in folders] == [f"dt={d}" for d, _ in day_folders(cfg.landing_dir, entity)]
        for _, folder in day_folders(cfg.landing_dir, entity):
            path = data_file(folder)
            assert path.name.endswith((f".{entity.format}", f".{entity.format}.gz")), path
            if entity.format == "csv":
                header, _ = csv_rows(path)
                assert header == expected, path
            else:
                for line in read_text(path).splitlines():
                    assert list(json.loads(line)) == expected, path
    # nothing written outside <landing>/<source>/<entity>/
    top = {p.name for p in cfg.landing_dir.iterdir()}
    assert top == {e.source for e in contract.FILE_ENTITIES}


def test_files_satisfy_the_contract_value_rules(run):
    """Required columns filled, accepted values, code lengths, timestamps parse, and the
    NPS / CSAT ranges: the loader would quarantine nothing."""
    cfg, _, _, _ = run
    for entity in contract.FILE_ENTITIES:
        for _, folder in day_folders(cfg.landing_dir, entity):
            path = data_file(folder)
            if entity.format == "csv":
                rows = csv_rows(path)[1]
            else:
                rows = [json.loads(line) for line in read_text(path).splitlines()]
            for n, row in enumerate(rows, start=2):
                where = f"{path} row {n}"
                for col in entity.columns:
                    value = row[col.name]
                    if value in ("", None):
                        assert not col.required, f"{where}: {col.name} is required"
                        continue
                    if col.accepted:
                        assert value in col.accepted, f"{where}: {col.name}={value!r}"
                    if col.length:
                        assert len(value) == col.length, f"{where}: {col.name}={value!r}"
                    if col.type == contract.TIMESTAMPTZ:
                        assert parse_ts(value).tzinfo is not None, where
                    elif col.type == contract.DATE:
                        date.fromisoformat(value)
                    elif col.type in (contract.INTEGER, contract.BIGINT):
                        int(value)
                    elif col.type == contract.NUMERIC:
                        assert Decimal(str(value)) >= 0, where
                    elif col.type == contract.JSONB:
                        assert isinstance(value, dict), where
                if entity.entity == "survey_responses":
                    low, high = (0, 10) if row["survey_type"] == "nps" else (1, 5)
                    assert low <= int(row["score"]) <= high, where


def test_rows_and_lines_match_the_truth_file(run):
    cfg, result, truth, url = run
    for entity in contract.FILE_ENTITIES:
        key = f"{entity.source}/{entity.entity}"
        total = 0
        for _, folder in day_folders(cfg.landing_dir, entity):
            path = data_file(folder)
            total += len(csv_rows(path)[1]) if entity.format == "csv" else len(read_text(path).splitlines())
        assert total == result.rows[key] == truth["rows"][key], key
        assert result.files[key] == truth["files"][key] == DAYS, key
    web = truth["realized"]["web"]
    events = web_events(cfg.landing_dir)
    assert web["lines_written"] == len(events) > 0
    assert web["unique_events"] == len({e["event_id"] for _, _, e in events})
    unique = {e["event_id"]: e for _, _, e in events}
    assert web["events_by_name"] == dict(sorted(Counter(e["event_name"] for e in unique.values()).items()))
    with psycopg.connect(url) as conn:
        for table in SHOP_TABLE_NAMES:
            n = conn.execute(sql.SQL("select count(*) from public.{}").format(sql.Identifier(table))).fetchone()[0]
            assert n == result.rows[f"shop/{table}"] == truth["rows"][f"shop/{table}"], table
        by_status = dict(conn.execute("select status, count(*) from orders group by status").fetchall())
    assert {k: v for k, v in truth["realized"]["shop"]["orders_by_status"].items() if v} == by_status
    assert truth["seed"] == cfg.seed
    assert truth["rates"]["p_duplicate"] == cfg.rates.p_duplicate
    assert truth["config"]["days"] == DAYS and "shop_url" not in truth["config"]


def test_shop_tables_follow_the_contract_with_keys_and_updated_at_index(run):
    _, _, _, url = run
    with psycopg.connect(url) as conn:
        for table in contract.SHOP_TABLES:
            columns = [r[0] for r in conn.execute(
                "select column_name from information_schema.columns where table_schema = 'public' "
                "and table_name = %s order by ordinal_position", (table.table,))]
            assert columns == [c.name for c in table.columns], table.table
            pk = [r[0] for r in conn.execute(
                "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
                "and a.attnum = any(i.indkey) where i.indrelid = %s::regclass and i.indisprimary "
                "order by array_position(i.indkey, a.attnum)", (f"public.{table.table}",))]
            assert pk == list(table.primary_key), table.table
            indexes = [r[0] for r in conn.execute(
                "select indexdef from pg_indexes where schemaname = 'public' and tablename = %s", (table.table,))]
            assert any("(updated_at)" in d for d in indexes), table.table


def test_orders_add_up_statuses_are_valid_and_history_is_long(run):
    cfg, _, _, url = run
    start = datetime(START.year, START.month, START.day, tzinfo=timezone.utc)
    end = start + timedelta(days=DAYS)
    with psycopg.connect(url) as conn:
        def q(query: str, *params) -> list[tuple]:
            return conn.execute(query, params).fetchall()

        assert q("select count(*) from orders where total <> subtotal - discount + shipping + tax") == [(0,)]
        assert q("select count(*) from orders where least(subtotal, discount, shipping, tax, total) < 0") == [(0,)]
        assert q("""select count(*) from orders o join (select order_id, sum(quantity * unit_price) s
                    from order_items group by order_id) i using (order_id) where i.s <> o.subtotal""") == [(0,)]
        assert q("select count(*) from orders o where not exists "
                 "(select 1 from order_items i where i.order_id = o.order_id)") == [(0,)]
        statuses = {r[0] for r in q("select distinct status from orders")}
        assert statuses <= set(contract.ORDER_STATUSES) and {"delivered", "cancelled", "refunded"} <= statuses
        assert {r[0] for r in q("select distinct channel from orders")} <= set(contract.ORDER_CHANNELS)
        assert {r[0] for r in q("select distinct currency from orders")} <= {"USD", "EUR", "GBP", "CAD"}
        assert q("select count(*) from orders where updated_at < ordered_at or updated_at >= %s", end) == [(0,)]
        # refunds: a fully refunded order has status refunded; no refund exceeds its order
        assert q("select count(*) from refunds r join orders o using (order_id) where r.amount > o.total "
                 "or r.refunded_at < o.ordered_at") == [(0,)]
        assert q("select count(*) from orders o where status = 'refunded' and not exists "
                 "(select 1 from refunds r where r.order_id = o.order_id and r.amount = o.total)") == [(0,)]
        # every order belongs to a customer created no later than it
        assert q("select count(*) from orders o left join customers c using (customer_id) "
                 "where c.customer_id is null or c.created_at > o.ordered_at") == [(0,)]
        # subscriptions: canceled_at set exactly when canceled; statuses valid; mrr positive
        assert q("select count(*) from subscriptions where (status = 'canceled') <> (canceled_at is not null) "
                 "or mrr <= 0") == [(0,)]
        assert {r[0] for r in q("select distinct status from subscriptions")} <= set(contract.SUBSCRIPTION_STATUSES)
        oldest, newest = conn.execute("select min(ordered_at), max(ordered_at) from orders").fetchone()
    assert oldest < start - timedelta(days=HISTORY_DAYS - 60), "the shop holds years of history before the window"
    assert newest < end


def test_shop_emails_match_crm_contacts_after_trim_and_lowercase(run):
    cfg, _, truth, url = run
    contacts = {}
    for _, folder in day_folders(cfg.landing_dir, contract.file_entity("crm", "contacts")):
        for row in csv_rows(data_file(folder))[1]:
            contacts[row["contact_id"]] = row["email"]
    crm_exact = set(contacts.values())
    crm_normalised = {normalise(e) for e in contacts.values()}
    with psycopg.connect(url) as conn:
        shop = [r[0] for r in conn.execute("select email from customers")]
    matched = [e for e in shop if normalise(e) in crm_normalised]
    only_after_normalising = [e for e in matched if e not in crm_exact]
    shop_truth = truth["realized"]["shop"]
    assert len(shop) - len(matched) == shop_truth["customers_without_contact"] > 0
    assert len(only_after_normalising) == shop_truth["customers_with_email_variant"] > 0
    assert any(e != e.strip() for e in list(contacts.values()) + shop), "whitespace differences are planted"
    assert any(e != e.lower() for e in list(contacts.values()) + shop), "case differences are planted"
    assert truth["realized"]["persons"]["contacts_without_orders"] > 0


def test_web_users_are_crm_contacts_and_purchases_match_web_orders(run):
    cfg, _, _, url = run
    contact_ids = set()
    for _, folder in day_folders(cfg.landing_dir, contract.file_entity("crm", "contacts")):
        contact_ids |= {row["contact_id"] for row in csv_rows(data_file(folder))[1]}
    events = [e for _, _, e in web_events(cfg.landing_dir)]
    user_ids = {e["user_id"] for e in events if e["user_id"]}
    assert user_ids and user_ids <= contact_ids
    # identity stitching has something to do: anonymous events before the id is known
    first_user = {}
    for e in sorted(events, key=lambda e: e["occurred_at"]):
        if e["user_id"] and e["anonymous_id"] not in first_user:
            first_user[e["anonymous_id"]] = e["occurred_at"]
    assert any(e["user_id"] is None and e["anonymous_id"] in first_user
               and e["occurred_at"] < first_user[e["anonymous_id"]] for e in events)
    assert any(e["utm_source"] for e in events) and any(e["referrer"] for e in events)
    assert all(isinstance(e["properties"].get("engagement_time_msec"), int)
               for e in events if e["event_name"] == "page_view")
    purchases = {e["event_id"]: e for e in events if e["event_name"] == "purchase"}
    assert purchases, "web orders in the window leave purchase events"
    with psycopg.connect(url) as conn:
        for e in purchases.values():
            props = e["properties"]
            row = conn.execute("select total, currency, channel, ordered_at from orders where order_id::text = %s",
                               (props["order_id"],)).fetchone()
            assert row is not None, e
            total, currency, channel, ordered_at = row
            assert (Decimal(str(props["value"])), props["currency"], channel) == (total, currency, "web")
            assert parse_ts(e["occurred_at"]) == ordered_at


def test_utm_tags_name_crm_campaigns_and_ad_spend_rows(run):
    cfg, _, _, _ = run
    campaigns = {}
    for _, folder in day_folders(cfg.landing_dir, contract.file_entity("crm", "campaigns")):
        for row in csv_rows(data_file(folder))[1]:
            campaigns[row["campaign_id"]] = row
    utm_campaigns = {e["utm_campaign"] for _, _, e in web_events(cfg.landing_dir) if e["utm_campaign"]}
    spend_rows = []
    for _, folder in day_folders(cfg.landing_dir, contract.file_entity("marketing", "ad_spend")):
        spend_rows += csv_rows(data_file(folder))[1]
    assert spend_rows and {r["currency"] for r in spend_rows} >= {"USD", "EUR"}
    assert {r["campaign_id"] for r in spend_rows} <= set(campaigns)
    spend_utms = {r["utm_campaign"] for r in spend_rows}
    assert utm_campaigns & spend_utms, "paid landing hits carry the ad platforms' utm_campaign"
    for r in spend_rows:
        assert campaigns[r["campaign_id"]]["channel"] == r["channel"]


# --- runs of their own ----------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_rows_and_a_rerun_replaces_date_folders(shop_url, tmp_path):
    cfg = config(tmp_path, shop_url, customers=250, days=3)
    simulate(cfg)
    files_1, rows_1 = tree_digest(cfg.landing_dir), shop_dump(shop_url)
    truth_1 = cfg.truth_file.read_bytes()
    stray = cfg.landing_dir / "crm" / "contacts" / f"dt={START}" / "old_delivery.csv"
    stray.write_text("contact_id,email,created_at,updated_at\n")
    simulate(cfg)
    assert not stray.exists(), "a date folder is replaced as a whole"
    assert tree_digest(cfg.landing_dir) == files_1
    assert shop_dump(shop_url) == rows_1
    assert cfg.truth_file.read_bytes() == truth_1

    other = replace(cfg, seed=cfg.seed + 1, landing_dir=tmp_path / "other", truth_file=tmp_path / "other.json")
    simulate(other)
    assert tree_digest(other.landing_dir) != files_1
    assert shop_dump(shop_url) != rows_1


def test_shop_ids_can_be_text_or_uuids_in_the_same_world(pg_server, tmp_path):
    """`shop_ids` changes the shop's ids and nothing else: their column type in the shop,
    and every reference to them (orders -> customers, refunds -> orders, web purchases and
    loyalty references -> orders) uses the same ids."""
    id_columns = {("customers", "customer_id"), ("orders", "order_id"), ("orders", "customer_id"),
                  ("refunds", "refund_id"), ("refunds", "order_id"), ("subscriptions", "subscription_id"),
                  ("subscriptions", "customer_id"), ("order_items", "order_id")}
    without_ids = "select status, total, ordered_at from orders order by ordered_at, total, status"
    worlds = {}
    for kind, column_type in (("integer", "bigint"), ("text", "text"), ("uuid", "uuid")):
        url = new_database(pg_server)
        cfg = config(tmp_path / kind, url, customers=600, days=3, shop_ids=kind)
        simulate(cfg)
        with psycopg.connect(url) as conn:
            types = dict(((t, c), ty) for t, c, ty in conn.execute(
                "select table_name, column_name, data_type from information_schema.columns"
                " where table_schema = 'public'"))
            assert {types[key] for key in id_columns} == {column_type}, kind
            worlds[kind] = conn.execute(without_ids).fetchall()
            orders = {r[0] for r in conn.execute("select order_id::text from orders")}
            assert conn.execute(
                "select count(*) from orders o where o.customer_id is not null and not exists"
                " (select from customers c where c.customer_id = o.customer_id)").fetchone()[0] == 0
            assert conn.execute(
                "select count(*) from refunds r where not exists"
                " (select from orders o where o.order_id = r.order_id)").fetchone()[0] == 0
            sample = conn.execute("select order_id::text from orders order by ordered_at limit 1").fetchone()[0]
        purchases = {e["properties"]["order_id"] for _, _, e in web_events(cfg.landing_dir, days=3)
                     if e["event_name"] == "purchase"}
        assert purchases and purchases <= orders, kind
        if kind == "text":
            assert sample.startswith("ord_") and not sample[4:].isdigit()
        if kind == "uuid":
            assert uuid.UUID(sample)
    assert worlds["text"] == worlds["integer"] == worlds["uuid"], "the same world, other ids"


def test_late_and_duplicate_events_come_in_the_planted_shares(shop_url, tmp_path):
    days = 6
    rates = replace(Rates(), p_late=0.10, p_duplicate=0.04)
    cfg = config(tmp_path, shop_url, days=days, rates=rates)
    simulate(cfg)
    truth = json.loads(cfg.truth_file.read_text())["realized"]["web"]
    events = web_events(cfg.landing_dir, days)
    by_id: dict[str, list[tuple[date, str]]] = {}
    for dt, line, e in events:
        by_id.setdefault(e["event_id"], []).append((dt, line))
    unique = len(by_id)
    copies = [v for v in by_id.values() if len(v) > 1]
    assert all(len(v) == 2 for v in copies)
    assert all(a[1] == b[1] and 0 <= (b[0] - a[0]).days <= 1 for a, b in (sorted(v) for v in copies)), \
        "the second copy is the same line, in the same or the next day's file"
    assert len(copies) == truth["duplicates_written"]
    expected_dupes = rates.p_duplicate * unique
    assert abs(len(copies) - expected_dupes) < 4 * math.sqrt(expected_dupes), (len(copies), expected_dupes)

    first = {}
    for dt, _, e in events:
        first.setdefault(e["event_id"], (dt, parse_ts(e["occurred_at"]).date()))
    lateness = Counter((dt - occurred).days for dt, occurred in first.values())
    assert min(lateness) >= 0 and max(lateness) <= 3, lateness
    late = sum(n for d, n in lateness.items() if d > 0)
    assert late == truth["late_events_written"]
    last_day = START + timedelta(days=days - 1)
    # events of the last day cannot arrive later; events from before the window are late by nature
    can_be_late = sum(1 for _, occurred in first.values() if START <= occurred < last_day)
    before_window = sum(1 for _, occurred in first.values() if occurred < START)
    expected_late = rates.p_late * can_be_late + before_window
    assert abs(late - expected_late) < 4 * math.sqrt(rates.p_late * can_be_late), (late, expected_late)
    assert truth["gzip_days"], "some days are delivered gzipped"


def test_cli_runs_with_explicit_paths(shop_url, tmp_path, capsys):
    args = [
        "--start", "2026-09-01", "--days", "2", "--customers", "40", "--seed", "3", "--history-days", "60",
        "--landing-dir", str(tmp_path / "landing"), "--shop-url", shop_url,
        "--truth-file", str(tmp_path / "truth.json"), "--no-progress",
    ]
    # the test server is not the project's embedded one: simulating there drops its tables
    assert cli_main(args) == 2
    assert "--i-know-this-drops-tables" in capsys.readouterr().err
    assert not (tmp_path / "landing").exists()

    assert cli_main([*args, "--i-know-this-drops-tables"]) == 0
    assert "web/events" in capsys.readouterr().out
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["config"] | {"landing_dir": None} == {
        "start": "2026-09-01", "days": 2, "end_exclusive": "2026-09-03", "customers": 40,
        "history_days": 60, "history_start": "2026-07-03", "shop_ids": "integer", "landing_dir": None,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"days": 0}, "days must be at least 1"),
        ({"customers": -1}, "customers must not be negative"),
        ({"rates": Rates(p_late=1.5)}, "Rates.p_late must be a probability"),
        ({"rates": Rates(csat=(0.5, 0.5, 0.0, 0.0, 0.1))}, "Rates.csat"),
        ({"rates": Rates(device_types=(("desktop", 0.5),))}, "Rates.device_types weights must sum to 1"),
    ],
)
def test_bad_configuration_is_refused_with_the_reason(tmp_path, overrides, message):
    cfg = config(tmp_path, "postgresql://unused", **overrides)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        simulate(cfg)
    assert not (tmp_path / "landing").exists(), "nothing is written before the config is checked"


def test_every_planted_rate_is_documented():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text(encoding="utf-8")
    missing = [f.name for f in fields(Rates) if f"`{f.name}`" not in docs]
    assert missing == [], f"docs/simulator.md does not document {missing}"
