-- Seats sold beyond capacity that have not been paid down yet. The schema
-- keeps available_spots >= 0, so an overbooked tour (live seats above
-- max_capacity, after a bypass or a bug) is clamped or repaired to 0 and the
-- excess is recorded here. Every seat release pays this down first and only
-- the rest becomes available again: an overbooked tour sells nothing until
-- its live seats are below capacity. In words, the invariant is
--   available_spots - overbooked_seats = max_capacity - live seats
-- with both columns >= 0 and at most one of them non-zero.
alter table tours
    add column overbooked_seats integer not null default 0
        constraint tours_overbooked_seats_check check (overbooked_seats >= 0);
