"""Scale-out on an existing engine (issue 24, point 7): the project's DAGs on Airflow's
CeleryExecutor, with two `airflow celery worker` processes and a real Redis broker on
127.0.0.1, give the same `analytics` as the local run.

The local run is the end-to-end session's (`pipeline` fixture: `lw pipeline`, every DAG
run in-process by `airflow dags test`). This test replays its sequence on a second
throwaway instance — same simulation and seed, the shop first extracted up to
SHOP_FIRST_EXTRACT_LAST, then `lw sources --shop-only` and the planted refund, then every
DAG over the pipeline's range — but started by `lw local-airflow start --executor celery
--workers 2`: each run is triggered through the REST API with the conf `lw pipeline`
passes (`date_from`, `date_to`), in the same order, and waited for. Then:

- `analytics` has the same row hashes as the local run's (tests/fingerprint.py);
- every task instance ran through Celery (its `external_executor_id` is a Celery task
  that the result backend records as SUCCESS), and tasks ran on both workers (the task
  instances' `hostname` names the two workers);
- nothing listens beyond loopback, and after `lw stop` no process that the test saw
  (Airflow, workers, their task processes, Redis) is left.

The warehouse DAG is scheduled on the four raw Assets: under a real scheduler the
ingestion runs would start it by themselves (with the same dates). To replay `lw
pipeline`'s runs exactly, it is paused while they run (Airflow then queues no Asset event
for it; the test checks that each ingestion run emitted its raw Asset), then unpaused and
triggered as `lw pipeline` runs it.

Redis is Debian's `redis-server` (installed here when missing, as root may), on a free
loopback port with a password and no persistence, stopped at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import psycopg
import pytest

from lifecycle_warehouse import embedded

from tests.e2e.conftest import Instance, _plant_refund_of_a_cancelled_order
from tests.e2e.scenario import CUSTOMERS, PIPELINE_LAST, SEED, SHOP_FIRST_EXTRACT_LAST, SHOP_IDS, SIM_DAYS, START
from tests.fingerprint import analytics_fingerprint, differences
from tests.sandbox import LocalAirflowProcesses, debian_program, free_port, project_env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.celery,
    pytest.mark.filterwarnings("ignore:.*XDG_RUNTIME_DIR"),
]

WORKERS = 2
INGESTION_DAGS = ("crm_ingest", "web_ingest", "marketing_ingest", "shop_ingest")  # lw pipeline's order
RAW_ASSETS = {"raw_crm", "raw_web", "raw_marketing", "raw_shop"}
ADMIN_PASSWORD = "celery-test-admin-password"
RUN_TIMEOUT_SECONDS = {"warehouse": 600}
INGEST_TIMEOUT_SECONDS = 300


# --------------------------------------------------------------------------- Redis


def redis_server_binary() -> str:
    return debian_program("redis-server", "redis-server", "the Celery test", recommends=False)


@dataclass
class Redis:
    process: subprocess.Popen
    port: int
    password: str = field(repr=False)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"


@pytest.fixture
def redis_broker():
    """A redis-server of its own: 127.0.0.1 on a free port, a password, no persistence."""
    binary = redis_server_binary()
    folder = Path(tempfile.mkdtemp(prefix="lw-redis-", dir="/tmp"))
    password = secrets.token_urlsafe(24)
    port = free_port()
    config = folder / "redis.conf"  # the password in a 0600 file, not on the command line
    config.write_text(f"bind 127.0.0.1\nport {port}\nrequirepass {password}\nsave \"\"\nappendonly no\n"
                      f"dir {folder}\nprotected-mode yes\ndaemonize no\n", encoding="utf-8")
    os.chmod(config, 0o600)
    log = open(folder / "redis.log", "wb")
    proc = subprocess.Popen([binary, str(config)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    server = Redis(proc, port, password)
    try:
        import redis

        deadline = time.monotonic() + 30
        while True:
            try:
                if redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2).ping():
                    break
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start:\n{(folder / 'redis.log').read_text()[-3000:]}")
                time.sleep(0.2)
        # The password is required: without it, no command.
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- the Celery instance


@dataclass
class CeleryInstance(Instance, LocalAirflowProcesses):
    port: int = 0
    seen: dict[int, float] = field(default_factory=dict)  # pid -> creation time of every process seen

    @property
    def local_dir(self) -> Path:
        return Path(self.env["AIRFLOW_HOME"]) / "local"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def celery_instance(redis_broker):
    root = Path(tempfile.mkdtemp(prefix="lw-celery-", dir="/tmp"))
    os.chmod(root, 0o755)
    port = free_port()
    env = project_env(
        root,
        BI_READER_PASSWORD="e2e-bi-reader-password",
        AIRFLOW_PORT=str(port),
        AIRFLOW_ADMIN_PASSWORD=ADMIN_PASSWORD,
        LW_CELERY_BROKER_URL=redis_broker.url,
        # No scheduled run (they would load today's empty interval): the DAGs' start date is
        # in the future; runs triggered with date_from/date_to run all the same.
        LW_START_DATE="2100-01-01",
        AIRFLOW__CORE__PARALLELISM="4",
    )
    inst = CeleryInstance(root, env, port=port)
    inst.lw("up")
    try:
        yield inst
    finally:
        try:
            inst.lw("local-airflow", "stop", check=False)
        finally:
            inst.kill_everything()  # whatever the stop left (or could not find)
            embedded.stop(root / "pgdata")
            shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- REST API


def _client(inst: CeleryInstance) -> httpx.Client:
    response = httpx.post(f"{inst.api}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD},
                          timeout=30)
    assert response.status_code == 201, response.text
    token = response.json()["access_token"]
    return httpx.Client(base_url=inst.api, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _wait_for_dags(client: httpx.Client, inst: CeleryInstance, expected: set[str]) -> None:
    deadline = time.monotonic() + 180
    dags: dict = {}
    while time.monotonic() < deadline:
        dags = {d["dag_id"]: d for d in client.get("/api/v2/dags", params={"limit": 100}).json()["dags"]}
        if expected <= set(dags):
            return
        time.sleep(1)
    pytest.fail(f"the DAGs were not parsed: {sorted(dags)}{inst.process_logs()}")


def _run_report(client: httpx.Client, dag_id: str, run_id: str, inst: CeleryInstance) -> str:
    run = quote(run_id, safe="")
    parts = []
    tis = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances", params={"limit": 500}).json()
    for ti in tis.get("task_instances", []):
        parts.append(f"\n--- {ti['task_id']}[{ti.get('map_index')}]: {ti['state']} (try {ti['try_number']}) "
                     f"on {ti.get('hostname')}")
        if ti["state"] not in ("success", None) and ti["try_number"]:
            params = {"full_content": "true"}
            if ti.get("map_index", -1) >= 0:
                params["map_index"] = ti["map_index"]
            log = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{ti['task_id']}/logs/"
                             f"{ti['try_number']}", params=params, headers={"Accept": "application/json"})
            parts.append(log.text[-4000:])
    return "".join(parts) + inst.process_logs()


def _run(client: httpx.Client, inst: CeleryInstance, dag_id: str, date_from: date, date_to: date) -> str:
    """Trigger one run with `lw pipeline`'s conf and wait for it to succeed; its run id."""
    body = {"logical_date": None, "conf": {"date_from": date_from.isoformat(), "date_to": date_to.isoformat()}}
    response = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)
    # The dag-processor marks a DAG stale when one parse of its file fails (the warehouse
    # DAG reads dbt's manifest in dbt_project/target/, which any `dbt parse` in the work tree
    # rewrites) and brings it back at the next parse: wait for that, and say so.
    deadline = time.monotonic() + 180
    while response.status_code == 404 and time.monotonic() < deadline:
        errors = client.get("/api/v2/importErrors").json().get("import_errors", [])
        print(f"\n! {dag_id} is not triggerable now ({response.text}); import errors: "
              f"{[(e['filename'], e['stack_trace'][-300:]) for e in errors]}")
        time.sleep(5)
        response = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)
    assert response.status_code == 200, f"{response.text}{inst.process_logs()}"
    run_id = response.json()["dag_run_id"]
    timeout = RUN_TIMEOUT_SECONDS.get(dag_id, INGEST_TIMEOUT_SECONDS)
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        inst.remember_processes()
        state = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}").json()["state"]
        if state in ("success", "failed"):
            break
        time.sleep(2)
    assert state == "success", (f"{dag_id} run {run_id} is {state} after at most {timeout} s"
                                f"{_run_report(client, dag_id, run_id, inst)}")
    return run_id


# --------------------------------------------------------------------------- the test


def test_celery_executor_gives_the_local_runs_analytics(pipeline, celery_instance, redis_broker):
    local, _ = pipeline
    expected = analytics_fingerprint(local.url("warehouse"))
    assert expected and any(expected.values()), "the local run published nothing"

    inst = celery_instance
    timings: dict[str, float] = {}
    clock = time.monotonic()
    started = clock

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = round(now - clock, 1)
        clock = now

    simulation = ("--start", str(START), "--days", str(SIM_DAYS), "--customers", str(CUSTOMERS),
                  "--seed", str(SEED), "--shop-ids", SHOP_IDS)
    inst.lw("sources", *simulation, "--shop-as-of", str(SHOP_FIRST_EXTRACT_LAST))
    lap("sources")

    out = inst.lw("local-airflow", "start", "--executor", "celery", "--workers", str(WORKERS)).stdout
    lap("start")
    assert "CeleryExecutor" in out and f"{WORKERS} Celery workers" in out, out
    assert redis_broker.password not in out, "the broker's password was printed"
    workers = [f"celery-worker-{i}" for i in range(1, WORKERS + 1)]
    assert {p.stem for p in inst.local_dir.glob("*.pid")} == {
        "scheduler", "dag-processor", "triggerer", "api-server", *workers}

    # Nothing of the local Airflow listens beyond loopback, and only the api-server listens.
    listening = []
    for proc in inst.remember_processes():
        try:
            listening += [c.laddr for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    assert {(addr.ip, addr.port) for addr in listening} == {("127.0.0.1", inst.port)}, listening

    with _client(inst) as client:
        _wait_for_dags(client, inst, {*INGESTION_DAGS, "warehouse"})
        # The ingestion runs would start the warehouse DAG through its Assets: hold it.
        response = client.patch("/api/v2/dags/warehouse", json={"is_paused": True})
        assert response.status_code == 200 and response.json()["is_paused"], response.text
        lap("DAGs parsed")

        # The shop's first extraction (lw pipeline --dag shop_ingest --from START --to SHOP_FIRST_EXTRACT_LAST)
        run_ids = {_run(client, inst, "shop_ingest", START, SHOP_FIRST_EXTRACT_LAST): "shop_ingest"}
        lap("first shop extraction")
        inst.lw("sources", *simulation, "--shop-only")
        _plant_refund_of_a_cancelled_order(inst.url("shop"))
        lap("shop's final state")

        # lw pipeline --from START --to PIPELINE_LAST: the ingestion DAGs, then the warehouse
        for dag_id in INGESTION_DAGS:
            run_ids[_run(client, inst, dag_id, START, PIPELINE_LAST)] = dag_id
        lap("ingestion runs")
        # Each ingestion run emitted its raw Asset (with its dates), which would have started
        # the warehouse DAG: paused, it queued nothing.
        assets = {a["name"]: a["id"] for a in client.get("/api/v2/assets", params={"limit": 100}).json()["assets"]}
        for run_id, dag_id in run_ids.items():
            asset = f"raw_{dag_id.removesuffix('_ingest')}"
            events = client.get("/api/v2/assets/events", params={
                "asset_id": assets[asset], "source_run_id": run_id, "limit": 10}).json()["asset_events"]
            assert [e["source_dag_id"] for e in events] == [dag_id], (asset, run_id, events)
        assert client.get("/api/v2/dags/warehouse/assets/queuedEvents").json()["queued_events"] == []
        response = client.patch("/api/v2/dags/warehouse", json={"is_paused": False})
        assert response.status_code == 200 and not response.json()["is_paused"], response.text
        run_ids[_run(client, inst, "warehouse", START, PIPELINE_LAST)] = "warehouse"
        lap("warehouse run")
        runs = client.get("/api/v2/dags/~/dagRuns", params={"limit": 100}).json()["dag_runs"]
        assert sorted(r["dag_run_id"] for r in runs) == sorted(run_ids), \
            f"runs other than the triggered ones: {[(r['dag_id'], r['dag_run_id']) for r in runs]}"

    # --- the same analytics as the local run
    actual = analytics_fingerprint(inst.url("warehouse"))
    assert differences(expected, actual) == []

    # --- every task ran through Celery, on both workers. (A Celery task ends a moment after
    # its task instance is marked successful: the last ones may still say STARTED.)
    deadline = time.monotonic() + 60
    while True:
        with psycopg.connect(inst.url("airflow")) as conn:
            rows = conn.execute(
                "select ti.dag_id, ti.task_id, ti.map_index, ti.state, ti.hostname, m.status "
                "from task_instance ti left join celery_taskmeta m on m.task_id = ti.external_executor_id "
                "where ti.run_id = any(%s)", (list(run_ids),)).fetchall()
        if all(r[5] == "SUCCESS" for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert rows and {r[0] for r in rows} == {*INGESTION_DAGS, "warehouse"}, rows
    not_celery = [r for r in rows if r[3] != "success" or r[5] != "SUCCESS"]
    assert not_celery == [], f"task instances not run successfully by a Celery worker: {not_celery[:20]}"
    host = socket.gethostname()
    per_worker = {h: sum(1 for r in rows if r[4] == h) for h in {r[4] for r in rows}}
    assert set(per_worker) == {f"{w}@{host}" for w in workers}, per_worker

    # --- stop: every process gone (Airflow's, the workers', their task processes)
    inst.remember_processes()
    stopped = inst.lw("stop").stdout
    lap("stop")
    assert "local Airflow stopped" in stopped and all(w in stopped for w in workers), stopped
    assert inst.still_alive() == [], inst.still_alive()
    assert not list(inst.local_dir.glob("*.pid"))
    print(f"\nCelery run ({WORKERS} workers): {time.monotonic() - started:.0f} s {timings}; "
          f"{len(rows)} task instances: {per_worker}")
