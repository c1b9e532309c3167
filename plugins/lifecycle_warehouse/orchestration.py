"""What every DAG of the project shares: default arguments, the daily timetable, the
Assets that chain ingestion to the warehouse, and how a task finds the dates it covers.

Nothing here touches a database: DAG files import it at parse time.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Param

from lifecycle_warehouse import settings
from lifecycle_warehouse.alerts import TaskFailureAlert

# One start date for all DAGs, early by default (LW_START_DATE): Airflow creates a run
# whose logical date is before its DAG's start date without any task, so a late start date
# would make backfills of older history succeed without loading anything. Catchup is off:
# the scheduler still starts from the latest interval.
START_DATE = pendulum.parse(settings.start_date(), tz="UTC")

# A daily run at 00:00 UTC covers the previous day: data interval [D, D+1).
# (Airflow 3's default for cron strings has no data interval, so it is set explicitly.)
DAILY = CronDataIntervalTimetable("0 0 * * *", timezone="UTC")

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    # Short by default for local runs (a failed task would otherwise stall `make pipeline`
    # for minutes); deployments set LW_RETRY_DELAY_SECONDS, e.g. 300. A retry waits twice
    # as long as the one before (transient errors: a database restarting, a network cut);
    # data errors (a failed quality gate) fail at once without retries.
    "retry_delay": timedelta(seconds=int(os.environ.get("LW_RETRY_DELAY_SECONDS", "10"))),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    # Nothing hangs: a task stuck on a silent server fails and is retried.
    "execution_timeout": timedelta(minutes=settings.task_timeout_minutes()),
    # Someone is told: one alert (LW_ALERT_URL, an Apprise URL) when a task fails for good,
    # with the reason and the command to rerun; without LW_ALERT_URL it does nothing.
    "on_failure_callback": TaskFailureAlert(),
}

# A run normally loads its data interval. `date_from`/`date_to` (inclusive) let one run
# cover a range instead: `make pipeline FROM=… TO=…` and manual backfills use them so that
# 60 days cost one run, not 60.
RANGE_PARAMS = {
    "date_from": Param(
        None,
        type=["null", "string"],
        format="date",
        description="First business date to load (inclusive). Empty: the run's data interval.",
    ),
    "date_to": Param(
        None,
        type=["null", "string"],
        format="date",
        description="Last business date to load (inclusive). Empty: the run's data interval.",
    ),
}

# Emitted when a source's raw tables are loaded; the warehouse DAG is scheduled on them.
RAW_ASSETS: dict[str, Asset] = {
    source: Asset(name=f"raw_{source}", uri=f"warehouse://raw/{source}", group="raw")
    for source in ("crm", "web", "marketing", "shop")
}
ANALYTICS_ASSET = Asset(name="analytics", uri="warehouse://analytics", group="analytics")


def run_dates(
    params: dict | None, data_interval_start: datetime | None, data_interval_end: datetime | None,
    triggering_asset_events=None,
) -> tuple[date, date]:
    """Business dates [start, end) a run covers: the conf range when given; else, for a run
    started by Asset events (the warehouse DAG, scheduled on the raw Assets: Airflow 3 gives
    such a run no data interval), the range of dates the triggering ingestion runs loaded
    (each writes its dates into its event, `asset_event_extra`); else the run's data
    interval (whole days, UTC)."""
    params = params or {}
    date_from, date_to = params.get("date_from"), params.get("date_to")
    if date_from or date_to:
        if not (date_from and date_to):
            raise ValueError("date_from and date_to must be given together")
        start, last = date.fromisoformat(str(date_from)), date.fromisoformat(str(date_to))
        if last < start:
            raise ValueError(f"date_to ({last}) is before date_from ({start})")
        return start, last + timedelta(days=1)
    from_events = _dates_of_events(triggering_asset_events)
    if from_events is not None:
        return from_events
    if data_interval_start is None or data_interval_end is None:
        raise ValueError("the run has no data interval and no triggering Asset event with dates; "
                         "pass date_from and date_to")
    start = pendulum.instance(data_interval_start).in_tz("UTC").date()
    end = pendulum.instance(data_interval_end).in_tz("UTC").date()
    return start, max(end, start + timedelta(days=1))


def asset_event_extra(start: date, end: date) -> dict[str, str]:
    """What an ingestion run writes into its raw Asset's event: the business dates it
    loaded, [start, end) as inclusive `date_from` / `date_to`."""
    return {"date_from": start.isoformat(), "date_to": (end - timedelta(days=1)).isoformat()}


def _dates_of_events(triggering_asset_events) -> tuple[date, date] | None:
    """[start, end) spanning every triggering event's dates, or None without such events."""
    if not triggering_asset_events:
        return None
    starts, lasts = [], []
    for events in triggering_asset_events.values():
        for event in events:
            extra = getattr(event, "extra", None) or {}
            if extra.get("date_from") and extra.get("date_to"):
                starts.append(date.fromisoformat(str(extra["date_from"])))
                lasts.append(date.fromisoformat(str(extra["date_to"])))
    if not starts:
        return None
    return min(starts), max(lasts) + timedelta(days=1)


def interval_end_instant(end: date) -> datetime:
    """The instant a run's business dates end (exclusive), in UTC."""
    return datetime(end.year, end.month, end.day, tzinfo=pendulum.UTC)


def ingest_dag_kwargs(source: str, doc_md: str) -> dict:
    """Arguments shared by the ingestion DAGs: daily, one run at a time, range params."""
    return {
        "dag_id": f"{source}_ingest",
        "schedule": DAILY,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "default_args": DEFAULT_ARGS,
        "params": RANGE_PARAMS,
        "tags": ["ingestion", "raw", source],
        "doc_md": doc_md,
    }
