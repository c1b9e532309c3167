{{
    config(
        materialized='incremental',
        incremental_strategy='replace_window',
        unique_key='anonymous_id',
        meta={'window_column': '_last_dt'},
        indexes=[
            {'columns': ['anonymous_id'], 'unique': true},
            {'columns': ['customer_key']},
            {'columns': ['_last_dt']},
        ],
    )
}}

{#- Identity stitching of web browsers/devices. An anonymous_id seen with a user_id (a CRM
    contact_id, set after sign_up / login / identify) belongs to that contact's person:
    all its events, earlier ones included. When one anonymous_id was used by several
    user_ids (a shared computer), the user_id of its earliest identified event wins (ties:
    lowest event_id), so the mapping never depends on what arrives last. An anonymous_id
    never seen with a user_id is a person of its own (an awareness-stage visitor).

    Incremental by anonymous_id: a run recomputes, from all of their events (an index
    lookup in int_web__events), the anonymous_ids that have an event delivered in the window
    (incremental_cutoff, macros/incremental.sql: the date folders delivered since the last
    successful build), and those that had one last time (it may have vanished from a re-delivered folder). No other
    anonymous_id can change: its events are outside the window. The strategy replace_window
    (macros/incremental.sql) deletes those of the window that no longer have any event, so
    the table equals a full refresh under the same condition as int_web__events. -#}

with

{% if is_incremental() %}

    touched_anonymous_ids as (

        -- an event delivered in the window now, or last time (it may have vanished)
        select anonymous_id from {{ ref('int_web__events') }}
        where _dt >= {{ incremental_cutoff('_last_dt') }}

        union

        select anonymous_id from {{ this }}
        where _last_dt >= {{ incremental_cutoff('_last_dt') }}

    ),

{% endif %}

{#- Each anonymous_id from its events, in one aggregate: the user_id of its earliest
    identified event (ties: lowest event_id) and when that was; every event counted. -#}
{%- set per_anonymous_id -%}
    min(web_events.occurred_at) as first_seen_at,
    max(web_events.occurred_at) as last_seen_at,
    count(*) as events_count,
    count(distinct web_events.user_id) as user_ids_count,
    max(web_events._dt) as _last_dt,
    (
        array_agg(web_events.user_id order by web_events.occurred_at asc, web_events.event_id asc)
        filter (where web_events.user_id is not null)
    )[1] as first_user_id,
    min(web_events.occurred_at) filter (where web_events.user_id is not null) as identified_at
{%- endset %}

anonymous_ids as (

    {% if is_incremental() %}
        -- the events of each touched anonymous_id, aggregated per id (a few hundred rows
        -- for most ids, sorted in memory) from an index-only scan of int_web__events' index on
        -- (anonymous_id, occurred_at, event_id, user_id, _dt): reading each event's heap
        -- page instead cost one random read per event (3.7 million for a year's day)
        select
            touched_anonymous_ids.anonymous_id,
            per_id.first_seen_at,
            per_id.last_seen_at,
            per_id.events_count,
            per_id.user_ids_count,
            per_id._last_dt,
            per_id.first_user_id,
            per_id.identified_at
        from touched_anonymous_ids
        cross join lateral (
            select
                {{ per_anonymous_id | indent(16) }}
            from {{ ref('int_web__events') }} as web_events
            where web_events.anonymous_id = touched_anonymous_ids.anonymous_id
            -- no row for an id without events left (it vanished from a re-delivered folder)
            group by web_events.anonymous_id
        ) as per_id
    {% else %}
        select
            web_events.anonymous_id,
            {{ per_anonymous_id | indent(12) }}
        from {{ ref('int_web__events') }} as web_events
        group by web_events.anonymous_id
    {% endif %}

),

final as (

    select
        anonymous_ids.anonymous_id,
        case
            when anonymous_ids.first_user_id is not null
                then {{ person_key('crm_contact', 'anonymous_ids.first_user_id') }}
            else {{ person_key('anonymous', 'anonymous_ids.anonymous_id') }}
        end as customer_key,
        anonymous_ids.first_user_id as contact_id,
        anonymous_ids.first_user_id is not null as is_identified,
        anonymous_ids.identified_at,
        anonymous_ids.user_ids_count,
        anonymous_ids.first_seen_at,
        anonymous_ids.last_seen_at,
        anonymous_ids.events_count,
        anonymous_ids._last_dt
    from anonymous_ids

)

select * from final
