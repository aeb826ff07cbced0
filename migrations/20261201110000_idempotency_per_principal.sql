-- Idempotency keys belong to the principal that sent them (issue 9): two
-- booking clients that happen to pick the same request_id get two bookings,
-- and no client can receive another's booking by replaying its key.
--
-- created_by is the name of the principal whose CreateBooking made the row.
-- Rows from before principals existed were made by the one anonymous caller
-- the service had; they go to 'booking-client', the embedded default's
-- booking principal, so that caller's retries keep replaying. The default
-- stays for the same reason during a rolling deploy: a replica still running
-- the previous function inserts without the column. A constant default adds
-- the column without rewriting the table.
alter table bookings add column created_by text not null default 'booking-client';

-- request_id first: the replay lookup and the unique check are one index probe
alter table bookings add constraint bookings_request_id_created_by_key unique (request_id, created_by);
alter table bookings drop constraint bookings_request_id_key;
