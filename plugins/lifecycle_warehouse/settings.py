"""Where things are: every path and connection string the project uses, from the
environment first, with defaults that point at the embedded server and the repo's folders.

Secrets never live here: URLs come from the environment (or Airflow connections in a
deployment); the embedded server needs none because it only listens on a unix socket.
"""

from __future__ import annotations

import os
from pathlib import Path

# The repo root: plugins/lifecycle_warehouse/settings.py -> parents[2].
PROJECT_ROOT = Path(os.environ.get("LW_PROJECT_ROOT", Path(__file__).resolve().parents[2]))


def _path(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).resolve() if value else default


def pgdata_dir() -> Path:
    """Data folder of the embedded PostgreSQL server (ignored by git)."""
    return _path("LW_PGDATA", PROJECT_ROOT / ".warehouse" / "pgdata")


def landing_dir() -> Path:
    return _path("LANDING_DIR", PROJECT_ROOT / "data" / "landing")


def simulator_truth_file() -> Path:
    """What the simulator planted (rates, counts), for tests and the demo summary."""
    return _path("LW_TRUTH_FILE", PROJECT_ROOT / "data" / "simulator" / "truth.json")


def airflow_home() -> Path:
    return _path("AIRFLOW_HOME", PROJECT_ROOT / ".airflow")


def reporting_currency() -> str:
    return os.environ.get("REPORTING_CURRENCY", "USD")


def manual_build_wait_seconds() -> float:
    """How long a warehouse run's plan waits for a manual `lw dbt build` to end before it
    fails (`LW_MANUAL_BUILD_WAIT_SECONDS`, default one hour)."""
    return float(os.environ.get("LW_MANUAL_BUILD_WAIT_SECONDS", "3600"))


class ConfigurationError(RuntimeError):
    pass


def _embedded_url(database: str, variable: str) -> str:
    from lifecycle_warehouse import embedded

    url = embedded.url(pgdata_dir(), database)
    if url is None:
        raise ConfigurationError(
            f"{variable} is not set and the embedded PostgreSQL server in {pgdata_dir()} is not "
            f"running. Start it with `make up` (or set {variable} to a PostgreSQL URL)."
        )
    return url


def warehouse_url() -> str:
    """libpq URL of the warehouse database (`WAREHOUSE_URL`, else the embedded `warehouse`)."""
    return os.environ.get("WAREHOUSE_URL") or _embedded_url("warehouse", "WAREHOUSE_URL")


def shop_db_url() -> str:
    """libpq URL of the shop's operational database (`SHOP_DB_URL`, else the embedded `shop`)."""
    return os.environ.get("SHOP_DB_URL") or _embedded_url("shop", "SHOP_DB_URL")
