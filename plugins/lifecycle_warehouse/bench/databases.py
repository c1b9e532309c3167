"""Databases of the bench's own server: URLs, copies and clean-up (the parts share them)."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql


def database_url(admin_url: str, database: str) -> str:
    """The URL of `database` on the server of `admin_url` (which names database postgres)."""
    return admin_url.replace("/postgres?", f"/{database}?")


def recreate(admin_url: str, name: str) -> str:
    """An empty database `name`; its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return database_url(admin_url, name)


def copy(admin_url: str, template: str, name: str) -> str:
    """A copy of database `template` as `name` (a file copy: seconds; nobody may be connected
    to the template); its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(template)))
    return database_url(admin_url, name)


def drop(admin_url: str, names: Iterable[str]) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
