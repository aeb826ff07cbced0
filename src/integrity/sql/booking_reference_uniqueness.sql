-- Runbook monitor 3. The unique constraint bookings_booking_reference_key
-- should make this impossible; the check proves it on the data rather than
-- trusting that the constraint was never dropped.
with duplicated as (
    select booking_reference, count(*) as bookings
    from bookings
    group by booking_reference
    having count(*) > 1
)
select
    (select count(*) from duplicated) as violation_count,
    (select coalesce(sum(bookings), 0)::float8 from duplicated) as observed,
    '{}'::jsonb as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select d.booking_reference, d.bookings,
               (select jsonb_agg(b.id order by b.created_at, b.id) from bookings b
                where b.booking_reference = d.booking_reference) as booking_ids
        from duplicated d
        order by d.bookings desc, d.booking_reference limit $1
    ) s), '[]'::jsonb) as samples;
