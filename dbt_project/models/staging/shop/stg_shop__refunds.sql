with

source as (

    select * from {{ source('shop', 'refunds') }}

),

renamed as (

    select
        ---------- ids
        refund_id,
        order_id,

        ---------- properties
        {{ clean_text('reason') }} as reason,

        ---------- numerics (the order's currency: refunds carry none of their own)
        amount,

        ---------- timestamps
        refunded_at,
        {{ utc_date('refunded_at') }} as refund_date,
        updated_at,

        ---------- load metadata
        _extracted_at

    from source

)

select * from renamed
