{#- The BI contract of docs/sources.md §3: one row per shop order, money in the reporting
    currency. Columns may be added; renaming or removing one needs a new model version. -#}

with

orders as (

    select * from {{ ref('int_orders__orders') }}

),

final as (

    select
        order_id,
        customer_key,
        shop_customer_id,
        ordered_at,
        order_date,
        status,
        is_valid,
        currency,
        total,
        revenue,
        discount_reporting,
        shipping_reporting,
        tax_reporting,
        refunded_amount,
        net_revenue,
        is_first_order,
        valid_order_number,
        items_count,
        units,
        categories,
        channel,
        coupon_code
    from orders

)

select * from final
