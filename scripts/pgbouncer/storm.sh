#!/bin/bash
# usage: storm.sh BIN PORT LABEL: 50 callers on a fresh 50-seat tour for 3 s (create only, one seat each)
BIN=$1; PORT=$2; LABEL=$3; TOK=pgb-operator-token-0123456789abcdef0123
Q="psql -h 127.0.0.1 -p 55432 -U postgres bk -Atc"
T=$($Q "select id from tours t where not is_template and status='active' and tour_date >= current_date and not exists (select 1 from bookings b where b.tour_id = t.id) order by id limit 1")
$Q "update tours set max_capacity = 50, available_spots = 50 where id = '$T'" >/dev/null
echo "== storm $LABEL ($(uptime | sed 's/.*load/load/')): tour $T, 50 seats, 50 callers, 3 s"
$BIN/bookingctl --addr http://127.0.0.1:$PORT --token $TOK bench --tour $T --concurrency 50 --duration 3s --warmup 0 --workload create --seats 1 2>&1 | grep -vE "^(latency|client CPU|server CPU)"
echo "after: available_spots / live bookings / live seats: $($Q "select t.available_spots, count(b.*), coalesce(sum(b.num_adults + b.num_children), 0) from tours t left join bookings b on b.tour_id = t.id and b.booking_status in ('pending','confirmed') where t.id = '$T' group by t.available_spots")"
