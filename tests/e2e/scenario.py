"""The end-to-end scenario: `SIM_DAYS` days are simulated; the full pipeline (ingestion,
dbt, gates, publish) runs over the first `PIPELINE_DAYS`; the last simulated day
(`SPARE_DAY`) is left for tests that load on their own (corrupted deliveries) without
touching what the marts were built from."""

from datetime import date, timedelta

START = date(2026, 9, 1)
SIM_DAYS = 22
PIPELINE_DAYS = SIM_DAYS - 1
PIPELINE_LAST = START + timedelta(days=PIPELINE_DAYS - 1)
SPARE_DAY = START + timedelta(days=SIM_DAYS - 1)
CUSTOMERS = 1500
SEED = 7
