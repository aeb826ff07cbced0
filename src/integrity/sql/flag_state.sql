-- The booking-path kill switch as stored, and whether the atomic path's
-- database objects are there to serve it. The environment pin (if any) is
-- known only to the process and is folded in by the check's judgement.
with state as (
    select
        'use_legacy_booking_service' as flag_key,
        f.enabled as stored_enabled,
        f.updated_at as stored_updated_at,
        f.updated_by as stored_updated_by,
        exists (select 1 from information_schema.routines
                where routine_schema = current_schema()
                  and routine_name = 'create_booking_atomic') as atomic_function,
        exists (select 1 from pg_trigger tg
                where tg.tgrelid = to_regclass('bookings')
                  and tg.tgname = 'restore_availability_trigger'
                  and tg.tgenabled <> 'D') as restore_trigger
    from (select 1) as one
    left join feature_flags f on f.key = 'use_legacy_booking_service'
)
select
    0::bigint as violation_count,
    null::float8 as observed,
    (select to_jsonb(state) from state) as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (select * from state limit $1) s), '[]'::jsonb) as samples;
