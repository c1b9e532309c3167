{#- Currency conversion with the `fx_rates` seed (USD per unit of each currency, daily).

    Rates are looked up as the latest rate on or before the date: a weekend or a missing
    day takes the previous rate. A date before the first rate of a currency takes that
    first rate (shop history may start before the seed). Conversion goes through USD
    (cross rate), so the seed needs one series per currency, not one per pair.
    The lookups are scalar subqueries on the seed's (currency, rate_date) index. -#}

{% macro fx_usd_per_unit(currency, at) -%}
    coalesce(
        (
            select fx.usd_per_unit
            from {{ ref('fx_rates') }} as fx
            where fx.currency = upper({{ currency }}) and fx.rate_date <= ({{ at }})::date
            order by fx.rate_date desc
            limit 1
        ),
        (
            select fx.usd_per_unit
            from {{ ref('fx_rates') }} as fx
            where fx.currency = upper({{ currency }})
            order by fx.rate_date asc
            limit 1
        )
    )
{%- endmacro %}


{% macro to_reporting_currency(amount, currency, at) -%}
    {#- `amount` in `currency` (ISO 4217) converted to var('reporting_currency') at the rate
        of date `at` (a date expression: pass utc_date(ts) for a timestamp), rounded to
        cents. NULL when the amount or currency is NULL, or the currency has no rates. -#}
    {%- set reporting = var('reporting_currency') | string | upper | trim -%}
    round(
        case
            when upper({{ currency }}) = '{{ reporting }}' then ({{ amount }})::numeric
            else ({{ amount }})::numeric * {{ fx_usd_per_unit(currency, at) }}
            {%- if reporting != 'USD' %}
                / {{ fx_usd_per_unit("'" ~ reporting ~ "'", at) }}
            {%- endif %}
        end,
        2
    )
{%- endmacro %}
