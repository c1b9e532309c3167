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
