"""Shared fixtures: a throwaway embedded PostgreSQL server per test session.

It is a real PostgreSQL 16 (pgserver), started in a temporary folder and stopped at the
end; tests never touch the developer's own warehouse in `.warehouse/`.
"""

from __future__ import annotations

import logging
import uuid

import psycopg
import pytest
from psycopg import sql

from tests.sandbox import throwaway_server


# pgserver logs from an atexit hook, after pytest has closed the streams its log capture
# writes to ("--- Logging error ---" at the end of every run); its info lines add nothing.
logging.getLogger("pgserver").propagate = False


# `make test` runs on two pytest-xdist workers. Tests that share an expensive end-to-end run
# must share a worker (a session fixture is built once per worker): every test of tests/e2e/
# reads the shared e2e pipeline and runs in one group, the crash tests (their own instances,
# module fixtures) in another, side by side; the rest goes file by file to whichever worker
# is free. (xdist's own `--dist loadgroup` does not group under pytest 9.2: its node-id
# suffix is ignored, so the scheduler is chosen here.)
def worker_group(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    if path == "tests/e2e/test_crash.py":
        return "crash"
    if path.startswith("tests/e2e/"):
        return "e2e_pipeline"
    return path


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByTestGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return ByTestGroup(config, log)


@pytest.fixture(scope="session")
def pg_server():
    """URL of the `postgres` database of a throwaway server (unix socket only)."""
    with throwaway_server("lw-test-") as (_, admin_url):
        yield admin_url


def _fresh_database(admin_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return admin_url.replace("/postgres?", f"/{name}?")


@pytest.fixture
def warehouse_url(pg_server):
    """URL of a new, empty database for one test (the warehouse side)."""
    return _fresh_database(pg_server, "wh")


@pytest.fixture
def shop_url(pg_server):
    """URL of a new, empty database for one test (the shop side)."""
    return _fresh_database(pg_server, "shop")
