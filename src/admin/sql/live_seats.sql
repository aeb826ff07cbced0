-- Each selected tour with the seats its live (pending + confirmed) bookings
-- hold: what available_spots (and overbooked_seats) must equal, by the seat
-- invariant. $1 null
-- selects every tour. Reads bookings through bookings_live_seats_idx.
select t.id,
       t.tour_name,
       t.max_capacity,
       t.available_spots,
       t.overbooked_seats,
       coalesce(s.seats, 0)::bigint as live_seats
from tours t
left join (
    select b.tour_id, sum(b.num_adults + b.num_children) as seats
    from bookings b
    where b.booking_status in ('pending', 'confirmed')
      and ($1::uuid[] is null or b.tour_id = any($1))
    group by b.tour_id
) s on s.tour_id = t.id
where $1::uuid[] is null or t.id = any($1)
order by t.id
