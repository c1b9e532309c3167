{#- One row per conversion x attribution model x credited touch: how much of each
    conversion (a person's first valid order) every model gives each touch.

    Touches: the person's web sessions with campaign tags (any utm_*) or an external
    referrer that started in the var('attribution_window_days') days before the order
    (up to the order instant, the purchase session included). The touch's channel is the
    session's channel (channel_mapping seed). Weights per model, for n touches in time
    order: first_touch 1 to the first; last_touch 1 to the last; linear 1/n each;
    position_based 100 % with one touch, 50/50 with two, else 40 % first, 40 % last and
    20 % spread evenly over the n - 2 middle ones. A conversion without any touch is
    credited in full to channel `direct` (session_id NULL) in every model, so each
    conversion's weights sum to 1 in every model. -#}

with

orders as (

    select * from {{ ref('int_orders__orders') }}

),

sessions as (

    select * from {{ ref('int_web__sessions') }}

),

conversions as (

    select
        order_id,
        customer_key,
        ordered_at,
        order_date,
        revenue
    from orders
    where is_valid and valid_order_number = 1

),

touch_sessions as (

    select
        session_id,
        customer_key,
        session_started_at,
        channel
    from sessions
    where
        customer_key is not null
        and (
            utm_source is not null
            or utm_medium is not null
            or utm_campaign is not null
            or utm_content is not null
            or utm_term is not null
            or referrer_domain is not null
        )

),

touches as (

    select
        conversions.order_id,
        touch_sessions.session_id,
        touch_sessions.channel,
        row_number() over conversion_touches as touch_number,
        count(*) over (partition by conversions.order_id) as touch_count
    from conversions
    inner join touch_sessions
        on
            conversions.customer_key = touch_sessions.customer_key
            and conversions.ordered_at >= touch_sessions.session_started_at
            and conversions.ordered_at - {{ var('attribution_window_days') }} * interval '24 hours'
            <= touch_sessions.session_started_at
    window conversion_touches as (
        partition by conversions.order_id
        order by touch_sessions.session_started_at, touch_sessions.session_id
    )

),

models as (

    select attribution_model
    from (
        values ('first_touch'), ('last_touch'), ('linear'), ('position_based')
    ) as attribution_models (attribution_model)

),

touch_weights as (

    select
        touches.order_id,
        models.attribution_model,
        touches.session_id,
        touches.channel,
        touches.touch_number,
        touches.touch_count,
        case
            when models.attribution_model = 'first_touch'
                then case when touches.touch_number = 1 then 1.0 else 0.0 end
            when models.attribution_model = 'last_touch'
                then case when touches.touch_number = touches.touch_count then 1.0 else 0.0 end
            when models.attribution_model = 'linear'
                then 1.0 / touches.touch_count
            when touches.touch_count = 1 then 1.0
            when touches.touch_count = 2 then 0.5
            when touches.touch_number in (1, touches.touch_count) then 0.4
            else 0.2 / (touches.touch_count - 2)
        end as weight
    from touches
    cross join models

),

untouched as (

    select
        conversions.order_id,
        models.attribution_model,
        null as session_id,
        'direct' as channel,
        null::bigint as touch_number,
        0::bigint as touch_count,
        1.0 as weight
    from conversions
    cross join models
    left join touches on conversions.order_id = touches.order_id
    where touches.order_id is null

),

credits as (

    select * from touch_weights
    where weight > 0

    union all

    select * from untouched

),

final as (

    select
        {{ surrogate_key(['credits.order_id', 'credits.attribution_model', 'credits.session_id']) }}
            as credit_id,
        credits.order_id,
        conversions.customer_key,
        conversions.ordered_at as converted_at,
        conversions.order_date as conversion_date,
        credits.attribution_model,
        credits.session_id,
        credits.channel,
        credits.touch_number,
        credits.touch_count,
        credits.weight,
        conversions.revenue * credits.weight as credited_revenue
    from credits
    inner join conversions on credits.order_id = conversions.order_id

)

select * from final
