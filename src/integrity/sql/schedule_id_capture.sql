-- Runbook monitor 2, fixed: the runbook divides by count(*) and fails with
-- division_by_zero when no template booking was made in the window; here the
-- rate is null then (nothing to capture).
with window_bookings as (
    select
        b.id as booking_id,
        b.booking_reference,
        b.tour_id,
        t.parent_template_id,
        t.origin_schedule_id as tour_schedule_id,
        b.schedule_id,
        b.code_path,
        b.created_at
    from bookings b
    join tours t on t.id = b.tour_id
    where t.parent_template_id is not null
      and b.created_at > now() - interval '24 hours'
)
select
    count(*) filter (where schedule_id is null) as violation_count,
    case when count(*) = 0 then null
         else round(count(schedule_id) * 100.0 / count(*), 2)::float8 end as observed,
    jsonb_build_object('template_bookings', count(*), 'with_schedule_id', count(schedule_id)) as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select booking_id, booking_reference, tour_id, parent_template_id, tour_schedule_id, code_path, created_at
        from window_bookings where schedule_id is null
        order by created_at desc, booking_id limit $1
    ) s), '[]'::jsonb) as samples
from window_bookings;
