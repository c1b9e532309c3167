{#- Identity stitching of web browsers/devices. An anonymous_id seen with a user_id (a CRM
    contact_id, set after sign_up / login / identify) belongs to that contact's person:
    all its events, earlier ones included. When one anonymous_id was used by several
    user_ids (a shared computer), the user_id of its earliest identified event wins (ties:
    lowest event_id), so the mapping never depends on what arrives last. An anonymous_id
    never seen with a user_id is a person of its own (an awareness-stage visitor). -#}

with

events as (

    select * from {{ ref('int_web__events') }}

),

anonymous_ids as (

    select
        anonymous_id,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(*) as events_count,
        count(distinct user_id) as user_ids_count
    from events
    group by anonymous_id

),

identified_events as (

    select
        anonymous_id,
        user_id,
        occurred_at,
        row_number() over (
            partition by anonymous_id
            order by occurred_at asc, event_id asc
        ) as identification_rank
    from events
    where user_id is not null

),

first_identification as (

    select
        anonymous_id,
        user_id,
        occurred_at as identified_at
    from identified_events
    where identification_rank = 1

),

final as (

    select
        anonymous_ids.anonymous_id,
        case
            when first_identification.user_id is not null
                then {{ person_key('crm_contact', 'first_identification.user_id') }}
            else {{ person_key('anonymous', 'anonymous_ids.anonymous_id') }}
        end as customer_key,
        first_identification.user_id as contact_id,
        first_identification.user_id is not null as is_identified,
        first_identification.identified_at,
        anonymous_ids.user_ids_count,
        anonymous_ids.first_seen_at,
        anonymous_ids.last_seen_at,
        anonymous_ids.events_count
    from anonymous_ids
    left join first_identification
        on anonymous_ids.anonymous_id = first_identification.anonymous_id

)

select * from final
