{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        indexes=[
            {'columns': ['customer_key'], 'unique': true},
        ],
        meta={'test_selected_rows': true},
        pre_hook=[
            "{{ persons_delete_recomputed(ref('int_identity__anonymous_ids')) }}",
            "{{ prepare_tested_rows() }}",
        ],
        post_hook=["{{ persons_keep_tested_rows() }}"],
    )
}}

{#- One row per person: identity resolution of CRM contacts, shop customers and web
    anonymous ids. A person is anchored on, by precedence:
    1. a CRM contact (every contact is a person; a web user_id is a contact_id, so a
       user_id not in the CRM export yet is a person anchored on that contact_id too);
    2. else a shop customer (with the customers sharing its email, see
       int_identity__shop_customers);
    3. else a web anonymous_id never seen with a user_id.
    customer_key = person_key(<anchor type>, <anchor id>): deterministic and stable,
    it does not change when more data about the person arrives.
    acquisition_channel: the channel of the person's first session with campaign tags or
    an external referrer, among the sessions that started before any other system knew
    the person (all sessions for a web-only person); else the CRM lead source mapped by
    the lead_source_mapping seed; else `direct`.

    Incremental by person (strategy append after the pre-hook persons_delete_recomputed,
    macros/identity.sql): a run recomputes every person who is not an anonymous visitor
    (their facts come from the CRM, the shop and identified anonymous_ids: tables read
    whole, 5% of the persons at a year) and the anonymous visitors whose anonymous_id had
    an event delivered in the web window (`_last_dt`, incremental_cutoff,
    macros/incremental.sql: the date folders delivered since the last successful build)
    now or when last built, and any anonymous id left without a person (the select runs
    after the pre-hook's delete: an id whose events in the window vanished, or that lost
    the event that identified it). Any other anonymous visitor depends only on their
    anonymous_id and its sessions, which changed only if it had an event in that window,
    so the table equals a full refresh under the condition of int_identity__anonymous_ids. A stored
    table without `_last_dt` (built as a plain table by an older version) is rebuilt in
    place once.
    In a build that runs it, its data tests (but the relationships tests) read only the
    persons it wrote (meta `test_selected_rows`: a copy, macros/tested_rows.sql). The keys
    of the others cannot collide with them: the unique index on customer_key refuses a
    second row of a key, and an anonymous visitor's key is a hash of their anonymous_id;
    the persons with a contact_id or shop_customer_id are all written by every run. -#}

{%- set recompute_all = persons_recompute_all() %}

with

contacts as (

    select * from {{ ref('stg_crm__contacts') }}

),

shop_customers as (

    select * from {{ ref('int_identity__shop_customers') }}

),

anonymous_ids as (

    select * from {{ ref('int_identity__anonymous_ids') }}
    {% if not recompute_all %}
        -- the identified ones (the persons of contacts and web users, all recomputed) and
        -- those of the web window (the anonymous visitors recomputed)
        where is_identified or _last_dt >= {{ incremental_cutoff('_last_dt') }}

        union all

        -- and any other without a person: the pre-hook deleted it (its events in the
        -- window vanished from a re-delivered folder, its older ones remain), or it lost
        -- the event that identified it (~1 s at a year: an anti-join of 2 million ids)
        select * from {{ ref('int_identity__anonymous_ids') }} as left_over
        where
            not left_over.is_identified
            and left_over._last_dt < {{ incremental_cutoff('_last_dt') }}
            and not exists (
                select from {{ this }} as stored_person
                where stored_person.anonymous_id = left_over.anonymous_id
            )
    {% endif %}

),

sessions as (

    select * from {{ ref('int_web__sessions') }}

),

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

web_only_users as (

    select distinct contact_id from anonymous_ids
    where is_identified

    except

    select contact_id from contacts

),

anchors as (

    select
        {{ person_key('crm_contact', 'contact_id') }} as customer_key,
        'crm_contact' as identity_type,
        contact_id,
        null as anonymous_id
    from contacts

    union all

    select
        {{ person_key('crm_contact', 'contact_id') }} as customer_key,
        'web_user' as identity_type,
        contact_id,
        null as anonymous_id
    from web_only_users

    union all

    select
        customer_key,
        'shop_customer' as identity_type,
        null as contact_id,
        null as anonymous_id
    from shop_customers
    where contact_id is null and is_primary

    union all

    select
        customer_key,
        'anonymous_visitor' as identity_type,
        null as contact_id,
        anonymous_id
    from anonymous_ids
    where not is_identified

),

shop_by_person as (

    select
        customer_key,
        (array_agg(shop_customer_id) filter (where is_primary))[1] as shop_customer_id,
        (array_agg(email_sha256) filter (where is_primary))[1] as email_sha256,
        min(created_at) as first_shop_customer_created_at,
        count(*) as shop_customers_count
    from shop_customers
    group by customer_key

),

orders_by_person as (

    select
        shop_customers.customer_key,
        min(orders.ordered_at) as first_ordered_at
    from orders
    inner join shop_customers
        on orders.shop_customer_id = shop_customers.shop_customer_id
    group by shop_customers.customer_key

),

web_by_person as (

    select
        customer_key,
        min(first_seen_at) as first_web_event_at,
        count(*) as anonymous_ids_count,
        max(_last_dt) as web_last_dt
    from anonymous_ids
    group by customer_key

),

joined as (

    select
        anchors.customer_key,
        anchors.identity_type,
        anchors.contact_id,
        shop_by_person.shop_customer_id,
        anchors.anonymous_id,
        coalesce(contacts.email_sha256, shop_by_person.email_sha256) as email_sha256,
        -- when a system other than the web first knew the person
        least(
            contacts.created_at,
            shop_by_person.first_shop_customer_created_at,
            orders_by_person.first_ordered_at
        ) as known_elsewhere_at,
        web_by_person.first_web_event_at,
        contacts.country,
        contacts.lead_source,
        {{ lead_source_channel('contacts.lead_source') }} as lead_source_channel,
        contacts.created_at as crm_created_at,
        contacts.contact_id is not null as is_crm_contact,
        shop_by_person.shop_customer_id is not null as is_shop_customer,
        coalesce(shop_by_person.shop_customers_count, 0) as shop_customers_count,
        coalesce(web_by_person.anonymous_ids_count, 0) as anonymous_ids_count,
        web_by_person.web_last_dt
    from anchors
    left join contacts
        on anchors.contact_id = contacts.contact_id
    left join shop_by_person
        on anchors.customer_key = shop_by_person.customer_key
    left join orders_by_person
        on anchors.customer_key = orders_by_person.customer_key
    left join web_by_person
        on anchors.customer_key = web_by_person.customer_key

),

{#- A person's sessions, in one aggregate: their count, the country of the first session
    with one, the channel and start of the first session with campaign tags or an external
    referrer. The acquisition channel depends on when other systems knew the person
    (joined.known_elsewhere_at): a person has a session with campaign tags or an external
    referrer that started by then exactly when their first such session did, and it is
    that one; so its channel and start are kept here, and compared in final. -#}
{%- set per_person -%}
    count(*) as sessions_count,
    (
        array_agg(sessions.country order by sessions.session_started_at asc, sessions.session_id asc)
        filter (where sessions.country is not null)
    )[1] as first_session_country,
    (
        array_agg(sessions.channel order by sessions.session_started_at asc, sessions.session_id asc)
        filter (where sessions.channel <> 'direct')
    )[1] as first_campaign_channel,
    min(sessions.session_started_at) filter (where sessions.channel <> 'direct') as first_campaign_session_at
{%- endset %}

sessions_by_person as (

    -- in the order of int_web__sessions' index on (customer_key, session_started_at,
    -- session_id, …), which holds every column read here: no sort (with the sort of every
    -- session, this model took 44 s at a year, 24 s without)
    {% if recompute_all %}
        -- one pass over the sessions
        select
            sessions.customer_key,
            {{ per_person | indent(12) }}
        from sessions
        where sessions.customer_key is not null
        group by sessions.customer_key
    {% else %}
        -- the sessions of each recomputed person (3.5 million of the 6.5 million at a year:
        -- the contacts' persons have half of them), one index range each, in the index's
        -- order (cold, 6.0-7.6 s at a year against 7.9-8.7 s in hash order)
        select
            recomputed.customer_key,
            per_key.sessions_count,
            per_key.first_session_country,
            per_key.first_campaign_channel,
            per_key.first_campaign_session_at
        from (
            select distinct customer_key from anchors
            order by customer_key
        ) as recomputed
        cross join lateral (
            select
                {{ per_person | indent(16) }}
            from sessions
            where sessions.customer_key = recomputed.customer_key
            -- no row for a person without sessions
            group by sessions.customer_key
        ) as per_key
    {% endif %}

),

final as (

    select
        ---------- ids
        joined.customer_key,
        joined.identity_type,
        joined.contact_id,
        joined.shop_customer_id,
        joined.anonymous_id,
        joined.email_sha256,

        ---------- attributes
        least(joined.known_elsewhere_at, joined.first_web_event_at) as first_seen_at,
        coalesce(joined.country, sessions_by_person.first_session_country) as country,
        joined.lead_source,
        coalesce(
            -- a session after other systems knew the person (a newsletter click of a contact
            -- imported last year) says how they came back, not how they were acquired
            case
                when
                    joined.known_elsewhere_at is null
                    or sessions_by_person.first_campaign_session_at <= joined.known_elsewhere_at
                    then sessions_by_person.first_campaign_channel
            end,
            joined.lead_source_channel,
            'direct'
        ) as acquisition_channel,
        joined.crm_created_at,

        ---------- flags and counts
        joined.is_crm_contact,
        joined.is_shop_customer,
        not joined.is_crm_contact and not joined.is_shop_customer as is_web_only,
        joined.shop_customers_count,
        joined.anonymous_ids_count,
        coalesce(sessions_by_person.sessions_count, 0) as sessions_count,

        ---------- incremental window
        joined.web_last_dt as _last_dt

    from joined
    left join sessions_by_person
        on joined.customer_key = sessions_by_person.customer_key

)

select * from final
