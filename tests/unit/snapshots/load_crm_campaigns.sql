with v as materialized (select _lw_line, _lw_extra, "campaign_id", "name", "channel", "start_date", "end_date", "budget", "currency", _lw_rule,
       case when _lw_rule is not null then _lw_record end as _lw_record
from (
  select _lw_line, _lw_record, _lw_extra, "campaign_id", "name", "channel", "start_date", "end_date", "budget", "currency",
  case
    when _lw_pre_rule is not null then _lw_pre_rule
    when "_lw_v0" is null then 'campaign_id: required'
    when "_lw_v1" is null then 'name: required'
    when "_lw_v2" is null then 'channel: required'
    when "_lw_v2" <> all('{email,paid_search,paid_social,display,affiliate,referral,event}'::text[]) then 'channel: unknown value ''' || left("_lw_v2", 60) || ''''
    when ("_lw_v3" is not null and "start_date" is null) then 'start_date: not a date'
    when ("_lw_v4" is not null and "end_date" is null) then 'end_date: not a date'
    when ("_lw_v5" is not null and "budget" is null) then 'budget: not a number'
    when "budget" < 0 then 'budget: must be at least 0'
    when length("_lw_v6") <> 3 then 'currency: must be 3 characters long'
end as _lw_rule
  from (
    select _lw_line, _lw_record, _lw_pre_rule, _lw_extra, "_lw_v0", "_lw_v1", "_lw_v2", "_lw_v3", "_lw_v4", "_lw_v5", "_lw_v6",
    "_lw_v0" as "campaign_id",
    "_lw_v1" as "name",
    "_lw_v2" as "channel",
    case when ("_lw_v3" like '____-__-__' and pg_input_is_valid("_lw_v3", 'date')) then "_lw_v3"::date end as "start_date",
    case when ("_lw_v4" like '____-__-__' and pg_input_is_valid("_lw_v4", 'date')) then "_lw_v4"::date end as "end_date",
    case when ("_lw_v5" !~ '[^-+.0-9eE[:space:]]' and pg_input_is_valid("_lw_v5", 'numeric')) then "_lw_v5"::numeric end as "budget",
    "_lw_v6" as "currency"
    from (select line_number as _lw_line, raw_record as _lw_record, pre_rule as _lw_pre_rule,
  nullif("f0", '') as "_lw_v0",
  nullif("f1", '') as "_lw_v1",
  nullif("f2", '') as "_lw_v2",
  nullif("f3", '') as "_lw_v3",
  nullif("f4", '') as "_lw_v4",
  nullif("f5", '') as "_lw_v5",
  nullif("f6", '') as "_lw_v6",
  jsonb_build_object('partner_note', nullif("f7", '')) as _lw_extra
from "lw_stage" offset 0) v
    offset 0) t
  offset 0) r),
quarantined as (
  insert into raw.quarantine
    (batch_id, source, entity, dt, file, line_number, rule, raw_record)
  select '00000000000000000000000000000001'::uuid, 'crm', 'campaigns', '2024-03-01'::date, 'crm/campaigns/dt=2024-03-01/export.csv', _lw_line, _lw_rule, _lw_record
  from v where _lw_rule is not null
  returning rule),
loaded as (
  insert into "raw"."crm_campaigns" ("campaign_id", "name", "channel", "start_date", "end_date", "budget", "currency", _batch_id, _dt, _file, _line_number, _loaded_at, _extra)
  select "campaign_id", "name", "channel", "start_date", "end_date", "budget", "currency", '00000000000000000000000000000001'::uuid, '2024-03-01'::date, 'crm/campaigns/dt=2024-03-01/export.csv', _lw_line, now(), _lw_extra
  from v where _lw_rule is null
  returning 1)
select null::text as rule, count(*) from loaded
union all
select rule, count(*) from quarantined group by rule
