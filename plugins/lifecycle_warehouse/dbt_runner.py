"""Run dbt against the warehouse: `python -m lifecycle_warehouse.dbt_runner build …`.

dbt's profile (dbt_project/profiles.yml) reads libpq parts from LW_PG* variables; this
module derives them from WAREHOUSE_URL so that one URL configures everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from lifecycle_warehouse import settings

DBT_PROJECT_DIR = settings.PROJECT_ROOT / "dbt_project"


def profile_env(url: str) -> dict[str, str]:
    """LW_PG* variables for dbt's profile from a libpq URL (TCP host or `?host=` socket dir);
    a URL's password file (`passfile=`, the embedded server's) becomes PGPASSFILE, which
    libpq reads when the profile's password is empty; the project's statement timeout
    (LW_STATEMENT_TIMEOUT_SECONDS) goes into PGOPTIONS, which libpq applies to every
    connection dbt opens (dbt's profile has no `options`)."""
    from lifecycle_warehouse import connections

    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    host = query.get("host", [parsed.hostname or "localhost"])[0]
    options = os.environ.get("PGOPTIONS", "")
    if "statement_timeout" not in options:
        options = f"{options} {connections.statement_timeout_option()}".strip()
    return {
        "PGPASSFILE": query.get("passfile", [os.environ.get("PGPASSFILE", "")])[0],
        "PGOPTIONS": options,
        "LW_PGHOST": host,
        "LW_PGPORT": str(query.get("port", [parsed.port or 5432])[0]),
        "LW_PGUSER": unquote(parsed.username or "postgres"),
        "LW_PGPASSWORD": unquote(parsed.password or ""),
        "LW_PGDATABASE": unquote(parsed.path.lstrip("/") or "postgres"),
    }


def dbt_env(url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(profile_env(url or settings.warehouse_url()))
    env.setdefault("DBT_PROFILES_DIR", str(DBT_PROJECT_DIR))
    env.setdefault("DBT_PROJECT_DIR", str(DBT_PROJECT_DIR))
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return env


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def run(
    args: list[str],
    url: str | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run `dbt <args>` in the project; `env` adds or overrides variables (e.g. a private
    DBT_TARGET_PATH / DBT_LOG_PATH, so that concurrent runs do not share target/)."""
    full_env = dbt_env(url)
    full_env.update(env or {})
    completed = subprocess.run([dbt_executable(), *args], env=full_env, cwd=DBT_PROJECT_DIR)
    if check and completed.returncode != 0:
        raise SystemExit(completed.returncode)
    return completed.returncode


def parse_manifest(url: str | None = None) -> Path:
    """`dbt parse` into a private folder, then the manifest the DAGs are rendered from
    (dbt_project/target/manifest.json) replaced atomically: a DAG being parsed meanwhile, by
    this instance or another one on the same checkout, never reads a half-written file."""
    import shutil
    import tempfile

    target = DBT_PROJECT_DIR / "target"
    target.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lw-dbt-parse-") as private:
        run(["parse", "--quiet"], url=url, env={"DBT_TARGET_PATH": private, "DBT_LOG_PATH": private})
        staged = target / f".manifest.json.{os.getpid()}"
        shutil.copyfile(Path(private) / "manifest.json", staged)
        os.replace(staged, target / "manifest.json")
    return target / "manifest.json"


def run_in_process(args: list[str], url: str | None = None) -> int:
    """Run `dbt <args>` in this process (dbt's programmatic entry point, dbtRunner): no
    interpreter start-up and no second import of dbt, which cost ~2 s of every `dbt`
    command. For a process that runs dbt once (an Airflow task); the exit code is the
    CLI's (0 success, 1 a node failed, 2 dbt could not run)."""
    from dbt.cli.main import dbtRunner

    changed = {key: value for key, value in dbt_env(url).items() if key.startswith(("LW_PG", "DBT_", "PGPASSFILE", "PGOPTIONS"))}
    saved = {key: os.environ.get(key) for key in changed}
    os.environ.update(changed)  # dbt reads its profile's env_var()s at invocation
    try:
        result = dbtRunner().invoke([*args, "--project-dir", str(DBT_PROJECT_DIR)])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if result.exception is not None:
        return 2
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:], check=False))
