{%- set intervals_model = ref('int_lifecycle__stage_intervals') -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['month', 'stage'],
        post_hook=[
            "delete from {{ this }}
            where
                month < (select date_trunc('month', data_start_date) from {{ ref('int_lifecycle__as_of') }})
                or month > (select as_of_date from {{ ref('int_lifecycle__as_of') }})",
            "{{ change_log_consume(ref('int_lifecycle__stage_intervals')) }}",
        ],
    )
}}

{#- Month x stage: how many persons are in each lifecycle stage at the end of the month,
    how many transitions entered and left it during the month, and the share of the stage's
    population of the month that moved forward.

    "Forward" follows the funnel positions below: awareness 1 < engagement 2 < conversion 3
    = reactivated 3 < retention 4 < loyalty 5, with churned and lapsed at 0 (so churned ->
    reactivated, retention or loyalty is forward, lapsed -> awareness too, and any move
    into churned or lapsed is not: a person who lapsed has left the funnel). Loyalty is the end of
    the funnel: its conversion_to_next_rate is NULL. The month's population of a stage is
    customers_at_start + entered: every forward move consumes one of those stays, so the
    rate is in [0, 1]. Stages are as at the end of the month (of the as-of date for the
    current month); a transition at exactly midnight UTC belongs to the month it starts.

    Incremental, and equal to a full refresh. entered, exited and moved_forward of a month
    are its stored counts plus the counts of the stage intervals changed since the last
    run, as int_lifecycle__stage_intervals' change log says (macros/change_log.sql): -1 as
    they were, +1 as they are. customers are running sums over the table's own rows.
    Everything is recomputed when the intervals were built in full (the log says so) or
    the first month of data moved. Only the months whose row changed are written; months
    outside the data's range are deleted (post-hook), and so are the consumed changes. -#}

{#- stored counts hold only while the first month stays the same -#}
{%- set recompute_all = change_log_recompute_all(intervals_model)
    or first_stored_period_moved(
        'month', "select date_trunc('month', data_start_date)::date from " ~ ref('int_lifecycle__as_of')
    ) %}

with

as_of as (

    select * from {{ ref('int_lifecycle__as_of') }}

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
        ('reactivated', 3, 7),
        ('lapsed', 0, 8)
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

-- the intervals to count, with their sign
counted_intervals as (

    {% if recompute_all %}
        select
            1 as sign,
            stage_intervals.*
        from {{ intervals_model }} as stage_intervals
    {% else %}
        -- changed since the last run: as they were (sign -1) and are (+1)
        {{ change_log_changes(intervals_model) }}
    {% endif %}

),

movements as (

    select
        date_trunc('month', {{ utc_date('valid_from') }})::date as month,
        stage,
        sign as entered,
        0 as exited,
        0 as moved_forward
    from counted_intervals

    union all

    select
        date_trunc('month', {{ utc_date('valid_to') }})::date as month,
        stage,
        0 as entered,
        sign as exited,
        0 as moved_forward
    from counted_intervals
    where valid_to is not null

    union all

    select
        date_trunc('month', {{ utc_date('counted_intervals.valid_from') }})::date as month,
        counted_intervals.previous_stage as stage,
        0 as entered,
        0 as exited,
        counted_intervals.sign as moved_forward
    from counted_intervals
    inner join stages as from_stages on counted_intervals.previous_stage = from_stages.stage
    inner join stages as to_stages on counted_intervals.stage = to_stages.stage
    where to_stages.funnel_position > from_stages.funnel_position

    {% if not recompute_all %}
        union all

        select
            month,
            stage,
            entered,
            exited,
            moved_forward
        from {{ this }}
    {% endif %}

),

month_counts as (

    select
        month,
        stage,
        sum(entered) as entered,
        sum(exited) as exited,
        sum(moved_forward) as moved_forward
    from movements
    group by month, stage

),

grid as (

    select
        months.month,
        stages.stage,
        stages.stage_order,
        stages.stage = 'loyalty' as is_funnel_end,
        coalesce(month_counts.entered, 0)::bigint as entered,
        coalesce(month_counts.exited, 0)::bigint as exited,
        coalesce(month_counts.moved_forward, 0)::bigint as moved_forward
    from months
    cross join stages
    left join month_counts on months.month = month_counts.month and stages.stage = month_counts.stage

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

funnel as (

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

),

final as (

    select funnel.*
    from funnel
    {% if is_incremental() %}
        left join {{ this }} as previous_run
            on funnel.month = previous_run.month and funnel.stage = previous_run.stage
        where
            (
                funnel.stage_order, funnel.customers_at_start, funnel.customers, funnel.entered,
                funnel.exited, funnel.moved_forward, funnel.conversion_to_next_rate
            ) is distinct from (
                previous_run.stage_order, previous_run.customers_at_start, previous_run.customers,
                previous_run.entered, previous_run.exited, previous_run.moved_forward,
                previous_run.conversion_to_next_rate
            )
    {% endif %}

)

select * from final
