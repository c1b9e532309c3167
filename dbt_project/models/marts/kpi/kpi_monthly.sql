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
        ],
    )
}}

{#- One row per calendar month (UTC; `month` is its first day) from the first month with
    data to the as-of month: every KPI of docs/kpis.md, the (monthly) ones included.

    Flows and rates are computed over the month's own events, never as averages of daily
    rates. Stocks (active_customers, repeat_purchase_rate, mrr, advocates) are the values at
    the end of the month: kpi_daily's value on its last day (the as-of date for the current
    month). Incremental like kpi_daily: web KPIs are recomputed only for months touched by
    recent web deliveries (the window of kpi_daily), everything else for every month, and
    only changed months are written. -#}

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

mrr_movements as (

    select * from {{ ref('fct_mrr_movements') }}

),

survey_responses as (

    select * from {{ ref('stg_crm__survey_responses') }}

),

loyalty_events as (

    select * from {{ ref('stg_crm__loyalty_events') }}

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

---------- flows of the month

contact_months as (

    select
        date_trunc('month', created_date)::date as date_month,
        count(*) as new_contacts
    from contacts
    group by date_trunc('month', created_date)::date

),

ad_months as (

    select
        date_trunc('month', spend_date)::date as date_month,
        sum(impressions) as ad_impressions,
        sum(clicks) as ad_clicks,
        sum(spend_reporting) as ad_spend
    from ad_spends
    group by date_trunc('month', spend_date)::date

),

email_months as (

    select
        date_trunc('month', delivered_date)::date as date_month,
        count(*) as delivered_pairs,
        count(*) filter (where was_opened) as opened_pairs,
        count(*) filter (where was_clicked) as clicked_pairs,
        count(*) filter (where was_unsubscribed) as unsubscribed_pairs
    from email_deliveries
    group by date_trunc('month', delivered_date)::date

),

valid_orders as (

    select * from orders
    where is_valid

),

order_months as (

    select
        date_trunc('month', order_date)::date as date_month,
        count(*) as orders,
        sum(revenue) as revenue,
        count(*) filter (where valid_order_number = 1) as new_customers,
        count(*) filter (where customer_key is not null) as person_orders,
        count(distinct customer_key) as ordering_persons
    from valid_orders
    group by date_trunc('month', order_date)::date

),

refund_months as (

    select
        date_trunc('month', refund_date)::date as date_month,
        sum(amount_reporting) as refunds
    from refunds
    group by date_trunc('month', refund_date)::date

),

-- ROAS numerator: revenue of conversions with at least one touch (model-free, see kpi_daily)
attributed_months as (

    select
        date_trunc('month', conversion_date)::date as date_month,
        sum(credited_revenue) as attributed_revenue
    from attribution_credits
    where attribution_model = 'first_touch' and session_id is not null
    group by date_trunc('month', conversion_date)::date

),

survey_months as (

    select
        date_trunc('month', submitted_date)::date as date_month,
        count(*) filter (where survey_type = 'nps') as nps_answers,
        count(*) filter (where survey_type = 'nps' and score >= 9) as nps_promoters,
        count(*) filter (where survey_type = 'nps' and score <= 6) as nps_detractors,
        count(*) filter (where survey_type = 'csat') as csat_answers,
        count(*) filter (where survey_type = 'csat' and score >= 4) as csat_satisfied
    from survey_responses
    group by date_trunc('month', submitted_date)::date

),

loyalty_months as (

    select
        date_trunc('month', occurred_date)::date as date_month,
        sum(abs(points)) filter (where event_type = 'earned') as points_earned,
        -- 0, not null, on a day with earnings and no redemption: the rate is then 0
        coalesce(sum(abs(points)) filter (where event_type = 'redeemed'), 0) as points_redeemed,
        count(*) filter (where event_type = 'referral') as referrals
    from loyalty_events
    group by date_trunc('month', occurred_date)::date

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

---------- retention: persons active at the start (end of the previous day) and at the end

person_activity as (

    select
        months.date_month,
        valid_orders.customer_key,
        bool_or(
            valid_orders.order_date < months.date_month
        ) as is_active_at_start,
        bool_or(
            valid_orders.order_date
            > months.period_end_date - {{ var('active_window_days') }}
        ) as is_active_at_end
    from months
    inner join valid_orders
        on
            months.date_month - {{ var('active_window_days') }} <= valid_orders.order_date
            and months.period_end_date >= valid_orders.order_date
    where valid_orders.customer_key is not null
    group by months.date_month, valid_orders.customer_key

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

-- upsell: a repeat valid order holding a category the person never bought before
order_categories as (

    select
        customer_key,
        order_id,
        valid_order_number,
        unnest(categories) as category
    from valid_orders
    where customer_key is not null

),

first_category_orders as (

    select
        customer_key,
        category,
        min(valid_order_number) as first_order_number
    from order_categories
    group by customer_key, category

),

repeat_orders as (

    select
        valid_orders.order_id,
        date_trunc('month', valid_orders.order_date)::date as date_month,
        coalesce(
            bool_or(first_category_orders.first_order_number = valid_orders.valid_order_number),
            false
        ) as has_new_category
    from valid_orders
    left join order_categories on valid_orders.order_id = order_categories.order_id
    left join first_category_orders
        on
            order_categories.customer_key = first_category_orders.customer_key
            and order_categories.category = first_category_orders.category
    where valid_orders.valid_order_number >= 2
    group by valid_orders.order_id, date_trunc('month', valid_orders.order_date)::date

),

upsell_months as (

    select
        date_month,
        count(*) as repeat_orders,
        count(*) filter (where has_new_category) as upsell_orders
    from repeat_orders
    group by date_month

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
        coalesce(contact_months.new_contacts, 0)::bigint as new_contacts,
        coalesce(ad_months.ad_impressions, 0)::bigint as ad_impressions,
        coalesce(ad_months.ad_clicks, 0)::bigint as ad_clicks,
        coalesce(ad_months.ad_spend, 0) as ad_spend,
        ad_months.ad_clicks::numeric / nullif(ad_months.ad_impressions, 0) as ad_ctr,

        ---------- engagement
        web_monthly.bounce_rate,
        web_monthly.avg_engagement_time_s,
        email_months.opened_pairs::numeric / nullif(email_months.delivered_pairs, 0) as email_open_rate,
        email_months.clicked_pairs::numeric
        / nullif(email_months.delivered_pairs, 0) as email_click_rate,
        email_months.unsubscribed_pairs::numeric
        / nullif(email_months.delivered_pairs, 0) as email_unsubscribe_rate,

        ---------- conversion
        coalesce(order_months.orders, 0)::bigint as orders,
        coalesce(order_months.revenue, 0) as revenue,
        coalesce(refund_months.refunds, 0) as refunds,
        coalesce(order_months.revenue, 0) - coalesce(refund_months.refunds, 0) as net_revenue,
        order_months.revenue / nullif(order_months.orders, 0) as aov,
        coalesce(order_months.new_customers, 0)::bigint as new_customers,
        web_monthly.session_conversion_rate,
        web_monthly.cart_abandonment_rate,
        ad_months.ad_spend / nullif(order_months.new_customers, 0) as cac,
        coalesce(attributed_months.attributed_revenue, 0) / nullif(ad_months.ad_spend, 0) as roas,

        ---------- retention
        month_end_states.active_customers::bigint as active_customers,
        coalesce(activity_months.active_at_start, 0)::bigint as active_customers_at_start,
        activity_months.churned_persons::numeric
        / nullif(activity_months.active_at_start, 0) as churn_rate,
        (coalesce(activity_months.active_at_end, 0) - coalesce(order_months.new_customers, 0))::numeric
        / nullif(activity_months.active_at_start, 0) as customer_retention_rate,
        month_end_states.repeat_purchase_rate,
        order_months.person_orders::numeric
        / nullif(order_months.ordering_persons, 0) as purchase_frequency,
        month_end_states.mrr,
        coalesce(mrr_months.new_mrr, 0) as new_mrr,
        coalesce(mrr_months.expansion_mrr, 0) as expansion_mrr,
        coalesce(mrr_months.contraction_mrr, 0) as contraction_mrr,
        coalesce(mrr_months.churned_mrr, 0) as churned_mrr,

        ---------- loyalty
        100.0 * (survey_months.nps_promoters - survey_months.nps_detractors)
        / nullif(survey_months.nps_answers, 0) as nps,
        100.0 * survey_months.csat_satisfied / nullif(survey_months.csat_answers, 0) as csat,
        loyalty_months.points_redeemed::numeric
        / nullif(loyalty_months.points_earned, 0) as reward_redemption_rate,
        coalesce(loyalty_months.referrals, 0)::bigint as referrals,
        upsell_months.upsell_orders::numeric / nullif(upsell_months.repeat_orders, 0) as upsell_rate,
        month_end_states.advocates::bigint as advocates,

        ---------- metadata: latest web delivery summarised into this month
        web_monthly._web_last_dt

    from months
    left join web_monthly on months.date_month = web_monthly.date_month
    left join contact_months on months.date_month = contact_months.date_month
    left join ad_months on months.date_month = ad_months.date_month
    left join email_months on months.date_month = email_months.date_month
    left join order_months on months.date_month = order_months.date_month
    left join refund_months on months.date_month = refund_months.date_month
    left join attributed_months on months.date_month = attributed_months.date_month
    left join survey_months on months.date_month = survey_months.date_month
    left join loyalty_months on months.date_month = loyalty_months.date_month
    left join mrr_months on months.date_month = mrr_months.date_month
    left join activity_months on months.date_month = activity_months.date_month
    left join upsell_months on months.date_month = upsell_months.date_month
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
