"""The dbt seeds (dbt_project/seeds) agree with their generator, the channel set of the
source contract (the ad channels and the organic ones), and the lead sources the simulator
writes into the CRM.

A seed that drifts from these fails silently in the warehouse (a rate nobody can
regenerate, a session channel the marts do not know, a lead source that falls back to
`direct`), so these checks run without a database, in milliseconds.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys

from lifecycle_warehouse import contract
from lifecycle_warehouse.dbt_runner import DBT_PROJECT_DIR
from lifecycle_warehouse.simulator.config import Rates

SEEDS = DBT_PROJECT_DIR / "seeds"
# A session without tags or external referrer is `direct` by rule (macros/web.sql), so
# `direct` is a channel of sessions and lead sources, but never the target of a mapping rule.
DIRECT = "direct"


def _rows(name: str) -> list[tuple[int, dict[str, str]]]:
    """(line number in the file, row) of a seed CSV."""
    path = SEEDS / name
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return [(reader.line_num, row) for row in reader]


def _normalize_code(value: str) -> str | None:
    """Python twin of the `normalize_code` macro (macros/casting.sql): 'Paid Search ' ->
    'paid_search', the form lead_source_mapping is matched on."""
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_") or None


def test_fx_rates_csv_is_what_the_generator_writes():
    generator = SEEDS / "generate_fx_rates.py"
    result = subprocess.run([sys.executable, str(generator), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{SEEDS / 'fx_rates.csv'} differs from what {generator.name} writes: rerun "
        f"`python {generator.relative_to(DBT_PROJECT_DIR.parent)}` ({result.stderr.strip()})"
    )


def test_channel_mapping_rules_give_known_channels_and_end_with_a_catch_all():
    rows = _rows("channel_mapping.csv")
    assert rows, "channel_mapping.csv has no rules"
    targets = tuple(c for c in contract.SESSION_CHANNELS if c != DIRECT)
    problems = [
        f"channel_mapping.csv line {line}: channel {row['channel']!r} is not one of {targets}"
        for line, row in rows
        if row["channel"] not in targets
    ]
    priorities = [int(row["priority"]) for _, row in rows]
    if len(set(priorities)) != len(priorities):
        problems.append("channel_mapping.csv: priorities are not unique (the first match would be arbitrary)")
    line, last = max(rows, key=lambda item: int(item[1]["priority"]))
    if any(last[column] for column in ("utm_source", "utm_medium", "referrer_domain")):
        problems.append(
            f"channel_mapping.csv line {line}: the last rule (highest priority) must be a catch-all "
            "with every pattern empty, or unmatched sessions get no channel"
        )
    assert not problems, "\n".join(problems)


def test_lead_source_mapping_is_normalised_and_gives_known_channels():
    problems = []
    for line, row in _rows("lead_source_mapping.csv"):
        if _normalize_code(row["lead_source"]) != row["lead_source"]:
            problems.append(
                f"lead_source_mapping.csv line {line}: lead_source {row['lead_source']!r} is not normalised "
                f"(it is matched as {_normalize_code(row['lead_source'])!r}, so this row never matches)"
            )
        if row["channel"] not in contract.SESSION_CHANNELS:
            problems.append(
                f"lead_source_mapping.csv line {line}: channel {row['channel']!r} is not one of "
                f"{contract.SESSION_CHANNELS}"
            )
    assert not problems, "\n".join(problems)


def test_every_simulated_lead_source_is_mapped():
    # The simulator writes a contact's acquisition channel as its CRM lead_source
    # (simulator/crm.py); store-only persons have no contact.
    emitted = {name for name, _ in Rates().acquisition_channels}
    assert emitted, "the simulator lists no acquisition channels"
    mapped = {row["lead_source"] for _, row in _rows("lead_source_mapping.csv")}
    unmapped = sorted(source for source in emitted if _normalize_code(source) not in mapped)
    assert not unmapped, (
        f"lead_source_mapping.csv has no row for the simulator's lead sources {unmapped} "
        "(plugins/lifecycle_warehouse/simulator/config.py, Rates.acquisition_channels): "
        "they would fall back to `direct`"
    )
