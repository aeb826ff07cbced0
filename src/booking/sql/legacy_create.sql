-- The legacy path's booking in one statement, so one round trip and no row
-- lock held across a client round trip (it used to be seven, with the tour
-- locked across four). Uses neither create_booking_atomic nor the restore
-- trigger, so it keeps working after the runbook's emergency rollback.
--
-- Same checks in the same order as the function: the tour row is locked
-- (`for update` returns its latest version), a known request id answers with
-- its booking, then bookable / active / seats; the decrement is conditional
-- on the locked row and the booking is priced from it (ROUND(subtotal ×
-- rate / 100), total = subtotal). A request id committed by a racing
-- transaction after this statement's snapshot surfaces as a unique violation
-- on bookings_request_id_created_by_key, which the caller answers with that booking.
--
-- One row when the tour exists: `outcome` 'booked' or 'existing' with the
-- booking's columns, or null (refused) with the tour's state; no row: no such tour.
--
-- $1 tour id, $2 request id, $3 seats, $4 adults, $5 children, $6 booking id,
-- $7 reference, $8 fingerprint, $9 user id, $10 name, $11 email, $12 whatsapp,
-- $13 hold length in seconds, $14 created_by (the principal: idempotency keys are its own)
--
-- The hold ends at the database's now() (this transaction's time, the
-- booking's created_at) + the hold: the clock the sweeper compares with.
with tour as (
    select id, operator_id, origin_schedule_id, is_template, tour_date, status, available_spots,
           adult_price_cents, child_price_cents, currency_code, commission_rate
      from tours
     where id = $1
       for update
),
existing as (
    select b.* from bookings b where b.request_id = $2 and b.created_by = $14
),
taken as (
    update tours t
       set available_spots = t.available_spots - $3, updated_at = now()
      from tour l
     where t.id = l.id
       and not exists (select 1 from existing)
       and not l.is_template and l.tour_date is not null and l.status = 'active'
       and t.available_spots >= $3
    returning l.id, l.operator_id, l.origin_schedule_id, l.currency_code, l.commission_rate,
              $4::int * l.adult_price_cents + $5::int * l.child_price_cents as subtotal
),
inserted as (
    insert into bookings (
        id, booking_reference, request_id, request_fingerprint, tour_id, schedule_id,
        operator_id, user_id, customer_name, customer_email, customer_whatsapp,
        num_adults, num_children, subtotal, commission_amount, total_amount,
        applied_commission_rate, currency_code, booking_status, code_path, hold_expires_at, created_by
    )
    select $6, $7, $2, $8, k.id, k.origin_schedule_id,
           k.operator_id, $9, $10, $11, $12,
           $4, $5, k.subtotal, round(k.subtotal * k.commission_rate / 100)::bigint, k.subtotal,
           k.commission_rate, k.currency_code, 'pending', 'legacy', now() + $13::float8 * interval '1 second', $14
      from taken k
    returning *
)
select b.outcome,
       l.status as tour_status,
       l.available_spots as tour_seats,
       (not l.is_template and l.tour_date is not null) as tour_bookable,
       b.*
  from tour l
  left join (
      select 'booked' as outcome, i.* from inserted i
      union all
      select 'existing' as outcome, e.* from existing e
  ) b on true
