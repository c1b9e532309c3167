{%- set contributions_model = ref('int_kpi__contributions') -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['cohort_month', 'months_since_first_order'],
        post_hook=[
            "delete from {{ this }}
            where
                cohort_size = 0
                or activity_month > (select as_of_date from {{ ref('int_lifecycle__as_of') }})",
            "{{ change_log_consume(ref('int_kpi__contributions')) }}",
        ],
    )
}}

{#- Cohort month x months since the first order: of the persons whose first valid order
    fell in the cohort month, how many made a valid order in month cohort + k, the cohort's
    net revenue (revenue minus refunds of valid orders, reporting currency) in that month,
    and its cumulative net revenue per cohort member up to that month. Month 0 retention is
    1 by definition (every member ordered in it). The grid runs to the as-of month.

    Read from the order rows of int_kpi__contributions: each valid order of a person
    carries its person's cohort month, whether it is their first of its calendar month
    (active_customers counts those) and its net revenue; a first order (new_customers)
    counts one cohort member. Incremental, and equal to a full refresh: a month's counts
    and net revenue are its stored ones plus those of the order rows changed since the last
    run, as the contributions' change log says (macros/change_log.sql), -1 as they were and
    +1 as they are; the cumulative revenue is a running sum over the table's own rows. A
    cohort left with no member is written with cohort_size 0 and deleted by the post-hook,
    like the months after the as-of month. Everything is recomputed when the contributions
    were built in full (the log says so). Only the rows whose values changed are written. -#}

{%- do require_stored_columns(['net_revenue']) -%}
{%- set recompute_all = change_log_recompute_all(contributions_model) %}

with

as_of as (

    select * from {{ ref('int_lifecycle__as_of') }}

),

-- the order rows to count, with their sign
counted_orders as (

    {% if recompute_all %}
        select
            1 as sign,
            contributions.*
        from {{ contributions_model }} as contributions
        where contributions.contribution_type = 'order' and contributions.cohort_month is not null
    {% else %}
        -- changed since the last run: as they were (sign -1) and are (+1)
        select * from ({{ change_log_changes(contributions_model) }}) as changes
        where changes.contribution_type = 'order' and changes.cohort_month is not null
    {% endif %}

),

movements as (

    select
        cohort_month,
        (
            (extract(year from date_day) - extract(year from cohort_month)) * 12
            + extract(month from date_day) - extract(month from cohort_month)
        )::integer as months_since_first_order,
        sign * new_customers as cohort_members,
        sign * first_order_of_month as active_customers,
        sign * order_net_revenue as net_revenue
    from counted_orders

    {% if not recompute_all %}
        union all

        select
            cohort_month,
            months_since_first_order,
            case when months_since_first_order = 0 then cohort_size else 0 end as cohort_members,
            active_customers,
            net_revenue
        from {{ this }}
    {% endif %}

),

cohort_activity as (

    select
        cohort_month,
        months_since_first_order,
        sum(cohort_members) as cohort_members,
        sum(active_customers) as active_customers,
        sum(net_revenue) as net_revenue
    from movements
    group by cohort_month, months_since_first_order

),

-- a cohort's members count in its month 0
cohort_sizes as (

    select
        cohort_month,
        sum(cohort_members)::bigint as cohort_size
    from cohort_activity
    group by cohort_month

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

cohorts as (

    select
        grid.cohort_month,
        grid.months_since_first_order,
        (grid.cohort_month + grid.months_since_first_order * interval '1 month')::date as activity_month,
        grid.cohort_size,
        coalesce(cohort_activity.active_customers, 0)::bigint as active_customers,
        coalesce(cohort_activity.active_customers, 0)::numeric / nullif(grid.cohort_size, 0) as retention_rate,
        coalesce(cohort_activity.net_revenue, 0) as net_revenue,
        sum(coalesce(cohort_activity.net_revenue, 0)) over (
            partition by grid.cohort_month
            order by grid.months_since_first_order
            rows between unbounded preceding and current row
        ) / nullif(grid.cohort_size, 0) as revenue_per_customer_cumulative
    from grid
    left join cohort_activity
        on
            grid.cohort_month = cohort_activity.cohort_month
            and grid.months_since_first_order = cohort_activity.months_since_first_order

),

final as (

    select cohorts.*
    from cohorts
    {% if is_incremental() %}
        left join {{ this }} as previous_run
            on
                cohorts.cohort_month = previous_run.cohort_month
                and cohorts.months_since_first_order = previous_run.months_since_first_order
        where
            (
                cohorts.activity_month, cohorts.cohort_size, cohorts.active_customers,
                cohorts.retention_rate, cohorts.net_revenue, cohorts.revenue_per_customer_cumulative
            ) is distinct from (
                previous_run.activity_month, previous_run.cohort_size, previous_run.active_customers,
                previous_run.retention_rate, previous_run.net_revenue,
                previous_run.revenue_per_customer_cumulative
            )
    {% endif %}

)

select * from final
