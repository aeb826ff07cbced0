-- Runbook scenario 3 detection, in SQL: template bookings of the last 24 h
-- that the journey cannot show with their template data, because the
-- enhanced view has no row for the tour or that row has no template_name.
-- (The runner checks first that the view exists; a missing view is a FAIL.)
with missing as (
    select
        b.id as booking_id,
        b.booking_reference,
        b.tour_id,
        t.parent_template_id,
        t.status as tour_status,
        v.id is null as view_row_missing,
        v.template_name,
        b.created_at
    from bookings b
    join tours t on t.id = b.tour_id
    left join active_tours_with_operators v on v.id = b.tour_id
    where t.parent_template_id is not null
      and b.created_at > now() - interval '24 hours'
      and (v.id is null or v.template_name is null)
)
select
    (select count(*) from missing) as violation_count,
    (select count(*) from missing)::float8 as observed,
    '{}'::jsonb as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select * from missing order by created_at desc, booking_id limit $1
    ) s), '[]'::jsonb) as samples;
