with

source as (

    select * from {{ source('crm', 'loyalty_events') }}

),

deliveries as (

    select
        *,
        row_number() over (
            partition by loyalty_event_id
            order by _dt desc, _loaded_at desc, _file desc, _line_number desc
        ) as delivery_rank
    from source

),

renamed as (

    select
        ---------- ids
        loyalty_event_id,
        contact_id,

        ---------- properties
        event_type,
        points,
        {{ clean_text('reference') }} as reference,

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
