"""Publishing the marts into `analytics`: one transaction, invisible to BI readers.

The marts here are small hand-made tables whose content encodes a version number, so that
a reader can tell which publish it sees and whether what it sees is one whole version.
"""

from __future__ import annotations

import threading
import uuid
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from lifecycle_warehouse.access import ensure_bi_reader
from lifecycle_warehouse.publish import PublishRefused, publish
from lifecycle_warehouse.quality import audit
from lifecycle_warehouse.quality.suites import MART_RELATIONS

BI_PASSWORD = "test-only-password"


def expected_rows(relation: str, version: int) -> int:
    """Each version of each mart has its own row count."""
    if relation == "fct_orders":
        return 3000 + 100 * version
    if relation == "kpi_daily":
        return 10 + version
    return 3 + version


def make_marts(url: str, version: int, extra_column: str | None = None, drop_column: str | None = None) -> None:
    """Rebuild schema `marts` as dbt would (new tables), every row stamped with `version`."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("drop schema if exists marts cascade")
        conn.execute("create schema marts")
        for relation in MART_RELATIONS:
            columns = ["g as id", f"{version} as version", "md5(g::text) as label", "g * 1.5 as amount"]
            if extra_column:
                columns.append(f"g as {extra_column}")
            if drop_column:
                columns = [c for c in columns if not c.endswith(f" {drop_column}")]
            conn.execute(sql.SQL("create table {} as select {} from generate_series(1, %s) g").format(
                sql.Identifier("marts", relation), sql.SQL(", ".join(columns))), (expected_rows(relation, version),))


def content(url: str, schema: str, relation: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute(sql.SQL("select md5(string_agg(x::text, '|' order by x::text)) from {} x").format(
            sql.Identifier(schema, relation))).fetchone()[0]


def oid(url: str, relation: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("select %s::regclass::oid::bigint", (relation,)).fetchone()[0]


def as_role(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.split("@", 1)[1]
    return urlunsplit((parts.scheme, f"{role}:{password}@{host}", parts.path, parts.query, parts.fragment))


def test_publish_copies_every_mart_as_one_new_version(warehouse_url):
    make_marts(warehouse_url, 1)
    first = publish(warehouse_url, run_id="run-1", require_validated=False)
    assert first.version == 1
    assert first.relations == {r: expected_rows(r, 1) for r in MART_RELATIONS}
    for relation in MART_RELATIONS:
        assert content(warehouse_url, "analytics", relation) == content(warehouse_url, "marts", relation)
    table_oid = oid(warehouse_url, "analytics.fct_orders")

    make_marts(warehouse_url, 2)
    second = publish(warehouse_url, run_id="run-2", require_validated=False)
    assert second.version == 2
    for relation in MART_RELATIONS:
        assert content(warehouse_url, "analytics", relation) == content(warehouse_url, "marts", relation)
    # The analytics tables keep their identity (and so their grants) across publishes.
    assert oid(warehouse_url, "analytics.fct_orders") == table_oid
    with psycopg.connect(warehouse_url) as conn:
        log = conn.execute("select version, run_id, relations ->> 'kpi_daily' from analytics.publications "
                           "order by version").fetchall()
    assert log == [(1, "run-1", "11"), (2, "run-2", "12")]


def test_publish_only_what_the_last_marts_gate_passed(warehouse_url):
    make_marts(warehouse_url, 1)
    with pytest.raises(PublishRefused, match="no marts quality gate has run"):
        publish(warehouse_url)

    def gate_run(success: bool, relations: dict) -> None:
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            audit.record_gate_run(conn, {
                "gate_run_id": uuid.uuid4(), "run_id": "gate", "stage": "marts",
                "data_interval_end": "2026-09-03", "success": success, "expectations": 1,
                "errors": 0 if success else 1, "warnings": 0, "relations": relations, "docs_path": None,
                "started_at": "now", "finished_at": "now"}, [])

    with psycopg.connect(warehouse_url) as conn:
        seen = audit.relation_facts(conn, [f"marts.{r}" for r in MART_RELATIONS])
    gate_run(False, seen)
    with pytest.raises(PublishRefused, match="failed"):
        publish(warehouse_url)
    make_marts(warehouse_url, 2)  # rebuilt after the gate
    gate_run(True, seen)
    with pytest.raises(PublishRefused, match="marts.dim_customers is not the table the last marts gate validated"):
        publish(warehouse_url)
    def validated_now() -> None:
        with psycopg.connect(warehouse_url) as conn:
            gate_run(True, audit.relation_facts(conn, [f"marts.{r}" for r in MART_RELATIONS]))

    validated_now()
    # Changed in place after the gate (as an incremental model is): same table, other rows.
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("update marts.kpi_daily set amount = 0 where id = 1")
    with pytest.raises(PublishRefused, match="marts.kpi_daily is not the table the last marts gate validated"):
        publish(warehouse_url)
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select count(*) from analytics.publications").fetchone()[0] == 0
    validated_now()
    assert publish(warehouse_url).version == 1


def test_publish_follows_added_columns_and_refuses_removed_ones(warehouse_url):
    make_marts(warehouse_url, 1)
    publish(warehouse_url, require_validated=False)
    make_marts(warehouse_url, 2, extra_column="new_kpi")
    publish(warehouse_url, require_validated=False)
    assert content(warehouse_url, "analytics", "kpi_daily") == content(warehouse_url, "marts", "kpi_daily")
    before = {r: content(warehouse_url, "analytics", r) for r in MART_RELATIONS}

    make_marts(warehouse_url, 3, drop_column="label")
    with pytest.raises(PublishRefused, match=r"marts.dim_customers lacks column\(s\) label, new_kpi that BI reads"):
        publish(warehouse_url, require_validated=False)
    assert {r: content(warehouse_url, "analytics", r) for r in MART_RELATIONS} == before


def test_publish_replaces_only_the_keys_a_mart_lists_as_unpublished(warehouse_url):
    """A mart with a list of the keys it rewrote since the last publish
    (`<mart>__unpublished`, as fct_lifecycle_transitions keeps one) has only their rows
    replaced in `analytics`; the publish empties the list. A NULL key ("everything", a full
    build), or an analytics table that is not what the last publish left, means a whole
    copy. A publish into another schema neither reads nor empties the list. The analytics
    table gets an index on the key; a few keys are looked up through it, many joined."""
    mart, listed = "fct_lifecycle_transitions", "marts.fct_lifecycle_transitions__unpublished"

    def xmins() -> dict[int, str]:
        with psycopg.connect(warehouse_url) as conn:
            return dict(conn.execute(f"select id, xmin::text from analytics.{mart}").fetchall())

    def left_listed() -> list:
        with psycopg.connect(warehouse_url) as conn:
            return conn.execute(f"select id from {listed}").fetchall()

    def change(*statements: str) -> None:
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    make_marts(warehouse_url, 1)
    # 100 more rows, keyed 101 to 200: three listed keys are then "a few" (under 5 % of the rows)
    change(f"insert into marts.{mart} select g, 1, 'more', 1 from generate_series(101, 200) g",
           f"create table {listed} (id integer unique)", f"insert into {listed} values (null)")
    rows = expected_rows(mart, 1) + 100
    first = publish(warehouse_url, require_validated=False)
    assert first.replaced_keys == {} and left_listed() == []
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select indexdef from pg_indexes where schemaname = 'analytics' and tablename = %s",
                            (mart,)).fetchone()[0].endswith(f"ON analytics.{mart} USING btree (id)")
    before = xmins()

    # Key 2 rewritten, 3 deleted, 1000 new (the mart's 4 rows are keyed 1 to 4); 4 changed without being listed.
    change(f"update marts.{mart} set version = 9 where id in (2, 4)", f"delete from marts.{mart} where id = 3",
           f"insert into marts.{mart} values (1000, 9, 'new', 1)", f"insert into {listed} values (2), (3), (1000)")
    second = publish(warehouse_url, require_validated=False)
    assert second.replaced_keys == {mart: 3} and second.relations[mart] == rows
    assert left_listed() == []
    after = xmins()
    assert sorted(after) == [1, 2, 4, *range(101, 201), 1000]
    assert [k for k in after if k not in (2, 1000) and after[k] != before[k]] == [], "only the listed keys were rewritten"
    with psycopg.connect(warehouse_url) as conn:
        versions = dict(conn.execute(f"select id, version from analytics.{mart} where id < 101 or id > 200").fetchall())
    assert versions == {1: 1, 2: 9, 4: 1, 1000: 9}

    # Many keys (half the rows): joined, the same result.
    change(f"update marts.{mart} set version = 8 where id between 101 and 150",
           f"insert into {listed} select g from generate_series(101, 160) g")
    many = publish(warehouse_url, require_validated=False)
    assert many.replaced_keys == {mart: 60} and many.relations[mart] == rows
    with psycopg.connect(warehouse_url) as conn:
        published, built = (conn.execute(f"select id, version from {schema}.{mart} where id > 100 order by id").fetchall()
                            for schema in ("analytics", "marts"))
    assert published == built and sum(version == 8 for _, version in published) == 50

    # The analytics table lost a row by hand: the counts disagree, the table is copied whole.
    change(f"delete from analytics.{mart} where id = 1", f"insert into {listed} values (2)")
    third = publish(warehouse_url, require_validated=False)
    assert third.replaced_keys == {} and left_listed() == []
    assert content(warehouse_url, "analytics", mart) == content(warehouse_url, "marts", mart)

    change(f"insert into {listed} values (null), (8)")
    assert publish(warehouse_url, require_validated=False).replaced_keys == {}
    assert left_listed() == []

    change(f"insert into {listed} values (9)")
    publish(warehouse_url, to_schema="analytics_copy", require_validated=False)
    assert left_listed() == [(9,)]


def test_bi_reader_never_sees_a_half_published_state(warehouse_url):
    """Readers as bi_reader query in a loop while the marts are rebuilt and published again
    and again: no query fails, and every snapshot holds one whole version."""
    ensure_bi_reader(warehouse_url, BI_PASSWORD)
    make_marts(warehouse_url, 1)
    publish(warehouse_url, require_validated=False)
    reader_url = as_role(warehouse_url, "bi_reader", BI_PASSWORD)
    stop = threading.Event()
    errors: list[str] = []
    seen: list[int] = []

    def check(version, orders, orders_versions, days, days_versions) -> None:
        wanted = (expected_rows("fct_orders", version), [version], expected_rows("kpi_daily", version), [version])
        if (orders, orders_versions, days, days_versions) != wanted:
            errors.append(f"mixed snapshot: version {version} with fct_orders {orders} rows of versions "
                          f"{orders_versions}, kpi_daily {days} rows of versions {days_versions}")
        seen.append(version)

    def repeatable_read_reader() -> None:
        """A BI session reading several relations in one snapshot, slowly."""
        try:
            with psycopg.connect(reader_url) as conn:
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                while not stop.is_set():
                    with conn.transaction():
                        version = conn.execute("select max(version) from analytics.publications").fetchone()[0]
                        time.sleep(0.01)
                        orders = conn.execute("select count(*), array_agg(distinct version) "
                                              "from analytics.fct_orders").fetchone()
                        time.sleep(0.01)
                        days = conn.execute("select count(*), array_agg(distinct version) "
                                            "from analytics.kpi_daily").fetchone()
                    check(version, *orders, *days)
        except Exception as error:  # noqa: BLE001 - any error is a finding
            errors.append(f"repeatable read reader: {error!r}")

    def autocommit_reader() -> None:
        """A dashboard's single statements, each its own snapshot."""
        try:
            with psycopg.connect(reader_url, autocommit=True) as conn:
                while not stop.is_set():
                    row = conn.execute(
                        "select (select max(version) from analytics.publications),"
                        " (select count(*) from analytics.fct_orders),"
                        " (select array_agg(distinct version) from analytics.fct_orders),"
                        " (select count(*) from analytics.kpi_daily),"
                        " (select array_agg(distinct version) from analytics.kpi_daily)").fetchone()
                    check(*row)
        except Exception as error:  # noqa: BLE001
            errors.append(f"autocommit reader: {error!r}")

    readers = [threading.Thread(target=repeatable_read_reader), threading.Thread(target=autocommit_reader)]
    for reader in readers:
        reader.start()
    try:
        for version in range(2, 8):
            make_marts(warehouse_url, version)
            publish(warehouse_url, require_validated=False)
            time.sleep(0.05)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)
    assert not errors, errors[:5]
    assert len(set(seen)) >= 4, f"readers saw too few versions to prove anything: {sorted(set(seen))}"
    assert seen.count(7) > 0 and len(seen) > 50
