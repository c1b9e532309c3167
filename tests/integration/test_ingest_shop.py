"""Incremental shop extraction against real PostgreSQL: a shop database with its own column
types (integer ids, numeric(12,2), varchar, timestamp without time zone) and a warehouse."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from lifecycle_warehouse import contract
from lifecycle_warehouse.ingest import SourceUnavailableError, shop

UTC = timezone.utc

SHOP_DDL = """
create table customers (
    customer_id integer primary key, email varchar(200), created_at timestamptz,
    updated_at timestamptz not null, internal_note text);
create table orders (
    order_id bigint primary key, customer_id integer, status varchar(20), currency char(3),
    subtotal numeric(12,2), discount numeric(12,2), shipping numeric(12,2), tax numeric(12,2),
    total numeric(12,2), coupon_code text, channel text,
    ordered_at timestamp, updated_at timestamp not null);
create table order_items (
    order_id bigint, line_number smallint, sku text, product_name text, category text,
    quantity integer, unit_price numeric(12,2), updated_at timestamptz not null,
    primary key (order_id, line_number));
create table refunds (
    refund_id integer primary key, order_id bigint, amount numeric(12,2), reason text,
    refunded_at timestamptz, updated_at timestamptz not null);
create table subscriptions (
    subscription_id integer primary key, customer_id integer, plan text, status text,
    mrr numeric(12,2), currency text, started_at timestamptz, canceled_at timestamptz,
    updated_at timestamptz not null);
"""


def t(day: int, hour: int = 0, month: int = 3, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.fixture
def shop_db(shop_url):
    with psycopg.connect(shop_url, autocommit=True) as conn:
        conn.execute(SHOP_DDL)
        conn.execute("set timezone = 'UTC'")
        conn.execute(
            "insert into customers values"
            " (1, 'a@x.io', '2019-05-01', '2019-05-01', 'vip'),"
            " (2, 'b@x.io', '2024-02-27', '2024-02-27', null),"
            " (3, 'c@x.io', '2024-03-02 12:00', '2024-03-02 12:00', null)"  # after the first interval
        )
        conn.execute(
            "insert into orders values"
            " (10, 1, 'paid', 'EUR', 100, 0, 5, 19, 124, null, 'web', '2019-05-02 10:00', '2019-05-02 10:00'),"
            " (11, 2, 'pending', 'USD', 50, 5, 0, 0, 45, 'SPRING', 'app', '2024-02-28 09:00', '2024-02-28 09:00')"
        )
    return shop_url


def shop_exec(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        conn.execute(statement)


def raw(url: str, table: str, key: str) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(f"select * from raw.shop_{table} order by {key}").fetchall()


def data(url: str, table: str, key: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("_batch_id", "_extracted_at")} for r in raw(url, table, key)]


def watermark(url: str, table: str) -> datetime | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select watermark from raw.extract_watermarks where source_table = %s", (shop.watermark_key(table),)
        ).fetchone()
    return row[0] if row else None


def test_first_run_takes_all_history_up_to_interval_end(shop_db, warehouse_url):
    result = shop.extract_table(shop_db, warehouse_url, "orders", t(2))
    assert (result.rows_extracted, result.rows_upserted, result.since, result.watermark_before) == (2, 2, None, None)
    assert data(warehouse_url, "orders", "order_id") == [
        {"order_id": "10", "customer_id": "1", "status": "paid", "currency": "EUR", "subtotal": Decimal("100.00"),
         "discount": Decimal("0.00"), "shipping": Decimal("5.00"), "tax": Decimal("19.00"), "total": Decimal("124.00"),
         "coupon_code": None, "channel": "web", "ordered_at": datetime(2019, 5, 2, 10, tzinfo=UTC),
         "updated_at": datetime(2019, 5, 2, 10, tzinfo=UTC)},  # timestamp without zone read as UTC
        {"order_id": "11", "customer_id": "2", "status": "pending", "currency": "USD", "subtotal": Decimal("50.00"),
         "discount": Decimal("5.00"), "shipping": Decimal("0.00"), "tax": Decimal("0.00"), "total": Decimal("45.00"),
         "coupon_code": "SPRING", "channel": "app", "ordered_at": datetime(2024, 2, 28, 9, tzinfo=UTC),
         "updated_at": datetime(2024, 2, 28, 9, tzinfo=UTC)},
    ]
    assert watermark(warehouse_url, "orders") == datetime(2024, 2, 28, 9, tzinfo=UTC)

    customers = shop.extract_table(shop_db, warehouse_url, "customers", t(2))
    assert [r["customer_id"] for r in data(warehouse_url, "customers", "customer_id")] == ["1", "2"]  # 3 is later
    assert customers.watermark_after == t(27, month=2)
    with psycopg.connect(warehouse_url, row_factory=dict_row) as conn:
        audit = conn.execute("select * from raw.load_audit order by loaded_at, entity").fetchall()
    assert [(a["source"], a["entity"], a["file"], a["status"], a["rows_read"], a["rows_loaded"], a["rows_quarantined"])
            for a in audit] == [
        ("shop", "orders", "shop:public.orders", "loaded", 2, 2, 0),
        ("shop", "customers", "shop:public.customers", "loaded", 2, 2, 0),
    ]
    assert audit[0]["dt"] == t(2).date() and audit[0]["batch_id"] == result.batch_id


def test_later_update_is_upserted_and_watermark_moves_forward(shop_db, warehouse_url):
    shop.extract_table(shop_db, warehouse_url, "orders", t(2))
    shop_exec(shop_db, "update orders set status = 'shipped', updated_at = '2024-03-02 15:00' where order_id = 11")
    shop_exec(shop_db, "insert into orders (order_id, customer_id, status, updated_at) values (12, 1, 'paid', '2024-03-02 16:00')")

    result = shop.extract_table(shop_db, warehouse_url, "orders", t(3))

    assert result.since == datetime(2024, 2, 25, 9, tzinfo=UTC)  # watermark - 3 days overlap
    assert (result.rows_extracted, result.rows_upserted) == (2, 2)
    got = {r["order_id"]: (r["status"], r["updated_at"]) for r in data(warehouse_url, "orders", "order_id")}
    assert got == {
        "10": ("paid", datetime(2019, 5, 2, 10, tzinfo=UTC)),
        "11": ("shipped", datetime(2024, 3, 2, 15, tzinfo=UTC)),
        "12": ("paid", datetime(2024, 3, 2, 16, tzinfo=UTC)),
    }
    assert result.watermark_before == datetime(2024, 2, 28, 9, tzinfo=UTC)
    assert watermark(warehouse_url, "orders") == result.watermark_after == datetime(2024, 3, 2, 16, tzinfo=UTC)

    # Re-running an earlier interval never moves the watermark back.
    again = shop.extract_table(shop_db, warehouse_url, "orders", t(2, 16))  # sees order 11 only
    assert (again.rows_extracted, again.rows_upserted) == (1, 0)
    assert watermark(warehouse_url, "orders") == datetime(2024, 3, 2, 16, tzinfo=UTC)


def test_rerun_is_idempotent(shop_db, warehouse_url):
    shop.extract_table(shop_db, warehouse_url, "orders", t(3))
    first = data(warehouse_url, "orders", "order_id")
    first_batches = {r["order_id"]: r["_batch_id"] for r in raw(warehouse_url, "orders", "order_id")}
    second = shop.extract_table(shop_db, warehouse_url, "orders", t(3))
    assert second.rows_extracted == 1  # order 11 is inside the overlap window
    assert second.rows_upserted == 0  # ...but unchanged, so left alone
    assert data(warehouse_url, "orders", "order_id") == first
    assert {r["order_id"]: r["_batch_id"] for r in raw(warehouse_url, "orders", "order_id")} == first_batches


def test_an_older_version_never_overwrites_a_newer_one(shop_db, warehouse_url):
    shop_exec(shop_db, "update orders set status = 'delivered', updated_at = '2024-03-01 12:00' where order_id = 11")
    shop.extract_table(shop_db, warehouse_url, "orders", t(2))
    # The shop (e.g. restored from a lagging replica) now shows an older version of the row.
    shop_exec(shop_db, "update orders set status = 'paid', updated_at = '2024-02-29 12:00' where order_id = 11")
    result = shop.extract_table(shop_db, warehouse_url, "orders", t(2))
    assert result.rows_extracted == 1 and result.rows_upserted == 0
    (row,) = [r for r in data(warehouse_url, "orders", "order_id") if r["order_id"] == "11"]
    assert (row["status"], row["updated_at"]) == ("delivered", datetime(2024, 3, 1, 12, tzinfo=UTC))


def test_same_timestamp_with_changed_content_is_taken(shop_db, warehouse_url):
    shop.extract_table(shop_db, warehouse_url, "orders", t(2))
    shop_exec(shop_db, "update orders set coupon_code = 'FIXED' where order_id = 11")  # updated_at untouched
    result = shop.extract_table(shop_db, warehouse_url, "orders", t(2))
    assert result.rows_upserted == 1
    assert [r["coupon_code"] for r in data(warehouse_url, "orders", "order_id")] == [None, "FIXED"]


def test_extract_all_covers_every_contract_table(shop_db, warehouse_url):
    shop_exec(shop_db, "insert into order_items values (10, 1, 'SKU1', 'Mug', 'home', 2, 9.5, '2019-05-02 10:00+00')")
    results = shop.extract_all(shop_db, warehouse_url, t(3))
    assert [r.table for r in results] == [s.table for s in contract.SHOP_TABLES]
    assert {r.table: r.rows_extracted for r in results} == {
        "customers": 3, "orders": 2, "order_items": 1, "refunds": 0, "subscriptions": 0
    }
    (item,) = data(warehouse_url, "order_items", "order_id, line_number")
    assert (item["line_number"], item["quantity"], item["unit_price"]) == (1, 2, Decimal("9.50"))
    assert watermark(warehouse_url, "refunds") is None  # nothing seen yet


def test_shop_is_read_in_read_only_transactions_by_a_select_only_role(shop_db, warehouse_url, monkeypatch):
    with psycopg.connect(shop_db, autocommit=True) as conn:
        # a role of this test's own (the server's shop_reader belongs to its `shop` database)
        conn.execute("drop role if exists test_shop_select_only")
        conn.execute("create role test_shop_select_only login password 'test-only-password'")
        conn.execute("grant select on all tables in schema public to test_shop_select_only")
        conn.execute("revoke create on schema public from public")
    reader_url = shop_db + "&user=test_shop_select_only&password=test-only-password"
    opened: list[psycopg.Connection] = []
    real_connect = shop.connect

    def spy(url, variable, **kwargs):
        conn = real_connect(url, variable, **kwargs)
        if variable == "SHOP_DB_URL":
            opened.append(conn)
        return conn

    monkeypatch.setattr(shop, "connect", spy)
    results = shop.extract_all(reader_url, warehouse_url, t(3))
    assert sum(r.rows_extracted for r in results) == 5
    assert opened and all(conn.read_only for conn in opened)


def test_unreachable_shop_names_the_setting_without_the_password(warehouse_url, tmp_path):
    url = f"postgresql://reader:Sup3rSecret@/shop?host={tmp_path}&port=1&connect_timeout=2"
    with pytest.raises(SourceUnavailableError) as caught:
        shop.extract_table(url, warehouse_url, "orders", t(2))
    message = str(caught.value)
    assert "SHOP_DB_URL" in message and "dbname=shop" in message
    assert "Sup3rSecret" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_shop_table_missing_a_contract_column_fails_clearly(shop_url, warehouse_url):
    shop_exec(shop_url, "create table refunds (refund_id integer primary key, amount numeric, updated_at timestamptz)")
    with pytest.raises(shop.ShopSchemaError, match=r"public\.refunds does not match the contract"):
        shop.extract_table(shop_url, warehouse_url, "refunds", t(2))
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select count(*) from raw.load_audit").fetchone()[0] == 0


def test_a_shop_table_off_contract_fails_its_task_without_retries(shop_url, warehouse_url, monkeypatch):
    """A data error is not transient: the task fails for good at once (AirflowFailException
    skips the retries), where an unreachable shop retries with backoff."""
    from airflow.sdk.exceptions import AirflowFailException

    from lifecycle_warehouse import ingest_tasks

    shop_exec(shop_url, "create table refunds (refund_id integer primary key, amount numeric, updated_at timestamptz)")
    monkeypatch.setenv("SHOP_DB_URL", shop_url)
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    with pytest.raises(AirflowFailException, match=r"public\.refunds does not match the contract"):
        ingest_tasks.extract_shop_table("refunds", date(2026, 9, 2))


# --------------------------------------------------------------------------- shops nobody here wrote


def test_ids_of_any_type_are_kept_as_the_source_wrote_them(shop_url, warehouse_url):
    """Text ids (Stripe-like `sub_…`, `B1`), uuids and integers alike: raw keeps each id's
    text; nothing assumes a number."""
    shop_exec(shop_url, """
        create table customers (customer_id uuid primary key, email text, created_at timestamptz,
                                updated_at timestamptz not null);
        create table subscriptions (subscription_id text primary key, customer_id uuid, plan text,
            status text, mrr numeric, currency text, started_at timestamptz, canceled_at timestamptz,
            updated_at timestamptz not null);
        insert into customers values ('5f0c7c52-1d1e-4d7a-9a55-2a1f3e8b7c10', 'a@x.io', '2024-01-01', '2024-01-01');
        insert into subscriptions values
            ('B1', '5f0c7c52-1d1e-4d7a-9a55-2a1f3e8b7c10', 'pro', 'active', 50, 'EUR', '2024-01-01', null, '2024-01-01'),
            ('sub_8f3a91c2', null, 'basic', 'paused', 9, 'EUR', '2024-02-01', null, '2024-02-01'),
            ('0042', null, 'basic', 'active', 9, 'EUR', '2024-02-01', null, '2024-02-01')""")
    shop.extract_table(shop_url, warehouse_url, "customers", t(2))
    result = shop.extract_table(shop_url, warehouse_url, "subscriptions", t(2))
    assert result.rows_extracted == 3
    assert [(r["subscription_id"], r["customer_id"]) for r in data(warehouse_url, "subscriptions", "subscription_id")] == [
        ("0042", None), ("B1", "5f0c7c52-1d1e-4d7a-9a55-2a1f3e8b7c10"), ("sub_8f3a91c2", None)]
    assert [r["customer_id"] for r in data(warehouse_url, "customers", "customer_id")] == [
        "5f0c7c52-1d1e-4d7a-9a55-2a1f3e8b7c10"]


def test_a_warehouse_with_integer_shop_ids_is_converted_in_place(warehouse_url):
    from lifecycle_warehouse import bootstrap

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        bootstrap.ensure_raw_schema(conn)
        # as created before ids became opaque
        conn.execute("alter table raw.shop_orders alter column order_id type bigint using order_id::bigint,"
                     " alter column customer_id type bigint using customer_id::bigint")
        conn.execute("insert into raw.shop_orders (order_id, customer_id, updated_at, _batch_id, _extracted_at)"
                     " values (1001, 7, now(), gen_random_uuid(), now())")
        assert not bootstrap.raw_schema_complete(conn)
        bootstrap.ensure_raw_schema(conn)
        assert bootstrap.raw_schema_complete(conn)
        assert conn.execute("select order_id, customer_id, pg_typeof(order_id)::text from raw.shop_orders").fetchone() == (
            "1001", "7", "text")


def test_views_on_a_retyped_column_dbt_drops_its_own_and_refuses_anyone_elses(warehouse_url):
    """PostgreSQL cannot retype a column a view reads. A dbt staging view is dropped (the
    next dbt build recreates it); someone else's view stops the upgrade with its name."""
    from lifecycle_warehouse import bootstrap

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        bootstrap.ensure_raw_schema(conn)
        conn.execute("alter table raw.shop_customers alter column customer_id type bigint using customer_id::bigint")
        conn.execute("create schema staging")
        conn.execute("create view staging.stg_shop__customers as select customer_id from raw.shop_customers")
        conn.execute("create view public.my_customers as select customer_id from raw.shop_customers")
        with pytest.raises(RuntimeError, match=r"view\(s\) public.my_customers read it"):
            bootstrap.ensure_raw_schema(conn)
        assert conn.execute("select to_regclass('staging.stg_shop__customers')").fetchone()[0] is not None
        conn.execute("drop view public.my_customers")
        bootstrap.ensure_raw_schema(conn)
        assert conn.execute("select to_regclass('staging.stg_shop__customers')").fetchone()[0] is None
        assert conn.execute("select format_type(atttypid, atttypmod) from pg_attribute "
                            "where attrelid = 'raw.shop_customers'::regclass and attname = 'customer_id'"
                            ).fetchone()[0] == "text"


def test_a_row_dated_in_the_future_does_not_freeze_the_watermark(shop_db, warehouse_url):
    shop_exec(shop_db, "insert into orders (order_id, customer_id, status, updated_at) values (13, 1, 'paid', '2999-01-01')")
    # a run whose end lies beyond the future row (a backfill to a far date)
    first = shop.extract_table(shop_db, warehouse_url, "orders", t(1, year=3000))
    assert first.rows_extracted == 3
    with psycopg.connect(shop_db) as conn:
        shop_now = conn.execute("select now()").fetchone()[0]
    assert first.watermark_after <= shop_now, "never past the shop's clock"
    # a row written after the first run, dated now: the next run must take it
    shop_exec(shop_db, "insert into orders (order_id, customer_id, status, updated_at) values (14, 1, 'paid', now())")
    second = shop.extract_table(shop_db, warehouse_url, "orders", t(1, year=3000))
    assert "14" in {r["order_id"] for r in data(warehouse_url, "orders", "order_id")}
    assert second.watermark_after <= shop_now + timedelta(minutes=5)
    # nor past the run's end
    third = shop.extract_table(shop_db, warehouse_url, "refunds", t(2))
    assert third.watermark_after is None


def test_a_watermark_left_in_the_future_by_an_earlier_version_is_brought_back(shop_db, warehouse_url):
    shop.extract_table(shop_db, warehouse_url, "orders", t(2))
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("update raw.extract_watermarks set watermark = '2999-01-01' where source_table = 'public.orders'")
    shop_exec(shop_db, "insert into orders (order_id, customer_id, status, updated_at) values (15, 1, 'paid', now() - interval '1 hour')")
    shop.extract_table(shop_db, warehouse_url, "orders", t(1, year=3000))
    assert watermark(warehouse_url, "orders") < datetime(2999, 1, 1, tzinfo=UTC)
    shop.extract_table(shop_db, warehouse_url, "orders", t(1, year=3000))
    shop_exec(shop_db, "insert into orders (order_id, customer_id, status, updated_at) values (16, 1, 'paid', now())")
    shop.extract_table(shop_db, warehouse_url, "orders", t(1, year=3000))
    assert {"15", "16"} <= {r["order_id"] for r in data(warehouse_url, "orders", "order_id")}


def test_rows_without_updated_at_are_taken_once_and_counted(shop_url, warehouse_url):
    shop_exec(shop_url, """
        create table refunds (refund_id text primary key, order_id text, amount numeric, reason text,
                              refunded_at timestamptz, updated_at timestamptz);
        insert into refunds values ('r1', 'o1', 5, 'late', '2024-03-01', null), ('r2', 'o2', 7, 'size', '2024-03-01', '2024-03-01')""")
    first = shop.extract_table(shop_url, warehouse_url, "refunds", t(2))
    assert (first.rows_extracted, first.rows_without_updated_at) == (2, 1)
    assert {r["refund_id"]: r["updated_at"] for r in data(warehouse_url, "refunds", "refund_id")} == {
        "r1": None, "r2": t(1)}
    shop_exec(shop_url, "update refunds set amount = 6 where refund_id = 'r1'")
    second = shop.extract_table(shop_url, warehouse_url, "refunds", t(3))
    assert (second.rows_extracted, second.rows_without_updated_at) == (1, 1)  # r2 in the overlap; r1 cannot be followed
    # a row that gets an updated_at later is taken, and replaces the undated version
    shop_exec(shop_url, "update refunds set amount = 6, updated_at = '2024-03-02 12:00' where refund_id = 'r1'")
    shop.extract_table(shop_url, warehouse_url, "refunds", t(3))
    assert {r["refund_id"]: r["amount"] for r in data(warehouse_url, "refunds", "refund_id")} == {
        "r1": Decimal("6"), "r2": Decimal("7")}


def test_every_version_of_a_row_changed_in_place_is_kept(shop_url, warehouse_url):
    """A plan changed in place (50 -> 80 on 5 March): raw keeps the latest row, and the
    versions table both, so that MRR before the change stays 50."""
    shop_exec(shop_url, """
        create table subscriptions (subscription_id text primary key, customer_id text, plan text,
            status text, mrr numeric, currency text, started_at timestamptz, canceled_at timestamptz,
            updated_at timestamptz not null);
        insert into subscriptions values ('sub_1', 'cus_1', 'basic', 'active', 50, 'EUR', '2024-01-10', null, '2024-01-10')""")
    shop.extract_table(shop_url, warehouse_url, "subscriptions", t(1))
    shop.extract_table(shop_url, warehouse_url, "subscriptions", t(2))  # unchanged: no new version
    shop_exec(shop_url, "update subscriptions set plan = 'pro', mrr = 80, updated_at = '2024-03-05 10:00' where subscription_id = 'sub_1'")
    shop.extract_table(shop_url, warehouse_url, "subscriptions", t(6))
    with psycopg.connect(warehouse_url) as conn:
        versions = conn.execute(
            "select plan, mrr, updated_at from raw.shop_subscriptions_versions order by updated_at").fetchall()
        latest = conn.execute("select plan, mrr from raw.shop_subscriptions").fetchall()
    assert versions == [("basic", Decimal("50"), t(10, month=1)), ("pro", Decimal("80"), t(5, 10))]
    assert latest == [("pro", Decimal("80"))]


def test_a_warehouse_without_versions_gets_its_latest_rows_as_first_versions(shop_db, warehouse_url):
    shop.extract_table(shop_db, warehouse_url, "orders", t(2))
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("drop table raw.shop_orders_versions")  # as created before versions were kept
    shop.extract_table(shop_db, warehouse_url, "orders", t(2))
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select count(*) from raw.shop_orders_versions").fetchone()[0] == 2


def test_a_shop_that_accepts_and_never_answers_fails_the_extraction_within_its_timeout(
        warehouse_url, monkeypatch):
    """Nothing hangs: SHOP_DB_URL points at a socket that accepts connections and never
    says a word. The extraction fails after LW_CONNECT_TIMEOUT_SECONDS with an error naming
    the setting, and leaves no session, lock or transaction behind in the warehouse."""
    import socket
    import threading
    import time

    from lifecycle_warehouse import ingest_tasks
    from lifecycle_warehouse.ingest import SourceUnavailableError

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted = []
    stop = threading.Event()

    def accept_and_say_nothing():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except TimeoutError:
                continue

    listener = threading.Thread(target=accept_and_say_nothing, daemon=True)
    listener.start()
    monkeypatch.setenv("SHOP_DB_URL", f"postgresql://shop:secret-shop-password@127.0.0.1:{silent.getsockname()[1]}/shop")
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("LW_CONNECT_TIMEOUT_SECONDS", "2")
    try:
        started = time.monotonic()
        with pytest.raises(SourceUnavailableError, match="SHOP_DB_URL") as failed:
            ingest_tasks.extract_shop_table("orders", date(2026, 9, 2))
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        listener.join()
        for conn in accepted:
            conn.close()
        silent.close()
    assert accepted, "the extraction did reach the silent server"
    assert elapsed < 10, f"took {elapsed:.1f} s with a 2 s connect timeout"
    assert "secret-shop-password" not in str(failed.value)
    with psycopg.connect(warehouse_url) as conn:
        others = conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() "
            "and application_name = 'lifecycle_warehouse.ingest.shop'").fetchone()[0]
        locks = conn.execute("select count(*) from pg_locks where locktype = 'advisory'").fetchone()[0]
    assert (others, locks) == (0, 0)


def test_connections_get_timeouts_and_keepalives_unless_the_url_sets_them():
    from lifecycle_warehouse.connections import connection_defaults

    plain = connection_defaults("postgresql://u@host/db")
    assert plain["connect_timeout"] == 10 and plain["keepalives"] == 1
    assert plain["options"] == "-c statement_timeout=1800000"
    own = connection_defaults("postgresql://u@host/db?connect_timeout=3&options=-c%20statement_timeout%3D5s")
    assert "connect_timeout" not in own and "options" not in own
    other_options = connection_defaults("postgresql://u@host/db?options=-c%20search_path%3Dx")
    assert other_options["options"] == "-c search_path=x -c statement_timeout=1800000"


def test_an_older_warehouses_index_that_nothing_reads_is_dropped(warehouse_url):
    from lifecycle_warehouse import bootstrap

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        bootstrap.ensure_raw_schema(conn)
        assert bootstrap.raw_schema_complete(conn)
        # as created by a release whose dbt models looked e-mail events up by contact in raw,
        # and by one whose event_id lookup indexes were b-trees
        conn.execute("create index crm_email_events__contact_id on raw.crm_email_events (contact_id)")
        conn.execute("create index web_events__event_id on raw.web_events (event_id)")
        assert not bootstrap.raw_schema_complete(conn)
        bootstrap.ensure_raw_schema(conn)
        assert bootstrap.raw_schema_complete(conn)
        for retired in ("crm_email_events__contact_id", "web_events__event_id"):
            assert conn.execute("select to_regclass(%s)", (f"raw.{retired}",)).fetchone()[0] is None
        methods = dict(conn.execute(
            "select c.relname, am.amname from pg_class c join pg_am am on am.oid = c.relam"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'raw' and c.relname like '%event_id%'"
        ).fetchall())
        assert methods == {"web_events__event_id_hash": "hash", "crm_email_events__event_id_hash": "hash"}
