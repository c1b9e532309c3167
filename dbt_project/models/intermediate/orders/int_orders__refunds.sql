{#- Refunds with their person and an amount in the reporting currency. Refunds carry no
    currency: they are in their order's. They are converted at the order date's rate, like
    the order's revenue, so that a fully refunded order nets to exactly zero. A refund
    counts against revenue only when its order is valid (`is_of_valid_order`): the refund
    of a cancelled order gives back money that was never counted as revenue. -#}

with

refunds as (

    select * from {{ ref('stg_shop__refunds') }}

),

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

shop_customers as (

    select * from {{ ref('int_identity__shop_customers') }}

),

final as (

    select
        refunds.refund_id,
        refunds.order_id,
        shop_customers.customer_key,
        refunds.refunded_at,
        refunds.refund_date,
        refunds.reason,
        refunds.amount,
        coalesce(orders.status in {{ sql_list(var('valid_order_statuses')) }}, false) as is_of_valid_order,
        orders.currency,
        {{ to_reporting_currency(
            'refunds.amount',
            'orders.currency',
            utc_date('coalesce(orders.ordered_at, orders.updated_at)')
        ) }} as amount_reporting
    from refunds
    left join orders
        on refunds.order_id = orders.order_id
    left join shop_customers
        on orders.shop_customer_id = shop_customers.shop_customer_id

)

select * from final
