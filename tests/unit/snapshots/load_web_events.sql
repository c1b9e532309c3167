with v as materialized (select _lw_line, _lw_extra, "event_id", "event_name", "occurred_at", "anonymous_id", "user_id", "session_id", "page_url", "page_title", "referrer", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "device_type", "country", "properties", _lw_rule,
       case when _lw_rule is not null then _lw_record end as _lw_record
from (
  select _lw_line, _lw_record, _lw_extra, "event_id", "event_name", "occurred_at", "anonymous_id", "user_id", "session_id", "page_url", "page_title", "referrer", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "device_type", "country", "properties",
  case
    when _lw_pre_rule is not null then _lw_pre_rule
    when "_lw_v0" is null then 'event_id: required'
    when "_lw_v1" is null then 'event_name: required'
    when "_lw_v2" is null then 'occurred_at: required'
    when ("_lw_v2" is not null and "occurred_at" is null) then 'occurred_at: not a timestamp'
    when "_lw_v3" is null then 'anonymous_id: required'
    when "_lw_v5" is null then 'session_id: required'
    when "_lw_v14" <> all('{desktop,mobile,tablet}'::text[]) then 'device_type: unknown value ''' || left("_lw_v14", 60) || ''''
    when length("_lw_v15") <> 2 then 'country: must be 2 characters long'
    when ("_lw_v16" is not null and "properties" is null) then 'properties: not a JSON object'
end as _lw_rule
  from (
    select _lw_line, _lw_record, _lw_pre_rule, _lw_extra, "_lw_v0", "_lw_v1", "_lw_v2", "_lw_v3", "_lw_v4", "_lw_v5", "_lw_v6", "_lw_v7", "_lw_v8", "_lw_v9", "_lw_v10", "_lw_v11", "_lw_v12", "_lw_v13", "_lw_v14", "_lw_v15", "_lw_v16",
    "_lw_v0" as "event_id",
    "_lw_v1" as "event_name",
    case when ("_lw_v2" like '____-__-__%' and "_lw_v2" not ilike '%bc%' and pg_input_is_valid("_lw_v2", 'timestamptz')) then "_lw_v2"::timestamptz end as "occurred_at",
    "_lw_v3" as "anonymous_id",
    "_lw_v4" as "user_id",
    "_lw_v5" as "session_id",
    "_lw_v6" as "page_url",
    "_lw_v7" as "page_title",
    "_lw_v8" as "referrer",
    "_lw_v9" as "utm_source",
    "_lw_v10" as "utm_medium",
    "_lw_v11" as "utm_campaign",
    "_lw_v12" as "utm_content",
    "_lw_v13" as "utm_term",
    "_lw_v14" as "device_type",
    "_lw_v15" as "country",
    case when jsonb_typeof("_lw_v16") = 'object' then "_lw_v16" end as "properties"
    from (select line_number as _lw_line, line as _lw_record,
  coalesce(pre_rule, case when j is null then 'not valid JSON'
                          when jsonb_typeof(j) <> 'object' then 'not a JSON object'
                     end) as _lw_pre_rule,
  nullif(j ->> 'event_id', '') as "_lw_v0",
  nullif(j ->> 'event_name', '') as "_lw_v1",
  nullif(j ->> 'occurred_at', '') as "_lw_v2",
  nullif(j ->> 'anonymous_id', '') as "_lw_v3",
  nullif(j ->> 'user_id', '') as "_lw_v4",
  nullif(j ->> 'session_id', '') as "_lw_v5",
  nullif(j ->> 'page_url', '') as "_lw_v6",
  nullif(j ->> 'page_title', '') as "_lw_v7",
  nullif(j ->> 'referrer', '') as "_lw_v8",
  nullif(j ->> 'utm_source', '') as "_lw_v9",
  nullif(j ->> 'utm_medium', '') as "_lw_v10",
  nullif(j ->> 'utm_campaign', '') as "_lw_v11",
  nullif(j ->> 'utm_content', '') as "_lw_v12",
  nullif(j ->> 'utm_term', '') as "_lw_v13",
  nullif(j ->> 'device_type', '') as "_lw_v14",
  nullif(j ->> 'country', '') as "_lw_v15",
  nullif(j -> 'properties', 'null'::jsonb) as "_lw_v16",
  case when jsonb_typeof(j) = 'object'
       then nullif(j - '{event_id,event_name,occurred_at,anonymous_id,user_id,session_id,page_url,page_title,referrer,utm_source,utm_medium,utm_campaign,utm_content,utm_term,device_type,country,properties}'::text[], '{}'::jsonb) end as _lw_extra
from (select line_number, line, pre_rule,
             case when pre_rule is null and pg_input_is_valid(line, 'json')
                  then line::jsonb end as j
      from "lw_stage" offset 0) parsed offset 0) v
    offset 0) t
  offset 0) r),
quarantined as (
  insert into raw.quarantine
    (batch_id, source, entity, dt, file, line_number, rule, raw_record)
  select '00000000000000000000000000000001'::uuid, 'web', 'events', '2024-03-01'::date, 'web/events/dt=2024-03-01/export.jsonl', _lw_line, _lw_rule, _lw_record
  from v where _lw_rule is not null
  returning rule),
loaded as (
  insert into "raw"."web_events" ("event_id", "event_name", "occurred_at", "anonymous_id", "user_id", "session_id", "page_url", "page_title", "referrer", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "device_type", "country", "properties", _batch_id, _dt, _file, _line_number, _loaded_at, _extra)
  select "event_id", "event_name", "occurred_at", "anonymous_id", "user_id", "session_id", "page_url", "page_title", "referrer", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "device_type", "country", "properties", '00000000000000000000000000000001'::uuid, '2024-03-01'::date, 'web/events/dt=2024-03-01/export.jsonl', _lw_line, now(), _lw_extra
  from v where _lw_rule is null
  returning 1)
select null::text as rule, count(*) from loaded
union all
select rule, count(*) from quarantined group by rule
