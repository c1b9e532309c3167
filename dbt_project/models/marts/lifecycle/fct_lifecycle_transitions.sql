{%- set intervals_model = ref('int_lifecycle__stage_intervals') -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        indexes=[
            {'columns': ['customer_key', 'transitioned_at']},
        ],
        meta={'test_changed_key': 'customer_key', 'publish_key': 'customer_key'},
        pre_hook=[
            "{{ change_log_delete_recomputed(
                ref('int_lifecycle__stage_intervals'),
                'customer_key',
                change_log_changed_keys(ref('int_lifecycle__stage_intervals'), 'customer_key'),
            ) }}",
            "{{ prepare_tested_rows(ref('int_lifecycle__stage_intervals')) }}",
            "{{ prepare_unpublished_keys(change_log_recompute_all(ref('int_lifecycle__stage_intervals'))) }}",
        ],
        post_hook=[
            "{{ change_log_keep_tested_rows(ref('int_lifecycle__stage_intervals')) }}",
            "{{ keep_unpublished_keys(change_log_changed_keys(ref('int_lifecycle__stage_intervals'), 'customer_key')) }}",
            "{{ change_log_consume(ref('int_lifecycle__stage_intervals')) }}",
        ],
    )
}}

{#- One row per lifecycle stage change: the validity intervals of
    int_lifecycle__stage_intervals seen as their start events.

    Incremental, and equal to a full refresh: a run rewrites only the persons whose
    intervals changed since the last run, as int_lifecycle__stage_intervals' change log says
    (macros/change_log.sql); the pre-hook deletes their stored rows, in the transaction of
    the insert (change_log_delete_recomputed). Everyone when the intervals were built in
    full (the log says so). In a build that runs it, its data tests (but the relationships
    test) read only the persons it recomputed (meta `test_changed_key`: a copy of their
    rows, macros/change_log.sql); their transition_id is a hash of the person and the
    instant, so it cannot collide with another person's. The persons it rewrote are listed
    for the publish (meta `publish_key`, macros/unpublished_keys.sql), which replaces only
    their rows in `analytics`. -#}

{%- set recompute_all = change_log_recompute_all(intervals_model) %}

with

stage_intervals as (

    select * from {{ intervals_model }}

),

{% if not recompute_all %}

    changed_persons as (

        {{ change_log_changed_keys(intervals_model, 'customer_key') }}

    ),

{% endif %}

final as (

    select
        interval_id as transition_id,
        customer_key,
        previous_stage as from_stage,
        stage as to_stage,
        valid_from as transitioned_at,
        {{ utc_date('valid_from') }} as transition_date,
        trigger_type,
        trigger_reason,
        row_number() over (
            partition by customer_key order by valid_from
        ) as transition_number,
        valid_to as next_transitioned_at,
        is_current
    from stage_intervals
    {% if not recompute_all %}
        where customer_key in (select changed_key from changed_persons)
    {% endif %}

)

select * from final
