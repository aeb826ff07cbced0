-- Demo catalog: three operators, three templates with weekly schedules and
-- dated instances for the next two weeks, and one instance nearly sold out.
with ops as (
    insert into operators (company_name, contact_email, commission_rate) values
        ('Harbour Lights Cruises', 'ops@harbourlights.example', 12.50),
        ('Old Town Walks', 'hello@oldtownwalks.example', 10.00),
        ('Summit Trails', 'team@summittrails.example', 15.00)
    returning id, company_name, commission_rate
),
templates as (
    insert into tours (operator_id, is_template, tour_name, max_capacity, available_spots,
                       adult_price_cents, child_price_cents, commission_rate)
    select ops.id, true, t.name, t.capacity, t.capacity, t.adult, t.child, ops.commission_rate
    from ops
    join (values
        ('Harbour Lights Cruises', 'Sunset Harbour Cruise', 40, 4500, 2250),
        ('Old Town Walks', 'Old Town Food Walk', 16, 6900, 3450),
        ('Summit Trails', 'Sunrise Summit Hike', 12, 8900, 4450)
    ) as t(company, name, capacity, adult, child) on t.company = ops.company_name
    returning id, operator_id, tour_name, max_capacity, adult_price_cents, child_price_cents, commission_rate
),
schedules_made as (
    insert into schedules (template_id, operator_id, day_of_week, time_slot, capacity, valid_from)
    select templates.id, templates.operator_id, dow, slot, templates.max_capacity, current_date
    from templates
    cross join generate_series(0, 6) as dow
    cross join (values ('09:00'), ('17:30')) as s(slot)
    returning id, template_id, day_of_week, time_slot, capacity
)
insert into tours (operator_id, parent_template_id, origin_schedule_id, tour_name, tour_date, time_slot,
                   max_capacity, available_spots, adult_price_cents, child_price_cents, commission_rate)
select templates.operator_id, templates.id, schedules_made.id, templates.tour_name, day, schedules_made.time_slot,
       schedules_made.capacity, schedules_made.capacity, templates.adult_price_cents,
       templates.child_price_cents, templates.commission_rate
from schedules_made
join templates on templates.id = schedules_made.template_id
cross join generate_series(current_date + 1, current_date + 14, interval '1 day') as g(day_ts)
cross join lateral (select g.day_ts::date as day) d
where extract(dow from d.day) = schedules_made.day_of_week;

-- one stand-alone (non-template) tour, nearly sold out: two seats left, held
-- by confirmed bookings so the invariant holds from the first second
with tour as (
    insert into tours (operator_id, tour_name, tour_date, time_slot, max_capacity, available_spots,
                       adult_price_cents, child_price_cents, commission_rate)
    select id, 'Lighthouse Private Tour', current_date + 3, '11:00', 10, 2, 12000, 6000, commission_rate
    from operators where company_name = 'Harbour Lights Cruises'
    returning id, operator_id, adult_price_cents, commission_rate, currency_code
)
insert into bookings (booking_reference, request_id, request_fingerprint, tour_id, operator_id,
                      customer_name, customer_email, num_adults, num_children, subtotal,
                      commission_amount, total_amount, applied_commission_rate, currency_code,
                      booking_status, code_path, confirmed_at)
select 'BK-DEMO' || n, 'demo-seed-' || n, 'demo', tour.id, tour.operator_id,
       'Demo Guest ' || n, 'guest' || n || '@example.com', 4, 0, 4 * tour.adult_price_cents,
       round(4 * tour.adult_price_cents * tour.commission_rate / 100)::bigint, 4 * tour.adult_price_cents,
       tour.commission_rate, tour.currency_code, 'confirmed', 'legacy', now()
from tour cross join generate_series(1, 2) as n;
