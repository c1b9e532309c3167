{#- Custom schemas are used as named (staging, intermediate, marts, reference), without the
    target schema as a prefix: the warehouse has one layout whatever the target. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
