"""Reading a landing-zone file into records (docs/sources.md §1): bytes split into lines,
decoded as UTF-8, then JSONL lines or RFC 4180 CSV records, each with the line it starts on
and its text as delivered (the quarantine keeps both). Streamed: one record at a time.

Problems found here, before SQL sees a record (not UTF-8, a NUL character, malformed CSV),
travel with the record as its `problem`; a file that cannot be read at all raises
`FileRejected`. Nothing here touches a database.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from lifecycle_warehouse import settings
from lifecycle_warehouse.contract import FileEntity

CSV = "csv"
JSONL = "jsonl"
_SUFFIXES = {CSV: (".csv", ".csv.gz"), JSONL: (".jsonl", ".jsonl.gz")}

# Quarantine rules found while reading (before SQL sees the record).
RULE_NOT_UTF8 = "not valid UTF-8"
RULE_NUL = "contains a NUL character"  # PostgreSQL text cannot hold U+0000
RULE_NOT_JSON = "not valid JSON"
RULE_NOT_OBJECT = "not a JSON object"
# A JSONL line PostgreSQL cannot parse for its nesting (its stack limit, max_stack_depth).
RULE_TOO_DEEP = "JSON nested too deeply"
# A line over LW_MAX_LINE_BYTES: "line longer than N bytes (LW_MAX_LINE_BYTES)"; the
# quarantine keeps its first N bytes only.
RULE_LINE_TOO_LONG = "line longer than"
# Rules a replay of the quarantine cannot undo, so such a record keeps its rule: its text is
# not what was delivered (undecodable bytes are shown escaped, a long line is cut), or no
# contract change can make PostgreSQL hold it.
READ_ONLY_RULES = (RULE_NOT_UTF8, RULE_NUL, RULE_TOO_DEEP)

_BOM = b"\xef\xbb\xbf"
# UTF-16 (and UTF-32) byte order marks: bytes that never start a UTF-8 file.
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_NOT_UTF8_FILE = ("encoded as UTF-16 or UTF-32 (it starts with the byte order mark {bom}): "
                  "the contract needs UTF-8")


def is_read_only_rule(rule: str | None) -> bool:
    """Whether a quarantined record's text is not exactly what was delivered (see
    READ_ONLY_RULES and RULE_LINE_TOO_LONG): a replay keeps its rule."""
    return rule in READ_ONLY_RULES or (rule or "").startswith(RULE_LINE_TOO_LONG)


def line_too_long_rule(max_line_bytes: int) -> str:
    return f"{RULE_LINE_TOO_LONG} {max_line_bytes} bytes (LW_MAX_LINE_BYTES)"


class FileRejected(Exception):
    """The file as a whole cannot be loaded; the message says why (without the file name)."""


class LineTooLong(Exception):
    """read_blocks met a line longer than the limit (the careful load quarantines it)."""


class LongLine(bytes):
    """The first `max_line_bytes` bytes of a line longer than that (read_lines): the rest of
    the line was skipped without being held in memory."""

    max_line_bytes: int


def file_format(path: Path) -> str | None:
    """"csv" / "jsonl" from the file name (`.csv`, `.jsonl`, optionally `.gz`), else None."""
    name = path.name.lower()
    for fmt, suffixes in _SUFFIXES.items():
        if name.endswith(suffixes):
            return fmt
    return None


def _strip_eol(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def _check_encoding(first: bytes) -> None:
    if first.startswith(_UTF16_BOMS):
        raise FileRejected(_NOT_UTF8_FILE.format(bom=first[:2].hex(" ").upper()))


def read_lines(path: Path, max_line_bytes: int | None = None) -> Iterator[bytes]:
    """The file's lines as bytes (split at b"\\n", line ends kept), decompressing `.gz`,
    streamed. Any read failure (missing, unreadable, truncated or corrupt gzip) becomes
    FileRejected, so the file is rejected and the rest of its folder still loads, and so
    does a UTF-16 byte order mark. A line longer than `max_line_bytes` (default
    LW_MAX_LINE_BYTES, line end not counted) is never read whole: its first
    `max_line_bytes` bytes come as a LongLine."""
    limit = settings.max_line_bytes() if max_line_bytes is None else max_line_bytes
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as stream:
            first = True
            while line := stream.readline(limit + 1):
                if first:
                    _check_encoding(line)
                    first = False
                if len(line) <= limit or line.endswith(b"\n"):
                    yield line
                    continue
                rest = line
                while rest and not rest.endswith(b"\n"):  # skip the rest of the line
                    rest = stream.readline(BLOCK_SIZE)
                long_line = LongLine(line[:limit])
                long_line.max_line_bytes = limit
                yield long_line
    except (OSError, EOFError, zlib.error) as exc:
        raise FileRejected(f"cannot read the file: {exc} ({type(exc).__name__})") from exc


BLOCK_SIZE = 1 << 20  # COPY in 1 MiB blocks: as fast as `psql \copy` (measured)


def read_blocks(path: Path, size: int = BLOCK_SIZE, max_line_bytes: int | None = None) -> Iterator[bytes]:
    """The file's bytes in blocks of `size` (decompressing `.gz`), without a UTF-8 byte
    order mark at its start: what the loader streams into COPY when it stages a file from
    its bytes. Read failures become FileRejected, as in read_lines; a line longer than
    `max_line_bytes` (default LW_MAX_LINE_BYTES) raises LineTooLong as soon as it is seen."""
    limit = settings.max_line_bytes() if max_line_bytes is None else max_line_bytes
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as stream:
            block = stream.read(size)
            _check_encoding(block)
            if block.startswith(_BOM):
                block = block[len(_BOM):]
            open_line = 0  # bytes of the line not ended yet, before this block
            while block:
                open_line = _longest_line_check(block, open_line, limit)
                yield block
                block = stream.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise FileRejected(f"cannot read the file: {exc} ({type(exc).__name__})") from exc


def _longest_line_check(block: bytes, open_line: int, limit: int) -> int:
    """Raise LineTooLong when a line that ends in, or runs through, `block` is longer than
    `limit` (its line end not counted); returns the length of the line still open at the
    block's end. Only the block's first and last line are measured when the limit is at
    least the block's size (no line inside it can be longer): no Python loop per line."""
    first = block.find(b"\n")
    if first < 0:
        if open_line + len(block) > limit:
            raise LineTooLong(f"a line longer than {limit} bytes")
        return open_line + len(block)
    if open_line + first > limit:
        raise LineTooLong(f"a line longer than {limit} bytes")
    last = block.rfind(b"\n")
    if limit < last - first:
        start = first + 1
        while start <= last:
            end = block.find(b"\n", start)
            if end - start > limit:
                raise LineTooLong(f"a line longer than {limit} bytes")
            start = end + 1
    rest = len(block) - last - 1
    if rest > limit:
        raise LineTooLong(f"a line longer than {limit} bytes")
    return rest


def decode_lines(lines: Iterable[bytes]) -> Iterator[tuple[str, str | None]]:
    """(text, problem) per line: strict UTF-8, a BOM at the start of the file dropped. A line
    that is not UTF-8 is decoded with backslash escapes (for the quarantine) and its problem
    is RULE_NOT_UTF8; NUL characters, which PostgreSQL text cannot hold, are escaped too."""
    first = True
    for raw in lines:
        if first:
            first = False
            if raw.startswith(_BOM):
                raw = raw[len(_BOM):]
        if isinstance(raw, LongLine):  # cut: its end may split a character
            text = raw.decode("utf-8", "backslashreplace")
            problem = line_too_long_rule(raw.max_line_bytes)
        else:
            try:
                text = raw.decode("utf-8")
                problem = None
            except UnicodeDecodeError:
                text = raw.decode("utf-8", "backslashreplace")
                problem = RULE_NOT_UTF8
        if "\x00" in text:
            text = text.replace("\x00", "\\x00")
            problem = problem or RULE_NUL
        yield text, problem


class JsonlRecord(NamedTuple):
    line_number: int
    text: str  # the line without its line end
    problem: str | None


def jsonl_records(lines: Iterable[tuple[str, str | None]]) -> Iterator[JsonlRecord]:
    """One record per non-blank line; blank lines are skipped (they count for nothing)."""
    for number, (text, problem) in enumerate(lines, start=1):
        text = _strip_eol(text)
        if text and not text.isspace():
            yield JsonlRecord(number, text, problem)


class CsvRecord(NamedTuple):
    line_number: int  # line where the record starts (the header is line 1)
    text: str  # the record as delivered (quoted newlines included), without its final line end
    fields: list[str] | None  # None when the record could not be parsed
    problem: str | None


def csv_records(lines: Iterable[tuple[str, str | None]]) -> Iterator[CsvRecord]:
    """RFC 4180 records (the first one is the header) with the text and first line of each.

    A line without a quote is a whole record whose fields are its comma-separated parts, so
    it is split directly (the common case, several times faster). Any other line is handed
    to the csv module together with the lines it pulls to complete the record (quoted
    newlines); the module never reads ahead, so those lines are exactly the record's text.
    Blank lines are skipped. A malformed record (e.g. a stray quote) is reported with its
    problem and parsing goes on with the next line.
    """
    source = iter(lines)
    pending: list[str] = []  # lines the csv module consumed for the current record
    problems: list[str] = []
    handed_over: list[tuple[str, str | None]] = []

    def feed() -> Iterator[str]:
        while True:
            if handed_over:
                text, problem = handed_over.pop()
            else:
                item = next(source, None)
                if item is None:
                    return
                text, problem = item
            pending.append(text)
            if problem:
                problems.append(problem)
            yield text

    reader = csv.reader(feed(), strict=True)
    consumed = 0  # lines before the current record
    for text, problem in source:
        body = _strip_eol(text)
        if problem is not None and problem.startswith(RULE_LINE_TOO_LONG):
            consumed += 1  # only its start was read: not parsed
            yield CsvRecord(consumed, body, None, problem)
            continue
        if '"' not in body and "\r" not in body:
            consumed += 1
            if body:
                yield CsvRecord(consumed, body, body.split(","), problem)
            continue
        handed_over.append((text, problem))
        try:
            fields: list[str] | None = next(reader)
            error = None
        except csv.Error as exc:
            fields, error = None, f"malformed CSV: {exc}"
        start = consumed + 1
        consumed += len(pending)
        record_text = _strip_eol("".join(pending))
        # An undecodable line explains any parse error that follows from it.
        record_problem = problems[0] if problems else error
        pending.clear()
        problems.clear()
        if fields == [] and record_problem is None:
            continue
        yield CsvRecord(start, record_text, fields, record_problem)


class HeaderMap(NamedTuple):
    positions: dict[str, int]  # contract column -> 0-based field index
    extras: list[tuple[str, int]]  # (key in _extra, field index) of columns beyond the contract


def map_header(entity: FileEntity, header: Sequence[str]) -> HeaderMap:
    """Match a CSV header to the contract (names compared after trimming spaces).

    Every contract column must be present (docs/sources.md: "a listed column that is missing
    is an error for that file"); other columns go to `_extra`. A repeated extra column is kept
    as `name_2`, `name_3`…; a repeated contract column is ambiguous and rejects the file.
    """
    names = [h.strip() for h in header]
    listed = [c.name for c in entity.columns]
    missing = [n for n in listed if n not in names]
    if len(missing) == len(listed):  # not the header of this entity at all
        first_line = ",".join(header)
        shown = first_line[:60] + ("…" if len(first_line) > 60 else "")
        hint = ""
        if first_line.lstrip().startswith("<"):
            hint = ", it looks like an HTML or XML page"
        for separator, name in (("\t", "tabs"), (";", "semicolons"), ("|", "pipes")):
            if not hint and separator in first_line:
                hint = f", it looks separated by {name} (the contract's CSV uses commas)"
        raise FileRejected(
            f"not a CSV file of {entity.source}/{entity.entity}: its first line has none of the "
            f"contract's columns{hint} (first line: {shown!r})"
        )
    if missing:
        required = [n for n in missing if n in entity.required]
        detail = f" (required: {', '.join(required)})" if required else ""
        raise FileRejected(f"missing column(s) in header: {', '.join(missing)}{detail}")
    repeated = sorted({n for n in listed if names.count(n) > 1})
    if repeated:
        raise FileRejected(f"column(s) appear more than once in header: {', '.join(repeated)}")
    positions = {n: names.index(n) for n in listed}
    extras: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in positions:
            continue
        seen[name] = seen.get(name, 0) + 1
        extras.append((name if seen[name] == 1 else f"{name}_{seen[name]}", index))
    return HeaderMap(positions, extras)

