with

source as (

    select * from {{ source('crm', 'survey_responses') }}

),

deliveries as (

    select
        *,
        row_number() over (
            partition by response_id
            order by _dt desc, _loaded_at desc, _file desc, _line_number desc
        ) as delivery_rank
    from source

),

renamed as (

    select
        ---------- ids
        response_id as survey_response_id,
        contact_id,

        ---------- properties
        survey_type,
        score,
        {{ clean_text('comment') }} is not null as has_comment,

        ---------- timestamps
        submitted_at,
        {{ utc_date('submitted_at') }} as submitted_date,

        ---------- load metadata
        _dt,
        _loaded_at

    from deliveries
    where delivery_rank = 1

)

select * from renamed
