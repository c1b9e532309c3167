"""Someone is told: one alert per failure, through Airflow's notifier mechanism (the Apprise
provider's AppriseNotifier), to the URL of `LW_ALERT_URL` (any Apprise URL: `json://`,
`slack://`, `mailto://` …). Unset: no alert, and nothing is sent anywhere.

- A failed task (retries exhausted; a retry is no failure) and a failed quality gate (its
  task fails at once with the gate's summary): `TaskFailureAlert`, every task's
  `on_failure_callback` (orchestration.DEFAULT_ARGS). It names the DAG, the task, the run,
  the try, the reason (the exception's first lines) and the command to rerun.
- A rejected file (the ingestion run goes on without it): `alert_rejected_files`, called by
  the file-ingestion DAG's `summarize` task, one alert per run listing the rejected files.
- A stale source: a daily entity (`LW_DAILY_ENTITIES`) whose folder is missing
  `LW_MISSING_GRACE_DAYS` after its date fails the raw gate, naming the entity and the day:
  the gate's alert is the stale source's alert.

Building a notifier touches nothing: the URL is read, and the message built, only when an
alert is sent (DAG files import this module at parse time). An alert that cannot be
delivered is logged; it never changes a task's outcome.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from airflow.providers.apprise.notifications.apprise import AppriseNotifier
from apprise import NotifyType

from lifecycle_warehouse import settings

log = logging.getLogger(__name__)

# The DAGs `lw pipeline --dag` runs (cli.INGESTION_DAGS + WAREHOUSE_DAG; not imported from
# the CLI, which needs a database driver, at parse time).
PIPELINE_DAGS = ("crm_ingest", "web_ingest", "marketing_ingest", "shop_ingest", "warehouse")
LW = ".venv/bin/lw"
REASON_LINES = 25
REASON_CHARS = 3000


def send(title: str, body: str, notify_type: NotifyType = NotifyType.FAILURE,
         context: Mapping[str, Any] | None = None) -> bool:
    """Send one alert to LW_ALERT_URL with Airflow's AppriseNotifier; False when unset or
    when it could not be delivered (logged)."""
    url = settings.alert_url()
    if not url:
        return False
    notifier = _Plain(body=body, title=title, notify_type=notify_type, config=url)
    try:
        notifier.notify(dict(context or {}))
    except Exception:  # an alert must never change the outcome of what it reports
        log.exception("could not send the alert %r to LW_ALERT_URL", title)
        return False
    log.info("alert sent: %s", title)
    return True


class _Plain(AppriseNotifier):
    """AppriseNotifier whose body is sent as written: an error message may contain `{{`,
    which Jinja must not render."""

    template_fields: Sequence[str] = ()


class TaskFailureAlert(AppriseNotifier):
    """`on_failure_callback` of every task: one alert when the task fails for good (Airflow
    calls on_retry_callback, not this, for a try that will be retried). Does nothing when
    LW_ALERT_URL is unset."""

    template_fields: Sequence[str] = ()

    def __init__(self):
        super().__init__(body="", notify_type=NotifyType.FAILURE)

    def notify(self, context):
        url = settings.alert_url()
        if not url:
            return
        title, body = task_failure_message(context)
        self.title, self.body, self.config = title, body, url
        super().notify(context)
        log.info("alert sent: %s", title)


def task_failure_message(context: Mapping[str, Any]) -> tuple[str, str]:
    """(title, body) of a failed task's alert, from the task's Airflow context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    map_index = getattr(ti, "map_index", None)
    task = task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"
    run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", "?")
    try_number = getattr(ti, "try_number", None)
    max_tries = getattr(ti, "max_tries", None)
    tries = f"{try_number}" + (f" of {max_tries + 1}" if isinstance(max_tries, int) and try_number else "")
    reason = describe_reason(context.get("exception"))
    title = f"[lifecycle-warehouse] {dag_id}.{task} failed"
    lines = [
        f"DAG: {dag_id}",
        f"Task: {task}",
        f"Run: {run_id}",
        f"Try: {tries}",
        "Reason:",
        *("    " + line for line in reason.splitlines()),
        "Rerun, once fixed:",
        *("    " + command for command in rerun_commands(context, dag_id, task_id)),
    ]
    return title, "\n".join(lines)


def describe_reason(error: Any) -> str:
    """`Type: message` of the exception, its first REASON_LINES lines (a gate's summary
    names the failing expectations there)."""
    if error is None:
        return "(no exception: the task was failed from outside, e.g. a timeout or a lost worker; see its log)"
    if isinstance(error, BaseException):
        message = str(error).strip()
        text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    else:
        text = str(error).strip()
    lines = text.splitlines()
    if len(lines) > REASON_LINES:
        lines = lines[:REASON_LINES] + [f"… ({len(lines) - REASON_LINES} more lines in the task log)"]
    text = "\n".join(lines)
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS] + " … (cut; see the task log)"


def context_dates(context: Mapping[str, Any]) -> tuple[date, date] | None:
    """The business dates [start, end) of the run (orchestration.run_dates: its
    date_from/date_to, its triggering Asset events, or its data interval), or None."""
    from lifecycle_warehouse.orchestration import run_dates

    params = dict(getattr(context.get("dag_run"), "conf", None) or {})
    params.update({k: v for k, v in dict(context.get("params") or {}).items() if v is not None})
    try:
        events = context.get("triggering_asset_events")
    except Exception:
        events = None
    for attempt in (events, None):
        try:
            return run_dates(params, context.get("data_interval_start"), context.get("data_interval_end"), attempt)
        except Exception:
            continue
    return None


def rerun_commands(context: Mapping[str, Any], dag_id: str, task_id: str) -> list[str]:
    """How to rerun: `lw pipeline` over the run's dates for the project's DAGs (every load
    is idempotent), and Airflow's `tasks clear` of the failed task and those after it in
    this run (for a scheduler that runs the DAGs)."""
    commands = []
    dates = context_dates(context)
    if dates is not None and dag_id in PIPELINE_DAGS:
        start, end = dates
        last = end - timedelta(days=1)
        commands.append(f"{LW} pipeline --from {start.isoformat()} --to {last.isoformat()} --dag {dag_id}")
    words = ["airflow", "tasks", "clear", dag_id, "--task-regex", f"^{task_id}$", "--downstream"]
    logical_date = context.get("logical_date") or getattr(context.get("dag_run"), "logical_date", None)
    if logical_date is not None:
        stamp = logical_date.isoformat()
        words += ["--start-date", stamp, "--end-date", stamp]
    else:
        words.append("--only-failed")
    words.append("--yes")
    commands.append(" ".join(shlex.quote(w) for w in words))
    return commands


def rejected_files(results: Sequence[Sequence[Mapping[str, Any]]]) -> list[tuple[str, str]]:
    """(file, reason) of every rejected file in load_entity's results (a list per entity of
    deliveries, each with its files)."""
    return [(str(f["file"]), str(f.get("error") or "rejected"))
            for per_entity in results for delivery in per_entity
            for f in delivery.get("files", ()) if f.get("status") == "rejected"]


def rejected_files_message(source: str, files: Sequence[tuple[str, str]], dag_id: str, run_id: str,
                           dates: tuple[date, date] | None) -> tuple[str, str]:
    """(title, body) of the one alert of an ingestion run that rejected files."""
    title = f"[lifecycle-warehouse] {dag_id}: {len(files)} file(s) of {source} rejected"
    lines = [f"DAG: {dag_id}", "Task: summarize", f"Run: {run_id}",
             f"Reason: {len(files)} file(s) rejected (the rest of each delivery loaded; "
             "see raw.load_audit). Deliver them again, fixed:"]
    lines += [f"    {path}: {reason.splitlines()[0] if reason else 'rejected'}" for path, reason in files[:50]]
    if len(files) > 50:
        lines.append(f"    … and {len(files) - 50} more (raw.load_audit)")
    lines.append("Rerun, once delivered again:")
    if dates is not None:
        start, end = dates
        lines.append(f"    {LW} pipeline --from {start.isoformat()} --to {(end - timedelta(days=1)).isoformat()} "
                     f"--dag {dag_id}")
    else:
        lines.append(f"    airflow dags trigger {dag_id}")
    return title, "\n".join(lines)


def alert_rejected_files(source: str, results: Sequence[Sequence[Mapping[str, Any]]], dag_id: str,
                         run_id: str, dates: tuple[date, date] | None) -> bool:
    """One alert listing the files an ingestion run rejected (none: no alert). True if sent."""
    files = rejected_files(results)
    if not files:
        return False
    title, body = rejected_files_message(source, files, dag_id, run_id, dates)
    return send(title, body, NotifyType.WARNING)
