{%- set consumers = ['fct_lifecycle_transitions', 'lifecycle_funnel'] -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed',
        unique_key='interval_id',
        meta={
            'tombstone_when_null': 'stage',
            'change_consumers': consumers,
            'test_changed_key': 'customer_key',
        },
        indexes=[
            {'columns': ['interval_id'], 'unique': true},
            {'columns': ['customer_key']},
        ],
        pre_hook=[
            "{{ change_log_prepare(" ~ consumers ~ ") }}",
            "{{ prepare_tested_rows(this) }}",
        ],
        post_hook=["{{ change_log_keep_tested_rows(this) }}"],
    )
}}

{#-
    Lifecycle stage history as validity intervals: one row per person per stage interval.
    The rules of docs/kpis.md live in macros/lifecycle_rules.sql (lifecycle_stage_rules:
    facts -> conditions -> stages, in whole UTC days); this model reads the facts, decides
    which persons a run recomputes, and keeps what the next run needs.

    Incremental by person: a run recomputes, from all of their facts, only the persons
    whose history can have changed (touched_persons), and replaces their intervals:
    - persons new or merged, or whose identity changed (contact, first-seen instant, number
      of anonymous ids or shop customers: `_person_fingerprint`) or whose valid orders
      changed (`_orders_fingerprint`): both compared with what their intervals were built from;
    - persons with a web session or a CRM fact (e-mail open or click, survey answer, loyalty
      event) delivered in the window of the web models (`_web_last_dt`, `_crm_last_dt`;
      macros/incremental.sql), now or when last computed (a fact may
      have vanished from a re-delivered folder);
    - persons whose next pending change (`_next_change_at`: a time-out such as the 180th day
      without an order, or any dated change after the as-of day) falls before the end of
      the new as-of day;
    - persons with a stored change at or after the end of the as-of day (it moved back);
    - everyone when a threshold var changed (`_rules`).
    A recomputed interval that no longer exists (all of them for a person merged into
    another) is selected as a tombstone (its interval_id, NULL stage). The strategy
    replace_changed (macros/change_log.sql) writes only the intervals that changed, and
    logs those that changed in more than their metadata (`_…`), before and after, for
    fct_lifecycle_transitions and lifecycle_funnel, which recompute only the persons and
    months of logged changes. The result equals a full refresh under the condition of the
    web models (no CRM or web folder re-delivered outside the window).
-#}
{%- do require_stored_columns(['interval_id']) -%}
{%- set rules = [
    var('active_window_days'), var('engagement_window_days'), var('engagement_min_sessions'),
    var('loyalty_min_orders_365d'), var('loyalty_nps_min_score'), var('reactivated_days'),
    var('loyalty_window_days'), lapsed_after_days(), 'whole-days',
] | join('|') -%}

with

as_of as (

    select as_of_end_at from {{ ref('int_lifecycle__as_of') }}

),

-- not materialized: an incremental run reads the few persons it recomputes
all_persons as not materialized (

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

all_email_facts as not materialized (

    select
        'email_' || event_type as fact,
        null as survey_response_id,
        contact_id,
        null as survey_type,
        null::integer as score,
        occurred_at,
        _dt
    from {{ ref('int_crm__email_events') }}
    where event_type in ('open', 'click')

),

all_other_crm_facts as not materialized (

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
        case when event_type = 'referral' then 'referral' else 'loyalty_event' end as fact,
        null as survey_response_id,
        contact_id,
        null as survey_type,
        null::integer as score,
        occurred_at,
        _dt
    from {{ ref('stg_crm__loyalty_events') }}

),

all_crm_facts as not materialized (

    select * from all_email_facts
    union all
    select * from all_other_crm_facts

),

{% if is_incremental() %}

    stored_persons as (

        select
            customer_key,
            _person_fingerprint,
            _orders_fingerprint,
            _next_change_at,
            _web_last_dt,
            _crm_last_dt,
            _rules,
            -- the current interval starts after every other of its person
            valid_from as last_valid_from
        from {{ this }}
        where is_current

    ),

    -- The windows start at the latest deliveries already used (the person with the newest
    -- session, CRM fact, was recomputed by the run that saw it); as literals, so that the
    -- planner reads only the window's sessions and facts through their _dt indexes.
    {%- set web_cutoff = incremental_cutoff('_web_last_dt') %}
    {%- set crm_cutoff = incremental_cutoff('_crm_last_dt') %}

    touched_persons as (

        -- one pass over every person, as they are and as their current interval stored
        -- them (a join of the two tables, 2 million persons at a year), for:
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
            -- new, merged or changed identity; changed valid orders
            (current_persons.person_fingerprint, current_persons.orders_fingerprint)
            is distinct from (stored_persons._person_fingerprint, stored_persons._orders_fingerprint)
            -- a pending change is due by the end of the as-of day
            or stored_persons._next_change_at < (select as_of_end_at from as_of)
            -- the as-of day moved back before a stored change
            or stored_persons.last_valid_from >= (select as_of_end_at from as_of)
            -- a session or CRM fact was delivered in the window last time (it may have
            -- vanished from a re-delivered folder, or lost its late events)
            or stored_persons._web_last_dt >= {{ web_cutoff }}
            or stored_persons._crm_last_dt >= {{ crm_cutoff }}
            -- computed with other thresholds (a run that changes one recomputes everyone)
            or stored_persons._rules is distinct from '{{ rules }}'

        union

        -- a session or CRM fact delivered in the window now
        select all_sessions.customer_key
        from all_sessions
        where all_sessions._last_dt >= {{ web_cutoff }}

        union

        select all_persons.customer_key
        from all_crm_facts
        inner join all_persons on all_crm_facts.contact_id = all_persons.contact_id
        where all_crm_facts._dt >= {{ crm_cutoff }}

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

-- CRM facts of the persons computed (through the contact they hold)
crm_facts as (

    {% if is_incremental() %}
        -- e-mail facts: one lookup per person (lateral) in int_crm__email_events' index on
        -- (contact_id, event_type, occurred_at, _dt), which holds every column read here,
        -- instead of reading every e-mail event for the few persons recomputed
        select
            persons.customer_key,
            email_facts.fact,
            email_facts.survey_response_id,
            email_facts.survey_type,
            email_facts.score,
            email_facts.occurred_at,
            email_facts._dt
        from persons
        cross join
            lateral (
                select * from all_email_facts
                where
                    all_email_facts.contact_id = persons.contact_id
                -- offset 0 (every row) keeps the planner from flattening the lookup into a hash join
                offset 0  -- noqa: AM09
            ) as email_facts

        union all

        -- the others (survey answers, loyalty events) are few: a hash join
        select
            persons.customer_key,
            all_other_crm_facts.fact,
            all_other_crm_facts.survey_response_id,
            all_other_crm_facts.survey_type,
            all_other_crm_facts.score,
            all_other_crm_facts.occurred_at,
            all_other_crm_facts._dt
        from all_other_crm_facts
        inner join persons on all_other_crm_facts.contact_id = persons.contact_id
    {% else %}
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
    {% endif %}

),

{{ lifecycle_stage_rules() }}

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

person_intervals as (

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
        changes.trigger_reason
    from changes
    window person_changes as (partition by changes.customer_key order by changes.changed_at)

),

-- The metadata of the incremental runs, on the person's current interval only (NULL on
-- the others): a run that recomputes a person whose history did not change rewrites
-- that one row, not all of them.
intervals as (

    select
        person_intervals.*,
        persons.person_fingerprint as _person_fingerprint,
        order_fingerprints.orders_fingerprint as _orders_fingerprint,
        pending_changes.next_change_at as _next_change_at,
        session_deliveries.web_last_dt as _web_last_dt,
        crm_deliveries.crm_last_dt as _crm_last_dt,
        case when person_intervals.is_current then '{{ rules }}' end::text as _rules
    from person_intervals
    left join persons
        on person_intervals.is_current and person_intervals.customer_key = persons.customer_key
    left join order_fingerprints
        on person_intervals.is_current and person_intervals.customer_key = order_fingerprints.customer_key
    left join pending_changes
        on person_intervals.is_current and person_intervals.customer_key = pending_changes.customer_key
    left join session_deliveries
        on person_intervals.is_current and person_intervals.customer_key = session_deliveries.customer_key
    left join crm_deliveries
        on person_intervals.is_current and person_intervals.customer_key = crm_deliveries.customer_key

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
