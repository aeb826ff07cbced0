-- Synthetic marketplace for measuring the integrity checks at scale.
-- psql -v bookings=1000000 -f scripts/generate_bookings.sql
-- Healthy by construction: every check should PASS (seat invariant, commission,
-- schedule_id capture, unique references). Bookings are spread evenly over 90
-- days in insertion order, so the 24 h windows hold ~1.1% of them and the 1 h
-- window ~0.05%.
\set ON_ERROR_STOP on
\timing on

begin;

-- one tour per 50 bookings, 80% of them dated instances of a template
select greatest(:bookings / 50, 10) as tour_count \gset

insert into operators (company_name, contact_email, commission_rate)
select 'Bench Operator ' || n, 'ops' || n || '@bench.example', (5 + n % 16)::numeric
from generate_series(1, 50) n;

create temp table bench_operators as
select id, row_number() over (order by id) as rn, commission_rate from operators;

insert into tours (operator_id, is_template, tour_name, max_capacity, available_spots,
                   adult_price_cents, child_price_cents, commission_rate)
select o.id, true, 'Bench Template ' || n, 200, 200, 2999 + n, 1500 + n, o.commission_rate
from generate_series(1, 200) n
join bench_operators o on o.rn = 1 + n % 50;

insert into schedules (template_id, operator_id, day_of_week, time_slot, capacity, valid_from)
select id, operator_id, 1, '09:00', 200, current_date - 90 from tours where is_template;

create temp table bench_templates as
select t.id, t.operator_id, s.id as schedule_id, t.adult_price_cents, t.child_price_cents, t.commission_rate,
       row_number() over (order by t.id) as rn
from tours t join schedules s on s.template_id = t.id
where t.is_template;

-- dated tours: instances (4 of 5) and stand-alone ones (1 of 5)
insert into tours (operator_id, parent_template_id, schedule_id, tour_name, tour_date, time_slot,
                   max_capacity, available_spots, adult_price_cents, child_price_cents, commission_rate)
select tpl.operator_id,
       case when n % 5 <> 0 then tpl.id end,
       case when n % 5 <> 0 then tpl.schedule_id end,
       'Bench Tour ' || n,
       current_date - 60 + (n % 120),
       '09:00', 200, 200, tpl.adult_price_cents, tpl.child_price_cents, tpl.commission_rate
from generate_series(1, :tour_count) n
join bench_templates tpl on tpl.rn = 1 + n % 200;

create temp table bench_tours as
select id, schedule_id, operator_id, adult_price_cents, child_price_cents, commission_rate,
       row_number() over (order by id) as rn
from tours where not is_template;
create unique index on bench_tours (rn);

insert into bookings (booking_reference, request_id, request_fingerprint, tour_id, schedule_id, operator_id,
                      customer_name, customer_email, num_adults, num_children, subtotal, commission_amount,
                      total_amount, applied_commission_rate, currency_code, booking_status, code_path,
                      hold_expires_at, confirmed_at, cancelled_at, seats_released_at, created_at, updated_at)
select 'BK' || lpad(g.n::text, 10, '0'),
       'bench-' || g.n,
       'bench',
       t.id, t.schedule_id, t.operator_id,
       'Bench Guest', 'guest' || g.n || '@bench.example',
       s.adults, s.children, p.subtotal,
       round(p.subtotal * t.commission_rate / 100)::bigint, p.subtotal, t.commission_rate, 'EUR',
       st.status,
       case when g.n % 2 = 0 then 'atomic' else 'legacy' end,
       case when st.status = 'pending' then now() + interval '30 minutes' end,
       case when st.status = 'confirmed' then c.created_at + interval '2 minutes' end,
       case when st.status = 'cancelled' then c.created_at + interval '1 hour' end,
       case when st.status in ('cancelled', 'expired') then c.created_at + interval '1 hour' end,
       c.created_at,
       c.created_at + case when st.status = 'pending' then interval '0' else interval '2 minutes' end
from generate_series(1, :bookings) as g(n)
cross join lateral (select 1 + (g.n % 3) as adults, (g.n / 3) % 2 as children) s
cross join lateral (select case
                              when g.n % 20 < 12 then 'confirmed'
                              when g.n % 20 < 14 then 'pending'
                              when g.n % 20 < 19 then 'cancelled'
                              else 'expired'
                           end as status) st
-- inserted in creation order over the last 90 days, as a live system appends them
cross join lateral (select now() - (:bookings - g.n) * (interval '90 days' / :bookings) as created_at) c
join bench_tours t on t.rn = 1 + g.n % (select count(*) from bench_tours)
cross join lateral (select s.adults * t.adult_price_cents + s.children * t.child_price_cents as subtotal) p;

update tours t
set available_spots = t.max_capacity - b.live
from (select tour_id, sum(num_adults + num_children) as live
      from bookings where booking_status in ('pending', 'confirmed') group by tour_id) b
where b.tour_id = t.id;

-- the restore trigger's audit trail for every cancelled booking, and a few
-- creation failures in the last hour (below the WARN threshold: none)
insert into audit_logs (table_name, record_id, action, details, created_at)
select 'bookings', id, 'spots_restored',
       jsonb_build_object('tour_id', tour_id, 'seats', num_adults + num_children, 'released_by', 'trigger'),
       seats_released_at
from bookings where booking_status = 'cancelled';

commit;

vacuum analyze;

select (select count(*) from bookings) as bookings, (select count(*) from tours) as tours,
       (select count(*) from audit_logs) as audit_rows,
       pg_size_pretty(pg_database_size(current_database())) as database_size;
