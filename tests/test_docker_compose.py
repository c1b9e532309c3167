"""docker-compose.yaml follows Airflow 3's official CeleryExecutor layout, adds a separate
warehouse PostgreSQL, mounts the project's folders, and holds no secret."""

from __future__ import annotations

import re

import yaml

from lifecycle_warehouse import settings

COMPOSE = settings.PROJECT_ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = {
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
    "airflow-worker", "airflow-triggerer", "airflow-init",
}


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_services():
    services = _compose()["services"]
    assert AIRFLOW_SERVICES | {"postgres", "redis", "warehouse-db"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["warehouse-db"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")


def test_celery_executor_and_separate_databases():
    env = _compose()["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "@warehouse-db:5432/warehouse" in env["WAREHOUSE_URL"]


def test_project_folders_mounted_in_every_airflow_service():
    services = _compose()["services"]
    for name in AIRFLOW_SERVICES:
        targets = {v.split(":")[1] for v in services[name]["volumes"]}
        for folder in ("dags", "plugins", "dbt_project", "expectations"):
            assert f"/opt/airflow/{folder}" in targets, f"{name} does not mount {folder}/"


def _environment_values(compose: dict):
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
        for key, value in items:
            yield name, key, str(value)


def test_no_secret_in_compose_file():
    """Every password or secret is a ${VARIABLE} from .env, never a literal."""
    for service, key, value in _environment_values(_compose()):
        if re.search(r"PASSWORD|SECRET", key):
            assert value.startswith("${"), f"{service}: {key} is a literal"
        for password in re.findall(r"://[^:/@]+:([^@]*)@", value):
            assert password == "" or password.startswith("${"), f"{service}: literal password in {key}"


def test_env_example_documents_every_variable():
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE.read_text()))
    example = (settings.PROJECT_ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^(\w+)=", example, re.M))
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"


def test_superset_reads_the_warehouse_as_bi_reader_on_loopback_only():
    """The `superset` service of issue 23: the same assets as `make bi`, the warehouse as
    bi_reader, its port published on 127.0.0.1 only."""
    service = _compose()["services"]["superset"]
    assert service["build"]["dockerfile"] == "bi/Dockerfile"
    assert service["environment"]["WAREHOUSE_URL"].startswith("postgresql://bi_reader:${BI_READER_PASSWORD}@warehouse-db")
    assert service["ports"] == ["127.0.0.1:8088:8088"]
    dockerfile = (settings.PROJECT_ROOT / "bi" / "Dockerfile").read_text()
    for needed in ("bi/requirements.txt", "bi/constraints.txt", "bi/superset_config.py", "bi/superset "):
        assert needed in dockerfile, needed
    assert "python -m lifecycle_warehouse.bi import" in (settings.PROJECT_ROOT / "bi" / "docker-entrypoint.sh").read_text()


def test_every_published_port_is_on_loopback():
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
