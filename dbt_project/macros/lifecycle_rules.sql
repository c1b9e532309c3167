{#- The lifecycle stage rules of docs/kpis.md, as the CTEs that int_lifecycle__stage_intervals
    places after its inputs: change a rule here (thresholds are vars in dbt_project.yml);
    which persons a run recomputes, and what it stores for the next run, is the model's
    business. Each rule has unit tests in _int_lifecycle__unit_tests.yml.

    Every rule is turned into conditions: intervals [starts_at, ends_at) during which one
    fact holds (an order makes the person active, a promoter NPS answer holds until the
    next NPS answer, ...). Each condition contributes +1 at its start and -1 at its end;
    running sums over a person's change instants say, at every instant, how many
    conditions of each kind hold, and the stage is a function of those counts (stage_of).
    Time-outs are ordinary change instants, so they are caught without one row per person
    per day.

    Time-outs are counted in whole UTC days, as in the KPI marts: a fact of day D with a
    window of N days holds until midnight UTC at the start of day D + N (an order of 10:00
    on day 0 keeps the person active through day 179; on day 180 they are churned, unless
    they order again that day, whatever the hour).

    Inputs (CTEs of the model): persons (customer_key, first_seen_at), valid_orders
    (order_id, customer_key, ordered_at), sessions (session_id, customer_key,
    session_started_at, first/last_engagement_signal_at), crm_facts (customer_key, fact:
    email_click | email_open | survey_response | loyalty_event | referral, survey_response_id,
    survey_type, score, occurred_at), as_of (as_of_end_at).
    Outputs: deltas (customer_key, condition, changed_at, delta, reason), and changes
    (customer_key, previous_stage, stage, changed_at, trigger_reason): one row per stage
    change before the end of the as-of day. -#}

{% macro lapsed_after_days() -%}
    {#- Days without any activity after which a person who never ordered leaves the funnel
        (var lapsed_after_days; default three engagement windows). -#}
    {{- return(var('lapsed_after_days') or (var('engagement_window_days') | int) * 3) -}}
{%- endmacro %}


{% macro day_timeout(at, days) -%}
    {#- Midnight UTC at the start of the day `days` days after the UTC day of `at`. -#}
    ({{ utc_date(at) }} + {{ days }})::timestamp at time zone 'UTC'
{%- endmacro %}


{% macro stage_of() -%}
    {#- The stage, from the counts of conditions holding at an instant (docs/kpis.md):
        `valid_orders_to_date`, `active_orders`, `engagement_signals`, `recent_activities`,
        `loyalty_signals`, `reactivated_windows` and `has_moved_on_since_reactivation`. -#}
    case
        when valid_orders_to_date = 0 and engagement_signals > 0 then 'engagement'
        when valid_orders_to_date = 0 and recent_activities > 0 then 'awareness'
        when valid_orders_to_date = 0 then 'lapsed'
        when active_orders = 0 then 'churned'
        when loyalty_signals > 0 then 'loyalty'
        when reactivated_windows > 0 and not has_moved_on_since_reactivation then 'reactivated'
        when valid_orders_to_date = 1 then 'conversion'
        else 'retention'
    end
{%- endmacro %}


{% macro lifecycle_stage_rules() -%}
{%- set active_days = var('active_window_days') | int -%}
{%- set engagement_days = var('engagement_window_days') | int -%}
{%- set loyalty_days = var('loyalty_window_days') | int -%}
{%- set reactivated_days = var('reactivated_days') | int -%}

email_clicks as (

    select
        customer_key,
        occurred_at
    from crm_facts
    where fact = 'email_click'

),

contact_survey_responses as (

    select
        customer_key,
        survey_response_id,
        survey_type,
        score,
        occurred_at as submitted_at
    from crm_facts
    where fact = 'survey_response'

),

referrals as (

    select
        customer_key,
        occurred_at
    from crm_facts
    where fact = 'referral'

),

orders_sequenced as (

    select
        customer_key,
        ordered_at,
        {{ utc_date('ordered_at') }} as order_date,
        lag({{ utc_date('ordered_at') }}) over customer_orders as previous_order_date,
        lead(ordered_at) over customer_orders as next_ordered_at,
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
-- A session's signal events (view_item, add_to_cart, begin_checkout, sign_up) count as
-- one signal from its first to its last: a session lasts far less than the engagement
-- window, so the union of the events' windows is the same.
single_signals as (

    select
        customer_key,
        first_engagement_signal_at as signaled_at,
        last_engagement_signal_at as last_signaled_at
    from sessions
    where first_engagement_signal_at is not null

    union all

    select
        customer_key,
        occurred_at as signaled_at,
        occurred_at as last_signaled_at
    from email_clicks

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

-- Anything the person did: what keeps someone who never ordered in the funnel.
activities as (

    select
        customer_key,
        first_seen_at as active_at
    from persons
    where first_seen_at is not null

    union all

    select
        customer_key,
        session_started_at as active_at
    from sessions

    union all

    select
        customer_key,
        occurred_at as active_at
    from crm_facts

),

-- One row per condition interval [starts_at, ends_at); ends_at null = open-ended.
conditions as (

    -- every valid order so far
    select
        customer_key,
        'valid_order' as condition,
        ordered_at as starts_at,
        null::timestamptz as ends_at,
        'valid_order' as start_reason,
        null as end_reason
    from valid_orders

    union all

    -- active: a valid order within the active window (whole days; an order on the day the
    -- window of the previous one ends keeps the person active that whole day)
    select
        customer_key,
        'active' as condition,
        ordered_at as starts_at,
        case
            when {{ utc_date('next_ordered_at') }} = order_date + {{ active_days }} then next_ordered_at
            else {{ day_timeout('ordered_at', active_days) }}
        end as ends_at,
        'valid_order' as start_reason,
        'active_window_expired' as end_reason
    from orders_sequenced

    union all

    -- a valid order made while churned (a day without an active order before it)
    select
        customer_key,
        'reactivated' as condition,
        ordered_at as starts_at,
        {{ day_timeout('ordered_at', reactivated_days) }} as ends_at,
        'valid_order' as start_reason,
        'reactivated_window_expired' as end_reason
    from orders_sequenced
    where previous_order_date + {{ active_days }} < order_date

    union all

    select
        customer_key,
        'loyal' as condition,
        ordered_at as starts_at,
        {{ day_timeout('window_first_ordered_at', loyalty_days) }} as ends_at,
        'valid_order' as start_reason,
        'loyalty_window_expired' as end_reason
    from orders_sequenced
    where {{ day_timeout('window_first_ordered_at', loyalty_days) }} > ordered_at

    union all

    select
        customer_key,
        'loyal' as condition,
        occurred_at as starts_at,
        {{ day_timeout('occurred_at', loyalty_days) }} as ends_at,
        'referral' as start_reason,
        'loyalty_window_expired' as end_reason
    from referrals

    union all

    -- a promoter answer holds until the person's next NPS answer
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
        {{ day_timeout('single_signals.last_signaled_at', engagement_days) }} as ends_at,
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
        {{ day_timeout('window_first_session_at', engagement_days) }} as ends_at,
        'engagement_signal' as start_reason,
        'engagement_window_expired' as end_reason
    from pre_order_sessions
    where {{ day_timeout('window_first_session_at', engagement_days) }} > session_started_at

    union all

    select
        customer_key,
        'recent_activity' as condition,
        active_at as starts_at,
        {{ day_timeout('active_at', lapsed_after_days()) }} as ends_at,
        'activity' as start_reason,
        'lapse_window_expired' as end_reason
    from activities

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
        {%- for condition in ['valid_order', 'active', 'engaged', 'recent_activity', 'loyal', 'reactivated'] %}
            coalesce(sum(deltas.delta) filter (where deltas.condition = '{{ condition }}'), 0)
                as {{ condition }}_delta,
        {%- endfor %}
        max(deltas.changed_at) filter (
            where deltas.condition = 'reactivated' and deltas.delta = 1
        ) as reactivation_at,
        {%- for reason in [
            'valid_order', 'nps_answer', 'referral', 'engagement_signal', 'activity',
            'loyalty_window_expired', 'reactivated_window_expired', 'engagement_window_expired',
            'lapse_window_expired',
        ] %}
            bool_or(deltas.reason = '{{ reason }}') as has_{{ reason }}{{ ',' if not loop.last }}
        {%- endfor %}
    from deltas
    cross join as_of
    where deltas.changed_at < as_of.as_of_end_at
    group by deltas.customer_key, deltas.changed_at

),

-- How many conditions of each kind hold at each instant.
running_counts as (

    select
        *,
        sum(valid_order_delta) over person_history as valid_orders_to_date,
        sum(active_delta) over person_history as active_orders,
        sum(engaged_delta) over person_history as engagement_signals,
        sum(recent_activity_delta) over person_history as recent_activities,
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
        {{ stage_of() }} as stage
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
            when has_loyalty_window_expired and previous_stage = 'loyalty' then 'loyalty_window_expired'
            when has_reactivated_window_expired and previous_stage = 'reactivated'
                then 'reactivated_window_expired'
            when has_engagement_signal and stage = 'engagement' then 'engagement_signal'
            when has_engagement_window_expired and previous_stage = 'engagement'
                then 'engagement_window_expired'
            when stage = 'lapsed' then 'lapse_window_expired'
            when has_activity and previous_stage = 'lapsed' then 'activity'
        end as trigger_reason
    from with_previous
    where previous_stage is null or stage <> previous_stage

),
{%- endmacro %}
