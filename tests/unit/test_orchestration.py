"""Which business dates a run covers (orchestration.run_dates): a conf range, the dates the
ingestion runs that triggered it loaded (an Asset-triggered warehouse run has no data
interval in Airflow 3), or the data interval. Built with the task SDK's own accessor of
triggering Asset events, as a task receives it. No database."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

from lifecycle_warehouse.orchestration import RAW_ASSETS, asset_event_extra, run_dates


def events(*loaded: tuple[str, date, date]) -> TriggeringAssetEventsAccessor:
    """Triggering events of raw Assets, each written by an ingestion run that loaded
    [start, end)."""
    return TriggeringAssetEventsAccessor.build([
        AssetEventDagRunReferenceResult(
            asset={"name": RAW_ASSETS[source].name, "uri": RAW_ASSETS[source].uri, "extra": {}},
            extra=asset_event_extra(start, end), source_task_id="summarize", source_dag_id=f"{source}_ingest",
            source_run_id="scheduled__x", source_map_index=-1, source_aliases=[],
            timestamp=datetime(2026, 10, 2, 1, tzinfo=timezone.utc))
        for source, start, end in loaded
    ])


def test_an_asset_triggered_run_covers_the_dates_its_ingestion_runs_loaded():
    triggered = events(("crm", date(2026, 10, 1), date(2026, 10, 2)), ("web", date(2026, 10, 1), date(2026, 10, 2)),
                       ("marketing", date(2026, 9, 28), date(2026, 10, 2)), ("shop", date(2026, 10, 1), date(2026, 10, 2)))
    assert run_dates(None, None, None, triggered) == (date(2026, 9, 28), date(2026, 10, 2))


def test_a_conf_range_wins_over_the_events_and_the_events_over_the_interval():
    triggered = events(("crm", date(2026, 10, 1), date(2026, 10, 2)))
    interval = (datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert run_dates({"date_from": "2026-03-01", "date_to": "2026-03-05"}, *interval, triggered) == (
        date(2026, 3, 1), date(2026, 3, 6))
    assert run_dates({}, *interval, triggered) == (date(2026, 10, 1), date(2026, 10, 2))
    assert run_dates({}, *interval, events()) == (date(2026, 1, 1), date(2026, 1, 2))


def test_a_run_without_dates_says_how_to_give_them():
    with pytest.raises(ValueError, match="no data interval and no triggering Asset event with dates"):
        run_dates(None, None, None, events())


def test_the_event_extra_is_the_inclusive_range():
    assert asset_event_extra(date(2026, 10, 1), date(2026, 10, 3)) == {"date_from": "2026-10-01",
                                                                         "date_to": "2026-10-02"}
