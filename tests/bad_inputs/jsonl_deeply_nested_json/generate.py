"""The input of the bad-input case jsonl_deeply_nested_json, written by tests/integration/test_bad_inputs.py
into a fresh landing zone (`outside`: a folder next to it)."""

from pathlib import Path


def generate(landing: Path, outside: Path) -> None:
    """A line nested 100000 levels deep between two good ones."""
    ok = '"event_name":"page_view","occurred_at":"2026-09-01T10:00:00Z","anonymous_id":"a","session_id":"s"'
    deep = "[" * 100_000 + "]" * 100_000
    folder = landing / "web" / "events" / "dt=2026-09-01"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "events.jsonl").write_text(
        '{"event_id":"e1",' + ok + "}\n"
        + '{"event_id":"e2",' + ok + ',"properties":{"list":' + deep + "}}\n"
        + '{"event_id":"e3",' + ok + ',"properties":{"list":' + "[" * 11 + "]" * 11 + "}}\n"
    )
