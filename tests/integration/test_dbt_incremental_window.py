"""Which date folders an incremental run reprocesses (dbt_project/macros/incremental.sql,
incremental_cutoff), on a real PostgreSQL with real dbt runs of the lifecycle dev data:

- after a successful build of every model, the plan is exact: a run reprocesses the
  folders delivered since that build's start, from the oldest of them (the plan's
  recompute_from), not a look-back window of older folders;
- nothing delivered since: it reprocesses nothing, and the table stays as it was;
- with no successful build to plan from, it falls back to the late-data look-back
  (var late_data_lookback_days) before the latest folder the model holds, and deletes
  stored events by key too (a folder re-delivered before that window may have moved an
  event's first delivery into it); a planned run looks stored events up in its window only.

The window is read from the SQL dbt ran (target/run), where the cutoff is a literal.
tests/integration/test_dbt_incremental.py checks that such runs equal a full refresh.

Runtime: ~30 s.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from lifecycle_warehouse.bootstrap import bootstrap
from tests.integration.test_dbt_incremental import LIFECYCLE_FIXTURE, _dbt

MODEL = "int_web__events"


def _cutoffs(workdir: Path) -> set[str]:
    """The window starts written into the statements of the last run of MODEL."""
    run_sql = next((workdir / "target" / "run").rglob(f"{MODEL}.sql")).read_text()
    return set(re.findall(r"_dt >= '([^']+)'::date", run_sql))


def _deletes(workdir: Path) -> int:
    """The deletes in the last run of MODEL: the window's, and, on a run without an exact
    plan, the one by key (meta keys_in_window: a planned run looks stored events up in its
    window only, the table has no index on event_id)."""
    run_sql = next((workdir / "target" / "run").rglob(f"{MODEL}.sql")).read_text()
    return len(re.findall(r"\bdelete from\b", run_sql))


def _events(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f"select count(*) from intermediate.{MODEL}").fetchone()[0]


def test_an_incremental_run_reprocesses_the_folders_delivered_since_the_last_successful_build(
    warehouse_url, tmp_path
):
    bootstrap(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(LIFECYCLE_FIXTURE.read_text())
        conn.execute("call lifecycle_dev.deliver('2024-06-20')")
    _dbt(["seed"], warehouse_url, tmp_path)
    _dbt(["run"], warehouse_url, tmp_path)  # every model: the build later runs plan from

    # folders 06-21 … 06-23 delivered: the window starts at the oldest of them, not at the
    # look-back (06-17, three days before the latest folder the model holds)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("call lifecycle_dev.deliver('2024-06-23')")
    _dbt(["run", "--select", MODEL], warehouse_url, tmp_path)
    assert _cutoffs(tmp_path) == {"2024-06-21"}
    assert _deletes(tmp_path) == 1

    # a build of every model succeeds; after it nothing is delivered: nothing to reprocess
    _dbt(["run"], warehouse_url, tmp_path)
    stored = _events(warehouse_url)
    _dbt(["run", "--select", MODEL], warehouse_url, tmp_path)
    assert _cutoffs(tmp_path) == {"infinity"}
    assert _events(warehouse_url) == stored

    # no successful build to plan from: the look-back before the latest folder held (06-23)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("update raw.warehouse_builds set built_at = null")
    _dbt(["run", "--select", MODEL], warehouse_url, tmp_path)
    assert _cutoffs(tmp_path) == {"2024-06-20"}
    assert _deletes(tmp_path) == 2
    assert _events(warehouse_url) == stored
