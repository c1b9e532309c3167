{{
    config(
        materialized='incremental',
        incremental_strategy='replace_window',
        unique_key='date',
        meta={'window_column': '_web_last_dt'},
        pre_hook=["{{ read_periods_by_bitmap() }}"],
    )
}}

{#- One row per UTC day holding a web event or session: the web measures of kpi_daily,
    computed and kept incrementally by macros/kpi_marts.sql (kpi_web_measures). -#}

{{ kpi_web_measures('day') }}
