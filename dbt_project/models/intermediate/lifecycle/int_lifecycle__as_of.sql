-- The evaluation horizon of every lifecycle and KPI model: the first and the last date with
-- data (never now()), so that the same data always gives the same stages and KPIs.

with

orders as (

    select ordered_at as occurred_at from {{ ref('int_orders__orders') }}

),

refunds as (

    select refund_date::timestamp at time zone 'UTC' as occurred_at
    from {{ ref('int_orders__refunds') }}

),

web_events as (

    select occurred_at from {{ ref('int_web__events_stitched') }}

),

email_events as (

    select occurred_at from {{ ref('stg_crm__email_events') }}

),

survey_responses as (

    select submitted_at as occurred_at from {{ ref('stg_crm__survey_responses') }}

),

loyalty_events as (

    select occurred_at from {{ ref('stg_crm__loyalty_events') }}

),

contacts as (

    select created_at as occurred_at from {{ ref('stg_crm__contacts') }}

),

ad_spends as (

    select date::timestamp at time zone 'UTC' as occurred_at
    from {{ ref('stg_marketing__ad_spends') }}

),

subscriptions as (

    select started_at as occurred_at from {{ ref('stg_shop__subscriptions') }}
    union all
    -- A cancellation scheduled for later than the row's last change has not happened yet.
    select least(canceled_at, updated_at) as occurred_at
    from {{ ref('stg_shop__subscriptions') }}

),

all_events as (

    select occurred_at from orders
    union all
    select occurred_at from refunds
    union all
    select occurred_at from web_events
    union all
    select occurred_at from email_events
    union all
    select occurred_at from survey_responses
    union all
    select occurred_at from loyalty_events
    union all
    select occurred_at from contacts
    union all
    select occurred_at from ad_spends
    union all
    select occurred_at from subscriptions

),

bounds as (

    select
        min((occurred_at at time zone 'UTC')::date) as data_start_date,
        max((occurred_at at time zone 'UTC')::date) as as_of_date
    from all_events

),

final as (

    select
        data_start_date,
        as_of_date,
        -- End of the as-of day (exclusive): stages are evaluated at every instant before it.
        (as_of_date + 1)::timestamp at time zone 'UTC' as as_of_end_at
    from bounds
    where as_of_date is not null

)

select * from final
