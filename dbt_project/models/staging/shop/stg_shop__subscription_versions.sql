with

source as (

    select * from {{ source('shop', 'subscription_versions') }}

),

normalized as (

    select
        *,
        upper({{ clean_text('currency') }}) as currency_code,
        {{ utc_date('coalesce(started_at, updated_at)') }} as fx_date
    from source

),

renamed as (

    select
        ---------- ids
        {{ surrogate_key(['subscription_id', '_batch_id']) }} as subscription_version_id,
        subscription_id,
        customer_id as shop_customer_id,

        ---------- properties
        {{ clean_text('plan') }} as plan,
        status,
        currency_code as currency,

        ---------- numerics
        mrr,
        {{ to_reporting_currency('mrr', 'currency_code', 'fx_date') }} as mrr_reporting,

        ---------- timestamps
        started_at,
        canceled_at,
        updated_at,

        ---------- load metadata
        _batch_id,
        _extracted_at

    from normalized

)

select * from renamed
