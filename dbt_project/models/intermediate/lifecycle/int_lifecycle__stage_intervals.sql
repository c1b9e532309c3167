{%- set consumers = ['fct_lifecycle_transitions', 'lifecycle_funnel'] -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed',
        unique_key='interval_id',
        meta={'tombstone_when_null': 'stage', 'change_consumers': consumers},
        indexes=[
            {'columns': ['interval_id'], 'unique': true},
            {'columns': ['customer_key']},
        ],
        pre_hook=["{{ change_log_prepare(" ~ consumers ~ ") }}"],
    )
}}

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

    Incremental by person: a run recomputes, from all of their facts, only the persons
    whose history can have changed (touched_persons), and replaces their intervals:
    - persons new or merged, or whose identity changed (contact, first-seen instant, number
      of anonymous ids or shop customers: `_person_fingerprint`) or whose valid orders
      changed (`_orders_fingerprint`): both compared with what their intervals were built from;
    - persons with a web session or a CRM fact (e-mail click, survey answer, referral)
      delivered within var('late_data_lookback_days') days of the latest delivery already
      used (the maxima of `_web_last_dt`, `_crm_last_dt`), or from var('recompute_from'),
      the window of the web models, now or when last computed (a fact may have vanished
      from a re-delivered folder);
    - persons whose next pending change (`_next_change_at`: a time-out such as the 180th day
      without an order, or any dated change after the as-of day) falls before the end of
      the new as-of day;
    - persons with a stored change at or after the end of the as-of day (it moved back);
    - everyone when a threshold var changed (`_rules`).
    A recomputed interval that no longer exists (all of them for a person merged into
    another) is selected as a tombstone (its interval_id, NULL stage). The strategy
    replace_changed (macros/change_log.sql) writes only the intervals that changed and logs
    them, before and after, for fct_lifecycle_transitions and lifecycle_funnel, which
    recompute only the persons and months of logged changes. The result equals a full
    refresh under the condition of the web models (no CRM or web folder re-delivered
    outside the window).
-#}
{%- do require_stored_columns(['interval_id']) -%}
{%- set active_window = var('active_window_days') ~ " * interval '24 hours'" -%}
{%- set engagement_window = var('engagement_window_days') ~ " * interval '24 hours'" -%}
{%- set loyalty_window = var('loyalty_window_days') ~ " * interval '24 hours'" -%}
{%- set reactivated_window = var('reactivated_days') ~ " * interval '24 hours'" -%}
{%- set rules = [
    var('active_window_days'), var('engagement_window_days'), var('engagement_min_sessions'),
    var('loyalty_min_orders_365d'), var('loyalty_nps_min_score'), var('reactivated_days'),
    var('loyalty_window_days'),
] | join('|') -%}

with

as_of as (

    select as_of_end_at from {{ ref('int_lifecycle__as_of') }}

),

all_persons as (

    select
        customer_key,
        contact_id,
        first_seen_at,
        md5(concat_ws('|', contact_id, first_seen_at, anonymous_ids_count, shop_customers_count))
            as person_fingerprint
    from {{ ref('int_identity__persons') }}

),

all_valid_orders as (

    select
        order_id,
        customer_key,
        ordered_at
    from {{ ref('int_orders__orders') }}
    where is_valid and customer_key is not null and ordered_at is not null

),

order_fingerprints as (

    select
        customer_key,
        md5(string_agg(order_id::text || '@' || ordered_at::text, ',' order by ordered_at, order_id))
            as orders_fingerprint
    from all_valid_orders
    group by customer_key

),

-- not materialized: an incremental run filters each through indexes to touched persons
all_sessions as not materialized (

    select
        session_id,
        customer_key,
        session_started_at,
        first_engagement_signal_at,
        last_engagement_signal_at,
        _last_dt
    from {{ ref('int_web__sessions') }}
    where customer_key is not null

),

all_crm_facts as not materialized (

    select
        'email_click' as fact,
        null as survey_response_id,
        contact_id,
        null as survey_type,
        null::integer as score,
        occurred_at,
        _dt
    from {{ ref('stg_crm__email_events') }}
    where event_type = 'click'

    union all

    select
        'survey_response' as fact,
        survey_response_id,
        contact_id,
        survey_type,
        score,
        submitted_at as occurred_at,
        _dt
    from {{ ref('stg_crm__survey_responses') }}

    union all

    select
        'referral' as fact,
        null as survey_response_id,
        contact_id,
        null as survey_type,
        null::integer as score,
        occurred_at,
        _dt
    from {{ ref('stg_crm__loyalty_events') }}
    where event_type = 'referral'

),

{% if is_incremental() %}

    stored_persons as (

        select
            customer_key,
            _person_fingerprint,
            _orders_fingerprint,
            _next_change_at,
            _web_last_dt,
            _crm_last_dt
        from {{ this }}
        where is_current

    ),

    stored_state as (

        -- the latest deliveries already used: the person with the newest session (CRM
        -- fact) was recomputed by the run that saw it
        select
            {{ recompute_from_bound("max(_web_last_dt) - " ~ var('late_data_lookback_days')) }}
                as web_cutoff,
            {{ recompute_from_bound("max(_crm_last_dt) - " ~ var('late_data_lookback_days')) }}
                as crm_cutoff,
            -- every run that changes a rule rewrites every row
            min(_rules) as stored_rules
        from {{ this }}

    ),

    touched_persons as (

        -- new, merged or changed identity; changed valid orders
        select coalesce(current_persons.customer_key, stored_persons.customer_key) as customer_key
        from (
            select
                all_persons.customer_key,
                all_persons.person_fingerprint,
                order_fingerprints.orders_fingerprint
            from all_persons
            left join order_fingerprints on all_persons.customer_key = order_fingerprints.customer_key
        ) as current_persons
        full join stored_persons on current_persons.customer_key = stored_persons.customer_key
        where
            (current_persons.person_fingerprint, current_persons.orders_fingerprint)
            is distinct from (stored_persons._person_fingerprint, stored_persons._orders_fingerprint)

        union

        -- a pending change is due by the end of the as-of day
        select stored_persons.customer_key
        from stored_persons
        cross join as_of
        where stored_persons._next_change_at < as_of.as_of_end_at

        union

        -- a session or CRM fact delivered in the window, now or last time (it may have
        -- vanished from a re-delivered folder, or lost its late events)
        select all_sessions.customer_key
        from all_sessions
        where all_sessions._last_dt >= (select web_cutoff from stored_state)

        union

        select all_persons.customer_key
        from all_crm_facts
        inner join all_persons on all_crm_facts.contact_id = all_persons.contact_id
        where all_crm_facts._dt >= (select crm_cutoff from stored_state)

        union

        select stored_persons.customer_key
        from stored_persons
        cross join stored_state
        where
            stored_persons._web_last_dt >= stored_state.web_cutoff
            or stored_persons._crm_last_dt >= stored_state.crm_cutoff

        union

        -- the as-of day moved back before a stored change
        select stored_intervals.customer_key
        from {{ this }} as stored_intervals
        cross join as_of
        where stored_intervals.valid_from >= as_of.as_of_end_at

        union

        select all_persons.customer_key
        from all_persons
        cross join stored_state
        where stored_state.stored_rules is distinct from '{{ rules }}'

    ),

{% endif %}

persons as (

    select * from all_persons
    {% if is_incremental() %}
        where customer_key in (select customer_key from touched_persons)
    {% endif %}

),

valid_orders as (

    select * from all_valid_orders
    {% if is_incremental() %}
        where customer_key in (select customer_key from touched_persons)
    {% endif %}

),

sessions as (

    select * from all_sessions
    {% if is_incremental() %}
        where customer_key in (select customer_key from touched_persons)
    {% endif %}

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
    from sessions
    where first_engagement_signal_at is not null

),

-- CRM facts of the persons computed (through the contact they hold)
crm_facts as (

    select
        persons.customer_key,
        all_crm_facts.fact,
        all_crm_facts.survey_response_id,
        all_crm_facts.survey_type,
        all_crm_facts.score,
        all_crm_facts.occurred_at,
        all_crm_facts._dt
    from all_crm_facts
    inner join persons on all_crm_facts.contact_id = persons.contact_id

),

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
        customer_key,
        'loyal' as condition,
        occurred_at as starts_at,
        occurred_at + {{ loyalty_window }} as ends_at,
        'referral' as start_reason,
        'loyalty_window_expired' as end_reason
    from referrals

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

-- The first change after the as-of day (a time-out, or any dated fact): when the as-of day
-- reaches it, the person is recomputed.
pending_changes as (

    select
        deltas.customer_key,
        min(deltas.changed_at) as next_change_at
    from deltas
    cross join as_of
    where deltas.changed_at >= as_of.as_of_end_at
    group by deltas.customer_key

),

-- The latest deliveries of the person's facts, for the next incremental run's windows.
session_deliveries as (

    select
        customer_key,
        max(_last_dt) as web_last_dt
    from sessions
    group by customer_key

),

crm_deliveries as (

    select
        customer_key,
        max(_dt) as crm_last_dt
    from crm_facts
    group by customer_key

),

intervals as (

    select
        {{ surrogate_key(['changes.customer_key', 'extract(epoch from changes.changed_at)']) }}
            as interval_id,
        changes.customer_key,
        changes.stage,
        changes.changed_at as valid_from,
        lead(changes.changed_at) over person_changes as valid_to,
        lead(changes.changed_at) over person_changes is null as is_current,
        changes.previous_stage,
        case
            when changes.trigger_reason like '%\_expired' then 'timeout' else 'event'
        end as trigger_type,
        changes.trigger_reason,

        ---------- metadata of the incremental runs
        persons.person_fingerprint as _person_fingerprint,
        order_fingerprints.orders_fingerprint as _orders_fingerprint,
        pending_changes.next_change_at as _next_change_at,
        session_deliveries.web_last_dt as _web_last_dt,
        crm_deliveries.crm_last_dt as _crm_last_dt,
        '{{ rules }}'::text as _rules
    from changes
    left join persons on changes.customer_key = persons.customer_key
    left join order_fingerprints on changes.customer_key = order_fingerprints.customer_key
    left join pending_changes on changes.customer_key = pending_changes.customer_key
    left join session_deliveries on changes.customer_key = session_deliveries.customer_key
    left join crm_deliveries on changes.customer_key = crm_deliveries.customer_key
    window person_changes as (partition by changes.customer_key order by changes.changed_at)

),

final as (

    select * from intervals

    {% if is_incremental() %}
        union all

        -- tombstones: stored intervals of the recomputed persons that no longer exist
        select
            gone.interval_id,
            null as customer_key,
            null as stage,
            null as valid_from,
            null as valid_to,
            null as is_current,
            null as previous_stage,
            null as trigger_type,
            null as trigger_reason,
            null as _person_fingerprint,
            null as _orders_fingerprint,
            null as _next_change_at,
            null as _web_last_dt,
            null as _crm_last_dt,
            null as _rules
        from {{ this }} as gone
        left join intervals on gone.interval_id = intervals.interval_id
        where
            gone.customer_key in (select customer_key from touched_persons)
            and intervals.interval_id is null
    {% endif %}

)

select * from final
