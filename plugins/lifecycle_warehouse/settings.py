"""Where things are: every path and connection string the project uses, from the
environment first, with defaults that point at the embedded server and the repo's folders.

Secrets never live here: URLs come from the environment (or Airflow connections in a
deployment); the embedded server's passwords are in its password file (embedded.passfile),
which its URLs name instead of carrying a password.
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


DBT_STEPS = ("report", "cosmos", "cosmos_watcher")


def dbt_step() -> str:
    """How the warehouse DAG runs dbt (`LW_DBT_STEP`): `report` (default), one `dbt build`
    then a task per model reporting its outcome; `cosmos`, one astronomer-cosmos `dbt
    build --select <model>` task per model; `cosmos_watcher`, Cosmos' watcher mode.
    docs/benchmark.md compares them."""
    value = os.environ.get("LW_DBT_STEP", "report")
    if value not in DBT_STEPS:
        raise ConfigurationError(f"LW_DBT_STEP={value!r}: expected one of {', '.join(DBT_STEPS)}")
    return value


class ConfigurationError(RuntimeError):
    pass


def _number(env: str, default: str, kind=float, minimum: float = 0):
    text = os.environ.get(env, default)
    try:
        value = kind(text)
    except ValueError:
        raise ConfigurationError(f"{env} must be a number, got {text!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{env} must be at least {minimum}, got {value}")
    return value


def _names(env: str, default: str) -> frozenset[str]:
    return frozenset(n.strip() for n in os.environ.get(env, default).split(",") if n.strip())


# --- landing-zone deliveries (docs/sources.md, "How this project applies the contract")


def lookback_days() -> int:
    """A run also loads the date folders of this many days before its own dates that are
    new or changed since their last load (a late delivery): `LW_LOOKBACK_DAYS`, default 7."""
    return _number("LW_LOOKBACK_DAYS", "7", int)


def settle_seconds() -> float:
    """A date folder without a `_SUCCESS` marker is loaded once nothing in it has changed
    for this long (a file still being written is not read): `LW_SETTLE_SECONDS`, default 60."""
    return _number("LW_SETTLE_SECONDS", "60")


def success_marker_sources() -> frozenset[str]:
    """Sources that write a `_SUCCESS` marker into each complete date folder: their folders
    load only once it is there (`LW_SUCCESS_MARKER_SOURCES`, comma-separated, default none)."""
    return _names("LW_SUCCESS_MARKER_SOURCES", "")


def daily_entities() -> frozenset[str]:
    """`source/entity` delivered for every day (the contract's cadence), whose missing date
    folder fails the raw gate: `LW_DAILY_ENTITIES`, default web/events,marketing/ad_spend."""
    return _names("LW_DAILY_ENTITIES", "web/events,marketing/ad_spend")


def missing_grace_days() -> int:
    """A daily entity's folder for date D is missing (a raw gate error) once the run's end
    is more than this many days after D's end: `LW_MISSING_GRACE_DAYS`, default 1 (a run
    for D does not yet require D's folder; the next day's run does)."""
    return _number("LW_MISSING_GRACE_DAYS", "1", int)


def max_line_bytes() -> int:
    """A line of a landing file longer than this many bytes (its line end not counted) is
    never read whole: the record is quarantined with its first bytes (`LW_MAX_LINE_BYTES`,
    default 16 MiB, 16777216)."""
    return _number("LW_MAX_LINE_BYTES", str(16 << 20), int, minimum=1)


def max_bad_records_pct() -> float:
    """A file with more than this share of its records quarantined is reported by the raw
    gate (the source likely changed its format): `LW_MAX_BAD_RECORDS_PCT`, default 5."""
    return _number("LW_MAX_BAD_RECORDS_PCT", "5")


# Severity settings of raw-gate expectations: `error` blocks the run, `warning` reports.
SEVERITY_SETTINGS = {
    "LW_REJECTED_FILE_SEVERITY": "error",  # a file rejected whole in a delivery since the last build
    "LW_BAD_RECORDS_SEVERITY": "error",  # a file above LW_MAX_BAD_RECORDS_PCT quarantined
    "LW_NULL_UPDATED_AT_SEVERITY": "warning",  # shop rows without updated_at
    "LW_CLV_FIT_SEVERITY": "error",  # the CLV models' fit did not converge (marts gate)
}


def gate_severity(setting: str) -> str:
    """`error` or `warning`: the value of one of SEVERITY_SETTINGS."""
    value = os.environ.get(setting, SEVERITY_SETTINGS[setting]).strip().lower()
    if value not in ("error", "warning"):
        raise ConfigurationError(f"{setting} must be error or warning, got {value!r}")
    return value


# --- nothing hangs: timeouts (issue 24) ------------------------------------------------


def connect_timeout_seconds() -> int:
    """How long a connection to the warehouse or the shop may take to open
    (`LW_CONNECT_TIMEOUT_SECONDS`, default 10): a server that accepts and never answers
    fails the task instead of holding it."""
    return _number("LW_CONNECT_TIMEOUT_SECONDS", "10", int, minimum=1)


def statement_timeout_seconds() -> int:
    """The longest statement the project runs on the shop or the warehouse, dbt's models
    included (`LW_STATEMENT_TIMEOUT_SECONDS`, default 1800; lifecycle_warehouse.connections,
    dbt_runner.profile_env)."""
    return _number("LW_STATEMENT_TIMEOUT_SECONDS", "1800", int, minimum=1)


def task_timeout_minutes() -> int:
    """Every task of every DAG fails after this many minutes (`LW_TASK_TIMEOUT_MINUTES`,
    default 120: a full build of 100,000 customers' year took 14 minutes)."""
    return _number("LW_TASK_TIMEOUT_MINUTES", "120", int, minimum=1)


def warehouse_run_timeout_hours() -> float:
    """A warehouse DAG run fails after this many hours, its end_build teardown still running
    (`LW_WAREHOUSE_RUN_TIMEOUT_HOURS`, default 6)."""
    return _number("LW_WAREHOUSE_RUN_TIMEOUT_HOURS", "6", float, minimum=0.1)


def clv_annual_discount_rate() -> float:
    """The annual rate that discounts predicted_clv_365d in `customer_clv` (money expected
    in t years counts 1 / (1 + rate)^t): `LW_CLV_ANNUAL_DISCOUNT_RATE`, default 0.10."""
    return _number("LW_CLV_ANNUAL_DISCOUNT_RATE", "0.10")


def start_date() -> str:
    """The start date of every DAG (`LW_START_DATE`, default 1900-01-01): no backfill can
    reach before it (Airflow creates such runs without tasks), so it is early by default;
    scheduled runs still start from the latest interval (catchup is off)."""
    return os.environ.get("LW_START_DATE", "1900-01-01")


def alert_url() -> str | None:
    """Where alerts go (`LW_ALERT_URL`): an Apprise URL (`json://host:port/path`, `slack://…`,
    `mailto://…`; several separated by spaces or commas). Unset or empty: no alerts."""
    return os.environ.get("LW_ALERT_URL", "").strip() or None


def _embedded_url(database: str, variable: str, role: str) -> str:
    from lifecycle_warehouse import embedded

    url = embedded.url(pgdata_dir(), database, role)
    if url is None:
        raise ConfigurationError(
            f"{variable} is not set and the embedded PostgreSQL server in {pgdata_dir()} is not "
            f"running. Start it with `make up` (or set {variable} to a PostgreSQL URL)."
        )
    return url


def warehouse_url() -> str:
    """libpq URL of the warehouse database (`WAREHOUSE_URL`, else the embedded `warehouse` as
    its owner role `warehouse_owner`, never a superuser): what the DAGs, dbt and `lw` use."""
    from lifecycle_warehouse.embedded import OWNER_ROLE

    return os.environ.get("WAREHOUSE_URL") or _embedded_url("warehouse", "WAREHOUSE_URL", OWNER_ROLE)


def warehouse_admin_url() -> str:
    """Where roles and grants are administered (the BI role): the embedded server's
    superuser, else WAREHOUSE_URL itself (its role must then be allowed to create roles,
    or the role created beforehand as docker-compose's init does)."""
    from lifecycle_warehouse.embedded import SUPERUSER

    return os.environ.get("WAREHOUSE_URL") or _embedded_url("warehouse", "WAREHOUSE_URL", SUPERUSER)


def shop_db_url() -> str:
    """libpq URL of the shop's operational database (`SHOP_DB_URL`, else the embedded `shop`
    as `shop_reader`, which may only read). The pipeline only ever reads the shop."""
    from lifecycle_warehouse.embedded import SHOP_READER_ROLE

    return os.environ.get("SHOP_DB_URL") or _embedded_url("shop", "SHOP_DB_URL", SHOP_READER_ROLE)


def shop_writer_url() -> str:
    """Where the simulator writes the shop it simulates: `SHOP_DB_URL` when set (the
    simulator refuses a shop it did not create), else the embedded `shop` as its owner."""
    from lifecycle_warehouse.embedded import SHOP_OWNER_ROLE

    return os.environ.get("SHOP_DB_URL") or _embedded_url("shop", "SHOP_DB_URL", SHOP_OWNER_ROLE)
