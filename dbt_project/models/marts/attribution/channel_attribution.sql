{#- Month x channel x attribution model: conversions (first valid orders) and their
    revenue credited to channels by each model (int_lifecycle__attribution_credits;
    fractional under linear and position_based), next to the month's ad spend of the
    channel. cac = spend / conversions, roas = revenue / spend, NULL when the divisor is 0.
    A month and channel appears when it has a credited conversion or ad spend; the channel
    `direct` holds conversions without any touch and never has spend. -#}

with

credits as (

    select * from {{ ref('int_lifecycle__attribution_credits') }}

),

ad_spends as (

    select * from {{ ref('stg_marketing__ad_spends') }}

),

credited as (

    select
        date_trunc('month', conversion_date)::date as month,
        channel,
        attribution_model,
        sum(weight) as conversions,
        sum(credited_revenue) as revenue
    from credits
    group by date_trunc('month', conversion_date)::date, channel, attribution_model

),

spend as (

    select
        date_trunc('month', spend_date)::date as month,
        channel,
        sum(spend_reporting) as spend
    from ad_spends
    group by date_trunc('month', spend_date)::date, channel

),

spend_by_model as (

    select
        spend.month,
        spend.channel,
        models.attribution_model,
        spend.spend
    from spend
    cross join (
        values ('first_touch'), ('last_touch'), ('linear'), ('position_based')
    ) as models (attribution_model)

),

joined as (

    select
        coalesce(credited.month, spend_by_model.month) as month,
        coalesce(credited.channel, spend_by_model.channel) as channel,
        coalesce(credited.attribution_model, spend_by_model.attribution_model) as attribution_model,
        coalesce(credited.conversions, 0) as conversions,
        coalesce(credited.revenue, 0) as revenue,
        coalesce(spend_by_model.spend, 0) as spend
    from credited
    full outer join spend_by_model
        on
            credited.month = spend_by_model.month
            and credited.channel = spend_by_model.channel
            and credited.attribution_model = spend_by_model.attribution_model

),

final as (

    select
        month,
        channel,
        attribution_model,
        conversions,
        revenue,
        spend,
        spend / nullif(conversions, 0) as cac,
        revenue / nullif(spend, 0) as roas
    from joined

)

select * from final
