"""The input of the bad-input case jsonl_line_longer_than_limit, written by tests/integration/test_bad_inputs.py
into a fresh landing zone (`outside`: a folder next to it)."""

from pathlib import Path


def generate(landing: Path, outside: Path) -> None:
    """A 24 MiB line between two good ones, written in pieces."""
    ok = '"event_name":"page_view","occurred_at":"2026-09-01T10:00:00Z","anonymous_id":"a","session_id":"s"'
    folder = landing / "web" / "events" / "dt=2026-09-01"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "events.jsonl", "w") as out:
        out.write('{"event_id":"e1",' + ok + "}\n")
        out.write('{"event_id":"e2",' + ok + ',"page_title":"')
        for _ in range(24):
            out.write("x" * (1 << 20))
        out.write('"}\n')
        out.write('{"event_id":"e3",' + ok + "}\n")
