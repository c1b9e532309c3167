{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='date',
        post_hook=[
            "delete from {{ this }}
            where
                date < (select data_start_date from {{ ref('int_lifecycle__as_of') }})
                or date > (select as_of_date from {{ ref('int_lifecycle__as_of') }})",
            "{{ change_log_consume(ref('int_kpi__contributions')) }}",
        ],
    )
}}

{#- One row per UTC day from the first day with data to the as-of date: every daily KPI of
    docs/kpis.md under its own name. The columns and their formulas come from the KPI
    registry (dbt_project/kpi_registry.yml); macros/kpi_marts.sql computes them, and says
    how a run recomputes only what changed. -#}

{{ kpi_mart('day') }}
