-- The runbook's performance monitor: bookings per hour over the last 24 h.
-- Its "creation time" is updated_at - created_at, i.e. the time until the
-- booking was last changed (confirmed, cancelled, expired), not how long the
-- insert took; it is reported under that honest name.
with hours as (
    select
        date_trunc('hour', created_at) as hour,
        count(*) as bookings_created,
        round(avg(extract(epoch from (updated_at - created_at))), 3) as avg_seconds_to_last_update
    from bookings
    where created_at > now() - interval '24 hours'
    group by date_trunc('hour', created_at)
)
select
    0::bigint as violation_count,
    (select coalesce(sum(bookings_created), 0) / 24.0 from hours)::float8 as observed,
    jsonb_build_object('bookings_24h', (select coalesce(sum(bookings_created), 0) from hours)) as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select * from hours order by hour desc limit $1
    ) s), '[]'::jsonb) as samples;
