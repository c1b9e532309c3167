"""The embedded PostgreSQL 16 server (pgserver wheel): started by the project in a data
folder under the repo, listening on a unix socket in that folder only (no TCP), so it
needs neither root nor Docker.

No trust, anywhere: pgserver initialises its servers with `trust` for every connection
(any password, or none, is accepted). The project initialises the data folder itself
with scram-sha-256, writes its own pg_hba.conf (atomically, before every start: password
authentication for every role, the superuser included) and keeps the generated passwords
in a libpq password file of mode 0600 beside the data folder
(`<parent>/secrets/<name>.pgpass`), which every URL names (`passfile=`): `lw`, Airflow and
dbt authenticate without a password ever appearing in a URL, a log or a process list.
A server initialised by an older version (trust) is converted on its next start.

Least privilege: the superuser only administers (databases, roles). Each database has its
own owner role (ROLES): the DAGs and dbt work as `warehouse_owner`, the shop is read as
`shop_reader` (SELECT only, read-only sessions), Airflow keeps its metadata as `airflow`.

pgserver's own clean-up stops the server when the last Python process holding a handle
exits; we start it with `cleanup_mode=None` so that it outlives the command, and stop it
explicitly (`make stop`).
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

# pgserver keeps a lock file under XDG_RUNTIME_DIR, falling back to /tmp/runtime-<uid>
# when it is unset (as in CI and cron): harmless, so not worth a warning on every command.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

SUPERUSER = "postgres"
OWNER_ROLE = "warehouse_owner"
SHOP_READER_ROLE = "shop_reader"
SHOP_OWNER_ROLE = "shop_owner"
AIRFLOW_ROLE = "airflow"
# Databases the project uses on the embedded server, each with the role that owns it.
DATABASES = {"warehouse": OWNER_ROLE, "shop": SHOP_OWNER_ROLE, "airflow": AIRFLOW_ROLE}
# Login roles the project creates, with their password in the password file.
ROLES = (OWNER_ROLE, SHOP_OWNER_ROLE, SHOP_READER_ROLE, AIRFLOW_ROLE)

# Server settings the project keeps (ALTER SYSTEM, at every start). Read-ahead for bitmap
# heap scans: PostgreSQL's default (1) is meant for one spinning disk; on an SSD, a month of
# a year's web events is read from disk in ~2.5 s instead of ~10 s. A platform without
# posix_fadvise (macOS) refuses any value but 0: the default is kept there.
SERVER_SETTINGS = {"effective_io_concurrency": "200"}

HBA_CONF = """\
# Written by Lifecycle Warehouse (plugins/lifecycle_warehouse/embedded.py) before every
# start: every role, the superuser included, authenticates with scram-sha-256. There is no
# `trust` line. Passwords: the libpq password file named by the project's URLs (passfile=).
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  scram-sha-256
host    all       all   127.0.0.1/32   scram-sha-256
host    all       all   ::1/128        scram-sha-256
"""


class EmbeddedServerError(RuntimeError):
    pass


# --- the password file ------------------------------------------------------------------


def passfile(pgdata: Path) -> Path:
    """The libpq password file of the server in `pgdata` (mode 0600, in a 0700 folder)."""
    pgdata = Path(pgdata).resolve()
    return pgdata.parent / "secrets" / f"{pgdata.name}.pgpass"


def _read_passwords(pgdata: Path) -> dict[str, str]:
    path = passfile(pgdata)
    if not path.exists():
        return {}
    passwords = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            *_, role, password = line.split(":", 4)
            passwords[role] = password
    return passwords


def password(pgdata: Path, role: str) -> str | None:
    """The password of a project role on the embedded server (for `lw urls --show-secrets`)."""
    return _read_passwords(pgdata).get(role)


def _ensure_passwords(pgdata: Path, roles: tuple[str, ...]) -> dict[str, str]:
    """The password file with a password for each role (generated when missing), written
    atomically with mode 0600 in a folder of mode 0700."""
    path = passfile(pgdata)
    passwords = _read_passwords(pgdata)
    missing = [role for role in roles if role not in passwords]
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    if missing or not path.exists():
        # token_urlsafe: letters, digits, '-' and '_' (no ':' or '\', which the file format escapes)
        passwords.update({role: secrets.token_urlsafe(24) for role in missing})
        lines = ["# libpq password file of the embedded server: written by `make up`, never print it"]
        lines += [f"*:*:*:{role}:{value}" for role, value in passwords.items()]
        _write_atomically(path, "\n".join(lines) + "\n", mode=0o600)
    os.chmod(path, 0o600)
    return passwords


def _write_atomically(path: Path, text: str, *, mode: int, owner: tuple[int, int] | None = None) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- the server ---------------------------------------------------------------------------


def _postmaster(pgdata: Path):
    from pgserver.utils import PostmasterInfo

    if not (pgdata / "postmaster.pid").exists():
        return None
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return None
    return info


def url(pgdata: Path, database: str = "postgres", role: str = SUPERUSER) -> str | None:
    """URL of a database on the running embedded server as `role` (default the superuser),
    its password in the password file; None when the server is not running."""
    pgdata = Path(pgdata).resolve()
    info = _postmaster(pgdata)
    if info is None:
        return None
    host = quote(str(info.socket_dir), safe="/")
    return f"postgresql://{role}@/{database}?host={host}&passfile={quote(str(passfile(pgdata)), safe='/')}"


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


# A unix socket's path holds at most 107 bytes on Linux (sun_path, with its final NUL).
MAX_SOCKET_PATH_BYTES = 107


def _check_socket_path(pgdata: Path) -> None:
    """The socket lives in the data folder (mode 0700). pgserver would move a socket whose
    path is too long into a world-writable runtime folder: refuse instead."""
    socket = pgdata / ".s.PGSQL.5432"
    if len(os.fsencode(str(socket))) > MAX_SOCKET_PATH_BYTES:
        raise EmbeddedServerError(
            f"the embedded server's data folder {pgdata} is too long a path for its unix socket "
            f"({len(os.fsencode(str(socket)))} > {MAX_SOCKET_PATH_BYTES} bytes with the socket's name); "
            "the project keeps the socket in the data folder (never in a shared runtime folder): "
            "set LW_PGDATA to a shorter path"
        )


def _check_socket_dir(info, pgdata: Path) -> None:
    socket_dir = Path(str(info.socket_dir)).resolve()
    if socket_dir != pgdata:
        raise EmbeddedServerError(
            f"the embedded server of {pgdata} listens on a socket in {socket_dir}, outside its data "
            "folder (a folder others may reach): stop it with `make stop` and start it with `make up`"
        )
    mode = stat.S_IMODE(pgdata.stat().st_mode)
    if mode & 0o077:
        raise EmbeddedServerError(f"the socket folder {pgdata} is open to other users (mode {mode:o}): chmod 700 it")


def _server_user() -> str | None:
    """As root, pgserver runs postgres as the OS user `pgserver` (postgres refuses root)."""
    return "pgserver" if _running_as_root() else None


def _initdb(pgdata: Path, superuser_password: str) -> None:
    """A new data folder: scram-sha-256 from the first moment (pgserver's initdb trusts all).
    Its databases compare text in byte order (collation C; character classes stay the
    locale's): ids are text, and C sorts them and builds their indexes about twice as fast
    as a libc locale, C.UTF-8 included (PostgreSQL 16 calls strcoll for it)."""
    from pgserver._commands import POSTGRES_BIN_PATH, initdb

    pgdata.mkdir(exist_ok=True)
    user = _server_user()
    owner = None
    if user is not None:
        import pwd

        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(user)
        ensure_prefix_permissions(pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(user)
        owner = (entry.pw_uid, entry.pw_gid)
        os.chown(pgdata, *owner)
    with tempfile.TemporaryDirectory(prefix="lw-initdb-") as folder:
        pwfile = Path(folder) / "password"
        pwfile.write_text(superuser_password + "\n")
        os.chmod(pwfile, 0o600)
        if owner is not None:
            os.chown(folder, *owner)
            os.chown(pwfile, *owner)
        initdb(["--auth=scram-sha-256", "--encoding=utf8", "--lc-collate=C", "-U", SUPERUSER, f"--pwfile={pwfile}"],
               pgdata=pgdata, user=user)


def _trusts(pgdata: Path) -> bool:
    """Whether pg_hba.conf has a `trust` rule (a server initialised by pgserver itself)."""
    hba = pgdata / "pg_hba.conf"
    if not hba.exists():
        return False
    rules = [line.split("#", 1)[0].split() for line in hba.read_text().splitlines()]
    return any("trust" in rule for rule in rules)


def _write_hba(pgdata: Path) -> bool:
    """The project's pg_hba.conf, written atomically; True when the file changed."""
    hba = pgdata / "pg_hba.conf"
    if hba.exists() and hba.read_text() == HBA_CONF:
        return False
    info = pgdata.stat()
    _write_atomically(hba, HBA_CONF, mode=0o600, owner=(info.st_uid, info.st_gid))
    return True


def _reload(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("select pg_reload_conf()")
        errors = conn.execute("select line_number, error from pg_hba_file_rules where error is not null").fetchall()
    if errors:
        raise EmbeddedServerError(f"pg_hba.conf has errors: {errors}")


def _admin_connect(pgdata: Path, admin_url: str, database: str = "postgres") -> psycopg.Connection:
    try:
        return psycopg.connect(admin_url.replace("/postgres?", f"/{database}?", 1), autocommit=True)
    except psycopg.OperationalError as error:
        raise EmbeddedServerError(
            f"cannot log in to the embedded server in {pgdata} as {SUPERUSER} with the password in "
            f"{passfile(pgdata)}: {str(error).strip()}. That file is written by the first `make up`; "
            "if it was lost, the server cannot be administered (`make clean` removes it and its data)."
        ) from None


def start(pgdata: Path) -> str:
    """Start the server if needed (initdb with scram-sha-256 on first use), make sure that
    no rule trusts anyone, and create the project's roles and databases. Returns the URL of
    the `postgres` maintenance database as the superuser."""
    import pgserver

    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _check_socket_path(pgdata)
    passwords = _ensure_passwords(pgdata, (SUPERUSER, *ROLES))
    info = _postmaster(pgdata)
    if info is None and not (pgdata / "PG_VERSION").exists():
        _initdb(pgdata, passwords[SUPERUSER])
    legacy = _trusts(pgdata)  # started with trust: set the superuser's password before the switch
    if info is None:
        if not legacy:
            _write_hba(pgdata)
        os.chmod(pgdata, 0o700)
        pgserver.get_server(pgdata, cleanup_mode=None)
        info = _postmaster(pgdata)
    _check_socket_dir(info, pgdata)
    admin_url = url(pgdata, "postgres")
    with _admin_connect(pgdata, admin_url) as conn:
        _set_password(conn, SUPERUSER, passwords[SUPERUSER])
        _ensure_roles_and_databases(conn, passwords)
        settings_changed = _apply_settings(conn)
    if _write_hba(pgdata) or legacy or settings_changed:
        _reload(admin_url)
    for database, owner in DATABASES.items():
        with _admin_connect(pgdata, admin_url, database) as conn:
            _transfer_ownership(conn, owner)
            if database == "shop":
                _grant_shop_reader(conn)
    return admin_url


def _apply_settings(conn: psycopg.Connection) -> bool:
    """SERVER_SETTINGS in postgresql.auto.conf; whether one changed (a reload applies it)."""
    changed = False
    for name, value in SERVER_SETTINGS.items():
        if conn.execute("select setting from pg_settings where name = %s", (name,)).fetchone()[0] == value:
            continue
        try:
            conn.execute(sql.SQL("alter system set {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        except psycopg.errors.InvalidParameterValue as error:
            warnings.warn(f"embedded server: keeping the default {name}: {str(error).strip()}", stacklevel=2)
            continue
        changed = True
    return changed


def _set_password(conn: psycopg.Connection, role: str, password: str) -> None:
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    conn.execute(sql.SQL("alter role {} password {}").format(sql.Identifier(role), sql.Literal(verifier)))


def _ensure_roles_and_databases(conn: psycopg.Connection, passwords: dict[str, str]) -> None:
    existing_roles = {r[0] for r in conn.execute("select rolname from pg_roles")}
    for role in ROLES:
        role_id = sql.Identifier(role)
        if role not in existing_roles:
            conn.execute(sql.SQL("create role {}").format(role_id))
        conn.execute(sql.SQL(
            "alter role {} with login nosuperuser nocreatedb nocreaterole noreplication nobypassrls inherit"
        ).format(role_id))
        _set_password(conn, role, passwords[role])
    # A bug in the pipeline can never write to the shop: reads only, in read-only sessions.
    conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(
        sql.Identifier(SHOP_READER_ROLE)))
    owners = dict(conn.execute(
        "select datname, pg_get_userbyid(datdba) from pg_database where datname = any(%s)", (list(DATABASES),)))
    for database, owner in DATABASES.items():
        database_id, owner_id = sql.Identifier(database), sql.Identifier(owner)
        if database not in owners:
            conn.execute(sql.SQL("create database {} owner {}").format(database_id, owner_id))
        elif owners[database] != owner:
            conn.execute(sql.SQL("alter database {} owner to {}").format(database_id, owner_id))
        # Only the roles named here connect (PUBLIC may connect to any database by default).
        conn.execute(sql.SQL("revoke connect, temporary on database {} from public").format(database_id))
    conn.execute(sql.SQL("grant connect on database shop to {}").format(sql.Identifier(SHOP_READER_ROLE)))


def recreate_database(pgdata: Path, database: str) -> None:
    """Drop and create one of the project's databases (`lw reset`), owned by its role."""
    admin_url = start(pgdata)
    with _admin_connect(Path(pgdata).resolve(), admin_url) as conn:
        database_id = sql.Identifier(database)
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(database_id))
        conn.execute(sql.SQL("create database {} owner {}").format(database_id, sql.Identifier(DATABASES[database])))
        conn.execute(sql.SQL("revoke connect, temporary on database {} from public").format(database_id))
    if database == "shop":
        with _admin_connect(Path(pgdata).resolve(), admin_url, database) as conn:
            _grant_shop_reader(conn)


# Objects of a database that an older version created as the superuser, by kind: the query
# lists them, the statement gives them to the database's owner role.
_OWNED_BY_SUPERUSER = """
select format('alter schema %%I owner to %%I', nspname, %(owner)s::text)
from pg_namespace
where nspowner = %(superuser)s::regrole and nspname !~ '^(pg_|information_schema)' and nspname <> 'public'
union all
select format('alter %%s %%I.%%I owner to %%I',
              case c.relkind when 'v' then 'view' when 'm' then 'materialized view'
                             when 'S' then 'sequence' when 'f' then 'foreign table' else 'table' end,
              n.nspname, c.relname, %(owner)s::text)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relowner = %(superuser)s::regrole and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
  and n.nspname !~ '^(pg_|information_schema)'
  -- a sequence owned by a column follows its table
  and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid
                  and d.deptype in ('a', 'i'))
union all
select format('alter routine %%s owner to %%I', p.oid::regprocedure, %(owner)s::text)
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where p.proowner = %(superuser)s::regrole and n.nspname !~ '^(pg_|information_schema)'
union all
select format('alter type %%s owner to %%I', t.oid::regtype, %(owner)s::text)
from pg_type t join pg_namespace n on n.oid = t.typnamespace
where t.typowner = %(superuser)s::regrole and n.nspname !~ '^(pg_|information_schema)'
  and t.typtype in ('e', 'd', 'r') and t.typelem = 0
"""


def _transfer_ownership(conn: psycopg.Connection, owner: str) -> int:
    """Give the database's owner role what the superuser owns there (a warehouse, shop or
    Airflow database of a version that worked as the superuser). Returns how many objects."""
    statements = [r[0] for r in conn.execute(_OWNED_BY_SUPERUSER, {"owner": owner, "superuser": SUPERUSER})]
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)
    return len(statements)


def _grant_shop_reader(conn: psycopg.Connection) -> None:
    """shop_reader reads every table of the shop's schemas, now and later, and nothing more."""
    reader, owner = sql.Identifier(SHOP_READER_ROLE), sql.Identifier(SHOP_OWNER_ROLE)
    schemas = [r[0] for r in conn.execute(
        "select nspname from pg_namespace where nspname !~ '^(pg_|information_schema)'")]
    for schema in schemas:
        schema_id = sql.Identifier(schema)
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(schema_id, reader))
        conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(schema_id, reader))
        conn.execute(sql.SQL("alter default privileges for role {} in schema {} grant select on tables to {}")
                     .format(owner, schema_id, reader))


def stop(pgdata: Path) -> bool:
    """Stop the server (fast shutdown). Returns False when it was not running."""
    from pgserver._commands import pg_ctl
    from pgserver.postgres_server import PostgresServer

    pgdata = Path(pgdata)
    if _postmaster(pgdata) is None:
        return False
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_server_user())
    handle = PostgresServer._instances.get(pgdata.resolve())
    if handle is not None:
        # Release this process's handle (started with cleanup_mode=None: release only);
        # pgserver's exit hook would otherwise look for the handle dropped below and
        # print a KeyError traceback at exit.
        handle.cleanup()
    PostgresServer._instances.pop(pgdata.resolve(), None)
    return True


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def psql_command(database_url: str) -> list[str]:
    """psql from the pgserver wheel (same major version as the server), else from PATH."""
    from pgserver._commands import POSTGRES_BIN_PATH

    psql = Path(POSTGRES_BIN_PATH) / "psql"
    return [str(psql) if psql.exists() else "psql", database_url]


def run_psql(database_url: str) -> int:
    return subprocess.call(psql_command(database_url))
