"""Ingestion into the warehouse's `raw` schema.

- `files`: landing-zone date folders (CSV / JSONL, optionally gzipped) → `raw.<source>_<entity>`,
  validated in SQL against `contract`, bad records to `raw.quarantine`, one `raw.load_audit`
  row per file.
- `shop`: incremental extraction of the shop's operational database → `raw.shop_<table>`.

Nothing here touches a database at import time (Airflow imports these modules while parsing DAGs).
"""
