-- The runbook's database_enhancements.sql: the atomic booking path.
-- Deployed on first start and by AdminService.DeployFunctions; dropped by
-- emergency_database_rollback.sql. Kept out of the numbered migrations so it
-- can come and go without touching the schema. Idempotent: safe to rerun.
--
-- Error codes raised here (mapped to domain errors in src/booking/atomic.rs):
--   BK001 tour not found          BK002 tour not active (detail: status)
--   BK003 sold out (detail: seats left)   BK004 tour is a template / undated
--   22023 invalid parameter

create or replace function create_booking_atomic(p_booking jsonb, p_user_id uuid)
returns bookings
language plpgsql
as $$
declare
    v_tour      tours%rowtype;
    v_adults    integer := (p_booking ->> 'num_adults')::integer;
    v_children  integer := (p_booking ->> 'num_children')::integer;
    v_seats     integer;
    v_subtotal  bigint;
    v_row       bookings%rowtype;
begin
    if v_adults is null or v_children is null or v_adults < 0 or v_children < 0
       or v_adults + v_children < 1 then
        raise exception using errcode = '22023', message = 'invalid seat counts';
    end if;
    v_seats := v_adults + v_children;

    -- the row lock serialises every booking of this tour: the availability
    -- read below and the decrement are one atomic step
    select * into v_tour from tours where id = (p_booking ->> 'tour_id')::uuid for update;
    if not found then
        raise exception using errcode = 'BK001', message = 'tour not found';
    end if;

    -- idempotency, checked under the tour lock: a racing retry of the same
    -- key waits above and then finds the first attempt's booking here
    -- keys are per principal (created_by); a caller that does not name one
    -- (the runbook's examples) is the default booking client
    select * into v_row from bookings
     where request_id = p_booking ->> 'request_id'
       and created_by = coalesce(p_booking ->> 'created_by', 'booking-client');
    if found then
        return v_row;
    end if;

    if v_tour.is_template or v_tour.tour_date is null then
        raise exception using errcode = 'BK004', message = 'tour is a template, book one of its dated instances';
    end if;
    if v_tour.status <> 'active' then
        raise exception using errcode = 'BK002', message = 'tour is not active', detail = v_tour.status;
    end if;
    if v_tour.available_spots < v_seats then
        raise exception using errcode = 'BK003', message = 'not enough seats left',
            detail = v_tour.available_spots::text;
    end if;

    v_subtotal := v_adults * v_tour.adult_price_cents + v_children * v_tour.child_price_cents;

    update tours
       set available_spots = available_spots - v_seats,
           updated_at = now()
     where id = v_tour.id;

    insert into bookings (
        id, booking_reference, request_id, created_by, request_fingerprint, tour_id, schedule_id,
        operator_id, user_id, customer_name, customer_email, customer_whatsapp,
        num_adults, num_children, subtotal, commission_amount, total_amount,
        applied_commission_rate, currency_code, booking_status, code_path, hold_expires_at
    ) values (
        (p_booking ->> 'id')::uuid,
        p_booking ->> 'booking_reference',
        p_booking ->> 'request_id',
        coalesce(p_booking ->> 'created_by', 'booking-client'),
        p_booking ->> 'request_fingerprint',
        v_tour.id,
        v_tour.origin_schedule_id,
        v_tour.operator_id,
        p_user_id,
        p_booking ->> 'customer_name',
        nullif(p_booking ->> 'customer_email', ''),
        nullif(p_booking ->> 'customer_whatsapp', ''),
        v_adults,
        v_children,
        v_subtotal,
        round(v_subtotal * v_tour.commission_rate / 100)::bigint,
        -- the customer pays the subtotal; commission is the marketplace's share of it
        v_subtotal,
        v_tour.commission_rate,
        v_tour.currency_code,
        'pending',
        'atomic',
        -- the hold ends by the database's clock (the clock the sweeper
        -- compares with): now() is this transaction's time, the booking's
        -- created_at. A payload without a hold length (the previous
        -- bookingd, mid rolling deploy, or a hand-made call) keeps its own
        -- hold_expires_at.
        coalesce(now() + (p_booking ->> 'hold_seconds')::float8 * interval '1 second',
                 (p_booking ->> 'hold_expires_at')::timestamptz)
    )
    returning * into v_row;

    return v_row;
end;
$$;

-- Gives seats back when a live booking ends (cancelled or expired), exactly
-- once: seats_released_at marks the row, and the application's own release
-- (used when this trigger is absent) skips rows already marked.
create or replace function restore_tour_availability()
returns trigger
language plpgsql
as $$
begin
    if old.booking_status in ('pending', 'confirmed')
       and new.booking_status in ('cancelled', 'expired')
       and new.seats_released_at is null then
        -- an overbooked tour's excess is paid down before any seat is sold
        -- again (tours.overbooked_seats; the application's release does the same)
        update tours
           set available_spots = available_spots
                                 + greatest(0, old.num_adults + old.num_children - overbooked_seats),
               overbooked_seats = greatest(0, overbooked_seats - (old.num_adults + old.num_children)),
               updated_at = now()
         where id = old.tour_id;
        new.seats_released_at := now();
        insert into audit_logs (table_name, record_id, action, details)
        values ('bookings', old.id, 'spots_restored',
                jsonb_build_object('tour_id', old.tour_id,
                                   'seats', old.num_adults + old.num_children,
                                   'released_by', 'trigger'));
    end if;
    return new;
end;
$$;

-- create or replace (PostgreSQL 14+), not drop + create: DROP TRIGGER takes
-- ACCESS EXCLUSIVE on bookings and queues behind any reader (a pg_dump holds
-- ACCESS SHARE for its whole run), with every booking queued behind it; this
-- takes SHARE ROW EXCLUSIVE, which readers do not block
create or replace trigger restore_availability_trigger
    before update of booking_status on bookings
    for each row execute function restore_tour_availability();
