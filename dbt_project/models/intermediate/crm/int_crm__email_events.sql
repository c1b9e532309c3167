{{
    config(
        materialized='incremental',
        incremental_strategy='replace_window',
        unique_key='email_event_id',
        meta={'window_column': '_dt', 'test_window_column': '_dt'},
        indexes=[
            {'columns': ['email_event_id'], 'unique': true},
            {'columns': ['contact_id', 'event_type', 'occurred_at', '_dt']},
            {'columns': ['contact_id', 'campaign_id', 'event_type', 'occurred_at', 'occurred_date', '_dt']},
            {'columns': ['_dt']},
            {'columns': ['occurred_date']},
        ],
    )
}}

{#- stg_crm__email_events stored, as int_web__events stores the web events: the models that
    read e-mail events by contact (the lifecycle stages) or their first and last dates (the
    as-of horizon) then look them up through this table's indexes instead of deduplicating
    every delivery of every e-mail event again on each run. The index on (contact_id,
    event_type, occurred_at, _dt) holds every column the stages read of a contact's events
    (an index-only lookup per person); the one on (contact_id, campaign_id, event_type,
    occurred_at, occurred_date, _dt) every column int_lifecycle__email_deliveries reads of a
    (contact, campaign) pair's events.

    Incremental on the delivery date: each run takes the latest deliveries of the date
    folders (`_dt`) delivered since the last successful build (the window,
    incremental_cutoff, macros/incremental.sql), and replaces the stored events of that
    window with them (strategy replace_window); an event delivered again in the window
    replaces its stored row wherever that row's folder is. The result equals a full
    refresh. -#}

with

email_events as (

    select * from {{ ref('stg_crm__email_events') }}
    {% if is_incremental() %}
        where _dt >= {{ incremental_cutoff('_dt') }}
    {% endif %}

),

final as (

    select
        email_event_id,
        contact_id,
        campaign_id,
        event_type,
        url,
        occurred_at,
        occurred_date,
        _dt,
        _loaded_at
    from email_events

)

select * from final
