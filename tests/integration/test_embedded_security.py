"""No trust, anywhere, and least privilege on the embedded server (issue 24, points 1 and 2).

Each test starts an embedded PostgreSQL of its own (a real server from the pgserver wheel).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from lifecycle_warehouse import embedded

from tests.sandbox import project_env


@pytest.fixture
def root():
    folder = Path(tempfile.mkdtemp(prefix="lw-sec-", dir="/tmp"))
    os.chmod(folder, 0o755)
    yield folder
    embedded.stop(folder / "pgdata")
    shutil.rmtree(folder, ignore_errors=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _without_passfile(url: str, password: str | None) -> str:
    """The same URL with an explicit password (or none) and no password file."""
    url = url.split("&passfile=", 1)[0]
    user, rest = url.removeprefix("postgresql://").split("@", 1)
    secret = f":{password}" if password is not None else ""
    return f"postgresql://{user}{secret}@{rest}&passfile=/nonexistent"


def test_no_trust_rule_and_secrets_kept_private(root):
    pgdata = root / "pgdata"
    admin_url = embedded.start(pgdata)

    assert (pgdata / "pg_hba.conf").read_text() == embedded.HBA_CONF
    with psycopg.connect(admin_url) as conn:
        rules = conn.execute("select type, auth_method, error from pg_hba_file_rules").fetchall()
        encryption = conn.execute("show password_encryption").fetchone()[0]
    assert rules and all(method == "scram-sha-256" and error is None for _, method, error in rules), rules
    assert encryption == "scram-sha-256"

    passfile = embedded.passfile(pgdata)
    assert passfile.parent == root / "secrets"
    assert _mode(passfile) == 0o600 and _mode(passfile.parent) == 0o700
    assert _mode(pgdata) == 0o700  # the socket's folder: nobody else may reach the socket
    assert (pgdata / ".s.PGSQL.5432").is_socket()
    assert "password" not in admin_url and embedded.password(pgdata, "postgres") not in admin_url


def test_the_superuser_needs_its_password(root):
    pgdata = root / "pgdata"
    admin_url = embedded.start(pgdata)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_without_passfile(admin_url, "wrong-password"))
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(_without_passfile(admin_url, None))
    right = embedded.password(pgdata, "postgres")
    with psycopg.connect(_without_passfile(admin_url, right)) as conn:
        assert conn.execute("select current_user").fetchone() == ("postgres",)
    # over TCP on loopback too, if someone starts the server with a port
    with psycopg.connect(admin_url) as conn:
        hosts = {row[0] for row in conn.execute("select type from pg_hba_file_rules")}
    assert hosts == {"local", "host"}


def test_a_data_folder_too_long_for_the_socket_is_refused(root):
    deep = root / ("d" * 60) / ("e" * 40) / "pgdata"
    deep.parent.mkdir(parents=True)
    with pytest.raises(embedded.EmbeddedServerError, match="too long a path for its unix socket.*LW_PGDATA"):
        embedded.start(deep)
    assert not (deep / "PG_VERSION").exists()


def test_a_trusting_server_of_an_older_version_is_converted(root):
    """A data folder initialised by pgserver itself (trust for all, objects owned by the
    superuser) is locked down by the next start, and its objects change hands."""
    import pgserver

    pgdata = root / "pgdata"
    legacy = pgserver.get_server(pgdata, cleanup_mode=None).get_uri("postgres")
    with psycopg.connect(legacy, autocommit=True) as conn:
        conn.execute("create database warehouse")
    with psycopg.connect(legacy.replace("/postgres?", "/warehouse?"), autocommit=True) as conn:
        conn.execute("create schema raw")
        conn.execute("create table raw.old_rows (id bigint generated always as identity, x text)")
        conn.execute("create view raw.old_view as select x from raw.old_rows")
    embedded.stop(pgdata)

    embedded.start(pgdata)
    assert (pgdata / "pg_hba.conf").read_text() == embedded.HBA_CONF
    with psycopg.connect(embedded.url(pgdata)) as conn:
        methods = {r[0] for r in conn.execute("select auth_method from pg_hba_file_rules")}
    assert methods == {"scram-sha-256"}  # what the server applies: nothing trusts
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_without_passfile(embedded.url(pgdata), "anything"))
    with psycopg.connect(embedded.url(pgdata, "warehouse", embedded.OWNER_ROLE), autocommit=True) as conn:
        owners = conn.execute(
            "select c.relname, pg_get_userbyid(c.relowner) from pg_class c "
            "where c.relnamespace = 'raw'::regnamespace order by 1").fetchall()
        conn.execute("insert into raw.old_rows (x) values ('the owner role may write')")
        schema_owner = conn.execute("select pg_get_userbyid(nspowner) from pg_namespace where nspname = 'raw'").fetchone()
    assert {owner for _, owner in owners} == {embedded.OWNER_ROLE}, owners
    assert schema_owner == (embedded.OWNER_ROLE,)


def test_roles_have_least_privilege(root):
    pgdata = root / "pgdata"
    admin_url = embedded.start(pgdata)
    with psycopg.connect(admin_url) as conn:
        attributes = dict((r[0], r[1:]) for r in conn.execute(
            "select rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls from pg_roles "
            "where rolname = any(%s)", (list(embedded.ROLES),)))
        databases = dict(conn.execute(
            "select datname, pg_get_userbyid(datdba) from pg_database where datname = any(%s)",
            (list(embedded.DATABASES),)))
    assert set(attributes) == set(embedded.ROLES)
    assert all(values == (False, False, False, False) for values in attributes.values()), attributes
    assert databases == embedded.DATABASES

    with psycopg.connect(embedded.url(pgdata, "shop", embedded.SHOP_OWNER_ROLE), autocommit=True) as conn:
        conn.execute("create table public.orders (order_id text primary key, total numeric)")
        conn.execute("insert into public.orders values ('o-1', 10)")
    reader = embedded.url(pgdata, "shop", embedded.SHOP_READER_ROLE)
    with psycopg.connect(reader, autocommit=True) as conn:
        assert conn.execute("select count(*) from public.orders").fetchone() == (1,)  # a table created later
        assert conn.execute("show default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute("insert into public.orders values ('o-2', 1)")
        conn.execute("set default_transaction_read_only = off")  # a session may lift its default …
        with pytest.raises(errors.InsufficientPrivilege):  # … but the role still may not write
            conn.execute("insert into public.orders values ('o-2', 1)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("create table public.mine (x int)")
    with pytest.raises(psycopg.OperationalError, match="permission denied|not permitted"):
        psycopg.connect(embedded.url(pgdata, "warehouse", embedded.SHOP_READER_ROLE))

    with psycopg.connect(embedded.url(pgdata, "warehouse", embedded.OWNER_ROLE), autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("create role intruder")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("alter system set log_statement = 'all'")


def test_urls_mask_passwords_unless_asked(root):
    env = project_env(root)
    lw = [sys.executable, "-m", "lifecycle_warehouse.cli"]
    embedded.start(root / "pgdata")
    shown = subprocess.run([*lw, "urls"], env=env, capture_output=True, text=True, check=True).stdout
    passwords = [embedded.password(root / "pgdata", role) for role in (*embedded.ROLES, "postgres")]
    assert "WAREHOUSE_URL=postgresql://warehouse_owner@" in shown and "SHOP_DB_URL=postgresql://shop_reader@" in shown
    assert not any(secret in shown for secret in passwords)

    revealed = subprocess.run([*lw, "urls", "--show-secrets"], env=env, capture_output=True, text=True,
                              check=True).stdout
    owner_password = embedded.password(root / "pgdata", embedded.OWNER_ROLE)
    assert f"warehouse_owner:{owner_password}@" in revealed
    url = revealed.split("WAREHOUSE_URL=", 1)[1].split()[0]
    with psycopg.connect(url) as conn:  # the revealed URL works on its own (no password file)
        assert conn.execute("select current_user").fetchone() == (embedded.OWNER_ROLE,)

    env["WAREHOUSE_URL"] = "postgresql://someone:s3cret-pw@db.example.com:5432/warehouse"
    env["SHOP_DB_URL"] = "postgresql://reader:other-s3cret@shop.example.com/shop"
    shown = subprocess.run([*lw, "urls"], env=env, capture_output=True, text=True, check=True).stdout
    assert "s3cret" not in shown and "someone:***@db.example.com" in shown
