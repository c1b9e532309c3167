{#- Unpublished keys: a large incremental mart that rewrites only some keys (meta
    `publish_key`, a text column: fct_lifecycle_transitions' customer_key) lists, in
    `<model>__unpublished` beside it, the keys it rewrote since the last publish, or a NULL
    row: "everything", after a full build. The publish (plugins/lifecycle_warehouse/
    publish.py) then replaces only those keys' rows in `analytics` instead of copying the
    whole mart (at a year: 260,000 of 7.4 million transitions), and empties the list in the
    same transaction. Each build adds to it in the transaction of its write, so what no
    publish has taken yet (a failed marts gate) stays listed. -#}

{% macro unpublished_keys_relation(model_relation) -%}
    {{- return(model_relation.incorporate(path={"identifier": model_relation.identifier ~ "__unpublished"})) -}}
{%- endmacro %}


{% macro prepare_unpublished_keys(everything) -%}
    {#- Pre-hook: create the list; when the run rewrites every row (everything: a full
        build, a consumer recomputing everyone) or the list is new (analytics may be older
        than the builds before it), make it say "everything". Decided here: a post-hook
        sees the model's table as existing even on its first build. -#}
    {%- set keys = unpublished_keys_relation(this) -%}
    {%- set key_column = (config.get('meta') or {}).get('publish_key') -%}
    {%- set exists = execute and run_query(
        "select to_regclass('" ~ keys ~ "') is not null"
    ).columns[0].values()[0] -%}
    create table if not exists {{ keys }} ({{ key_column }} text unique);
    {% if everything or not exists or not is_incremental() -%}
        delete from {{ keys }};
        insert into {{ keys }} ({{ key_column }}) values (null);
    {%- endif %}
{%- endmacro %}


{% macro keep_unpublished_keys(changed_keys_sql) -%}
    {#- Post-hook, in the transaction of the model's write: add the keys it rewrote
        (changed_keys_sql, one column changed_key), unless the list already says
        "everything". -#}
    {%- set keys = unpublished_keys_relation(this) -%}
    {%- set key_column = (config.get('meta') or {}).get('publish_key') -%}
    insert into {{ keys }} ({{ key_column }})
    select changed.changed_key
    from ({{ changed_keys_sql }}) as changed
    where not exists (select from {{ keys }} where {{ key_column }} is null)
    on conflict do nothing
{%- endmacro %}
