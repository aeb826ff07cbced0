-- The runbook's checkpoint 2 (function deployment), from the same catalogs,
-- plus two things the runbook's query misses: the trigger function itself,
-- and whether the trigger is enabled on bookings (a disabled trigger is
-- "present" in information_schema but restores nothing).
with components as (
    select 'create_booking_atomic' as component,
           exists (select 1 from information_schema.routines
                   where routine_schema = current_schema()
                     and routine_name = 'create_booking_atomic') as present
    union all
    select 'restore_tour_availability',
           exists (select 1 from information_schema.routines
                   where routine_schema = current_schema()
                     and routine_name = 'restore_tour_availability')
    union all
    select 'restore_availability_trigger',
           exists (select 1 from pg_trigger tg
                   where tg.tgrelid = to_regclass('bookings')
                     and tg.tgname = 'restore_availability_trigger'
                     and tg.tgenabled <> 'D')
)
select
    count(*) filter (where not present) as violation_count,
    null::float8 as observed,
    '{}'::jsonb as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select * from components order by present, component limit $1
    ) s), '[]'::jsonb) as samples
from components;
