{#- The KPI marts, one macro for both grains: kpi_daily is `kpi_mart('day')`, kpi_monthly
    `kpi_mart('month')`. Their KPI columns, and how each is computed from the measures of a
    period, come from the KPI registry (dbt_project/kpi_registry.yml, generated into
    kpi_registry()); this macro computes the measures, family by family, and places the
    columns.

    One row per period from the first period with data to the as-of period (the build's
    planned as-of date: quiet days still get their row). Families:
    - web: distinct counts over the web events and sessions of the period, which
      int_kpi__web_days and int_kpi__web_months keep (kpi_web_measures, below);
    - flow: sums of int_kpi__contributions over the period (paid_attribution: the credits
      of var('kpi_attribution_model') to the channels with ad spend in the period); monthly
      also the persons active at the start and the end of the month (valid orders in the
      active window);
    - stock: values at the end of the period: daily, running sums of the contributions'
      daily changes; monthly, kpi_daily's values on the month's last day (and on the day
      before it, for stocks at the start);
    - mrr (monthly): sums over fct_mrr_movements;
    - derived: KPIs of other KPIs, computed last.

    Incremental, and equal to a full refresh; a run recomputes only what changes can touch:
    - web KPIs from the web measures of every period (a few hundred rows, kept up to date
      by int_kpi__web_days and int_kpi__web_months);
    - flows for the periods of the contributions changed since the last run, as the change
      log of int_kpi__contributions says (macros/change_log.sql), and for periods new to
      the table; monthly, a changed order also for the months up to var('active_window_days')
      days later (their activity windows hold it), and always the as-of month;
    - daily stocks as running sums of their daily changes: a stored day's change is its
      stored stock minus the day before's, plus the logged changes of its contributions;
      monthly stocks and MRR movements for every month (one lookup per month);
    - everything when the contributions were built in full, the first period of data
      moved, or the table lacks a column of the registry (a KPI was added).
    Only periods whose row changed are written; periods outside the data's range are
    deleted (the models' post-hooks), and so are the consumed changes. -#}

{% macro kpi_mart(grain) -%}
{%- set registry = kpi_registry() -%}
{%- set kpis = registry.grains[grain] -%}
{%- set contributions_model = ref('int_kpi__contributions') -%}
{%- set key = 'date' if grain == 'day' else 'month' -%}
{%- set flow_columns = kpis.flow | map(attribute=0) | list -%}
{%- set stored_columns = kpis.columns + ['_web_last_dt'] -%}
{%- set required_columns = stored_columns + (['is_complete'] if grain == 'month' else []) -%}
{#- stored stocks count the changes before the first period of data in that period: they
    hold only while it stays the same -#}
{%- set first_period_sql = "select " ~ (
    "data_start_date" if grain == 'day' else "date_trunc('month', data_start_date)::date"
) ~ " from " ~ ref('int_lifecycle__as_of') -%}
{%- set recompute_all = change_log_recompute_all(contributions_model)
    or first_stored_period_moved(key, first_period_sql)
    or stored_columns_missing(required_columns) %}

with

as_of as (

    select * from {{ ref('int_lifecycle__as_of') }}

),

web_measures as (

    {% if grain == 'day' -%}
        select * from {{ ref('int_kpi__web_days') }}
    {%- else -%}
        select * from {{ ref('int_kpi__web_months') }}
    {%- endif %}

),

contributions as not materialized (

    select * from {{ contributions_model }}

),

{% if grain == 'month' %}

    kpi_daily as (

        select * from {{ ref('kpi_daily') }}

    ),

    mrr_movements as (

        select * from {{ ref('fct_mrr_movements') }}

    ),

{% endif %}

-- the periods: [period_start, period_end] (the as-of date ends the last one)
periods as (

    select
        period_start::date as period,
        period_start::date as period_start_date,
        {% if grain == 'day' -%}
            period_start::date as period_end_date
        {%- else -%}
            least((period_start + interval '1 month - 1 day')::date, as_of.as_of_date) as period_end_date
        {%- endif %}
    from as_of
    cross join generate_series(
        {{ period_of('as_of.data_start_date', grain) }}::timestamp,
        {{ period_of('as_of.as_of_date', grain) }}::timestamp,
        interval '1 {{ grain }}'
    ) as period_start

),

---------- web: from the web measures of each period (int_kpi__web_days, _months)

-- every period: one without a row has no web events or sessions (counts 0)
web_kpis as (

    select
        periods.period,
        {%- for name, expression in kpis.web %}
            {{ expression }} as {{ name }},
        {%- endfor %}
        web_measures._web_last_dt
    from periods
    left join web_measures on periods.period = web_measures.{{ key }}

),

---------- flows: periods to compute in this run

{% if not recompute_all %}

    -- contributions changed since the last run: as they were (sign -1) and are (+1)
    changes as (

        {{ change_log_changes(contributions_model) }}

    ),

{% endif %}

flow_scope as (

    {% if recompute_all %}
        select period from periods
    {% else %}
        select periods.period
        from changes
        inner join periods
            on periods.period between {{ period_of('changes.date_day', grain) }}
            {%- if grain == 'day' %} and {{ period_of('changes.date_day', grain) }}
            {%- else %}
                and {{ period_of(
                    "changes.date_day + case when changes.contribution_type = 'order' then "
                    ~ var('active_window_days') ~ " else 0 end", grain) }}
            {%- endif %}

        union

        -- periods new to the table (the as-of date moved on){{ ', and the as-of month (its end moves with it)' if grain == 'month' }}
        select periods.period
        from periods
        cross join as_of
        where
            periods.period not in (select stored.{{ key }} from {{ this }} as stored)
            {%- if grain == 'month' %}
                or periods.period = {{ period_of('as_of.as_of_date', grain) }}
            {%- endif %}
    {% endif %}

),

-- one lookup per period in scope (lateral), through the date_day index; up to the period's
-- end (the as-of date ends the last one: activity ends are dated ahead, and have not
-- happened yet)
flow_sums as (

    select
        flow_scope.period,
        period_contributions.*
    from flow_scope
    inner join periods on flow_scope.period = periods.period
    cross join lateral (
        select
            {%- for name, type in registry.measures.contribution %}
                sum(contributions.{{ name }}) as {{ name }},
            {%- endfor %}
            {%- for name in registry.measures.paid_attribution %}
                sum(contributions.credited_revenue) filter (
                    where
                        contributions.contribution_type = 'attribution_credit'
                        and contributions.attribution_model = '{{ var('kpi_attribution_model') }}'
                        and contributions.channel in (
                            select spend.channel
                            from contributions as spend
                            where
                                spend.contribution_type = 'ad_spend'
                                and spend.ad_spend > 0
                                and {{ in_period('spend.date_day', 'flow_scope.period', grain) }}
                                and spend.date_day <= periods.period_end_date
                        )
                ) as {{ name }},
            {%- endfor %}
            count(distinct contributions.customer_key) filter (
                where contributions.contribution_type = 'order'
            ) as ordering_persons
        from contributions
        where
            {{ in_period('contributions.date_day', 'flow_scope.period', grain) }}
            and contributions.date_day <= periods.period_end_date
    ) as period_contributions

),

{% if grain == 'month' %}

    ---------- persons active at the start (end of the previous day) and at the end

    -- the months in scope with their activity window: valid orders from
    -- var('active_window_days') days before the month to its end
    scope_months as (

        select
            periods.period,
            periods.period_end_date,
            periods.period - {{ var('active_window_days') }} as window_start_date,
            periods.period_end_date - {{ var('active_window_days') }} as end_window_start_date
        from periods
        inner join flow_scope on periods.period = flow_scope.period

    ),

    -- the valid orders of persons in each month's window, one range lookup per month (lateral)
    scope_person_orders as (

        select
            scope_months.period,
            scope_months.end_window_start_date,
            person_orders.customer_key,
            person_orders.date_day
        from scope_months
        cross join lateral (
            select
                contributions.customer_key,
                contributions.date_day
            from contributions
            where
                contributions.contribution_type = 'order'
                and contributions.customer_key is not null
                and contributions.date_day >= scope_months.window_start_date
                and contributions.date_day <= scope_months.period_end_date
        ) as person_orders

    ),

    person_activity as (

        select
            period,
            customer_key,
            bool_or(date_day < period) as is_active_at_start,
            bool_or(date_day > end_window_start_date) as is_active_at_end
        from scope_person_orders
        group by period, customer_key

    ),

    activity_measures as (

        select
            period,
            count(*) filter (where is_active_at_start) as active_at_start,
            count(*) filter (where is_active_at_end) as active_at_end,
            count(*) filter (where is_active_at_start and not is_active_at_end) as churned_persons
        from person_activity
        group by period

    ),

{% endif %}

flow_measures as (

    select
        flow_sums.*
        {%- if grain == 'month' %},
            activity_measures.active_at_start,
            activity_measures.active_at_end,
            activity_measures.churned_persons
        {%- endif %}
    from flow_sums
    {% if grain == 'month' %}
        left join activity_measures on flow_sums.period = activity_measures.period
    {% endif %}

),

flow_kpis as (

    select
        period
        {%- for name, expression in kpis.flow %},
            {{ expression }} as {{ name }}
        {%- endfor %}
    from flow_measures

    {% if not recompute_all %}
        union all

        select
            {{ key }} as period
            {%- for column in flow_columns %},
                {{ column }}
            {%- endfor %}
        from {{ this }}
        where {{ key }} not in (select flow_scope.period from flow_scope)
    {% endif %}

),

---------- stocks at the end of the period

{% if grain == 'day' %}

    {% if not recompute_all %}

        stored_days as (

            select max(date) as last_stored_date from {{ this }}

        ),

        -- a stored day's change: its stored stock minus the day before's ...
        stored_stock_changes as (

            select
                date as date_day
                {%- for name, delta, type in registry.measures.stock %},
                    {{ name }} - lag({{ name }}, 1, 0::{{ type }}) over stored_days_in_order as {{ delta }}
                {%- endfor %}
            from {{ this }}
            window stored_days_in_order as (order by date)

        ),

        -- ... plus the logged changes of its contributions (changes before the first day of
        -- the spine count from its first day)
        logged_stock_changes as (

            select
                greatest(changes.date_day, as_of.data_start_date) as date_day
                {%- for name, delta, type in registry.measures.stock %},
                    sum(changes.sign * changes.{{ delta }}) as {{ delta }}
                {%- endfor %}
            from changes
            cross join as_of
            group by greatest(changes.date_day, as_of.data_start_date)

        ),

    {% endif %}

    stock_changes as (

        {% if recompute_all %}
            -- changes before the first day of the spine count from its first day
            select
                greatest(contributions.date_day, as_of.data_start_date) as date_day
                {%- for name, delta, type in registry.measures.stock %},
                    sum(contributions.{{ delta }}) as {{ delta }}
                {%- endfor %}
            from contributions
            cross join as_of
            where contributions.date_day <= as_of.as_of_date
            group by greatest(contributions.date_day, as_of.data_start_date)
        {% else %}
            select
                stored_day.date_day
                {%- for name, delta, type in registry.measures.stock %},
                    stored_day.{{ delta }} + coalesce(logged_day.{{ delta }}, 0) as {{ delta }}
                {%- endfor %}
            from stored_stock_changes as stored_day
            left join logged_stock_changes as logged_day on stored_day.date_day = logged_day.date_day

            union all

            -- a day new to the table: summed from its contributions
            select
                contributions.date_day
                {%- for name, delta, type in registry.measures.stock %},
                    sum(contributions.{{ delta }}) as {{ delta }}
                {%- endfor %}
            from contributions
            cross join stored_days
            cross join as_of
            where
                contributions.date_day > stored_days.last_stored_date
                and contributions.date_day <= as_of.as_of_date
            group by contributions.date_day
        {% endif %}

    ),

    stock_measures as (

        select
            periods.period
            {%- for name, delta, type in registry.measures.stock %},
                sum(coalesce(stock_changes.{{ delta }}, 0)) over running as {{ name }}
            {%- endfor %}
        from periods
        left join stock_changes on periods.period = stock_changes.date_day
        window running as (order by periods.period rows between unbounded preceding and current row)

    ),

{% else %}

    -- kpi_daily's stocks on the month's last day, and on the day before it starts
    stock_measures as (

        select
            periods.period
            {%- for name, delta, type in registry.measures.stock %},
                period_end.{{ name }},
                period_start.{{ name }} as {{ name }}__at_start
            {%- endfor %}
        from periods
        left join kpi_daily as period_end on periods.period_end_date = period_end.date
        left join kpi_daily as period_start on periods.period_start_date - 1 = period_start.date

    ),

{% endif %}

stock_kpis as (

    select
        period
        {%- for name, expression in kpis.stock %},
            {{ expression }} as {{ name }}
        {%- endfor %}
    from stock_measures

),

{% if grain == 'month' %}

    mrr_measures as (

        select
            month as period
            {%- for name in registry.measures.mrr %},
                sum({{ name }}) as {{ name }}
            {%- endfor %}
        from mrr_movements
        group by month

    ),

    mrr_kpis as (

        select
            periods.period
            {%- for name, expression in kpis.mrr %},
                {{ expression }} as {{ name }}
            {%- endfor %}
        from periods
        left join mrr_measures on periods.period = mrr_measures.period

    ),

{% endif %}

---------- one row per period

combined as (

    select
        periods.period
        {%- for name, expression in kpis.web + kpis.flow + kpis.stock + (kpis.mrr if grain == 'month' else []) %},
            {{ name }}
        {%- endfor %},
        web_kpis._web_last_dt
    from periods
    left join web_kpis using (period)
    left join flow_kpis using (period)
    left join stock_kpis using (period)
    {% if grain == 'month' %}
        left join mrr_kpis using (period)
    {% endif %}

),

{%- set derived = dict(kpis.derived) %}

kpis as (

    select
        combined.period as {{ key }},
        {%- if grain == 'month' %}
            -- the month of the as-of date is partial, unless the as-of date is its last day
            (combined.period + interval '1 month - 1 day')::date <= as_of.as_of_date as is_complete,
        {%- endif %}
        {%- for name in kpis.columns %}
            {{ derived[name] if name in derived else 'combined.' ~ name }} as {{ name }},
        {%- endfor %}
        combined._web_last_dt
    from combined
    cross join as_of

),

final as (

    select kpis.*
    from kpis
    {% if is_incremental() %}
        left join {{ this }} as previous_run on kpis.{{ key }} = previous_run.{{ key }}
        where
            previous_run.{{ key }} is null
            or (
                {%- for column in stored_columns %}
                    kpis.{{ column }}{{ ',' if not loop.last }}
                {%- endfor %}
            ) is distinct from (
                {%- for column in stored_columns %}
                    previous_run.{{ column }}{{ ',' if not loop.last }}
                {%- endfor %}
            )
            {%- if grain == 'month' %}
                or kpis.is_complete is distinct from previous_run.is_complete
            {%- endif %}
    {% endif %}

)

select * from final
{%- endmacro %}


{% macro period_of(date_expression, grain) -%}
    {#- The period (a day, or a month's first day) of a date expression. -#}
    {%- if grain == 'day' -%}
        ({{ date_expression }})::date
    {%- else -%}
        date_trunc('month', {{ date_expression }})::date
    {%- endif -%}
{%- endmacro %}


{% macro in_period(date_column, period, grain) -%}
    {#- SQL condition: the date column falls in the period (a range, so that an index on the
        column serves it). -#}
    {%- if grain == 'day' -%}
        {{ date_column }} = {{ period }}
    {%- else -%}
        {{ date_column }} >= {{ period }} and {{ date_column }} < ({{ period }} + interval '1 month')::date
    {%- endif -%}
{%- endmacro %}


{% macro stored_columns_missing(columns) -%}
    {#- At run time, for an incremental model (this): whether the stored table lacks one of
        these columns (a KPI was added to the registry): the run then recomputes every
        period, and the new column is added (on_schema_change). -#}
    {%- if not execute or not is_incremental() or this is string -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set stored = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
    {{- return(columns | reject('in', stored) | list | length > 0) -}}
{%- endmacro %}


{% macro read_periods_by_bitmap() -%}
    {#- Pre-hook of int_kpi__web_days and int_kpi__web_months, for their transaction: no
        plain index scans, so that a period's events and sessions are read by bitmap scans,
        in the table's order and with read-ahead (effective_io_concurrency), instead of row
        by row in the index's order. At a year, from disk: a month's 3.3 million events
        and 600,000 sessions in ~13 s instead of ~36 s. -#}
    set local enable_indexscan = off
{%- endmacro %}


{% macro kpi_web_measures(grain) -%}
{#- The web measures of each period (a day or a month) that holds a web event or session:
    int_kpi__web_days is `kpi_web_measures('day')`, int_kpi__web_months
    `kpi_web_measures('month')`; kpi_daily and kpi_monthly compute their web KPIs from
    them (a period without a row has none: counts 0). Distinct counts over every event of
    the period (kpi_web_event_measures, kpi_web_session_measures), kept apart from the
    KPI marts so that the build computes them beside the person-grain models instead of
    after them: a month's distinct visitors read every event of the month (~20 s a day at
    a year of ~100,000 events a day).
    Incremental (strategy replace_window on `_web_last_dt`): a run recomputes the periods
    holding an event or session delivered in the window of the web models
    (incremental_cutoff), and those whose stored row says they held one (its events may
    have vanished from a re-delivered folder: a period left without any loses its row).
    Equal to a full refresh. A table that lacks one of the measures (one was added) is
    recomputed for every period. -#}
{%- set key = 'date' if grain == 'day' else 'month' -%}
{%- set event_measures = kpi_web_event_measures() -%}
{%- set session_measures = kpi_web_session_measures() -%}
{%- set recompute_all = stored_columns_missing(
    [key] + (event_measures + session_measures) | map(attribute=0) | list + ['_web_last_dt']
) %}

with

web_events as not materialized (

    select * from {{ ref('int_web__events') }}

),

web_sessions as not materialized (

    select * from {{ ref('int_web__sessions') }}

),

web_scope as (

    {% if is_incremental() and not recompute_all %}
        select {{ period_of('event_date', grain) }} as period from web_events
        where _dt >= {{ incremental_cutoff('_web_last_dt') }}

        union

        select {{ period_of('session_date', grain) }} as period from web_sessions
        where _last_dt >= {{ incremental_cutoff('_web_last_dt') }}

        union

        select {{ key }} as period from {{ this }}
        where _web_last_dt >= {{ incremental_cutoff('_web_last_dt') }}
    {% else %}
        -- every period from the first event or session to the last (their first and last
        -- dates come from the date indexes; a scan for the distinct ones would read them all)
        select period_start::date as period
        from generate_series(
            {{ period_of(
                "least((select min(event_date) from web_events), (select min(session_date) from web_sessions))",
                grain) }}::timestamp,
            {{ period_of(
                "greatest((select max(event_date) from web_events), (select max(session_date) from web_sessions))",
                grain) }}::timestamp,
            interval '1 {{ grain }}'
        ) as period_start
    {% endif %}

),

-- One lookup per period in scope (lateral), so that the event_date index is used whatever
-- the planner guesses the scope's size to be: a run reads its periods' events only.
web_event_periods as (

    select
        web_scope.period,
        period_events.*
    from web_scope
    cross join lateral (
        select
            {%- for name, aggregate in event_measures %}
                {{ aggregate }} as {{ name }},
            {%- endfor %}
            max(_dt) as last_dt
        from web_events
        where {{ in_period('web_events.event_date', 'web_scope.period', grain) }}
    ) as period_events

),

web_session_periods as (

    select
        web_scope.period,
        period_sessions.*
    from web_scope
    cross join lateral (
        select
            {%- for name, aggregate in session_measures %}
                {{ aggregate }} as {{ name }},
            {%- endfor %}
            max(_last_dt) as last_dt
        from web_sessions
        where {{ in_period('web_sessions.session_date', 'web_scope.period', grain) }}
    ) as period_sessions

),

final as (

    select
        web_scope.period as {{ key }},
        {%- for name, _ in event_measures %}
            web_event_periods.{{ name }},
        {%- endfor %}
        {%- for name, _ in session_measures %}
            web_session_periods.{{ name }},
        {%- endfor %}
        greatest(web_event_periods.last_dt, web_session_periods.last_dt) as _web_last_dt
    from web_scope
    inner join web_event_periods on web_scope.period = web_event_periods.period
    inner join web_session_periods on web_scope.period = web_session_periods.period
    -- a period whose events and sessions are gone has no row (replace_window deletes it)
    where web_event_periods.last_dt is not null or web_session_periods.last_dt is not null

)

select * from final
{%- endmacro %}
