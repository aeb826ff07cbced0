-- Runbook monitor 1, fixed: every dated (non-template) tour, whatever its
-- status. The runbook looks at active tours only, which hides drift on tours
-- in maintenance (exactly the ones being repaired or paused) and on inactive
-- tours that may be reactivated with a wrong count. Templates are left out:
-- they are never booked.
-- Overbooked tours (live seats above capacity, available clamped to 0) are
-- violations of kind 'overbooked', counted in facts.overbooked_tours.
-- Output contract of every check: violation_count, observed, facts, samples
-- ($1 = most sample rows).
with booked as (
    select tour_id, sum(num_adults + num_children)::bigint as booked_spots
    from bookings
    where booking_status in ('pending', 'confirmed')
    group by tour_id
),
drift as (
    select
        t.id as tour_id,
        t.tour_name,
        t.status,
        t.max_capacity,
        t.available_spots,
        t.overbooked_seats,
        -- overbooked: more live seats than capacity; shown as such, never as
        -- consistent, until releases have paid the excess down
        case when coalesce(b.booked_spots, 0) > t.max_capacity then 'overbooked' else 'drift' end as kind,
        coalesce(b.booked_spots, 0) as actual_booked,
        t.max_capacity - t.available_spots as recorded_booked,
        coalesce(b.booked_spots, 0) - (t.max_capacity - t.available_spots) as discrepancy
    from tours t
    left join booked b on b.tour_id = t.id
    where not t.is_template
      and coalesce(b.booked_spots, 0) <> t.max_capacity - t.available_spots
)
select
    (select count(*) from drift) as violation_count,
    (select coalesce(sum(abs(discrepancy)), 0)::float8 from drift) as observed,
    jsonb_build_object('overbooked_tours', (select count(*) from drift where kind = 'overbooked')) as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select * from drift order by abs(discrepancy) desc, tour_id limit $1
    ) s), '[]'::jsonb) as samples;
