with

source as (

    select * from {{ source('web', 'events') }}

),

first_deliveries as (

    -- at-least-once delivery: the same event_id may arrive in several files; keep the
    -- first delivery (earliest date folder, then load, file and line). An anti-join
    -- rather than row_number(): a filter on _dt then reaches the raw table's index, so
    -- int_web__events' incremental run reads its window, not every delivery ever made
    -- (raw.web_events has a hash index on event_id for this lookup). `earlier` reads the source
    -- itself: a CTE used twice would be materialised, and the filter could not reach it.
    select
        source.*,
        {{ url_host('source.page_url') }} as page_host,
        {{ url_host('source.referrer') }} as referrer_host
    from source
    left join {{ source('web', 'events') }} as earlier
        on
            source.event_id = earlier.event_id
            and (earlier._dt, earlier._loaded_at, earlier._file, earlier._line_number)
            < (source._dt, source._loaded_at, source._file, source._line_number)
    where earlier.event_id is null

),

renamed as (

    select
        ---------- ids
        event_id,
        session_id,
        anonymous_id,
        {{ clean_text('user_id') }} as user_id,

        ---------- event
        event_name,
        occurred_at,
        {{ utc_date('occurred_at') }} as event_date,

        ---------- page context
        {{ clean_text('page_url') }} as page_url,
        {{ clean_text('page_title') }} as page_title,
        page_host,
        {{ clean_text('referrer') }} as referrer,
        -- a referrer on the page's own host is internal navigation, not a traffic source
        nullif(referrer_host, page_host) as referrer_domain,

        ---------- campaign tags (source and medium lower-cased for matching)
        lower({{ clean_text('utm_source') }}) as utm_source,
        lower({{ clean_text('utm_medium') }}) as utm_medium,
        {{ clean_text('utm_campaign') }} as utm_campaign,
        {{ clean_text('utm_content') }} as utm_content,
        {{ clean_text('utm_term') }} as utm_term,

        ---------- device and geography
        device_type,
        upper({{ clean_text('country') }}) as country,

        ---------- properties
        {{ json_text('properties', 'order_id') }} as order_id,
        {{ json_numeric('properties', 'value') }} as event_value,
        upper({{ json_text('properties', 'currency') }}) as event_currency,
        {{ json_text('properties', 'product_id') }} as product_id,
        {{ json_text('properties', 'category') }} as item_category,
        round({{ json_numeric('properties', 'engagement_time_msec') }} / 1000, 3) as engagement_time_s,
        properties,

        ---------- load metadata
        _dt,
        _file,
        _line_number,
        _loaded_at

    from first_deliveries

)

select * from renamed
