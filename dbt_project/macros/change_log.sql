{#- Change log of an incremental model (int_kpi__contributions): every run records the rows
    it changed (but in their metadata columns alone: replace_changed), before and after,
    for each model that consumes the changes (kpi_daily, kpi_monthly). A consumer reads
    the changes logged since it last ran, recomputes only what they touch, and deletes
    them in the same transaction as its own update: what it has not consumed stays
    logged, whatever failed in between.

    The log is the table `<model>__changes` beside the model:
        change_id   position in the log
        consumer    the model that is to consume the change
        sign        -1: a row as it was before the change (also a deleted row),
                    +1: a row as it is after it, 0: everything changed (the model was
                    built in full), recompute everything
        row_image   the row (jsonb; jsonb_populate_record turns it back into the model's
                    row type)
    It is bookkeeping, not a model: in sync with the model after every build, and empty
    once every consumer has run. -#}

{% macro change_log_relation(model_relation) -%}
    {{- return(model_relation.incorporate(path={"identifier": model_relation.identifier ~ "__changes"})) -}}
{%- endmacro %}


{% macro change_log_prepare(consumers) -%}
    {#- Pre-hook of the logged model: create the log; on a full build, empty it and log
        "everything changed" for every consumer; on an incremental one, forget what was
        logged for a model that is no longer a consumer. -#}
    {%- set log = change_log_relation(this) -%}
    create table if not exists {{ log }} (
        change_id bigint generated always as identity primary key,
        consumer text not null,
        sign smallint not null,
        row_image jsonb
    );
    {% if not is_incremental() -%}
        delete from {{ log }};
        insert into {{ log }} (consumer, sign) values
        {%- for consumer in consumers %}
            ('{{ consumer }}', 0){{ ',' if not loop.last }}
        {%- endfor %};
    {%- else -%}
        -- a model that no longer consumes the log would never delete what was logged for it
        delete from {{ log }} where consumer not in {{ sql_list(consumers) }};
    {%- endif %}
{%- endmacro %}


{% macro get_incremental_replace_changed_sql(arg_dict) -%}
    {#- Incremental strategy `replace_changed`: the model selects every row that may have
        changed (candidates), and, for a candidate that no longer exists, a tombstone: its
        unique_key with NULL in meta.tombstone_when_null. Rows that differ from the stored
        ones are replaced (tombstones delete), and logged before and after for each of
        meta.change_consumers (change_log_prepare). Unchanged candidates cost a compare,
        no write. A row whose only changes are in metadata columns (names starting with an
        underscore: what the model keeps for its next incremental run, which no consumer
        reads) is replaced but not logged: at a year, most of the stage intervals a daily
        run rewrites differ only in their persons' latest deliveries, and their consumers
        would recompute those persons for nothing. -#}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- set meta = config.get('meta') or {} -%}
    {%- set tombstone_column = meta.get('tombstone_when_null') -%}
    {%- set consumers = meta.get('change_consumers') or [] -%}
    {%- if unique_key is not string or not tombstone_column or not consumers -%}
        {{ exceptions.raise_compiler_error(
            "incremental_strategy 'replace_changed' needs a single-column unique_key, "
            ~ "meta.tombstone_when_null and meta.change_consumers (model " ~ target ~ ")") }}
    {%- endif -%}
    {%- set columns = arg_dict['dest_columns'] | map(attribute='name') | list -%}
    {%- set logged_columns = [] -%}
    {%- for column in columns if not column.startswith('_') -%}
        {%- do logged_columns.append(column) -%}
    {%- endfor -%}
    {%- set dest_cols_csv = get_quoted_csv(columns) -%}
    {%- set changed = source.incorporate(path={"identifier": source.identifier ~ "__changed"}) -%}
    {%- set log = change_log_relation(target) -%}

    create temporary table {{ changed.identifier }} as
    select
        candidate.*,
        (
            {%- for column in logged_columns %}
                candidate.{{ adapter.quote(column) }}{{ ',' if not loop.last }}
            {%- endfor %}
        ) is distinct from (
            {%- for column in logged_columns %}
                stored.{{ adapter.quote(column) }}{{ ',' if not loop.last }}
            {%- endfor %}
        ) as dbt_change_is_logged
    from {{ source }} as candidate
    left join {{ target }} as stored
        on candidate.{{ unique_key }} = stored.{{ unique_key }}
    where
        (
            {%- for column in columns %}
                candidate.{{ adapter.quote(column) }}{{ ',' if not loop.last }}
            {%- endfor %}
        ) is distinct from (
            {%- for column in columns %}
                stored.{{ adapter.quote(column) }}{{ ',' if not loop.last }}
            {%- endfor %}
        )
        and not (stored.{{ unique_key }} is null and candidate.{{ tombstone_column }} is null);

    insert into {{ log }} (consumer, sign, row_image)
    select
        consumers.consumer,
        changes.sign,
        changes.row_image
    from (
        select
            -1 as sign,
            to_jsonb(stored) as row_image
        from {{ target }} as stored
        where stored.{{ unique_key }} in (
            select {{ unique_key }} from {{ changed.identifier }} where dbt_change_is_logged
        )

        union all

        select
            1 as sign,
            to_jsonb(changed) - 'dbt_change_is_logged' as row_image
        from {{ changed.identifier }} as changed
        where changed.{{ tombstone_column }} is not null and changed.dbt_change_is_logged
    ) as changes
    cross join (
        values
        {%- for consumer in consumers %}
            ('{{ consumer }}'){{ ',' if not loop.last }}
        {%- endfor %}
    ) as consumers (consumer);

    delete from {{ target }}
    where {{ unique_key }} in (select {{ unique_key }} from {{ changed.identifier }});

    insert into {{ target }} ({{ dest_cols_csv }})
    select {{ dest_cols_csv }}
    from {{ changed.identifier }}
    where {{ tombstone_column }} is not null;

    drop table {{ changed.identifier }}
{%- endmacro %}


{% macro change_log_recompute_all(logged_model) -%}
    {#- For the consuming model (this), at run time: whether it must recompute everything:
        it is built in full, the log does not exist yet, or a change logged for it says
        "everything changed". -#}
    {%- set log = change_log_relation(logged_model) -%}
    {%- if not execute -%}
        {{- return(false) -}}
    {%- elif not is_incremental() or adapter.get_relation(log.database, log.schema, log.identifier) is none -%}
        {{- return(true) -}}
    {%- endif -%}
    {%- set result = run_query(
        "select exists (select from " ~ log ~ " where consumer = '" ~ this.identifier ~ "' and sign = 0)"
    ) -%}
    {{- return(result.columns[0].values()[0]) -}}
{%- endmacro %}


{% macro change_log_changes(logged_model) -%}
    {#- SQL: the changes logged for the consuming model (this), as rows of the logged model
        with their sign (-1 before, +1 after). -#}
    {%- set log = change_log_relation(logged_model) -%}
    select
        log.sign,
        logged_row.*
    from {{ log }} as log
    cross join lateral jsonb_populate_record(null::{{ logged_model }}, log.row_image) as logged_row
    where log.consumer = '{{ this.identifier }}' and log.sign <> 0
{%- endmacro %}


{% macro change_log_changed_keys(logged_model, key_sql, where='true') -%}
    {#- SQL: the distinct values of key_sql (an expression over the logged model's columns)
        of the changes logged for the consuming model (this) that match where: the
        persons, months, ... it has to recompute. -#}
    select distinct {{ key_sql }} as changed_key
    from ({{ change_log_changes(logged_model) }}) as changes
    where {{ where }}
{%- endmacro %}


{% macro change_log_delete_recomputed(logged_model, key_column, changed_keys_sql) -%}
    {#- Pre-hook of a consuming model that appends what it recomputes: delete its stored rows
        whose key_column is among changed_keys_sql (the keys of its logged changes), or all
        of them when it recomputes everything; in the transaction of its insert.
        The keys go through a temporary table with statistics: the planner cannot guess how
        many keys the log holds (it assumes one), and would look each up in the index, in
        random order; with their count it reads the table whole when they are many (at a
        year, 47,000 persons' transitions on most of the table's pages: 8 s from disk,
        2.5 s with a hash join). -#}
    {% if is_incremental() -%}
        {% if change_log_recompute_all(logged_model) -%}
            delete from {{ this }}
        {%- else -%}
            {%- set keys = this.identifier ~ '__recomputed_keys' -%}
            create temporary table {{ keys }} on commit drop as {{ changed_keys_sql }};
            analyze {{ keys }};
            delete from {{ this }} where {{ key_column }} in (select changed_key from {{ keys }})
        {%- endif %}
    {%- endif %}
{%- endmacro %}


{% macro change_log_consume(logged_model) -%}
    {#- Post-hook of the consuming model: delete the changes logged for it, in the
        transaction of its update. Builds run one at a time (warehouse DAG runs are
        serialised, and `lw dbt build` waits for none: it refuses to start while a run
        holds the warehouse, docs/architecture.md), so nothing is logged between its select
        and this delete. -#}
    {%- set log = change_log_relation(logged_model) -%}
    delete from {{ log }} where consumer = '{{ this.identifier }}'
{%- endmacro %}


{% macro change_log_keep_tested_rows(logged_model) -%}
    {#- Post-hook of a model whose tests read the rows of logged keys (meta
        `test_changed_key`, a text column: customer_key), in the transaction of its write
        (before change_log_consume, if it is a consumer): when prepare_tested_rows created
        the copy (macros/tested_rows.sql), fill it with the model's rows of the logged keys:
        all of the log for the logged model (int_lifecycle__stage_intervals: the persons
        whose intervals this build changed, and those changed by builds whose consumers
        have not run yet), the consumer's own changes for a consumer
        (fct_lifecycle_transitions: the persons it recomputed). Either rewrites every row
        of a key it changes, so the rows of other keys are rows an earlier build tested,
        and a key-grain test (contiguity, uniqueness of a person's start instants) reads
        the persons that changed, not the 2 million others. -#}
    {%- set key_column = (config.get('meta') or {}).get('test_changed_key') -%}
    {%- set logged_rows -%}
        select * from {{ this }}
        where {{ key_column }} = any(array(
            select distinct log.row_image ->> '{{ key_column }}'
            from {{ change_log_relation(logged_model) }} as log
            where log.sign <> 0
            {%- if this.identifier != logged_model.identifier %} and log.consumer = '{{ this.identifier }}'{% endif %}
        ))
    {%- endset -%}
    {{ fill_tested_rows(this, logged_rows) if key_column }}
{%- endmacro %}
