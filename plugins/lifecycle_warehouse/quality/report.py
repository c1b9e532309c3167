"""Data Docs: the HTML report of the gates, built by a failing gate and after every publish
(`gate.build_docs`; `make quality-report` opens it)."""

from __future__ import annotations

import shutil
import subprocess
import webbrowser
from pathlib import Path

from lifecycle_warehouse.quality import suites

DOCS_INDEX = Path("gx") / "uncommitted" / "data_docs" / "local_site" / "index.html"


def docs_index(project_root: Path | None = None) -> Path:
    """Where the Data Docs index of a GX project is (it exists once a gate has run)."""
    return (project_root or suites.default_project_root()) / DOCS_INDEX


def open_docs(path: Path) -> None:
    """Open the report in a browser when there is one (xdg-open on a desktop, else Python's)."""
    opener = shutil.which("xdg-open")
    if opener:
        subprocess.Popen([opener, path.as_uri()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        webbrowser.open(path.as_uri())
