{%- set contributions_model = ref('int_kpi__contributions') -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='month',
        post_hook=[
            "delete from {{ this }}
            where
                month < (select date_trunc('month', data_start_date)::date from {{ ref('int_lifecycle__as_of') }})
                or month > (select date_trunc('month', as_of_date)::date from {{ ref('int_lifecycle__as_of') }})",
            "{{ change_log_consume(ref('int_kpi__contributions')) }}",
        ],
    )
}}

{#- One row per calendar month (UTC; `month` is its first day) from the first month with
    data to the as-of month: every KPI of docs/kpis.md, the (monthly) ones included.

    Flows and rates are computed over the month's own events, never as averages of daily
    rates. Stocks (active_customers, repeat_purchase_rate, mrr, advocates) are the values at
    the end of the month: kpi_daily's value on its last day (the as-of date for the current
    month).

    Incremental, and equal to a full refresh; a run recomputes only the months new data
    touches:
    - web KPIs for the months touched by recent web deliveries (the window of kpi_daily);
    - every other flow, and the retention KPIs of persons (active at start and end, churn,
      CRR, purchase frequency, upsell), for the months of the contributions
      (int_kpi__contributions) changed since the last run, as its change log says
      (macros/change_log.sql); a changed order also for the months up to
      var('active_window_days') later, whose activity windows hold it; and for the as-of
      month (its end moves with the as-of date) and months new to the table;
    - the month-end stocks (from kpi_daily) and MRR movements (fct_mrr_movements, a full
      rebuild: the shop keeps no history of subscriptions to work incrementally from) for
      every month: a lookup of one row per month and per subscribing customer and month.
    - everything when the contributions were built in full (the log says so).
    Only changed months are written; the consumed changes are deleted (post-hook). -#}

{%- set kpi_columns = [
    'unique_visitors', 'sessions', 'new_contacts', 'ad_impressions', 'ad_clicks', 'ad_spend',
    'ad_ctr', 'bounce_rate', 'avg_engagement_time_s', 'email_open_rate', 'email_click_rate',
    'email_unsubscribe_rate', 'orders', 'revenue', 'refunds', 'net_revenue', 'aov',
    'new_customers', 'session_conversion_rate', 'cart_abandonment_rate', 'cac', 'roas',
    'active_customers', 'active_customers_at_start', 'churn_rate', 'customer_retention_rate',
    'repeat_purchase_rate', 'purchase_frequency', 'mrr', 'new_mrr', 'expansion_mrr',
    'contraction_mrr', 'churned_mrr', 'nps', 'csat', 'reward_redemption_rate', 'referrals',
    'upsell_rate', 'advocates', '_web_last_dt',
] -%}
{%- set web_columns = [
    'unique_visitors', 'sessions', 'bounce_rate', 'avg_engagement_time_s',
    'session_conversion_rate', 'cart_abandonment_rate', '_web_last_dt',
] -%}
{%- set flow_columns = kpi_flow_columns() + [
    'active_customers_at_start', 'churn_rate', 'customer_retention_rate', 'purchase_frequency',
    'upsell_rate',
] -%}
{%- set recompute_all = change_log_recompute_all(contributions_model) %}

with

as_of as (

    select * from {{ ref('int_lifecycle__as_of') }}

),

kpi_daily as (

    select * from {{ ref('kpi_daily') }}

),

web_events as not materialized (

    select * from {{ ref('int_web__events') }}

),

web_sessions as not materialized (

    select * from {{ ref('int_web__sessions') }}

),

contributions as not materialized (

    select * from {{ contributions_model }}

),

mrr_movements as (

    select * from {{ ref('fct_mrr_movements') }}

),

months as (

    select
        month_start::date as date_month,
        least(
            (month_start + interval '1 month - 1 day')::date, as_of.as_of_date
        ) as period_end_date
    from as_of
    cross join generate_series(
        date_trunc('month', as_of.data_start_date)::timestamp,
        date_trunc('month', as_of.as_of_date)::timestamp,
        interval '1 month'
    ) as month_start

),

---------- web KPIs: months to compute in this run

web_scope as (

    {% if is_incremental() %}
        select date_trunc('month', event_date)::date as date_month from web_events
        where _dt >= {{ incremental_cutoff('_web_last_dt') }}
        union
        select date_trunc('month', session_date)::date as date_month from web_sessions
        where _last_dt >= {{ incremental_cutoff('_web_last_dt') }}
        union
        select month as date_month from {{ this }}
        where _web_last_dt >= {{ incremental_cutoff('_web_last_dt') }}
    {% else %}
        select date_month from months
    {% endif %}

),

-- One range lookup per month in scope (lateral), so that the event_date index is used
-- whatever the planner guesses the scope's size to be: a run reads its months' events only.
web_event_months as (

    select
        web_scope.date_month,
        month_events.*
    from web_scope
    cross join lateral (
        select
            {{ kpi_web_event_measures() }}
        from web_events
        where
            web_events.event_date >= web_scope.date_month
            and web_events.event_date < (web_scope.date_month + interval '1 month')::date
    ) as month_events

),

web_session_months as (

    select
        web_scope.date_month,
        month_sessions.*
    from web_scope
    cross join lateral (
        select
            {{ kpi_web_session_measures() }}
        from web_sessions
        where
            web_sessions.session_date >= web_scope.date_month
            and web_sessions.session_date < (web_scope.date_month + interval '1 month')::date
    ) as month_sessions

),

web_recomputed as (

    select
        web_scope.date_month,
        coalesce(web_event_months.unique_visitors, 0) as unique_visitors,
        coalesce(web_event_months.sessions, 0) as sessions,
        web_session_months.bounced_sessions::numeric
        / nullif(web_session_months.page_view_sessions, 0) as bounce_rate,
        web_event_months.avg_engagement_time_s,
        web_event_months.purchase_sessions::numeric
        / nullif(web_event_months.sessions, 0) as session_conversion_rate,
        1 - web_session_months.cart_purchase_sessions::numeric
        / nullif(web_session_months.cart_sessions, 0) as cart_abandonment_rate,
        greatest(web_event_months.last_dt, web_session_months.last_dt) as _web_last_dt
    from web_scope
    left join web_event_months on web_scope.date_month = web_event_months.date_month
    left join web_session_months on web_scope.date_month = web_session_months.date_month

),

web_monthly as (

    select * from web_recomputed

    {% if is_incremental() %}
        union all

        select
            month as date_month,
            {{ web_columns | join(', ') }}
        from {{ this }}
        where month not in (select date_month from web_scope)
    {% endif %}

),

---------- other KPIs: months to compute in this run

{% if not recompute_all %}

    -- contributions changed since the last run, as the months they touch: their own, and
    -- for an order the months up to var('active_window_days') days after it, whose
    -- activity windows hold it
    changed_months as (

        select
            date_trunc('month', changes.date_day)::date as first_month,
            date_trunc(
                'month',
                changes.date_day
                + case when changes.contribution_type = 'order' then {{ var('active_window_days') }} else 0 end
            )::date as last_month
        from ({{ change_log_changes(contributions_model) }}) as changes

    ),

{% endif %}

month_scope as (

    {% if recompute_all %}
        select date_month from months
    {% else %}
        select months.date_month
        from changed_months
        inner join months
            on months.date_month between changed_months.first_month and changed_months.last_month

        union

        -- the as-of month (its end moves with the as-of date) and months new to the table
        select months.date_month
        from months
        cross join as_of
        where
            months.date_month = date_trunc('month', as_of.as_of_date)::date
            or months.date_month not in (select stored_months.month from {{ this }} as stored_months)
    {% endif %}

),

-- one range lookup per month in scope (lateral), through the date_day index
flow_sums as (

    select
        month_scope.date_month,
        month_contributions.*
    from month_scope
    cross join lateral (
        select
            {{ kpi_contribution_sums() }},
            count(distinct customer_key) filter (where contribution_type = 'order') as ordering_persons
        from contributions
        where
            contributions.date_day >= month_scope.date_month
            and contributions.date_day < (month_scope.date_month + interval '1 month')::date
    ) as month_contributions

),

---------- retention: persons active at the start (end of the previous day) and at the end

-- the months in scope with their activity window: valid orders from
-- var('active_window_days') days before the month to its end
scope_months as (

    select
        months.date_month,
        months.period_end_date,
        months.date_month - {{ var('active_window_days') }} as window_start_date,
        months.period_end_date - {{ var('active_window_days') }} as end_window_start_date
    from months
    inner join month_scope on months.date_month = month_scope.date_month

),

-- the valid orders of persons in each month's window, one range lookup per month (lateral)
scope_person_orders as (

    select
        scope_months.date_month,
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
        date_month,
        customer_key,
        bool_or(date_day < date_month) as is_active_at_start,
        bool_or(date_day > end_window_start_date) as is_active_at_end
    from scope_person_orders
    group by date_month, customer_key

),

activity_months as (

    select
        date_month,
        count(*) filter (where is_active_at_start) as active_at_start,
        count(*) filter (where is_active_at_end) as active_at_end,
        count(*) filter (where is_active_at_start and not is_active_at_end) as churned_persons
    from person_activity
    group by date_month

),

flow_recomputed as (

    select
        flow_sums.date_month,
        {{ kpi_flow_measures() }},

        ---------- retention and upsell
        coalesce(activity_months.active_at_start, 0)::bigint as active_customers_at_start,
        activity_months.churned_persons::numeric
        / nullif(activity_months.active_at_start, 0) as churn_rate,
        (coalesce(activity_months.active_at_end, 0) - coalesce(flow_sums.new_customers, 0))::numeric
        / nullif(activity_months.active_at_start, 0) as customer_retention_rate,
        flow_sums.person_orders::numeric / nullif(flow_sums.ordering_persons, 0) as purchase_frequency,
        flow_sums.upsell_orders::numeric / nullif(flow_sums.repeat_orders, 0) as upsell_rate

    from flow_sums
    left join activity_months on flow_sums.date_month = activity_months.date_month

),

flow_monthly as (

    select * from flow_recomputed

    {% if not recompute_all %}
        union all

        select
            month as date_month,
            {{ flow_columns | join(', ') }}
        from {{ this }}
        where month not in (select date_month from month_scope)
    {% endif %}

),

mrr_months as (

    select
        month as date_month,
        sum(new_mrr) as new_mrr,
        sum(expansion_mrr) as expansion_mrr,
        sum(contraction_mrr) as contraction_mrr,
        sum(churned_mrr) as churned_mrr
    from mrr_movements
    group by month

),

---------- stocks at the end of the month

month_end_states as (

    select
        months.date_month,
        kpi_daily.active_customers,
        kpi_daily.repeat_purchase_rate,
        kpi_daily.mrr,
        kpi_daily.advocates
    from months
    inner join kpi_daily on months.period_end_date = kpi_daily.date

),

---------- one row per month

monthly as (

    select
        months.date_month as month,

        ---------- awareness
        coalesce(web_monthly.unique_visitors, 0)::bigint as unique_visitors,
        coalesce(web_monthly.sessions, 0)::bigint as sessions,
        flow_monthly.new_contacts,
        flow_monthly.ad_impressions,
        flow_monthly.ad_clicks,
        flow_monthly.ad_spend,
        flow_monthly.ad_ctr,

        ---------- engagement
        web_monthly.bounce_rate,
        web_monthly.avg_engagement_time_s,
        flow_monthly.email_open_rate,
        flow_monthly.email_click_rate,
        flow_monthly.email_unsubscribe_rate,

        ---------- conversion
        flow_monthly.orders,
        flow_monthly.revenue,
        flow_monthly.refunds,
        flow_monthly.net_revenue,
        flow_monthly.aov,
        flow_monthly.new_customers,
        web_monthly.session_conversion_rate,
        web_monthly.cart_abandonment_rate,
        flow_monthly.cac,
        flow_monthly.roas,

        ---------- retention
        month_end_states.active_customers::bigint as active_customers,
        flow_monthly.active_customers_at_start,
        flow_monthly.churn_rate,
        flow_monthly.customer_retention_rate,
        month_end_states.repeat_purchase_rate,
        flow_monthly.purchase_frequency,
        month_end_states.mrr,
        coalesce(mrr_months.new_mrr, 0) as new_mrr,
        coalesce(mrr_months.expansion_mrr, 0) as expansion_mrr,
        coalesce(mrr_months.contraction_mrr, 0) as contraction_mrr,
        coalesce(mrr_months.churned_mrr, 0) as churned_mrr,

        ---------- loyalty
        flow_monthly.nps,
        flow_monthly.csat,
        flow_monthly.reward_redemption_rate,
        flow_monthly.referrals,
        flow_monthly.upsell_rate,
        month_end_states.advocates::bigint as advocates,

        ---------- metadata: latest web delivery summarised into this month
        web_monthly._web_last_dt

    from months
    left join web_monthly on months.date_month = web_monthly.date_month
    left join flow_monthly on months.date_month = flow_monthly.date_month
    left join mrr_months on months.date_month = mrr_months.date_month
    left join month_end_states on months.date_month = month_end_states.date_month

),

final as (

    select monthly.*
    from monthly
    {% if is_incremental() %}
        left join {{ this }} as previous_run on monthly.month = previous_run.month
        where
            monthly.month in (select date_month from web_scope)
            or previous_run.month is null
            or (
                {%- for column in kpi_columns %}
                    monthly.{{ column }}{{ ',' if not loop.last }}
                {%- endfor %}
            ) is distinct from (
                {%- for column in kpi_columns %}
                    previous_run.{{ column }}{{ ',' if not loop.last }}
                {%- endfor %}
            )
    {% endif %}

)

select * from final
