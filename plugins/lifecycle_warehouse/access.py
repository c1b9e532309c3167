"""BI access: the `bi_reader` role reads `analytics` and nothing else.

- `ensure_bi_reader` creates (or updates) the role with its password from the environment
  (`BI_READER_PASSWORD`), grants USAGE on `analytics` and SELECT on its tables (now and, by
  default privileges, every table the warehouse owner creates there later), and revokes
  PUBLIC's privileges on every other schema of the warehouse, so that no grant to PUBLIC can
  leak raw data, staging, quarantine or audit. The role cannot write: no INSERT/UPDATE/DELETE
  anywhere, no CREATE on any schema, no temporary tables, read-only transactions by default.
- The password is sent as a SCRAM-SHA-256 verifier computed on the client, never in clear.
  On the embedded server every role authenticates with scram-sha-256 (embedded.py writes
  its pg_hba.conf); what the role may read is enforced by privileges.
- Run it as a role that may create roles (the embedded server's superuser, docker-compose's
  init), naming the warehouse's `owner` role: tables that role creates in `analytics` later
  are readable by default.
"""

from __future__ import annotations

import logging
import os

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

BI_ROLE = "bi_reader"
BI_SCHEMA = "analytics"
ACCESS_LOCK = "lifecycle_warehouse.access"


def _scram_verifier(conn: psycopg.Connection, role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of a password (libpq's PQencryptPasswordConn)."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def _other_schemas(conn: psycopg.Connection, keep: str) -> list[str]:
    rows = conn.execute(
        """
        select nspname from pg_namespace
        where nspname <> %s and nspname not in ('pg_catalog', 'information_schema')
          and nspname not like 'pg\\_toast%%' and nspname not like 'pg\\_temp\\_%%'
        order by nspname
        """,
        (keep,),
    ).fetchall()
    return [r[0] for r in rows]


def ensure_bi_reader(warehouse_url: str, password: str | None = None, *, role: str = BI_ROLE,
                     schema: str = BI_SCHEMA, owner: str | None = None) -> None:
    """Create or update the read-only BI role; idempotent. `password` defaults to
    the environment's BI_READER_PASSWORD; `owner` is the role that creates the BI schema's
    tables (default: the connecting role)."""
    password = password if password is not None else os.environ.get("BI_READER_PASSWORD")
    if not password:
        raise ValueError("the BI role needs a password: set BI_READER_PASSWORD (it is never stored in the repo)")
    role_id, schema_id = sql.Identifier(role), sql.Identifier(schema)
    with psycopg.connect(warehouse_url, autocommit=True) as conn, conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (ACCESS_LOCK,))
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create role {}").format(role_id))
        conn.execute(sql.SQL(
            "alter role {} with login nosuperuser nocreatedb nocreaterole noreplication nobypassrls "
            "inherit password {}"
        ).format(role_id, sql.Literal(_scram_verifier(conn, role, password))))
        # Safety nets for BI sessions; privileges below are what actually forbid writing.
        conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(role_id))
        conn.execute(sql.SQL("alter role {} set search_path = {}").format(role_id, schema_id))

        database = sql.Identifier(conn.info.dbname)
        conn.execute(sql.SQL("grant connect on database {} to {}").format(database, role_id))
        # Temporary tables are writes too; the warehouse's owner keeps them (owners bypass this).
        conn.execute(sql.SQL("revoke temporary on database {} from public, {}").format(database, role_id))

        # Nothing outside the BI schema: not through PUBLIC, not through a stray grant.
        for other in _other_schemas(conn, schema):
            other_id = sql.Identifier(other)
            conn.execute(sql.SQL("revoke all on schema {} from public, {}").format(other_id, role_id))
            conn.execute(sql.SQL("revoke all on all tables in schema {} from public, {}").format(other_id, role_id))
            conn.execute(sql.SQL("revoke all on all sequences in schema {} from public, {}").format(
                other_id, role_id))

        if owner:
            conn.execute(sql.SQL("create schema if not exists {} authorization {}").format(
                schema_id, sql.Identifier(owner)))
        else:
            conn.execute(sql.SQL("create schema if not exists {}").format(schema_id))
        conn.execute(sql.SQL("revoke create on schema {} from public, {}").format(schema_id, role_id))
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(schema_id, role_id))
        conn.execute(sql.SQL("revoke all on all tables in schema {} from {}").format(schema_id, role_id))
        conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(schema_id, role_id))
        # Tables and views the warehouse owner creates in the BI schema later (publish) are
        # readable too.
        creator = sql.SQL(" for role {}").format(sql.Identifier(owner)) if owner else sql.SQL("")
        conn.execute(sql.SQL("alter default privileges{} in schema {} grant select on tables to {}").format(
            creator, schema_id, role_id))
    log.info("role %s can read schema %s and nothing else", role, schema)
