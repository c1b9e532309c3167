"""The end-to-end scenario: `SIM_DAYS` days are simulated; the full pipeline (ingestion,
dbt, gates, publish) runs over the first `PIPELINE_DAYS`; the last simulated day
(`SPARE_DAY`) is left for tests that load on their own (corrupted deliveries) without
touching what the marts were built from.

The data is shaped as other people's, not as the simulator's defaults: history in the
1990s (nothing may assume recent dates, and Airflow must run every task of a run that long
before today), a shop whose ids are uuids (nothing may assume integer ids), rows changed
in place between two extractions (the shop is first extracted as it was at the end of
`SHOP_FIRST_EXTRACT_LAST`; subscriptions change plan or pause after it), and a refund of
a cancelled order (money that never counted in revenue)."""

from datetime import date, timedelta

START = date(1998, 9, 1)
SHOP_IDS = "uuid"
SIM_DAYS = 22
PIPELINE_DAYS = SIM_DAYS - 1
PIPELINE_LAST = START + timedelta(days=PIPELINE_DAYS - 1)
SPARE_DAY = START + timedelta(days=SIM_DAYS - 1)
SHOP_FIRST_EXTRACT_LAST = START + timedelta(days=9)
CUSTOMERS = 1500
SEED = 7
