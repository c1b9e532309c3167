with

source as (

    select * from {{ source('marketing', 'ad_spend') }}

),

normalized as (

    select
        *,
        {{ clean_text('campaign_id') }} as clean_campaign_id,
        lower({{ clean_text('utm_source') }}) as clean_utm_source,
        lower({{ clean_text('utm_medium') }}) as clean_utm_medium,
        {{ clean_text('utm_campaign') }} as clean_utm_campaign
    from source

),

deliveries as (

    -- ad platforms restate past days: for each reported line (day, channel, campaign,
    -- tags) the latest delivery wins, so a restatement replaces instead of adding up
    select
        *,
        row_number() over (
            partition by
                date, channel, clean_campaign_id, clean_utm_source, clean_utm_medium, clean_utm_campaign
            order by _dt desc, _loaded_at desc, _file desc, _line_number desc
        ) as delivery_rank
    from normalized

),

renamed as (

    select
        ---------- ids
        {{ surrogate_key([
            'date', 'channel', 'clean_campaign_id', 'clean_utm_source', 'clean_utm_medium', 'clean_utm_campaign'
        ]) }} as ad_spend_id,
        clean_campaign_id as campaign_id,

        ---------- dimensions
        date as spend_date,
        channel,
        clean_utm_source as utm_source,
        clean_utm_medium as utm_medium,
        clean_utm_campaign as utm_campaign,
        upper(currency) as currency,

        ---------- numerics
        impressions,
        clicks,
        spend,
        {{ to_reporting_currency('spend', 'currency', 'date') }} as spend_reporting,

        ---------- load metadata
        _dt,
        _loaded_at

    from deliveries
    where delivery_rank = 1

)

select * from renamed
