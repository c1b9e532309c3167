"""The data tests of the event tables on a planned daily run (dbt_project/macros/
incremental.sql, get_where_subquery), on a real PostgreSQL with real `dbt test` runs:

- with the plan's recompute_from, the tests of stg_web__events, stg_crm__email_events and
  int_web__events read only the rows of date folders from that date on: a bad row of an
  older folder (already tested by an earlier build) is not read again;
- a bad row of a folder from that date on fails the run;
- without the var (an unplanned run) every row is tested, and the older bad rows fail;
- tests of other models are not restricted.

Runtime: ~40 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from lifecycle_warehouse import dbt_runner
from lifecycle_warehouse.bootstrap import bootstrap
from tests.integration.test_dbt_incremental import LIFECYCLE_FIXTURE, _dbt

DELIVERED_THROUGH = "2024-06-20"
RECOMPUTE_FROM = "2024-06-20"  # the newest folder: the one a daily run has just loaded
EVENT_MODELS = ("stg_web__events", "stg_crm__email_events", "int_web__events")
OTHER_MODEL = "stg_crm__survey_responses"


def _dbt_test(url: str, workdir: Path, recompute_from: str | None) -> set[str]:
    """`dbt test` of the event models (and one other model); the names of the failed tests."""
    args = ["test", "--select", *EVENT_MODELS, OTHER_MODEL]
    if recompute_from:
        args += ["--vars", json.dumps({"recompute_from": recompute_from})]
    env = {"DBT_TARGET_PATH": str(workdir / "target"), "DBT_LOG_PATH": str(workdir / "logs")}
    dbt_runner.run(args, url=url, check=False, env=env)
    results = json.loads((workdir / "target" / "run_results.json").read_text())["results"]
    assert len(results) > 20, "every data test of the selected models ran"
    tests = [r for r in results if r["unique_id"].startswith("test.")]  # the project's hooks are results too
    return {r["unique_id"].split(".")[2] for r in tests if r["status"] != "pass"}


def _blank_one_row(conn: psycopg.Connection, table: str, column: str, folder_condition: str) -> None:
    """Set `column` to NULL on one row of `table` whose date folder matches the condition."""
    updated = conn.execute(
        f"update {table} set {column} = null where ctid = "
        f"(select ctid from {table} where _dt {folder_condition} order by _dt limit 1)"
    ).rowcount
    assert updated == 1, (table, folder_condition)


def test_a_planned_run_tests_the_event_tables_from_its_oldest_new_folder_on(warehouse_url, tmp_path):
    bootstrap(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(LIFECYCLE_FIXTURE.read_text())
        conn.execute(f"call lifecycle_dev.deliver('{DELIVERED_THROUGH}')")
    _dbt(["seed"], warehouse_url, tmp_path)
    _dbt(["run", "--select", *EVENT_MODELS, OTHER_MODEL], warehouse_url, tmp_path)
    assert _dbt_test(warehouse_url, tmp_path, recompute_from=None) == set()

    # bad rows in folders older than recompute_from, as if they had been tested by an
    # earlier build and then broken (the raw rows are read through the staging views)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        _blank_one_row(conn, "raw.web_events", "event_name", f"< '{RECOMPUTE_FROM}'")
        _blank_one_row(conn, "raw.crm_email_events", "event_type", f"< '{RECOMPUTE_FROM}'")
        _blank_one_row(conn, "intermediate.int_web__events", "session_id", f"< '{RECOMPUTE_FROM}'")
        _blank_one_row(conn, "raw.crm_survey_responses", "contact_id", f"< '{RECOMPUTE_FROM}'")
    old_failures = {
        "not_null_stg_web__events_event_name",
        "not_null_stg_crm__email_events_event_type",
        "not_null_int_web__events_session_id",
    }
    other_failure = "not_null_stg_crm__survey_responses_contact_id"

    # a planned run reads the event tables from recompute_from on; other models whole
    assert _dbt_test(warehouse_url, tmp_path, recompute_from=RECOMPUTE_FROM) == {other_failure}
    # an unplanned run reads every row
    assert _dbt_test(warehouse_url, tmp_path, recompute_from=None) == old_failures | {other_failure}

    # a bad row of a folder the planned run must test
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        _blank_one_row(conn, "raw.web_events", "anonymous_id", f">= '{RECOMPUTE_FROM}'")
    assert _dbt_test(warehouse_url, tmp_path, recompute_from=RECOMPUTE_FROM) == {
        other_failure,
        "not_null_stg_web__events_anonymous_id",
    }
