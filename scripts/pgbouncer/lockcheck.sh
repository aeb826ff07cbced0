#!/bin/bash
# usage: lockcheck.sh BIN PORT : hold a tour's row lock 12 s from psql (direct), book it through bookingd, time it
BIN=$1; PORT=$2; TOK=pgb-operator-token-0123456789abcdef0123
T=$(psql -h 127.0.0.1 -p 55432 -U postgres bk -Atc "select id from tours where not is_template and status='active' and tour_date >= current_date and available_spots > 5 order by id desc limit 1")
psql -h 127.0.0.1 -p 55432 -U postgres bk -c "begin; select 1 from tours where id='$T' for update; select pg_sleep(12); rollback" >/dev/null 2>&1 &
L=$!; sleep 1
S=$(date +%s.%N); OUT=$($BIN/bookingctl --addr http://127.0.0.1:$PORT --token $TOK book --tour $T --name Lock --email lock@example.com 2>&1 | tail -1); E=$(date +%s.%N)
echo "tour locked 12 s; booking answered after $(echo "$E - $S" | bc) s: $OUT"
wait $L
