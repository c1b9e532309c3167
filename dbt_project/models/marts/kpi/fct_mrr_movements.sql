{#- Month x person with recurring revenue: MRR at the start and the end of the month and the
    movement between them (reporting currency).

    MRR on a day is the sum of the MRR of the subscription versions that count on it
    (int_subscriptions__mrr_spans: each subscription as it was on that day, a plan changed
    in place from the day of the change, paused versions not at all). The end of a month is
    its last day, the as-of date for the current month; the start of a month is the end of
    the one before. Movements are per person, so a plan change recorded as cancel and
    resubscribe, or a person moving from one shop account to a merged second one, is
    expansion or contraction, not churn plus new: new (0 -> x; includes a person coming
    back), expansion (x -> more), contraction (x -> less, not 0), churned (x -> 0),
    unchanged. Changes within a month that cancel out are not movements.

    A table: rebuilt on every run from the spans (a row per person and month with MRR, a
    few per subscriber), so that every month follows the history the extraction kept. -#}

with

as_of as (

    select * from {{ ref('int_lifecycle__as_of') }}

),

mrr_spans as (

    select * from {{ ref('int_subscriptions__mrr_spans') }}

),

months as (

    select
        month_start::date as month,
        least((month_start + interval '1 month - 1 day')::date, as_of.as_of_date) as month_end_date
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
        mrr_spans.customer_key,
        sum(mrr_spans.mrr) as mrr
    from months
    inner join mrr_spans
        on
            months.month_end_date >= mrr_spans.first_date
            and (mrr_spans.end_date is null or months.month_end_date < mrr_spans.end_date)
    group by months.month, mrr_spans.customer_key

),

previous_month_end_mrr as (

    select
        (month_end_mrr.month + interval '1 month')::date as month,
        month_end_mrr.customer_key,
        month_end_mrr.mrr
    from month_end_mrr
    cross join as_of
    where month_end_mrr.month < date_trunc('month', as_of.as_of_date)::date

),

movements as (

    select
        coalesce(month_end_mrr.month, previous_month_end_mrr.month) as month,
        coalesce(month_end_mrr.customer_key, previous_month_end_mrr.customer_key) as customer_key,
        coalesce(previous_month_end_mrr.mrr, 0) as mrr_start,
        coalesce(month_end_mrr.mrr, 0) as mrr_end
    from month_end_mrr
    full outer join previous_month_end_mrr
        on
            month_end_mrr.month = previous_month_end_mrr.month
            and month_end_mrr.customer_key = previous_month_end_mrr.customer_key

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

final as (

    select
        month,
        customer_key,
        mrr_start,
        mrr_end,
        movement_type,
        case when movement_type = 'new' then mrr_end else 0 end as new_mrr,
        case when movement_type = 'expansion' then mrr_end - mrr_start else 0 end as expansion_mrr,
        case when movement_type = 'contraction' then mrr_start - mrr_end else 0 end as contraction_mrr,
        case when movement_type = 'churned' then mrr_start else 0 end as churned_mrr
    from classified

)

select * from final
