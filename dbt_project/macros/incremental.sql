{#- Incremental windows. Models that read raw deliveries reprocess the last
    var('late_data_lookback_days') days of deliveries on every run, so that late events,
    duplicates and re-delivered date folders inside that window are caught; a change to a
    delivery older than the window needs `--full-refresh`. -#}

{% macro incremental_cutoff(column) -%}
    {#- First value of `column` (a date) to reprocess: the latest one already in this
        model, minus the lookback. Everything when the model is empty. -#}
    (
        select coalesce(max({{ column }}), '-infinity'::date) - {{ var('late_data_lookback_days') }}
        from {{ this }}
    )
{%- endmacro %}
