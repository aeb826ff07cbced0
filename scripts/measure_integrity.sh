#!/usr/bin/env bash
# Measures RunChecks at scale: for each size, a throwaway bookingd with its
# embedded PostgreSQL (fresh data directory), a synthetic healthy marketplace
# of that many bookings (scripts/generate_bookings.sql), then
#   - the full RunChecks (every check, concurrently) three times: wall time
#     of the whole run and each check's own duration as reported, and
#   - each check alone, three times (best of three), so per-check numbers are
#     not inflated by the others competing for the same 2 cores.
#
# usage: scripts/measure_integrity.sh [sizes...]     (default: 100000 1000000)
# needs: cargo-built bookingd/bookingctl (debug is fine: the time is spent in
# PostgreSQL), psql, jq, PostgreSQL server binaries (see BOOKINGD_PG_BIN_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("${@:-100000 1000000}")
read -r -a sizes <<< "${sizes[*]}"
cargo build --quiet --bin bookingd --bin bookingctl
# Run from a copy with a neutral name: on a shared machine, a neighbour's
# `pkill bookingd` must not take the measurement server down mid-run.
work=$(mktemp -d /tmp/integrity-measure-bin-XXXXXX)
cp target/debug/bookingd "$work/measured-server"
cp target/debug/bookingctl "$work/ctl"
bookingd="$work/measured-server"
bookingctl="$work/ctl"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

for size in "${sizes[@]}"; do
    dir=$(mktemp -d /tmp/integrity-measure-XXXXXX)
    chmod 755 "$dir" # the embedded server runs as nobody when we are root
    pg_port=$(free_port)
    grpc_port=$(free_port)
    echo "== $size bookings (data dir $dir)"
    "$bookingd" --data-dir "$dir" --pg-port "$pg_port" --listen-addr "127.0.0.1:$grpc_port" \
        --seed-demo false --check-statement-timeout-ms 60000 >"$dir/bookingd.log" 2>&1 &
    server=$!
    trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
    addr="http://127.0.0.1:$grpc_port"
    for _ in $(seq 1 300); do
        "$bookingctl" --addr "$addr" health >/dev/null 2>&1 && break
        kill -0 "$server" 2>/dev/null || { cat "$dir/bookingd.log"; exit 1; }
        sleep 0.2
    done
    url="postgres://postgres@127.0.0.1:$pg_port/postgres"

    started=$(now_ms)
    if ! psql -q "$url" -v bookings="$size" -f scripts/generate_bookings.sql >"$dir/generate.log" 2>&1; then
        cat "$dir/generate.log"; echo "--- bookingd log:"; tail -20 "$dir/bookingd.log"; exit 1
    fi
    grep -v '^Time:' "$dir/generate.log" || true
    echo "generated in $(( ($(now_ms) - started) / 1000 )) s"

    echo "-- full RunChecks (all checks, 4 at once), 3 runs"
    for run in 1 2 3; do
        started=$(now_ms)
        "$bookingctl" --addr "$addr" check --json >"$dir/run$run.jsonl" || true
        echo "run $run: $(( $(now_ms) - started )) ms wall (bookingctl round trip)"
    done
    echo "per check in run 3 (ms, status):"
    jq -r '"  \(.name)\t\(.duration_ms | floor)\t\(.status)\t\(.message)"' "$dir/run3.jsonl" | column -t -s $'\t'

    echo "-- each check alone, best of 3 (ms)"
    for check in $("$bookingctl" --addr "$addr" check --json | jq -r .name); do
        best=""
        for _ in 1 2 3; do
            ms=$("$bookingctl" --addr "$addr" check --check "$check" --json | jq -r '.duration_ms | floor')
            if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
        done
        printf '  %-30s %6s\n' "$check" "$best"
    done

    kill "$server"
    wait "$server" || true
    rm -rf "$dir"
    trap - EXIT
done
rm -rf "$work"
