{{
    config(
        materialized='incremental',
        incremental_strategy='replace_window',
        unique_key='session_id',
        meta={'window_column': '_last_dt', 'test_selected_rows': true},
        pre_hook=["{{ prepare_tested_rows() }}"],
        indexes=[
            {'columns': ['session_id'], 'unique': true},
            {'columns': [
                'customer_key', 'session_started_at', 'session_id',
                'first_engagement_signal_at', 'last_engagement_signal_at', '_last_dt',
                'country', 'channel',
            ]},
            {'columns': ['anonymous_id']},
            {'columns': ['_last_dt']},
            {'columns': ['session_date']},
        ],
    )
}}

{#- Incremental by session: a run recomputes, from all of their events, the sessions that
    (a) have an event delivered in the window (new, late or re-delivered events; the same
    window as int_web__events), (b) had such an event last time (it may have vanished), (c) belong
    to an anonymous_id whose person changed (identified since), or (d) all sessions when
    the channel_mapping seed changed. The strategy replace_window (macros/incremental.sql)
    also deletes stored sessions of the window that no longer have any event. So the table
    equals a full refresh, under the same condition as int_web__events. In a build that
    runs it, its data tests (but relationships) read the sessions it selected
    (int_web__sessions__tested, macros/tested_rows.sql).
    The index on customer_key holds every column int_lifecycle__stage_intervals and
    int_identity__persons read of a person's sessions: the stages' lookups of the
    recomputed persons' sessions are index-only, and the persons read every session in
    its order without a sort. -#}

{%- set engagement_signal_events = "('view_item', 'add_to_cart', 'begin_checkout', 'sign_up')" %}
{%- set landing_hit_order = "case when event_name = 'page_view' then 0 when page_url is not null then 1 else 2 end"
    ~ ", occurred_at asc, event_id asc" %}

with

events as (

    select * from {{ ref('int_web__events') }}

),

-- not materialized: an incremental run looks up only the anonymous_ids it needs
anonymous_ids as not materialized (

    select * from {{ ref('int_identity__anonymous_ids') }}

),

{% if is_incremental() %}

    window_events as (

        select * from {{ ref('int_web__events') }}
        where _dt >= {{ incremental_cutoff('_last_dt') }}

    ),

    -- not materialized: each use below filters it through an index of the stored table
    existing_sessions as not materialized (

        select * from {{ this }}

    ),

    sessions_to_update as (

        select session_id from window_events

        union

        select session_id from existing_sessions
        where _last_dt >= {{ incremental_cutoff('_last_dt') }}

        union

        -- an anonymous_id's person changes only with an event of the window, so only the
        -- anonymous_ids stitched in this window are compared (not every stored session)
        select existing_sessions.session_id
        from existing_sessions
        inner join anonymous_ids
            on existing_sessions.anonymous_id = anonymous_ids.anonymous_id
        where
            anonymous_ids._last_dt >= {{ incremental_cutoff('_last_dt') }}
            and existing_sessions.customer_key <> anonymous_ids.customer_key

        union

        -- every stored session carries the fingerprint of the run that last recomputed all
        -- of them, so one row tells whether the seed changed since
        select session_id from existing_sessions
        where (
            select sample._channel_mapping_fingerprint
            from {{ this }} as sample
            order by sample.session_id
            limit 1
        ) is distinct from {{ channel_mapping_fingerprint() }}

    ),

{% endif %}

session_events as (

    {% if is_incremental() %}
        -- one lookup per session (lateral): the session_id index is used whatever the
        -- planner guesses the number of sessions to be, instead of scanning every event
        select events_of_session.*
        from sessions_to_update
        cross join lateral (
            select * from events
            where events.session_id = sessions_to_update.session_id
            -- offset 0 (every row) keeps the planner from flattening the lookup into a hash join
            offset 0  -- noqa: AM09
        ) as events_of_session
    {% else %}
        -- every event, read in one sequential scan (`offset 0`: else, below a few GB, the
        -- planner reads them in session_id index order, one random heap read per event)
        select * from events
        offset 0  -- noqa: AM09
    {% endif %}

),

session_facts as (

    -- one sort of the session's events gives its facts and its landing hit, which carries
    -- the session's traffic source: its first page_view, else its first event with a page,
    -- else its first event (PostgreSQL presorts the events by the landing hit's order, the
    -- order most of these aggregates share)
    select
        session_id,
        (array_agg(anonymous_id order by occurred_at asc, event_id asc))[1] as anonymous_id,
        (
            array_agg(user_id order by occurred_at asc, event_id asc)
            filter (where user_id is not null)
        )[1] as user_id,
        min(occurred_at) as session_started_at,
        max(occurred_at) as session_ended_at,
        count(*) as events_count,
        count(*) filter (where event_name = 'page_view') as page_views,
        count(*) filter (where event_name = 'purchase') as purchases,
        coalesce(sum(engagement_time_s), 0) as engagement_time_s,
        coalesce(bool_or(event_name = 'view_item'), false) as has_view_item,
        coalesce(bool_or(event_name = 'add_to_cart'), false) as has_add_to_cart,
        coalesce(bool_or(event_name = 'begin_checkout'), false) as has_begin_checkout,
        coalesce(bool_or(event_name = 'purchase'), false) as has_purchase,
        coalesce(bool_or(event_name = 'sign_up'), false) as has_sign_up,
        min(occurred_at) filter (where event_name in {{ engagement_signal_events }})
            as first_engagement_signal_at,
        max(occurred_at) filter (where event_name in {{ engagement_signal_events }})
            as last_engagement_signal_at,
        max(_dt) as _last_dt,
        ---------- the landing hit
        (array_agg(page_url order by {{ landing_hit_order }}))[1] as landing_page_url,
        (array_agg(referrer order by {{ landing_hit_order }}))[1] as referrer,
        (array_agg(referrer_domain order by {{ landing_hit_order }}))[1] as referrer_domain,
        (array_agg(utm_source order by {{ landing_hit_order }}))[1] as utm_source,
        (array_agg(utm_medium order by {{ landing_hit_order }}))[1] as utm_medium,
        (array_agg(utm_campaign order by {{ landing_hit_order }}))[1] as utm_campaign,
        (array_agg(utm_content order by {{ landing_hit_order }}))[1] as utm_content,
        (array_agg(utm_term order by {{ landing_hit_order }}))[1] as utm_term,
        (array_agg(device_type order by {{ landing_hit_order }}))[1] as device_type,
        (array_agg(country order by {{ landing_hit_order }}))[1] as country
    from session_events
    group by session_id

),

sessions_with_source as (

    select
        *,
        -- the key of a traffic source, nulls included: channels are mapped once per key
        json_build_array(utm_source, utm_medium, referrer_domain)::text as traffic_source_key
    from session_facts

),

channels as materialized (

    -- the channel of each distinct traffic source, computed once (materialized: inlined,
    -- the channel would be computed again for every session): the mapping's rules are
    -- regular expressions, tried in order
    select
        traffic_source_key,
        {{ channel_from_mapping('utm_source', 'utm_medium', 'referrer_domain') }} as channel
    from (
        select distinct on (traffic_source_key)
            traffic_source_key,
            utm_source,
            utm_medium,
            referrer_domain
        from sessions_with_source
    ) as traffic_sources

),

joined as (

    select
        sessions_with_source.*,
        channels.channel,
        anonymous_ids.customer_key
    from sessions_with_source
    inner join channels
        on sessions_with_source.traffic_source_key = channels.traffic_source_key
    inner join anonymous_ids
        on sessions_with_source.anonymous_id = anonymous_ids.anonymous_id

),

final as (

    select
        ---------- ids
        session_id,
        customer_key,
        anonymous_id,
        user_id,

        ---------- timing
        session_started_at,
        session_ended_at,
        {{ utc_date('session_started_at') }} as session_date,
        round(extract(epoch from session_ended_at - session_started_at))::integer as duration_s,

        ---------- traffic source (landing hit)
        landing_page_url,
        referrer,
        referrer_domain,
        utm_source,
        utm_medium,
        utm_campaign,
        utm_content,
        utm_term,
        channel,
        device_type,
        country,

        ---------- behaviour
        events_count,
        page_views,
        purchases,
        engagement_time_s,
        page_views = 1
        and not (has_add_to_cart or has_begin_checkout or has_purchase) as is_bounce,
        page_views > 0 as has_page_view,
        has_view_item,
        has_add_to_cart,
        has_begin_checkout,
        has_purchase,
        has_sign_up,
        has_view_item or has_add_to_cart or has_begin_checkout or has_sign_up as has_engagement_signal,
        first_engagement_signal_at,
        last_engagement_signal_at,

        ---------- metadata
        _last_dt,
        {{ channel_mapping_fingerprint() }} as _channel_mapping_fingerprint

    from joined

)

select * from final
