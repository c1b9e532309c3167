-- Two independent computations of the same stocks must agree every day: kpi_daily counts
-- active customers from the orders' 180-day windows and advocates from running sums, the
-- stage intervals say who is in which stage at the end of each day (active = conversion,
-- retention, loyalty or reactivated). Returns the days where they differ.
--
-- An interval holds at the end of day d when valid_from < d + 1 <= valid_to, that is for
-- d from the UTC date of valid_from to the day before the UTC date of valid_to: counted as
-- running sums of +1 / -1 by day, which costs days + intervals, not days × intervals.
-- Only intervals of an active stage move either count (loyalty is one of them), so only
-- those are read: at a year most intervals are anonymous visitors' awareness and engagement.

with

kpi_daily as (

    select * from {{ ref('kpi_daily') }}

),

active_intervals as (

    select * from {{ ref('int_lifecycle__stage_intervals') }}
    where stage in ('conversion', 'retention', 'loyalty', 'reactivated')

),

stage_changes as (

    select
        {{ utc_date('valid_from') }} as date,
        1 as active_delta,
        case when stage = 'loyalty' then 1 else 0 end as loyal_delta
    from active_intervals

    union all

    select
        {{ utc_date('valid_to') }} as date,
        -1 as active_delta,
        case when stage = 'loyalty' then -1 else 0 end as loyal_delta
    from active_intervals
    where valid_to is not null

),

first_kpi_day as (

    select min(date) as date from kpi_daily

),

stage_change_days as (

    -- changes before the first KPI day count from that day on
    select
        greatest(stage_changes.date, first_kpi_day.date) as date,
        sum(stage_changes.active_delta) as active_delta,
        sum(stage_changes.loyal_delta) as loyal_delta
    from stage_changes
    cross join first_kpi_day
    group by greatest(stage_changes.date, first_kpi_day.date)

),

stages_at_day_end as (

    select
        kpi_daily.date,
        sum(coalesce(stage_change_days.active_delta, 0)) over running as active_persons,
        sum(coalesce(stage_change_days.loyal_delta, 0)) over running as loyal_persons
    from kpi_daily
    left join stage_change_days on kpi_daily.date = stage_change_days.date
    window running as (order by kpi_daily.date rows between unbounded preceding and current row)

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
