{#- Cohort month x months since the first order: of the persons whose first valid order
    fell in the cohort month, how many made a valid order in month cohort + k, and their
    cumulative net revenue (revenue minus refunds of valid orders, reporting currency)
    per cohort member up to that month. Month 0 retention is 1 by definition (every member
    ordered in it). The grid runs to the as-of month. -#}

with

as_of as (

    select * from {{ ref('int_lifecycle__as_of') }}

),

orders as (

    select * from {{ ref('int_orders__orders') }}

),

valid_orders as (

    select
        customer_key,
        date_trunc('month', order_date)::date as order_month,
        net_revenue
    from orders
    where is_valid and customer_key is not null

),

cohorts as (

    select
        customer_key,
        min(order_month) as cohort_month
    from valid_orders
    group by customer_key

),

cohort_sizes as (

    select
        cohort_month,
        count(*) as cohort_size
    from cohorts
    group by cohort_month

),

cohort_orders as (

    select
        cohorts.cohort_month,
        valid_orders.customer_key,
        valid_orders.net_revenue,
        (
            (extract(year from valid_orders.order_month) - extract(year from cohorts.cohort_month)) * 12
            + extract(month from valid_orders.order_month) - extract(month from cohorts.cohort_month)
        )::integer as months_since_first_order
    from valid_orders
    inner join cohorts on valid_orders.customer_key = cohorts.customer_key

),

cohort_activity as (

    select
        cohort_month,
        months_since_first_order,
        count(distinct customer_key) as active_customers,
        sum(net_revenue) as net_revenue
    from cohort_orders
    group by cohort_month, months_since_first_order

),

grid as (

    select
        cohort_sizes.cohort_month,
        cohort_sizes.cohort_size,
        months_since_first_order
    from cohort_sizes
    cross join as_of
    cross join generate_series(
        0,
        (
            (extract(year from as_of.as_of_date) - extract(year from cohort_sizes.cohort_month)) * 12
            + extract(month from as_of.as_of_date) - extract(month from cohort_sizes.cohort_month)
        )::integer
    ) as months_since_first_order

),

final as (

    select
        grid.cohort_month,
        grid.months_since_first_order,
        (grid.cohort_month + grid.months_since_first_order * interval '1 month')::date as activity_month,
        grid.cohort_size,
        coalesce(cohort_activity.active_customers, 0) as active_customers,
        coalesce(cohort_activity.active_customers, 0)::numeric / grid.cohort_size as retention_rate,
        sum(coalesce(cohort_activity.net_revenue, 0)) over (
            partition by grid.cohort_month
            order by grid.months_since_first_order
            rows between unbounded preceding and current row
        ) / grid.cohort_size as revenue_per_customer_cumulative
    from grid
    left join cohort_activity
        on
            grid.cohort_month = cohort_activity.cohort_month
            and grid.months_since_first_order = cohort_activity.months_since_first_order

)

select * from final
