with v as materialized (select _lw_line, _lw_extra, "loyalty_event_id", "contact_id", "event_type", "points", "occurred_at", "reference", _lw_rule,
       case when _lw_rule is not null then _lw_record end as _lw_record
from (
  select _lw_line, _lw_record, _lw_extra, "loyalty_event_id", "contact_id", "event_type", "points", "occurred_at", "reference",
  case
    when _lw_pre_rule is not null then _lw_pre_rule
    when "_lw_v0" is null then 'loyalty_event_id: required'
    when "_lw_v1" is null then 'contact_id: required'
    when "_lw_v2" is null then 'event_type: required'
    when "_lw_v2" <> all('{earned,redeemed,expired,referral}'::text[]) then 'event_type: unknown value ''' || left("_lw_v2", 60) || ''''
    when "_lw_v3" is null then 'points: required'
    when ("_lw_v3" is not null and "points" is null) then 'points: not an integer'
    when "_lw_v4" is null then 'occurred_at: required'
    when ("_lw_v4" is not null and "occurred_at" is null) then 'occurred_at: not a timestamp'
end as _lw_rule
  from (
    select _lw_line, _lw_record, _lw_pre_rule, _lw_extra, "_lw_v0", "_lw_v1", "_lw_v2", "_lw_v3", "_lw_v4", "_lw_v5",
    "_lw_v0" as "loyalty_event_id",
    "_lw_v1" as "contact_id",
    "_lw_v2" as "event_type",
    case when ("_lw_v3" !~ '[^-+.0-9eE[:space:]]' and pg_input_is_valid("_lw_v3", 'integer')) then "_lw_v3"::integer end as "points",
    case when ("_lw_v4" like '____-__-__%' and "_lw_v4" not ilike '%bc%' and pg_input_is_valid("_lw_v4", 'timestamptz')) then "_lw_v4"::timestamptz end as "occurred_at",
    "_lw_v5" as "reference"
    from (select line_number as _lw_line, raw_record as _lw_record, pre_rule as _lw_pre_rule,
  nullif("f0", '') as "_lw_v0",
  nullif("f1", '') as "_lw_v1",
  nullif("f2", '') as "_lw_v2",
  nullif("f3", '') as "_lw_v3",
  nullif("f4", '') as "_lw_v4",
  nullif("f5", '') as "_lw_v5",
  jsonb_build_object('partner_note', nullif("f6", '')) as _lw_extra
from "lw_stage" offset 0) v
    offset 0) t
  offset 0) r),
quarantined as (
  insert into raw.quarantine
    (batch_id, source, entity, dt, file, line_number, rule, raw_record)
  select '00000000000000000000000000000001'::uuid, 'crm', 'loyalty_events', '2024-03-01'::date, 'crm/loyalty_events/dt=2024-03-01/export.csv', _lw_line, _lw_rule, _lw_record
  from v where _lw_rule is not null
  returning rule),
loaded as (
  insert into "raw"."crm_loyalty_events" ("loyalty_event_id", "contact_id", "event_type", "points", "occurred_at", "reference", _batch_id, _dt, _file, _line_number, _loaded_at, _extra)
  select "loyalty_event_id", "contact_id", "event_type", "points", "occurred_at", "reference", '00000000000000000000000000000001'::uuid, '2024-03-01'::date, 'crm/loyalty_events/dt=2024-03-01/export.csv', _lw_line, now(), _lw_extra
  from v where _lw_rule is null
  returning 1)
select null::text as rule, count(*) from loaded
union all
select rule, count(*) from quarantined group by rule
