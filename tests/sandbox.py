"""Throwaway environments the tests run the project in, so that no test touches the
developer's `.warehouse/`, `.airflow/` or landing zone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lifecycle_warehouse.runtime import airflow_bin

# What a test's environment drops from the developer's, so that it points only at its own folders.
PROJECT_VARIABLES = ("AIRFLOW", "WAREHOUSE_URL", "SHOP_DB_URL", "LW_", "LANDING_DIR", "BI_READER")


def project_env(root: Path, **overrides: str) -> dict[str, str]:
    """The environment of a whole instance of the project under `root`: its own embedded
    PostgreSQL, Airflow home, landing zone and truth file (driven through `lw` commands)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(PROJECT_VARIABLES)}
    env.update(
        LW_PGDATA=str(root / "pgdata"),
        AIRFLOW_HOME=str(root / "airflow"),
        LANDING_DIR=str(root / "landing"),
        LW_TRUTH_FILE=str(root / "truth.json"),
        LW_RETRY_DELAY_SECONDS="1",
    )
    env.update(overrides)
    return env


def airflow_with_dags(root: Path, dag_file: str, source: str, **overrides: str) -> dict[str, str]:
    """A migrated Airflow (SQLite metadata) under `root` whose only DAG file is `dag_file`
    with `source`: the environment to run `lifecycle_warehouse.airflow_runs` in."""
    (root / "dags").mkdir(parents=True, exist_ok=True)
    (root / "dags" / dag_file).write_text(source, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "LW_"))}
    env.update(
        AIRFLOW_HOME=str(root / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(root / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{root / 'airflow.db'}",
    )
    env.update(overrides)
    subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True, capture_output=True)
    return env
