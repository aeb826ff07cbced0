-- Runbook scenario 2 detection: creation_failed audit rows of the last hour.
-- Their details never hold personal data (see the audit_logs table).
--
-- Fixed where the runbook is wrong: bookingd records every refused creation
-- (the audit trail wants them), but a tour selling out is the business
-- working, not the booking service failing. Business refusals are reported as
-- a fact and do not count toward the alert; rows without a reason (written by
-- other tools) count, to stay on the safe side.
with recent as (
    select id as audit_id, record_id, details, actor, created_at,
           coalesce(details ->> 'reason', '') in
               ('SOLD_OUT', 'TOUR_NOT_ACTIVE', 'TOUR_NOT_BOOKABLE', 'IDEMPOTENCY_KEY_REUSED') as business_refusal
    from audit_logs
    where table_name = 'bookings'
      and action = 'creation_failed'
      and created_at > now() - interval '1 hour'
),
failures as (
    select audit_id, record_id, details, actor, created_at from recent where not business_refusal
)
select
    (select count(*) from failures) as violation_count,
    (select count(*) from failures)::float8 as observed,
    jsonb_build_object('business_refusals', (select count(*) from recent where business_refusal)) as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select * from failures order by created_at desc, audit_id desc limit $1
    ) s), '[]'::jsonb) as samples;
