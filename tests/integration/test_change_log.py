"""The change log of int_kpi__contributions (dbt_project/macros/change_log.sql), on a real
warehouse built by dbt from the lifecycle dev data:

- a full build logs "everything changed" for each consumer (kpi_daily, kpi_monthly,
  channel_attribution, cohort_retention), and their runs consume it;
- an incremental run of the contributions logs a changed record as it was (-1) and as it
  is (+1), once per consumer; an unchanged rerun logs nothing, nor does a change in the
  metadata columns alone (a record delivered again, unchanged, in a later folder);
- a consumer deletes only its own entries: the other consumer's stay until it runs (so a
  consumer that fails, or is not selected, still gets them).

The values the consumers compute from the log are checked by test_dbt_incremental.py
(incremental runs equal a full refresh). Runtime: ~60 s.
"""

from __future__ import annotations

import psycopg

from lifecycle_warehouse.bootstrap import bootstrap
from tests.integration.test_dbt_incremental import LIFECYCLE_FIXTURE, _dbt

LOG = "intermediate.int_kpi__contributions__changes"
CONSUMERS = ("channel_attribution", "cohort_retention", "kpi_daily", "kpi_monthly")


def _log(url: str) -> list[tuple[str, int, str | None, str | None]]:
    """(consumer, sign, contribution_id, date_day) of every logged change, in order."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"select consumer, sign, row_image ->> 'contribution_id', row_image ->> 'date_day'"
            f" from {LOG} order by change_id"
        ).fetchall()


def test_changes_are_logged_once_per_consumer_and_consumed_by_each(warehouse_url, tmp_path):
    bootstrap(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(LIFECYCLE_FIXTURE.read_text())
        conn.execute("call lifecycle_dev.deliver('2024-06-20')")

    _dbt(["seed"], warehouse_url, tmp_path)
    _dbt(["run", "--select", "+int_kpi__contributions"], warehouse_url, tmp_path)
    assert sorted(_log(warehouse_url)) == [(consumer, 0, None, None) for consumer in CONSUMERS]

    _dbt(["run"], warehouse_url, tmp_path)
    assert _log(warehouse_url) == [], "the consumers' full builds consumed the log"

    # a survey answer delivered again in the latest folder, submitted 5 days earlier
    with psycopg.connect(warehouse_url) as conn, conn.transaction():
        response_id, submitted_date = conn.execute(
            """
            insert into raw.crm_survey_responses (
                response_id, contact_id, survey_type, score, submitted_at, comment,
                _batch_id, _dt, _file, _line_number, _loaded_at
            )
            select
                response_id, contact_id, survey_type, score, submitted_at - interval '5 days', comment,
                _batch_id, date '2024-06-20', 'crm/survey_responses/dt=2024-06-20/responses.csv', 9999,
                _loaded_at + interval '1 day'
            from raw.crm_survey_responses
            where _dt < '2024-06-20'
            order by response_id
            limit 1
            returning response_id, (submitted_at at time zone 'UTC')::date::text
            """
        ).fetchone()
        # as the file loader logs the folder it loads: the next build's plan reprocesses it
        conn.execute(
            "insert into raw.load_audit (batch_id, source, entity, dt, file, status, rows_read, rows_loaded)"
            " values (gen_random_uuid(), 'crm', 'survey_responses', '2024-06-20',"
            " 'crm/survey_responses/dt=2024-06-20/responses.csv', 'loaded', 1, 1)"
        )
        old_date = conn.execute(
            "select date_day::text from intermediate.int_kpi__contributions where contribution_id = %s",
            (f"survey_response:{response_id}",),
        ).fetchone()[0]
    contribution_id = f"survey_response:{response_id}"
    assert old_date != submitted_date

    _dbt(["run", "--select", "int_kpi__contributions"], warehouse_url, tmp_path)
    expected = [
        entry
        for consumer in CONSUMERS
        for entry in ((consumer, -1, contribution_id, old_date), (consumer, 1, contribution_id, submitted_date))
    ]
    assert sorted(_log(warehouse_url)) == expected

    _dbt(["run", "--select", "int_kpi__contributions"], warehouse_url, tmp_path)
    assert sorted(_log(warehouse_url)) == expected, "an unchanged rerun logs nothing more"

    _dbt(["run", "--select", "kpi_daily"], warehouse_url, tmp_path)
    assert sorted(_log(warehouse_url)) == [entry for entry in expected if entry[0] != "kpi_daily"], (
        "kpi_daily consumed its own changes only"
    )

    _dbt(["run", "--select", "kpi_monthly", "channel_attribution", "cohort_retention"],
         warehouse_url, tmp_path)
    assert _log(warehouse_url) == []

    # the same answer delivered again, unchanged, a day later: only its metadata (`_last_dt`,
    # the folder of the version used) changes, which no consumer reads: written, not logged
    with psycopg.connect(warehouse_url) as conn, conn.transaction():
        conn.execute(
            """
            insert into raw.crm_survey_responses (
                response_id, contact_id, survey_type, score, submitted_at, comment,
                _batch_id, _dt, _file, _line_number, _loaded_at
            )
            select
                response_id, contact_id, survey_type, score, submitted_at, comment,
                _batch_id, date '2024-06-21', 'crm/survey_responses/dt=2024-06-21/responses.csv', 1,
                _loaded_at + interval '1 day'
            from raw.crm_survey_responses
            where response_id = %s and _dt = '2024-06-20'
            """,
            (response_id,),
        )
        conn.execute(
            "insert into raw.load_audit (batch_id, source, entity, dt, file, status, rows_read, rows_loaded)"
            " values (gen_random_uuid(), 'crm', 'survey_responses', '2024-06-21',"
            " 'crm/survey_responses/dt=2024-06-21/responses.csv', 'loaded', 1, 1)"
        )
    _dbt(["run", "--select", "int_kpi__contributions"], warehouse_url, tmp_path)
    with psycopg.connect(warehouse_url) as conn:
        stored = conn.execute(
            "select date_day::text, _last_dt::text from intermediate.int_kpi__contributions"
            " where contribution_id = %s", (contribution_id,)).fetchone()
    assert stored == (submitted_date, "2024-06-21"), "the new metadata is written"
    assert _log(warehouse_url) == [], "a change in metadata columns alone is not logged"
