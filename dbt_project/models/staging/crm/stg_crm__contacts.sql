with

source as (

    select * from {{ source('crm', 'contacts') }}

),

versions as (

    select
        *,
        row_number() over (
            partition by contact_id
            order by updated_at desc, _dt desc, _loaded_at desc, _file desc, _line_number desc
        ) as version_rank
    from source

),

renamed as (

    select
        ---------- ids
        contact_id,
        {{ hash_email('email') }} as email_sha256,

        ---------- properties
        upper({{ clean_text('country') }}) as country,
        {{ clean_text('city') }} as city,
        {{ clean_text('lead_source') }} as lead_source,
        lifecycle_stage as crm_lifecycle_stage,

        ---------- timestamps
        created_at,
        {{ utc_date('created_at') }} as created_date,
        updated_at,

        ---------- load metadata
        _dt,
        _loaded_at

    from versions
    where version_rank = 1

)

select * from renamed
