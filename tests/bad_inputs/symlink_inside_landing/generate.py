"""The input of the bad-input case symlink_inside_landing, written by tests/integration/test_bad_inputs.py
into a fresh landing zone (`outside`: a folder next to it)."""

from pathlib import Path


def generate(landing: Path, outside: Path) -> None:
    """contacts.csv: a link to a file in another folder of the landing zone."""
    shared = landing / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    (shared / "contacts-2026-09-01.csv").write_text(
        "contact_id,email,first_name,last_name,phone,country,city,lead_source,lifecycle_stage,created_at,updated_at\n"
        "c1,ann@example.com,Ann,Lee,,DE,Berlin,organic,lead,2026-08-30T10:00:00Z,2026-09-01T08:30:00Z\n"
    )
    folder = landing / "crm" / "contacts" / "dt=2026-09-01"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "contacts.csv").symlink_to(Path("..", "..", "..", "shared", "contacts-2026-09-01.csv"))
