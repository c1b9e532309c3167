"""The settings the project keeps on its embedded server (embedded.SERVER_SETTINGS)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from lifecycle_warehouse import embedded


@pytest.fixture
def pgdata():
    folder = Path(tempfile.mkdtemp(prefix="lw-set-", dir="/tmp"))
    os.chmod(folder, 0o755)
    yield folder / "pgdata"
    embedded.stop(folder / "pgdata")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(sys.platform == "darwin", reason="no posix_fadvise: PostgreSQL accepts only 0")
def test_the_server_reads_ahead_and_keeps_it_at_every_start(pgdata):
    """effective_io_concurrency is set at the first start, and set again at a start after it
    was changed by hand (a new session sees it: the start reloads the configuration)."""
    def setting(url: str) -> str:
        # the postmaster applies a reload asynchronously: a session may start just before
        for _ in range(50):
            with psycopg.connect(url) as conn:
                value = conn.execute("show effective_io_concurrency").fetchone()[0]
            if value != "1":
                break
            time.sleep(0.1)
        return value

    url = embedded.start(pgdata)
    assert setting(url) == embedded.SERVER_SETTINGS["effective_io_concurrency"] != "1"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("alter system set effective_io_concurrency = 1")
        conn.execute("select pg_reload_conf()")
    embedded.stop(pgdata)
    url = embedded.start(pgdata)
    assert setting(url) == embedded.SERVER_SETTINGS["effective_io_concurrency"]
