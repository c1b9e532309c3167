{#- Measures of the web KPIs, kept by int_kpi__web_days and int_kpi__web_months
    (kpi_web_measures): (name, aggregate) over the web events, or the sessions, of one day
    or one month. -#}

{% macro kpi_web_event_measures() -%}
    {{- return([
        ('unique_visitors', "count(distinct anonymous_id) filter (where event_name = 'page_view')"),
        ('sessions', "count(distinct session_id)"),
        ('purchase_sessions', "count(distinct session_id) filter (where event_name = 'purchase')"),
        ('avg_engagement_time_s', "avg(engagement_time_s) filter (where event_name = 'page_view')"),
    ]) -}}
{%- endmacro %}


{% macro kpi_web_session_measures() -%}
    {{- return([
        ('page_view_sessions', "count(*) filter (where page_views > 0)"),
        ('bounced_sessions', "count(*) filter (where is_bounce)"),
        ('cart_sessions', "count(*) filter (where has_add_to_cart)"),
        ('cart_purchase_sessions', "count(*) filter (where has_add_to_cart and has_purchase)"),
    ]) -}}
{%- endmacro %}


{#- Columns of int_kpi__contributions, in order: (name, type). The KPI marts sum the
    measures (dbt_project/kpi_registry.yml, `from: contribution`) by day or month; a
    contribution fills the ones its source feeds and leaves the others NULL. The other
    columns say what it is, and feed the marts that read single contributions
    (channel_attribution, cohort_retention) and the stocks (the `_delta` columns). -#}

{% macro kpi_contribution_columns() -%}
    {%- set columns = [
        ('contribution_id', 'text'), ('contribution_type', 'text'), ('date_day', 'date'),
        ('customer_key', 'text'), ('shop_customer_id', 'text'), ('channel', 'text'),
        ('attribution_model', 'text'),
    ] -%}
    {%- for name, type in kpi_registry().measures.contribution -%}
        {%- do columns.append((name, type)) -%}
    {%- endfor -%}
    {%- for name, delta, type in kpi_registry().measures.stock -%}
        {%- do columns.append((delta, type)) -%}
    {%- endfor -%}
    {%- do columns.extend([
        ('cohort_month', 'date'), ('first_order_of_month', 'integer'), ('order_net_revenue', 'numeric'),
        ('credited_conversions', 'numeric'), ('credited_revenue', 'numeric'), ('_last_dt', 'date'),
    ]) -%}
    {{- return(columns) -}}
{%- endmacro %}


{% macro kpi_contribution(values) -%}
    {#- The select list of one kind of contribution: `values` maps column names to SQL
        expressions; every other column is NULL. -#}
    {%- for name, type in kpi_contribution_columns() %}
        ({{ values.get(name, 'null') }})::{{ type }} as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}


{% macro first_stored_period_moved(period_column, first_period_sql) -%}
    {#- At run time, for an incremental model (this) whose stored rows carry running sums
        from its first period: whether that first stored period (min of period_column)
        differs from the first period of the data (the scalar query first_period_sql). -#}
    {%- if not execute or not is_incremental() -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set result = run_query(
        "select (select min(" ~ period_column ~ ") from " ~ this ~ ") is distinct from ("
        ~ first_period_sql ~ ")"
    ) -%}
    {{- return(result.columns[0].values()[0]) -}}
{%- endmacro %}


{% macro require_stored_columns(columns) -%}
    {#- At run time, for an incremental model (this) whose logic reads its own stored
        columns: fail with a clear message if the stored table lacks one of them (it was
        built by an older version of the project). -#}
    {#- (in a unit test, this is the name of its fixture: nothing to check) -#}
    {%- if execute and is_incremental() and this is not string -%}
        {%- set stored = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
        {%- for column in columns if column not in stored -%}
            {{ exceptions.raise_compiler_error(
                this ~ " has no column " ~ column ~ ": it was built by an older version of the project. "
                ~ "Rebuild it once with `.venv/bin/lw dbt build --full-refresh --select " ~ this.identifier ~ "+` "
                ~ "(README: after upgrading)") }}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}


{% macro channel_changed_months(contributions_model) -%}
    {#- SQL: the months (changed_key) of the attribution credits and ad spend lines changed
        since the consuming model (this, channel_attribution) last ran, as they were and are. -#}
    {{ change_log_changed_keys(
        contributions_model,
        "date_trunc('month', date_day)::date",
        "contribution_type in ('attribution_credit', 'ad_spend')",
    ) }}
{%- endmacro %}
