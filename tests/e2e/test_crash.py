"""Crash tests (issue 24, point 5): `lw pipeline` is SIGKILLed at a chosen moment inside a file
load (its date folder's transaction, files COPYed), a shop upsert, a dbt model build and the
publish; two `lw pipeline` over the same range run at once.

The moment is chosen with a lock, not a sleep: the test holds a lock that conflicts with one
statement of the step (in its own transaction), waits until a backend of the pipeline is
blocked by it (`pg_blocking_pids`), checks that it is the expected statement, SIGKILLs the
process, and only then releases the lock. After each kill: `bi_reader` reads exactly the
version published before (row hashes) and `analytics.publications` did not move; raw holds
no partial date folder (every raw row belongs to a committed load whose audit counts match)
and the killed step's own table is as it was; no `__dbt_tmp` / `__dbt_backup` table is left;
no session of the killed process stays open.

Each kill is followed by the same command again (the next case's run is that rerun, killed
later; the last one runs to its end): `analytics` must then be identical, row hash for row
hash, to an uninterrupted run of the same command on a copy of the same instance. Two
`lw pipeline` started at once both succeed (the second waits for the first: pipeline_lock)
and end with the same `analytics`.

One small simulation (200 customers, 10 days) is built and published once over its first
days (the "last published version"); each scenario runs on a copy of it. The uninterrupted
reference and the two-at-once runs go in the background while the kills run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import psutil
import psycopg
import pytest
from lifecycle_warehouse import contract, warehouse_tasks
from lifecycle_warehouse.pipeline_lock import one_pipeline_at_a_time
from lifecycle_warehouse.quality.suites import MART_RELATIONS
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.e2e.conftest import Instance
from tests.fingerprint import analytics_fingerprint, differences
from tests.sandbox import project_env

pytestmark = [pytest.mark.e2e, pytest.mark.crash]

START = date(1998, 9, 1)
DAYS = 10
CUSTOMERS = 200
SEED = 7
FIRST_LAST = START + timedelta(days=6)  # the base instance publishes this range first
LAST = START + timedelta(days=DAYS - 1)
RANGE = ("--from", str(START), "--to", str(LAST))
BI_READER_PASSWORD = "crash-bi-reader-password"
# A step that is never reached fails the test instead of hanging it.
BLOCK_TIMEOUT = 900
RUN_TIMEOUT = 1200


# ----------------------------------------------------------------------------- instances


def _new_root(name: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"lw-crash-{name}-", dir="/tmp"))
    os.chmod(root, 0o755)
    return root


def _instance(root: Path) -> Instance:
    return Instance(root, project_env(root, BI_READER_PASSWORD=BI_READER_PASSWORD))


def bi_reader_url(instance: Instance) -> str:
    params = conninfo_to_dict(instance.url("warehouse"))
    params.update(user="bi_reader", password=BI_READER_PASSWORD)
    return make_conninfo(**params)


@pytest.fixture(scope="module")
def base():
    """Sources simulated and published once over START … FIRST_LAST, then stopped: the
    folder every scenario copies."""
    root = _new_root("base")
    instance = _instance(root)
    try:
        instance.lw("up")
        instance.lw("sources", "--start", str(START), "--days", str(DAYS), "--customers", str(CUSTOMERS),
                    "--seed", str(SEED))
        instance.lw("pipeline", "--from", str(START), "--to", str(FIRST_LAST))
    except BaseException:
        instance.lw("stop", check=False)
        shutil.rmtree(root, ignore_errors=True)
        raise
    instance.lw("stop")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def copy_of(base_root: Path, name: str):
    """A running instance whose warehouse, shop, Airflow metadata, landing zone and truth
    are a copy of the base's (its Airflow home is new: only logs and a config live there)."""
    root = _new_root(name)
    # the server's password file (secrets/) goes with its data: the copy has the same roles
    for part in ("pgdata", "secrets", "landing", "truth.json"):
        # cp -a keeps the owner (the `pgserver` OS user runs postgres when tests run as root)
        subprocess.run(["cp", "-a", str(base_root / part), str(root / part)], check=True)
    instance = _instance(root)
    try:
        instance.lw("up")
        yield instance
    finally:
        instance.lw("stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Pipeline:
    """`lw pipeline` over RANGE in the background, in its own process group."""

    instance: Instance
    name: str
    proc: subprocess.Popen = field(init=False)
    log: Path = field(init=False)

    def __post_init__(self):
        self.log = self.instance.root / f"lw-pipeline-{self.name}.out"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lifecycle_warehouse.cli", "pipeline", *RANGE],
                env=self.instance.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise AssertionError(f"lw pipeline ({self.name}) still ran after {timeout} s:\n{self.output()[-6000:]}")

    def succeed(self) -> str:
        code = self.wait()
        assert code == 0, f"lw pipeline ({self.name}) exited {code}:\n{self.output()[-8000:]}"
        return self.output()

    def kill_group(self) -> None:
        """SIGKILL `lw pipeline` and everything it started (Airflow's process, dbt)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(60)

    def kill_airflow_process(self) -> None:
        """SIGKILL the process running the DAGs (airflow_runs: its tasks, dbt included, run in
        it) and its children; `lw pipeline` itself lives on and must report the failure."""
        children = psutil.Process(self.proc.pid).children(recursive=True)
        runner = [p for p in children if "lifecycle_warehouse.airflow_runs" in " ".join(p.cmdline())]
        assert len(runner) == 1, f"expected one airflow_runs process, found {[p.cmdline() for p in children]}"
        victims = [runner[0], *runner[0].children(recursive=True)]
        for process in victims:
            process.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=30)


@contextmanager
def pipeline(instance: Instance, name: str):
    """A background `lw pipeline` that never outlives the block (a failed assertion kills it)."""
    run = Pipeline(instance, name)
    try:
        yield run
    finally:
        if run.proc.poll() is None:
            run.kill_group()


# ----------------------------------------------------------------------------- moments


@dataclass(frozen=True)
class Blocked:
    pid: int
    application: str
    query: str
    wrote: bool  # its transaction has written (it has a transaction id)


@contextmanager
def holding(url: str, statement: str):
    """A transaction of the test holding a lock (`statement`) until the block ends."""
    with psycopg.connect(url) as conn:
        conn.execute(statement)
        try:
            yield conn.info.backend_pid
        finally:
            conn.rollback()


def wait_until_blocked(url: str, holder: int, pipeline: Pipeline, expected: str) -> Blocked:
    """The pipeline's backend once it waits for the test's lock; its statement must match
    `expected` (a regular expression)."""
    deadline = time.monotonic() + BLOCK_TIMEOUT
    with psycopg.connect(url, autocommit=True) as watch:
        while True:
            row = watch.execute(
                "select pid, application_name, query, backend_xid is not null from pg_stat_activity"
                " where %s = any(pg_blocking_pids(pid))",
                (holder,),
            ).fetchone()
            if row:
                blocked = Blocked(*row)
                assert re.search(expected, blocked.query, re.IGNORECASE | re.DOTALL), (
                    f"the pipeline is blocked at an unexpected statement ({blocked.application}): {blocked.query[:500]}")
                return blocked
            if pipeline.proc.poll() is not None:
                raise AssertionError(f"lw pipeline ended ({pipeline.proc.returncode}) before reaching the step:\n"
                                     f"{pipeline.output()[-6000:]}")
            if time.monotonic() > deadline:
                pipeline.kill_group()
                raise AssertionError(f"the pipeline did not reach the step in {BLOCK_TIMEOUT} s:\n"
                                     f"{pipeline.output()[-6000:]}")
            time.sleep(0.2)


def wait_for_no_sessions(instance: Instance, timeout: float = 60) -> None:
    """Every session of the killed processes ends (with them their transactions and locks)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(instance.url("postgres"), autocommit=True) as watch:
        while True:
            left = watch.execute(
                "select pid, datname, application_name, state, left(query, 200) from pg_stat_activity"
                " where backend_type = 'client backend' and pid <> pg_backend_pid()"
            ).fetchall()
            if not left:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"sessions of the killed pipeline are still open: {left}")
            time.sleep(0.5)


# ----------------------------------------------------------------------------- what must hold


def published(instance: Instance) -> tuple[int, dict[str, list[str]]]:
    """What bi_reader reads: (latest publication version, row hashes of analytics)."""
    url = bi_reader_url(instance)
    with psycopg.connect(url) as conn:
        version = conn.execute("select max(version) from analytics.publications").fetchone()[0]
    return version, analytics_fingerprint(url)


def assert_bi_reader_sees(instance: Instance, expected: tuple[int, dict[str, list[str]]]) -> None:
    version, fingerprint = published(instance)
    assert version == expected[0], f"analytics.publications moved: version {version}, expected {expected[0]}"
    assert not differences(expected[1], fingerprint), differences(expected[1], fingerprint)


def raw_problems(url: str) -> list[str]:
    """Why raw holds a partial load, if it does: every row of a raw file table belongs to a
    committed folder load whose audit counts it exactly (rows and quarantined records per
    file), a folder's rows come from one load, the latest load of each folder is whole in
    raw; every shop row (and version) comes from an audited extraction."""
    problems = []
    with psycopg.connect(url) as conn:
        for entity in contract.FILE_ENTITIES:
            audit = conn.execute(
                "select batch_id, dt, file, rows_loaded, rows_quarantined, loaded_at from raw.load_audit"
                " where source = %s and entity = %s and status = 'loaded'",
                (entity.source, entity.entity)).fetchall()
            counted = {(b, f): (n, q) for b, _, f, n, q, _ in audit}
            latest: dict[date, tuple] = {}
            for b, dt, _, _, _, at in audit:
                if dt not in latest or at > latest[dt][1]:
                    latest[dt] = (b, at)
            rows = {(b, f): (dt, n) for b, f, dt, n in conn.execute(sql.SQL(
                "select _batch_id, _file, _dt, count(*) from {} group by 1, 2, 3").format(
                    sql.Identifier("raw", entity.raw_table)))}
            quarantined = {(b, f): n for b, f, n in conn.execute(
                "select batch_id, file, count(*) from raw.quarantine where source = %s and entity = %s group by 1, 2",
                (entity.source, entity.entity))}
            label = f"{entity.source}/{entity.entity}"
            for (b, f), (dt, n) in rows.items():
                if (b, f) not in counted:
                    problems.append(f"{label} dt={dt}: {n} raw rows of {f} from a load without an audit (batch {b})")
                elif counted[(b, f)][0] != n:
                    problems.append(f"{label} dt={dt}: {n} raw rows of {f}, its audit says {counted[(b, f)][0]}")
                elif latest.get(dt, (None,))[0] != b:
                    problems.append(f"{label} dt={dt}: rows of an older load (batch {b}) beside the latest")
            for (b, f), n in quarantined.items():
                if (b, f) not in counted or counted[(b, f)][1] != n:
                    problems.append(f"{label}: {n} quarantined records of {f} (batch {b}) not counted by an audit")
            for b, dt, f, n, q, _ in audit:
                if latest[dt][0] == b and (rows.get((b, f), (dt, 0))[1], quarantined.get((b, f), 0)) != (n, q):
                    problems.append(f"{label} dt={dt}: {f} audited as loaded with {n} rows, {q} quarantined; raw "
                                    f"holds {rows.get((b, f), (dt, 0))[1]}, quarantine {quarantined.get((b, f), 0)}")
        for table in contract.SHOP_TABLES:
            for relation in (table.raw_table, table.versions_table):
                orphans = conn.execute(sql.SQL(
                    "select count(*) from {} r where not exists (select from raw.load_audit a"
                    " where a.batch_id = r._batch_id and a.source = 'shop')").format(
                        sql.Identifier("raw", relation))).fetchone()[0]
                if orphans:
                    problems.append(f"raw.{relation}: {orphans} rows from an extraction without an audit")
    return problems


def half_tables(url: str) -> list[str]:
    """Tables a materialisation leaves behind when it stops half-way."""
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "select n.nspname || '.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where c.relkind in ('r', 'v', 'm', 'p') and n.nspname not like 'pg\\_temp%%'"
            " and (c.relname like '%%\\_\\_dbt\\_tmp%%' or c.relname like '%%\\_\\_dbt\\_backup%%')")]


def rows_of(url: str, query: str, params=()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return sorted(conn.execute(query, params).fetchall(), key=repr)


def table_hashes(url: str, schema: str, table: str) -> list[str]:
    """Sorted md5 of each row of one table."""
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(sql.SQL("select md5(t::text) h from {} t order by h").format(
            sql.Identifier(schema, table)))]


def assert_the_kill_left_nothing_behind(instance: Instance, before: tuple[int, dict]) -> None:
    wait_for_no_sessions(instance)
    assert_bi_reader_sees(instance, before)
    url = instance.url("warehouse")
    assert raw_problems(url) == []
    assert half_tables(url) == []


# ----------------------------------------------------------------------------- scenarios


@pytest.fixture(scope="module")
def reference(base):
    """The same command, uninterrupted, on a copy of the base: started now, read when needed."""
    with copy_of(base, "reference") as instance:
        run = Pipeline(instance, "reference")
        fingerprint = {}

        def result() -> dict[str, list[str]]:
            if not fingerprint:
                run.succeed()
                fingerprint.update(analytics_fingerprint(instance.url("warehouse")))
            return fingerprint

        yield result
        if run.proc.poll() is None:
            run.kill_group()


@pytest.fixture(scope="module")
def two_at_once(base):
    """Two `lw pipeline` over the same range started at once on a copy of the base (in the
    background while the kills run)."""
    with copy_of(base, "twice") as instance:
        before = published(instance)
        runs = [Pipeline(instance, "first"), Pipeline(instance, "second")]
        yield instance, runs, before
        for run in runs:
            if run.proc.poll() is None:
                run.kill_group()


@pytest.fixture(scope="module")
def crashed(base, reference, two_at_once):
    """The copy whose pipeline is killed (the background runs are started first)."""
    with copy_of(base, "killed") as instance:
        yield instance, published(instance)


def folder_loads(url: str) -> dict[tuple[str, str], list[tuple]]:
    """{(raw table, dt): [(batch, file, rows)]} of every date folder in raw, with its audit rows."""
    loads: dict[tuple[str, str], list[tuple]] = {}
    with psycopg.connect(url) as conn:
        for entity in contract.FILE_ENTITIES:
            for dt, batch, file, rows in conn.execute(sql.SQL(
                    "select _dt::text, _batch_id::text, _file, count(*) from {} group by 1, 2, 3").format(
                        sql.Identifier("raw", entity.raw_table))):
                loads.setdefault((entity.raw_table, dt), []).append((batch, file, rows))
            for dt, batch, file, status in conn.execute(
                    "select dt::text, batch_id::text, file, status from raw.load_audit"
                    " where source = %s and entity = %s", (entity.source, entity.entity)):
                loads.setdefault((entity.raw_table, dt), []).append((batch, file, status))
    return {key: sorted(value, key=repr) for key, value in loads.items()}


def test_a_waiting_pipeline_names_the_one_it_waits_for_and_starts_when_it_dies(warehouse_url):
    """The pipeline lock alone (no Airflow): a second `lw pipeline` waits for the holder,
    saying which it is, and goes on as soon as the holder is SIGKILLed."""
    holding_code = ("import sys, time\n"
                    "from lifecycle_warehouse.pipeline_lock import one_pipeline_at_a_time\n"
                    "with one_pipeline_at_a_time(sys.argv[1], 'first', say=print):\n"
                    "    print('held', flush=True)\n"
                    "    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", holding_code, warehouse_url], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        said: list[str] = []
        killer = threading.Timer(2.0, holder.kill)
        killer.start()
        started = time.monotonic()
        with one_pipeline_at_a_time(warehouse_url, "second", say=said.append, poll_seconds=0.1):
            waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert 1.5 < waited < 30, f"waited {waited:.1f} s"
    assert said[0].startswith(f"another `lw pipeline` runs on this warehouse (lw pipeline first (pid {holder.pid})"), said
    assert said[-1].startswith("the other `lw pipeline` ended"), said


def test_kill_inside_a_file_load(crashed):
    """SIGKILL while a date folder's transaction has deleted the folder's previous load and
    COPYed its files into raw (the load waits to write its audit rows): raw and the audit
    hold the folder's previous load, exactly."""
    instance, before = crashed
    url = instance.url("warehouse")
    loads = folder_loads(url)
    with holding(url, "lock table raw.load_audit in exclusive mode") as holder, \
            pipeline(instance, "kill-file-load") as run:
        blocked = wait_until_blocked(url, holder, run, r"insert into raw\.load_audit")
        assert blocked.application == "lifecycle_warehouse.ingest.files" and blocked.wrote
        folder = rows_of(url, (
            "select k.key from pg_locks l, unnest(%s::text[]) as k(key) where l.pid = %s and l.locktype = 'advisory'"
            " and ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(k.key, 0)"),
            ([f"lifecycle_warehouse.ingest.files:{e.raw_table}:{START + timedelta(days=d)}"
              for e in contract.FILE_ENTITIES for d in range(DAYS)], blocked.pid))
        assert len(folder) == 1, f"the blocked load holds no folder lock we know: {folder}"
        raw_table, dt = folder[0][0].rsplit(":", 2)[1:]
        run.kill_group()
    assert_the_kill_left_nothing_behind(instance, before)
    assert folder_loads(url).get((raw_table, dt)) == loads.get((raw_table, dt)), (
        f"raw.{raw_table} dt={dt} (or its audit) is not the folder's previous load")


def test_kill_inside_a_shop_upsert(crashed):
    """SIGKILL while a shop table's extraction upserts its rows into raw: the table, its
    versions and its watermark are as before."""
    instance, before = crashed
    url = instance.url("warehouse")
    watermark = "select watermark from raw.extract_watermarks where source_table = 'public.orders'"
    was = (table_hashes(url, "raw", "shop_orders"), table_hashes(url, "raw", "shop_orders_versions"),
           rows_of(url, watermark))
    with holding(url, "lock table raw.shop_orders in exclusive mode") as holder, \
            pipeline(instance, "kill-shop-upsert") as run:
        blocked = wait_until_blocked(url, holder, run, r"insert into .*shop_orders")
        assert blocked.application == "lifecycle_warehouse.ingest.shop" and blocked.wrote
        run.kill_group()
    assert_the_kill_left_nothing_behind(instance, before)
    now = (table_hashes(url, "raw", "shop_orders"), table_hashes(url, "raw", "shop_orders_versions"),
           rows_of(url, watermark))
    assert now == was, "raw.shop_orders, its versions or its watermark changed"


def test_kill_inside_a_dbt_model_build(crashed):
    """SIGKILL the process running dbt (airflow_runs: the dbt step runs dbt in it) while dbt
    writes kpi_daily (an incremental model whose delete, insert and change-log consumption
    are one transaction): the model is as before, no half table is left, and `lw pipeline`
    reports the failure with the command to rerun."""
    instance, before = crashed
    url = instance.url("warehouse")
    was = table_hashes(url, "marts", "kpi_daily")
    with holding(url, "lock table marts.kpi_daily in exclusive mode") as holder, \
            pipeline(instance, "kill-dbt-model") as run:
        blocked = wait_until_blocked(url, holder, run, r'delete from "warehouse"\."marts"\."kpi_daily"')
        # the model's temporary table was written in the same transaction: the model is atomic
        assert blocked.application == "dbt" and blocked.wrote, (
            "dbt writes kpi_daily outside a transaction that holds the rest of the model")
        run.kill_airflow_process()
        code = run.wait(120)
    output = run.output()
    assert code != 0 and "pipeline failed" in output, output[-4000:]
    assert f"pipeline --from {START} --to {LAST}" in output, output[-4000:]
    assert_the_kill_left_nothing_behind(instance, before)
    assert table_hashes(url, "marts", "kpi_daily") == was, "marts.kpi_daily changed"


def test_kill_inside_the_publish(crashed):
    """SIGKILL while the publish, every BI table swapped, waits to log the new version:
    bi_reader reads the previous version, during the publish and after the kill."""
    instance, before = crashed
    url = instance.url("warehouse")
    with holding(url, "lock table analytics.publications in exclusive mode") as holder, \
            pipeline(instance, "kill-publish") as run:
        blocked = wait_until_blocked(url, holder, run, r'insert into "analytics"\."publications"')
        assert blocked.application == "lifecycle_warehouse.publish" and blocked.wrote
        assert_bi_reader_sees(instance, before)  # the swap is not visible while it runs
        run.kill_group()
    assert_the_kill_left_nothing_behind(instance, before)
    # what the killed run leaves for the rerun to take over: its Airflow run and its build
    assert rows_of(instance.url("airflow"), "select state from dag_run where dag_id = 'warehouse'"
                   " and state = 'running'") == [("running",)]
    assert [kind for _, kind, _ in warehouse_tasks.running_builds(url)] == ["dag"]


def test_rerun_after_the_kills_equals_an_uninterrupted_run(crashed, reference):
    instance, before = crashed
    with pipeline(instance, "rerun") as run:
        output = run.succeed()
    assert "another `lw pipeline`" not in output, "a killed pipeline still held the pipeline lock"
    assert rows_of(instance.url("airflow"), "select count(*) from dag_run where state <> 'success'") == [(0,)]
    url = instance.url("warehouse")
    expected = reference()
    assert not differences(expected, analytics_fingerprint(url)), differences(expected, analytics_fingerprint(url))
    version, bi_fingerprint = published(instance)
    assert version == before[0] + 1 and not differences(expected, bi_fingerprint)
    # analytics is the marts: this run's publish replaced only the persons whose transitions
    # the run rewrote (the list it emptied), the first one copied them all
    marts = {table: rows for table, rows in analytics_fingerprint(url, "marts").items() if table in MART_RELATIONS}
    assert not differences(marts, bi_fingerprint), differences(marts, bi_fingerprint)
    assert rows_of(url, "select count(*) from marts.fct_lifecycle_transitions__unpublished") == [(0,)]
    # a whole copy writes every row in one transaction; these rows were written by two
    (versions,) = rows_of(url, "select count(distinct xmin::text) from analytics.fct_lifecycle_transitions")
    assert versions[0] >= 2, "the publish replaced some persons' transitions, not all"
    assert raw_problems(url) == [] and half_tables(url) == []
    assert warehouse_tasks.running_builds(url) == [], "a killed run still holds the warehouse"


def test_two_pipelines_at_once_end_as_one(two_at_once, reference):
    instance, runs, before = two_at_once
    outputs = [run.succeed() for run in runs]
    waited = [out for out in outputs if "another `lw pipeline` runs on this warehouse" in out]
    assert len(waited) == 1, "exactly one of the two waits for the other"
    url = instance.url("warehouse")
    expected = reference()
    assert not differences(expected, analytics_fingerprint(url)), differences(expected, analytics_fingerprint(url))
    version, _ = published(instance)
    assert version == before[0] + 2, "each run published once, one after the other"
    assert raw_problems(url) == [] and half_tables(url) == []
    assert warehouse_tasks.running_builds(url) == []
