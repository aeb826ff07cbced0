-- The runbook's checkpoint 1 (database structure), one sample row per
-- checkpoint. exists() instead of the runbook's count(*) > 0: the answer is
-- the same and it stops at the first template instance.
with checkpoints as (
    select 'schedule_id_column' as checkpoint,
           exists (select 1 from information_schema.columns
                   where table_schema = current_schema()
                     and table_name = 'bookings' and column_name = 'schedule_id') as passed,
           'bookings.schedule_id exists' as requirement
    union all
    select 'enhanced_view',
           exists (select 1 from information_schema.tables
                   where table_schema = current_schema()
                     and table_name = 'active_tours_with_operators'),
           'view active_tours_with_operators exists'
    union all
    select 'template_instances',
           exists (select 1 from tours where parent_template_id is not null),
           'at least one tour is an instance of a template'
)
select
    count(*) filter (where not passed) as violation_count,
    null::float8 as observed,
    '{}'::jsonb as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select * from checkpoints order by passed, checkpoint limit $1
    ) s), '[]'::jsonb) as samples
from checkpoints;
