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


def connect(url: str, variable: str, **kwargs: Any) -> psycopg.Connection:
    """Connect with the project's timeouts (`connections.connect`), turning a failure into an
    error that names the setting (e.g. SHOP_DB_URL) and where it points, never the password."""
    from lifecycle_warehouse import connections

    try:
        return connections.connect(url, **kwargs)
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
