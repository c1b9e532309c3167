{#- Tested rows: the data tests of a large incremental model read, in a build that runs the
    model, only a copy of the rows that this build may have written, `<model>__tested`
    (an unlogged table beside it: rebuilt by every run, never read after its build's
    tests). Every other row is a row an earlier build wrote and tested. One copy instead
    of each test looking those rows up again among all of them: at a year, the stage
    intervals' 14 tests took ~4 s each on the critical path of the day's build, the
    sessions' ~3 s each. The rows copied:
    - meta `test_changed_key` (a text column: the person): the model's rows of the keys
      logged in a change log (int_lifecycle__stage_intervals, its consumer
      fct_lifecycle_transitions; change_log_keep_tested_rows, macros/change_log.sql);
    - meta `test_selected_rows` (strategy replace_window): the rows the model selected,
      which are every row the run may have written (the strategy deletes the others of
      the window, and a deleted row breaks no column test), whose keys it makes unique
      (int_web__sessions); for int_identity__persons (strategy append after a pre-hook
      delete), the rows its insert wrote (persons_keep_tested_rows, macros/identity.sql).
    Relationships tests read the whole model (their parent may have lost a row that an
    unchanged row still names), and so does every test in other runs: `dbt test`, a
    build that does not run the model, full builds, a consumer that recomputes
    everything. -#}

{% macro tested_rows_relation(tested_model) -%}
    {{- return(tested_model.incorporate(path={"identifier": tested_model.identifier ~ "__tested"})) -}}
{%- endmacro %}


{% macro prepare_tested_rows(logged_model=none) -%}
    {#- Pre-hook of a model with tested rows (after change_log_prepare, for the logged
        model): drop the last build's copy; on an incremental run that writes only some
        rows, create it empty, for the run to fill (change_log_keep_tested_rows, or the
        strategy replace_window). Not with a change log (logged_model) that says
        everything changed. Decided here: a post-hook sees the model's table as existing
        even on its first build. -#}
    {%- set tested = tested_rows_relation(this) -%}
    drop table if exists {{ tested }};
    {%- if is_incremental() -%}
        {%- if logged_model is none -%}
            {%- set everything = false -%}
        {%- elif this.identifier == logged_model.identifier -%}
            {%- set everything = run_query(
                "select exists (select from " ~ change_log_relation(logged_model) ~ " where sign = 0)"
            ).columns[0].values()[0] -%}
        {%- else -%}
            {%- set everything = change_log_recompute_all(logged_model) -%}
        {%- endif -%}
        {%- if not everything %}
            create unlogged table {{ tested }} as select * from {{ this }} with no data;
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{% macro tested_rows_exist(tested_model) -%}
    {#- Whether the model's copy exists now: the catalog, not dbt's relation cache (the copy
        is created by a hook of this build). -#}
    {{- return(run_query(
        "select to_regclass('" ~ tested_rows_relation(tested_model) ~ "') is not null"
    ).columns[0].values()[0]) -}}
{%- endmacro %}


{% macro fill_tested_rows(tested_model, rows_sql) -%}
    {#- SQL run by the model's write, in its transaction: when prepare_tested_rows created the
        copy, it becomes rows_sql (the rows this run may have written); nothing otherwise. -#}
    {%- if execute and tested_rows_exist(tested_model) -%}
        {%- set tested = tested_rows_relation(tested_model) -%}
        drop table {{ tested }};
        create unlogged table {{ tested }} as {{ rows_sql }};
        analyze {{ tested }}
    {%- endif -%}
{%- endmacro %}


{% macro tested_rows(tested_model) -%}
    {#- The relation a data test of a model with tested rows reads: in a build that runs
        the model (dbt build, run by the warehouse DAG or by hand; not --full-refresh), its
        copy of the rows this build may have written, if it made one; else the model
        (every row). -#}
    {%- set tested_node = 'model.' ~ project_name ~ '.' ~ tested_model.identifier -%}
    {%- if not execute or flags.FULL_REFRESH or not writes_warehouse()
        or tested_node not in selected_resources -%}
        {{- return(tested_model) -}}
    {%- endif -%}
    {{- return(tested_rows_relation(tested_model) if tested_rows_exist(tested_model) else tested_model) -}}
{%- endmacro %}
