with v as materialized (select _lw_line, _lw_extra, "contact_id", "email", "first_name", "last_name", "phone", "country", "city", "lead_source", "lifecycle_stage", "created_at", "updated_at", _lw_rule,
       case when _lw_rule is not null then _lw_record end as _lw_record
from (
  select _lw_line, _lw_record, _lw_extra, "contact_id", "email", "first_name", "last_name", "phone", "country", "city", "lead_source", "lifecycle_stage", "created_at", "updated_at",
  case
    when _lw_pre_rule is not null then _lw_pre_rule
    when "_lw_v0" is null then 'contact_id: required'
    when "_lw_v1" is null then 'email: required'
    when length("_lw_v5") <> 2 then 'country: must be 2 characters long'
    when "_lw_v8" <> all('{subscriber,lead,marketingqualifiedlead,salesqualifiedlead,opportunity,customer,evangelist,other}'::text[]) then 'lifecycle_stage: unknown value ''' || left("_lw_v8", 60) || ''''
    when "_lw_v9" is null then 'created_at: required'
    when ("_lw_v9" is not null and "created_at" is null) then 'created_at: not a timestamp'
    when "_lw_v10" is null then 'updated_at: required'
    when ("_lw_v10" is not null and "updated_at" is null) then 'updated_at: not a timestamp'
end as _lw_rule
  from (
    select _lw_line, _lw_record, _lw_pre_rule, _lw_extra, "_lw_v0", "_lw_v1", "_lw_v2", "_lw_v3", "_lw_v4", "_lw_v5", "_lw_v6", "_lw_v7", "_lw_v8", "_lw_v9", "_lw_v10",
    "_lw_v0" as "contact_id",
    "_lw_v1" as "email",
    "_lw_v2" as "first_name",
    "_lw_v3" as "last_name",
    "_lw_v4" as "phone",
    "_lw_v5" as "country",
    "_lw_v6" as "city",
    "_lw_v7" as "lead_source",
    "_lw_v8" as "lifecycle_stage",
    case when ("_lw_v9" like '____-__-__%' and "_lw_v9" not ilike '%bc%' and pg_input_is_valid("_lw_v9", 'timestamptz')) then "_lw_v9"::timestamptz end as "created_at",
    case when ("_lw_v10" like '____-__-__%' and "_lw_v10" not ilike '%bc%' and pg_input_is_valid("_lw_v10", 'timestamptz')) then "_lw_v10"::timestamptz end as "updated_at"
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
  nullif("f10", '') as "_lw_v10",
  jsonb_build_object('partner_note', nullif("f11", '')) as _lw_extra
from "lw_stage" offset 0) v
    offset 0) t
  offset 0) r),
quarantined as (
  insert into raw.quarantine
    (batch_id, source, entity, dt, file, line_number, rule, raw_record)
  select '00000000000000000000000000000001'::uuid, 'crm', 'contacts', '2024-03-01'::date, 'crm/contacts/dt=2024-03-01/export.csv', _lw_line, _lw_rule, _lw_record
  from v where _lw_rule is not null
  returning rule),
loaded as (
  insert into "raw"."crm_contacts" ("contact_id", "email", "first_name", "last_name", "phone", "country", "city", "lead_source", "lifecycle_stage", "created_at", "updated_at", _batch_id, _dt, _file, _line_number, _loaded_at, _extra)
  select "contact_id", "email", "first_name", "last_name", "phone", "country", "city", "lead_source", "lifecycle_stage", "created_at", "updated_at", '00000000000000000000000000000001'::uuid, '2024-03-01'::date, 'crm/contacts/dt=2024-03-01/export.csv', _lw_line, now(), _lw_extra
  from v where _lw_rule is null
  returning 1)
select null::text as rule, count(*) from loaded
union all
select rule, count(*) from quarantined group by rule
