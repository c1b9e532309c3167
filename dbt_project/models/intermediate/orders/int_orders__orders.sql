{#- One row per shop order, with its person, its amounts in the reporting currency and its
    rank among the person's valid orders (status in var('valid_order_statuses')). -#}

with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

order_items as (

    select * from {{ ref('stg_shop__order_items') }}

),

refunds as (

    select * from {{ ref('int_orders__refunds') }}

),

shop_customers as (

    select * from {{ ref('int_identity__shop_customers') }}

),

items_by_order as (

    select
        order_id,
        coalesce(
            array_agg(distinct category order by category) filter (where category is not null),
            '{}'::text[]
        ) as categories,
        count(*) as items_count,
        coalesce(sum(quantity), 0) as units
    from order_items
    group by order_id

),

refunds_by_order as (

    select
        order_id,
        sum(amount_reporting) as refunded_amount,
        count(*) as refunds_count,
        max(refunded_at) as last_refunded_at
    from refunds
    group by order_id

),

joined as (

    select
        orders.order_id,
        shop_customers.customer_key,
        orders.shop_customer_id,
        orders.ordered_at,
        orders.order_date,
        orders.status,
        orders.status in {{ sql_list(var('valid_order_statuses')) }} as is_valid,
        orders.currency,
        orders.total,
        orders.total_reporting as revenue,
        orders.discount_reporting,
        orders.shipping_reporting,
        orders.tax_reporting,
        coalesce(refunds_by_order.refunded_amount, 0) as refunded_amount,
        coalesce(refunds_by_order.refunds_count, 0) as refunds_count,
        refunds_by_order.last_refunded_at,
        coalesce(items_by_order.categories, '{}'::text[]) as categories,
        coalesce(items_by_order.items_count, 0) as items_count,
        coalesce(items_by_order.units, 0) as units,
        orders.channel,
        orders.coupon_code,
        orders.updated_at
    from orders
    left join shop_customers
        on orders.shop_customer_id = shop_customers.shop_customer_id
    left join items_by_order
        on orders.order_id = items_by_order.order_id
    left join refunds_by_order
        on orders.order_id = refunds_by_order.order_id

),

valid_order_numbers as (

    -- a person's valid orders in time order (ties: order_id); orders without a person
    -- (guest checkouts) are not numbered
    select
        order_id,
        row_number() over (
            partition by customer_key
            order by ordered_at asc, order_id asc
        ) as valid_order_number
    from joined
    where is_valid and customer_key is not null

),

final as (

    select
        ---------- ids
        joined.order_id,
        joined.customer_key,
        joined.shop_customer_id,

        ---------- timing and status
        joined.ordered_at,
        joined.order_date,
        joined.status,
        joined.is_valid,

        ---------- amounts (order currency)
        joined.currency,
        joined.total,

        ---------- amounts (reporting currency)
        joined.revenue,
        joined.discount_reporting,
        joined.shipping_reporting,
        joined.tax_reporting,
        joined.refunded_amount,
        joined.revenue - joined.refunded_amount as net_revenue,
        joined.refunds_count,
        joined.last_refunded_at,

        ---------- sequence
        valid_order_numbers.valid_order_number,
        coalesce(valid_order_numbers.valid_order_number = 1, false) as is_first_order,

        ---------- contents and context
        joined.categories,
        joined.items_count,
        joined.units,
        joined.channel,
        joined.coupon_code,
        joined.updated_at

    from joined
    left join valid_order_numbers
        on joined.order_id = valid_order_numbers.order_id

)

select * from final
