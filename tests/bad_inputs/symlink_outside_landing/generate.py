"""The input of the bad-input case symlink_outside_landing, written by tests/integration/test_bad_inputs.py
into a fresh landing zone (`outside`: a folder next to it)."""

from pathlib import Path


def generate(landing: Path, outside: Path) -> None:
    """partner.csv: a link to a file outside the landing zone (a real CSV of the entity)."""
    outside.mkdir(parents=True, exist_ok=True)
    secret = outside / "secret.csv"
    secret.write_text(
        "contact_id,email,first_name,last_name,phone,country,city,lead_source,lifecycle_stage,created_at,updated_at\n"
        "x1,leak@example.com,,,,DE,,,lead,2026-08-30T10:00:00Z,2026-09-01T08:30:00Z\n"
    )
    (landing / "crm" / "contacts" / "dt=2026-09-01" / "partner.csv").symlink_to(secret)
