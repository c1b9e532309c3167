"""Least privilege, proven by the shared end-to-end run (issue 24, point 2): the DAGs and dbt
work as `warehouse_owner`, never as a superuser — everything they created in the
warehouse is owned by that role — the shop is only read, and Airflow keeps its metadata as
its own role."""

from __future__ import annotations

import psycopg
import pytest

from lifecycle_warehouse import embedded

pytestmark = pytest.mark.e2e

SYSTEM_SCHEMAS = "n.nspname !~ '^(pg_|information_schema)'"


def _owners(url: str) -> dict[str, set[str]]:
    """{owner role: {schema.relation, …}} of every relation outside the system schemas."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"select pg_get_userbyid(c.relowner), n.nspname || '.' || c.relname from pg_class c "
            f"join pg_namespace n on n.oid = c.relnamespace where {SYSTEM_SCHEMAS} and c.relkind in ('r', 'p', 'v', 'm')"
        ).fetchall()
    owners: dict[str, set[str]] = {}
    for owner, relation in rows:
        owners.setdefault(owner, set()).add(relation)
    return owners


def test_the_pipeline_ran_as_the_warehouse_owner(pipeline):
    instance, _ = pipeline
    owners = _owners(instance.url("warehouse"))
    assert set(owners) == {embedded.OWNER_ROLE}, {owner: sorted(r)[:5] for owner, r in owners.items()}
    relations = owners[embedded.OWNER_ROLE]
    # loaded by the ingestion DAGs, built by dbt, written by the CLV task, swapped in by the publish
    for relation in ("raw.web_events", "raw.shop_orders", "marts.dim_customers", "marts.customer_clv",
                     "analytics.kpi_daily", "analytics.publications"):
        assert relation in relations
    with psycopg.connect(instance.url("warehouse")) as conn:
        schema_owners = dict(conn.execute(
            f"select n.nspname, pg_get_userbyid(n.nspowner) from pg_namespace n where {SYSTEM_SCHEMAS} "
            "and n.nspname <> 'public'").fetchall())
        superusers = {r[0] for r in conn.execute("select rolname from pg_roles where rolsuper")}
    assert set(schema_owners.values()) == {embedded.OWNER_ROLE}, schema_owners
    assert embedded.OWNER_ROLE not in superusers


def test_airflow_metadata_belongs_to_its_own_role(pipeline):
    instance, _ = pipeline
    owners = _owners(instance.url("airflow"))
    assert set(owners) == {embedded.AIRFLOW_ROLE}
    assert "public.dag_run" in owners[embedded.AIRFLOW_ROLE]


def test_the_pipeline_reads_the_shop_and_never_writes_it(pipeline):
    """The shop is written by its own role (the simulator, as a shop application would) and
    read by shop_reader, which the pipeline's URL names and which cannot write."""
    instance, _ = pipeline
    urls = instance.lw("urls").stdout
    assert f"SHOP_DB_URL=postgresql://{embedded.SHOP_READER_ROLE}@" in urls
    assert f"WAREHOUSE_URL=postgresql://{embedded.OWNER_ROLE}@" in urls
    owners = _owners(instance.url("shop"))
    assert set(owners) == {embedded.SHOP_OWNER_ROLE}
    with psycopg.connect(instance.url("shop", embedded.SHOP_READER_ROLE)) as conn:
        assert conn.execute("select count(*) > 0 from public.orders").fetchone() == (True,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("delete from public.orders")
