-- One clock for churn: the persons who churned in a month in kpi_monthly (churned_customers,
-- from the orders' activity ends in whole UTC days) are the month's transitions to churned
-- in fct_lifecycle_transitions (the stage history, whose time-outs are the same midnights).
-- Returns the disagreeing months.

with

kpi_monthly as (

    select * from {{ ref('kpi_monthly') }}

),

transitions as (

    select * from {{ ref('fct_lifecycle_transitions') }}

),

to_churned as (

    select
        date_trunc('month', transitioned_at at time zone 'UTC')::date as month,
        count(*) as transitions
    from transitions
    where to_stage = 'churned'
    group by 1

),

compared as (

    select
        coalesce(kpi_monthly.month, to_churned.month) as month,
        coalesce(kpi_monthly.churned_customers, 0) as churned_customers,
        coalesce(to_churned.transitions, 0) as transitions_to_churned
    from kpi_monthly
    full outer join to_churned on kpi_monthly.month = to_churned.month

)

select *
from compared
where churned_customers <> transitions_to_churned
