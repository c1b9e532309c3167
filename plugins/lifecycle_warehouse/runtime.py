"""The environment every command of the project runs in: one place that turns
WAREHOUSE_URL / SHOP_DB_URL (or the embedded server) into what Airflow and dbt read.

Airflow's metadata database: `AIRFLOW__DATABASE__SQL_ALCHEMY_CONN` when the user sets it,
else database `airflow` on the embedded server (PostgreSQL rather than SQLite: the same
engine as in deployment, and no SQLite locking when tasks run in parallel).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from lifecycle_warehouse import dbt_runner, embedded, settings


def sqlalchemy_url(libpq_url: str, driver: str = "psycopg") -> str:
    """`postgresql://…` → `postgresql+psycopg://…` (psycopg 3 driver for SQLAlchemy)."""
    parsed = urlparse(libpq_url)
    return urlunparse(parsed._replace(scheme=f"postgresql+{driver}"))


def environment() -> dict[str, str]:
    """os.environ plus everything the project's Airflow, dbt and tasks need."""
    env = dict(os.environ)
    warehouse_url = settings.warehouse_url()
    env["WAREHOUSE_URL"] = warehouse_url
    env["SHOP_DB_URL"] = settings.shop_db_url()
    env["LANDING_DIR"] = str(settings.landing_dir())
    env["LW_PROJECT_ROOT"] = str(settings.PROJECT_ROOT)
    env.update(dbt_runner.profile_env(warehouse_url))

    root = settings.PROJECT_ROOT
    env["AIRFLOW_HOME"] = str(settings.airflow_home())
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(root / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(root / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
    env.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    # dbt's run results and manifest of the DAGs' builds go to this instance's own folder:
    # two instances on one checkout (a demo and the tests, say) never share them.
    env.setdefault("DBT_TARGET_PATH", str(settings.airflow_home() / "dbt-target"))
    env.setdefault("DO_NOT_TRACK", "1")
    if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env:
        metadata = embedded.url(settings.pgdata_dir(), "airflow", embedded.AIRFLOW_ROLE)
        if metadata is None:
            raise settings.ConfigurationError(
                "Airflow needs a metadata database: start the embedded server with `make up`, "
                "or set AIRFLOW__DATABASE__SQL_ALCHEMY_CONN."
            )
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = sqlalchemy_url(metadata)
    # Without the async URI Airflow 3 derives one for asyncpg, which is not installed.
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC", env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    return env


def airflow_bin() -> str:
    """The venv's `airflow` (beside this interpreter), else the one on PATH."""
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def ensure_airflow_db(on_migrate: Callable[[], None] = lambda: None) -> None:
    """`airflow db migrate` once per metadata database and Airflow version (it costs ~10 s):
    a marker file in AIRFLOW_HOME remembers that it was done."""
    env = environment()
    key = hashlib.sha256(
        f"{env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']}|{version('apache-airflow')}".encode()
    ).hexdigest()[:16]
    home = Path(env["AIRFLOW_HOME"])
    marker = home / f".migrated-{key}"
    if marker.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    on_migrate()
    subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    marker.write_text(key)
