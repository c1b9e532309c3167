with

source as (

    select * from {{ source('shop', 'orders') }}

),

dated as (

    select
        *,
        upper({{ clean_text('currency') }}) as currency_code,
        -- an order without ordered_at is converted at its last change's rate
        {{ utc_date('coalesce(ordered_at, updated_at)') }} as fx_date
    from source

),

renamed as (

    select
        ---------- ids
        order_id,
        customer_id as shop_customer_id,

        ---------- properties
        status,
        channel,
        {{ clean_text('coupon_code') }} as coupon_code,
        currency_code as currency,

        ---------- numerics (order currency)
        subtotal,
        discount,
        shipping,
        tax,
        total,

        ---------- numerics (reporting currency, at the order date's rate)
        {{ to_reporting_currency('subtotal', 'currency_code', 'fx_date') }} as subtotal_reporting,
        {{ to_reporting_currency('discount', 'currency_code', 'fx_date') }} as discount_reporting,
        {{ to_reporting_currency('shipping', 'currency_code', 'fx_date') }} as shipping_reporting,
        {{ to_reporting_currency('tax', 'currency_code', 'fx_date') }} as tax_reporting,
        {{ to_reporting_currency('total', 'currency_code', 'fx_date') }} as total_reporting,

        ---------- timestamps
        ordered_at,
        {{ utc_date('ordered_at') }} as order_date,
        updated_at,

        ---------- load metadata
        _extracted_at

    from dated

)

select * from renamed
