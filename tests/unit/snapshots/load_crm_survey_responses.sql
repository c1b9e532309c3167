with v as materialized (select _lw_line, _lw_extra, "response_id", "contact_id", "survey_type", "score", "submitted_at", "comment", _lw_rule,
       case when _lw_rule is not null then _lw_record end as _lw_record
from (
  select _lw_line, _lw_record, _lw_extra, "response_id", "contact_id", "survey_type", "score", "submitted_at", "comment",
  case
    when _lw_pre_rule is not null then _lw_pre_rule
    when "_lw_v0" is null then 'response_id: required'
    when "_lw_v1" is null then 'contact_id: required'
    when "_lw_v2" is null then 'survey_type: required'
    when "_lw_v2" <> all('{nps,csat}'::text[]) then 'survey_type: unknown value ''' || left("_lw_v2", 60) || ''''
    when "_lw_v3" is null then 'score: required'
    when ("_lw_v3" is not null and "score" is null) then 'score: not an integer'
    when "_lw_v4" is null then 'submitted_at: required'
    when ("_lw_v4" is not null and "submitted_at" is null) then 'submitted_at: not a timestamp'
    when (survey_type <> 'nps' or score between 0 and 10) is false then 'score: nps must be 0–10'
    when (survey_type <> 'csat' or score between 1 and 5) is false then 'score: csat must be 1–5'
end as _lw_rule
  from (
    select _lw_line, _lw_record, _lw_pre_rule, _lw_extra, "_lw_v0", "_lw_v1", "_lw_v2", "_lw_v3", "_lw_v4", "_lw_v5",
    "_lw_v0" as "response_id",
    "_lw_v1" as "contact_id",
    "_lw_v2" as "survey_type",
    case when ("_lw_v3" !~ '[^-+.0-9eE[:space:]]' and pg_input_is_valid("_lw_v3", 'integer')) then "_lw_v3"::integer end as "score",
    case when ("_lw_v4" like '____-__-__%' and "_lw_v4" not ilike '%bc%' and pg_input_is_valid("_lw_v4", 'timestamptz')) then "_lw_v4"::timestamptz end as "submitted_at",
    "_lw_v5" as "comment"
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
  select '00000000000000000000000000000001'::uuid, 'crm', 'survey_responses', '2024-03-01'::date, 'crm/survey_responses/dt=2024-03-01/export.csv', _lw_line, _lw_rule, _lw_record
  from v where _lw_rule is not null
  returning rule),
loaded as (
  insert into "raw"."crm_survey_responses" ("response_id", "contact_id", "survey_type", "score", "submitted_at", "comment", _batch_id, _dt, _file, _line_number, _loaded_at, _extra)
  select "response_id", "contact_id", "survey_type", "score", "submitted_at", "comment", '00000000000000000000000000000001'::uuid, '2024-03-01'::date, 'crm/survey_responses/dt=2024-03-01/export.csv', _lw_line, now(), _lw_extra
  from v where _lw_rule is null
  returning 1)
select null::text as rule, count(*) from loaded
union all
select rule, count(*) from quarantined group by rule
