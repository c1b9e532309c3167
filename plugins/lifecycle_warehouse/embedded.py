"""The embedded PostgreSQL 16 server (pgserver wheel): started by the project in a data
folder under the repo, listening on a unix socket in that folder only (no TCP), so it
needs neither root, Docker nor a password.

pgserver's own clean-up stops the server when the last Python process holding a handle
exits; we start it with `cleanup_mode=None` so that it outlives the command, and stop it
explicitly (`make stop`).
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

# pgserver keeps a lock file under XDG_RUNTIME_DIR, falling back to /tmp/runtime-<uid>
# when it is unset (as in CI and cron): harmless, so not worth a warning on every command.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

# Databases the project uses on the embedded server.
DATABASES = ("warehouse", "shop", "airflow")


def _postmaster(pgdata: Path):
    from pgserver.utils import PostmasterInfo

    if not (pgdata / "postmaster.pid").exists():
        return None
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return None
    return info


def url(pgdata: Path, database: str = "postgres") -> str | None:
    """URL of a database on the running embedded server, or None when it is not running."""
    info = _postmaster(Path(pgdata))
    return info.get_uri(database=database) if info else None


def is_embedded(database_url: str, pgdata: Path) -> bool:
    """Whether a libpq URL points at the embedded server of `pgdata` (its socket folder)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        host = conninfo_to_dict(database_url).get("host")
    except psycopg.ProgrammingError:
        return False
    if not host:
        return False
    own = {str(Path(pgdata).resolve())}
    running = url(Path(pgdata))
    if running:
        own.add(conninfo_to_dict(running).get("host") or "")
    return str(Path(host).resolve()) in own if host.startswith("/") else False


def start(pgdata: Path) -> str:
    """Start the server if needed (initdb on first use) and create the project's databases.
    Returns the URL of the `postgres` maintenance database."""
    import pgserver

    pgdata = Path(pgdata)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    admin_url = server.get_uri("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("select datname from pg_database")}
        for database in DATABASES:
            if database not in existing:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    return admin_url


def stop(pgdata: Path) -> bool:
    """Stop the server (fast shutdown). Returns False when it was not running."""
    from pgserver._commands import pg_ctl
    from pgserver.postgres_server import PostgresServer

    pgdata = Path(pgdata)
    if _postmaster(pgdata) is None:
        return False
    user = "pgserver" if _running_as_root() else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    handle = PostgresServer._instances.get(pgdata.resolve())
    if handle is not None:
        # Release this process's handle (started with cleanup_mode=None: release only);
        # pgserver's exit hook would otherwise look for the handle dropped below and
        # print a KeyError traceback at exit.
        handle.cleanup()
    PostgresServer._instances.pop(pgdata.resolve(), None)
    return True


def _running_as_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


def psql_command(database_url: str) -> list[str]:
    """psql from the pgserver wheel (same major version as the server), else from PATH."""
    from pgserver._commands import POSTGRES_BIN_PATH

    psql = Path(POSTGRES_BIN_PATH) / "psql"
    return [str(psql) if psql.exists() else "psql", database_url]


def run_psql(database_url: str) -> int:
    return subprocess.call(psql_command(database_url))
