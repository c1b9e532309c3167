{#- Currency conversion with the `fx_rates` seed (USD per unit of each currency, daily).

    Rates are looked up as the latest rate on or before the date: a weekend or a missing
    day takes the previous rate. A date before the first rate of a currency takes that
    first rate (shop history may start before the seed). Conversion goes through USD
    (cross rate), so the seed needs one series per currency, not one per pair.
    The lookups are scalar subqueries on the seed's (currency, rate_date) index. -#}

{% macro _fx_rates_renamed() -%}
    {#- The seed with prefixed column names, so that a caller's unqualified `currency` or
        `rate_date` cannot be captured by the lookup subquery. -#}
    (
        select
            currency as fx_currency,
            rate_date as fx_rate_date,
            usd_per_unit as fx_usd_per_unit
        from {{ ref('fx_rates') }}
    )
{%- endmacro %}


{% macro fx_usd_per_unit(currency, at) -%}
    coalesce(
        (
            select fx.fx_usd_per_unit
            from {{ _fx_rates_renamed() }} as fx
            where fx.fx_currency = upper({{ currency }}) and fx.fx_rate_date <= ({{ at }})::date
            order by fx.fx_rate_date desc
            limit 1
        ),
        (
            select fx.fx_usd_per_unit
            from {{ _fx_rates_renamed() }} as fx
            where fx.fx_currency = upper({{ currency }})
            order by fx.fx_rate_date asc
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
            -- no rate lookup for a missing amount (most web events have none)
            when ({{ amount }}) is null then null
            when upper({{ currency }}) = '{{ reporting }}' then ({{ amount }})::numeric
            else ({{ amount }})::numeric * {{ fx_usd_per_unit(currency, at) }}
            {%- if reporting != 'USD' %}
                / {{ fx_usd_per_unit("'" ~ reporting ~ "'", at) }}
            {%- endif %}
        end,
        2
    )
{%- endmacro %}
