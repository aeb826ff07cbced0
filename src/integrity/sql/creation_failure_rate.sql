-- Runbook scenario 2 detection: creation_failed audit rows of the last hour.
-- Their details never hold personal data (see the audit_logs table).
with failures as (
    select id as audit_id, record_id, details, actor, created_at
    from audit_logs
    where table_name = 'bookings'
      and action = 'creation_failed'
      and created_at > now() - interval '1 hour'
)
select
    (select count(*) from failures) as violation_count,
    (select count(*) from failures)::float8 as observed,
    '{}'::jsonb as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select * from failures order by created_at desc, audit_id desc limit $1
    ) s), '[]'::jsonb) as samples;
