{#- Incremental windows. Models that read raw deliveries reprocess the date folders
    delivered since the last successful build of every model: the build's plan
    (`recompute_from`, macros/warehouse_builds.sql, from raw.load_audit) names the oldest
    of them, whoever runs the build, so late events (they come in new folders), duplicates
    and re-delivered or backfilled folders, however old, are caught, and a daily run
    reprocesses one day of deliveries, not a window of days. Without a successful build to
    plan from (the first builds, a warehouse upgraded in place), or with recompute_from
    given as a var, a model reprocesses the last var('late_data_lookback_days') days of
    deliveries it holds (and from that var, if earlier). -#}

{% macro recompute_from_bound(cutoff) -%}
    {#- `cutoff` (a date expression), moved back to the plan's recompute_from if that is
        set and earlier. -#}
    {%- set recompute_from = build_plan('recompute_from') -%}
    {%- if recompute_from -%}
        least({{ cutoff }}, '{{ recompute_from }}'::date)
    {%- else -%}
        {{ cutoff }}
    {%- endif -%}
{%- endmacro %}


{% macro plan_is_exact() -%}
    {#- Whether this build's planned recompute_from names every delivery the incremental
        models have not processed yet: the build writes, was not given the var, and a build
        of every model has succeeded before (the plan counts the deliveries since the start
        of the last one; none: nothing was delivered since). -#}
    {%- if var('recompute_from') or not execute or not writes_warehouse()
        or model.resource_type == 'unit_test' -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set built = run_query(
        "select exists (select from raw.warehouse_builds where built_at is not null)"
    ) -%}
    {{- return(built.columns[0].values()[0]) -}}
{%- endmacro %}


{% macro incremental_cutoff(column, relation=none, where=none) -%}
    {#- First value of `column` (a date of delivery) to reprocess; everything when the
        model (`relation`, default this; only its rows matching the SQL condition `where`,
        if given) holds no such row. With an exact plan (plan_is_exact), its recompute_from
        ('infinity' when nothing was delivered since the last successful build); else the
        latest value already in the model minus the lookback, or the plan's recompute_from
        if that is earlier.
        At run time it is looked up once and written as a literal, so that the planner
        knows how few rows the window holds and reads it through the _dt indexes; a unit
        test (whose `this` is a fixture, not a table) keeps the subquery. -#}
    {%- set relation = relation if relation is not none else this -%}
    {%- if plan_is_exact() -%}
        {%- set recompute_from = build_plan('recompute_from') -%}
        {%- set window_start = "'" ~ recompute_from ~ "'::date" if recompute_from else "'infinity'::date" -%}
        {#- whether the model holds such a row: the first one found answers (max() would read
            every row where the column has no index: the stage intervals' two cutoffs read
            7.4 million intervals at a year, 3-6 s before its query could start) -#}
        {%- set cutoff_sql -%}
            select case when exists (
                select from {{ relation }} where {{ column }} is not null
                {%- if where %} and ({{ where }}){% endif %}
            ) then {{ window_start }} else '-infinity'::date end
        {%- endset -%}
    {%- else -%}
        {%- set window_start = recompute_from_bound(
            "max(" ~ column ~ ") - " ~ var('late_data_lookback_days')
        ) -%}
        {%- set cutoff_sql -%}
            select case when max({{ column }}) is null then '-infinity'::date else {{ window_start }} end
            from {{ relation }}
            {%- if where %} where {{ where }}{% endif %}
        {%- endset -%}
    {%- endif -%}
    {%- if execute and model.resource_type != 'unit_test' -%}
        {%- set cutoff = run_query('select (' ~ cutoff_sql ~ ')::text').columns[0].values()[0] -%}
        '{{ cutoff }}'::date
    {%- else -%}
        ({{ cutoff_sql }})
    {%- endif -%}
{%- endmacro %}


{% macro get_where_subquery(relation) -%}
    {#- The relation a generic data test reads (dbt calls this macro for every one; this
        replaces dbt's own, which applies the test's `where` config). On a build whose plan
        has a recompute_from (not --full-refresh), the tests of a model with meta
        `test_window_column` read only its rows of the date folders delivered since the
        last successful build: the plan's recompute_from is the oldest of them. Those
        models' rows are each a function of their own deliveries (no person, no lookup), so
        a row of an older folder is the row a successful build already tested, and the
        daily tests of the event tables cost what the day's events cost, not what all
        history costs. Other runs (`dbt test`, a first build, full refreshes) test every
        row.
        The tests of a model with meta `test_changed_key` or `test_selected_rows`
        (int_lifecycle__stage_intervals, fct_lifecycle_transitions, int_web__sessions,
        int_identity__persons) read,
        in a build that runs the model, the copy of the rows this build may have written
        (tested_rows, macros/tested_rows.sql); except relationships tests: their parent may
        have lost a row that an unchanged child row still names. -#}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set tested_node = graph.nodes.get(model.attached_node) if execute and model.attached_node else none -%}
    {%- set window_column = tested_node.config.meta.get('test_window_column') if tested_node else none -%}
    {%- set recompute_from = build_plan('recompute_from') if window_column and not flags.FULL_REFRESH else none -%}
    {%- if recompute_from -%}
        {%- do conditions.append(window_column ~ " >= '" ~ recompute_from ~ "'::date") -%}
    {%- endif -%}
    {%- set meta = tested_node.config.meta if tested_node else {} -%}
    {%- set has_tested_rows = meta.get('test_changed_key') or meta.get('test_selected_rows') -%}
    {%- set test_name = model.test_metadata.name if model.test_metadata else none -%}
    {%- set read = tested_rows(relation) if has_tested_rows and test_name != 'relationships' else relation -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ read ~ ' where ' ~ conditions | join(' and ') ~ ') as dbt_subquery') -%}
    {%- elif read != relation -%}
        {%- do return('(select * from ' ~ read ~ ') as dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}


{% macro get_incremental_replace_window_sql(arg_dict) -%}
    {#- Incremental strategy `replace_window`: the stored rows inside the late-data window
        (meta.window_column >= incremental_cutoff) and those whose unique_key the model
        selected are replaced by the model's rows, so rows that vanished from a re-delivered
        date folder go too. The model must select every row of that window. Only rows that
        changed are written: a stored row identical to the one selected with its key (no
        column distinct) stays, so a day's run rewrites that day's rows, not the whole window
        again (every write also maintains each index of a table of millions of rows). The
        cutoff is looked up again here, on the table as it was when the model's select ran
        (nothing has changed it since), so both use the same window. With meta
        `test_selected_rows` (and the copy prepared by prepare_tested_rows), the selected
        rows are copied for the model's data tests (macros/tested_rows.sql).
        With meta `keys_in_window` the model promises that a key it selects is never stored
        outside the window (true of first deliveries when the window starts at the oldest
        folder delivered since the last build: an earlier stored delivery of the key would
        have made the selected one a later delivery). On a run with an exact plan the
        stored rows are then looked up in the window only, so the table needs no index on
        its key: a day's random keys in such an index cost a leaf page each to read and to
        write (the day's 121,000 web events: 10.3 s of reads from disk; a year's daily run
        wrote 5.5-5.8 GB of WAL without the index, 6.2-6.4 GB with it).
        Other runs (a first build, a look-back window, a recompute_from var) delete by key
        as usual, with a join over the whole table. -#}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- set window_column = (config.get('meta') or {}).get('window_column') -%}
    {#- the promise holds only when the window holds every folder delivered since the last
        build (an exact plan): a folder re-delivered outside a look-back window may have
        lost a key's first delivery, which a later folder inside it then holds -#}
    {%- set keys_in_window = (config.get('meta') or {}).get('keys_in_window', false) and plan_is_exact() -%}
    {%- if unique_key is not string or not window_column -%}
        {{ exceptions.raise_compiler_error(
            "incremental_strategy 'replace_window' needs a single-column unique_key and "
            ~ "meta.window_column (model " ~ target ~ ")") }}
    {%- endif -%}
    {%- set columns = arg_dict['dest_columns'] | map(attribute='name') | list -%}
    {%- set dest_cols_csv = get_quoted_csv(columns) -%}
    {#- identical: every column not distinct (types without an equality, such as json,
        compared as text) -#}
    {%- set without_equality = ['json', 'xml', 'point', 'line', 'lseg', 'box', 'path', 'polygon', 'circle'] -%}
    {%- set identical -%}
        {%- for column in arg_dict['dest_columns'] -%}
            {%- set cast = '::text' if column.dtype | lower in without_equality else '' -%}
            selected.{{ adapter.quote(column.name) }}{{ cast }} is not distinct from replaced.{{ adapter.quote(column.name) }}{{ cast }}
            {{- "\n                and " if not loop.last }}
        {%- endfor -%}
    {%- endset -%}

    {#- Two deletes (the second not needed with keys_in_window), not one with `or`:
        PostgreSQL cannot use an index for either side of that `or`, and scanned every
        stored row (10 million web events: ~30 s a day, where the two index-driven deletes
        take ~5 s). -#}
    {%- set cutoff = incremental_cutoff(window_column, target) %}
    delete from {{ target }} as replaced
    where
        replaced.{{ window_column }} >= {{ cutoff }}
        and not exists (
            select from {{ source }} as selected
            where
                selected.{{ unique_key }} = replaced.{{ unique_key }}
                and {{ identical }}
        );

    {%- if not keys_in_window %}

    delete from {{ target }} as replaced
    using {{ source }} as selected
    where
        replaced.{{ unique_key }} = selected.{{ unique_key }}
        and not ({{ identical }});
    {%- endif %}

    -- what is left of a selected key is its identical row
    insert into {{ target }} ({{ dest_cols_csv }})
    (
        select {{ dest_cols_csv }}
        from {{ source }} as selected
        where not exists (
            select from {{ target }} as replaced
            where
                replaced.{{ unique_key }} = selected.{{ unique_key }}
                {%- if keys_in_window %}
                and replaced.{{ window_column }} >= {{ cutoff }}
                {%- endif %}
        )
    )
    {%- if (config.get('meta') or {}).get('test_selected_rows') %};

    -- the rows its data tests read in this build (macros/tested_rows.sql)
    {{ fill_tested_rows(target, 'select ' ~ dest_cols_csv ~ ' from ' ~ source) }}
    {%- endif %}
{%- endmacro %}


{% macro sync_indexes() -%}
    {#- Post-hook of every model (dbt_project.yml): an incremental model's stored table gets
        the indexes of its config that it lacks, and loses those dbt created for an older
        config. dbt creates a model's indexes only when it creates the table, so an index
        added to the config of an incremental model would otherwise reach an existing
        warehouse only at its next full refresh, and one taken out of it (or replaced by a
        wider one) would be maintained by every run for nothing.
        Compared by definition (unique or not, method and columns as pg_get_indexdef writes
        them), not by name: dbt names each index with a hash of the time it was created.
        Only indexes named that way (32 hexadecimal digits) are dropped: an index someone
        created by hand under a name of their own stays. -#}
    {%- if not execute or config.get('materialized') != 'incremental' -%}
        {{ return('') }}
    {%- endif -%}
    {%- set wanted = [] -%}
    {%- for index_dict in config.get('indexes') or [] -%}
        {%- set index = adapter.parse_index(index_dict) -%}
        {%- do wanted.append('CREATE ' ~ ('UNIQUE ' if index.unique else '') ~ 'INDEX ON USING '
            ~ (index.type or 'btree') ~ ' (' ~ (index.columns | join(', ')) ~ ')') -%}
    {%- endfor -%}
    {%- set stored = run_query(
        "select index_class.relname, "
        ~ "regexp_replace(pg_get_indexdef(indexrelid), ' INDEX \\S+ ON \\S+ ', ' INDEX ON ') "
        ~ "from pg_index join pg_class as index_class on index_class.oid = pg_index.indexrelid "
        ~ "where indrelid = '" ~ this ~ "'::regclass"
    ) -%}
    {%- set stored_definitions = stored.columns[1].values() -%}
    {%- for row in stored.rows -%}
        {%- if row[1] not in wanted and modules.re.fullmatch('[0-9a-f]{32}', row[0]) %}
            drop index {{ adapter.quote(this.schema) }}.{{ adapter.quote(row[0]) }};
        {%- endif -%}
    {%- endfor -%}
    {%- for index_dict in config.get('indexes') or [] -%}
        {%- if wanted[loop.index0] not in stored_definitions %}
            {{ get_create_index_sql(this, index_dict) }};
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}


{% macro analyze_new_table() -%}
    {#- Post-hook of every model (dbt_project.yml): `analyze` a table the build has just
        (re)created, in the model's transaction, so that the models built after it are
        planned with its statistics. Without them PostgreSQL guesses: on a year of 100,000
        customers int_identity__persons, planned before autovacuum had analyzed the
        sessions built a minute earlier, took a nested loop over 2 million persons and ran
        past the 30-minute statement timeout; with the statistics, 33 s. A table model is
        new at every build; an incremental one only when it has never been analyzed (a
        first build or a full refresh; after that autovacuum keeps up with its daily
        rows). Views have no statistics of their own. -#}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set materialized = config.get('materialized') -%}
    {%- if materialized == 'table' -%}
        analyze {{ this }}
    {%- elif materialized == 'incremental' -%}
        {%- set never_analyzed = run_query(
            "select last_analyze is null and last_autoanalyze is null from pg_stat_user_tables "
            ~ "where relid = '" ~ this ~ "'::regclass"
        ).columns[0].values() -%}
        {%- if never_analyzed and never_analyzed[0] -%}
            analyze {{ this }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
