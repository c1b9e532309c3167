"""`lw local-airflow start --executor celery --workers N`: the settings and commands it
derives, without starting anything (tests/e2e/test_celery_executor.py runs it for real)."""

from __future__ import annotations

import pytest

from lifecycle_warehouse import local_airflow, settings


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    for name in ("LW_AIRFLOW_EXECUTOR", "LW_CELERY_WORKERS", "LW_CELERY_CONCURRENCY", "LW_CELERY_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_local_executor_is_the_default(home, monkeypatch):
    assert local_airflow.requested_executor() == "local"
    assert local_airflow.components() == local_airflow.COMPONENTS
    monkeypatch.setenv("LW_AIRFLOW_EXECUTOR", "CeleryExecutor")
    assert local_airflow.requested_executor() == "celery"
    assert local_airflow.requested_executor("local") == "local"  # --executor wins
    with pytest.raises(settings.ConfigurationError, match="executor must be one of"):
        local_airflow.requested_executor("kubernetes")


def test_worker_counts(home, monkeypatch):
    assert local_airflow.requested_workers() == 2
    assert local_airflow.requested_workers(3) == 3
    assert local_airflow.components("celery", 2)[-2:] == ("celery-worker-1", "celery-worker-2")
    monkeypatch.setenv("LW_CELERY_WORKERS", "0")
    with pytest.raises(settings.ConfigurationError, match="between 1 and"):
        local_airflow.requested_workers()
    monkeypatch.setenv("LW_CELERY_CONCURRENCY", "two")
    with pytest.raises(settings.ConfigurationError, match="whole number"):
        local_airflow.worker_concurrency()


def test_celery_needs_a_broker(home):
    with pytest.raises(settings.ConfigurationError, match="LW_CELERY_BROKER_URL"):
        local_airflow.broker_url()


def test_worker_command_serves_no_logs_and_names_the_worker(home, monkeypatch):
    command = local_airflow._command("celery-worker-2", 8080)
    assert command[1:3] == ["celery", "worker"]
    assert "--skip-serve-logs" in command  # its log server would bind 0.0.0.0:8793
    assert command[command.index("--celery-hostname") + 1] == "celery-worker-2@%h"
    assert command[command.index("--concurrency") + 1] == "2"
    env = local_airflow.worker_environment({"A": "1"}, "celery-worker-2")
    assert env["LW_WORKER_HOSTNAME"].startswith("celery-worker-2@")
    monkeypatch.setenv("LW_WORKER_HOSTNAME", env["LW_WORKER_HOSTNAME"])
    assert local_airflow.worker_hostname() == env["LW_WORKER_HOSTNAME"]


def test_stop_finds_the_workers_of_any_start(home):
    local_dir = local_airflow._ensure_local_dir()
    for name in ("celery-worker-10", "celery-worker-2", "celery-worker-1"):
        (local_dir / f"{name}.pid").write_text("999999999\n0\n")
    assert local_airflow.known_components()[-3:] == ("celery-worker-1", "celery-worker-2", "celery-worker-10")
    assert local_airflow.running() == {}  # those pids run nothing
    assert local_airflow.recorded_executor() == ("local", 0)
