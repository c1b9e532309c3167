"""A throwaway instance of the whole project for end-to-end tests: its own embedded
PostgreSQL, Airflow home, landing zone and truth file under one temporary folder, driven
through the same `lw` commands as `make demo`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from lifecycle_warehouse import embedded


@dataclass
class Instance:
    root: Path
    env: dict[str, str]

    @property
    def landing(self) -> Path:
        return Path(self.env["LANDING_DIR"])

    def lw(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "lifecycle_warehouse.cli", *args],
            env=self.env, capture_output=True, text=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"lw {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout (tail) ---\n{result.stdout[-6000:]}\n--- stderr (tail) ---\n{result.stderr[-6000:]}"
            )
        return result

    def url(self, database: str) -> str:
        return embedded.url(self.root / "pgdata", database)


@pytest.fixture(scope="module")
def instance():
    root = Path(tempfile.mkdtemp(prefix="lw-e2e-", dir="/tmp"))
    os.chmod(root, 0o755)
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "WAREHOUSE_URL", "SHOP_DB_URL", "LW_", "LANDING_DIR"))
    }
    env.update(
        LW_PGDATA=str(root / "pgdata"),
        AIRFLOW_HOME=str(root / "airflow"),
        LANDING_DIR=str(root / "landing"),
        LW_TRUTH_FILE=str(root / "truth.json"),
        LW_RETRY_DELAY_SECONDS="1",
    )
    inst = Instance(root, env)
    inst.lw("up")
    yield inst
    inst.lw("stop", check=False)
    shutil.rmtree(root, ignore_errors=True)
