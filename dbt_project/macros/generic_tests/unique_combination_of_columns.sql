{#- Fails on every combination of `columns` that occurs more than once (a compound key
    check without a package dependency). -#}
{% test unique_combination_of_columns(model, columns) %}

    select
        {{ columns | join(', ') }},
        count(*) as occurrences
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1

{% endtest %}
