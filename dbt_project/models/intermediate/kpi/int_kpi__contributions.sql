{%- set consumers = [
    'kpi_daily', 'kpi_monthly', 'channel_attribution', 'cohort_retention',
] -%}
{%- set crm_types = ['contact', 'email_delivery', 'survey_response', 'loyalty_event'] -%}
{#- every column: a measure added to the KPI registry needs a rebuild of the stored rows -#}
{%- do require_stored_columns(kpi_contribution_columns() | map(attribute=0) | list) -%}
{%- set other_types = [
    'ad_spend', 'order', 'order_activity_end', 'refund', 'attribution_credit', 'advocate_from',
    'advocate_to', 'subscription_start', 'subscription_end',
] -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed',
        unique_key='contribution_id',
        meta={'tombstone_when_null': 'date_day', 'change_consumers': consumers},
        indexes=[
            {'columns': ['contribution_id'], 'unique': true},
            {'columns': ['date_day']},
            {'columns': ['contribution_type', 'date_day']},
            {'columns': ['contribution_type', '_last_dt']},
        ],
        pre_hook=["{{ change_log_prepare(" ~ consumers ~ ") }}"],
    )
}}

{#- One row per source record's contribution to the non-web KPIs of one day: a contact to
    new_contacts on its creation day, an order to orders and revenue on its day and to the
    stock of active customers (+1) on it, and another row (-1) 180 days later, an
    attribution credit to its channel's conversions, and so on. kpi_daily and kpi_monthly
    sum the contributions of a day or a month, channel_attribution of a month and channel,
    cohort_retention of a cohort and month.

    Incremental, and equal to a full refresh. A run selects the candidates, every record
    whose contribution may have changed, and the strategy replace_changed
    (macros/change_log.sql) writes those that did and logs them, before and after, for
    kpi_daily, kpi_monthly, channel_attribution and cohort_retention:
    these recompute only the days, months and customers of logged changes. Candidates:
    - CRM records (contacts, e-mail pairs, survey answers, loyalty events): those delivered
      in the window (macros/incremental.sql: since the last successful build), now or
      last time (a
      delivery may have vanished from a re-delivered folder);
    - everything else (ad spend, shop orders and refunds, attribution, loyalty stage,
      subscriptions): all of them. They depend on FX rates, identity merges and thresholds
      that change old days without a new delivery; the compare is one hash join, and only
      changed rows are written and logged.
    A candidate that no longer contributes is selected as a tombstone (its id, NULL
    date_day): the strategy deletes it and logs it. -#}

with

contacts as not materialized (

    select * from {{ ref('stg_crm__contacts') }}

),

email_deliveries as not materialized (

    select * from {{ ref('int_lifecycle__email_deliveries') }}

),

survey_responses as not materialized (

    select * from {{ ref('stg_crm__survey_responses') }}

),

loyalty_events as not materialized (

    select * from {{ ref('stg_crm__loyalty_events') }}

),

ad_spends as (

    select * from {{ ref('stg_marketing__ad_spends') }}

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

loyalty_stage_intervals as (

    select * from {{ ref('int_lifecycle__stage_intervals') }}
    where stage = 'loyalty'

),

mrr_spans as (

    select * from {{ ref('int_subscriptions__mrr_spans') }}

),

{% if is_incremental() %}

    ---------- CRM candidates: delivered in the window, now or last time

    crm_candidates as (

        select 'contact:' || contact_id as contribution_id
        from {{ source('crm', 'contacts') }}
        where _dt >= {{ incremental_cutoff('_last_dt', where="contribution_type = 'contact'") }}

        union

        select 'email_delivery:' || email_delivery_id as contribution_id
        from email_deliveries
        where _last_dt >= {{ incremental_cutoff('_last_dt', where="contribution_type = 'email_delivery'") }}

        union

        select 'survey_response:' || response_id as contribution_id
        from {{ source('crm', 'survey_responses') }}
        where _dt >= {{ incremental_cutoff('_last_dt', where="contribution_type = 'survey_response'") }}

        union

        select 'loyalty_event:' || loyalty_event_id as contribution_id
        from {{ source('crm', 'loyalty_events') }}
        where _dt >= {{ incremental_cutoff('_last_dt', where="contribution_type = 'loyalty_event'") }}

        union

        {% for crm_type in crm_types %}
            select contribution_id
            from {{ this }}
            where
                contribution_type = '{{ crm_type }}'
                and _last_dt >= {{ incremental_cutoff('_last_dt', where="contribution_type = '" ~ crm_type ~ "'") }}
            {{ 'union' if not loop.last }}
        {% endfor %}

    ),

    -- every candidate of a tombstone: the CRM ones, and every stored contribution of the
    -- other kinds
    candidates as (

        select contribution_id from crm_candidates

        union

        select contribution_id from {{ this }}
        where contribution_type in {{ sql_list(other_types) }}

    ),

    email_delivery_candidates as (

        select substr(contribution_id, length('email_delivery:') + 1) as email_delivery_id
        from crm_candidates
        where contribution_id like 'email_delivery:%'

    ),

{% endif %}

---------- CRM records

contact_contributions as (

    select
        {{ kpi_contribution({
            'contribution_id': "'contact:' || contact_id",
            'contribution_type': "'contact'",
            'date_day': 'created_date',
            'new_contacts': '1',
            '_last_dt': '_dt',
        }) }}
    from contacts
    where
        created_date is not null
        {% if is_incremental() %}
            and 'contact:' || contact_id in (select contribution_id from crm_candidates)
        {% endif %}

),

email_delivery_contributions as (

    select
        {{ kpi_contribution({
            'contribution_id': "'email_delivery:' || email_delivery_id",
            'contribution_type': "'email_delivery'",
            'date_day': 'delivered_date',
            'delivered_pairs': '1',
            'opened_pairs': 'was_opened::integer',
            'clicked_pairs': 'was_clicked::integer',
            'unsubscribed_pairs': 'was_unsubscribed::integer',
            '_last_dt': '_last_dt',
        }) }}
    from email_deliveries
    where
        delivered_date is not null
        {% if is_incremental() %}
            -- through the table's unique index, pair by pair
            and email_delivery_id in (select email_delivery_id from email_delivery_candidates)
        {% endif %}

),

survey_response_contributions as (

    select
        {{ kpi_contribution({
            'contribution_id': "'survey_response:' || survey_response_id",
            'contribution_type': "'survey_response'",
            'date_day': 'submitted_date',
            'nps_answers': "(survey_type = 'nps')::integer",
            'nps_promoters': "(survey_type = 'nps' and score >= 9)::integer",
            'nps_detractors': "(survey_type = 'nps' and score <= 6)::integer",
            'csat_answers': "(survey_type = 'csat')::integer",
            'csat_satisfied': "(survey_type = 'csat' and score >= 4)::integer",
            '_last_dt': '_dt',
        }) }}
    from survey_responses
    where
        submitted_date is not null
        {% if is_incremental() %}
            and 'survey_response:' || survey_response_id in (select contribution_id from crm_candidates)
        {% endif %}

),

loyalty_event_contributions as (

    select
        {{ kpi_contribution({
            'contribution_id': "'loyalty_event:' || loyalty_event_id",
            'contribution_type': "'loyalty_event'",
            'date_day': 'occurred_date',
            'points_earned': "case when event_type = 'earned' then abs(points) end",
            'points_redeemed': "case when event_type = 'redeemed' then abs(points) end",
            'referrals': "(event_type = 'referral')::integer",
            '_last_dt': '_dt',
        }) }}
    from loyalty_events
    where
        occurred_date is not null
        {% if is_incremental() %}
            and 'loyalty_event:' || loyalty_event_id in (select contribution_id from crm_candidates)
        {% endif %}

),

---------- everything else

ad_spend_contributions as (

    select
        {{ kpi_contribution({
            'contribution_id': "'ad_spend:' || ad_spend_id",
            'contribution_type': "'ad_spend'",
            'date_day': 'spend_date',
            'channel': 'channel',
            'ad_impressions': 'impressions',
            'ad_clicks': 'clicks',
            'ad_spend': 'spend_reporting',
        }) }}
    from ad_spends
    where spend_date is not null

),

-- a person's valid orders in time order (ties: order_id), as int_orders__orders numbers them
valid_orders as (

    select
        *,
        lag(order_date) over person_orders as previous_order_date,
        lead(order_date) over person_orders as next_order_date,
        -- the person's first-order cohort, and their orders' rank within a calendar month
        date_trunc('month', min(order_date) over person_history)::date as cohort_month,
        row_number() over (
            partition by customer_key, date_trunc('month', order_date) order by ordered_at, order_id
        ) as order_of_month
    from orders
    where is_valid and order_date is not null
    window
        person_orders as (partition by customer_key order by ordered_at, order_id),
        person_history as (partition by customer_key)

),

-- upsell: a repeat order holding a category the person never bought before
first_category_orders as (

    select
        valid_orders.customer_key,
        order_category.category,
        min(valid_orders.valid_order_number) as first_order_number
    from valid_orders
    cross join unnest(valid_orders.categories) as order_category (category)
    where valid_orders.customer_key is not null
    group by valid_orders.customer_key, order_category.category

),

upsell_orders as (

    select distinct valid_orders.order_id
    from valid_orders
    cross join unnest(valid_orders.categories) as order_category (category)
    inner join first_category_orders
        on
            valid_orders.customer_key = first_category_orders.customer_key
            and order_category.category = first_category_orders.category
            and valid_orders.valid_order_number = first_category_orders.first_order_number
    where valid_orders.valid_order_number >= 2

),

order_contributions as (

    -- a person's valid order opens (or extends) var('active_window_days') active days
    -- [order_date, order_date + window - 1]: +1 active customer on its day when it opens
    -- them (after at least one day without an active order: a reactivation, unless first)
    select
        {{ kpi_contribution({
            'contribution_id': "'order:' || valid_orders.order_id",
            'contribution_type': "'order'",
            'date_day': 'valid_orders.order_date',
            'customer_key': 'valid_orders.customer_key',
            'orders': '1',
            'revenue': 'valid_orders.revenue',
            'new_customers': 'coalesce(valid_orders.valid_order_number = 1, false)::integer',
            'person_orders': '(valid_orders.customer_key is not null)::integer',
            'repeat_orders': 'coalesce(valid_orders.valid_order_number >= 2, false)::integer',
            'upsell_orders': '(upsell_orders.order_id is not null)::integer',
            'cohort_month': 'case when valid_orders.customer_key is not null then valid_orders.cohort_month end',
            'first_order_of_month':
                'case when valid_orders.customer_key is not null then (valid_orders.order_of_month = 1)::integer end',
            'order_net_revenue': 'valid_orders.net_revenue',
            'active_customers_delta':
                "case when valid_orders.customer_key is not null and (valid_orders.previous_order_date is null
                or valid_orders.order_date - valid_orders.previous_order_date > "
                ~ var('active_window_days') ~ ") then 1 end",
            'buyers_delta': 'case when valid_orders.valid_order_number = 1 then 1 end',
            'repeat_buyers_delta': 'case when valid_orders.valid_order_number = 2 then 1 end',
            'reactivations':
                "case when valid_orders.customer_key is not null and valid_orders.order_date
                - valid_orders.previous_order_date > " ~ var('active_window_days') ~ " then 1 end",
        }) }}
    from valid_orders
    left join upsell_orders on valid_orders.order_id = upsell_orders.order_id

),

order_activity_end_contributions as (

    -- ... and -1 on the day after them, unless the person's next valid order extends them
    -- (on that day at the latest: whole days, as in the stage history)
    select
        {{ kpi_contribution({
            'contribution_id': "'order_activity_end:' || order_id",
            'contribution_type': "'order_activity_end'",
            'date_day': 'order_date + ' ~ var('active_window_days'),
            'customer_key': 'customer_key',
            'active_customers_delta': '-1',
            'churns': '1',
        }) }}
    from valid_orders
    where
        customer_key is not null
        and (next_order_date is null or next_order_date - order_date > {{ var('active_window_days') }})

),

refund_contributions as (

    select
        {{ kpi_contribution({
            'contribution_id': "'refund:' || refund_id",
            'contribution_type': "'refund'",
            'date_day': 'refund_date',
            'refunds': 'amount_reporting',
        }) }}
    from refunds
    -- a refund of an order that never counted in revenue (cancelled, pending, unknown)
    -- does not lower net revenue
    where refund_date is not null and is_of_valid_order

),

-- every credit of a conversion (first valid order) to a channel, under each attribution
-- model (the KPI marts' roas weighs the credits to the period's paid channels against
-- their spend)
attribution_credit_contributions as (

    select
        {{ kpi_contribution({
            'contribution_id': "'attribution_credit:' || credit_id",
            'contribution_type': "'attribution_credit'",
            'date_day': 'conversion_date',
            'channel': 'channel',
            'attribution_model': 'attribution_model',
            'credited_conversions': 'weight',
            'credited_revenue': 'credited_revenue',
        }) }}
    from attribution_credits

),

-- advocates: in the loyalty stage at the end of the day (valid_from before midnight,
-- valid_to after)
advocate_contributions as (

    select
        {{ kpi_contribution({
            'contribution_id': "'advocate_from:' || customer_key || '@' || extract(epoch from valid_from)",
            'contribution_type': "'advocate_from'",
            'date_day': utc_date('valid_from'),
            'advocates_delta': '1',
        }) }}
    from loyalty_stage_intervals

    union all

    select
        {{ kpi_contribution({
            'contribution_id': "'advocate_to:' || customer_key || '@' || extract(epoch from valid_from)",
            'contribution_type': "'advocate_to'",
            'date_day': utc_date('valid_to'),
            'advocates_delta': '-1',
        }) }}
    from loyalty_stage_intervals
    where valid_to is not null

),

-- MRR: each version of a subscription adds its MRR on the first day it counts and takes
-- it back on the first day it no longer does (int_subscriptions__mrr_spans)
subscription_contributions as (

    select
        {{ kpi_contribution({
            'contribution_id': "'subscription_start:' || mrr_span_id",
            'contribution_type': "'subscription_start'",
            'date_day': 'first_date',
            'customer_key': 'customer_key',
            'shop_customer_id': 'shop_customer_id',
            'mrr_delta': 'mrr',
        }) }}
    from mrr_spans

    union all

    select
        {{ kpi_contribution({
            'contribution_id': "'subscription_end:' || mrr_span_id",
            'contribution_type': "'subscription_end'",
            'date_day': 'end_date',
            'customer_key': 'customer_key',
            'shop_customer_id': 'shop_customer_id',
            'mrr_delta': '-mrr',
        }) }}
    from mrr_spans
    where end_date is not null

),

contributions as (

    select * from contact_contributions
    union all
    select * from email_delivery_contributions
    union all
    select * from survey_response_contributions
    union all
    select * from loyalty_event_contributions
    union all
    select * from ad_spend_contributions
    union all
    select * from order_contributions
    union all
    select * from order_activity_end_contributions
    union all
    select * from refund_contributions
    union all
    select * from attribution_credit_contributions
    union all
    select * from advocate_contributions
    union all
    select * from subscription_contributions

),

final as (

    select * from contributions

    {% if is_incremental() %}
        union all

        -- tombstones: candidates that no longer contribute
        select
            {{ kpi_contribution({'contribution_id': 'gone.contribution_id'}) }}
        from candidates as gone
        left join contributions on gone.contribution_id = contributions.contribution_id
        where contributions.contribution_id is null
    {% endif %}

)

select * from final
