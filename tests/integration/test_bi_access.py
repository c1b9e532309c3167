"""The `bi_reader` role: reads `analytics`, nothing else, and cannot write.

The embedded test server makes every role authenticate (scram-sha-256); the last test
proves that bi_reader's password is required there, the others prove privileges.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors

from lifecycle_warehouse import bootstrap, embedded
from lifecycle_warehouse.access import ensure_bi_reader
from lifecycle_warehouse.publish import publish
from lifecycle_warehouse.quality import audit

PASSWORD = "test-only-password"


def as_role(url: str, role: str, password: str | None) -> str:
    parts = urlsplit(url)
    host = parts.netloc.split("@", 1)[1]
    user = f"{role}:{password}" if password is not None else role
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, parts.fragment))


@pytest.fixture
def warehouse(warehouse_url):
    """A warehouse with personal data in raw, staging, marts, quarantine and audit, a
    published analytics layer, and a careless grant to PUBLIC on raw."""
    bootstrap.bootstrap(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(
            "insert into raw.crm_contacts (contact_id, email, created_at, updated_at, _batch_id, _dt, _file,"
            " _line_number, _loaded_at) values ('c1', 'jane@example.com', now(), now(), gen_random_uuid(),"
            " current_date, 'crm/contacts/x.csv', 2, now())")
        conn.execute("insert into raw.quarantine (batch_id, source, entity, file, rule, raw_record) values"
                     " (gen_random_uuid(), 'crm', 'contacts', 'x.csv', 'created_at: not a timestamp',"
                     " 'c2,john@example.com,…')")
        conn.execute("create schema staging")
        conn.execute("create view staging.stg_crm__contacts as select contact_id, email from raw.crm_contacts")
        conn.execute("create schema marts")
        conn.execute("create table marts.dim_customers as select 'p1'::text as customer_key, "
                     "encode(sha256('jane@example.com'), 'hex') as email_sha256")
        conn.execute("create table public.scratch (note text)")
        conn.execute("grant select on raw.crm_contacts to public")  # must not survive
        audit.ensure_schemas(conn)
    publish(warehouse_url, relations=("dim_customers",), require_validated=False)
    ensure_bi_reader(warehouse_url, PASSWORD)
    return warehouse_url


def test_bi_reader_reads_analytics(warehouse):
    with psycopg.connect(as_role(warehouse, "bi_reader", PASSWORD)) as conn:
        assert conn.execute("select customer_key from dim_customers").fetchall() == [("p1",)]  # search_path
        assert conn.execute("select max(version) from analytics.publications").fetchone() == (1,)
        assert conn.execute("select count(*) from analytics.data_quality_suites").fetchone() == (0,)


@pytest.mark.parametrize("relation", [
    "raw.crm_contacts", "raw.quarantine", "raw.load_audit", "staging.stg_crm__contacts",
    "marts.dim_customers", "audit.validation_results", "audit.gate_runs", "public.scratch",
])
def test_bi_reader_cannot_read_outside_analytics(warehouse, relation):
    with psycopg.connect(as_role(warehouse, "bi_reader", PASSWORD)) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"select * from {relation}")


@pytest.mark.parametrize("statement", [
    "insert into analytics.dim_customers values ('p2', null)",
    "update analytics.dim_customers set customer_key = 'x'",
    "delete from analytics.dim_customers",
    "truncate analytics.dim_customers",
    "insert into analytics.publications values (99, 'fake', now(), '{}')",
    "create table analytics.mine (x int)",
    "create table public.mine (x int)",
    "create temporary table mine (x int)",
    "create schema mine",
    "drop table analytics.dim_customers",
    "alter table analytics.dim_customers add column x int",
])
def test_bi_reader_cannot_write(warehouse, statement):
    """Forbidden by privileges, not merely by the read-only default of its sessions."""
    with psycopg.connect(as_role(warehouse, "bi_reader", PASSWORD), autocommit=True) as conn:
        conn.execute("set default_transaction_read_only = off")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)


def test_bi_reader_reads_tables_published_later_and_keeps_access_across_publishes(warehouse):
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute("create table marts.kpi_daily as select current_date as date, 1 as orders")
    publish(warehouse, relations=("dim_customers", "kpi_daily"), require_validated=False)
    publish(warehouse, relations=("dim_customers", "kpi_daily"), require_validated=False)
    with psycopg.connect(as_role(warehouse, "bi_reader", PASSWORD)) as conn:
        assert conn.execute("select orders from analytics.kpi_daily").fetchone() == (1,)
        assert conn.execute("select count(*) from analytics.dim_customers").fetchone() == (1,)


def test_role_and_password_come_from_the_environment(warehouse, monkeypatch):
    def verifier() -> str:
        with psycopg.connect(warehouse) as conn:
            return conn.execute("select rolpassword from pg_authid where rolname = 'bi_reader'").fetchone()[0]

    first = verifier()
    assert first.startswith("SCRAM-SHA-256$")  # a verifier computed client-side, never the password
    monkeypatch.setenv("BI_READER_PASSWORD", "rotated-password")
    ensure_bi_reader(warehouse)
    assert verifier() not in (first, "rotated-password")
    with psycopg.connect(warehouse) as conn:
        attributes = conn.execute(
            "select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin "
            "from pg_roles where rolname = 'bi_reader'").fetchone()
    assert attributes == (False, False, False, False, False, True)
    monkeypatch.setenv("BI_READER_PASSWORD", "")
    with pytest.raises(ValueError, match="BI_READER_PASSWORD"):
        ensure_bi_reader(warehouse)


def test_embedded_server_makes_bi_reader_use_its_password():
    """The embedded server trusts no one: bi_reader gets in with its password only."""
    root = Path(tempfile.mkdtemp(prefix="lw-hba-", dir="/tmp"))
    os.chmod(root, 0o755)
    pgdata = root / "pgdata"
    try:
        embedded.start(pgdata)
        url = embedded.url(pgdata, "warehouse")
        ensure_bi_reader(url, PASSWORD, owner=embedded.OWNER_ROLE)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(as_role(url, "bi_reader", "wrong"))
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(as_role(url, "bi_reader", None))
        with psycopg.connect(as_role(url, "bi_reader", PASSWORD)) as conn:
            assert conn.execute("select current_user").fetchone() == ("bi_reader",)
        # what the owner role publishes later is readable by default
        with psycopg.connect(embedded.url(pgdata, "warehouse", embedded.OWNER_ROLE), autocommit=True) as conn:
            conn.execute("create table analytics.published_later (x int)")
        with psycopg.connect(as_role(url, "bi_reader", PASSWORD)) as conn:
            assert conn.execute("select count(*) from analytics.published_later").fetchone() == (0,)
    finally:
        embedded.stop(pgdata)
        shutil.rmtree(root, ignore_errors=True)
