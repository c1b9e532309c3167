"""The quality gate, for real in the warehouse DAG: bad data in a source fails the run,
names the failing expectation in the task log, and leaves `analytics` exactly as it was."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from lifecycle_warehouse import warehouse_tasks
from tests.e2e.scenario import PIPELINE_LAST, START

pytestmark = pytest.mark.e2e


def analytics_snapshot(url: str) -> dict[str, tuple[int, str]]:
    """Row count and checksum of every published table BI can read. (The data-quality
    views of `analytics` are left out: they are live views of the gate results, and
    showing the failed gate to BI is their purpose.)"""
    with psycopg.connect(url) as conn:
        relations = [r[0] for r in conn.execute(
            "select table_name from information_schema.tables "
            "where table_schema = 'analytics' and table_type = 'BASE TABLE' order by 1"
        )]
        snapshot = {}
        for relation in relations:
            table = sql.Identifier("analytics", relation)
            snapshot[relation] = conn.execute(
                sql.SQL("select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '') from {} t").format(table)
            ).fetchone()
        return snapshot


def test_published_marts_reach_analytics(pipeline):
    instance, result = pipeline
    assert "warehouse: success" in result.stdout
    snapshot = analytics_snapshot(instance.url("warehouse"))
    for relation in ("dim_customers", "fct_orders", "fct_lifecycle_transitions", "kpi_daily", "kpi_monthly",
                     "lifecycle_funnel", "cohort_retention", "channel_attribution"):
        assert snapshot.get(relation, (0,))[0] > 0, f"analytics.{relation} is empty or missing"
    assert warehouse_tasks.running_builds(instance.url("warehouse")) == [], "end_build ended the run"


def test_failed_gate_blocks_publish_and_keeps_analytics(pipeline):
    instance, _ = pipeline
    url = instance.url("warehouse")
    before = analytics_snapshot(url)
    bad_id = "e2e-nps-out-of-range"
    with psycopg.connect(url) as conn:
        # A source bug the loader did not catch, in a re-delivered folder (written straight
        # into raw, its load audit updated as the loader would): an NPS of 11. The raw gate
        # validates the deliveries loaded since the last successful build.
        dt, batch = conn.execute(
            """
            insert into raw.crm_survey_responses
                (response_id, contact_id, survey_type, score, submitted_at,
                 _batch_id, _dt, _file, _line_number, _loaded_at)
            select %s, contact_id, 'nps', 11, submitted_at, _batch_id, _dt, _file, 9999, _loaded_at
            from raw.crm_survey_responses where survey_type = 'nps' limit 1
            returning _dt, _batch_id
            """,
            (bad_id,),
        ).fetchone()
        redelivered = conn.execute(
            "update raw.load_audit set loaded_at = now(), rows_loaded = rows_loaded + 1"
            " where ctid = (select ctid from raw.load_audit where source = 'crm' and entity = 'survey_responses'"
            " and dt = %s and batch_id = %s and status = 'loaded' limit 1) returning ctid", (dt, batch)).fetchone()
        assert redelivered
    try:
        result = instance.lw("pipeline", "--from", str(START), "--to", str(PIPELINE_LAST), "--dag", "warehouse",
                             check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0, "the run must fail when an error-level expectation fails"
        assert "warehouse: failed" in output
        assert "crm_survey_responses" in output and "score" in output, "the log names the failing expectation"
        assert analytics_snapshot(url) == before, "analytics must stay exactly as it was"
        with psycopg.connect(url) as conn:
            attempts = conn.execute(
                "select count(*) from audit.gate_runs where stage = 'raw' and not success"
            ).fetchone()[0]
        assert attempts == 1, "a failed verdict is not retried (the same data fails the same way)"
        assert warehouse_tasks.running_builds(url) == [], "the failed run ended: manual builds may start"
    finally:
        with psycopg.connect(url) as conn:
            conn.execute("delete from raw.crm_survey_responses where response_id = %s", (bad_id,))
            conn.execute("update raw.load_audit set rows_loaded = rows_loaded - 1 where ctid = %s",
                         (redelivered[0],))
