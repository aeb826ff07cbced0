-- The runbook's trigger monitor, fixed: it calls lag() inside avg(), which
-- PostgreSQL rejects (window functions cannot be nested in aggregates). The
-- interval to the previous restoration is computed first, then averaged.
with restored as (
    select
        id as audit_id,
        record_id as booking_id,
        details ->> 'tour_id' as tour_id,
        (details ->> 'seats')::integer as seats,
        details ->> 'released_by' as released_by,
        created_at,
        extract(epoch from (created_at - lag(created_at) over (order by created_at, id)))::float8
            as seconds_since_previous
    from audit_logs
    where table_name = 'bookings'
      and action = 'spots_restored'
      and created_at > now() - interval '24 hours'
)
select
    0::bigint as violation_count,
    (select avg(seconds_since_previous) from restored) as observed,
    jsonb_build_object(
        'restorations_24h', (select count(*) from restored),
        'avg_interval_seconds', (select avg(seconds_since_previous) from restored)
    ) as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select * from restored order by created_at desc, audit_id desc limit $1
    ) s), '[]'::jsonb) as samples;
