"""The pure parts of the raw-loads benchmark (lifecycle_warehouse/bench/loads.py): the
generated files are valid per the contract (so the loader's fast path is what gets
measured), the psql commands, the URLs handed to dlt and SQLAlchemy, the ratios and the
Markdown section. No database, and never a timing assertion."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from lifecycle_warehouse import contract
from lifecycle_warehouse.bench import loads
from lifecycle_warehouse.ingest import records

DAY = date(2026, 1, 5)


def _contract_problems(entity: contract.FileEntity, record: dict) -> list[str]:
    """What the loader's validation would object to in one record (required, enums,
    lengths, timestamps that are ISO-8601 with an offset on `DAY`, JSON objects)."""
    problems = []
    for column in entity.columns:
        value = record.get(column.name)
        if value in (None, ""):
            if column.required:
                problems.append(f"{column.name}: required")
            continue
        if column.accepted is not None and value not in column.accepted:
            problems.append(f"{column.name}: {value!r} not accepted")
        if column.length is not None and len(value) != column.length:
            problems.append(f"{column.name}: {value!r} not {column.length} characters")
        if column.type == contract.TIMESTAMPTZ:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None or moment.astimezone(UTC).date() != DAY:
                problems.append(f"{column.name}: {value!r} not a UTC timestamp of {DAY}")
        if column.type == contract.JSONB and not isinstance(value, dict):
            problems.append(f"{column.name}: not a JSON object")
    return problems


def test_web_event_lines_are_contract_valid_json_objects_with_unique_ids():
    lines = list(loads.web_event_lines(DAY, 5000))
    parsed = [json.loads(line) for line in lines]
    columns = [c.name for c in loads.WEB.columns]
    assert all(list(event) == columns for event in parsed)  # every column, contract order
    assert [p for event in parsed for p in _contract_problems(loads.WEB, event)] == []
    assert len({event["event_id"] for event in parsed}) == len(parsed)
    # the reader sees one record per line, none with a problem
    read = list(records.jsonl_records((line + "\n", None) for line in lines))
    assert len(read) == len(lines) and all(r.problem is None for r in read)
    # no byte the loader's fast path takes for a COPY separator
    assert not any("\x01" in line or "\x02" in line for line in lines)


def test_web_event_lines_vary_and_spread_over_the_day():
    parsed = [json.loads(line) for line in loads.web_event_lines(DAY, 2000)]
    assert parsed[0]["occurred_at"] == "2026-01-05T00:00:00.000Z"
    assert parsed[-1]["occurred_at"].startswith("2026-01-05T23:")
    assert [e["occurred_at"] for e in parsed] == sorted(e["occurred_at"] for e in parsed)
    assert {e["event_name"] for e in parsed} >= {"page_view", "session_start", "purchase"}
    assert len({e["session_id"] for e in parsed}) > 100
    assert any(e["user_id"] for e in parsed) and any(e["user_id"] is None for e in parsed)


def test_files_of_other_days_hold_other_ids():
    first = json.loads(next(loads.web_event_lines(DAY, 10)))
    other = json.loads(next(loads.web_event_lines(date(2026, 1, 6), 10)))
    assert first["event_id"] != other["event_id"]
    csv_first = next(loads.email_event_lines(DAY, 10)).split(",")[0]
    csv_other = next(loads.email_event_lines(date(2026, 1, 6), 10)).split(",")[0]
    assert csv_first != csv_other


def test_email_event_lines_are_contract_valid_csv_records():
    header = loads.email_event_header()
    lines = [header, *loads.email_event_lines(DAY, 5000)]
    read = list(records.csv_records((line + "\n", None) for line in lines))
    head = records.map_header(loads.EMAIL, read[0].fields)  # raises on a missing column
    assert head.extras == []
    rows = read[1:]
    assert len(rows) == 5000 and all(r.problem is None and len(r.fields) == 6 for r in rows)
    names = [c.name for c in loads.EMAIL.columns]
    parsed = [dict(zip(names, r.fields, strict=True)) for r in rows]
    assert [p for row in parsed for p in _contract_problems(loads.EMAIL, row)] == []
    assert len({row["event_id"] for row in parsed}) == 5000
    assert all(len(row["event_id"]) == 16 for row in parsed)
    assert {row["event_type"] for row in parsed} == set(contract.EMAIL_EVENT_TYPES)
    assert all(bool(row["url"]) == (row["event_type"] == "click") for row in parsed)


def test_write_delivery_lands_in_the_landing_layout(tmp_path: Path):
    web = loads.write_delivery(tmp_path, loads.WEB, DAY, 120_001)  # more than one batch
    csv = loads.write_delivery(tmp_path, loads.EMAIL, DAY, 3)
    assert web == tmp_path / "web/events/dt=2026-01-05/events.jsonl"
    assert csv == tmp_path / "crm/email_events/dt=2026-01-05/email_events.csv"
    assert (web.parent / "_SUCCESS").is_file() and (csv.parent / "_SUCCESS").is_file()
    text = web.read_text()
    assert text.endswith("}\n") and text.count("\n") == 120_001
    assert csv.read_text().splitlines()[0] == "event_id,contact_id,campaign_id,event_type,occurred_at,url"
    assert len(csv.read_text().splitlines()) == 4


def test_psql_commands():
    path = Path("/landing/it's/events.jsonl")
    bare = loads.psql_commands(loads.WEB, path, "bare")
    assert bare == [("\\copy bench.\"web_events_bare\" (doc) from '/landing/it''s/events.jsonl' "
                     "with (format csv, quote e'\\x01', delimiter e'\\x02')")]
    same = loads.psql_commands(loads.WEB, path, "same_shape")
    assert same[0] == "create temp table stage (line text)"
    assert same[1].startswith("\\copy stage (line) from ")
    assert same[2].endswith("from (select line::jsonb as doc from stage offset 0) as parsed")
    assert "(doc ->> 'occurred_at')::timestamptz" in same[2]
    assert "doc -> 'properties'" in same[2] and "doc ->> 'event_id'" in same[2]
    csv = loads.psql_commands(loads.EMAIL, Path("/l/e.csv"), "same_shape")
    assert csv == [('\\copy bench."crm_email_events_same_shape" ("event_id", "contact_id", '
                    '"campaign_id", "event_type", "occurred_at", "url") from \'/l/e.csv\' '
                    "with (format csv, header true)")]


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://postgres:@/bench_loads?host=/work/.warehouse/pgdata",
     "postgresql://postgres:@localhost:5432/bench_loads?host=%2Fwork%2F.warehouse%2Fpgdata"),
    ("postgresql://lw:s%40cret@db.example.com:6543/bench_loads?sslmode=require",
     "postgresql://lw:s%40cret@db.example.com:6543/bench_loads?sslmode=require"),
])
def test_dlt_credentials(url, expected):
    assert loads.dlt_credentials(url) == expected


def test_ratios_and_extrapolation():
    assert loads.ratio(12.0, 10.0) == 1.2
    assert loads.ratio(None, 10.0) is None and loads.ratio(1.0, None) is None
    assert loads.per_million(5.0, 100_000) == 50.0
    part = loads.summarise({
        "psql_copy_same_shape_s": 10.0, "psql_copy_bare_s": 6.0, "project_s": 11.0,
        "project_reload_s": 13.0, "dlt_s": None, "pandas_to_sql_s": 5.0, "pandas_lines": 100_000,
    }, 2_000_000)
    assert part["ratio_project_vs_copy"] == 1.1
    assert part["ratio_psql_bare_vs_copy"] == 0.6
    assert part["ratio_dlt_vs_copy"] is None
    assert part["pandas_to_sql_extrapolated_s"] == 100.0
    assert part["ratio_pandas_vs_copy_extrapolated"] == 10.0


def _results(dlt: dict) -> dict:
    def part(file_mb: float) -> dict:
        return loads.summarise({
            "file_mb": file_mb, "psql_copy_same_shape_s": 40.0, "psql_copy_bare_s": 20.0,
            "project_s": 44.0, "project_reload_s": 50.0, "pandas_to_sql_s": 6.0,
            "pandas_lines": 100_000, "pandas_peak_rss_mb": 500.0, **dlt,
        }, 2_000_000)

    return {
        "lines": 2_000_000, "environment": {"dlt": "1.31.0" if dlt.get("dlt_s") else None},
        "jsonl": part(1118.0), "csv": part(145.0),
        "peak_rss_mb": {"jsonl": 61.0, "jsonl_quarter": 60.0, "csv": 45.0, "csv_quarter": 44.0},
        "raw_load_peak_rss_mb": 61.0, "problems": [],
    }


def test_markdown_table_with_dlt():
    text = "\n".join(loads.markdown(_results({"dlt_s": 400.0, "dlt": {"peak_rss_mb": 300.0}})))
    assert text.startswith("## Raw loads\n")
    assert "| method | JSONL s | ×copy | CSV s | ×copy |" in text
    assert "| `psql \\copy`, same table shape (the 1.0) | 40.0 | 1.00 | 40.0 | 1.00 |" in text
    assert "| **project loader** (validated, audited) | 44.0 | 1.10 | 44.0 | 1.10 |" in text
    assert "| dlt 1.31.0 (filesystem readers, docs' defaults) | 400.0 | 10.00 |" in text
    assert "first 100,000 records; ×copy extrapolated) | 6.00 | 3.00 |" in text
    assert "JSONL 61 MB (a file a quarter the size: 60 MB), CSV 45 MB (quarter: 44 MB)" in text
    assert "2,000,000 records each (1,118 MB and 145 MB)" in text
    assert "dlt flattens" in text
    assert ("Peak RSS of the others: dlt JSONL 300 MB, CSV 300 MB; pandas, for its first "
            "100,000 records only, JSONL 500 MB, CSV 500 MB.") in text


def test_markdown_says_dlt_was_skipped():
    text = "\n".join(loads.markdown(_results({"dlt_s": None, "dlt": {"skipped": loads.DLT_SKIPPED}})))
    assert "| dlt: skipped (dlt not installed: pip install 'dlt[postgres]') | – | – | – | – |" in text
    assert "dlt flattens" not in text
    assert "Peak RSS of the others: pandas, for its first 100,000 records only" in text


def test_markdown_lists_problems():
    results = _results({"dlt_s": None, "dlt": {"skipped": loads.DLT_SKIPPED}})
    results["problems"] = ["CSV, project: 3 rows where 4 were expected"]
    lines = loads.markdown(results)
    assert lines[-1] == "- CSV, project: 3 rows where 4 were expected"
