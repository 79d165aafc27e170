#!/bin/bash
# usage: startup.sh BIN LABEL SERVICE  -> idle RSS/threads after start, and callgrind Ir of start+stop
BIN=$1; LABEL=$2; SVC=$3
D=/tmp/lean-m/$LABEL-$SVC; rm -rf $D; mkdir -p $D
export LISTEN_ADDR=127.0.0.1:0 FLEET_ANNOUNCE=1 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9 \
  PAYMENT_PROVIDER_URL=http://127.0.0.1:9 SQLITE_PATH=$D/orders.sqlite LOG_FORMAT=json RUST_LOG=warn
if [ "$4" = "callgrind" ]; then
  valgrind --tool=callgrind --callgrind-out-file=$D/cg.out $BIN run $SVC > $D/out.log 2> $D/err.log &
  PID=$!
  for i in $(seq 1 120); do grep -q "fleet:listening" $D/out.log && break; sleep 0.5; done
  sleep 1
  kill -TERM $PID; wait $PID
  grep -h "^summary\|^totals" $D/cg.out | head -2
else
  $BIN run $SVC > $D/out.log 2> $D/err.log &
  PID=$!
  for i in $(seq 1 60); do grep -q "fleet:listening" $D/out.log && break; sleep 0.2; done
  sleep 2
  echo "$LABEL $SVC $(grep -E 'VmRSS|Threads' /proc/$PID/status | tr -s ' \t' ' ' | tr '\n' ' ')"
  kill -TERM $PID; wait $PID
fi
