"""Deliveries that go wrong, on a real PostgreSQL: a re-delivery whose every file is
rejected, folders that arrive late or change, files still being written, and the
quarantine replayed after the contract is fixed (docs/sources.md, project notes)."""

from __future__ import annotations

import dataclasses
import gzip
import os
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from lifecycle_warehouse import contract
from lifecycle_warehouse.ingest import deliveries, files, quarantine

DT = date(2024, 3, 10)
CONTACTS = "contact_id,email,first_name,last_name,phone,country,city,lead_source,lifecycle_stage,created_at,updated_at"
EVENTS = "event_id,contact_id,campaign_id,event_type,occurred_at,url"
HTML = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>upstream error</body></html>\n"


def deliver(landing: Path, source: str, entity: str, name: str, content: bytes | str, dt: date = DT,
            *, age_s: float = 3600, marker: bool = False) -> Path:
    """Write a file into a date folder, as delivered `age_s` seconds ago."""
    folder = deliveries.delivery_folder(landing, contract.file_entity(source, entity), dt)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    if marker:
        (folder / deliveries.MARKER).touch()
    settle(folder, age_s)
    return path


def settle(folder: Path, age_s: float = 3600) -> None:
    """Date every entry of a folder (and the folder) `age_s` seconds back."""
    then = time.time() - age_s
    for p in [*folder.iterdir(), folder]:
        os.utime(p, (then, then))


def contacts(*ids: str) -> str:
    return CONTACTS + "\n" + "".join(f"{i},{i}@x.io,,,,DE,,,lead,2024-03-01,2024-03-01\n" for i in ids)


def rows(url: str, query: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def load(url: str, landing: Path, source: str, start: date, days: int = 1, **options) -> list[files.DeliveryResult]:
    return files.load_interval(url, landing, source, start, start + timedelta(days=days), **options)


# --------------------------------------------------------------------------- a re-delivery never loses data


@pytest.mark.parametrize("broken", ["truncated_gzip", "zero_bytes", "html_as_csv", "html_as_jsonl"])
def test_a_redelivery_whose_every_file_is_rejected_keeps_the_previous_load(warehouse_url, tmp_path, broken):
    if broken == "html_as_jsonl":
        source, entity, good = "web", "events", "events.jsonl"
        content = "\n".join(
            f'{{"event_id":"e{i}","event_name":"page_view","occurred_at":"2024-03-10T10:00:00Z",'
            f'"anonymous_id":"a1","session_id":"s1"}}' for i in range(3)) + "\n"
    else:
        source, entity, good, content = "crm", "contacts", "contacts.csv", contacts("c1", "c2", "c3")
    table = f"raw.{source}_{entity}"
    folder = deliver(tmp_path, source, entity, good, content).parent
    load(warehouse_url, tmp_path, source, DT)
    before = rows(warehouse_url, f"select * from {table} order by _line_number")
    assert len(before) == 3

    (folder / good).unlink()
    name, payload = {
        "truncated_gzip": ("contacts.csv.gz", gzip.compress(content.encode() * 50)[:-30]),
        "zero_bytes": ("contacts.csv", b""),
        "html_as_csv": ("contacts.csv", HTML.encode()),
        "html_as_jsonl": ("events.jsonl", HTML.encode()),
    }[broken]
    deliver(tmp_path, source, entity, name, payload)
    with pytest.raises(files.DeliveryRejected) as rejected:
        load(warehouse_url, tmp_path, source, DT)

    message = str(rejected.value)
    assert f"{source}/{entity} dt={DT}" in message and name in message and "previous load" in message
    assert rows(warehouse_url, f"select * from {table} order by _line_number") == before
    audit = rows(warehouse_url, "select file, status, rows_loaded, error, file_sha256 from raw.load_audit"
                                " where entity = %s order by loaded_at", (entity,))
    assert [(a["file"].rsplit("/", 1)[1], a["status"]) for a in audit] == [(good, "loaded"), (name, "rejected")]
    assert audit[1]["error"] and audit[1]["file_sha256"]
    # the next run sees an unchanged (still broken) folder in its look-back: not retried
    assert [r.dt for r in load(warehouse_url, tmp_path, source, DT + timedelta(days=1)) if r.batch_id] == []


def test_a_rejected_file_beside_good_ones_is_audited_and_the_rest_replaces_the_folder(warehouse_url, tmp_path, caplog):
    deliver(tmp_path, "crm", "contacts", "a.csv", contacts("c1", "c2"))
    load(warehouse_url, tmp_path, "crm", DT)
    deliver(tmp_path, "crm", "contacts", "a.csv", contacts("c9"))
    deliver(tmp_path, "crm", "contacts", "b.csv", HTML)
    results = load(warehouse_url, tmp_path, "crm", DT)
    assert [r["contact_id"] for r in rows(warehouse_url, "select contact_id from raw.crm_contacts")] == ["c9"]
    (result,) = [r for r in results if r.entity == "contacts"]
    assert [(f.file.rsplit("/", 1)[1], f.status) for f in result.files] == [("a.csv", "loaded"), ("b.csv", "rejected")]
    assert any(r.levelname == "ERROR" and "b.csv" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- late and changed folders


def test_a_folder_delivered_late_is_loaded_by_the_next_days_run(warehouse_url, tmp_path):
    day1, day2 = DT, DT + timedelta(days=1)
    deliver(tmp_path, "crm", "contacts", "c.csv", contacts("c2"), dt=day2)
    first = load(warehouse_url, tmp_path, "crm", day1, entities=["contacts"])
    assert [(r.dt, r.note is not None) for r in first] == [(day1, True)], "day 1 is not there yet"

    deliver(tmp_path, "crm", "contacts", "c.csv", contacts("c1"), dt=day1)  # a day late
    second = load(warehouse_url, tmp_path, "crm", day2, entities=["contacts"])
    assert [(r.dt, r.reason) for r in second] == [(day1, deliveries.LATE), (day2, deliveries.IN_INTERVAL)]
    assert {r["contact_id"] for r in rows(warehouse_url, "select contact_id from raw.crm_contacts")} == {"c1", "c2"}

    # unchanged folders of the look-back are left alone; a changed one is loaded again
    third = load(warehouse_url, tmp_path, "crm", day2 + timedelta(days=1), entities=["contacts"])
    assert [r.dt for r in third if r.batch_id] == []
    deliver(tmp_path, "crm", "contacts", "c.csv", contacts("c1", "c1b"), dt=day1)
    fourth = load(warehouse_url, tmp_path, "crm", day2 + timedelta(days=1), entities=["contacts"])
    assert [(r.dt, r.reason) for r in fourth if r.batch_id] == [(day1, deliveries.CHANGED)]
    assert len(rows(warehouse_url, "select * from raw.crm_contacts where _dt = %s", (day1,))) == 2
    # the look-back has an end: a folder older than it is not picked up
    deliver(tmp_path, "crm", "contacts", "c.csv", contacts("old"), dt=day1 - timedelta(days=30))
    assert [r.dt for r in load(warehouse_url, tmp_path, "crm", day2 + timedelta(days=1),
                               entities=["contacts"]) if r.batch_id] == []


def test_a_touched_but_identical_file_is_not_reloaded(warehouse_url, tmp_path):
    deliver(tmp_path, "crm", "contacts", "c.csv", contacts("c1"))
    load(warehouse_url, tmp_path, "crm", DT, entities=["contacts"])
    settle(deliveries.delivery_folder(tmp_path, contract.file_entity("crm", "contacts"), DT), age_s=600)
    later = load(warehouse_url, tmp_path, "crm", DT + timedelta(days=1), entities=["contacts"])
    assert [r.dt for r in later if r.batch_id] == [], "same bytes (SHA-256), only the mtime moved"


# --------------------------------------------------------------------------- only complete files


def test_a_file_still_being_written_is_not_loaded_before_it_settles(warehouse_url, tmp_path):
    complete = contacts("c1", "c2")
    cut = complete[: complete.index("c2@") + 1]  # cut in the middle of the second record
    path = deliver(tmp_path, "crm", "contacts", "c.csv", cut, age_s=5)
    (waiting,) = load(warehouse_url, tmp_path, "crm", DT, entities=["contacts"], settle_seconds=60)
    assert waiting.batch_id is None and "not complete" in waiting.note and "LW_SETTLE_SECONDS" in waiting.note
    assert rows(warehouse_url, "select count(*) as n from raw.crm_contacts") == [{"n": 0}]

    path.write_text(complete)
    settle(path.parent, age_s=120)
    (loaded,) = load(warehouse_url, tmp_path, "crm", DT, entities=["contacts"], settle_seconds=60)
    assert loaded.rows_loaded == 2 and loaded.rows_quarantined == 0


def test_a_source_that_writes_markers_is_loaded_only_once_its_marker_is_there(warehouse_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LW_SUCCESS_MARKER_SOURCES", "crm")
    deliver(tmp_path, "crm", "contacts", "c.csv", contacts("c1"), age_s=3600)
    (waiting,) = load(warehouse_url, tmp_path, "crm", DT, entities=["contacts"])
    assert waiting.batch_id is None and deliveries.MARKER in waiting.note
    deliver(tmp_path, "crm", "contacts", "c.csv", contacts("c1"), age_s=0, marker=True)
    (loaded,) = load(warehouse_url, tmp_path, "crm", DT, entities=["contacts"])
    assert loaded.rows_loaded == 1, "a marker makes a folder complete at once"


# --------------------------------------------------------------------------- replayable quarantine


def _with_event_type(value: str):
    """The contract with one more accepted email event_type, as after a contract fix."""
    entities = []
    for entity in contract.FILE_ENTITIES:
        if entity.raw_table == "crm_email_events":
            columns = tuple(
                dataclasses.replace(c, accepted=c.accepted + (value,)) if c.name == "event_type" else c
                for c in entity.columns
            )
            entity = dataclasses.replace(entity, columns=columns)
        entities.append(entity)
    return tuple(entities)


def test_quarantine_replay_after_a_contract_fix_loads_what_passes_and_reconciles(warehouse_url, tmp_path, monkeypatch):
    deliver(tmp_path, "crm", "email_events", "e.csv", "\n".join([
        EVENTS,
        "e1,c1,cmp1,open,2024-03-10T09:00:00Z,",
        "e2,c1,cmp1,forward,2024-03-10T09:05:00Z,",  # a new event type the contract lacks
        '"e3",c2,cmp1,forward,2024-03-10T09:06:00Z,"https://x.io/a,b"',
        "e4,c2,cmp1,forward,not-a-time,",  # fixed contract or not: still bad
        "e5,c3,cmp1,click,2024-03-10T09:07:00Z,",
    ]) + "\n")
    load(warehouse_url, tmp_path, "crm", DT, entities=["email_events"])
    listed = quarantine.counts(warehouse_url, quarantine.Selection(source="crm"))
    assert listed == [("crm", "email_events", "event_type: unknown value 'forward'", DT, 3)]

    # nothing to replay before the contract changes: the records stay as they are
    (unchanged,) = quarantine.replay(warehouse_url, tmp_path)
    assert (unchanged.replayed, unchanged.loaded) == (3, 0)

    monkeypatch.setattr(contract, "FILE_ENTITIES", _with_event_type("forward"))
    (replayed,) = quarantine.replay(warehouse_url, tmp_path, quarantine.Selection(rule="unknown value"))
    assert (replayed.replayed, replayed.loaded) == (3, 2)
    assert dict(replayed.still_quarantined) == {"occurred_at: not a timestamp": 1}

    got = rows(warehouse_url, "select event_id, event_type, url, _line_number from raw.crm_email_events order by 1")
    assert [(r["event_id"], r["event_type"], r["url"], r["_line_number"]) for r in got] == [
        ("e1", "open", None, 2), ("e2", "forward", None, 3), ("e3", "forward", "https://x.io/a,b", 4),
        ("e5", "click", None, 6)]
    (left,) = rows(warehouse_url, "select line_number, rule, raw_record from raw.quarantine")
    assert (left["line_number"], left["rule"], left["raw_record"]) == (
        5, "occurred_at: not a timestamp", "e4,c2,cmp1,forward,not-a-time,")
    (audit,) = rows(warehouse_url, "select * from raw.load_audit")
    assert (audit["rows_read"], audit["rows_loaded"], audit["rows_quarantined"]) == (5, 4, 1)
    assert audit["replayed_at"] is not None

    # a re-delivery of the folder still replaces everything, replayed records included
    deliver(tmp_path, "crm", "email_events", "e.csv", EVENTS + "\ne9,c1,cmp1,open,2024-03-10T09:00:00Z,\n")
    load(warehouse_url, tmp_path, "crm", DT, entities=["email_events"])
    assert [r["event_id"] for r in rows(warehouse_url, "select event_id from raw.crm_email_events")] == ["e9"]
    assert rows(warehouse_url, "select count(*) as n from raw.quarantine") == [{"n": 0}]


def test_quarantine_replay_of_jsonl_keeps_records_whose_text_is_not_as_delivered(warehouse_url, tmp_path, monkeypatch):
    ok = '"event_name":"{name}","occurred_at":"2024-03-10T10:00:00Z","anonymous_id":"a1","session_id":"s1"'
    deliver(tmp_path, "web", "events", "e.jsonl", b"\n".join([
        ('{"event_id":"e1",' + ok.format(name="page_view") + "}").encode(),
        ('{"event_id":"e2",' + ok.format(name="page_view") + ',"device_type":"watch"}').encode(),
        ('{"event_id":"e3",' + ok.format(name="page_view") + ',"page_title":"caf\xe9"}').encode("latin-1"),
    ]) + b"\n")
    load(warehouse_url, tmp_path, "web", DT)
    web = [e for e in contract.FILE_ENTITIES if e.raw_table == "web_events"][0]
    fixed = tuple(
        dataclasses.replace(e, columns=tuple(
            dataclasses.replace(c, accepted=c.accepted + ("watch",)) if c.name == "device_type" else c
            for c in e.columns)) if e is web else e
        for e in contract.FILE_ENTITIES)
    monkeypatch.setattr(contract, "FILE_ENTITIES", fixed)
    (replayed,) = quarantine.replay(warehouse_url, tmp_path, quarantine.Selection(source="web"))
    assert (replayed.replayed, replayed.loaded, dict(replayed.still_quarantined)) == (2, 1, {"not valid UTF-8": 1})
    assert [r["event_id"] for r in rows(warehouse_url, "select event_id from raw.web_events order by 1")] == ["e1", "e2"]


def test_lw_quarantine_lists_and_replays(warehouse_url, tmp_path, monkeypatch, capsys):
    from lifecycle_warehouse import cli

    deliver(tmp_path, "crm", "email_events", "e.csv", EVENTS + "\ne2,c1,cmp1,forward,2024-03-10T09:05:00Z,\n")
    load(warehouse_url, tmp_path, "crm", DT, entities=["email_events"])
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("LANDING_DIR", str(tmp_path))
    assert cli.main(["quarantine", "--entity", "email_events"]) == 0
    listed = capsys.readouterr().out
    assert "crm/email_events" in listed and "event_type: unknown value 'forward'" in listed
    monkeypatch.setattr(contract, "FILE_ENTITIES", _with_event_type("forward"))
    assert cli.main(["quarantine", "replay", "--from", str(DT), "--to", str(DT)]) == 0
    assert "1 record(s) loaded into raw" in capsys.readouterr().out
    assert cli.main(["quarantine"]) == 0
    assert "the quarantine is empty" in capsys.readouterr().out


def test_the_ingestion_task_fails_without_retries_when_a_folder_is_rejected_whole(warehouse_url, tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from lifecycle_warehouse import ingest_tasks

    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("LANDING_DIR", str(tmp_path))
    deliver(tmp_path, "crm", "contacts", "contacts.csv", b"")
    with pytest.raises(AirflowFailException, match="contacts.csv: empty file"):
        ingest_tasks.load_files("crm", "contacts", DT, DT + timedelta(days=1))
