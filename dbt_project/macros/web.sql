{#- Web analytics helpers: URL parsing and the marketing channel of a hit. -#}

{% macro url_host(url) -%}
    {#- Lower-cased host of an absolute URL without a leading `www.`; NULL otherwise. The host
        is what `^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?([^/?#:]+)` captures; string
        functions find it when the authority holds no `@` (nearly every URL), the regular
        expression otherwise: a capturing regular expression costs ~4 µs a call, and web
        events hold two URLs each (unit test stg_web__events_finds_url_hosts). -#}
    {%- set authority = "split_part(split_part(split_part(substr(" ~ url ~ ", strpos(" ~ url ~ ", '://') + 3), '/', 1), '?', 1), '#', 1)" %}
    nullif(
        regexp_replace(
            lower(
                case
                    when {{ url }} !~ '^[A-Za-z][A-Za-z0-9+.-]*://' then null
                    when strpos({{ authority }}, '@') = 0 then split_part({{ authority }}, ':', 1)
                    else substring({{ url }} from '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?([^/?#:]+)')
                end
            ),
            '^www\.',
            ''
        ),
        ''
    )
{%- endmacro %}


{% macro channel_from_mapping(utm_source, utm_medium, referrer_domain) -%}
    {#- Marketing channel of a hit, by the analyst-editable `channel_mapping` seed:
        `direct` when the hit has no utm_source, no utm_medium and no (external) referrer;
        else the channel of the first rule, by ascending `priority`, whose every non-empty
        pattern matches (case-insensitive PostgreSQL regular expressions; an empty pattern
        matches anything, a pattern never matches a missing value). NULL when no rule
        matches: the seed ends with a catch-all rule, and tests fail if it is removed. -#}
    case
        when {{ utm_source }} is null and {{ utm_medium }} is null and {{ referrer_domain }} is null
            then 'direct'
        else (
            -- the rules' columns are renamed so that they cannot capture the caller's
            -- unqualified utm_source / utm_medium / referrer_domain
            select rules.mapped_channel
            from (
                select
                    priority as rule_priority,
                    utm_source as source_pattern,
                    utm_medium as medium_pattern,
                    referrer_domain as referrer_pattern,
                    channel as mapped_channel
                from {{ ref('channel_mapping') }}
            ) as rules
            where
                (rules.source_pattern is null or {{ utm_source }} ~* rules.source_pattern)
                and (rules.medium_pattern is null or {{ utm_medium }} ~* rules.medium_pattern)
                and (rules.referrer_pattern is null or {{ referrer_domain }} ~* rules.referrer_pattern)
            order by rules.rule_priority
            limit 1
        )
    end
{%- endmacro %}


{% macro channel_mapping_fingerprint() -%}
    {#- md5 of the whole `channel_mapping` seed: incremental models store it to notice an
        edit of the mapping and recompute the channels it affects. -#}
    (
        select md5(string_agg(
            concat_ws('|', mapping.priority, mapping.utm_source, mapping.utm_medium,
                mapping.referrer_domain, mapping.channel),
            ',' order by mapping.priority, mapping.channel
        ))
        from {{ ref('channel_mapping') }} as mapping
    )
{%- endmacro %}


{% macro lead_source_channel(lead_source) -%}
    {#- Channel of a CRM lead source by the `lead_source_mapping` seed, matched on the
        normalised value (lower case, runs of other characters as `_`). A NULL lead source
        (most persons have none) skips the lookup. -#}
    case when {{ lead_source }} is not null then (
        select mapping.mapped_channel
        from (
            select
                lead_source as mapped_lead_source,
                channel as mapped_channel
            from {{ ref('lead_source_mapping') }}
        ) as mapping
        where mapping.mapped_lead_source = {{ normalize_code(lead_source) }}
        limit 1
    ) end
{%- endmacro %}
