{#- One build writes the warehouse at a time, and every build is planned, however dbt is
    run: by the warehouse DAG, `lw dbt`, or plain `dbt build` from a shell, an IDE or
    Cosmos. Incremental models and their change logs need it (a consumer deletes the
    changes logged for it once it has read them), and so does the publish (it copies the
    marts the marts gate validated).

    - A dbt command that writes (build, run, seed, snapshot, clone, retry) takes the
      warehouse in its on-run-start hook (raw.take_warehouse, created by the raw schema's
      bootstrap): it refuses to start, naming the holder, while a warehouse DAG run or
      another dbt build holds it, and logs itself in raw.warehouse_builds as
      `dbt:<invocation_id>` with its plan. Its on-run-end hook ends it, and records a
      successful build of every model (no --select) so that later builds plan from it.
      Before each model, seed and snapshot it records its connection (a heartbeat): a build
      whose process was killed holds the warehouse no longer once none of its connections
      is open and its last heartbeat is two minutes old.
    - A warehouse DAG run takes the warehouse in its plan_build task and passes its run id
      in the environment variable LW_WAREHOUSE_RUN_ID to the dbt commands of its models:
      those check that the run holds it, and read its plan. (Not a var: a change of
      `--vars` makes dbt parse the whole project again, ~6 s at every run.)
    - The plan: `recompute_from`, the oldest date folder delivered since the start of the
      last successful build (raw.planned_recompute_from), from which incremental models
      reprocess deliveries; `as_of_date`, the last date of the run (the DAG), else the
      latest date folder delivered (raw.latest_delivered_date). A var of the same name
      given on the command line wins. -#}

{% macro warehouse_run_id() -%}
    {#- The warehouse DAG run this dbt command builds for (LW_WAREHOUSE_RUN_ID), else ''.
        Read only when executing: dbt keeps the environment variables read while parsing,
        and parses the project again when one of them changes. -#}
    {{- return(env_var('LW_WAREHOUSE_RUN_ID', '') if execute else '') -}}
{%- endmacro %}


{% macro warehouse_build_id() -%}
    {{- return(warehouse_run_id() or ('dbt:' ~ invocation_id)) -}}
{%- endmacro %}


{% macro _quoted(value) -%}
    {{- "'" ~ (value | string | replace("'", "''")) ~ "'" -}}
{%- endmacro %}


{% macro writes_warehouse() -%}
    {{- return(flags.WHICH in ['build', 'run', 'seed', 'snapshot', 'clone', 'retry']) -}}
{%- endmacro %}


{% macro start_warehouse_build() -%}
    {#- on-run-start: take the warehouse (see above). SQL run outside a transaction. -#}
    {%- if not execute or not writes_warehouse() -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set build_id = _quoted(warehouse_build_id()) -%}
    do $$
    begin
        if to_regprocedure('raw.take_warehouse(text, text, date, interval)') is null then
            raise exception 'the raw schema is missing or older than this project: run `lw up` '
                '(or any ingestion run) first';
        end if;
    {%- if warehouse_run_id() %}
        if not exists (
            select from raw.warehouse_builds where run_id = {{ build_id }} and ended_at is null
        ) then
            raise exception 'warehouse run % does not hold the warehouse (it ended, or never planned)',
                {{ build_id }};
        end if;
    {%- else %}
        perform raw.take_warehouse(
            {{ build_id }}, 'dbt',
            {{ _quoted(var('as_of_date')) ~ '::date' if var('as_of_date') else 'null::date' }}
        );
    {%- endif %}
    end
    $$;
    commit;
{%- endmacro %}


{% macro end_warehouse_build() -%}
    {#- on-run-end: a dbt build started by hand ends; when it built every model of the
        project, whatever the selection syntax, and nothing failed, later builds plan from
        its start. (A warehouse DAG run ends in its own end_build task, and logs its build
        in record_build.) -#}
    {%- if not execute or not writes_warehouse() or warehouse_run_id() -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set built_models = results
        | selectattr('node.resource_type', 'equalto', 'model')
        | selectattr('status', 'equalto', 'success')
        | map(attribute='node.unique_id') | list -%}
    {%- set project_models = graph.nodes.values()
        | selectattr('resource_type', 'equalto', 'model')
        | map(attribute='unique_id') | list -%}
    {%- set failed = results | selectattr('status', 'in', ['error', 'fail', 'runtime error']) | list -%}
    {%- set built = project_models | reject('in', built_models) | list | length == 0 and not failed -%}
    select raw.end_build({{ _quoted(warehouse_build_id()) }}, {{ 'true' if built else 'false' }});
    commit;
{%- endmacro %}


{% macro warehouse_build_heartbeat() -%}
    {#- pre-hook of every model, seed and snapshot (outside its transaction): the build is
        alive, on this connection. -#}
    select raw.build_heartbeat({{ _quoted(warehouse_build_id()) }})
{%- endmacro %}


{% macro build_plan(name) -%}
    {#- The plan of this build: `recompute_from` or `as_of_date` (a 'YYYY-MM-DD' string, or
        none): the var of that name when given, else what the build logged when it took the
        warehouse. None when dbt is not executing (parsing, a unit test, a command that
        does not write). -#}
    {%- if var(name) -%}
        {{- return(var(name) | string) -}}
    {%- endif -%}
    {%- if not execute or not writes_warehouse() or model.resource_type == 'unit_test' -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set plan = run_query(
        "select " ~ name ~ "::text from raw.warehouse_builds where run_id = "
        ~ _quoted(warehouse_build_id())
    ) -%}
    {{- return(plan.columns[0].values()[0] if plan.rows | length else none) -}}
{%- endmacro %}
