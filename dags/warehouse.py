"""
### Warehouse: dbt build, quality gate, publish to `analytics`

Runs when every ingestion DAG has updated its raw tables (Assets `raw_crm`, `raw_web`,
`raw_marketing`, `raw_shop`), then:

1. **plan**: takes the warehouse (the run now holds it, see 6) and logs the run's plan
   in `raw.warehouse_builds`: the oldest date folder (re)delivered since the last
   successful build, from which incremental models reprocess deliveries when it is older
   than their late-data window (so that they still equal a full refresh), and the as-of
   date, the run's last date (the KPI marts have a row for every day up to it). The
   run's dbt commands read that plan (var `warehouse_run_id`). The data tests of the
   event tables read only the folders from that date on (older ones passed a build).
2. **raw gate**: Great Expectations suites on the raw tables; an error blocks the run.
3. **dbt build**, model by model (astronomer-cosmos, one task per model running
   `dbt build --select <model>`: the model and its data tests; unit tests run in
   `make test`), so a failure names the model.
   Staging and intermediate models, then the marts in schema `marts`. Then the build
   is logged as successful.
4. **marts gate**: suites on every BI relation in `marts` (keys, ranges, reconciliations).
5. **publish**: `analytics` gets the validated marts in one transaction (readers see
   the old or the new version, never a mix).
   When a gate fails, `analytics` keeps the last good version and the run fails.
6. **end**: a teardown that runs whatever happened before it: the run no longer holds
   the warehouse. From its plan to its end a run holds the warehouse, so that nothing
   else writes it meanwhile: a dbt build started by hand (plain `dbt`, `lw dbt`, an IDE)
   refuses to start, and the plan of a run waits for such a build to end.

Emits the `analytics` Asset for downstream consumers (reports, exports).
"""

from datetime import timedelta

from airflow.sdk import dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import InvocationMode, LoadMode, TestBehavior

from lifecycle_warehouse import dbt_runner, settings, warehouse_tasks
from lifecycle_warehouse.orchestration import (
    ANALYTICS_ASSET,
    DEFAULT_ARGS,
    RANGE_PARAMS,
    RAW_ASSETS,
    START_DATE,
    run_dates,
)

DBT_DIR = dbt_runner.DBT_PROJECT_DIR


@dag(
    dag_id="warehouse",
    schedule=(RAW_ASSETS["crm"] & RAW_ASSETS["web"] & RAW_ASSETS["marketing"] & RAW_ASSETS["shop"]),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=RANGE_PARAMS,
    tags=["warehouse", "dbt", "quality", "analytics"],
    doc_md=__doc__,
    user_defined_macros={"warehouse_profile_env": warehouse_tasks.warehouse_profile_env},
)
def warehouse():
    @task
    def plan_build(run_id=None, params=None, data_interval_start=None, data_interval_end=None) -> dict:
        """Take the warehouse for the run and log its plan: the date to reprocess deliveries
        from, and the as-of date (the run's last date)."""
        _, end = run_dates(params, data_interval_start, data_interval_end)
        plan = warehouse_tasks.plan_build(settings.warehouse_url(), run_id, as_of=end - timedelta(days=1))
        return {"recompute_from": str(plan.recompute_from or ""), "as_of_date": str(plan.as_of_date or "")}

    @task
    def raw_quality_gate(run_id=None, params=None, data_interval_start=None, data_interval_end=None):
        """Validate the raw tables and deliveries before transforming them."""
        start, end = run_dates(params, data_interval_start, data_interval_end)
        return warehouse_tasks.quality_gate("raw", run_id, start, end)

    dbt_build = DbtTaskGroup(
        group_id="dbt_build",
        project_config=ProjectConfig(
            dbt_project_path=DBT_DIR,
            manifest_path=DBT_DIR / "target" / "manifest.json",
            project_name="lifecycle_warehouse",
        ),
        profile_config=ProfileConfig(
            profile_name="lifecycle_warehouse",
            target_name="default",
            profiles_yml_filepath=DBT_DIR / "profiles.yml",
        ),
        execution_config=ExecutionConfig(invocation_mode=InvocationMode.DBT_RUNNER),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.BUILD,
            # Unit tests check SQL logic on fixtures, not data: `make test` and CI run them
            # (dbt's advice), a scheduled run would only pay their cost every day.
            # Exposures name BI consumers: nothing to run (and no Cosmos operator for them).
            exclude=["resource_type:unit_test", "resource_type:exposure"],
            # A test that reads two models (relationships) runs once both are built.
            should_detach_multiple_parents_tests=True,
            # Per-model Assets would add nothing: the DAG's output is `analytics`.
            emit_datasets=False,
        ),
        operator_args={
            "install_deps": False,
            # the run's dbt commands build for it: they read its plan (macros/warehouse_builds.sql)
            "vars": {"warehouse_run_id": "{{ run_id }}"},
            "env": {
                key: "{{ warehouse_profile_env('%s') }}" % key
                for key in warehouse_tasks.PROFILE_ENV_KEYS
            },
        },
    )

    @task
    def record_build(run_id=None) -> None:
        """Log that every model was built: later runs plan from this run's start."""
        warehouse_tasks.record_build(settings.warehouse_url(), run_id)

    @task
    def marts_quality_gate(run_id=None, params=None, data_interval_start=None, data_interval_end=None):
        """Validate the freshly built marts before BI can see them."""
        start, end = run_dates(params, data_interval_start, data_interval_end)
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
    published = plan >> raw_quality_gate() >> dbt_build >> record_build() >> marts_quality_gate() >> publish()
    # a teardown: it runs once the tasks before it are done, failed or not, if the plan
    # (its setup) took the warehouse
    published >> end_build().as_teardown(setups=plan)


warehouse()
