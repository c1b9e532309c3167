"""The input of the bad-input case symlink_broken, written by tests/integration/test_bad_inputs.py
into a fresh landing zone (`outside`: a folder next to it)."""

from pathlib import Path


def generate(landing: Path, outside: Path) -> None:
    """partner.csv: a link to a file of the landing zone that does not exist."""
    folder = landing / "crm" / "contacts" / "dt=2026-09-01"
    (folder / "partner.csv").symlink_to(folder / "gone.csv")
