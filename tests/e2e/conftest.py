"""A throwaway instance of the whole project for end-to-end tests: its own embedded
PostgreSQL, Airflow home, landing zone and truth file under one temporary folder, driven
through the same `lw` commands as `make demo`.

One session-scoped run serves every end-to-end test (a full run costs minutes); the
dates are in `scenario.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from lifecycle_warehouse import embedded

from tests.e2e.kpi_reference import read_subscription_rows
from tests.sandbox import project_env
from tests.e2e.scenario import CUSTOMERS, PIPELINE_LAST, SEED, SHOP_FIRST_EXTRACT_LAST, SHOP_IDS, SIM_DAYS, START


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

    @property
    def first_extract_subscriptions(self) -> Path:
        """The shop's subscriptions as the first extraction saw them (the shop keeps no history)."""
        return self.root / "shop-subscriptions-first-extract.json"

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

    def url(self, database: str, role: str = embedded.SUPERUSER) -> str:
        return embedded.url(self.root / "pgdata", database, role)


@pytest.fixture(scope="session")
def instance():
    root = Path(tempfile.mkdtemp(prefix="lw-e2e-", dir="/tmp"))
    os.chmod(root, 0o755)
    inst = Instance(root, project_env(root, BI_READER_PASSWORD="e2e-bi-reader-password"))
    inst.lw("up")
    yield inst
    inst.lw("stop", check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pipeline(instance):
    """Sources simulated and the whole pipeline run, for real: returns the instance and the
    output of `lw pipeline`.

    The shop is extracted twice, as a real one is: first as it was at the end of
    SHOP_FIRST_EXTRACT_LAST (rows changed in place since, e.g. a plan upgraded, hold their
    older version then), then in its final state by the pipeline's own run; a refund of a
    cancelled order is planted before that run."""
    simulation = ("--start", str(START), "--days", str(SIM_DAYS), "--customers", str(CUSTOMERS),
                  "--seed", str(SEED), "--shop-ids", SHOP_IDS)
    instance.lw("sources", *simulation, "--shop-as-of", str(SHOP_FIRST_EXTRACT_LAST))
    instance.lw("pipeline", "--from", str(START), "--to", str(SHOP_FIRST_EXTRACT_LAST), "--dag", "shop_ingest")
    first_extract_end = datetime.combine(SHOP_FIRST_EXTRACT_LAST + timedelta(days=1), time(), timezone.utc)
    instance.first_extract_subscriptions.write_text(
        json.dumps(read_subscription_rows(instance.url("shop"), first_extract_end)), encoding="utf-8")
    instance.lw("sources", *simulation, "--shop-only")
    _plant_refund_of_a_cancelled_order(instance.url("shop"))
    result = instance.lw("pipeline", "--from", str(START), "--to", str(PIPELINE_LAST))
    return instance, result


def _plant_refund_of_a_cancelled_order(shop_url: str) -> None:
    """A refund of an order that was cancelled (a shop's manual correction): it must not
    lower net revenue, which never counted the order. Dated inside the pipeline's window."""
    refunded_at = datetime.combine(START + timedelta(days=12), time(12), timezone.utc)
    with psycopg.connect(shop_url, autocommit=True) as conn:
        order_id, total = conn.execute(
            "select order_id, total from public.orders where status = 'cancelled' and ordered_at < %s "
            "order by ordered_at desc, order_id limit 1", (refunded_at,),
        ).fetchone()
        conn.execute(
            "insert into public.refunds (refund_id, order_id, amount, reason, refunded_at, updated_at) "
            "values (%s, %s, %s, 'manual correction', %s, %s)",
            (PLANTED_REFUND_ID, order_id, total, refunded_at, refunded_at),
        )


PLANTED_REFUND_ID = "0e2e0000-0000-4000-8000-00000000f00d"
