{%- set contributions_model = ref('int_kpi__contributions') -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='date',
        post_hook=[
            "delete from {{ this }}
            where
                date < (select data_start_date from {{ ref('int_lifecycle__as_of') }})
                or date > (select as_of_date from {{ ref('int_lifecycle__as_of') }})",
            "{{ change_log_consume(ref('int_kpi__contributions')) }}",
        ],
    )
}}

{#- One row per day (UTC) from the first date with data to the as-of date: every daily KPI
    of docs/kpis.md under its own name.

    Incremental, and equal to a full refresh; a run recomputes only the days new data
    touches:
    - Web KPIs (distinct counts over every event) only for the days that hold an event
      delivered within var('late_data_lookback_days') days of the latest delivery already
      summarised (`_web_last_dt`, the same window as int_web__events, moved back by
      var('recompute_from') after an older folder was re-delivered); other days keep their
      stored web KPIs, which no delivery changed.
    - Every other flow (contacts, ad spend, e-mail, orders, refunds, surveys, loyalty)
      only for the days of the contributions (int_kpi__contributions) changed since the
      last run, as its change log says (macros/change_log.sql), and for days new to the
      table.
    - Stocks (active customers, buyers, advocates, MRR) as running sums of their daily
      changes: a stored day's change is its stored stock minus the day before's, plus the
      logged changes of its contributions; a new day's is summed from its contributions.
      That is arithmetic over the table's own rows, not over history.
    - Everything when the contributions were built in full (the log says so) or the first
      day of data moved.
    Only the days whose row changed are written; days outside the data's range are deleted
    (post-hook), and so are the consumed changes. -#}

{%- set kpi_columns = [
    'unique_visitors', 'sessions', 'new_contacts', 'ad_impressions', 'ad_clicks', 'ad_spend',
    'ad_ctr', 'bounce_rate', 'avg_engagement_time_s', 'email_open_rate', 'email_click_rate',
    'email_unsubscribe_rate', 'orders', 'revenue', 'refunds', 'net_revenue', 'aov',
    'new_customers', 'session_conversion_rate', 'cart_abandonment_rate', 'cac', 'roas',
    'active_customers', 'buyers', 'repeat_buyers', 'repeat_purchase_rate', 'mrr', 'nps',
    'csat', 'reward_redemption_rate', 'referrals', 'advocates', '_web_last_dt',
] -%}
{%- set web_columns = [
    'unique_visitors', 'sessions', 'bounce_rate', 'avg_engagement_time_s',
    'session_conversion_rate', 'cart_abandonment_rate', '_web_last_dt',
] -%}
{%- set flow_columns = kpi_flow_columns() -%}
{%- do require_stored_columns(['buyers', 'repeat_buyers']) -%}
{#- stored stocks count the changes before the first day of data on that day: they hold
    only while it stays the same -#}
{%- set recompute_all = change_log_recompute_all(contributions_model)
    or first_stored_period_moved('date', "select data_start_date from " ~ ref('int_lifecycle__as_of')) %}

with

as_of as (

    select * from {{ ref('int_lifecycle__as_of') }}

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

spine as (

    select spine_day::date as date_day
    from as_of
    cross join generate_series(
        as_of.data_start_date::timestamp, as_of.as_of_date::timestamp, interval '1 day'
    ) as spine_day

),

---------- web KPIs: days to compute in this run

web_scope as (

    {% if is_incremental() %}
        select event_date as date_day from web_events
        where _dt >= {{ incremental_cutoff('_web_last_dt') }}
        union
        select session_date as date_day from web_sessions
        where _last_dt >= {{ incremental_cutoff('_web_last_dt') }}
        union
        -- days whose events may have vanished from a re-delivered folder
        select date as date_day from {{ this }}
        where _web_last_dt >= {{ incremental_cutoff('_web_last_dt') }}
    {% else %}
        select date_day from spine
    {% endif %}

),

-- One lookup per day in scope (lateral), so that the event_date index is used whatever
-- the planner guesses the scope's size to be: a run reads the events of its days only.
web_event_days as (

    select
        web_scope.date_day,
        day_events.*
    from web_scope
    cross join lateral (
        select
            {{ kpi_web_event_measures() }}
        from web_events
        where web_events.event_date = web_scope.date_day
    ) as day_events

),

web_session_days as (

    select
        web_scope.date_day,
        day_sessions.*
    from web_scope
    cross join lateral (
        select
            {{ kpi_web_session_measures() }}
        from web_sessions
        where web_sessions.session_date = web_scope.date_day
    ) as day_sessions

),

web_recomputed as (

    select
        web_scope.date_day,
        coalesce(web_event_days.unique_visitors, 0) as unique_visitors,
        coalesce(web_event_days.sessions, 0) as sessions,
        web_session_days.bounced_sessions::numeric
        / nullif(web_session_days.page_view_sessions, 0) as bounce_rate,
        web_event_days.avg_engagement_time_s,
        web_event_days.purchase_sessions::numeric
        / nullif(web_event_days.sessions, 0) as session_conversion_rate,
        1 - web_session_days.cart_purchase_sessions::numeric
        / nullif(web_session_days.cart_sessions, 0) as cart_abandonment_rate,
        greatest(web_event_days.last_dt, web_session_days.last_dt) as _web_last_dt
    from web_scope
    left join web_event_days on web_scope.date_day = web_event_days.date_day
    left join web_session_days on web_scope.date_day = web_session_days.date_day

),

web_daily as (

    select * from web_recomputed

    {% if is_incremental() %}
        union all

        select
            date as date_day,
            {{ web_columns | join(', ') }}
        from {{ this }}
        where date not in (select date_day from web_scope)
    {% endif %}

),


---------- other flows: days to compute in this run

{% if not recompute_all %}

    -- contributions changed since the last run: as they were (sign -1) and are (+1)
    changes as (

        {{ change_log_changes(contributions_model) }}

    ),

    stored_days as (

        select max(date) as last_stored_date from {{ this }}

    ),

{% endif %}

flow_scope as (

    {% if recompute_all %}
        select date_day from spine
    {% else %}
        select changes.date_day
        from changes
        inner join spine on changes.date_day = spine.date_day

        union

        -- days new to the table (the as-of date moved on)
        select spine.date_day
        from spine
        cross join stored_days
        where spine.date_day > stored_days.last_stored_date
    {% endif %}

),

-- one lookup per day in scope (lateral), through the date_day index
flow_sums as (

    select
        flow_scope.date_day,
        day_contributions.*
    from flow_scope
    cross join lateral (
        select
            {{ kpi_contribution_sums() }}
        from contributions
        where contributions.date_day = flow_scope.date_day
    ) as day_contributions

),

flow_recomputed as (

    select
        date_day,
        {{ kpi_flow_measures() }}
    from flow_sums

),

flow_daily as (

    select * from flow_recomputed

    {% if not recompute_all %}
        union all

        select
            date as date_day,
            {{ flow_columns | join(', ') }}
        from {{ this }}
        where date not in (select date_day from flow_scope)
    {% endif %}

),

---------- stocks at the end of the day, as running sums of their daily changes

{% if not recompute_all %}

    -- a stored day's change: its stored stock minus the day before's ...
    stored_stock_changes as (

        select
            date as date_day,
            active_customers - lag(active_customers, 1, 0::bigint) over stored_days_in_order as active_customers_delta,
            buyers - lag(buyers, 1, 0::bigint) over stored_days_in_order as buyers_delta,
            repeat_buyers - lag(repeat_buyers, 1, 0::bigint) over stored_days_in_order as repeat_buyers_delta,
            advocates - lag(advocates, 1, 0::bigint) over stored_days_in_order as advocates_delta,
            mrr - lag(mrr, 1, 0::numeric) over stored_days_in_order as mrr_delta
        from {{ this }}
        window stored_days_in_order as (order by date)

    ),

    -- ... plus the logged changes of its contributions (changes before the first day of
    -- the spine count from its first day)
    logged_stock_changes as (

        select
            greatest(changes.date_day, as_of.data_start_date) as date_day,
            sum(changes.sign * changes.active_customers_delta) as active_customers_delta,
            sum(changes.sign * changes.buyers_delta) as buyers_delta,
            sum(changes.sign * changes.repeat_buyers_delta) as repeat_buyers_delta,
            sum(changes.sign * changes.advocates_delta) as advocates_delta,
            sum(changes.sign * changes.mrr_delta) as mrr_delta
        from changes
        cross join as_of
        group by greatest(changes.date_day, as_of.data_start_date)

    ),

{% endif %}

stock_changes as (

    {% if recompute_all %}
        -- changes before the first day of the spine count from its first day
        select
            greatest(contributions.date_day, as_of.data_start_date) as date_day,
            sum(contributions.active_customers_delta) as active_customers_delta,
            sum(contributions.buyers_delta) as buyers_delta,
            sum(contributions.repeat_buyers_delta) as repeat_buyers_delta,
            sum(contributions.advocates_delta) as advocates_delta,
            sum(contributions.mrr_delta) as mrr_delta
        from contributions
        cross join as_of
        where contributions.date_day <= as_of.as_of_date
        group by greatest(contributions.date_day, as_of.data_start_date)
    {% else %}
        select
            stored_day.date_day,
            stored_day.active_customers_delta
            + coalesce(logged_day.active_customers_delta, 0) as active_customers_delta,
            stored_day.buyers_delta + coalesce(logged_day.buyers_delta, 0) as buyers_delta,
            stored_day.repeat_buyers_delta
            + coalesce(logged_day.repeat_buyers_delta, 0) as repeat_buyers_delta,
            stored_day.advocates_delta + coalesce(logged_day.advocates_delta, 0) as advocates_delta,
            stored_day.mrr_delta + coalesce(logged_day.mrr_delta, 0) as mrr_delta
        from stored_stock_changes as stored_day
        left join logged_stock_changes as logged_day on stored_day.date_day = logged_day.date_day

        union all

        -- a day new to the table: summed from its contributions
        select
            contributions.date_day,
            sum(contributions.active_customers_delta) as active_customers_delta,
            sum(contributions.buyers_delta) as buyers_delta,
            sum(contributions.repeat_buyers_delta) as repeat_buyers_delta,
            sum(contributions.advocates_delta) as advocates_delta,
            sum(contributions.mrr_delta) as mrr_delta
        from contributions
        cross join stored_days
        cross join as_of
        where
            contributions.date_day > stored_days.last_stored_date
            and contributions.date_day <= as_of.as_of_date
        group by contributions.date_day
    {% endif %}

),

stock_daily as (

    select
        spine.date_day,
        sum(coalesce(stock_changes.active_customers_delta, 0)) over running as active_customers,
        sum(coalesce(stock_changes.buyers_delta, 0)) over running as buyers,
        sum(coalesce(stock_changes.repeat_buyers_delta, 0)) over running as repeat_buyers,
        sum(coalesce(stock_changes.advocates_delta, 0)) over running as advocates,
        sum(coalesce(stock_changes.mrr_delta, 0)) over running as mrr
    from spine
    left join stock_changes on spine.date_day = stock_changes.date_day
    window running as (order by spine.date_day rows between unbounded preceding and current row)

),

---------- one row per day

daily as (

    select
        spine.date_day as date,

        ---------- awareness
        coalesce(web_daily.unique_visitors, 0)::bigint as unique_visitors,
        coalesce(web_daily.sessions, 0)::bigint as sessions,
        flow_daily.new_contacts,
        flow_daily.ad_impressions,
        flow_daily.ad_clicks,
        flow_daily.ad_spend,
        flow_daily.ad_ctr,

        ---------- engagement
        web_daily.bounce_rate,
        web_daily.avg_engagement_time_s,
        flow_daily.email_open_rate,
        flow_daily.email_click_rate,
        flow_daily.email_unsubscribe_rate,

        ---------- conversion
        flow_daily.orders,
        flow_daily.revenue,
        flow_daily.refunds,
        flow_daily.net_revenue,
        flow_daily.aov,
        flow_daily.new_customers,
        web_daily.session_conversion_rate,
        web_daily.cart_abandonment_rate,
        flow_daily.cac,
        flow_daily.roas,

        ---------- retention
        stock_daily.active_customers::bigint as active_customers,
        stock_daily.buyers::bigint as buyers,
        stock_daily.repeat_buyers::bigint as repeat_buyers,
        stock_daily.repeat_buyers::numeric / nullif(stock_daily.buyers, 0) as repeat_purchase_rate,
        stock_daily.mrr,

        ---------- loyalty
        flow_daily.nps,
        flow_daily.csat,
        flow_daily.reward_redemption_rate,
        flow_daily.referrals,
        stock_daily.advocates::bigint as advocates,

        ---------- metadata: latest web delivery summarised into this day
        web_daily._web_last_dt

    from spine
    left join web_daily on spine.date_day = web_daily.date_day
    left join flow_daily on spine.date_day = flow_daily.date_day
    left join stock_daily on spine.date_day = stock_daily.date_day

),

final as (

    select daily.*
    from daily
    {% if is_incremental() %}
        left join {{ this }} as previous_run on daily.date = previous_run.date
        where
            daily.date in (select date_day from web_scope)
            or previous_run.date is null
            or (
                {%- for column in kpi_columns %}
                    daily.{{ column }}{{ ',' if not loop.last }}
                {%- endfor %}
            ) is distinct from (
                {%- for column in kpi_columns %}
                    previous_run.{{ column }}{{ ',' if not loop.last }}
                {%- endfor %}
            )
    {% endif %}

)

select * from final
