-- MRR at the end of a month = MRR at the end of the previous month + new + expansion -
-- contraction - churned, and equals the sum of the customers' MRR in fct_mrr_movements
-- (kpi_monthly takes MRR from kpi_daily's running sums, the movements from
-- fct_mrr_movements: two computations). Returns the months where they differ.

with

kpi_monthly as (

    select * from {{ ref('kpi_monthly') }}

),

mrr_movements as (

    select * from {{ ref('fct_mrr_movements') }}

),

rolled as (

    select
        month,
        mrr,
        coalesce(lag(mrr) over (order by month), 0)
        + new_mrr + expansion_mrr - contraction_mrr - churned_mrr as rolled_forward_mrr
    from kpi_monthly

),

customer_sums as (

    select
        month,
        sum(mrr_end) as mrr
    from mrr_movements
    group by month

)

select
    rolled.month,
    rolled.mrr,
    rolled.rolled_forward_mrr,
    customer_sums.mrr as sum_of_customer_mrr
from rolled
left join customer_sums on rolled.month = customer_sums.month
where
    rolled.mrr <> rolled.rolled_forward_mrr
    or rolled.mrr <> coalesce(customer_sums.mrr, 0)
