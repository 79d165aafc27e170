#!/bin/bash
# Both binaries' services started side by side; VmRSS and Threads 3 s after each is listening.
cd /work/wt-lean
for svc in api-gateway order-api payment-api notification; do
  pids=()
  for label in base new; do
    BIN=target/lean-base/fleet; [ $label = new ] && BIN=target/release/fleet
    D=/tmp/lean-m/idle-$label-$svc; rm -rf $D; mkdir -p $D
    LISTEN_ADDR=127.0.0.1:0 FLEET_ANNOUNCE=1 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9 \
      PAYMENT_PROVIDER_URL=http://127.0.0.1:9 SQLITE_PATH=$D/orders.sqlite LOG_FORMAT=json RUST_LOG=warn \
      $BIN run $svc > $D/out.log 2> $D/err.log &
    pids+=($!)
  done
  sleep 3
  i=0
  for label in base new; do
    echo "$label $svc $(grep -E 'VmRSS|Threads' /proc/${pids[$i]}/status | tr -s ' \t' ' ' | tr '\n' ' ')"
    i=$((i+1))
  done
  for p in "${pids[@]}"; do kill -TERM $p; done
  for p in "${pids[@]}"; do wait $p; done
done
