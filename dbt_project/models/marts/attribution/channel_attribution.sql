{%- set contributions_model = ref('int_kpi__contributions') -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        indexes=[
            {'columns': ['month']},
        ],
        pre_hook=[
            "{{ change_log_delete_recomputed(
                ref('int_kpi__contributions'), 'month', channel_changed_months(ref('int_kpi__contributions')),
            ) }}",
        ],
        post_hook=["{{ change_log_consume(ref('int_kpi__contributions')) }}"],
    )
}}

{#- Month x channel x attribution model: conversions (first valid orders) and their
    revenue credited to channels by each model (int_lifecycle__attribution_credits;
    fractional under linear and position_based), next to the month's ad spend of the
    channel. cac = spend / conversions, roas = revenue / spend, NULL when the divisor or the
    spend is 0 (organic channels have neither).
    A month and channel appears when it has a credited conversion or ad spend; the channel
    `direct` holds conversions without any touch and never has spend.

    Read from int_kpi__contributions (its attribution_credit and ad_spend rows).
    Incremental, and equal to a full refresh: a run recomputes only the months of the
    credits and ad spend changed since the last run, as the contributions' change log says
    (macros/change_log.sql), from their contributions; the pre-hook deletes those months'
    stored rows, in the transaction of the insert (change_log_delete_recomputed). Every
    month when the contributions were built in full (the log says so). -#}

{%- set recompute_all = change_log_recompute_all(contributions_model) %}

with

contributions as not materialized (

    select * from {{ contributions_model }}

),

{% if not recompute_all %}

    -- months of the credits and ad spend changed since the last run (as they were and are)
    changed_months as (

        {{ channel_changed_months(contributions_model) }}

    ),

{% endif %}

channel_contributions as (

    {% if recompute_all %}
        select * from contributions
        where contribution_type in ('attribution_credit', 'ad_spend')
    {% else %}
        -- one range lookup per month, through the (contribution_type, date_day) index
        select month_contributions.*
        from changed_months
        cross join lateral (
            select * from contributions
            where
                contributions.contribution_type in ('attribution_credit', 'ad_spend')
                and contributions.date_day >= changed_months.changed_key
                and contributions.date_day < (changed_months.changed_key + interval '1 month')::date
        ) as month_contributions
    {% endif %}

),

credited as (

    select
        date_trunc('month', date_day)::date as month,
        channel,
        attribution_model,
        sum(credited_conversions) as conversions,
        sum(credited_revenue) as revenue
    from channel_contributions
    where contribution_type = 'attribution_credit'
    group by date_trunc('month', date_day)::date, channel, attribution_model

),

spend as (

    select
        date_trunc('month', date_day)::date as month,
        channel,
        sum(ad_spend) as spend
    from channel_contributions
    where contribution_type = 'ad_spend'
    group by date_trunc('month', date_day)::date, channel

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
        -- a channel without spend (organic) has no acquisition cost and no return on it
        nullif(spend, 0) / nullif(conversions, 0) as cac,
        revenue / nullif(spend, 0) as roas
    from joined

)

select * from final
