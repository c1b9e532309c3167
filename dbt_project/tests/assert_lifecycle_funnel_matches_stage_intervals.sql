-- The funnel's month-end populations (running sums of transitions) must equal a direct
-- count of the persons whose stage interval covers the end of the month. Returns the
-- month x stage rows that differ.

with

lifecycle_funnel as (

    select * from {{ ref('lifecycle_funnel') }}

),

stage_intervals as (

    select * from {{ ref('int_lifecycle__stage_intervals') }}

),

as_of as (

    select * from {{ ref('int_lifecycle__as_of') }}

),

month_ends as (

    select distinct
        lifecycle_funnel.month,
        least(
            (lifecycle_funnel.month + interval '1 month') at time zone 'UTC',
            as_of.as_of_end_at
        ) as month_end_at
    from lifecycle_funnel
    cross join as_of

),

counted as (

    select
        month_ends.month,
        stage_intervals.stage,
        count(*) as customers
    from month_ends
    inner join stage_intervals
        on
            month_ends.month_end_at > stage_intervals.valid_from
            and (stage_intervals.valid_to is null or month_ends.month_end_at <= stage_intervals.valid_to)
    group by month_ends.month, stage_intervals.stage

)

select
    lifecycle_funnel.month,
    lifecycle_funnel.stage,
    lifecycle_funnel.customers,
    coalesce(counted.customers, 0) as counted_customers
from lifecycle_funnel
left join counted
    on lifecycle_funnel.month = counted.month and lifecycle_funnel.stage = counted.stage
where lifecycle_funnel.customers <> coalesce(counted.customers, 0)
