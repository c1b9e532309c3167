"""Splitting a file into chunks at line ends, and what a chunk's bytes tell about staging
it with COPY (ingest.chunks); no database."""

from __future__ import annotations

import pytest
from psycopg import sql

from lifecycle_warehouse.ingest import chunks, records
from lifecycle_warehouse.ingest.records import CSV, JSONL


def split(tmp_path, data: bytes, chunk_bytes: int | None, fmt: str = CSV) -> list[bytes]:
    path = tmp_path / f"f.{fmt}"
    path.write_bytes(data)
    out: dict[int, bytes] = {}
    for number, piece in chunks.pieces(path, fmt, chunk_bytes):
        out[number] = out.get(number, b"") + piece
    assert list(out) == list(range(len(out)))
    return list(out.values())


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 7 bytes: lines and chunks end inside and across them."""
    real = records.read_blocks
    monkeypatch.setattr(chunks, "read_blocks", lambda path: real(path, size=7))


def test_chunks_end_at_the_first_line_end_after_their_size(tmp_path):
    data = b"\xef\xbb\xbfh\nline one\nline two is longer\nx\n\nlast without end"
    got = split(tmp_path, data, 10)
    assert b"".join(got) == data[3:]  # the BOM is not staged
    assert got == [b"h\nline one\n", b"line two is longer\n", b"x\n\nlast without end"]
    assert split(tmp_path, data, None) == [data[3:]]
    assert split(tmp_path, b"", 10) == []


def test_a_jsonl_control_byte_stops_the_split(tmp_path):
    with pytest.raises(chunks.NotExact):
        split(tmp_path, b'{"a":1}\n{"b":"\x02"}\n', 4, fmt=JSONL)


def chunk(number: int, pieces: list[bytes], rows: int) -> chunks.Chunk:
    c = chunks.Chunk(sql.Identifier("t"), number, 1)
    for piece in pieces:
        c.feed(piece)
    c.rows = rows
    return c


@pytest.mark.parametrize(("number", "pieces", "rows", "file_crlf", "why"), [
    (0, [b"h,a\r\n1,2\r\n"], 1, None, None),
    (0, [b"h,a\r", b"\n1,2\r\n"], 1, None, None),  # a CRLF across two pieces
    (0, [b"h,a\n1,2\n3,4"], 2, None, None),  # the last line without its end
    (1, [b"1,2\n3,4\n"], 2, False, None),
    (1, [b"1,2\r\n3,4\r\n"], 2, False, "mixed line ends"),
    (1, [b"1,2\n3,4\n"], 2, True, "mixed line ends"),
    (0, [b"h,a\r1,2\r"], 0, None, "CR-only line ends"),
    (1, [b"1,\r2\n3,4\n"], 2, False, "a carriage return inside a line"),
    (1, [b"1,2\r", b"x\n"], 1, False, "a carriage return inside a line"),
    (1, [b"1,2\r"], 1, False, "a carriage return inside a line"),
    (0, [b'h,a\n1,"2\n3"\n'], 1, None, "a CSV record over several lines (line numbers would shift)"),
])
def test_a_chunk_is_exact_when_it_holds_one_record_per_line_with_the_files_line_ends(number, pieces, rows, file_crlf, why):
    c = chunk(number, pieces, rows)
    assert c.exact(CSV, c.crlf if number == 0 else file_crlf) == why


def test_a_jsonl_chunk_counts_every_line_and_an_end_of_data_marker_shows():
    assert chunk(0, [b'{"a":1}\n\n  \n{"b":2}'], 4).exact(JSONL, None) is None
    assert chunk(0, [b'{"a":1}\n\\.\n{"b":2}\n'], 1).exact(JSONL, None) == "an end-of-data marker (\\.) in a line"
