-- Two independent computations of the same stocks must agree every day: kpi_daily counts
-- active customers from the orders' 180-day windows and advocates from running sums, the
-- stage intervals say who is in which stage at the end of each day (active = conversion,
-- retention, loyalty or reactivated). Returns the days where they differ.

with

kpi_daily as (

    select * from {{ ref('kpi_daily') }}

),

stage_intervals as (

    select * from {{ ref('int_lifecycle__stage_intervals') }}

),

day_ends as (

    select
        date,
        (date + 1)::timestamp at time zone 'UTC' as day_end_at
    from kpi_daily

),

stages_at_day_end as (

    select
        day_ends.date,
        count(*) filter (
            where stage_intervals.stage in ('conversion', 'retention', 'loyalty', 'reactivated')
        ) as active_persons,
        count(*) filter (where stage_intervals.stage = 'loyalty') as loyal_persons
    from day_ends
    inner join stage_intervals
        on
            day_ends.day_end_at > stage_intervals.valid_from
            and (stage_intervals.valid_to is null or day_ends.day_end_at <= stage_intervals.valid_to)
    group by day_ends.date

)

select
    kpi_daily.date,
    kpi_daily.active_customers,
    coalesce(stages_at_day_end.active_persons, 0) as active_persons_by_stage,
    kpi_daily.advocates,
    coalesce(stages_at_day_end.loyal_persons, 0) as loyal_persons_by_stage
from kpi_daily
left join stages_at_day_end on kpi_daily.date = stages_at_day_end.date
where
    kpi_daily.active_customers <> coalesce(stages_at_day_end.active_persons, 0)
    or kpi_daily.advocates <> coalesce(stages_at_day_end.loyal_persons, 0)
