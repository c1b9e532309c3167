"""`make airflow` (`lw local-airflow start|stop|status`): a real local Airflow — scheduler,
dag-processor, triggerer, api-server with LocalExecutor — on a throwaway instance of the
project (its own embedded PostgreSQL, AIRFLOW_HOME, landing zone and port under /tmp).

One test drives it through the REST API as a data engineer would through the UI: log in,
list the five DAGs, trigger a backfill of `crm_ingest` with `date_from`/`date_to`, wait
for it to succeed, see the `raw_crm` Asset event; then stop and check that nothing it
started is left. Whatever happens, the fixture kills every process it started.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import psycopg
import pytest

from lifecycle_warehouse import embedded

from tests.sandbox import LocalAirflowProcesses, free_port, project_env

pytestmark = [
    pytest.mark.e2e,
    # pgserver's lock file falls back to /tmp/runtime-<uid> when XDG_RUNTIME_DIR is unset: harmless.
    pytest.mark.filterwarnings("ignore:.*XDG_RUNTIME_DIR"),
]

COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
EXPECTED_DAGS = {"crm_ingest", "web_ingest", "marketing_ingest", "shop_ingest", "warehouse"}
START = date(2026, 9, 1)
DAYS = 2
RUN_TIMEOUT_SECONDS = 180
ENV_PASSWORD = "local-airflow-test-password"


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Instance(LocalAirflowProcesses):
    root: Path
    env: dict[str, str]
    port: int
    seen: dict[int, float] = field(default_factory=dict)  # pid -> creation time of every process seen
    timings: dict[str, float] = field(default_factory=dict)
    clock: float = field(default_factory=time.monotonic)

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.timings[name] = round(now - self.clock, 1)
        self.clock = now

    @property
    def local_dir(self) -> Path:
        return Path(self.env["AIRFLOW_HOME"]) / "local"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lw(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "lifecycle_warehouse.cli", *args],
                                env={**self.env, **(env or {})}, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"lw {' '.join(args)} exited {result.returncode}\n--- stdout ---\n"
                                 f"{result.stdout[-8000:]}\n--- stderr ---\n{result.stderr[-8000:]}"
                                 f"{self.process_logs()}")
        return result


@pytest.fixture
def instance():
    root = Path(tempfile.mkdtemp(prefix="lw-airflow-", dir="/tmp"))
    os.chmod(root, 0o755)
    port = free_port()
    env = project_env(
        root,
        AIRFLOW_PORT=str(port),
        # The DAGs are unpaused (the project's setting): with today's start date the scheduler
        # would start each ingestion DAG's latest daily run at once, and the warehouse DAG a
        # dbt build after them, minutes of CPU that this test does not need. A start date in
        # the future means no scheduled run; runs triggered with date_from/date_to still run.
        LW_START_DATE="2100-01-01",
        AIRFLOW__CORE__PARALLELISM="4",
    )
    inst = Instance(root, env, port)
    try:
        yield inst
    finally:
        try:
            inst.lw("local-airflow", "stop", check=False)
        finally:
            inst.kill_everything()  # whatever the stop left (or could not find)
            embedded.stop(root / "pgdata")
            shutil.rmtree(root, ignore_errors=True)


def _api(inst: Instance, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=inst.url, headers=headers, timeout=30)


def _token(inst: Instance, password: str) -> str:
    with _api(inst) as client:
        response = client.post("/auth/token", json={"username": "admin", "password": password})
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


def _run_report(client: httpx.Client, dag_id: str, run_id: str, inst: Instance) -> str:
    """The run's task instances and their logs, and the processes' logs: for a failure message."""
    run = quote(run_id, safe="")
    parts = []
    tis = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances", params={"limit": 100}).json()
    for ti in tis.get("task_instances", []):
        parts.append(f"\n--- {ti['task_id']}[{ti.get('map_index')}]: {ti['state']} (try {ti['try_number']})")
        if ti["state"] != "success" and ti["try_number"]:
            params = {"full_content": "true"}
            if ti.get("map_index", -1) >= 0:
                params["map_index"] = ti["map_index"]
            log = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{ti['task_id']}/logs/"
                             f"{ti['try_number']}", params=params, headers={"Accept": "application/json"})
            parts.append(log.text[-4000:])
    return "".join(parts) + inst.process_logs()


def test_local_airflow_runs_a_backfill_through_the_api(instance):
    inst = instance
    started = time.monotonic()
    inst.lw("up")
    inst.lw("sources", "--start", START.isoformat(), "--days", str(DAYS), "--customers", "30", "--seed", "7")
    inst.lap("up+sources")

    # --- start: URL and the generated login, printed once, in 0600 files
    out = inst.lw("local-airflow", "start").stdout
    inst.lap("start")
    inst.remember_processes()
    passwords = inst.local_dir / "passwords.json"
    password = json.loads(passwords.read_text())["admin"]
    assert inst.url in out and f"login: admin / {password}" in out, out
    for name in ("passwords.json", "jwt_secret", "secret_key"):
        assert stat.S_IMODE((inst.local_dir / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(inst.local_dir.stat().st_mode) == 0o700
    assert set(inst.main_processes()) == set(COMPONENTS)

    # Nothing listens beyond loopback (no log server on [::]:8793 / 8794): only the api-server.
    listening = []
    for proc in inst.remember_processes():
        try:
            listening += [(proc.name(), c.laddr) for c in proc.net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    assert listening and all(addr.ip == "127.0.0.1" for _, addr in listening), listening
    assert {addr.port for _, addr in listening} == {inst.port}, listening

    # --- a second start says so and does not start anything; AIRFLOW_ADMIN_PASSWORD sets the password
    again = inst.lw("local-airflow", "start", env={"AIRFLOW_ADMIN_PASSWORD": ENV_PASSWORD}).stdout
    assert "already running" in again and password not in again, again
    token = _token(inst, ENV_PASSWORD)
    with _api(inst) as client:
        assert client.post("/auth/token", json={"username": "admin", "password": password}).status_code == 401
    status = inst.lw("local-airflow", "status").stdout
    assert all(component in status for component in COMPONENTS) and "answers" in status, status

    with _api(inst, token) as client:
        # --- the five DAGs, once the dag-processor has parsed them
        deadline = time.monotonic() + 120
        while True:
            dags = {d["dag_id"]: d for d in client.get("/api/v2/dags", params={"limit": 100}).json()["dags"]}
            if EXPECTED_DAGS <= set(dags) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert set(dags) == EXPECTED_DAGS, f"{sorted(dags)}{inst.process_logs()}"
        assert not any(d["is_paused"] for d in dags.values()), dags
        inst.lap("second start, status, DAGs parsed")

        # --- a backfill of the simulated days, as from the UI's trigger form (params date_from / date_to)
        date_to = START + timedelta(days=DAYS - 1)
        response = client.post("/api/v2/dags/crm_ingest/dagRuns", json={
            "logical_date": None, "conf": {"date_from": START.isoformat(), "date_to": date_to.isoformat()},
        })
        assert response.status_code == 200, response.text
        run_id = response.json()["dag_run_id"]

        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        state = None
        while time.monotonic() < deadline:
            inst.remember_processes()
            state = client.get(f"/api/v2/dags/crm_ingest/dagRuns/{quote(run_id, safe='')}").json()["state"]
            if state in ("success", "failed"):
                break
            time.sleep(2)
        assert state == "success", (f"crm_ingest run {run_id} is {state} after "
                                    f"{RUN_TIMEOUT_SECONDS} s{_run_report(client, 'crm_ingest', run_id, inst)}")
        inst.lap("run")

        # --- the run loaded the simulated CRM folders …
        with psycopg.connect(embedded.url(inst.root / "pgdata", "warehouse")) as conn:
            loaded = conn.execute("select min(dt), max(dt), coalesce(sum(rows_loaded), 0) from raw.load_audit "
                                  "where source = 'crm' and status = 'loaded'").fetchone()
        assert loaded == (START, date_to, loaded[2]) and loaded[2] > 0, loaded

        # --- … and updated the raw_crm Asset, which the warehouse DAG is scheduled on
        assets = client.get("/api/v2/assets", params={"name_pattern": "raw_crm"}).json()["assets"]
        asset = next(a for a in assets if a["name"] == "raw_crm")
        assert {ref["dag_id"] for ref in asset.get("scheduled_dags", [])} == {"warehouse"}, asset
        events = client.get("/api/v2/assets/events", params={"asset_id": asset["id"]}).json()["asset_events"]
        ours = [e for e in events if e["source_dag_id"] == "crm_ingest" and e["source_run_id"] == run_id]
        assert ours, events
        # the dates it loaded, which the warehouse run it triggers covers (orchestration.run_dates)
        assert ours[0]["extra"] == {"date_from": START.isoformat(), "date_to": date_to.isoformat()}, ours

        # --- the UI's dependency graph: ingestion DAG → raw Asset → warehouse DAG
        graph = client.get("/ui/dependencies")
        assert graph.status_code == 200, graph.text
        labels = {node["id"]: node["label"] for node in graph.json()["nodes"]}
        edges = {(labels[e["source_id"]], labels[e["target_id"]]) for e in graph.json()["edges"]}
        for source in ("crm", "web", "marketing", "shop"):
            assert {(f"{source}_ingest", f"raw_{source}"), (f"raw_{source}", "warehouse")} <= edges, edges

    # --- `make stop` (lw stop): every process gone, pid files removed, the port free, then PostgreSQL
    inst.remember_processes()
    stopped = inst.lw("stop").stdout
    inst.lap("stop")
    assert "local Airflow stopped" in stopped and "embedded PostgreSQL stopped" in stopped, stopped
    assert inst.still_alive() == [], inst.still_alive()
    assert not list(inst.local_dir.glob("*.pid"))
    assert _port_is_free(inst.port)
    assert "not running" in inst.lw("local-airflow", "status", check=False).stdout
    print(f"local Airflow test: {time.monotonic() - started:.0f} s {inst.timings}")
