"""The input of the bad-input case csv_line_longer_than_limit, written by tests/integration/test_bad_inputs.py
into a fresh landing zone (`outside`: a folder next to it)."""

from pathlib import Path


def generate(landing: Path, outside: Path) -> None:
    """A CSV row of 24 MiB (an unquoted field) between two good ones."""
    folder = landing / "crm" / "contacts" / "dt=2026-09-01"
    folder.mkdir(parents=True, exist_ok=True)
    tail = ",2026-08-30T10:00:00Z,2026-09-01T08:30:00Z\n"
    with open(folder / "contacts.csv", "w") as out:
        out.write("contact_id,email,first_name,last_name,phone,country,city,lead_source,lifecycle_stage,created_at,updated_at\n")
        out.write("c1,ann@example.com,Ann,Lee,,DE,Berlin,organic,lead" + tail)
        out.write("c2,bob@example.com,")
        for _ in range(24):
            out.write("x" * (1 << 20))
        out.write(",,,FR,Paris,,customer" + tail)
        out.write("c3,cy@example.com,Cy,,,FR,Paris,,customer" + tail)
