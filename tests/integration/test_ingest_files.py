"""The file loader against a real PostgreSQL 16: hand-written deliveries in tmp_path, exact
rows, quarantine entries and audit rows."""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from lifecycle_warehouse import contract
from lifecycle_warehouse.ingest import chunks, files

DT = date(2024, 3, 1)
UTC = timezone.utc

CONTACTS_HEADER = (
    "contact_id,email,first_name,last_name,phone,country,city,lead_source,lifecycle_stage,"
    "created_at,updated_at"
)
EVENTS_HEADER = "event_id,contact_id,campaign_id,event_type,occurred_at,url"


def deliver(landing: Path, source: str, entity: str, name: str, content: bytes | str,
            dt: date = DT, gz: bool = False) -> Path:
    folder = landing / source / entity / f"dt={dt.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    path = folder / name
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def load(url: str, landing: Path, source: str, entity: str, dt: date = DT) -> files.DeliveryResult:
    with psycopg.connect(url, autocommit=True) as conn:
        return files.load_delivery(conn, landing, contract.file_entity(source, entity), dt)


def rows(url: str, query: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        conn.execute("set timezone = 'UTC'")
        return conn.execute(query, params).fetchall()


def data_rows(url: str, table: str) -> list[dict]:
    """Every column except those that differ between loads of the same data."""
    return [
        {k: v for k, v in r.items() if k not in ("_batch_id", "_loaded_at")}
        for r in rows(url, f"select * from raw.{table} order by _file, _line_number")
    ]


def quarantine(url: str, entity: str | None = None) -> list[tuple]:
    query = "select file, line_number, rule, raw_record from raw.quarantine"
    if entity:
        query += " where entity = %s"
    query += " order by file, line_number"
    return [tuple(r.values()) for r in rows(url, query, (entity,) if entity else ())]


def snapshot(url: str) -> dict[str, list[dict]]:
    return {
        "contacts": rows(url, "select * from raw.crm_contacts order by _file, _line_number"),
        "quarantine": rows(url, "select * from raw.quarantine order by file, line_number"),
        "audit": rows(url, "select * from raw.load_audit order by loaded_at, file"),
    }


# --------------------------------------------------------------------------- happy path


def test_loads_a_delivery_with_exact_typed_values(warehouse_url, tmp_path):
    deliver(tmp_path, "crm", "contacts", "a.csv", "\n".join([
        CONTACTS_HEADER,
        "c1,ann@example.com,Ann,Lee,,DE,Berlin,organic,lead,2024-02-01T10:00:00Z,2024-03-01 08:30:00",
        "c2,bob@example.com,Bob,,+49 30 1,FR,Paris,,customer,2024-02-02T10:00:00+02:00,2024-03-01T09:00:00Z",
    ]) + "\n")
    deliver(tmp_path, "crm", "contacts", "b.csv.gz", CONTACTS_HEADER + "\nc3,cy@example.com,,,,,,,,2024-01-01,2024-03-01T00:00:00Z\n", gz=True)
    deliver(tmp_path, "crm", "contacts", "_SUCCESS", "")
    deliver(tmp_path, "crm", "contacts", ".partial.csv", "garbage")

    result = load(warehouse_url, tmp_path, "crm", "contacts")

    assert result.batch_id is not None
    assert [(f.file, f.status, f.rows_read, f.rows_loaded, f.rows_quarantined) for f in result.files] == [
        ("crm/contacts/dt=2024-03-01/a.csv", "loaded", 2, 2, 0),
        ("crm/contacts/dt=2024-03-01/b.csv.gz", "loaded", 1, 1, 0),
    ]
    got = data_rows(warehouse_url, "crm_contacts")
    assert got[0] == {
        "contact_id": "c1", "email": "ann@example.com", "first_name": "Ann", "last_name": "Lee",
        "phone": None, "country": "DE", "city": "Berlin", "lead_source": "organic",
        "lifecycle_stage": "lead",
        "created_at": datetime(2024, 2, 1, 10, tzinfo=UTC),
        "updated_at": datetime(2024, 3, 1, 8, 30, tzinfo=UTC),  # no offset = UTC
        "_dt": DT, "_file": "crm/contacts/dt=2024-03-01/a.csv", "_line_number": 2, "_extra": None,
    }
    assert got[1]["created_at"] == datetime(2024, 2, 2, 8, tzinfo=UTC)  # +02:00 converted
    assert (got[1]["last_name"], got[1]["lead_source"], got[1]["_line_number"]) == (None, None, 3)
    assert got[2]["_file"] == "crm/contacts/dt=2024-03-01/b.csv.gz"
    assert got[2]["created_at"] == datetime(2024, 1, 1, tzinfo=UTC)
    audit = rows(warehouse_url, "select * from raw.load_audit order by file")
    assert [(a["file"], a["status"], a["rows_read"], a["rows_loaded"], a["batch_id"]) for a in audit] == [
        ("crm/contacts/dt=2024-03-01/a.csv", "loaded", 2, 2, result.batch_id),
        ("crm/contacts/dt=2024-03-01/b.csv.gz", "loaded", 1, 1, result.batch_id),
    ]
    assert quarantine(warehouse_url) == []


def test_typed_numbers_dates_and_extra_csv_columns(warehouse_url, tmp_path):
    header = "date,channel,campaign_id,utm_source,utm_medium,utm_campaign,impressions,clicks,spend,currency,Ad Group,notes"
    deliver(tmp_path, "marketing", "ad_spend", "spend.csv",
            f"{header}\n2024-03-01,paid_search,cmp1,google,cpc,spring,12000,340,1234.56,EUR,brand,\n")
    load(warehouse_url, tmp_path, "marketing", "ad_spend")
    (row,) = data_rows(warehouse_url, "marketing_ad_spend")
    assert (row["date"], row["impressions"], row["clicks"], row["spend"]) == (
        date(2024, 3, 1), 12000, 340, Decimal("1234.56")
    )
    assert row["_extra"] == {"Ad Group": "brand", "notes": None}


def test_jsonl_events_with_properties_extra_keys_and_blank_lines(warehouse_url, tmp_path):
    lines = [
        '{"event_id":"e1","event_name":"purchase","occurred_at":"2024-03-01T10:00:00Z","anonymous_id":"a1",'
        '"user_id":"c1","session_id":"s1","device_type":"mobile","country":"DE",'
        '"properties":{"order_id":"o1","value":19.9,"currency":"EUR"},"consent":true}',
        "",
        '{"event_id":"e2","event_name":"page_view","occurred_at":"2024-02-28T23:59:59","anonymous_id":"a2",'
        '"session_id":"s2","properties":null,"user_id":null}',
    ]
    deliver(tmp_path, "web", "events", "part-0001.jsonl", "\n".join(lines) + "\n")
    result = load(warehouse_url, tmp_path, "web", "events")
    assert [(f.rows_read, f.rows_loaded, f.rows_quarantined) for f in result.files] == [(2, 2, 0)]
    first, second = data_rows(warehouse_url, "web_events")
    assert first["properties"] == {"order_id": "o1", "value": 19.9, "currency": "EUR"}
    assert first["_extra"] == {"consent": True}
    assert (first["user_id"], first["device_type"], first["_line_number"]) == ("c1", "mobile", 1)
    assert second["occurred_at"] == datetime(2024, 2, 28, 23, 59, 59, tzinfo=UTC)
    assert (second["properties"], second["user_id"], second["_extra"], second["_line_number"]) == (None, None, None, 3)


def test_empty_files_are_valid_empty_deliveries(warehouse_url, tmp_path):
    deliver(tmp_path, "crm", "email_events", "events.csv", EVENTS_HEADER + "\r\n")
    deliver(tmp_path, "web", "events", "empty.jsonl", "")
    for source, entity in [("crm", "email_events"), ("web", "events")]:
        result = load(warehouse_url, tmp_path, source, entity)
        assert [(f.status, f.rows_read, f.rows_loaded) for f in result.files] == [("loaded", 0, 0)]


def test_missing_folder_is_no_delivery(warehouse_url, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="lifecycle_warehouse.ingest.files")
    result = load(warehouse_url, tmp_path, "crm", "contacts")
    assert (result.batch_id, result.files) == (None, [])
    assert "not delivered" in caplog.text
    assert rows(warehouse_url, "select count(*) as n from raw.load_audit") == [{"n": 0}]


def test_load_interval_takes_dates_in_the_half_open_interval(warehouse_url, tmp_path):
    for day in (1, 2, 3):
        deliver(tmp_path, "crm", "campaigns", "c.csv",
                f"campaign_id,name,channel,start_date,end_date,budget,currency\ncmp{day},Spring,email,,,,\n",
                dt=date(2024, 3, day))
    results = files.load_interval(warehouse_url, tmp_path, "crm", date(2024, 3, 1), date(2024, 3, 3),
                                  entities=["campaigns"], settle_seconds=0)
    assert [(r.entity, r.dt, r.rows_loaded) for r in results] == [
        ("campaigns", date(2024, 3, 1), 1), ("campaigns", date(2024, 3, 2), 1)
    ]
    assert [r["campaign_id"] for r in rows(warehouse_url, "select campaign_id from raw.crm_campaigns order by 1")] == ["cmp1", "cmp2"]
    all_crm = files.load_interval(warehouse_url, tmp_path, "crm", date(2024, 3, 3), date(2024, 3, 4),
                                  settle_seconds=0)
    assert [r.entity for r in all_crm] == [e.entity for e in contract.file_entities("crm")]
    assert [r.delivered for r in all_crm] == [e.entity == "campaigns" for e in contract.file_entities("crm")]
    with pytest.raises(ValueError, match="unknown crm entity"):
        files.load_interval(warehouse_url, tmp_path, "crm", DT, DT, entities=["nope"])


# --------------------------------------------------------------------------- reloads


def test_reload_leaves_identical_rows_and_does_not_duplicate_quarantine(warehouse_url, tmp_path):
    deliver(tmp_path, "crm", "email_events", "events.csv", "\n".join([
        EVENTS_HEADER,
        "e1,c1,cmp1,open,2024-03-01T10:00:00Z,",
        "e2,c1,cmp1,explode,2024-03-01T10:00:00Z,",
        "e3,c2,cmp1,click,2024-03-01T11:00:00Z,https://x.example/?a=1",
    ]))
    first = load(warehouse_url, tmp_path, "crm", "email_events")
    before_rows = data_rows(warehouse_url, "crm_email_events")
    before_quarantine = quarantine(warehouse_url)
    second = load(warehouse_url, tmp_path, "crm", "email_events")

    assert first.batch_id != second.batch_id
    assert data_rows(warehouse_url, "crm_email_events") == before_rows
    assert len(before_rows) == 2
    assert quarantine(warehouse_url) == before_quarantine
    assert len(before_quarantine) == 1
    batches = rows(warehouse_url, "select distinct _batch_id from raw.crm_email_events")
    assert batches == [{"_batch_id": second.batch_id}]
    assert rows(warehouse_url, "select count(*) as n from raw.load_audit") == [{"n": 2}]


def test_redelivery_with_different_content_replaces_the_folder(warehouse_url, tmp_path):
    old = deliver(tmp_path, "crm", "email_events", "v1.csv",
                  f"{EVENTS_HEADER}\ne1,c1,cmp1,open,2024-03-01T10:00:00Z,\ne2,c1,cmp1,bad,2024-03-01T10:00:00Z,\n")
    load(warehouse_url, tmp_path, "crm", "email_events")
    old.unlink()
    deliver(tmp_path, "crm", "email_events", "v2.csv", f"{EVENTS_HEADER}\ne9,c9,cmp9,click,2024-03-01T12:00:00Z,\n")
    # Another day's delivery must survive the replacement.
    deliver(tmp_path, "crm", "email_events", "other.csv",
            f"{EVENTS_HEADER}\nx1,c1,cmp1,open,2024-03-02T10:00:00Z,\n", dt=date(2024, 3, 2))
    load(warehouse_url, tmp_path, "crm", "email_events", date(2024, 3, 2))
    load(warehouse_url, tmp_path, "crm", "email_events")

    got = rows(warehouse_url, "select event_id, _file from raw.crm_email_events order by _dt, event_id")
    assert got == [
        {"event_id": "e9", "_file": "crm/email_events/dt=2024-03-01/v2.csv"},
        {"event_id": "x1", "_file": "crm/email_events/dt=2024-03-02/other.csv"},
    ]
    assert quarantine(warehouse_url) == []


def test_file_missing_a_required_column_is_rejected_and_the_rest_loads(warehouse_url, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="lifecycle_warehouse.ingest.files")
    deliver(tmp_path, "crm", "email_events", "a.csv",
            "event_id,campaign_id,event_type,occurred_at,url\ne1,cmp1,open,2024-03-01T10:00:00Z,\n")
    deliver(tmp_path, "crm", "email_events", "b.csv", f"{EVENTS_HEADER}\ne2,c1,cmp1,open,2024-03-01T10:00:00Z,\n")
    result = load(warehouse_url, tmp_path, "crm", "email_events")

    rejected, loaded = result.files
    assert (rejected.status, rejected.rows_loaded) == ("rejected", 0)
    assert rejected.error == (
        "crm/email_events/dt=2024-03-01/a.csv: missing column(s) in header: contact_id (required: contact_id)"
    )
    assert (loaded.status, loaded.rows_loaded) == ("loaded", 1)
    audit = rows(warehouse_url, "select file, status, rows_read, rows_loaded, error from raw.load_audit order by file")
    assert audit[0] == {"file": "crm/email_events/dt=2024-03-01/a.csv", "status": "rejected", "rows_read": 0,
                        "rows_loaded": 0, "error": rejected.error}
    assert (audit[1]["status"], audit[1]["rows_loaded"], audit[1]["error"]) == ("loaded", 1, None)
    assert [r["event_id"] for r in rows(warehouse_url, "select event_id from raw.crm_email_events")] == ["e2"]
    assert "a.csv: missing column(s) in header: contact_id" in caplog.text


def test_unreadable_files_are_rejected_and_the_rest_loads(warehouse_url, tmp_path):
    good = '{"event_id":"e1","event_name":"login","occurred_at":"2024-03-01T10:00:00Z","anonymous_id":"a","session_id":"s"}\n'
    truncated = gzip.compress((good * 2000).encode())
    deliver(tmp_path, "web", "events", "a.jsonl.gz", truncated[: len(truncated) // 2])
    deliver(tmp_path, "web", "events", "b.jsonl.gz", b"this is not gzip")
    deliver(tmp_path, "web", "events", "c.csv", "event_id\ne1\n")  # wrong format for web/events
    deliver(tmp_path, "web", "events", "d.jsonl.gz", good, gz=True)
    result = load(warehouse_url, tmp_path, "web", "events")

    statuses = [(f.file.rsplit("/", 1)[1], f.status) for f in result.files]
    assert statuses == [("a.jsonl.gz", "rejected"), ("b.jsonl.gz", "rejected"), ("c.csv", "rejected"), ("d.jsonl.gz", "loaded")]
    a, b, c, _ = result.files
    assert a.error.startswith("web/events/dt=2024-03-01/a.jsonl.gz: cannot read the file: Compressed file ended")
    assert "Not a gzipped file" in b.error
    assert c.error.endswith("c.csv: is a CSV file but web/events is delivered as JSONL")
    # Nothing of the truncated file's readable first half was kept.
    assert [r["_file"] for r in rows(warehouse_url, "select _file from raw.web_events")] == [
        "web/events/dt=2024-03-01/d.jsonl.gz"
    ]


# --------------------------------------------------------------------------- bad records


def test_csv_bad_record_corpus(warehouse_url, tmp_path):
    body = (
        b"\xef\xbb\xbf" + CONTACTS_HEADER.encode() + b"\r\n"                                    # 1 (BOM)
        b"c1,a@x.io,,,,DE,,,lead,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z\r\n"                # 2 good
        b"c2,b@x.io,,,,DE,,,lead,yesterday-ish,2024-03-01T10:00:00Z\r\n"                        # 3 timestamp
        b"c3,c@x.io,,,,DE,,,vip,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z\r\n"                  # 4 enum
        b",d@x.io,,,,DE,,,lead,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z\r\n"                   # 5 required
        b"c5,e@x.io,,,,DE,,,lead,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z,surplus\r\n"         # 6 field count
        b"c6,f@x.io,Jos\xe9,,,DE,,,lead,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z\r\n"          # 7 not UTF-8
        b'c7,g@x.io,"multi\r\nline",,,DE,,,lead,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z\r\n'  # 8-9 good
        b"c8,h@x.io,,,,DEU,,,lead,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z\r\n"                # 10 length
        b"c10,j@x.io,,,,DE,,,lead,now,2024-03-01T10:00:00Z\r\n"                                 # 11 'now'
        b'c9,i@x.io,"never closed,,,DE,,,lead,2024-03-01,2024-03-01\r\n'                        # 12 malformed
    )
    deliver(tmp_path, "crm", "contacts", "bad.csv", body)
    result = load(warehouse_url, tmp_path, "crm", "contacts")

    (file,) = result.files
    assert (file.status, file.rows_read, file.rows_loaded, file.rows_quarantined) == ("loaded", 10, 2, 8)
    assert file.rows_read == file.rows_loaded + file.rows_quarantined
    name = "crm/contacts/dt=2024-03-01/bad.csv"
    assert quarantine(warehouse_url) == [
        (name, 3, "created_at: not a timestamp", "c2,b@x.io,,,,DE,,,lead,yesterday-ish,2024-03-01T10:00:00Z"),
        (name, 4, "lifecycle_stage: unknown value 'vip'", "c3,c@x.io,,,,DE,,,vip,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z"),
        (name, 5, "contact_id: required", ",d@x.io,,,,DE,,,lead,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z"),
        (name, 6, "expected 11 fields, found 12", "c5,e@x.io,,,,DE,,,lead,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z,surplus"),
        (name, 7, "not valid UTF-8", "c6,f@x.io,Jos\\xe9,,,DE,,,lead,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z"),
        (name, 10, "country: must be 2 characters long", "c8,h@x.io,,,,DEU,,,lead,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z"),
        (name, 11, "created_at: not a timestamp", "c10,j@x.io,,,,DE,,,lead,now,2024-03-01T10:00:00Z"),
        (name, 12, "malformed CSV: unexpected end of data", 'c9,i@x.io,"never closed,,,DE,,,lead,2024-03-01,2024-03-01'),
    ]
    good = rows(warehouse_url, "select contact_id, first_name, _line_number from raw.crm_contacts order by _line_number")
    assert good == [
        {"contact_id": "c1", "first_name": None, "_line_number": 2},
        {"contact_id": "c7", "first_name": "multi\r\nline", "_line_number": 8},
    ]


def test_numbers_checks_and_bounds_are_quarantined_with_their_rule(warehouse_url, tmp_path):
    deliver(tmp_path, "crm", "survey_responses", "s.csv", "\n".join([
        "response_id,contact_id,survey_type,score,submitted_at,comment",
        "r1,c1,nps,10,2024-03-01T10:00:00Z,great",
        "r2,c1,nps,11,2024-03-01T10:00:00Z,",
        "r3,c1,csat,0,2024-03-01T10:00:00Z,",
        "r4,c1,nps,ten,2024-03-01T10:00:00Z,",
        "r5,c1,csat,5,2024-03-01T10:00:00Z,\"nul \x00 inside\"",
    ]) + "\n")
    deliver(tmp_path, "marketing", "ad_spend", "a.csv", "\n".join([
        "date,channel,campaign_id,utm_source,utm_medium,utm_campaign,impressions,clicks,spend,currency",
        "2024-03-01,display,,,,,100,1,-5,USD",
        "2024-03-01,display,,,,,100,1,NaN,USD",
        "2024-03-01,display,,,,,1.5,1,5,USD",
        "03/01/2024,display,,,,,100,1,5,USD",
        "2024-03-01,display,,,,,100,1,5.25,USD",
    ]) + "\n")
    load(warehouse_url, tmp_path, "crm", "survey_responses")
    load(warehouse_url, tmp_path, "marketing", "ad_spend")

    assert [(line, rule) for _, line, rule, _ in quarantine(warehouse_url, "survey_responses")] == [
        (3, "score: nps must be 0–10"),
        (4, "score: csat must be 1–5"),
        (5, "score: not an integer"),
        (6, "contains a NUL character"),
    ]
    assert quarantine(warehouse_url, "survey_responses")[3][3] == 'r5,c1,csat,5,2024-03-01T10:00:00Z,"nul \\x00 inside"'
    assert [(line, rule) for _, line, rule, _ in quarantine(warehouse_url, "ad_spend")] == [
        (2, "spend: must be at least 0"),
        (3, "spend: not a number"),
        (4, "impressions: not an integer"),
        (5, "date: not a date"),
    ]
    assert rows(warehouse_url, "select spend from raw.marketing_ad_spend") == [{"spend": Decimal("5.25")}]


def test_jsonl_bad_record_corpus(warehouse_url, tmp_path):
    ok = '"event_name":"login","occurred_at":"2024-03-01T10:00:00Z","anonymous_id":"a","session_id":"s"'
    lines = [
        b'{"event_id":"e1",' + ok.encode(),                                   # 1 good
        b'[{"event_id":"e2"}]',                                                # 2 array
        b'{"event_id":"e3",' + ok.encode(),                                   # 3 truncated: no closing brace
        b"",                                                                   # 4 blank
        b'{"event_id":"e5","properties":"x",' + ok.encode() + b"}",           # 5 properties not an object
        b'{"event_id":"e6","device_type":"watch",' + ok.encode() + b"}",      # 6 enum
        b'{"event_id":"e7","event_name":"login","occurred_at":"2024-13-45T10:00:00Z","anonymous_id":"a","session_id":"s"}',  # 7
        b'{"event_id":"e8","page_title":"caf\xe9",' + ok.encode() + b"}",     # 8 not UTF-8
        b'{"event_id":"e9","page_title":"nul \\u0000",' + ok.encode() + b"}",  # 9 jsonb refuses \u0000
        b'{"event_id":"e10","session_id":null,"event_name":"login","occurred_at":"2024-03-01T10:00:00Z","anonymous_id":"a"}',  # 10
        b'"just a string"',                                                    # 11
        b'{"event_id":"e12",' + ok.encode() + b"}",                           # 12 good
    ]
    lines[0] += b"}"
    deliver(tmp_path, "web", "events", "e.jsonl", b"\r\n".join(lines) + b"\r\n")
    (file,) = load(warehouse_url, tmp_path, "web", "events").files
    assert (file.rows_read, file.rows_loaded, file.rows_quarantined) == (11, 2, 9)
    name = "web/events/dt=2024-03-01/e.jsonl"
    got = quarantine(warehouse_url)
    assert [(line, rule) for _, line, rule, _ in got] == [
        (2, "not a JSON object"),
        (3, "not valid JSON"),
        (5, "properties: not a JSON object"),
        (6, "device_type: unknown value 'watch'"),
        (7, "occurred_at: not a timestamp"),
        (8, "not valid UTF-8"),
        (9, "not valid JSON"),
        (10, "session_id: required"),
        (11, "not a JSON object"),
    ]
    assert {g[0] for g in got} == {name}
    raw = {line: record for _, line, _, record in got}
    assert raw[3] == '{"event_id":"e3",' + ok
    assert raw[8] == '{"event_id":"e8","page_title":"caf\\xe9",' + ok + "}"
    assert raw[9] == '{"event_id":"e9","page_title":"nul \\u0000",' + ok + "}"
    assert [r["_line_number"] for r in rows(warehouse_url, "select _line_number from raw.web_events order by 1")] == [1, 12]


# --------------------------------------------------------------------------- atomicity and concurrency


def test_failure_mid_load_leaves_everything_as_before(warehouse_url, tmp_path, monkeypatch):
    deliver(tmp_path, "crm", "contacts", "a.csv",
            f"{CONTACTS_HEADER}\nc1,a@x.io,,,,DE,,,lead,2024-03-01,2024-03-01\nc2,b@x.io,,,,DE,,,vip,2024-03-01,2024-03-01\n")
    load(warehouse_url, tmp_path, "crm", "contacts")
    before = snapshot(warehouse_url)
    assert len(before["contacts"]) == 1 and len(before["quarantine"]) == 1

    deliver(tmp_path, "crm", "contacts", "a.csv", f"{CONTACTS_HEADER}\nc3,c@x.io,,,,DE,,,lead,2024-03-01,2024-03-01\n")
    deliver(tmp_path, "crm", "contacts", "b.csv", f"{CONTACTS_HEADER}\nc4,d@x.io,,,,DE,,,lead,2024-03-01,2024-03-01\n")
    real_load_file = files._load_file
    calls = []

    def fail_on_second_file(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real_load_file(*args, **kwargs)

    monkeypatch.setattr(files, "_load_file", fail_on_second_file)
    with pytest.raises(RuntimeError, match="disk on fire"):
        load(warehouse_url, tmp_path, "crm", "contacts")
    assert len(calls) == 2  # the first file had been loaded inside the transaction
    assert snapshot(warehouse_url) == before


def test_loads_of_the_same_folder_are_serialised(warehouse_url, tmp_path):
    deliver(tmp_path, "crm", "contacts", "a.csv", f"{CONTACTS_HEADER}\nc1,a@x.io,,,,DE,,,lead,2024-03-01,2024-03-01\n")
    entity = contract.file_entity("crm", "contacts")
    load(warehouse_url, tmp_path, "crm", "contacts")  # creates the raw schema
    with psycopg.connect(warehouse_url) as holder:
        holder.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (files.lock_key(entity, DT),))
        done = threading.Event()
        errors: list[BaseException] = []

        def run():
            try:
                load(warehouse_url, tmp_path, "crm", "contacts")
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                done.set()

        worker = threading.Thread(target=run)
        worker.start()
        assert not done.wait(1.0), "the load did not wait for the lock held on its (entity, dt)"
        holder.rollback()  # releases the lock
    worker.join(30)
    assert done.is_set() and not errors
    assert len(rows(warehouse_url, "select * from raw.crm_contacts")) == 1
    assert len(rows(warehouse_url, "select * from raw.load_audit")) == 2


def test_loads_of_other_folders_run_while_a_load_is_open(warehouse_url, tmp_path):
    """The raw-schema check at the start of every load must not wait for other loads' open
    transactions (as `create index if not exists` on a busy table would)."""
    deliver(tmp_path, "crm", "contacts", "a.csv", f"{CONTACTS_HEADER}\nc1,a@x.io,,,,DE,,,lead,2024-03-01,2024-03-01\n")
    deliver(tmp_path, "crm", "campaigns", "c.csv", "campaign_id,name,channel,start_date,end_date,budget,currency\ncmp1,S,email,,,,\n")
    load(warehouse_url, tmp_path, "crm", "contacts")
    with psycopg.connect(warehouse_url) as busy:  # a load of another folder, not yet committed
        busy.execute("insert into raw.load_audit (batch_id, source, entity, status) values (gen_random_uuid(), 'crm', 'contacts', 'loaded')")
        busy.execute("insert into raw.crm_campaigns (campaign_id, name, channel, _batch_id, _dt, _file, _line_number, _loaded_at) values ('x', 'x', 'email', gen_random_uuid(), '2024-01-01', 'f', 2, now())")
        outcome: list[object] = []
        worker = threading.Thread(target=lambda: outcome.append(load(warehouse_url, tmp_path, "crm", "campaigns")))
        worker.start()
        worker.join(15)
        finished = not worker.is_alive()
        busy.rollback()
    worker.join(30)
    assert finished, "the load waited for another transaction on raw.load_audit / raw.crm_campaigns"
    assert outcome[0].rows_loaded == 1


# --------------------------------------------------------------------------- two ways to load


GOOD_EVENTS_JSONL = "\ufeff" + "\r\n".join([
    '{"event_id":"e1","event_name":"page_view","occurred_at":"2024-03-01T10:00:00+02:00",'
    '"anonymous_id":"a1","session_id":"s1","page_url":"https://shop.example.com/ä","device_type":"mobile",'
    '"country":"DE","properties":{"engagement_time_msec":1200},"a_new_field":[1,2]}',
    "",
    "   ",
    '{"event_id":"e2","event_name":"purchase","occurred_at":"2024-03-01 23:59:59Z","anonymous_id":"a2",'
    '"session_id":"s2","user_id":"c1","utm_source":"Google","device_type":"desktop","country":"FR",'
    '"properties":{"value":"12.50","currency":"EUR"},"user_id_2":null}',
    '{"event_id":"e3","event_name":"page_view","occurred_at":"2024-02-29T12:00:00","anonymous_id":"a3",'
    '"session_id":"s3","page_title":"tab\\tand \\"quote\\" and \\\\ backslash","properties":null}',
]) + "\r\n"

GOOD_EVENTS_CSV = "\r\n".join([
    "occurred_at,event_id,campaign_id,contact_id,event_type,url,source_system",
    '2024-03-01T08:00:00Z,x1,cmp1,c1,delivered,,esp',
    '2024-03-01T08:05:00+01:00,x2,cmp1,c1,click,"https://shop.example.com/?a=1,2",esp',
    '2024-03-01T09:00:00Z,x3,cmp2,c2,open,,"quoted ""esp"""',
]) + "\r\n"


# The same records without blank lines: the optimistic load takes COPY's count as the
# records staged, without testing each line for blankness (nor counting them again).
GOOD_EVENTS_JSONL_NO_BLANK_LINE = "\n".join(
    line for line in GOOD_EVENTS_JSONL.lstrip("\ufeff").split("\r\n") if line.strip()
)


@pytest.mark.parametrize(("source", "entity", "name", "content"), [
    ("web", "events", "events.jsonl", GOOD_EVENTS_JSONL),
    ("web", "events", "events.jsonl.gz", GOOD_EVENTS_JSONL),
    ("web", "events", "events.jsonl", GOOD_EVENTS_JSONL_NO_BLANK_LINE),
    ("web", "events", "events.jsonl", " " + GOOD_EVENTS_JSONL_NO_BLANK_LINE + "\n\n"),
    ("crm", "email_events", "events.csv", GOOD_EVENTS_CSV),
])
def test_a_good_file_loads_from_its_bytes_exactly_as_record_by_record(
    warehouse_url, tmp_path, monkeypatch, source, entity, name, content
):
    """Every record good: the file is staged straight from its bytes and inserted
    optimistically (no Python per record); the rows are those of the careful,
    record-by-record load (line numbers, blank lines, BOM, CRLF, gzip, extra fields, a
    reordered CSV header, quoted fields)."""
    gz = name.endswith(".gz")
    deliver(tmp_path, source, entity, name, content, gz=gz)
    table = contract.file_entity(source, entity).raw_table
    optimistic = []
    real = files._load_file_optimistically
    monkeypatch.setattr(files, "_load_file_optimistically", lambda *a: optimistic.append(real(*a)) or optimistic[-1])
    first = load(warehouse_url, tmp_path, source, entity)
    assert optimistic and optimistic[-1] is not None, "a good file loads from its bytes"
    from_bytes = data_rows(warehouse_url, table)

    monkeypatch.setattr(files, "_load_file_optimistically", lambda *a: None)
    second = load(warehouse_url, tmp_path, source, entity)
    by_record = data_rows(warehouse_url, table)
    assert from_bytes == by_record
    assert [(f.rows_read, f.rows_loaded, f.rows_quarantined, f.header) for f in first.files] == [
        (f.rows_read, f.rows_loaded, f.rows_quarantined, f.header) for f in second.files]
    assert len(from_bytes) == 3


def test_a_timestamp_the_optimistic_load_refuses_loads_record_by_record(warehouse_url, tmp_path, monkeypatch):
    """The optimistic statement refuses any timestamp with a `b` (cheaper than the careful
    statement's ILIKE '%bc%'): a zone name like Europe/Berlin is valid for the contract, so
    the file goes the careful way and loads whole; a BC era is still quarantined."""
    content = GOOD_EVENTS_JSONL_NO_BLANK_LINE.replace("2024-03-01T10:00:00+02:00", "2024-03-01 10:00:00 Europe/Berlin")
    deliver(tmp_path, "web", "events", "events.jsonl", content)
    optimistic = []
    real = files._load_file_optimistically
    monkeypatch.setattr(files, "_load_file_optimistically", lambda *a: optimistic.append(real(*a)) or optimistic[-1])
    (file_result,) = load(warehouse_url, tmp_path, "web", "events").files
    assert optimistic == [None]
    assert (file_result.rows_read, file_result.rows_loaded, file_result.rows_quarantined) == (3, 3, 0)
    occurred = rows(warehouse_url, "select occurred_at from raw.web_events where event_id = 'e1'")
    assert occurred == [{"occurred_at": datetime(2024, 3, 1, 9, 0, tzinfo=UTC)}]

    deliver(tmp_path, "web", "events", "events.jsonl", content.replace("Europe/Berlin", "BC"))
    (file_result,) = load(warehouse_url, tmp_path, "web", "events").files
    assert (file_result.rows_loaded, file_result.rules) == (2, {"occurred_at: not a timestamp": 1})


def test_the_audit_has_the_files_sha256_computed_while_it_loads(warehouse_url, tmp_path, monkeypatch):
    """The SHA-256 is computed in a thread beside the load; a file whose hash cannot be read
    is rejected and nothing of it stays."""
    path = deliver(tmp_path, "web", "events", "events.jsonl", GOOD_EVENTS_JSONL)
    load(warehouse_url, tmp_path, "web", "events")
    audit = rows(warehouse_url, "select status, file_sha256 from raw.load_audit")
    assert audit == [{"status": "loaded", "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}]

    def unreadable(self):
        raise PermissionError(13, "Permission denied")

    deliver(tmp_path, "web", "events", "more.jsonl", GOOD_EVENTS_JSONL.replace('"e1"', '"e9"'))
    monkeypatch.setattr(files.DataFile, "with_sha256", lambda self: unreadable(self) if self.rel.endswith("more.jsonl") else self)
    result = load(warehouse_url, tmp_path, "web", "events")
    assert [(f.file.rsplit("/", 1)[1], f.status) for f in result.files] == [("events.jsonl", "loaded"), ("more.jsonl", "rejected")]
    assert result.files[1].error.endswith("more.jsonl: cannot read the file: [Errno 13] Permission denied")
    assert "e9" not in {r["event_id"] for r in rows(warehouse_url, "select event_id from raw.web_events")}


@pytest.mark.parametrize("content", [
    # a record to quarantine, a value that does not cast, mixed line ends, a line that is
    # not JSON, a control byte COPY would take for a separator
    GOOD_EVENTS_JSONL.replace('"device_type":"desktop"', '"device_type":"fridge"'),
    GOOD_EVENTS_JSONL.replace("2024-02-29T12:00:00", "2024-02-30T12:00:00"),
    GOOD_EVENTS_JSONL.replace("\r\n", "\n", 1),
    GOOD_EVENTS_JSONL + "not json\n",
    GOOD_EVENTS_JSONL.replace("tab\\t", "tab\x01"),
    # COPY takes a line `\.` for the end of its data: the lines after it would be lost
    GOOD_EVENTS_JSONL.replace("\r\n", "\r\n\\.\r\n", 1),
])
def test_a_file_the_optimistic_load_cannot_take_loads_record_by_record(warehouse_url, tmp_path, content):
    deliver(tmp_path, "web", "events", "events.jsonl", content)
    result = load(warehouse_url, tmp_path, "web", "events")
    (file_result,) = result.files
    assert file_result.rows_read == file_result.rows_loaded + file_result.rows_quarantined
    assert file_result.rows_read in (3, 4)
    loaded = {r["event_id"] for r in data_rows(warehouse_url, "web_events")}
    assert len(loaded) == file_result.rows_loaded


def test_an_end_of_data_marker_in_a_jsonl_file_loses_no_line(warehouse_url, tmp_path):
    """COPY stops at a line `\\.`: the optimistic load sees fewer records than lines and
    leaves the file to the careful load, which quarantines that line and loads the rest."""
    lines = GOOD_EVENTS_JSONL_NO_BLANK_LINE.split("\n")
    deliver(tmp_path, "web", "events", "events.jsonl", "\n".join([lines[0], "\\.", *lines[1:]]) + "\n")
    (file_result,) = load(warehouse_url, tmp_path, "web", "events").files
    assert (file_result.rows_read, file_result.rows_loaded, file_result.rules) == (4, 3, {"not valid JSON": 1})
    assert quarantine(warehouse_url) == [("web/events/dt=2024-03-01/events.jsonl", 2, "not valid JSON", "\\.")]


# --------------------------------------------------------------------------- large files, in chunks


@pytest.fixture
def small_chunks(monkeypatch) -> list:
    """Every file staged in chunks of about 200 bytes on a second connection: a hand-written
    file spans several. Returns the typed chunks the folder's transaction inserted."""
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 200)
    monkeypatch.setattr(chunks, "MIN_CHUNKED_BYTES", 0)
    inserted = []
    real = files.insert_typed_sql
    monkeypatch.setattr(files, "insert_typed_sql", lambda *a, **k: inserted.append(k["chunk"]) or real(*a, **k))
    return inserted


def load_chunked(url: str, landing: Path, source: str, entity: str, dt: date = DT) -> files.DeliveryResult:
    with psycopg.connect(url, autocommit=True) as conn:
        return files.load_delivery(conn, landing, contract.file_entity(source, entity), dt, warehouse_url=url)


def chunk_tables(url: str) -> list[str]:
    return [r["relname"] for r in rows(
        url, "select relname from pg_class where starts_with(relname, '_lw_chunk_') order by 1")]


def stager_locks(url: str) -> int:
    return rows(url, "select count(*) as n from pg_locks where locktype = 'advisory' and classid = %s",
                (chunks._LOCK_CLASS,))[0]["n"]


def many_events_csv(count: int, end: str = "\r\n") -> str:
    """GOOD_EVENTS_CSV's records `count` times over (reordered header, an extra column,
    quoted fields), with distinct event ids."""
    header, *records = GOOD_EVENTS_CSV.split("\r\n")[:-1]
    lines = [header] + [
        record.replace(",x", f",x{copy}-", 1) for copy in range(count // len(records) + 1) for record in records
    ][:count]
    return end.join(lines) + end


def many_events_jsonl(copies: int) -> str:
    """GOOD_EVENTS_JSONL's lines `copies` times over (BOM, CRLF, blank lines)."""
    body = GOOD_EVENTS_JSONL.lstrip("\ufeff")
    return "\ufeff" + "".join(
        body.replace('"e1"', f'"e1-{i}"').replace('"e2"', f'"e2-{i}"').replace('"e3"', f'"e3-{i}"')
        for i in range(copies))


@pytest.mark.parametrize(("source", "entity", "name", "content"), [
    ("crm", "email_events", "events.csv", many_events_csv(40)),
    ("crm", "email_events", "events.csv", many_events_csv(40, "\n").rstrip("\n")),  # no final line end
    ("crm", "email_events", "events.csv.gz", many_events_csv(40)),
    ("web", "events", "events.jsonl", many_events_jsonl(6)),
    ("web", "events", "events.jsonl", many_events_jsonl(6).replace("\r\n", "\n") + "\n\n"),
])
def test_a_large_file_loads_in_chunks_exactly_as_record_by_record(
    warehouse_url, tmp_path, monkeypatch, small_chunks, source, entity, name, content
):
    """A file staged in chunks on a second connection, validated there and inserted chunk
    by chunk: the rows (line numbers included) and counts of the careful load, and no
    chunk left behind."""
    deliver(tmp_path, source, entity, name, content, gz=name.endswith(".gz"))
    table = contract.file_entity(source, entity).raw_table
    first = load_chunked(warehouse_url, tmp_path, source, entity)
    assert len(small_chunks) > 3, "the file was loaded in chunks"
    in_chunks = data_rows(warehouse_url, table)
    assert chunk_tables(warehouse_url) == [] and stager_locks(warehouse_url) == 0

    monkeypatch.setattr(files, "_load_file_optimistically", lambda *a: None)
    second = load(warehouse_url, tmp_path, source, entity)
    assert in_chunks == data_rows(warehouse_url, table)
    assert [(f.rows_read, f.rows_loaded, f.rows_quarantined, f.header) for f in first.files] == [
        (f.rows_read, f.rows_loaded, f.rows_quarantined, f.header) for f in second.files]
    if source == "crm":
        assert [r["_line_number"] for r in in_chunks] == list(range(2, 42))


def test_a_reload_in_chunks_replaces_the_folder(warehouse_url, tmp_path, small_chunks):
    deliver(tmp_path, "crm", "email_events", "events.csv", many_events_csv(40))
    load_chunked(warehouse_url, tmp_path, "crm", "email_events")
    once = data_rows(warehouse_url, "crm_email_events")
    result = load_chunked(warehouse_url, tmp_path, "crm", "email_events")
    assert result.rows_loaded == 40
    assert data_rows(warehouse_url, "crm_email_events") == once
    assert rows(warehouse_url, "select array_agg(distinct _batch_id) as b from raw.crm_email_events")[0]["b"] == [
        result.batch_id]
    assert chunk_tables(warehouse_url) == []


def _careful_only(url: str, landing: Path, monkeypatch) -> tuple[list, list, list]:
    monkeypatch.setattr(files, "_load_file_optimistically", lambda *a: None)
    result = load(url, landing, "crm", "email_events")
    monkeypatch.undo()
    return (data_rows(url, "crm_email_events"), quarantine(url),
            [(f.rows_read, f.rows_loaded, f.rows_quarantined, f.rules) for f in result.files])


@pytest.mark.parametrize("case", ["quoted newline across chunks", "quarantine in a later chunk",
                                  "mixed line ends", "a carriage return in a chunk's first line"])
def test_a_chunked_file_the_optimistic_load_cannot_take_loads_record_by_record(
    warehouse_url, tmp_path, monkeypatch, case
):
    """A CSV record over several lines (here cut by a chunk's end), a record to quarantine
    in a later chunk, line ends that change from one chunk to the next, a CR inside a line:
    the file goes the careful way, with the careful load's result, and no chunk stays."""
    content = many_events_csv(40)
    if case == "quoted newline across chunks":
        content = content.replace(',x3-2,cmp1,c1,click,"https://shop.example.com/?a=1,2",', ',x3-2,cmp1,c1,click,"https://a\nb",', 1)
    elif case == "quarantine in a later chunk":
        content = content.replace(",x12-1,cmp1,c1,delivered,", ",x12-1,cmp1,c1,fridge,", 1)
    elif case == "mixed line ends":
        head, tail = content[:len(content) // 2], content[len(content) // 2:]
        content = head + tail.replace("\r\n", "\n")
    else:
        content = content.replace("\r\n2024-03-01T08:00:00Z,x10-", "\r\n2024-03-01T08:00:00Z\r,x10-", 1)
    assert content != many_events_csv(40)
    deliver(tmp_path, "crm", "email_events", "events.csv", content)
    careful = _careful_only(warehouse_url, tmp_path, monkeypatch)

    monkeypatch.setattr(chunks, "MIN_CHUNKED_BYTES", 0)
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 200)
    if case == "quoted newline across chunks":  # the first chunk ends at the quoted newline
        monkeypatch.setattr(chunks, "CHUNK_BYTES", content.index("https://a\nb") + len("https://a") + 1)
    optimistic = []
    real = files._load_file_optimistically
    monkeypatch.setattr(files, "_load_file_optimistically", lambda *a: optimistic.append(real(*a)) or optimistic[-1])
    result = load_chunked(warehouse_url, tmp_path, "crm", "email_events")
    assert optimistic == [None]
    assert (data_rows(warehouse_url, "crm_email_events"), quarantine(warehouse_url),
            [(f.rows_read, f.rows_loaded, f.rows_quarantined, f.rules) for f in result.files]) == careful
    assert chunk_tables(warehouse_url) == [] and stager_locks(warehouse_url) == 0
    if case == "quarantine in a later chunk":
        assert [q[1:3] for q in careful[1]] == [(38, "event_type: unknown value 'fridge'")]


def test_a_file_that_goes_the_careful_way_after_one_loaded_in_chunks(warehouse_url, tmp_path, small_chunks):
    """Only the chunks of the file undone are dropped at once: those of the file loaded
    before it stay locked by the folder's transaction (dropped in it) and are not waited for."""
    deliver(tmp_path, "crm", "email_events", "a.csv", many_events_csv(40))
    deliver(tmp_path, "crm", "email_events", "b.csv",
            many_events_csv(40).replace(",x", ",y").replace(",y12-1,cmp1,c1,delivered,", ",y12-1,cmp1,c1,fridge,", 1))
    started = time.perf_counter()
    result = load_chunked(warehouse_url, tmp_path, "crm", "email_events")
    assert time.perf_counter() - started < 4  # chunks._DROP_LOCK_TIMEOUT is 5s
    assert [(f.rows_loaded, f.rows_quarantined) for f in result.files] == [(40, 0), (39, 1)]
    assert chunk_tables(warehouse_url) == [] and stager_locks(warehouse_url) == 0


def test_a_failure_mid_file_in_chunks_leaves_everything_as_before(warehouse_url, tmp_path, monkeypatch, small_chunks):
    deliver(tmp_path, "crm", "email_events", "events.csv", many_events_csv(40))
    load_chunked(warehouse_url, tmp_path, "crm", "email_events")
    before = (data_rows(warehouse_url, "crm_email_events"),
              rows(warehouse_url, "select * from raw.load_audit order by file"))
    deliver(tmp_path, "crm", "email_events", "events.csv", many_events_csv(40).replace(",x", ",y"))
    real = files.insert_typed_sql
    calls = []

    def fail_on_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(files, "insert_typed_sql", fail_on_the_third_chunk)
    with pytest.raises(RuntimeError, match="disk on fire"):
        load_chunked(warehouse_url, tmp_path, "crm", "email_events")
    assert (data_rows(warehouse_url, "crm_email_events"),
            rows(warehouse_url, "select * from raw.load_audit order by file")) == before
    assert chunk_tables(warehouse_url) == [] and stager_locks(warehouse_url) == 0


def test_chunks_a_crashed_load_left_are_dropped_and_a_living_loads_kept(warehouse_url, tmp_path, small_chunks):
    deliver(tmp_path, "crm", "email_events", "events.csv", many_events_csv(40))
    load_chunked(warehouse_url, tmp_path, "crm", "email_events")  # creates the raw schema
    with psycopg.connect(warehouse_url, autocommit=True) as living:
        for name in ("_lw_chunk_00000001_0", "_lw_chunk_00000001_1", "_lw_chunk_00000002_0", "_lw_chunk_notours"):
            living.execute(f"create unlogged table raw.{name} (x int)")
        living.execute("select pg_advisory_lock(%s, 2)", (chunks._LOCK_CLASS,))  # token 00000002 lives
        load_chunked(warehouse_url, tmp_path, "crm", "email_events")
        assert chunk_tables(warehouse_url) == ["_lw_chunk_00000002_0", "_lw_chunk_notours"]
    load_chunked(warehouse_url, tmp_path, "crm", "email_events")  # its owner has gone
    assert chunk_tables(warehouse_url) == ["_lw_chunk_notours"]


def test_inside_a_callers_transaction_a_file_is_staged_in_one_connection(warehouse_url, tmp_path, small_chunks):
    """The chunks are read only once committed and dropped once the folder's transaction
    has ended: inside a caller's transaction, the file is staged in its connection."""
    deliver(tmp_path, "crm", "email_events", "events.csv", many_events_csv(40))
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("select 1")  # the caller's transaction is open
        result = files.load_delivery(conn, tmp_path, contract.file_entity("crm", "email_events"), DT,
                                     warehouse_url=warehouse_url)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert result.rows_loaded == 40 and small_chunks == []
    assert len(data_rows(warehouse_url, "crm_email_events")) == 40 and chunk_tables(warehouse_url) == []
