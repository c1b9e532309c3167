-- kpi_monthly computes its flows from the events of the month and its retention base from
-- the orders directly; kpi_daily computes them per day. They must agree: additive flows
-- sum up, and the persons active at the start of a month are kpi_daily's active customers
-- on the day before. Returns the months where they differ.

with

kpi_daily as (

    select * from {{ ref('kpi_daily') }}

),

kpi_monthly as (

    select * from {{ ref('kpi_monthly') }}

),

daily_sums as (

    select
        date_trunc('month', date)::date as month,
        sum(orders) as orders,
        sum(revenue) as revenue,
        sum(refunds) as refunds,
        sum(new_customers) as new_customers,
        sum(new_contacts) as new_contacts,
        sum(ad_impressions) as ad_impressions,
        sum(ad_clicks) as ad_clicks,
        sum(ad_spend) as ad_spend,
        sum(referrals) as referrals
    from kpi_daily
    group by date_trunc('month', date)::date

),

previous_day_stocks as (

    select
        (date + 1) as month,
        active_customers
    from kpi_daily
    where extract(day from date + 1) = 1

)

select
    kpi_monthly.month,
    'flows' as check_name
from kpi_monthly
inner join daily_sums on kpi_monthly.month = daily_sums.month
where
    (
        kpi_monthly.orders, kpi_monthly.revenue, kpi_monthly.refunds, kpi_monthly.new_customers,
        kpi_monthly.new_contacts, kpi_monthly.ad_impressions, kpi_monthly.ad_clicks,
        kpi_monthly.ad_spend, kpi_monthly.referrals
    ) is distinct from (
        daily_sums.orders, daily_sums.revenue, daily_sums.refunds, daily_sums.new_customers,
        daily_sums.new_contacts, daily_sums.ad_impressions, daily_sums.ad_clicks,
        daily_sums.ad_spend, daily_sums.referrals
    )

union all

select
    kpi_monthly.month,
    'active_customers_at_start' as check_name
from kpi_monthly
inner join previous_day_stocks on kpi_monthly.month = previous_day_stocks.month
where kpi_monthly.active_customers_at_start <> previous_day_stocks.active_customers
