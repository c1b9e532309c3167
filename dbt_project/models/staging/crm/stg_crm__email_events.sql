with

source as (

    select * from {{ source('crm', 'email_events') }}

),

latest_deliveries as (

    -- an e-mail event delivered again replaces its earlier deliveries: keep the latest
    -- (date folder, then load, file and line). An anti-join rather than row_number(), as
    -- in stg_web__events: a filter on _dt or contact_id then reaches raw.crm_email_events
    -- (a hash index on event_id for this lookup) instead of ranking every delivery ever made.
    select source.*
    from source
    left join {{ source('crm', 'email_events') }} as later
        on
            source.event_id = later.event_id
            and (later._dt, later._loaded_at, later._file, later._line_number)
            > (source._dt, source._loaded_at, source._file, source._line_number)
    where later.event_id is null

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

    from latest_deliveries

)

select * from renamed
