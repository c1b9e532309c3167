"""A throwaway instance of the whole project for end-to-end tests: its own embedded
PostgreSQL, Airflow home, landing zone and truth file under one temporary folder, driven
through the same `lw` commands as `make demo`.

One session-scoped run serves every end-to-end test (a full run costs minutes); the
dates are in `scenario.py`.
"""

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

from tests.e2e.scenario import CUSTOMERS, PIPELINE_LAST, SEED, SHOP_IDS, SIM_DAYS, START


@dataclass
class Instance:
    root: Path
    env: dict[str, str]

    @property
    def landing(self) -> Path:
        return Path(self.env["LANDING_DIR"])

    @property
    def truth_file(self) -> Path:
        return Path(self.env["LW_TRUTH_FILE"])

    def lw(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "lifecycle_warehouse.cli", *args],
            env=self.env, capture_output=True, text=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"lw {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout (tail) ---\n{result.stdout[-8000:]}\n--- stderr (tail) ---\n{result.stderr[-8000:]}"
            )
        return result

    def url(self, database: str) -> str:
        return embedded.url(self.root / "pgdata", database)


@pytest.fixture(scope="session")
def instance():
    root = Path(tempfile.mkdtemp(prefix="lw-e2e-", dir="/tmp"))
    os.chmod(root, 0o755)
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "WAREHOUSE_URL", "SHOP_DB_URL", "LW_", "LANDING_DIR", "BI_READER"))
    }
    env.update(
        LW_PGDATA=str(root / "pgdata"),
        AIRFLOW_HOME=str(root / "airflow"),
        LANDING_DIR=str(root / "landing"),
        LW_TRUTH_FILE=str(root / "truth.json"),
        LW_RETRY_DELAY_SECONDS="1",
        BI_READER_PASSWORD="e2e-bi-reader-password",
    )
    inst = Instance(root, env)
    inst.lw("up")
    yield inst
    inst.lw("stop", check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pipeline(instance):
    """Sources simulated and the whole pipeline run once, for real: returns the instance
    and the output of `lw pipeline`."""
    instance.lw("sources", "--start", str(START), "--days", str(SIM_DAYS),
                "--customers", str(CUSTOMERS), "--seed", str(SEED), "--shop-ids", SHOP_IDS)
    result = instance.lw("pipeline", "--from", str(START), "--to", str(PIPELINE_LAST))
    return instance, result
