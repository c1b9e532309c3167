{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='month',
        post_hook=[
            "delete from {{ this }}
            where
                month < (select date_trunc('month', data_start_date)::date from {{ ref('int_lifecycle__as_of') }})
                or month > (select date_trunc('month', as_of_date)::date from {{ ref('int_lifecycle__as_of') }})",
            "{{ change_log_consume(ref('int_kpi__contributions')) }}",
        ],
    )
}}

{#- One row per calendar month (UTC; `month` is its first day) from the first month with
    data to the as-of month: every KPI of docs/kpis.md, the (monthly) ones included, and
    `is_complete` (false for the as-of month unless the as-of date is its last day). The
    columns and their formulas come from the KPI registry (dbt_project/kpi_registry.yml);
    macros/kpi_marts.sql computes them, and says how a run recomputes only what changed. -#}

{{ kpi_mart('month') }}
