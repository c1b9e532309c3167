-- Net revenue is revenue of valid orders minus the refunds of valid orders (a refund of a
-- cancelled order gives back money that never counted), and every mart that shows it
-- agrees: per person, dim_customers with the valid orders of fct_orders; per cohort,
-- cohort_retention with them; in total, kpi_daily (refunds by refund day, up to the as-of
-- date) with them. Returns the disagreeing persons, cohorts or totals.

with

fct_orders as (

    select * from {{ ref('fct_orders') }}

),

dim_customers as (

    select * from {{ ref('dim_customers') }}

),

cohort_retention as (

    select * from {{ ref('cohort_retention') }}

),

kpi_daily as (

    select * from {{ ref('kpi_daily') }}

),

refunds as (

    select * from {{ ref('int_orders__refunds') }}

),

as_of as (

    select * from {{ ref('int_lifecycle__as_of') }}

),

valid_orders as (

    select
        *,
        date_trunc('month', min(order_date) over (partition by customer_key))::date as cohort_month
    from fct_orders
    where is_valid

),

by_person as (

    select
        'person ' || coalesce(valid_orders.customer_key, dim_customers.customer_key) as what,
        coalesce(sum(valid_orders.net_revenue), 0) as from_orders,
        coalesce(max(dim_customers.net_revenue), 0) as from_mart
    from valid_orders
    full outer join dim_customers on valid_orders.customer_key = dim_customers.customer_key
    where valid_orders.customer_key is not null or dim_customers.net_revenue <> 0
    group by coalesce(valid_orders.customer_key, dim_customers.customer_key)

),

cohort_orders as (

    select
        cohort_month,
        sum(net_revenue) as net_revenue
    from valid_orders
    where customer_key is not null
    group by cohort_month

),

cohorts as (

    select
        cohort_month,
        sum(net_revenue) as net_revenue
    from cohort_retention
    group by cohort_month

),

by_cohort as (

    select
        'cohort ' || coalesce(cohort_orders.cohort_month, cohorts.cohort_month) as what,
        coalesce(cohort_orders.net_revenue, 0) as from_orders,
        coalesce(cohorts.net_revenue, 0) as from_mart
    from cohort_orders
    full outer join cohorts on cohort_orders.cohort_month = cohorts.cohort_month

),

-- refunds of valid orders made after the as-of date (or undated) are not in kpi_daily
later_refunds as (

    select coalesce(sum(refunds.amount_reporting), 0) as amount
    from refunds
    cross join as_of
    where
        refunds.is_of_valid_order
        and (refunds.refund_date is null or refunds.refund_date > as_of.as_of_date)

),

totals as (

    select
        'total' as what,
        (select sum(valid_orders.net_revenue) as amount from valid_orders)
        + (select later_refunds.amount from later_refunds) as from_orders,
        (select sum(kpi_daily.net_revenue) as amount from kpi_daily) as from_mart

),

compared as (

    select * from by_person
    union all
    select * from by_cohort
    union all
    select * from totals

)

select *
from compared
where abs(coalesce(from_orders, 0) - coalesce(from_mart, 0)) > 0.01
