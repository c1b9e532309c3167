{#- The evaluation horizon of every lifecycle and KPI model: from the first date (UTC) with
    data in any source to the as-of date, never now(), so that the same data always gives
    the same stages and KPIs. The as-of date is the build's plan (macros/warehouse_builds.sql:
    the warehouse DAG run's last date, `--vars '{as_of_date: …}'`, else the latest date
    folder delivered), so that quiet days at the end of a run still get their rows; it is
    never before the latest date with data (a backfill of old dates does not cut the
    marts). The shop's history usually sets the first date (it spans years). A
    subscription cancellation scheduled after the row's last change has not happened yet
    and does not count. -#}
{%- set planned_as_of = build_plan('as_of_date') %}

with

orders as (

    select * from {{ ref('int_orders__orders') }}

),

refunds as (

    select * from {{ ref('int_orders__refunds') }}

),

web_events as (

    -- min and max of event_date are index lookups here (every event has a person)
    select * from {{ ref('int_web__events') }}

),

email_events as (

    -- min and max of occurred_date are index lookups here
    select * from {{ ref('int_crm__email_events') }}

),

survey_responses as (

    select * from {{ ref('stg_crm__survey_responses') }}

),

loyalty_events as (

    select * from {{ ref('stg_crm__loyalty_events') }}

),

contacts as (

    select * from {{ ref('stg_crm__contacts') }}

),

ad_spends as (

    select * from {{ ref('stg_marketing__ad_spends') }}

),

shop_customers as (

    select * from {{ ref('stg_shop__customers') }}

),

subscriptions as (

    select * from {{ ref('stg_shop__subscriptions') }}

),

source_bounds as (

    select
        min(order_date) as first_date,
        max(order_date) as last_date
    from orders

    union all

    select
        min(refund_date) as first_date,
        max(refund_date) as last_date
    from refunds

    union all

    select
        min(event_date) as first_date,
        max(event_date) as last_date
    from web_events

    union all

    select
        min(occurred_date) as first_date,
        max(occurred_date) as last_date
    from email_events

    union all

    select
        min(submitted_date) as first_date,
        max(submitted_date) as last_date
    from survey_responses

    union all

    select
        min(occurred_date) as first_date,
        max(occurred_date) as last_date
    from loyalty_events

    union all

    select
        min(created_date) as first_date,
        max(created_date) as last_date
    from contacts

    union all

    -- a shop account opened before its first order makes its person first seen then
    -- (int_identity__persons.first_seen_at), so it belongs to the horizon too
    select
        min({{ utc_date('created_at') }}) as first_date,
        max({{ utc_date('created_at') }}) as last_date
    from shop_customers

    union all

    select
        min(spend_date) as first_date,
        max(spend_date) as last_date
    from ad_spends

    union all

    select
        min(started_date) as first_date,
        greatest(
            max(started_date),
            max({{ utc_date('least(canceled_at, updated_at)') }})
        ) as last_date
    from subscriptions

),

final as (

    select
        data_start_date,
        as_of_date,
        -- end of the as-of day (exclusive): stages are evaluated at every instant before it
        (as_of_date + 1)::timestamp at time zone 'UTC' as as_of_end_at
    from (
        select
            min(first_date) as data_start_date,
            greatest(
                max(last_date),
                {{ "'" ~ planned_as_of ~ "'::date" if planned_as_of else 'null::date' }}
            ) as as_of_date
        from source_bounds
        having max(last_date) is not null
    ) as bounds

)

select * from final
