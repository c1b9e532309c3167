"""Ingestion into the warehouse's `raw` schema.

- `files`: landing-zone date folders (CSV / JSONL, optionally gzipped) → `raw.<source>_<entity>`,
  validated in SQL against `contract`, bad records to `raw.quarantine`, one `raw.load_audit`
  row per file.
- `shop`: incremental extraction of the shop's operational database → `raw.shop_<table>`.

Nothing here touches a database at import time (Airflow imports these modules while parsing DAGs).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict


class SourceUnavailableError(RuntimeError):
    """A database the ingestion needs cannot be reached; the message names the setting to fix."""


def describe_url(url: str) -> str:
    """A libpq URL without its password, for error messages and logs."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable URL>"
    shown = ("host", "port", "dbname", "user")
    return " ".join(f"{key}={parts[key]}" for key in shown if parts.get(key))


# TCP keepalives: a peer that vanished (a network cut, a killed server) is noticed in about a
# minute instead of the kernel's two hours.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def connection_defaults(url: str) -> dict[str, Any]:
    """Timeouts and keepalives for a connection to `url`, unless the URL sets them itself:
    connect_timeout (settings.connect_timeout_seconds), statement_timeout
    (settings.statement_timeout_seconds, as a session option) and TCP keepalives."""
    from lifecycle_warehouse import settings

    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        given = {}
    defaults: dict[str, Any] = {"connect_timeout": settings.connect_timeout_seconds(), **KEEPALIVES}
    defaults = {key: value for key, value in defaults.items() if key not in given}
    if "statement_timeout" not in str(given.get("options", "")):
        timeout = f"-c statement_timeout={settings.statement_timeout_seconds() * 1000}"
        defaults["options"] = f"{given['options']} {timeout}" if given.get("options") else timeout
    return defaults


def connect(url: str, variable: str, **kwargs: Any) -> psycopg.Connection:
    """Connect with the project's timeouts (`connection_defaults`), turning a failure into an
    error that names the setting (e.g. SHOP_DB_URL) and where it points, never the password."""
    try:
        return psycopg.connect(url, **{**connection_defaults(url), **kwargs})
    except psycopg.OperationalError as exc:
        message = str(exc).strip()
        password = _password(url)
        if password:
            message = message.replace(password, "***")
        raise SourceUnavailableError(
            f"cannot connect to the database given by {variable} ({describe_url(url)}): {message}"
        ) from None


def _password(url: str) -> str | None:
    try:
        return conninfo_to_dict(url).get("password") or None
    except psycopg.ProgrammingError:
        return None
