{#- Casting helpers: values from JSON or free text that must not fail the whole build when
    one record holds garbage (the record keeps a NULL instead, visible to tests). -#}

{% macro json_text(json_column, key) -%}
    nullif(btrim({{ json_column }} ->> '{{ key }}'), '')
{%- endmacro %}


{% macro json_numeric(json_column, key) -%}
    case
        when {{ json_text(json_column, key) }} ~ '^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$'
            then ({{ json_text(json_column, key) }})::numeric
    end
{%- endmacro %}


{% macro clean_text(column) -%}
    nullif(btrim({{ column }}), '')
{%- endmacro %}


{% macro normalize_code(column) -%}
    {#- A free-text code as a comparable token: 'Paid Search ' -> 'paid_search'. -#}
    nullif(btrim(regexp_replace(lower({{ column }}), '[^a-z0-9]+', '_', 'g'), '_'), '')
{%- endmacro %}


{% macro utc_date(ts) -%}
    {#- The UTC calendar date of a timestamptz, whatever the session's time zone
        (daily KPIs use the event's date in UTC). -#}
    (({{ ts }}) at time zone 'UTC')::date
{%- endmacro %}


{% macro sql_list(values) -%}
    {#- A Jinja list of strings as a SQL list of literals: ('a', 'b'). -#}
    ({%- for value in values -%}
        '{{ value | replace("'", "''") }}'{{ ", " if not loop.last }}
    {%- endfor -%})
{%- endmacro %}


{% macro surrogate_key(columns) -%}
    {#- md5 of the columns' text values, position-safe (NULL is a distinct marker). -#}
    md5(concat_ws('|'
        {%- for column in columns -%}
            , coalesce(({{ column }})::text, '\N')
        {%- endfor -%}
    ))
{%- endmacro %}
