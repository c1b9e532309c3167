{%- set contributions_model = ref('int_kpi__contributions') -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['month', 'shop_customer_id'],
        indexes=[
            {'columns': ['shop_customer_id']},
        ],
        post_hook=[
            "delete from {{ this }}
            where
                (mrr_start = 0 and mrr_end = 0)
                or month > (select as_of_date from {{ ref('int_lifecycle__as_of') }})",
            "{{ change_log_consume(ref('int_kpi__contributions')) }}",
        ],
    )
}}

{#- Month x subscribing shop customer: MRR at the start and the end of the month and the
    movement between them (reporting currency).

    MRR at an instant is the sum of `mrr` of the customer's subscriptions started before it
    and not canceled by it (docs/kpis.md; paused subscriptions count, a subscription with
    status canceled but no canceled_at ends at its last change). The end of a month is the
    end of its last day, of the as-of date for the current month; the start of a month is
    the end of the previous one. Movements are per customer, so a plan change recorded as
    cancel-and-resubscribe is expansion or contraction, not churn plus new:
    new (0 -> x; includes a customer coming back), expansion (x -> more), contraction
    (x -> less, not 0), churned (x -> 0), unchanged. Changes within a month that cancel
    out are not movements. The shop table holds the current state of each subscription: an
    in-place change of `mrr` rewrites its history (a snapshot of the shop table would be
    needed to keep it).

    Incremental, and equal to a full refresh. A run recomputes every month of the customers
    whose subscriptions changed since the last run (their subscription rows in
    int_kpi__contributions' change log, macros/change_log.sql: MRR, start or end day,
    customer or person), and the months from the as-of month of the last run on for every
    customer (the as-of date moves the current month's end, and a scheduled cancellation
    takes effect without any change). A stored row of those that no longer exists is
    written with zero MRR and deleted by the post-hook, like the months after the as-of
    month. Everything when the contributions were built in full (the log says so). -#}

{%- set recompute_all = change_log_recompute_all(contributions_model) %}

with

as_of as (

    select * from {{ ref('int_lifecycle__as_of') }}

),

subscriptions as (

    select * from {{ ref('stg_shop__subscriptions') }}

),

shop_customers as (

    select * from {{ ref('int_identity__shop_customers') }}

),

{% if not recompute_all %}

    -- customers whose subscriptions changed since the last run (as they were and are)
    changed_customers as (

        {{ change_log_changed_keys(
            contributions_model,
            'shop_customer_id',
            "contribution_type in ('subscription_start', 'subscription_end') and shop_customer_id is not null",
        ) }}

    ),

    -- every customer's months from the as-of month of the last run (or of this one) on
    recomputed_months as (

        -- (least ignores NULL: an empty table starts from the as-of month)
        select
            least(
                (select max(previous_run.month) as last_month from {{ this }} as previous_run),
                date_trunc('month', as_of.as_of_date)::date
            ) as first_month
        from as_of

    ),

{% endif %}

subscription_spans as (

    select
        subscription_id,
        shop_customer_id,
        coalesce(mrr_reporting, 0) as mrr,
        started_at,
        coalesce(canceled_at, case when status = 'canceled' then updated_at end) as ended_at
    from subscriptions
    where started_at is not null and shop_customer_id is not null

),

months as (

    select
        month_start::date as month,
        least(
            (month_start + interval '1 month') at time zone 'UTC',
            as_of.as_of_end_at
        ) as month_end_at
    from as_of
    cross join generate_series(
        date_trunc('month', as_of.data_start_date)::timestamp,
        date_trunc('month', as_of.as_of_date)::timestamp,
        interval '1 month'
    ) as month_start

),

month_end_mrr as (

    select
        months.month,
        subscription_spans.shop_customer_id,
        sum(subscription_spans.mrr) as mrr
    from months
    inner join subscription_spans
        on
            months.month_end_at > subscription_spans.started_at
            and (
                subscription_spans.ended_at is null
                or months.month_end_at <= subscription_spans.ended_at
            )
    {% if not recompute_all %}
        where
            subscription_spans.shop_customer_id in (select changed_key from changed_customers)
            -- (and the month before, the start of the first month recomputed)
            or months.month >= (select (first_month - interval '1 month')::date as month_before from recomputed_months)
    {% endif %}
    group by months.month, subscription_spans.shop_customer_id

),

previous_month_end_mrr as (

    select
        (month_end_mrr.month + interval '1 month')::date as month,
        month_end_mrr.shop_customer_id,
        month_end_mrr.mrr
    from month_end_mrr
    cross join as_of
    where month_end_mrr.month < date_trunc('month', as_of.as_of_date)::date

),

movements as (

    select
        coalesce(month_end_mrr.month, previous_month_end_mrr.month) as month,
        coalesce(month_end_mrr.shop_customer_id, previous_month_end_mrr.shop_customer_id)
            as shop_customer_id,
        coalesce(previous_month_end_mrr.mrr, 0) as mrr_start,
        coalesce(month_end_mrr.mrr, 0) as mrr_end
    from month_end_mrr
    full outer join previous_month_end_mrr
        on
            month_end_mrr.month = previous_month_end_mrr.month
            and month_end_mrr.shop_customer_id = previous_month_end_mrr.shop_customer_id

),

classified as (

    select
        *,
        case
            when mrr_start = 0 and mrr_end > 0 then 'new'
            when mrr_start > 0 and mrr_end = 0 then 'churned'
            when mrr_end > mrr_start then 'expansion'
            when mrr_end < mrr_start then 'contraction'
            else 'unchanged'
        end as movement_type
    from movements
    where mrr_start > 0 or mrr_end > 0

),

mrr_movements as (

    select
        classified.month,
        classified.shop_customer_id,
        shop_customers.customer_key,
        classified.mrr_start,
        classified.mrr_end,
        classified.movement_type,
        case when classified.movement_type = 'new' then classified.mrr_end else 0 end as new_mrr,
        case
            when classified.movement_type = 'expansion' then classified.mrr_end - classified.mrr_start
            else 0
        end as expansion_mrr,
        case
            when classified.movement_type = 'contraction' then classified.mrr_start - classified.mrr_end
            else 0
        end as contraction_mrr,
        case when classified.movement_type = 'churned' then classified.mrr_start else 0 end as churned_mrr
    from classified
    left join shop_customers on classified.shop_customer_id = shop_customers.shop_customer_id

),

final as (

    select * from mrr_movements
    {% if not recompute_all %}
        where
            shop_customer_id in (select changed_key from changed_customers)
            or month >= (select first_month from recomputed_months)

        union all

        -- stored rows recomputed away: zero MRR, deleted by the post-hook
        select
            previous_run.month,
            previous_run.shop_customer_id,
            previous_run.customer_key,
            0 as mrr_start,
            0 as mrr_end,
            'unchanged' as movement_type,
            0 as new_mrr,
            0 as expansion_mrr,
            0 as contraction_mrr,
            0 as churned_mrr
        from {{ this }} as previous_run
        left join mrr_movements
            on
                previous_run.month = mrr_movements.month
                and previous_run.shop_customer_id = mrr_movements.shop_customer_id
        where
            (
                previous_run.shop_customer_id in (select changed_key from changed_customers)
                or previous_run.month >= (select first_month from recomputed_months)
            )
            and mrr_movements.month is null
    {% endif %}

)

select * from final
