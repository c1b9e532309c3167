"""One-off set-up of a deployment (docker-compose's `airflow-init`). Safe to run again.

    python -m lifecycle_warehouse.deploy_init

1. The Airflow admin login: SimpleAuthManager's passwords file
   (`AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE`, a JSON object user -> password)
   written from `AIRFLOW_ADMIN_USERNAME` / `AIRFLOW_ADMIN_PASSWORD`, mode 0600. The
   api-server reads that file; since it already holds the user, Airflow generates no
   password and prints none to its log.
2. As the warehouse's owner (`WAREHOUSE_URL`, role warehouse_owner): the `raw` schema and
   the `analytics` schema, so that the owner, not the superuser, owns them.
3. As the warehouse server's superuser (`WAREHOUSE_SUPERUSER_URL`; only this one-off service
   gets it): the read-only `bi_reader` role (`BI_READER_PASSWORD`, access.ensure_bi_reader),
   then, as the owner again, the default privilege that lets bi_reader read the tables the
   owner publishes into `analytics` later.
4. The dbt manifest the warehouse DAG is rendered from (`dbt parse`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
from psycopg import sql

from lifecycle_warehouse import settings

PASSWORDS_FILE_SETTING = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
DEFAULT_ADMIN_USER = "admin"


def write_admin_passwords_file(path: Path, user: str, password: str) -> Path:
    """SimpleAuthManager's passwords file holding exactly `user`'s password: written
    atomically, readable by its owner only (0600 from its creation on), its folder 0700."""
    if not user or not password:
        raise ValueError("the Airflow admin login needs a user name and a password")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps({user: password}) + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def admin_login_from_environment() -> Path | None:
    """Write the passwords file named by AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE
    from AIRFLOW_ADMIN_USERNAME (default `admin`) and AIRFLOW_ADMIN_PASSWORD; None when no
    passwords file is configured."""
    target = os.environ.get(PASSWORDS_FILE_SETTING)
    if not target:
        return None
    password = os.environ.get("AIRFLOW_ADMIN_PASSWORD")
    if not password:
        raise SystemExit(f"{PASSWORDS_FILE_SETTING} is set but AIRFLOW_ADMIN_PASSWORD is not: "
                         "set the Airflow admin's password in .env")
    user = os.environ.get("AIRFLOW_ADMIN_USERNAME") or DEFAULT_ADMIN_USER
    return write_admin_passwords_file(Path(target), user, password)


def prepare_warehouse(owner_url: str, superuser_url: str | None, bi_reader_password: str | None) -> None:
    """Schemas as the owner; the bi_reader role (when a password is given) as the superuser,
    with its default privilege on the tables the owner creates in `analytics` later.
    Idempotent."""
    from psycopg.conninfo import conninfo_to_dict

    from lifecycle_warehouse import bootstrap
    from lifecycle_warehouse.access import BI_SCHEMA, ensure_bi_reader

    bootstrap.bootstrap(owner_url)
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(BI_SCHEMA)))
    if not bi_reader_password:
        return
    # Creating a role takes more than the owner has: the superuser does it, naming the owner
    # whose future tables in `analytics` bi_reader may read.
    owner = conninfo_to_dict(owner_url).get("user")
    ensure_bi_reader(superuser_url or owner_url, password=bi_reader_password, owner=owner if superuser_url else None)


def main() -> None:
    from lifecycle_warehouse import dbt_runner

    passwords_file = admin_login_from_environment()
    if passwords_file is not None:
        print(f"Airflow admin login written to {passwords_file} (from AIRFLOW_ADMIN_PASSWORD)")
    warehouse_url = settings.warehouse_url()
    bi_reader_password = os.environ.get("BI_READER_PASSWORD")
    prepare_warehouse(warehouse_url, os.environ.get("WAREHOUSE_SUPERUSER_URL"), bi_reader_password)
    print("raw and analytics schemas ready" + (", bi_reader role ready" if bi_reader_password else ""))
    dbt_runner.parse_manifest(url=warehouse_url)
    print(f"dbt manifest built in {dbt_runner.DBT_PROJECT_DIR / 'target'}")


if __name__ == "__main__":
    main()
