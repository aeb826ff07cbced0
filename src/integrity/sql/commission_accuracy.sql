-- Runbook monitor 4, same window (bookings of the last hour) and tolerance
-- (more than 1 cent off). round() on numeric rounds half away from zero,
-- like create_booking_atomic and the legacy path.
with wrong as (
    select
        id as booking_id,
        booking_reference,
        tour_id,
        subtotal,
        commission_amount,
        total_amount,
        applied_commission_rate,
        round(subtotal * applied_commission_rate / 100) as calculated_commission,
        abs(commission_amount - round(subtotal * applied_commission_rate / 100)) as commission_error,
        created_at
    from bookings
    where created_at > now() - interval '1 hour'
      and abs(commission_amount - round(subtotal * applied_commission_rate / 100)) > 1
)
select
    (select count(*) from wrong) as violation_count,
    (select coalesce(max(commission_error), 0)::float8 from wrong) as observed,
    '{}'::jsonb as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select * from wrong order by commission_error desc, booking_id limit $1
    ) s), '[]'::jsonb) as samples;
