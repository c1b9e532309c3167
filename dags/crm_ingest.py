"""
### CRM ingestion

Loads the CRM exports of the landing zone (`crm/<entity>/dt=YYYY-MM-DD/*.csv[.gz]`:
contacts, email_events, campaigns, survey_responses, loyalty_events) into `raw.crm_*`.

- One run loads the date folders of its data interval (or of `date_from`…`date_to`).
- A date folder is one unit: loading it again replaces it; nothing is half-written.
- Bad rows go to `raw.quarantine` with file, line and rule; every file gets a row in
  `raw.load_audit`. A file missing a required column is rejected, the rest still loads.
- Emits the `raw_crm` Asset that the warehouse DAG is scheduled on.
"""

# Airflow DAG file: the three landing-zone sources share one definition (dag_factories).
from lifecycle_warehouse.dag_factories import file_ingest_dag

crm_ingest = file_ingest_dag("crm", __doc__)
