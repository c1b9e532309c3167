{#- Fails on every row whose `column_name` lies outside [min_value, max_value] (inclusive),
    for numeric columns. Either bound may be omitted for a one-sided range. NULL passes:
    rates with a zero denominator are NULL by design (test nullness with not_null). -#}
{% test between(model, column_name, min_value=none, max_value=none) %}

    {%- if min_value is none and max_value is none -%}
        {{ exceptions.raise_compiler_error(
            "between: give min_value, max_value or both (column " ~ column_name ~ ")") }}
    {%- endif -%}

    {%- set lower_bound = min_value if min_value is not none else "'-infinity'::numeric" -%}
    {%- set upper_bound = max_value if max_value is not none else "'infinity'::numeric" %}

    select *
    from {{ model }}
    where {{ column_name }} not between {{ lower_bound }} and {{ upper_bound }}

{% endtest %}
