"""The bad-input corpus (`tests/bad_inputs/<case>/`): each case is a landing-zone delivery
exactly as delivered (`<source>/<entity>/dt=…/<file>`, bytes as they are, or a
`generate.py` for what cannot be committed sensibly: a symbolic link, a 24 MiB line) and an
`expected.yaml` saying what the loader must do with it, and why:

- `loaded`: no record quarantined; `rows` are the rows of `raw.<source>_<entity>` (in file
  and line order, only the keys listed compared);
- `quarantined`: the file loads, and `quarantine` lists its quarantined records (line,
  rule, and the record's text, by default the delivered line itself); `rows` the rows that
  loaded;
- `rejected`: the file (`file`, default the folder's only file) is rejected whole, with
  `error` (exact, after the `<file>: ` prefix) or every `error_contains` in
  `raw.load_audit.error`; nothing of it is loaded or quarantined (`rows` are the folder's
  other files' rows).

Optional: `settings` (environment variables for the load), `max_memory_mib` (the load's
peak of Python memory, traced). Every case also checks that the audit reconciles
(rows_read = rows_loaded + rows_quarantined) and that every quarantined record kept its text.
"""

from __future__ import annotations

import gzip
import importlib.util
import shutil
import tracemalloc
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg.rows import dict_row

from lifecycle_warehouse import contract
from lifecycle_warehouse.ingest import files

CORPUS = Path(__file__).resolve().parents[1] / "bad_inputs"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expected.yaml").is_file())
OUTCOMES = ("loaded", "quarantined", "rejected")

# What issue 24 asks the corpus to cover: kind -> a text some case name holds.
REQUIRED_KINDS = {
    "UTF-8 BOM": "utf8_bom",
    "CRLF": "crlf",
    "CR-only line ends": "cr_only",
    "UTF-16": "utf16",
    "a non-UTF-8 byte": "non_utf8_byte",
    "a NUL byte": "nul_byte",
    "truncated gzip": "truncated_gzip",
    "a 0-byte file": "zero_byte_file",
    "an HTML error page as .csv": "html_error_page_csv",
    "an HTML error page as .jsonl": "html_error_page_jsonl",
    "duplicated header columns": "duplicated_header_column",
    "reordered header columns": "reordered_header_columns",
    "a JSON array line": "json_array_line",
    "deeply nested JSON": "deeply_nested_json",
    "NaN literal": "nan",
    "Infinity literal": "infinity",
    "a line longer than the limit": "line_longer_than_limit",
    "a naive timestamp": "naive_timestamp",
    "an offset timestamp": "offset_timestamp",
    "a BC date": "bc_date",
    "9999-12-31": "9999_12_31",
    "negative money": "negative_money",
    "a numeric beyond its maximum": "beyond_maximum",
    "1_000": "1_000",
    "a symlink outside LANDING_DIR": "symlink_outside_landing",
    "a file name with ..": "dotdot_in_file_name",
}


def test_the_corpus_has_at_least_30_cases_covering_every_kind():
    assert len(CASES) >= 30, CASES
    missing = [kind for kind, text in REQUIRED_KINDS.items() if not any(text in c for c in CASES)]
    assert not missing, f"no case for: {', '.join(missing)}"
    for case in CASES:
        spec = yaml.safe_load((CORPUS / case / "expected.yaml").read_text(encoding="utf-8"))
        assert spec["outcome"] in OUTCOMES, case
        assert spec.get("why"), f"{case}: expected.yaml needs a one-line `why`"


def _plain(value):
    """A raw value as expected.yaml writes it."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _delivered_line(path: Path, line: int) -> str:
    """Line `line` (1-based) of a delivered file, without its line end, decoded as UTF-8."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    data = data.removeprefix(b"\xef\xbb\xbf")
    return data.split(b"\n")[line - 1].removesuffix(b"\r").decode("utf-8")


def _prepare(case: str, tmp_path: Path) -> Path:
    """A fresh landing zone with the case's files (and what its generate.py writes)."""
    landing = tmp_path / "landing"
    shutil.copytree(CORPUS / case, landing, symlinks=True,
                    ignore=shutil.ignore_patterns("expected.yaml", "generate.py", "__pycache__"))
    generator = CORPUS / case / "generate.py"
    if generator.exists():
        spec = importlib.util.spec_from_file_location(f"bad_inputs_{case}", generator)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.generate(landing, tmp_path / "outside")
    return landing


def _fetch(url: str, query: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        conn.execute("set timezone = 'UTC'")
        return conn.execute(query, params).fetchall()


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, warehouse_url, tmp_path, monkeypatch):
    spec = yaml.safe_load((CORPUS / case / "expected.yaml").read_text(encoding="utf-8"))
    source, entity_name = spec["entity"].split("/")
    entity = contract.file_entity(source, entity_name)
    for name, value in (spec.get("settings") or {}).items():
        monkeypatch.setenv(name, str(value))
    landing = _prepare(case, tmp_path)
    (folder,) = (landing / source / entity_name).glob("dt=*")
    dt = date.fromisoformat(folder.name.removeprefix("dt="))
    prefix = f"{source}/{entity_name}/dt={dt.isoformat()}/"

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        files.load_delivery(conn, landing, entity, dt)  # the raw schema, outside the measure
        if spec.get("max_memory_mib"):
            tracemalloc.start()
        try:
            result = files.load_delivery(conn, landing, entity, dt)
            if spec.get("max_memory_mib"):
                peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    if spec.get("max_memory_mib"):
        assert peak < spec["max_memory_mib"] * (1 << 20), f"peak {peak / (1 << 20):.1f} MiB"

    audit = {a["file"]: a for a in _fetch(
        warehouse_url, "select * from raw.load_audit where batch_id = %s", (result.batch_id,))}
    quarantine = _fetch(warehouse_url, "select * from raw.quarantine order by file, line_number")
    raw_rows = _fetch(warehouse_url, f"select * from raw.{entity.raw_table} order by _file, _line_number")

    # Whatever the outcome: the audit reconciles, and every quarantined record kept its text.
    assert set(audit) == {f.file for f in result.files}
    for file, row in audit.items():
        mine = [q for q in quarantine if q["file"] == file]
        assert row["rows_quarantined"] == len(mine), file
        if row["status"] == "loaded":
            assert row["rows_read"] == row["rows_loaded"] + row["rows_quarantined"], file
            assert row["rows_loaded"] == len([r for r in raw_rows if r["_file"] == file]), file
        else:
            assert (row["rows_loaded"], row["rows_quarantined"]) == (0, 0), file
            assert row["error"] and row["error"].startswith(f"{file}: "), row["error"]
    assert all(q["raw_record"] for q in quarantine), "a quarantined record lost its text"

    outcome = spec["outcome"]
    if outcome == "rejected":
        name = spec.get("file") or _only_file(folder)
        rel = prefix + name
        row = audit[rel]
        assert row["status"] == "rejected"
        error = row["error"].removeprefix(f"{rel}: ")
        if "error" in spec:
            assert error == spec["error"]
        for text in spec.get("error_contains", []):
            assert text in error, (text, error)
        assert not [r for r in raw_rows if r["_file"] == rel]
        others = [a for f, a in audit.items() if f != rel]
        assert all(a["status"] == "loaded" for a in others), others
        assert not quarantine
    else:
        assert all(a["status"] == "loaded" for a in audit.values()), audit
        expected = spec.get("quarantine") or []
        if outcome == "loaded":
            assert not expected and not quarantine, quarantine
        else:
            assert expected, f"{case}: a quarantined case lists its records"
        assert [(q["line_number"], q["rule"]) for q in quarantine] == [(e["line"], e["rule"]) for e in expected]
        for want, got in zip(expected, quarantine):
            record = got["raw_record"]
            if "raw_record" in want:
                assert record == want["raw_record"]
            elif "raw_record_starts_with" in want:
                assert record.startswith(want["raw_record_starts_with"])
                assert len(record.encode()) == want["raw_record_length"]
            else:  # the delivered line itself
                assert record == _delivered_line(landing / got["file"], got["line_number"])
            assert (got["source"], got["entity"], got["dt"]) == (source, entity_name, dt)

    if "rows" in spec:
        want_rows = spec["rows"]
        assert len(raw_rows) == len(want_rows), [r["_line_number"] for r in raw_rows]
        for want, got in zip(want_rows, raw_rows):
            assert {k: _plain(got[k]) for k in want} == want


def _only_file(folder: Path) -> str:
    (only,) = [p.name for p in folder.iterdir()]
    return only
