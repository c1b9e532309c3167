with

source as (

    select * from {{ source('crm', 'email_events') }}

),

deliveries as (

    select
        *,
        row_number() over (
            partition by event_id
            order by _dt desc, _loaded_at desc, _file desc, _line_number desc
        ) as delivery_rank
    from source

),

renamed as (

    select
        ---------- ids
        event_id as email_event_id,
        contact_id,
        campaign_id,

        ---------- properties
        event_type,
        {{ clean_text('url') }} as url,

        ---------- timestamps
        occurred_at,
        {{ utc_date('occurred_at') }} as occurred_date,

        ---------- load metadata
        _dt,
        _loaded_at

    from deliveries
    where delivery_rank = 1

)

select * from renamed
