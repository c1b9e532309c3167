"""The file-ingestion DAG, built once for each landing-zone source (crm, web, marketing):
the three differ only by source, so they share this definition and the DAG files only
name the source and carry its documentation.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from lifecycle_warehouse import alerts, contract, ingest_tasks
from lifecycle_warehouse.orchestration import RAW_ASSETS, asset_event_extra, ingest_dag_kwargs, run_dates


def file_ingest_dag(source: str, doc_md: str):
    entities = [e.entity for e in contract.file_entities(source)]

    @dag(**ingest_dag_kwargs(source, doc_md))
    def file_ingest():
        @task
        def prepare_raw_schema() -> None:
            """Create the raw tables if they are missing (idempotent)."""
            ingest_tasks.prepare_raw_schema()

        @task
        def load_entity(entity: str, params=None, data_interval_start=None, data_interval_end=None):
            """Load every date folder of one entity in the run's dates (one transaction each)."""
            start, end = run_dates(params, data_interval_start, data_interval_end)
            return ingest_tasks.load_files(source, entity, start, end)

        @task(outlets=[RAW_ASSETS[source]])
        def summarize(results, params=None, data_interval_start=None, data_interval_end=None,
                      outlet_events=None, dag_run=None) -> dict:
            """Log the run's totals and rejected files (one alert listing them, LW_ALERT_URL);
            mark the source's raw data as updated for the run's dates (the warehouse run it
            triggers reads them)."""
            start, end = run_dates(params, data_interval_start, data_interval_end)
            outlet_events[RAW_ASSETS[source]].extra = asset_event_extra(start, end)
            # Indexing (not iterating) the mapped results: iteration probes one XCom past
            # the end, which Airflow logs as an error.
            loaded = [results[i] for i in range(len(results))]
            totals = ingest_tasks.summarize_file_loads(source, loaded)
            alerts.alert_rejected_files(source, loaded, dag_run.dag_id, dag_run.run_id, (start, end))
            return totals

        loads = load_entity.expand(entity=entities)
        prepare_raw_schema() >> loads
        summarize(loads)

    return file_ingest()


def dbt_step_task_group(mode: str):
    """The warehouse DAG's dbt step, as task group `dbt_build` of the DAG being defined;
    `mode` is settings.dbt_step() (dbt_step.py says why `report` is the default)."""
    if mode == "report":
        return _reporting_task_group()
    return _cosmos_task_group(watcher=mode == "cosmos_watcher")


def _reporting_task_group():
    from airflow.sdk import TaskGroup

    from lifecycle_warehouse import dbt_step

    @task
    def build_all(run_id=None) -> dict:
        """One `dbt build` of every model, seed and data test for this run (it reads the
        run's plan); the tasks after it report each model's outcome."""
        return dbt_step.build_all(run_id)

    @task
    def report(name: str, built: dict, run_id=None, ti=None) -> None:
        """This model's (or seed's) outcome in the step's `dbt build`, with its data tests;
        a retry builds it alone."""
        dbt_step.report(name, built, run_id, ti.try_number)

    nodes = dbt_step.load_nodes()
    with TaskGroup("dbt_build", tooltip="one dbt build, then one task per model and seed") as group:
        built = build_all()
        reports = {
            node.name: report.override(task_id=node.name, doc_md=_node_doc(node))(node.name, built)
            for node in nodes
        }
        for node in nodes:
            for upstream in node.upstream:
                reports[upstream] >> reports[node.name]
    return group


def _node_doc(node) -> str:
    tests = f"{len(node.tests)} data test(s)" if node.tests else "no data tests"
    return (f"dbt {node.resource_type} `{node.name}` and its {tests}: its outcome in the step's "
            f"`dbt build`; a retry runs `dbt build --select {node.name}`.")


def _cosmos_task_group(watcher: bool):
    """astronomer-cosmos: one `dbt build --select <model>` task per model, or (watcher) its
    ExecutionMode.WATCHER, adapted to `airflow dags test`: the producer first, then the
    model and test sensors, polling rather than deferring."""
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

    from lifecycle_warehouse import dbt_runner, dbt_step, warehouse_tasks

    dbt_dir = dbt_runner.DBT_PROJECT_DIR
    group = DbtTaskGroup(
        group_id="dbt_build",
        project_config=ProjectConfig(
            dbt_project_path=dbt_dir,
            manifest_path=dbt_dir / "target" / "manifest.json",
            project_name="lifecycle_warehouse",
        ),
        profile_config=ProfileConfig(
            profile_name="lifecycle_warehouse",
            target_name="default",
            profiles_yml_filepath=dbt_dir / "profiles.yml",
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER if watcher else ExecutionMode.LOCAL,
            invocation_mode=InvocationMode.DBT_RUNNER,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            # WATCHER has no build operator: a task per model and one per model's tests
            test_behavior=TestBehavior.AFTER_EACH if watcher else TestBehavior.BUILD,
            exclude=["resource_type:unit_test", "resource_type:exposure"],
            # A test that reads two models runs once both are built (the watcher's producer
            # orders them itself, and reports no status for a detached test)
            should_detach_multiple_parents_tests=not watcher,
            emit_datasets=False,
        ),
        operator_args={
            "install_deps": False,
            "env": {
                **{key: "{{ warehouse_profile_env('%s') }}" % key for key in warehouse_tasks.PROFILE_ENV_KEYS},
                # the run's dbt commands build for it: they read its plan (macros/warehouse_builds.sql)
                dbt_step.RUN_ID_ENV: "{{ run_id }}",
            },
            **({"deferrable": False, "poke_interval": 1} if watcher else {}),
        },
    )
    if watcher:
        # `dags test` runs one task at a time: a sensor started before the producer would
        # wait for it forever, so the producer comes first
        producer = group.children["dbt_build.dbt_producer_watcher"]
        producer.retries = 0  # it skips its retries: a failed model retries on its own task
        consumers = [t for t in group.iter_tasks() if t is not producer]
        in_group = {t.task_id for t in consumers}
        for consumer in consumers:
            if not consumer.upstream_task_ids & in_group:
                producer >> consumer
    return group
