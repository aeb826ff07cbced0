#!/bin/bash
# usage: start.sh BIN PORT DBPORT [extra env...]  -> starts bookingd, prints pid
BIN=$1; PORT=$2; DBPORT=$3; shift 3
TOK=pgb-operator-token-0123456789abcdef0123; H=$(printf %s "$TOK" | sha256sum | cut -d' ' -f1)
env "$@" DATABASE_URL=postgres://postgres@127.0.0.1:$DBPORT/bk BOOKINGD_MIGRATE_ON_START=false \
  BOOKINGD_LISTEN_ADDR=127.0.0.1:$PORT BOOKINGD_PRINCIPALS="op:operator:$H" $BIN/bookingd > /tmp/pgb/bkd-$PORT.log 2>&1 &
echo $!
