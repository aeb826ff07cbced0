-- Pending bookings whose hold lapsed more than two minutes ago still hold
-- their seats: the sweeper (every BOOKINGD_HOLD_SWEEP_INTERVAL, 5 s by
-- default, in every replica) should have expired them long before. Two
-- minutes leaves room for a busy sweeper and clock skew between replicas
-- (the comparison uses the database's clock). Ids and tours only: no
-- personal data in samples.
with stuck as (
    select id as booking_id, tour_id, hold_expires_at,
           extract(epoch from (now() - hold_expires_at))::bigint as lapsed_seconds
    from bookings
    where booking_status = 'pending'
      and hold_expires_at < now() - interval '2 minutes'
)
select
    (select count(*) from stuck) as violation_count,
    (select coalesce(max(lapsed_seconds), 0)::float8 from stuck) as observed,
    jsonb_build_object('held_seats', (
        select coalesce(sum(b.num_adults + b.num_children), 0)
        from bookings b join stuck s on s.booking_id = b.id
    )) as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select * from stuck order by hold_expires_at, booking_id limit $1
    ) s), '[]'::jsonb) as samples;
