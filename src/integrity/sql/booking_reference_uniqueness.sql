-- Runbook monitor 3. While a valid unique index on booking_reference alone
-- exists (the schema's bookings_booking_reference_key), PostgreSQL itself
-- guarantees the answer, and re-proving it costs a scan of every booking
-- (about 1.5 s per million, on every watch round). So the scan runs only
-- when that guarantee is gone (constraint dropped, index invalid), which is
-- exactly when duplicates can appear. Index corruption is amcheck's
-- business (bt_index_check), not this monitor's.
with guard as (
    select exists (
        select 1
        from pg_index i
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
        where i.indrelid = to_regclass('bookings')
          and i.indisunique and i.indisvalid and i.indpred is null
          and i.indnkeyatts = 1
          and a.attname = 'booking_reference'
    ) as enforced
),
duplicated as (
    select booking_reference, count(*) as bookings
    from bookings
    where not (select enforced from guard)
    group by booking_reference
    having count(*) > 1
)
select
    (select count(*) from duplicated) as violation_count,
    (select coalesce(sum(bookings), 0)::float8 from duplicated) as observed,
    (select jsonb_build_object('unique_index', enforced) from guard) as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select d.booking_reference, d.bookings,
               (select jsonb_agg(b.id order by b.created_at, b.id) from bookings b
                where b.booking_reference = d.booking_reference) as booking_ids
        from duplicated d
        order by d.bookings desc, d.booking_reference limit $1
    ) s), '[]'::jsonb) as samples;
