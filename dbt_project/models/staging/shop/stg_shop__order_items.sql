with

source as (

    select * from {{ source('shop', 'order_items') }}

),

renamed as (

    select
        ---------- ids
        {{ surrogate_key(['order_id', 'line_number']) }} as order_item_id,
        order_id,
        line_number,
        {{ clean_text('sku') }} as sku,

        ---------- properties
        {{ clean_text('product_name') }} as product_name,
        {{ clean_text('category') }} as category,

        ---------- numerics (the order's currency: lines carry none of their own)
        quantity,
        unit_price,
        quantity * unit_price as line_amount,

        ---------- timestamps
        updated_at,

        ---------- load metadata
        _extracted_at

    from source

)

select * from renamed
