{#-
    Lifecycle stage history as validity intervals, computed from change points.

    Every rule of docs/kpis.md is turned into "conditions": intervals [starts_at, ends_at)
    during which one fact holds (an order makes the person active for 180 days, a promoter
    NPS answer holds until the next NPS answer, ...). Each condition contributes +1 at its
    start and -1 at its end; running sums over a person's change instants say, at every
    instant, how many conditions of each kind hold. The stage is a function of those counts,
    and consecutive instants with the same stage collapse into one interval. Time-outs are
    ordinary change instants (an end), so they are caught without one row per person per day.

    Windows are added as multiples of 24 hours: a day interval follows daylight saving time
    in a non-UTC session, 24 hours does not.
-#}
{%- set active_window = var('active_window_days') ~ " * interval '24 hours'" -%}
{%- set engagement_window = var('engagement_window_days') ~ " * interval '24 hours'" -%}
{%- set loyalty_window = var('loyalty_window_days') ~ " * interval '24 hours'" -%}
{%- set reactivated_window = var('reactivated_days') ~ " * interval '24 hours'" -%}

with

as_of as (

    select as_of_end_at from {{ ref('int_lifecycle__as_of') }}

),

persons as (

    select
        customer_key,
        contact_id,
        first_seen_at
    from {{ ref('int_identity__persons') }}

),

valid_orders as (

    select
        order_id,
        customer_key,
        ordered_at
    from {{ ref('int_orders__orders') }}
    where is_valid and customer_key is not null and ordered_at is not null

),

sessions as (

    select
        session_id,
        customer_key,
        session_started_at
    from {{ ref('int_web__sessions') }}
    where customer_key is not null

),

-- A session's engagement signal events (view_item, add_to_cart, begin_checkout, sign_up)
-- as one condition from its first to its last signal: a session lasts far less than the
-- engagement window, so the union of the events' windows is the same before the person's
-- first order, and after it the condition no longer decides the stage. Reading sessions,
-- not events, keeps this model off the event-grain tables.
web_signal_sessions as (

    select
        customer_key,
        first_engagement_signal_at,
        last_engagement_signal_at
    from {{ ref('int_web__sessions') }}
    where customer_key is not null and first_engagement_signal_at is not null

),

email_clicks as (

    select
        contact_id,
        occurred_at
    from {{ ref('stg_crm__email_events') }}
    where event_type = 'click'

),

survey_responses as (

    select
        survey_response_id,
        contact_id,
        survey_type,
        score,
        submitted_at
    from {{ ref('stg_crm__survey_responses') }}

),

referrals as (

    select
        contact_id,
        occurred_at
    from {{ ref('stg_crm__loyalty_events') }}
    where event_type = 'referral'

),

-- CRM facts belong to the person that holds the contact.
contact_survey_responses as (

    select
        persons.customer_key,
        survey_responses.survey_response_id,
        survey_responses.survey_type,
        survey_responses.score,
        survey_responses.submitted_at
    from survey_responses
    inner join persons on survey_responses.contact_id = persons.contact_id

),

orders_sequenced as (

    select
        customer_key,
        ordered_at,
        lag(ordered_at) over customer_orders as previous_ordered_at,
        -- With this order, the person has loyalty_min_orders_365d orders since this one.
        lag(ordered_at, {{ (var('loyalty_min_orders_365d') | int) - 1 }})
            over customer_orders as window_first_ordered_at
    from valid_orders
    window customer_orders as (partition by customer_key order by ordered_at, order_id)

),

first_orders as (

    select
        customer_key,
        min(ordered_at) as first_ordered_at
    from valid_orders
    group by customer_key

),

-- Engagement signals only matter before the first valid order (the rule requires none).
single_signals as (

    select
        customer_key,
        first_engagement_signal_at as signaled_at,
        last_engagement_signal_at as last_signaled_at
    from web_signal_sessions

    union all

    select
        persons.customer_key,
        email_clicks.occurred_at as signaled_at,
        email_clicks.occurred_at as last_signaled_at
    from email_clicks
    inner join persons on email_clicks.contact_id = persons.contact_id

    union all

    select
        customer_key,
        submitted_at as signaled_at,
        submitted_at as last_signaled_at
    from contact_survey_responses

),

pre_order_sessions as (

    select
        sessions.customer_key,
        sessions.session_started_at,
        -- The session that, with this one, makes engagement_min_sessions in the window.
        lag(sessions.session_started_at, {{ (var('engagement_min_sessions') | int) - 1 }}) over (
            partition by sessions.customer_key
            order by sessions.session_started_at, sessions.session_id
        ) as window_first_session_at
    from sessions
    left join first_orders on sessions.customer_key = first_orders.customer_key
    where
        first_orders.first_ordered_at is null
        or sessions.session_started_at < first_orders.first_ordered_at

),

nps_answers as (

    select
        customer_key,
        score,
        submitted_at,
        lead(submitted_at) over (
            partition by customer_key order by submitted_at, survey_response_id
        ) as next_submitted_at
    from contact_survey_responses
    where survey_type = 'nps'

),

-- One row per condition interval [starts_at, ends_at); ends_at null = open-ended.
conditions as (

    select
        customer_key,
        'known' as condition,
        first_seen_at as starts_at,
        null::timestamptz as ends_at,
        'first_seen' as start_reason,
        null as end_reason
    from persons
    where first_seen_at is not null

    union all

    select
        customer_key,
        'valid_order' as condition,
        ordered_at as starts_at,
        null::timestamptz as ends_at,
        'valid_order' as start_reason,
        null as end_reason
    from valid_orders

    union all

    select
        customer_key,
        'active' as condition,
        ordered_at as starts_at,
        ordered_at + {{ active_window }} as ends_at,
        'valid_order' as start_reason,
        'active_window_expired' as end_reason
    from valid_orders

    union all

    -- A valid order made while churned (no valid order in the active window before it).
    select
        customer_key,
        'reactivated' as condition,
        ordered_at as starts_at,
        ordered_at + {{ reactivated_window }} as ends_at,
        'valid_order' as start_reason,
        'reactivated_window_expired' as end_reason
    from orders_sequenced
    where previous_ordered_at < ordered_at - {{ active_window }}

    union all

    select
        customer_key,
        'loyal' as condition,
        ordered_at as starts_at,
        window_first_ordered_at + {{ loyalty_window }} as ends_at,
        'valid_order' as start_reason,
        'loyalty_window_expired' as end_reason
    from orders_sequenced
    where window_first_ordered_at + {{ loyalty_window }} > ordered_at

    union all

    select
        persons.customer_key,
        'loyal' as condition,
        referrals.occurred_at as starts_at,
        referrals.occurred_at + {{ loyalty_window }} as ends_at,
        'referral' as start_reason,
        'loyalty_window_expired' as end_reason
    from referrals
    inner join persons on referrals.contact_id = persons.contact_id

    union all

    -- A promoter answer holds until the person's next NPS answer.
    select
        customer_key,
        'loyal' as condition,
        submitted_at as starts_at,
        next_submitted_at as ends_at,
        'nps_answer' as start_reason,
        'nps_answer' as end_reason
    from nps_answers
    where score >= {{ var('loyalty_nps_min_score') }}

    union all

    select
        single_signals.customer_key,
        'engaged' as condition,
        single_signals.signaled_at as starts_at,
        single_signals.last_signaled_at + {{ engagement_window }} as ends_at,
        'engagement_signal' as start_reason,
        'engagement_window_expired' as end_reason
    from single_signals
    left join first_orders on single_signals.customer_key = first_orders.customer_key
    where
        first_orders.first_ordered_at is null
        or single_signals.signaled_at < first_orders.first_ordered_at

    union all

    select
        customer_key,
        'engaged' as condition,
        session_started_at as starts_at,
        window_first_session_at + {{ engagement_window }} as ends_at,
        'engagement_signal' as start_reason,
        'engagement_window_expired' as end_reason
    from pre_order_sessions
    where window_first_session_at + {{ engagement_window }} > session_started_at

),

deltas as (

    select
        customer_key,
        condition,
        starts_at as changed_at,
        1 as delta,
        start_reason as reason
    from conditions
    where starts_at is not null and (ends_at is null or ends_at > starts_at)

    union all

    select
        customer_key,
        condition,
        ends_at as changed_at,
        -1 as delta,
        end_reason as reason
    from conditions
    where starts_at is not null and ends_at > starts_at

),

instants as (

    select
        deltas.customer_key,
        deltas.changed_at,
        coalesce(sum(deltas.delta) filter (where deltas.condition = 'valid_order'), 0)
            as valid_orders_delta,
        coalesce(sum(deltas.delta) filter (where deltas.condition = 'active'), 0)
            as active_delta,
        coalesce(sum(deltas.delta) filter (where deltas.condition = 'engaged'), 0)
            as engaged_delta,
        coalesce(sum(deltas.delta) filter (where deltas.condition = 'loyal'), 0)
            as loyal_delta,
        coalesce(sum(deltas.delta) filter (where deltas.condition = 'reactivated'), 0)
            as reactivated_delta,
        max(deltas.changed_at) filter (
            where deltas.condition = 'reactivated' and deltas.delta = 1
        ) as reactivation_at,
        bool_or(deltas.reason = 'valid_order') as has_valid_order,
        bool_or(deltas.reason = 'nps_answer') as has_nps_answer,
        bool_or(deltas.reason = 'referral') as has_referral,
        bool_or(deltas.reason = 'engagement_signal') as has_engagement_signal,
        bool_or(deltas.reason = 'loyalty_window_expired') as has_loyalty_expiry,
        bool_or(deltas.reason = 'reactivated_window_expired') as has_reactivated_expiry,
        bool_or(deltas.reason = 'engagement_window_expired') as has_engagement_expiry
    from deltas
    cross join as_of
    where deltas.changed_at < as_of.as_of_end_at
    group by deltas.customer_key, deltas.changed_at

),

-- How many conditions of each kind hold at each instant.
running_counts as (

    select
        *,
        sum(valid_orders_delta) over person_history as valid_orders_to_date,
        sum(active_delta) over person_history as active_orders,
        sum(engaged_delta) over person_history as engagement_signals,
        sum(loyal_delta) over person_history as loyalty_signals,
        sum(reactivated_delta) over person_history as reactivated_windows,
        max(reactivation_at) over person_history as reactivation_episode_at
    from instants
    window person_history as (
        partition by customer_key
        order by changed_at
        rows between unbounded preceding and current row
    )

),

-- "Reactivated ... unless a rule above moves the person on": once loyalty (or, with a
-- reactivated window longer than the active window, churn) has held since the reactivating
-- order, the person does not fall back to reactivated in that episode.
reactivation_episodes as (

    select
        *,
        bool_or(active_orders = 0 or loyalty_signals > 0) over (
            partition by customer_key, reactivation_episode_at
            order by changed_at
            rows between unbounded preceding and current row
        ) as has_moved_on_since_reactivation
    from running_counts

),

staged as (

    select
        *,
        case
            when valid_orders_to_date = 0 and engagement_signals > 0 then 'engagement'
            when valid_orders_to_date = 0 then 'awareness'
            when active_orders = 0 then 'churned'
            when loyalty_signals > 0 then 'loyalty'
            when reactivated_windows > 0 and not has_moved_on_since_reactivation then 'reactivated'
            when valid_orders_to_date = 1 then 'conversion'
            else 'retention'
        end as stage
    from reactivation_episodes

),

with_previous as (

    select
        *,
        lag(stage) over (partition by customer_key order by changed_at) as previous_stage
    from staged

),

changes as (

    select
        customer_key,
        previous_stage,
        stage,
        changed_at,
        case
            when previous_stage is null then 'first_seen'
            when has_valid_order then 'valid_order'
            when stage = 'churned' then 'active_window_expired'
            when has_nps_answer and 'loyalty' in (stage, previous_stage) then 'nps_answer'
            when has_referral and stage = 'loyalty' then 'referral'
            when has_loyalty_expiry and previous_stage = 'loyalty' then 'loyalty_window_expired'
            when has_reactivated_expiry and previous_stage = 'reactivated'
                then 'reactivated_window_expired'
            when has_engagement_signal and stage = 'engagement' then 'engagement_signal'
            when has_engagement_expiry and previous_stage = 'engagement'
                then 'engagement_window_expired'
        end as trigger_reason
    from with_previous
    where previous_stage is null or stage <> previous_stage

),

final as (

    select
        customer_key,
        stage,
        changed_at as valid_from,
        lead(changed_at) over (partition by customer_key order by changed_at) as valid_to,
        lead(changed_at) over (partition by customer_key order by changed_at) is null
            as is_current,
        previous_stage,
        case
            when trigger_reason like '%\_expired' then 'timeout' else 'event'
        end as trigger_type,
        trigger_reason
    from changes

)

select * from final
