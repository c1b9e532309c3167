"""Connections to PostgreSQL that cannot hang: every connection the project opens to the
warehouse or the shop gets a connect timeout, a statement timeout and TCP keepalives
(settings: LW_CONNECT_TIMEOUT_SECONDS, LW_STATEMENT_TIMEOUT_SECONDS), unless its URL sets
them itself. dbt's are in dbt_project/profiles.yml; the quality gate's SQLAlchemy URL is
built by quality.gate.sqlalchemy_url from `connection_defaults`."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from lifecycle_warehouse import settings

# TCP keepalives: a peer that vanished (a network cut, a killed server) is noticed in about a
# minute instead of the kernel's two hours.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def statement_timeout_option() -> str:
    return f"-c statement_timeout={settings.statement_timeout_seconds() * 1000}"


def timeout_parameters() -> dict[str, Any]:
    """libpq parameters every connection gets (the statement timeout goes into `options`)."""
    return {"connect_timeout": settings.connect_timeout_seconds(), **KEEPALIVES}


def connection_defaults(url: str) -> dict[str, Any]:
    """Timeouts and keepalives for a connection to `url`, unless the URL sets them itself:
    connect_timeout, statement_timeout (as a session option, after the URL's own options)
    and TCP keepalives."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        given = {}
    defaults = {key: value for key, value in timeout_parameters().items() if key not in given}
    if "statement_timeout" not in str(given.get("options", "")):
        timeout = statement_timeout_option()
        defaults["options"] = f"{given['options']} {timeout}" if given.get("options") else timeout
    return defaults


def connect(url: str, **kwargs: Any) -> psycopg.Connection:
    """psycopg.connect with `connection_defaults`; an `options` argument is added to them."""
    params = connection_defaults(url)
    if "options" in kwargs and "options" in params:
        kwargs["options"] = f"{params.pop('options')} {kwargs['options']}"
    return psycopg.connect(url, **{**params, **kwargs})
