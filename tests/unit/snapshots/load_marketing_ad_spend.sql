with v as materialized (select _lw_line, _lw_extra, "date", "channel", "campaign_id", "utm_source", "utm_medium", "utm_campaign", "impressions", "clicks", "spend", "currency", _lw_rule,
       case when _lw_rule is not null then _lw_record end as _lw_record
from (
  select _lw_line, _lw_record, _lw_extra, "date", "channel", "campaign_id", "utm_source", "utm_medium", "utm_campaign", "impressions", "clicks", "spend", "currency",
  case
    when _lw_pre_rule is not null then _lw_pre_rule
    when "_lw_v0" is null then 'date: required'
    when ("_lw_v0" is not null and "date" is null) then 'date: not a date'
    when "_lw_v1" is null then 'channel: required'
    when "_lw_v1" <> all('{email,paid_search,paid_social,display,affiliate,referral,event}'::text[]) then 'channel: unknown value ''' || left("_lw_v1", 60) || ''''
    when "_lw_v6" is null then 'impressions: required'
    when ("_lw_v6" is not null and "impressions" is null) then 'impressions: not an integer'
    when "impressions" < 0 then 'impressions: must be at least 0'
    when "_lw_v7" is null then 'clicks: required'
    when ("_lw_v7" is not null and "clicks" is null) then 'clicks: not an integer'
    when "clicks" < 0 then 'clicks: must be at least 0'
    when "_lw_v8" is null then 'spend: required'
    when ("_lw_v8" is not null and "spend" is null) then 'spend: not a number'
    when "spend" < 0 then 'spend: must be at least 0'
    when "_lw_v9" is null then 'currency: required'
    when length("_lw_v9") <> 3 then 'currency: must be 3 characters long'
end as _lw_rule
  from (
    select _lw_line, _lw_record, _lw_pre_rule, _lw_extra, "_lw_v0", "_lw_v1", "_lw_v2", "_lw_v3", "_lw_v4", "_lw_v5", "_lw_v6", "_lw_v7", "_lw_v8", "_lw_v9",
    case when ("_lw_v0" like '____-__-__' and pg_input_is_valid("_lw_v0", 'date')) then "_lw_v0"::date end as "date",
    "_lw_v1" as "channel",
    "_lw_v2" as "campaign_id",
    "_lw_v3" as "utm_source",
    "_lw_v4" as "utm_medium",
    "_lw_v5" as "utm_campaign",
    case when ("_lw_v6" !~ '[^-+.0-9eE[:space:]]' and pg_input_is_valid("_lw_v6", 'bigint')) then "_lw_v6"::bigint end as "impressions",
    case when ("_lw_v7" !~ '[^-+.0-9eE[:space:]]' and pg_input_is_valid("_lw_v7", 'bigint')) then "_lw_v7"::bigint end as "clicks",
    case when ("_lw_v8" !~ '[^-+.0-9eE[:space:]]' and pg_input_is_valid("_lw_v8", 'numeric')) then "_lw_v8"::numeric end as "spend",
    "_lw_v9" as "currency"
    from (select line_number as _lw_line, raw_record as _lw_record, pre_rule as _lw_pre_rule,
  nullif("f0", '') as "_lw_v0",
  nullif("f1", '') as "_lw_v1",
  nullif("f2", '') as "_lw_v2",
  nullif("f3", '') as "_lw_v3",
  nullif("f4", '') as "_lw_v4",
  nullif("f5", '') as "_lw_v5",
  nullif("f6", '') as "_lw_v6",
  nullif("f7", '') as "_lw_v7",
  nullif("f8", '') as "_lw_v8",
  nullif("f9", '') as "_lw_v9",
  jsonb_build_object('partner_note', nullif("f10", '')) as _lw_extra
from "lw_stage" offset 0) v
    offset 0) t
  offset 0) r),
quarantined as (
  insert into raw.quarantine
    (batch_id, source, entity, dt, file, line_number, rule, raw_record)
  select '00000000000000000000000000000001'::uuid, 'marketing', 'ad_spend', '2024-03-01'::date, 'marketing/ad_spend/dt=2024-03-01/export.csv', _lw_line, _lw_rule, _lw_record
  from v where _lw_rule is not null
  returning rule),
loaded as (
  insert into "raw"."marketing_ad_spend" ("date", "channel", "campaign_id", "utm_source", "utm_medium", "utm_campaign", "impressions", "clicks", "spend", "currency", _batch_id, _dt, _file, _line_number, _loaded_at, _extra)
  select "date", "channel", "campaign_id", "utm_source", "utm_medium", "utm_campaign", "impressions", "clicks", "spend", "currency", '00000000000000000000000000000001'::uuid, '2024-03-01'::date, 'marketing/ad_spend/dt=2024-03-01/export.csv', _lw_line, now(), _lw_extra
  from v where _lw_rule is null
  returning 1)
select null::text as rule, count(*) from loaded
union all
select rule, count(*) from quarantined group by rule
