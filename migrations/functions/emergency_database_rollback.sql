-- The runbook's emergency_database_rollback.sql: removes the atomic path.
-- bookingd keeps taking bookings through its legacy path while these are gone.
drop trigger if exists restore_availability_trigger on bookings;
drop function if exists restore_tour_availability();
drop function if exists create_booking_atomic(jsonb, uuid);
