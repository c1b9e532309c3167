"""`make bi`: Apache Superset on 127.0.0.1 with the Customer lifecycle dashboard.

Superset pins SQLAlchemy 1.4 and pandas 2.1, which the project's venv cannot hold, so it
lives in its own venv (`.venv-bi`, installed from `bi/requirements.txt` with the frozen
`bi/constraints.txt`). Its metadata (users, charts) is a SQLite file under
`.warehouse/superset/`, beside the secrets this module generates there (mode 0600): the
secret key, the admin password (`BI_ADMIN_PASSWORD`, else generated and printed once) and
the `bi_reader` password (`BI_READER_PASSWORD`, else generated).

The warehouse is registered as the database "Lifecycle warehouse", which connects **as
bi_reader**: Superset can read `analytics` and nothing else (the role is created or updated
here). The dashboard, its charts and datasets are Superset's export format, kept as YAML in
`bi/superset/` and imported on every `make bi` (the database's URL and password are filled
in at import time, never stored in the repo).

    lw bi start | stop | status | export

docker-compose's `superset` service (bi/Dockerfile) runs Superset from the same pinned files
and imports the same assets with `python -m lifecycle_warehouse.bi import` (this module
needs only the standard library and PyYAML there: nothing else is imported at its top).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

import yaml

from lifecycle_warehouse import settings

log = logging.getLogger(__name__)

BI_DIR = settings.PROJECT_ROOT / "bi"
ASSETS_DIR = BI_DIR / "superset"
CONFIG_FILE = BI_DIR / "superset_config.py"
REQUIREMENTS = BI_DIR / "requirements.txt"
CONSTRAINTS = BI_DIR / "constraints.txt"
DATABASE_NAME = "Lifecycle warehouse"
DASHBOARD_SLUG = "customer-lifecycle"
ADMIN_USER = "admin"
BI_ROLE = "bi_reader"
START_TIMEOUT_S = 180


class BiError(RuntimeError):
    """`make bi` could not do what was asked; the message says what to do."""


def venv_dir() -> Path:
    return Path(os.environ.get("LW_BI_VENV", settings.PROJECT_ROOT / ".venv-bi"))


def home_dir() -> Path:
    """Superset's metadata, secrets, pid and log files."""
    return Path(os.environ.get("LW_BI_HOME", settings.pgdata_dir().parent / "superset"))


def port() -> int:
    return int(os.environ.get("BI_PORT", "8088"))


def base_url() -> str:
    return f"http://127.0.0.1:{port()}"


# --- installation ------------------------------------------------------------------------


def _installed_stamp() -> Path:
    return venv_dir() / ".installed"


def _wanted_stamp() -> str:
    return REQUIREMENTS.read_text() + CONSTRAINTS.read_text()


def ensure_venv(report=print) -> Path:
    """Create `.venv-bi` and install Superset from the pinned files, unless already done."""
    venv = venv_dir()
    stamp = _installed_stamp()
    if stamp.exists() and stamp.read_text() == _wanted_stamp():
        return venv
    report(f"installing Apache Superset into {venv} (once; about a minute) …")
    if not (venv / "bin" / "python").exists():
        subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS), "-c", str(CONSTRAINTS)], check=True)
    stamp.write_text(_wanted_stamp())
    return venv


def _base_python() -> str:
    """A Python 3.11 to create the BI venv with (the project's venv's own base)."""
    return getattr(sys, "_base_executable", None) or sys.executable


# --- secrets -----------------------------------------------------------------------------


def _secret_file(name: str, value_from_env: str | None, length: int = 24) -> tuple[str, bool]:
    """The value of a secret kept in `home_dir()/name` (0600): the environment's when given
    (then written, so later runs agree), else the stored one, else a new one. Returns
    (value, generated_now)."""
    path = home_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if value_from_env:
        value, generated = value_from_env, False
    elif path.exists():
        return path.read_text().strip(), False
    else:
        value, generated = secrets.token_urlsafe(length), True
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value)
    os.chmod(path, 0o600)
    return value, generated


@dataclass(frozen=True)
class Secrets:
    secret_key: str
    admin_password: str
    admin_password_generated: bool
    bi_reader_password: str


def load_secrets() -> Secrets:
    secret_key, _ = _secret_file("secret_key", None, 48)
    admin, generated = _secret_file("admin_password", os.environ.get("BI_ADMIN_PASSWORD"))
    reader, _ = _secret_file("bi_reader_password", os.environ.get("BI_READER_PASSWORD"))
    return Secrets(secret_key, admin, generated, reader)


# --- the Superset process ----------------------------------------------------------------


def environment(found: Secrets) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "PYTHON"))}
    env.update(
        SUPERSET_CONFIG_PATH=str(CONFIG_FILE),
        LW_SUPERSET_SECRET_KEY=found.secret_key,
        LW_SUPERSET_METADATA_URI=f"sqlite:///{home_dir() / 'superset.db'}",
        SUPERSET_HOME=str(home_dir()),
        FLASK_APP="superset.app:create_app()",
        PATH=f"{venv_dir() / 'bin'}:{os.environ.get('PATH', '')}",
    )
    return env


def _superset(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([str(venv_dir() / "bin" / "superset"), *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise BiError(f"`superset {' '.join(args[:2])}` failed:\n{(result.stdout + result.stderr)[-3000:]}")


def init_metadata(env: dict[str, str], found: Secrets, report=print) -> None:
    """Superset's metadata database, roles and the admin user (idempotent; the migration
    and `init` run when Superset's version changes)."""
    stamp = home_dir() / ".initialised"
    wanted = CONSTRAINTS.read_text()
    if not (stamp.exists() and stamp.read_text() == wanted):
        report("initialising Superset's metadata (once) …")
        _superset(env, "db", "upgrade")
        _superset(env, "init")
        stamp.write_text(wanted)
    # create-admin does nothing when the user exists: reset the password to the current one
    _superset(env, "fab", "create-admin", "--username", ADMIN_USER, "--firstname", "Lifecycle",
              "--lastname", "Admin", "--email", "admin@localhost", "--password", found.admin_password)
    _superset(env, "fab", "reset-password", "--username", ADMIN_USER, "--password", found.admin_password)


def _pid_file() -> Path:
    return home_dir() / "superset.pid"


def log_file() -> Path:
    return home_dir() / "superset.log"


def running_pid() -> int | None:
    path = _pid_file()
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        path.unlink(missing_ok=True)
        return None
    return pid


def _healthy(timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url()}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_server(env: dict[str, str], extra_env: dict[str, str] | None = None) -> int:
    """gunicorn in the background on 127.0.0.1:BI_PORT; waits until /health answers."""
    pid = running_pid()
    if pid is not None:
        return pid
    if _healthy():
        raise BiError(f"something else answers on {base_url()}: set BI_PORT to a free port")
    env = {**env, **(extra_env or {})}
    with open(log_file(), "ab") as out:
        process = subprocess.Popen(
            [str(venv_dir() / "bin" / "gunicorn"), "--workers", "1", "--threads", "4", "--timeout", "120",
             "--bind", f"127.0.0.1:{port()}", "superset.app:create_app()"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    _pid_file().write_text(str(process.pid))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _pid_file().unlink(missing_ok=True)
            raise BiError(f"Superset exited while starting (code {process.returncode}); see {log_file()}")
        if _healthy():
            return process.pid
        time.sleep(1)
    stop_server()
    raise BiError(f"Superset did not answer on {base_url()} within {START_TIMEOUT_S} s; see {log_file()}")


def stop_server() -> bool:
    """Stop the gunicorn started by `start_server` (its whole process group)."""
    pid = running_pid()
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.3)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _pid_file().unlink(missing_ok=True)
    return True


# --- Superset's REST API -----------------------------------------------------------------


# Characters of Superset's rison query strings that stay as they are in a URL.
_URL_SAFE = "/?=&:(),!'*-_.~%"


class Api:
    """A logged-in session on Superset's REST API (JWT, plus the CSRF token it asks for)."""

    def __init__(self, password: str, user: str = ADMIN_USER):
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        token = self.request("POST", "/api/v1/security/login",
                             {"username": user, "password": password, "provider": "db", "refresh": False})
        self.headers = {"Authorization": f"Bearer {token['access_token']}"}
        self.headers["X-CSRFToken"] = self.request("GET", "/api/v1/security/csrf_token/")["result"]
        self.headers["Referer"] = base_url()

    def request(self, method: str, path: str, payload: dict | None = None, *, body: bytes | None = None,
                content_type: str = "application/json") -> dict:
        data = body if body is not None else (json.dumps(payload).encode() if payload is not None else None)
        headers = dict(getattr(self, "headers", {}))
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(f"{base_url()}{quote(path, safe=_URL_SAFE)}", data=data, method=method,
                                         headers=headers)
        try:
            with self.opener.open(request, timeout=120) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            raise BiError(f"Superset {method} {path}: HTTP {error.code}: {error.read().decode()[:2000]}") from None
        return json.loads(text) if text else {}


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, content) in files.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                  f'Content-Type: application/zip\r\n\r\n'.encode())
        out.write(content)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def sqlalchemy_uri(warehouse_url: str, password: str | None = None) -> str:
    """The warehouse's URL for Superset (psycopg2, which Superset ships), as bi_reader.
    Without `password`, Superset's mask (its export format) stands in for it."""
    parsed = urlparse(warehouse_url)
    secret = password if password is not None else "XXXXXXXXXX"
    netloc = f"{BI_ROLE}:{secret}@{parsed.hostname or ''}{f':{parsed.port}' if parsed.port else ''}"
    # the embedded server's password file is the project's, not Superset's business
    query = "&".join(part for part in parsed.query.split("&") if part and not part.startswith("passfile="))
    return parsed._replace(scheme="postgresql+psycopg2", netloc=netloc, query=query).geturl()


# Superset's importers, in dependency order: (endpoint, the folders its bundle holds, the
# type its metadata.yaml must declare). A dashboard import alone would not overwrite the
# database, datasets and charts that already exist, so each kind is imported on its own.
IMPORTS = (
    ("database", ("databases",), "Database"),
    ("dataset", ("databases", "datasets"), "SqlaTable"),
    ("chart", ("databases", "datasets", "charts"), "Slice"),
    ("dashboard", ("databases", "datasets", "charts", "dashboards"), "Dashboard"),
)


def assets_zip(warehouse_url: str, folders: tuple[str, ...] = ("databases", "datasets", "charts", "dashboards"),
               kind: str = "Dashboard") -> bytes:
    """Those folders of bi/superset/ as the ZIP Superset imports, the database's URL set for
    this warehouse (password masked: it travels in the import's `passwords` field)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bundle/metadata.yaml", yaml.safe_dump(
            {"version": "1.0.0", "type": kind, "timestamp": "2026-01-01T00:00:00+00:00"}))
        for path in sorted(ASSETS_DIR.rglob("*.yaml")):
            relative = path.relative_to(ASSETS_DIR).as_posix()
            if relative.split("/", 1)[0] not in folders:
                continue
            text = path.read_text()
            if relative.startswith("databases/"):
                content = yaml.safe_load(text)
                content["sqlalchemy_uri"] = sqlalchemy_uri(warehouse_url)
                text = yaml.safe_dump(content, sort_keys=False)
            archive.writestr(f"bundle/{relative}", text)
    return buffer.getvalue()


def import_assets(api: Api, warehouse_url: str, reader_password: str) -> None:
    """Import the database (as bi_reader), datasets, charts and dashboard of bi/superset/,
    overwriting what a previous import left."""
    passwords = json.dumps({p.relative_to(ASSETS_DIR).as_posix(): reader_password
                            for p in ASSETS_DIR.glob("databases/*.yaml")})
    for endpoint, folders, kind in IMPORTS:
        body, content_type = _multipart(
            {"overwrite": "true", "passwords": passwords},
            {"formData": (f"{endpoint}.zip", assets_zip(warehouse_url, folders, kind))})
        api.request("POST", f"/api/v1/{endpoint}/import/", body=body, content_type=content_type)


def dashboard(api: Api) -> dict:
    found = api.request("GET", f"/api/v1/dashboard/{DASHBOARD_SLUG}")
    return found["result"]


def export_assets(api: Api) -> list[str]:
    """Write the dashboard (with its charts, datasets and database) from Superset into
    bi/superset/, as reviewed YAML: what a dashboard edited in the UI needs to be versioned."""
    dashboard_id = dashboard(api)["id"]
    request = urllib.request.Request(f"{base_url()}/api/v1/dashboard/export/?q=!({dashboard_id})",
                                     headers=api.headers)
    with api.opener.open(request, timeout=120) as response:
        content = response.read()
    written = []
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        for name in archive.namelist():
            relative = name.split("/", 1)[1]
            if not relative.endswith(".yaml") or relative == "metadata.yaml":
                continue
            # file names without Superset's ids, so that an export of the same dashboard
            # from another Superset writes the same files
            relative = re.sub(r"_\d+\.yaml$", ".yaml", relative)
            text = archive.read(name).decode()
            if relative.startswith("databases/"):
                content_yaml = yaml.safe_load(text)
                content_yaml["sqlalchemy_uri"] = "set by `make bi` from WAREHOUSE_URL (as bi_reader)"
                text = yaml.safe_dump(content_yaml, sort_keys=False)
            target = ASSETS_DIR / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            written.append(relative)
    link_chart_uuids()
    return written


def link_chart_uuids() -> None:
    """Give every chart of the dashboards' layouts its chart's uuid (by name): an import
    places charts by uuid, and a layout saved through the API holds only the exporting
    Superset's chart ids, which another Superset does not have."""
    uuids = {}
    for path in ASSETS_DIR.glob("charts/*.yaml"):
        chart = yaml.safe_load(path.read_text())
        uuids[chart["slice_name"]] = chart["uuid"]
    for path in ASSETS_DIR.glob("dashboards/*.yaml"):
        board = yaml.safe_load(path.read_text())
        position = board["position"]
        placed: set[str] = set()
        # in layout order (rows top to bottom), so that a chart keeps its first place
        for row_key in list(position["GRID_ID"]["children"]):
            row = position[row_key]
            for key in list(row["children"]):
                component = position[key]
                if component.get("type") != "CHART":
                    continue
                name = component["meta"].get("sliceNameOverride") or component["meta"]["sliceName"]
                if name not in uuids:
                    raise BiError(f"{path.name}: the layout shows chart {name!r}, which bi/superset/charts/ lacks")
                if uuids[name] in placed:
                    # Superset's export appends a row of the charts whose layout entry had no
                    # uuid ("orphans"): drop those copies
                    row["children"].remove(key)
                    del position[key]
                    continue
                component["meta"]["uuid"] = uuids[name]
                placed.add(uuids[name])
            if not row["children"]:
                position["GRID_ID"]["children"].remove(row_key)
                del position[row_key]
        path.write_text(yaml.safe_dump(board, sort_keys=False, allow_unicode=True))


# --- what `make bi` does -----------------------------------------------------------------


def ensure_reader(password: str) -> None:
    """bi_reader with this password, reading `analytics` only (created by the administering
    role: the embedded server's superuser, else WAREHOUSE_URL's)."""
    from lifecycle_warehouse import embedded
    from lifecycle_warehouse.access import ensure_bi_reader

    owner = None if os.environ.get("WAREHOUSE_URL") else embedded.OWNER_ROLE
    ensure_bi_reader(settings.warehouse_admin_url(), password, owner=owner)


def start(report=print, extra_env: dict[str, str] | None = None) -> dict:
    """Install if needed, start Superset, register the warehouse as bi_reader, import the
    dashboard; returns what to print (URL, login)."""
    warehouse_url = settings.warehouse_url()
    ensure_venv(report)
    found = load_secrets()
    ensure_reader(found.bi_reader_password)
    env = environment(found)
    if running_pid() is None:
        init_metadata(env, found, report)
        report(f"starting Superset on {base_url()} …")
        start_server(env, extra_env)
    api = Api(found.admin_password)
    import_assets(api, warehouse_url, found.bi_reader_password)
    board = dashboard(api)
    return {
        "url": f"{base_url()}/superset/dashboard/{DASHBOARD_SLUG}/",
        "user": ADMIN_USER,
        "password": found.admin_password if found.admin_password_generated else None,
        "password_file": str(home_dir() / "admin_password"),
        "dashboard_id": board["id"],
        "log": str(log_file()),
    }


def wait_until_healthy(timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not _healthy():
        if time.monotonic() > deadline:
            raise BiError(f"Superset did not answer on {base_url()} within {timeout:.0f} s")
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    """`python -m lifecycle_warehouse.bi import`: in a Superset that runs already (the
    docker-compose service), import bi/superset/ with the database as bi_reader, from the
    environment: WAREHOUSE_URL (the warehouse as its owner sees it; only its host, port and
    database are used), BI_READER_PASSWORD, BI_ADMIN_PASSWORD, BI_PORT."""
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["import"]:
        print("usage: python -m lifecycle_warehouse.bi import", file=sys.stderr)
        return 2
    wait_until_healthy()
    api = Api(os.environ["BI_ADMIN_PASSWORD"])
    import_assets(api, os.environ["WAREHOUSE_URL"], os.environ["BI_READER_PASSWORD"])
    print(f"imported the Customer lifecycle dashboard into {base_url()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
