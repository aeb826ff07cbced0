#!/bin/bash
# usage: load.sh BIN PORT LABEL [bench args...]: bookingctl bench + PgBouncer's CPU over the run
BIN=$1; PORT=$2; LABEL=$3; shift 3; TOK=pgb-operator-token-0123456789abcdef0123
PGB=$(cat /tmp/pgb/pgbouncer.pid); PM=$(head -1 /tmp/pgb/data/postmaster.pid)
cpu() { awk '{print $14+$15}' /proc/$PGB/stat; }
A=$(cpu)
echo "== $LABEL ($(uptime | sed 's/.*load/load/'))"
$BIN/bookingctl --addr http://127.0.0.1:$PORT --token $TOK bench --postgres-pid $PM "$@" 2>&1
B=$(cpu); echo "pgbouncer CPU over the run (incl. warm-up): $(( (B-A)*10 )) ms"
