"""Throwaway environments the tests run the project in, so that no test touches the
developer's `.warehouse/`, `.airflow/` or landing zone."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from lifecycle_warehouse.runtime import airflow_bin

# What a test's environment drops from the developer's, so that it points only at its own folders.
PROJECT_VARIABLES = ("AIRFLOW", "WAREHOUSE_URL", "SHOP_DB_URL", "LW_", "LANDING_DIR", "BI_READER")


def project_env(root: Path, **overrides: str) -> dict[str, str]:
    """The environment of a whole instance of the project under `root`: its own embedded
    PostgreSQL, Airflow home, landing zone and truth file (driven through `lw` commands)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(PROJECT_VARIABLES)}
    env.update(
        LW_PGDATA=str(root / "pgdata"),
        AIRFLOW_HOME=str(root / "airflow"),
        LANDING_DIR=str(root / "landing"),
        LW_TRUTH_FILE=str(root / "truth.json"),
        LW_RETRY_DELAY_SECONDS="1",
    )
    env.update(overrides)
    return env


def airflow_with_dags(root: Path, dag_file: str, source: str, **overrides: str) -> dict[str, str]:
    """A migrated Airflow (SQLite metadata) under `root` whose only DAG file is `dag_file`
    with `source`: the environment to run `lifecycle_warehouse.airflow_runs` in."""
    (root / "dags").mkdir(parents=True, exist_ok=True)
    (root / "dags" / dag_file).write_text(source, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "LW_"))}
    env.update(
        AIRFLOW_HOME=str(root / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(root / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{root / 'airflow.db'}",
    )
    env.update(overrides)
    subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True, capture_output=True)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def debian_program(program: str, package: str, needed_by: str, recommends: bool = True) -> str:
    """A program from Debian's packages, installed here when missing (as root may; the
    package index is refreshed once if the first install fails)."""
    import shutil

    import pytest

    found = shutil.which(program)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(f"{needed_by} needs Debian's {package}: `sudo apt-get install {package}`")
    install = ["apt-get", "install", "-y", "-q", *([] if recommends else ["--no-install-recommends"]), package]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        subprocess.run(install, check=True, capture_output=True)
    return shutil.which(program) or pytest.fail(f"apt-get installed no {program}")


@contextmanager
def throwaway_server(prefix: str) -> Iterator[tuple[Path, str]]:
    """An embedded PostgreSQL of its own under a new folder in /tmp: (folder, superuser URL
    of its `postgres` database); stopped and removed afterwards. A short path under /tmp
    keeps the socket path below the 107-byte limit, and is traversable by the `pgserver`
    OS user that runs postgres when tests run as root."""
    import shutil
    import tempfile

    from lifecycle_warehouse import embedded

    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        yield root, embedded.start(root / "pgdata")
    finally:
        embedded.stop(root / "pgdata")
        shutil.rmtree(root, ignore_errors=True)


class LocalAirflowProcesses:
    """What a test of `lw local-airflow` knows of its processes. Needs `local_dir` (where the
    pid and log files are) and `seen` (pid -> creation time of every process seen)."""

    local_dir: Path
    seen: dict[int, float]

    def main_processes(self) -> dict[str, psutil.Process]:
        """The processes named by the pid files (pid and creation time both match)."""
        found = {}
        for path in sorted(self.local_dir.glob("*.pid")):
            try:
                pid, created = path.read_text().split()[:2]
                proc = psutil.Process(int(pid))
                if abs(proc.create_time() - float(created)) < 1.0:
                    found[path.stem] = proc
            except (OSError, ValueError, psutil.Error):
                pass
        return found

    def remember_processes(self) -> list[psutil.Process]:
        """Every process of the local Airflow now (main processes and their descendants)."""
        procs = []
        for proc in self.main_processes().values():
            try:
                procs += [proc, *proc.children(recursive=True)]
            except psutil.Error:
                pass
        for proc in procs:
            try:
                self.seen.setdefault(proc.pid, proc.create_time())
            except psutil.Error:
                pass
        return procs

    def _seen_alive(self) -> Iterator[psutil.Process]:
        for pid, created in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) < 1.0:
                    yield proc
            except psutil.Error:
                pass

    def still_alive(self) -> list[str]:
        alive = []
        for proc in self._seen_alive():
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
            except psutil.Error:
                pass
        return alive

    def kill_everything(self) -> None:
        self.remember_processes()
        for proc in self._seen_alive():
            try:
                proc.kill()
            except psutil.Error:
                pass

    def process_logs(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.local_dir.glob("*.log")):
            tail = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            out.append(f"\n--- {path} (tail) ---\n{tail}")
        return "".join(out)
