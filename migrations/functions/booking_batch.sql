-- bookingd's group commit for the atomic path: a batch of bookings in one
-- call (one statement, one commit). Each booking is still made by the
-- runbook's create_booking_atomic, and a refusal (sold out, inactive, a
-- unique violation) is that booking's answer alone and never fails its
-- neighbours. Items are booked in array order; the
-- caller sorts them by tour id (a fixed lock order) keeping arrival order
-- within a tour. Not part of the runbook: its rollback leaves this in place,
-- and then every call fails with create_booking_atomic's undefined_function,
-- which sends the whole batch to the legacy path. Idempotent: safe to rerun.
--
-- Most batches have no refusal in them, so the whole batch is first booked
-- in one subtransaction; only when an item raises one of the answers below
-- is that attempt rolled back (nothing of it stays) and the batch booked
-- again item by item, each in its own subtransaction. One subtransaction per
-- item costs each booking a subtransaction id and its bookkeeping.
--
-- p_bookings: a JSON array of create_booking_atomic payloads, each with an
-- optional "user_id".

create or replace function create_booking_atomic_batch(p_bookings jsonb)
returns table (item integer, error_code text, error_detail text, error_constraint text, booking bookings)
language plpgsql
as $$
declare
    v_count  integer := coalesce(jsonb_array_length(p_bookings), 0);
    v_booked bookings[] := '{}';
begin
    -- every item at once; the first refusal undoes them all
    begin
        for i in 0 .. v_count - 1 loop
            v_booked := v_booked
                || create_booking_atomic(p_bookings -> i, nullif(p_bookings -> i ->> 'user_id', '')::uuid);
        end loop;
    exception
        when sqlstate 'BK001' or sqlstate 'BK002' or sqlstate 'BK003' or sqlstate 'BK004'
             or invalid_parameter_value or unique_violation or numeric_value_out_of_range then
            v_booked := null;
    end;
    if v_booked is not null then
        error_code := null;
        error_detail := null;
        error_constraint := null;
        for i in 0 .. v_count - 1 loop
            item := i;
            booking := v_booked[i + 1];
            return next;
        end loop;
        return;
    end if;

    -- item by item: each refusal is its own item's answer
    for i in 0 .. v_count - 1 loop
        item := i;
        error_code := null;
        error_detail := null;
        error_constraint := null;
        begin
            booking := create_booking_atomic(p_bookings -> i, nullif(p_bookings -> i ->> 'user_id', '')::uuid);
        exception
            when sqlstate 'BK001' or sqlstate 'BK002' or sqlstate 'BK003' or sqlstate 'BK004'
                 or invalid_parameter_value or unique_violation or numeric_value_out_of_range then
                get stacked diagnostics error_code = returned_sqlstate,
                                        error_detail = pg_exception_detail,
                                        error_constraint = constraint_name;
                booking := null;
        end;
        return next;
    end loop;
end;
$$;
