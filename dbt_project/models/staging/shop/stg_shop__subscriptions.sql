with

source as (

    select * from {{ source('shop', 'subscriptions') }}

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
        {{ utc_date('started_at') }} as started_date,
        canceled_at,
        {{ utc_date('canceled_at') }} as canceled_date,
        updated_at,

        ---------- load metadata
        _extracted_at

    from normalized

)

select * from renamed
