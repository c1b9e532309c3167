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
        ],
    )
}}

{#- One row per day (UTC) from the first date with data to the as-of date: every daily KPI
    of docs/kpis.md under its own name.

    Incremental, and equal to a full refresh:
    - Web KPIs are the expensive part (distinct counts over every event). A run recomputes
      them only for the days that hold an event delivered within var('late_data_lookback_days')
      days of the latest delivery already summarised (`_web_last_dt`, the same window as
      int_web__events, moved back by var('recompute_from') after an older folder was
      re-delivered); other days keep their stored web KPIs, which no delivery changed.
    - Every other KPI depends on history (an order's status changes, an email is opened
      days later, identities merge, active customers look back 180 days) and is cheap: it
      is recomputed for every day, and only the days whose row changed are written.
    - Days outside the data's range are deleted (post-hook). -#}

{%- set kpi_columns = [
    'unique_visitors', 'sessions', 'new_contacts', 'ad_impressions', 'ad_clicks', 'ad_spend',
    'ad_ctr', 'bounce_rate', 'avg_engagement_time_s', 'email_open_rate', 'email_click_rate',
    'email_unsubscribe_rate', 'orders', 'revenue', 'refunds', 'net_revenue', 'aov',
    'new_customers', 'session_conversion_rate', 'cart_abandonment_rate', 'cac', 'roas',
    'active_customers', 'repeat_purchase_rate', 'mrr', 'nps', 'csat',
    'reward_redemption_rate', 'referrals', 'advocates', '_web_last_dt',
] -%}
{%- set web_columns = [
    'unique_visitors', 'sessions', 'bounce_rate', 'avg_engagement_time_s',
    'session_conversion_rate', 'cart_abandonment_rate', '_web_last_dt',
] -%}

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

contacts as (

    select * from {{ ref('stg_crm__contacts') }}

),

ad_spends as (

    select * from {{ ref('stg_marketing__ad_spends') }}

),

email_deliveries as (

    select * from {{ ref('int_lifecycle__email_deliveries') }}

),

orders as (

    select * from {{ ref('int_orders__orders') }}

),

refunds as (

    select * from {{ ref('int_orders__refunds') }}

),

attribution_credits as (

    select * from {{ ref('int_lifecycle__attribution_credits') }}

),

subscriptions as (

    select * from {{ ref('stg_shop__subscriptions') }}

),

survey_responses as (

    select * from {{ ref('stg_crm__survey_responses') }}

),

loyalty_events as (

    select * from {{ ref('stg_crm__loyalty_events') }}

),

stage_intervals as (

    select * from {{ ref('int_lifecycle__stage_intervals') }}

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

---------- flows of the day

contact_days as (

    select
        created_date as date_day,
        count(*) as new_contacts
    from contacts
    group by created_date

),

ad_days as (

    select
        spend_date as date_day,
        sum(impressions) as ad_impressions,
        sum(clicks) as ad_clicks,
        sum(spend_reporting) as ad_spend
    from ad_spends
    group by spend_date

),

email_days as (

    select
        delivered_date as date_day,
        count(*) as delivered_pairs,
        count(*) filter (where was_opened) as opened_pairs,
        count(*) filter (where was_clicked) as clicked_pairs,
        count(*) filter (where was_unsubscribed) as unsubscribed_pairs
    from email_deliveries
    group by delivered_date

),

order_days as (

    select
        order_date as date_day,
        count(*) as orders,
        sum(revenue) as revenue,
        count(*) filter (where valid_order_number = 1) as new_customers
    from orders
    where is_valid
    group by order_date

),

refund_days as (

    select
        refund_date as date_day,
        sum(amount_reporting) as refunds
    from refunds
    group by refund_date

),

-- ROAS numerator: revenue of conversions with at least one touch. Every attribution model
-- credits such a conversion in full to touched channels, so the total is model-free.
attributed_days as (

    select
        conversion_date as date_day,
        sum(credited_revenue) as attributed_revenue
    from attribution_credits
    where attribution_model = 'first_touch' and session_id is not null
    group by conversion_date

),

survey_days as (

    select
        submitted_date as date_day,
        count(*) filter (where survey_type = 'nps') as nps_answers,
        count(*) filter (where survey_type = 'nps' and score >= 9) as nps_promoters,
        count(*) filter (where survey_type = 'nps' and score <= 6) as nps_detractors,
        count(*) filter (where survey_type = 'csat') as csat_answers,
        count(*) filter (where survey_type = 'csat' and score >= 4) as csat_satisfied
    from survey_responses
    group by submitted_date

),

loyalty_days as (

    select
        occurred_date as date_day,
        sum(abs(points)) filter (where event_type = 'earned') as points_earned,
        -- 0, not null, on a day with earnings and no redemption: the rate is then 0
        coalesce(sum(abs(points)) filter (where event_type = 'redeemed'), 0) as points_redeemed,
        count(*) filter (where event_type = 'referral') as referrals
    from loyalty_events
    group by occurred_date

),

---------- states at the end of the day, as running sums of changes

valid_orders as (

    select
        customer_key,
        order_date,
        valid_order_number,
        lag(order_date) over person_orders as previous_order_date,
        lead(order_date) over person_orders as next_order_date
    from orders
    where is_valid and customer_key is not null
    window person_orders as (partition by customer_key order by ordered_at, order_id)

),

subscription_spans as (

    select
        coalesce(mrr_reporting, 0) as mrr,
        started_date,
        -- a cancellation dated before the start ends the subscription on its first day
        case when ended_date < started_date then started_date else ended_date end as ended_date
    from (
        select
            *,
            {{ utc_date("coalesce(canceled_at, case when status = 'canceled' then updated_at end)") }}
                as ended_date
        from subscriptions
    ) as subscriptions_ended
    where started_date is not null

),

state_changes as (

    -- active: a person's valid order opens (or extends) var('active_window_days') active
    -- days [order_date, order_date + window - 1]
    select
        order_date as date_day,
        'active_customers' as metric,
        1 as delta
    from valid_orders
    where
        previous_order_date is null
        or order_date - previous_order_date >= {{ var('active_window_days') }}

    union all

    select
        order_date + {{ var('active_window_days') }} as date_day,
        'active_customers' as metric,
        -1 as delta
    from valid_orders
    where
        next_order_date is null
        or next_order_date - order_date >= {{ var('active_window_days') }}

    union all

    select
        order_date as date_day,
        'buyers' as metric,
        1 as delta
    from valid_orders
    where valid_order_number = 1

    union all

    select
        order_date as date_day,
        'repeat_buyers' as metric,
        1 as delta
    from valid_orders
    where valid_order_number = 2

    union all

    -- in the loyalty stage at the end of the day: valid_from before midnight, valid_to after
    select
        {{ utc_date('valid_from') }} as date_day,
        'advocates' as metric,
        1 as delta
    from stage_intervals
    where stage = 'loyalty'

    union all

    select
        {{ utc_date('valid_to') }} as date_day,
        'advocates' as metric,
        -1 as delta
    from stage_intervals
    where stage = 'loyalty' and valid_to is not null

    union all

    select
        started_date as date_day,
        'mrr' as metric,
        mrr as delta
    from subscription_spans

    union all

    select
        ended_date as date_day,
        'mrr' as metric,
        -mrr as delta
    from subscription_spans
    where ended_date is not null

),

state_change_days as (

    -- changes before the first day of the spine count from its first day
    select
        greatest(state_changes.date_day, as_of.data_start_date) as date_day,
        sum(state_changes.delta) filter (where state_changes.metric = 'active_customers')
            as active_delta,
        sum(state_changes.delta) filter (where state_changes.metric = 'buyers') as buyers_delta,
        sum(state_changes.delta) filter (where state_changes.metric = 'repeat_buyers')
            as repeat_buyers_delta,
        sum(state_changes.delta) filter (where state_changes.metric = 'advocates')
            as advocates_delta,
        sum(state_changes.delta) filter (where state_changes.metric = 'mrr') as mrr_delta
    from state_changes
    cross join as_of
    group by greatest(state_changes.date_day, as_of.data_start_date)

),

state_days as (

    select
        spine.date_day,
        sum(coalesce(state_change_days.active_delta, 0)) over running as active_customers,
        sum(coalesce(state_change_days.buyers_delta, 0)) over running as buyers,
        sum(coalesce(state_change_days.repeat_buyers_delta, 0)) over running as repeat_buyers,
        sum(coalesce(state_change_days.advocates_delta, 0)) over running as advocates,
        sum(coalesce(state_change_days.mrr_delta, 0)) over running as mrr
    from spine
    left join state_change_days on spine.date_day = state_change_days.date_day
    window running as (order by spine.date_day rows between unbounded preceding and current row)

),

---------- one row per day

daily as (

    select
        spine.date_day as date,

        ---------- awareness
        coalesce(web_daily.unique_visitors, 0)::bigint as unique_visitors,
        coalesce(web_daily.sessions, 0)::bigint as sessions,
        coalesce(contact_days.new_contacts, 0)::bigint as new_contacts,
        coalesce(ad_days.ad_impressions, 0)::bigint as ad_impressions,
        coalesce(ad_days.ad_clicks, 0)::bigint as ad_clicks,
        coalesce(ad_days.ad_spend, 0) as ad_spend,
        ad_days.ad_clicks::numeric / nullif(ad_days.ad_impressions, 0) as ad_ctr,

        ---------- engagement
        web_daily.bounce_rate,
        web_daily.avg_engagement_time_s,
        email_days.opened_pairs::numeric / nullif(email_days.delivered_pairs, 0) as email_open_rate,
        email_days.clicked_pairs::numeric / nullif(email_days.delivered_pairs, 0) as email_click_rate,
        email_days.unsubscribed_pairs::numeric
        / nullif(email_days.delivered_pairs, 0) as email_unsubscribe_rate,

        ---------- conversion
        coalesce(order_days.orders, 0)::bigint as orders,
        coalesce(order_days.revenue, 0) as revenue,
        coalesce(refund_days.refunds, 0) as refunds,
        coalesce(order_days.revenue, 0) - coalesce(refund_days.refunds, 0) as net_revenue,
        order_days.revenue / nullif(order_days.orders, 0) as aov,
        coalesce(order_days.new_customers, 0)::bigint as new_customers,
        web_daily.session_conversion_rate,
        web_daily.cart_abandonment_rate,
        ad_days.ad_spend / nullif(order_days.new_customers, 0) as cac,
        coalesce(attributed_days.attributed_revenue, 0) / nullif(ad_days.ad_spend, 0) as roas,

        ---------- retention
        state_days.active_customers::bigint as active_customers,
        state_days.repeat_buyers::numeric / nullif(state_days.buyers, 0) as repeat_purchase_rate,
        state_days.mrr,

        ---------- loyalty
        100.0 * (survey_days.nps_promoters - survey_days.nps_detractors)
        / nullif(survey_days.nps_answers, 0) as nps,
        100.0 * survey_days.csat_satisfied / nullif(survey_days.csat_answers, 0) as csat,
        loyalty_days.points_redeemed::numeric / nullif(loyalty_days.points_earned, 0) as reward_redemption_rate,
        coalesce(loyalty_days.referrals, 0)::bigint as referrals,
        state_days.advocates::bigint as advocates,

        ---------- metadata: latest web delivery summarised into this day
        web_daily._web_last_dt

    from spine
    left join web_daily on spine.date_day = web_daily.date_day
    left join contact_days on spine.date_day = contact_days.date_day
    left join ad_days on spine.date_day = ad_days.date_day
    left join email_days on spine.date_day = email_days.date_day
    left join order_days on spine.date_day = order_days.date_day
    left join refund_days on spine.date_day = refund_days.date_day
    left join attributed_days on spine.date_day = attributed_days.date_day
    left join survey_days on spine.date_day = survey_days.date_day
    left join loyalty_days on spine.date_day = loyalty_days.date_day
    left join state_days on spine.date_day = state_days.date_day

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
