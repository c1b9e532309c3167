{#- Month x stage: how many persons are in each lifecycle stage at the end of the month,
    how many transitions entered and left it during the month, and the share of the stage's
    population of the month that moved forward.

    "Forward" follows the funnel positions below: awareness 1 < engagement 2 < conversion 3
    = reactivated 3 < retention 4 < loyalty 5, with churned at 0 (so churned -> reactivated,
    retention or loyalty is forward, and any move into churned is not). Loyalty is the end of
    the funnel: its conversion_to_next_rate is NULL. The month's population of a stage is
    customers_at_start + entered: every forward move consumes one of those stays, so the
    rate is in [0, 1]. Stages are as at the end of the month (of the as-of date for the
    current month); a transition at exactly midnight UTC belongs to the month it starts. -#}

with

as_of as (

    select * from {{ ref('int_lifecycle__as_of') }}

),

stage_intervals as (

    select * from {{ ref('int_lifecycle__stage_intervals') }}

),

stages as (

    select *
    from (
        values
        ('awareness', 1, 1),
        ('engagement', 2, 2),
        ('conversion', 3, 3),
        ('retention', 4, 4),
        ('loyalty', 5, 5),
        ('churned', 0, 6),
        ('reactivated', 3, 7)
    ) as stage_positions (stage, funnel_position, stage_order)

),

months as (

    select month_start::date as month
    from as_of
    cross join generate_series(
        date_trunc('month', as_of.data_start_date)::timestamp,
        date_trunc('month', as_of.as_of_date)::timestamp,
        interval '1 month'
    ) as month_start

),

entries as (

    select
        date_trunc('month', {{ utc_date('valid_from') }})::date as month,
        stage,
        count(*) as entered
    from stage_intervals
    group by date_trunc('month', {{ utc_date('valid_from') }})::date, stage

),

exits as (

    select
        date_trunc('month', {{ utc_date('valid_to') }})::date as month,
        stage,
        count(*) as exited
    from stage_intervals
    where valid_to is not null
    group by date_trunc('month', {{ utc_date('valid_to') }})::date, stage

),

forward_moves as (

    select
        date_trunc('month', {{ utc_date('stage_intervals.valid_from') }})::date as month,
        stage_intervals.previous_stage as stage,
        count(*) as moved_forward
    from stage_intervals
    inner join stages as from_stages on stage_intervals.previous_stage = from_stages.stage
    inner join stages as to_stages on stage_intervals.stage = to_stages.stage
    where to_stages.funnel_position > from_stages.funnel_position
    group by date_trunc('month', {{ utc_date('stage_intervals.valid_from') }})::date, stage_intervals.previous_stage

),

grid as (

    select
        months.month,
        stages.stage,
        stages.stage_order,
        stages.stage = 'loyalty' as is_funnel_end,
        coalesce(entries.entered, 0) as entered,
        coalesce(exits.exited, 0) as exited,
        coalesce(forward_moves.moved_forward, 0) as moved_forward
    from months
    cross join stages
    left join entries on months.month = entries.month and stages.stage = entries.stage
    left join exits on months.month = exits.month and stages.stage = exits.stage
    left join forward_moves
        on months.month = forward_moves.month and stages.stage = forward_moves.stage

),

populations as (

    select
        *,
        (sum(entered - exited) over stage_history)::bigint as customers,
        (sum(entered - exited) over stage_history - entered + exited)::bigint as customers_at_start
    from grid
    window stage_history as (
        partition by stage
        order by month
        rows between unbounded preceding and current row
    )

),

final as (

    select
        month,
        stage,
        stage_order,
        customers_at_start,
        customers,
        entered,
        exited,
        moved_forward,
        case
            when not is_funnel_end
                then moved_forward::numeric / nullif(customers_at_start + entered, 0)
        end as conversion_to_next_rate
    from populations

)

select * from final
