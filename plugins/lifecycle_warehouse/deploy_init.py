"""One-off set-up of a deployment (docker-compose's `airflow-init`): the warehouse's
`raw` schema, the read-only `bi_reader` role, and the dbt manifest the warehouse DAG is
rendered from. Safe to run again.

    python -m lifecycle_warehouse.deploy_init
"""

from __future__ import annotations

import os

from lifecycle_warehouse import bootstrap, dbt_runner, settings


def main() -> None:
    warehouse_url = settings.warehouse_url()
    bootstrap.bootstrap(warehouse_url)
    print("raw schema ready")
    if os.environ.get("BI_READER_PASSWORD"):
        from lifecycle_warehouse.access import ensure_bi_reader

        ensure_bi_reader(warehouse_url, password=os.environ["BI_READER_PASSWORD"])
        print("bi_reader role ready")
    dbt_runner.run(["parse", "--quiet"], url=warehouse_url)
    print(f"dbt manifest built in {dbt_runner.DBT_PROJECT_DIR / 'target'}")


if __name__ == "__main__":
    main()
