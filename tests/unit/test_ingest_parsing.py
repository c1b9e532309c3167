"""Pure parts of the file loader: splitting bytes into records, header mapping, dates, and the
validation SQL built from the contract. No database."""

from __future__ import annotations

import gzip
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from lifecycle_warehouse import contract
from lifecycle_warehouse.ingest import deliveries, describe_url, records as reading, validation_sql
from lifecycle_warehouse.ingest.records import FileRejected


def records(data: bytes) -> list[reading.CsvRecord]:
    return list(reading.csv_records(reading.decode_lines(data.splitlines(keepends=True))))


def test_csv_records_keep_raw_text_and_start_line_across_quoted_newlines():
    data = (
        b'id,comment\r\n'
        b'1,"first line\r\nsecond line"\r\n'
        b'2,"a ""quoted"" word, and a comma"\r\n'
        b'3,plain\r\n'
    )
    got = records(data)
    assert [r.line_number for r in got] == [1, 2, 4, 5]
    assert got[1].text == '1,"first line\r\nsecond line"'
    assert got[1].fields == ["1", "first line\r\nsecond line"]
    assert got[2].fields == ["2", 'a "quoted" word, and a comma']
    assert got[3].text == "3,plain"
    assert all(r.problem is None for r in got)


def test_csv_blank_lines_are_skipped_but_counted_in_line_numbers():
    got = records(b"id,x\n\n1,a\n\n\n2,b")
    assert [(r.line_number, r.fields) for r in got] == [(1, ["id", "x"]), (3, ["1", "a"]), (6, ["2", "b"])]


def test_csv_malformed_record_is_reported_and_parsing_continues():
    got = records(b'id,x\n1,"bad"quote\n2,ok\n')
    assert got[1].line_number == 2
    assert got[1].problem.startswith("malformed CSV:")
    assert got[1].text == '1,"bad"quote'
    assert (got[2].line_number, got[2].fields, got[2].problem) == (3, ["2", "ok"], None)


def test_decode_lines_strips_bom_and_flags_invalid_utf8_and_nul():
    lines = list(reading.decode_lines([b"\xef\xbb\xbfid,name\n", b"1,caf\xe9\n", b"2,a\x00b\n", b"3,\xc3\xa9\n"]))
    assert lines[0] == ("id,name\n", None)
    assert lines[1] == ("1,caf\\xe9\n", reading.RULE_NOT_UTF8)
    assert lines[2] == ("2,a\\x00b\n", reading.RULE_NUL)
    assert lines[3] == ("3,é\n", None)


def test_bom_only_stripped_at_start_of_file():
    lines = list(reading.decode_lines([b"a\n", b"\xef\xbb\xbfb\n"]))
    assert lines[1][0] == "\ufeffb\n"


def test_jsonl_records_number_lines_and_skip_blank_ones():
    lines = reading.decode_lines([b'{"a":1}\r\n', b"\n", b"   \n", b'{"a":2}'])
    assert list(reading.jsonl_records(lines)) == [
        reading.JsonlRecord(1, '{"a":1}', None),
        reading.JsonlRecord(4, '{"a":2}', None),
    ]


def test_map_header_positions_extras_and_trimmed_names():
    entity = contract.file_entity("crm", "email_events")
    header = [" event_id", "contact_id", "campaign_id", "event_type", "occurred_at", "url", "ip", "ip"]
    mapped = reading.map_header(entity, header)
    assert mapped.positions == {
        "event_id": 0, "contact_id": 1, "campaign_id": 2, "event_type": 3, "occurred_at": 4, "url": 5,
    }
    assert mapped.extras == [("ip", 6), ("ip_2", 7)]


def test_map_header_rejects_missing_columns_naming_them():
    entity = contract.file_entity("crm", "email_events")
    with pytest.raises(FileRejected, match=r"missing column\(s\) in header: contact_id, url \(required: contact_id\)"):
        reading.map_header(entity, ["event_id", "campaign_id", "event_type", "occurred_at"])


def test_map_header_rejects_a_repeated_contract_column():
    entity = contract.file_entity("crm", "email_events")
    with pytest.raises(FileRejected, match="more than once in header: url"):
        reading.map_header(entity, ["event_id", "contact_id", "campaign_id", "event_type", "occurred_at", "url", "url"])


def test_interval_dates_with_dates_and_airflow_datetimes():
    assert deliveries.interval_dates(date(2024, 3, 1), date(2024, 3, 4)) == [
        date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)
    ]
    utc = timezone.utc
    daily = (datetime(2024, 3, 1, tzinfo=utc), datetime(2024, 3, 2, tzinfo=utc))
    assert deliveries.interval_dates(*daily) == [date(2024, 3, 1)]
    # A datetime is taken in UTC: 2024-03-02 01:00+02:00 is 2024-03-01 23:00 UTC.
    plus2 = timezone(timedelta(hours=2))
    assert deliveries.interval_dates(
        datetime(2024, 3, 1, 1, tzinfo=plus2), datetime(2024, 3, 2, 1, tzinfo=plus2)
    ) == [date(2024, 3, 1)]
    assert deliveries.interval_dates(date(2024, 3, 2), date(2024, 3, 2)) == []


def test_file_format_and_delivery_files_ignore_markers_and_other_files(tmp_path: Path):
    for name in ["b.csv", "a.csv.gz", "_SUCCESS", ".a.csv.swp", ".hidden.csv", "notes.txt", "c.JSONL"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.csv").mkdir()
    assert [p.name for p in deliveries.delivery_files(tmp_path)] == ["a.csv.gz", "b.csv", "c.JSONL"]
    assert reading.file_format(Path("x.jsonl.gz")) == "jsonl"
    assert reading.file_format(Path("x.json")) is None


def test_read_lines_turns_a_truncated_gzip_into_a_rejection(tmp_path: Path):
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a":1}\n' * 1000)[:-20])
    with pytest.raises(FileRejected, match="cannot read the file"):
        list(reading.read_lines(path))


def test_rule_expression_follows_contract_order_then_checks():
    entity = contract.file_entity("crm", "survey_responses")
    text = validation_sql.rule_expr(entity).as_string(None)
    order = [
        "response_id: required",
        "survey_type: required",
        "survey_type: unknown value",
        "score: required",
        "score: not an integer",
        "submitted_at: not a timestamp",
        "score: nps must be 0–10",
        "score: csat must be 1–5",
    ]
    positions = [text.index(rule) for rule in order]
    assert positions == sorted(positions)


def test_rules_for_lengths_and_bounds():
    spend = contract.file_entity("marketing", "ad_spend")
    text = validation_sql.rule_expr(spend).as_string(None)
    assert "spend: must be at least 0" in text
    assert "currency: must be 3 characters long" in text


def test_describe_url_hides_the_password():
    described = describe_url("postgresql://shop_reader:s3cret@db.example.com:5433/shop")
    assert "s3cret" not in described
    assert described == "host=db.example.com port=5433 dbname=shop user=shop_reader"


def test_csv_records_agree_with_the_csv_module_on_well_formed_input():
    import csv
    import io

    text = (
        'a,b,c\r\n'
        'plain,,x\r\n'
        'with "inner" quote,2,3\n'          # quote inside an unquoted field: literal
        '"quoted, comma",2,"multi\nline"\n'
        '"",,""\n'
        ' spaced , 2 ,3\n'
        'last,line,no-eol'
    )
    expected = [row for row in csv.reader(io.StringIO(text, newline=""), strict=True) if row]
    got = records(text.encode())
    assert [r.fields for r in got] == expected
    assert [r.line_number for r in got] == [1, 2, 3, 4, 6, 7, 8]
