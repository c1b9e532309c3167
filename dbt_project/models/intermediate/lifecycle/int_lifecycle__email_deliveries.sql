{#- One row per (contact, campaign) pair delivered: the email KPIs' unit. A pair belongs
    to the day of its first `delivered` event; opened, clicked and unsubscribed say whether
    the pair ever had such an event (at any time up to the data's end, so a later open
    changes the rates of its delivery day). -#}

with

email_events as (

    select * from {{ ref('stg_crm__email_events') }}

),

pairs as (

    select
        contact_id,
        campaign_id,
        min(occurred_at) filter (where event_type = 'delivered') as delivered_at,
        min(occurred_date) filter (where event_type = 'delivered') as delivered_date,
        coalesce(bool_or(event_type = 'open'), false) as was_opened,
        coalesce(bool_or(event_type = 'click'), false) as was_clicked,
        coalesce(bool_or(event_type = 'unsubscribe'), false) as was_unsubscribed
    from email_events
    group by contact_id, campaign_id

),

final as (

    select
        {{ surrogate_key(['contact_id', 'campaign_id']) }} as email_delivery_id,
        contact_id,
        campaign_id,
        delivered_at,
        delivered_date,
        was_opened,
        was_clicked,
        was_unsubscribed
    from pairs
    where delivered_at is not null

)

select * from final
