with

source as (

    select * from {{ source('crm', 'campaigns') }}

),

versions as (

    select
        *,
        row_number() over (
            partition by campaign_id
            order by _dt desc, _loaded_at desc, _file desc, _line_number desc
        ) as version_rank
    from source

),

renamed as (

    select
        ---------- ids
        campaign_id,

        ---------- properties
        name as campaign_name,
        channel,
        upper({{ clean_text('currency') }}) as currency,

        ---------- numerics
        budget,
        {{ to_reporting_currency('budget', 'currency', 'coalesce(start_date, _dt)') }} as budget_reporting,

        ---------- dates
        start_date,
        end_date,

        ---------- load metadata
        _dt,
        _loaded_at

    from versions
    where version_rank = 1

)

select * from renamed
