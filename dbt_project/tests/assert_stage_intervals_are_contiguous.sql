-- A person's stage intervals cover time without gap or overlap from the first one on:
-- each interval ends where the next begins, only the last one is open (current), and
-- only the first one has no previous stage. Returns the offending intervals. In a build
-- that runs the intervals, only the persons whose intervals it changed (tested_rows).

with

stage_intervals as (

    select * from {{ tested_rows(ref('int_lifecycle__stage_intervals')) }}

),

sequenced as (

    select
        *,
        lead(valid_from) over person_intervals as next_valid_from,
        lag(stage) over person_intervals as expected_previous_stage,
        row_number() over person_intervals as interval_number
    from stage_intervals
    window person_intervals as (partition by customer_key order by valid_from)

)

select
    customer_key,
    valid_from,
    valid_to,
    next_valid_from,
    stage,
    previous_stage,
    expected_previous_stage,
    interval_number
from sequenced
where
    valid_to is distinct from next_valid_from
    or previous_stage is distinct from expected_previous_stage
    or (interval_number = 1) <> (previous_stage is null)
