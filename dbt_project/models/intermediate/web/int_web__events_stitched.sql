{{ config(materialized='view') }}

{#- Web events with the person they belong to (see int_identity__anonymous_ids). A view:
    stitching changes whenever an anonymous_id is identified, so it is never stored. -#}

with

events as (

    select * from {{ ref('int_web__events') }}

),

anonymous_ids as (

    select * from {{ ref('int_identity__anonymous_ids') }}

),

final as (

    select
        events.event_id,
        anonymous_ids.customer_key,
        events.session_id,
        events.anonymous_id,
        events.user_id,
        events.event_name,
        events.occurred_at,
        events.event_date,
        events.page_url,
        events.page_title,
        events.page_host,
        events.referrer,
        events.referrer_domain,
        events.utm_source,
        events.utm_medium,
        events.utm_campaign,
        events.utm_content,
        events.utm_term,
        events.device_type,
        events.country,
        events.engagement_time_s,
        events.order_id,
        events.event_value,
        events.event_currency,
        events.event_value_reporting,
        events.product_id,
        events.item_category,
        events.properties,
        events._dt,
        events._loaded_at
    from events
    inner join anonymous_ids
        on events.anonymous_id = anonymous_ids.anonymous_id

)

select * from final
