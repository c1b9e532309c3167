{#- Identity helpers: how emails are compared and how a person's key is derived. -#}

{% macro normalize_email(email) -%}
    {#- docs/sources.md: emails match after trimming and lower-casing. -#}
    nullif(lower(btrim({{ email }}, e' \t\r\n')), '')
{%- endmacro %}


{% macro hash_email(email) -%}
    {#- SHA-256 (hex) of the normalised email: lets persons be matched and counted without
        the address itself leaving staging. NULL for a missing or blank email. -#}
    encode(sha256(convert_to({{ normalize_email(email) }}, 'UTF8')), 'hex')
{%- endmacro %}


{% macro person_key(identifier_type, identifier) -%}
    {#- customer_key of a person: md5 of '<identifier_type>:<identifier>' of the person's
        anchor identifier, by precedence crm_contact (contact_id) > shop_customer
        (customer_id) > anonymous (web anonymous_id). The type prefix keeps id spaces
        apart; the key depends on the anchor id only, so it is stable across runs and
        does not change when more data about the person arrives. -#}
    {%- if identifier_type not in ('crm_contact', 'shop_customer', 'anonymous') -%}
        {{ exceptions.raise_compiler_error(
            "person_key: identifier_type must be crm_contact, shop_customer or anonymous, got "
            ~ identifier_type) }}
    {%- endif -%}
    md5('{{ identifier_type }}:' || ({{ identifier }})::text)
{%- endmacro %}


{% macro persons_recompute_all() -%}
    {#- For int_identity__persons (this), at run time: whether it recomputes every person:
        it is built in full, or its stored table predates its incremental build (no
        `_last_dt`: a plain table built by an older version of the project, rebuilt in
        place once). -#}
    {{- return(not is_incremental() or stored_columns_missing(['_last_dt'])) -}}
{%- endmacro %}


{% macro persons_delete_recomputed(anonymous_ids_model) -%}
    {#- Pre-hook of int_identity__persons (incremental, append), in the transaction of its
        insert: delete the stored persons the run recomputes: every person who is not an
        anonymous visitor (100 thousand at a year: contacts, web users and shop customers,
        whose facts come from tables the run reads whole), and the anonymous visitors of
        the web window: whose anonymous_id had an event delivered in it when they were
        built (`_last_dt`: it may have vanished since, from a re-delivered folder) or has
        one now (it may have been identified since, and belong to a contact now); the
        model's select, run after this delete, takes again every anonymous id left
        without a person. The cutoff is the one the model's select used
        (incremental_cutoff on the table as it was before this delete). -#}
    {%- if is_incremental() -%}
        delete from {{ this }}
        {%- if not persons_recompute_all() %}
        where
            identity_type <> 'anonymous_visitor'
            or _last_dt >= {{ incremental_cutoff('_last_dt') }}
            or anonymous_id in (
                select anonymous_id from {{ anonymous_ids_model }}
                where _last_dt >= {{ incremental_cutoff('_last_dt') }}
            )
        {%- endif %}
    {%- endif -%}
{%- endmacro %}


{% macro persons_keep_tested_rows() -%}
    {#- Post-hook of int_identity__persons, in the transaction of its write: when
        prepare_tested_rows created the copy (macros/tested_rows.sql), fill it with the
        persons this transaction inserted (their xmin is its id: no savepoint in a model's
        write), whatever the window was. -#}
    {{ fill_tested_rows(this, 'select * from ' ~ this ~ ' where xmin = pg_current_xact_id()::xid') }}
{%- endmacro %}
