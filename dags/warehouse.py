"""
### Warehouse: dbt build, quality gate, publish to `analytics`

Runs when every ingestion DAG has updated its raw tables (Assets `raw_crm`, `raw_web`,
`raw_marketing`, `raw_shop`), then:

1. **plan**: takes the warehouse (the run now holds it, see 7) and logs the run's plan
   in `raw.warehouse_builds`: the oldest date folder (re)delivered since the last
   successful build, from which incremental models reprocess deliveries when it is older
   than their late-data window (so that they still equal a full refresh), and the as-of
   date, the run's last date (the KPI marts have a row for every day up to it). The
   run's dbt commands read that plan (env LW_WAREHOUSE_RUN_ID). The data tests of the
   event tables read only the folders from that date on (older ones passed a build).
2. **raw gate**: Great Expectations suites on the raw tables; an error blocks the run.
3. **dbt build**: one `dbt build` of every model and its data tests (`build_all`; unit
   tests run in `make test`), then one task per model and seed that reports its outcome,
   so a failure names the model; a retry of that task builds the model alone
   (`lifecycle_warehouse.dbt_step`). Staging and intermediate models, then the marts in
   schema `marts`. Then the build is logged as successful. (`LW_DBT_STEP=cosmos` runs one
   astronomer-cosmos `dbt build --select <model>` task per model instead, and
   `cosmos_watcher` Cosmos' watcher mode: docs/benchmark.md compares the three.)
4. **CLV**: fits BG/NBD and Gamma-Gamma on the valid orders up to the as-of date and
   writes `marts.customer_clv` (P(alive), predictions, RFM segment per customer) and
   `marts.clv_model_params` (`lifecycle_warehouse.clv`, docs/clv.md). A fit that does not
   converge is written with its reason and fails the marts gate.
5. **marts gate**: suites on every BI relation in `marts` (keys, ranges, reconciliations).
6. **publish**: `analytics` gets the validated marts in one transaction (readers see
   the old or the new version, never a mix).
   When a gate fails, `analytics` keeps the last good version and the run fails.
7. **end**: a teardown that runs whatever happened before it: the run no longer holds
   the warehouse. From its plan to its end a run holds the warehouse, so that nothing
   else writes it meanwhile: a dbt build started by hand (plain `dbt`, `lw dbt`, an IDE)
   refuses to start, and the plan of a run waits for such a build to end.

Emits the `analytics` Asset for downstream consumers (reports, exports).
"""

from datetime import timedelta

from airflow.sdk import dag, task

from lifecycle_warehouse import dag_factories, settings, warehouse_tasks
from lifecycle_warehouse.orchestration import (
    ANALYTICS_ASSET,
    DEFAULT_ARGS,
    RANGE_PARAMS,
    RAW_ASSETS,
    START_DATE,
    run_dates,
)


@dag(
    dag_id="warehouse",
    schedule=(RAW_ASSETS["crm"] & RAW_ASSETS["web"] & RAW_ASSETS["marketing"] & RAW_ASSETS["shop"]),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=settings.warehouse_run_timeout_hours()),
    default_args=DEFAULT_ARGS,
    params=RANGE_PARAMS,
    tags=["warehouse", "dbt", "quality", "analytics"],
    doc_md=__doc__,
    user_defined_macros={"warehouse_profile_env": warehouse_tasks.warehouse_profile_env},
)
def warehouse():
    @task
    def plan_build(run_id=None, params=None, data_interval_start=None, data_interval_end=None,
                   triggering_asset_events=None) -> dict:
        """Take the warehouse for the run and log its plan: the date to reprocess deliveries
        from, and the as-of date (the run's last date)."""
        _, end = run_dates(params, data_interval_start, data_interval_end, triggering_asset_events)
        plan = warehouse_tasks.plan_build(settings.warehouse_url(), run_id, as_of=end - timedelta(days=1))
        return {"recompute_from": str(plan.recompute_from or ""), "as_of_date": str(plan.as_of_date or "")}

    @task
    def raw_quality_gate(run_id=None, params=None, data_interval_start=None, data_interval_end=None,
                         triggering_asset_events=None):
        """Validate the raw tables and deliveries before transforming them."""
        start, end = run_dates(params, data_interval_start, data_interval_end, triggering_asset_events)
        return warehouse_tasks.quality_gate("raw", run_id, start, end)

    dbt_build = dag_factories.dbt_step_task_group(settings.dbt_step())

    @task
    def record_build(run_id=None) -> None:
        """Log that every model was built: later runs plan from this run's start."""
        warehouse_tasks.record_build(settings.warehouse_url(), run_id)

    @task
    def fit_clv(params=None, data_interval_start=None, data_interval_end=None,
                triggering_asset_events=None) -> dict:
        """Fit the CLV models as of the run's last date; write customer_clv and clv_model_params."""
        _, end = run_dates(params, data_interval_start, data_interval_end, triggering_asset_events)
        return warehouse_tasks.fit_clv(end - timedelta(days=1))

    @task
    def marts_quality_gate(run_id=None, params=None, data_interval_start=None, data_interval_end=None,
                           triggering_asset_events=None):
        """Validate the freshly built marts before BI can see them."""
        start, end = run_dates(params, data_interval_start, data_interval_end, triggering_asset_events)
        return warehouse_tasks.quality_gate("marts", run_id, start, end)

    @task(outlets=[ANALYTICS_ASSET])
    def publish(run_id=None) -> dict:
        """Replace `analytics` with the validated marts, atomically."""
        return warehouse_tasks.publish_marts(run_id)

    @task
    def end_build(run_id=None) -> None:
        """Log that the run ended, whatever its outcome: manual builds may start again."""
        warehouse_tasks.end_build(settings.warehouse_url(), run_id)

    plan = plan_build()
    published = plan >> raw_quality_gate() >> dbt_build >> record_build() >> fit_clv() >> marts_quality_gate() >> publish()
    # a teardown: it runs once the tasks before it are done, failed or not, if the plan
    # (its setup) took the warehouse
    published >> end_build().as_teardown(setups=plan)


warehouse()
