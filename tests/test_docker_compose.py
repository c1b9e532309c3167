"""docker-compose.yaml follows Airflow 3's official CeleryExecutor layout, adds a separate
warehouse PostgreSQL, mounts the project's folders, holds no secret, and is hardened
(issue 24, point 8):

- each service receives only the secrets it uses (no `env_file`; the superuser password of
  the warehouse server reaches warehouse-db and airflow-init only);
- the Airflow admin login comes from `.env` (AIRFLOW_ADMIN_PASSWORD, written by
  airflow-init into SimpleAuthManager's passwords file; never generated into a log);
- the Fernet key, [api] secret_key and the JWT secret are required and identical in every
  Airflow service;
- Redis requires a password, which the broker URL and the healthcheck use;
- every published port is bound to 127.0.0.1;
- the warehouse roles are least-privilege (deploy/warehouse-db-init.sh): checked in the
  file, and by running the script against a throwaway PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lifecycle_warehouse import settings

from tests.sandbox import throwaway_server

COMPOSE = settings.PROJECT_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = settings.PROJECT_ROOT / ".env.example"
INIT_SCRIPT = settings.PROJECT_ROOT / "deploy" / "warehouse-db-init.sh"
AIRFLOW_SERVICES = {
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
    "airflow-worker", "airflow-triggerer", "airflow-init",
}

# What every Airflow service needs: its metadata database and the three shared keys.
AIRFLOW_SHARED = {"AIRFLOW_DB_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_JWT_SECRET"}
# service -> the secrets (.env variables) it may receive, and must.
SECRETS_OF = {
    "postgres": {"AIRFLOW_DB_PASSWORD"},
    "warehouse-db": {"WAREHOUSE_SUPERUSER_PASSWORD", "WAREHOUSE_OWNER_PASSWORD", "SHOP_READER_PASSWORD",
                     "SHOP_OWNER_PASSWORD"},
    "redis": {"REDIS_PASSWORD"},
    "airflow-apiserver": AIRFLOW_SHARED,
    "airflow-scheduler": AIRFLOW_SHARED | {"REDIS_PASSWORD"},
    "airflow-dag-processor": AIRFLOW_SHARED | {"LW_ALERT_URL"},
    "airflow-triggerer": AIRFLOW_SHARED,
    "airflow-worker": AIRFLOW_SHARED | {"REDIS_PASSWORD", "WAREHOUSE_OWNER_PASSWORD", "SHOP_READER_PASSWORD",
                                        "SHOP_DB_URL", "LW_ALERT_URL"},
    "airflow-init": AIRFLOW_SHARED | {"WAREHOUSE_OWNER_PASSWORD", "WAREHOUSE_SUPERUSER_PASSWORD",
                                      "BI_READER_PASSWORD", "AIRFLOW_ADMIN_PASSWORD"},
    "superset": {"SUPERSET_SECRET_KEY", "BI_ADMIN_PASSWORD", "BI_READER_PASSWORD"},
}
# .env variables that are secrets without saying so in their name (a URL with a password,
# an Apprise URL with a token).
SECRET_URLS = {"SHOP_DB_URL", "LW_ALERT_URL"}
PASSWORDS_FILE = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
# Airflow setting -> .env variable: required, and the same in every Airflow service.
SHARED_KEYS = {
    "AIRFLOW__CORE__FERNET_KEY": "AIRFLOW_FERNET_KEY",
    "AIRFLOW__API__SECRET_KEY": "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET": "AIRFLOW_JWT_SECRET",
}


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _variables(value) -> set[str]:
    """The .env variables a piece of the compose file interpolates (`$$X` is the container's)."""
    return set(re.findall(r"(?<!\$)\$\{(\w+)", json.dumps(value)))


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {key: str(value) for key, value in env.items()}


def _secret_variables() -> set[str]:
    documented = set(re.findall(r"^(\w+)=", ENV_EXAMPLE.read_text(), re.M))
    return {v for v in documented if re.search(r"PASSWORD|SECRET|KEY", v)} | SECRET_URLS


def test_services():
    services = _compose()["services"]
    assert AIRFLOW_SERVICES | {"postgres", "redis", "warehouse-db"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["warehouse-db"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")


def test_celery_executor_and_separate_databases():
    services = _compose()["services"]
    env = _env(services["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    # The tasks (the worker) read and write the warehouse; the scheduler never does.
    assert "@warehouse-db:5432/warehouse" in _env(services["airflow-worker"])["WAREHOUSE_URL"]


def test_project_folders_mounted_in_every_airflow_service():
    services = _compose()["services"]
    for name in AIRFLOW_SERVICES:
        targets = {v.split(":")[1] for v in services[name]["volumes"]}
        for folder in ("dags", "plugins", "dbt_project", "expectations"):
            assert f"/opt/airflow/{folder}" in targets, f"{name} does not mount {folder}/"


def _environment_values(compose: dict):
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            yield name, key, value


def test_no_secret_in_compose_file():
    """Every password or secret is a ${VARIABLE} from .env, never a literal (a `…_FILE`
    setting is the path of a file holding one)."""
    for service, key, value in _environment_values(_compose()):
        if re.search(r"PASSWORD|SECRET|_KEY$|^REDISCLI_AUTH$", key) and not key.endswith("_FILE"):
            assert value.startswith("${"), f"{service}: {key} is a literal"
        for password in re.findall(r"://[^:/@]+:([^@]*)@", value):
            assert password == "" or password.startswith("${"), f"{service}: literal password in {key}"


def test_env_example_documents_every_variable():
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE.read_text()))
    example = ENV_EXAMPLE.read_text()
    documented = set(re.findall(r"^(\w+)=", example, re.M))
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"
    # .env.example holds no usable secret: placeholders or nothing.
    for line in example.splitlines():
        if (m := re.match(r"^(\w+)=(.*)$", line)) and m.group(1) in _secret_variables():
            assert m.group(2) == "" or m.group(2).startswith("change-me"), line


def test_env_example_says_how_to_generate_a_fernet_key():
    """The command .env.example gives prints a key that Airflow's Fernet accepts."""
    from cryptography.fernet import Fernet

    command = re.search(r'python3 -c "(import base64[^"]*)"', ENV_EXAMPLE.read_text())
    assert command, ".env.example does not say how to generate AIRFLOW_FERNET_KEY"
    key = subprocess.run(["python3", "-c", command.group(1)], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"


def test_superset_reads_the_warehouse_as_bi_reader_on_loopback_only():
    """The `superset` service of issue 23: the same assets as `make bi`, the warehouse as
    bi_reader, its port published on 127.0.0.1 only."""
    service = _compose()["services"]["superset"]
    assert service["build"]["dockerfile"] == "bi/Dockerfile"
    assert service["environment"]["WAREHOUSE_URL"].startswith("postgresql://bi_reader:${BI_READER_PASSWORD}@warehouse-db")
    assert service["ports"] == ["127.0.0.1:8088:8088"]
    dockerfile = (settings.PROJECT_ROOT / "bi" / "Dockerfile").read_text()
    for needed in ("bi/requirements.txt", "bi/constraints.txt", "bi/superset_config.py", "bi/superset "):
        assert needed in dockerfile, needed
    assert "python -m lifecycle_warehouse.bi import" in (settings.PROJECT_ROOT / "bi" / "docker-entrypoint.sh").read_text()


def test_every_published_port_is_on_loopback():
    for name, service in _compose()["services"].items():
        assert service.get("network_mode") != "host", f"{name} shares the host's network"
        for port in service.get("ports", []):
            if isinstance(port, dict):  # long syntax
                assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond this machine"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    # Redis and Airflow's metadata database are not published at all.
    services = _compose()["services"]
    assert "ports" not in services["redis"] and "ports" not in services["postgres"]


# --------------------------------------------------------------------------- secrets per service


def test_no_service_reads_the_whole_env_file():
    """`env_file: .env` would hand every secret to the service; compose interpolates
    ${VARIABLES} from .env without it."""
    compose = _compose()
    for name, block in [*compose["services"].items(), *((k, v) for k, v in compose.items() if k.startswith("x-"))]:
        assert "env_file" not in (block or {}), f"{name} reads the whole .env"


def test_each_service_gets_only_the_secrets_it_uses():
    services = _compose()["services"]
    secrets = _secret_variables()
    assert set(services) == set(SECRETS_OF), "a service was added or removed: say which secrets it gets"
    for name, service in services.items():
        received = _variables(service) & secrets
        assert received == SECRETS_OF[name], (
            f"{name} receives {sorted(received - SECRETS_OF[name])} it does not use"
            if received - SECRETS_OF[name] else f"{name} lacks {sorted(SECRETS_OF[name] - received)}")


def test_warehouse_superuser_password_only_in_warehouse_db_and_airflow_init():
    services = _compose()["services"]
    holders = {name for name, s in services.items() if "WAREHOUSE_SUPERUSER_PASSWORD" in _variables(s)}
    assert holders == {"warehouse-db", "airflow-init"}
    db = _env(services["warehouse-db"])
    assert db["POSTGRES_USER"] == "postgres"
    assert db["POSTGRES_PASSWORD"].startswith("${WAREHOUSE_SUPERUSER_PASSWORD:?")
    init = _env(services["airflow-init"])
    assert init["WAREHOUSE_SUPERUSER_URL"].startswith("postgresql://postgres:${WAREHOUSE_SUPERUSER_PASSWORD")
    # Nothing that runs tasks connects as the superuser.
    for name, service in services.items():
        for key, value in _env(service).items():
            if key != "WAREHOUSE_SUPERUSER_URL":
                assert not re.search(r"://postgres:", value), f"{name}: {key} connects as the superuser"


# --------------------------------------------------------------------------- Airflow


def test_fernet_api_secret_and_jwt_secret_are_required_and_shared():
    """Identical in every Airflow service (the api-server signs log requests with the secret
    key, which the workers' log servers check), and `${VAR:?…}`: compose refuses to start
    without them."""
    services = _compose()["services"]
    for setting, variable in SHARED_KEYS.items():
        values = {name: _env(services[name]).get(setting) for name in AIRFLOW_SERVICES}
        assert len(set(values.values())) == 1, f"{setting} differs between services: {values}"
        value = values["airflow-worker"]
        assert value is not None and value.startswith(f"${{{variable}:?"), f"{setting} is not required: {value}"
    metadata = {_env(services[name])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] for name in AIRFLOW_SERVICES}
    assert len(metadata) == 1


def test_airflow_admin_login_comes_from_env():
    """airflow-init writes AIRFLOW_ADMIN_PASSWORD into the passwords file the api-server's
    SimpleAuthManager reads (a volume only these two mount); the api-server never sees the
    password itself."""
    services = _compose()["services"]
    api, init = _env(services["airflow-apiserver"]), _env(services["airflow-init"])
    assert api["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert api["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "${AIRFLOW_ADMIN_USERNAME:-admin}:admin"
    assert init["AIRFLOW_ADMIN_USERNAME"] == "${AIRFLOW_ADMIN_USERNAME:-admin}"
    assert init["AIRFLOW_ADMIN_PASSWORD"].startswith("${AIRFLOW_ADMIN_PASSWORD:?")
    assert api[PASSWORDS_FILE] == init[PASSWORDS_FILE]
    folder = str(Path(api[PASSWORDS_FILE]).parent)
    mounts = {name: {v.split(":")[0] for v in s.get("volumes", []) if v.split(":")[1] == folder}
              for name, s in services.items()}
    assert {name for name, m in mounts.items() if m} == {"airflow-apiserver", "airflow-init"}
    assert mounts["airflow-apiserver"] == mounts["airflow-init"]
    volume = mounts["airflow-init"].pop()
    assert volume in _compose()["volumes"], "the passwords file must live in a named volume"
    command = " ".join(services["airflow-init"]["command"])
    assert "python -m lifecycle_warehouse.deploy_init" in command
    assert folder in command, "airflow-init must hand the passwords file to the api-server's user (chown)"


def test_admin_passwords_file_is_what_simple_auth_manager_reads(tmp_path, monkeypatch, capsys):
    """deploy_init writes the file SimpleAuthManager reads: the api-server's start (init())
    finds the user in it, so it neither generates nor prints a password."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    from lifecycle_warehouse import deploy_init

    path = tmp_path / "auth" / "simple_auth_manager_passwords.json"
    password = 'it\'s "long" \\ and random'
    monkeypatch.setenv(PASSWORDS_FILE, str(path))
    monkeypatch.setenv("AIRFLOW_ADMIN_USERNAME", "ops")
    monkeypatch.setenv("AIRFLOW_ADMIN_PASSWORD", password)
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "ops:admin")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    assert deploy_init.admin_login_from_environment() == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    written = path.read_text()

    assert SimpleAuthManager.get_generated_password_file() == str(path)
    assert SimpleAuthManager.get_passwords() == {"ops": password}
    capsys.readouterr()
    SimpleAuthManager().init()
    assert path.read_text() == written
    out = capsys.readouterr()
    assert "Password for user" not in out.out + out.err

    # Run again with another password (the .env changed): the file follows.
    monkeypatch.setenv("AIRFLOW_ADMIN_PASSWORD", "another")
    deploy_init.admin_login_from_environment()
    assert SimpleAuthManager.get_passwords() == {"ops": "another"}
    monkeypatch.delenv("AIRFLOW_ADMIN_PASSWORD")
    with pytest.raises(SystemExit, match="AIRFLOW_ADMIN_PASSWORD"):
        deploy_init.admin_login_from_environment()


# --------------------------------------------------------------------------- Redis


def test_redis_requires_a_password():
    services = _compose()["services"]
    redis = services["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"  # the image's entrypoint then drops root for its `redis` user
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    # The healthcheck authenticates (REDISCLI_AUTH, not a password on its command line) and
    # insists on PONG: unauthenticated, redis-cli prints NOAUTH and still exits 0.
    assert _env(redis)["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD")
    check = " ".join(redis["healthcheck"]["test"])
    assert "redis-cli ping" in check and "PONG" in check and "-a " not in check
    for name in ("airflow-scheduler", "airflow-worker"):
        broker = _env(services[name])["AIRFLOW__CELERY__BROKER_URL"]
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD[^}]*\}@redis:6379/0", broker), f"{name}: {broker}"


# --------------------------------------------------------------------------- warehouse roles


def test_services_connect_with_least_privilege_roles():
    services = _compose()["services"]
    worker = _env(services["airflow-worker"])
    assert worker["WAREHOUSE_URL"].startswith("postgresql://warehouse_owner:${WAREHOUSE_OWNER_PASSWORD")
    assert worker["WAREHOUSE_URL"].endswith("@warehouse-db:5432/warehouse")
    # The shop: SHOP_DB_URL from .env when set (your shop's replica), else shop_reader.
    assert re.fullmatch(r"\$\{SHOP_DB_URL:-postgresql://shop_reader:\$\{SHOP_READER_PASSWORD\}"
                        r"@warehouse-db:5432/shop\}", worker["SHOP_DB_URL"]), worker["SHOP_DB_URL"]
    assert _env(services["airflow-init"])["WAREHOUSE_URL"] == worker["WAREHOUSE_URL"]
    assert _env(services["superset"])["WAREHOUSE_URL"].startswith("postgresql://bi_reader:")
    # No Airflow service gets shop_owner's password.
    for name in AIRFLOW_SERVICES:
        assert "SHOP_OWNER_PASSWORD" not in _variables(services[name])
    # The roles are created by the init script, from the warehouse-db service's environment.
    db = services["warehouse-db"]
    assert f"./deploy/{INIT_SCRIPT.name}:/docker-entrypoint-initdb.d/10-roles.sh:ro" in db["volumes"]
    env = _env(db)
    assert env["POSTGRES_DB"] == "warehouse"
    for variable in ("WAREHOUSE_OWNER_PASSWORD", "SHOP_READER_PASSWORD", "SHOP_OWNER_PASSWORD"):
        assert env[variable].startswith(f"${{{variable}")


def test_init_script_creates_least_privilege_roles():
    """What deploy/warehouse-db-init.sh says (the next test runs it)."""
    text = re.sub(r"\s+", " ", INIT_SCRIPT.read_text())
    for role in ("warehouse_owner", "shop_reader"):
        assert re.search(rf"alter role {role} with login nosuperuser nocreatedb nocreaterole noreplication "
                         rf"nobypassrls inherit password :'{role}_password';", text), role
    assert "alter role shop_reader set default_transaction_read_only = on;" in text
    assert "alter database warehouse owner to warehouse_owner;" in text
    assert "grant select on all tables in schema public to shop_reader;" in text
    assert ("alter default privileges for role shop_owner in schema public "
            "grant select on tables to shop_reader;") in text
    assert "revoke all on database warehouse from public;" in text
    # Passwords only as psql variables (from the environment), never literals in the SQL.
    sql_text = INIT_SCRIPT.read_text().split("<<'SQL'", 1)[1].split("\nSQL\n", 1)[0]
    given = re.findall(r"\bpassword\s+(\S+)", sql_text)
    assert sorted(given) == sorted([":'warehouse_owner_password';", ":'shop_reader_password';",
                                    ":'shop_owner_password';", "null;"]), given


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether a PostgreSQL SCRAM-SHA-256 verifier is the one of `password` (ASCII)."""
    m = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    if not m:
        return False
    iterations, salt, stored_key = int(m.group(1)), base64.b64decode(m.group(2)), base64.b64decode(m.group(3))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest() == stored_key


@pytest.fixture(scope="module")
def init_server():
    """A throwaway embedded PostgreSQL of its own (the roles are cluster-wide: the session's
    shared server must not get them): its admin URL."""
    with throwaway_server("lw-compose-") as (_, admin_url):
        yield admin_url


def _run_init_script(admin_url: str, sourced: bool = False, **passwords: str) -> subprocess.CompletedProcess:
    """Run the script as the postgres image does: executed, or (`sourced`, when the file is
    not executable) sourced by the image's bash entrypoint, which then goes on."""
    import pgserver

    info = conninfo_to_dict(admin_url)
    bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(PATH=f"{bindir}:{env['PATH']}", PGHOST=info["host"], PGPORT=str(info.get("port") or 5432),
               POSTGRES_USER=info.get("user") or "postgres", **passwords)
    if info.get("password"):
        env["PGPASSWORD"] = info["password"]
    if info.get("passfile"):  # the embedded server's superuser password
        env["PGPASSFILE"] = info["passfile"]
    command = (["bash", "-c", 'set -Eeo pipefail; . "$0"; echo "entrypoint goes on: ${UNSET_VARIABLE:-ok}"',
                str(INIT_SCRIPT)] if sourced else ["sh", str(INIT_SCRIPT)])
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_init_script_on_a_real_server(init_server):
    """Run deploy/warehouse-db-init.sh as the image would (twice: it is idempotent), then
    check what each role can do: warehouse_owner owns `warehouse` and is no superuser;
    shop_reader's sessions are read-only and, even read-write, it cannot write; nobody
    reaches a database it was not granted."""
    admin = init_server
    host = conninfo_to_dict(admin)["host"]
    owner_pw = "it's \"quoted\"; $HOME `x` \\ -- drop role postgres"
    reader_pw, shop_owner_pw = "reader-pw", "shop-owner-pw"

    first = _run_init_script(admin, WAREHOUSE_OWNER_PASSWORD=owner_pw, SHOP_READER_PASSWORD=reader_pw,
                             SHOP_OWNER_PASSWORD="")
    assert first.returncode == 0, first.stderr
    with psycopg.connect(admin) as conn:
        assert conn.execute("select rolcanlogin from pg_roles where rolname = 'shop_owner'").fetchone() == (False,)
    second = _run_init_script(admin, sourced=True, WAREHOUSE_OWNER_PASSWORD=owner_pw,
                              SHOP_READER_PASSWORD=reader_pw, SHOP_OWNER_PASSWORD=shop_owner_pw)
    assert second.returncode == 0, second.stderr
    assert "entrypoint goes on: ok" in second.stdout  # no `set -u` leaked into the entrypoint
    missing = _run_init_script(admin, SHOP_READER_PASSWORD=reader_pw)
    assert missing.returncode != 0 and "WAREHOUSE_OWNER_PASSWORD" in missing.stderr

    with psycopg.connect(admin) as conn:
        roles = {r[0]: r[1:] for r in conn.execute(
            "select rolname, rolsuper, rolcanlogin, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
            "coalesce(rolconfig, '{}'), (select rolpassword from pg_authid a where a.oid = r.oid) "
            "from pg_roles r where rolname in ('warehouse_owner', 'shop_reader', 'shop_owner')")}
        owners = dict(conn.execute("select datname, pg_get_userbyid(datdba) from pg_database"))
    for role in ("warehouse_owner", "shop_reader", "shop_owner"):
        assert roles[role][:6] == (False, True, False, False, False, False), f"{role}: {roles[role]}"
    assert "default_transaction_read_only=on" in roles["shop_reader"][6]
    assert "default_transaction_read_only=on" not in roles["warehouse_owner"][6]
    # The passwords went through the shell and psql untouched (scram-sha-256 verifiers).
    assert _scram_matches(roles["warehouse_owner"][7], owner_pw)
    assert _scram_matches(roles["shop_reader"][7], reader_pw)
    assert _scram_matches(roles["shop_owner"][7], shop_owner_pw)
    assert owners["warehouse"] == "warehouse_owner" and owners["shop"] == "shop_owner"

    def connect(user: str, password: str, dbname: str) -> psycopg.Connection:
        return psycopg.connect(make_conninfo(host=host, dbname=dbname, user=user, password=password), autocommit=True)

    # The demo shop's owner fills it (as the simulator does): shop_reader may read it.
    with connect("shop_owner", shop_owner_pw, "shop") as conn:
        conn.execute("create table public.orders (id integer primary key, amount numeric)")
        conn.execute("insert into public.orders values (1, 10)")

    with connect("shop_reader", reader_pw, "shop") as conn:
        assert conn.execute("show default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("select count(*) from public.orders").fetchone() == (1,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("insert into public.orders values (2, 20)")
        # Read-only is the safety net; the privileges forbid writing even when asked to.
        conn.execute("set default_transaction_read_only = off")
        for statement in ("insert into public.orders values (2, 20)", "update public.orders set amount = 0",
                          "delete from public.orders", "truncate public.orders",
                          "create table public.mine (x int)", "create schema mine"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        connect("shop_reader", reader_pw, "warehouse")

    with connect("warehouse_owner", owner_pw, "warehouse") as conn:
        assert conn.execute("show is_superuser").fetchone() == ("off",)
        conn.execute("create schema staging")
        conn.execute("create table staging.t (x int)")
        for statement in ("create role intruder", "create database other", "alter role warehouse_owner superuser"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        connect("warehouse_owner", owner_pw, "shop")


def test_deploy_init_prepares_the_warehouse_as_its_owner(init_server):
    """airflow-init's warehouse step: schemas owned by warehouse_owner (not the superuser),
    bi_reader created by the superuser, and a table the owner publishes later readable by
    bi_reader, who sees nothing else."""
    from lifecycle_warehouse import deploy_init

    admin = init_server
    host = conninfo_to_dict(admin)["host"]
    owner_pw, bi_pw = "owner-pw", "bi-pw"
    result = _run_init_script(admin, WAREHOUSE_OWNER_PASSWORD=owner_pw, SHOP_READER_PASSWORD="r")
    assert result.returncode == 0, result.stderr

    def url(user: str, password: str) -> str:
        return f"postgresql://{user}:{quote(password)}@/warehouse?host={quote(host)}"

    superuser_url = make_conninfo(admin, dbname="warehouse")
    deploy_init.prepare_warehouse(url("warehouse_owner", owner_pw), superuser_url, bi_pw)
    deploy_init.prepare_warehouse(url("warehouse_owner", owner_pw), superuser_url, bi_pw)  # idempotent

    with psycopg.connect(url("warehouse_owner", owner_pw), autocommit=True) as conn:
        schemas = dict(conn.execute(
            "select nspname, pg_get_userbyid(nspowner) from pg_namespace where nspname in ('raw', 'analytics')"))
        assert schemas == {"raw": "warehouse_owner", "analytics": "warehouse_owner"}
        # What the publish does later, as the owner.
        conn.execute("create table analytics.kpi_daily (d date, v int)")
        conn.execute("insert into analytics.kpi_daily values ('2026-01-01', 1)")
    with psycopg.connect(url("bi_reader", bi_pw), autocommit=True) as conn:
        assert conn.execute("select count(*) from analytics.kpi_daily").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select count(*) from raw.load_audit")
    with psycopg.connect(admin) as conn:
        assert conn.execute("select rolsuper, rolcanlogin from pg_roles where rolname = 'bi_reader'").fetchone() == (
            False, True)


def _docker_compose() -> list[str] | None:
    """`docker compose` (v2) when this machine has it; None otherwise."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    found = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    return [docker, "compose"] if found.returncode == 0 else None


def test_docker_compose_config_resolves_as_checked(tmp_path):
    """What Docker Compose itself makes of the file (`docker compose config`, no engine
    needed): with a distinct value per secret, each service's resolved configuration holds
    exactly the secrets of SECRETS_OF; a missing required secret is refused. Skipped where
    the compose plugin is not installed."""
    compose = _docker_compose()
    if compose is None:
        pytest.skip("docker compose (v2) is not installed here")
    documented = re.findall(r"^(\w+)=", ENV_EXAMPLE.read_text(), re.M)
    token = {v: "Q" + hashlib.sha256(v.encode()).hexdigest()[:16] for v in _secret_variables()}
    values = {v: token.get(v, "") for v in documented}
    values.update(AIRFLOW_UID="50000", REPORTING_CURRENCY="USD", SHOP_DB_URL="")
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    clean = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}

    def config(env_path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([*compose, "--project-directory", str(settings.PROJECT_ROOT), "-f", str(COMPOSE),
                               "--env-file", str(env_path), "config", "--format", "json"],
                              capture_output=True, text=True, env=clean, timeout=60)

    result = config(env_file)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name, service in services.items():
        text = json.dumps(service)
        received = {v for v, t in token.items() if t in text}
        assert received == SECRETS_OF[name] - {"SHOP_DB_URL"}, f"{name}: {sorted(received ^ SECRETS_OF[name])}"
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name}: {port}"
    for setting, variable in SHARED_KEYS.items():
        assert {services[name]["environment"][setting] for name in AIRFLOW_SERVICES} == {token[variable]}
    assert services["airflow-worker"]["environment"]["SHOP_DB_URL"] == (
        f"postgresql://shop_reader:{token['SHOP_READER_PASSWORD']}@warehouse-db:5432/shop")

    for required in ("AIRFLOW_FERNET_KEY", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_JWT_SECRET", "REDIS_PASSWORD",
                     "AIRFLOW_ADMIN_PASSWORD", "WAREHOUSE_SUPERUSER_PASSWORD"):
        without = tmp_path / f"without-{required}"
        without.write_text("".join(f"{k}={'' if k == required else v}\n" for k, v in values.items()))
        refused = config(without)
        assert refused.returncode != 0 and required in refused.stderr, f"{required} is not required"
