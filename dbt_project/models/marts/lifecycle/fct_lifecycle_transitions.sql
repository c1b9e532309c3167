{#- One row per lifecycle stage change: the validity intervals of
    int_lifecycle__stage_intervals seen as their start events. -#}

with

stage_intervals as (

    select * from {{ ref('int_lifecycle__stage_intervals') }}

),

final as (

    select
        {{ surrogate_key(['customer_key', 'extract(epoch from valid_from)']) }} as transition_id,
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

)

select * from final
