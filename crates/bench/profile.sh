#!/usr/bin/env bash
# Profile one service of the checkout path with callgrind, under a short load.
#
#   crates/bench/profile.sh [order-api|api-gateway] [traced|untraced]
#
# Starts a fleet (`fleet up`, fixed high ports), then a second copy of SERVICE under
# `valgrind --tool=callgrind` wired into that fleet (and, for order-api, a second gateway in front
# of it), sends checkouts at a low rate (valgrind runs code ~50x slower), stops everything and
# prints callgrind_annotate's top functions, inclusive and exclusive. Instruction counts, not
# seconds: repeatable on a shared machine. Output in target/profile/.
set -euo pipefail

SERVICE=${1:-order-api}
MODE=${2:-traced}
RATE=${RATE:-5}
DURATION=${DURATION:-40s}
BIN=${BIN:-target/release/fleet}
OUT=target/profile
mkdir -p "$OUT"
rm -f "$OUT/callgrind.$SERVICE.$MODE".*
DATA=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 2
  rm -rf "$DATA"
}
trap cleanup EXIT

SDK_DISABLED=false
[ "$MODE" = untraced ] && SDK_DISABLED=true

OTEL_SDK_DISABLED=$SDK_DISABLED "$BIN" up --gateway-port 18080 --order-api-port 18081 \
  --payment-api-port 15051 --notification-port 15052 --provider-port 18090 \
  --desk-port 13200 --otlp-grpc-port 14317 --otlp-http-port 14318 \
  --sqlite-path "$DATA/fleet.sqlite" >"$OUT/fleet.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 120); do grep -q '^fleet:up' "$OUT/fleet.log" && break; sleep 0.5; done
grep -q '^fleet:up' "$OUT/fleet.log" || { echo "fleet did not start" >&2; exit 1; }

export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:14318 OTEL_BSP_SCHEDULE_DELAY=1000 \
  OTEL_SDK_DISABLED=$SDK_DISABLED LOG_FORMAT=json
VG=(valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$SERVICE.$MODE.%p")
case "$SERVICE" in
  order-api)
    OTEL_SERVICE_NAME=order-api LISTEN_ADDR=127.0.0.1:18181 PAYMENT_API_ADDR=http://127.0.0.1:15051 \
      SQLITE_PATH="$DATA/profiled.sqlite" "${VG[@]}" "$BIN" run order-api >"$OUT/profiled.log" 2>&1 &
    PIDS+=($!)
    PROFILED=$!
    OTEL_SERVICE_NAME=api-gateway LISTEN_ADDR=127.0.0.1:18180 ORDER_API_URL=http://127.0.0.1:18181 \
      NOTIFICATION_ADDR=http://127.0.0.1:15052 ORDER_API_TIMEOUT_MS=60000 \
      "$BIN" run api-gateway >"$OUT/gateway2.log" 2>&1 &
    PIDS+=($!)
    READY=http://127.0.0.1:18181/readyz
    ;;
  api-gateway)
    OTEL_SERVICE_NAME=api-gateway LISTEN_ADDR=127.0.0.1:18180 ORDER_API_URL=http://127.0.0.1:18081 \
      NOTIFICATION_ADDR=http://127.0.0.1:15052 "${VG[@]}" "$BIN" run api-gateway >"$OUT/profiled.log" 2>&1 &
    PIDS+=($!)
    PROFILED=$!
    READY=http://127.0.0.1:18180/readyz
    ;;
  *) echo "SERVICE must be order-api or api-gateway" >&2; exit 2 ;;
esac
for _ in $(seq 1 240); do curl -fs "$READY" >/dev/null 2>&1 && curl -fs http://127.0.0.1:18180/readyz >/dev/null 2>&1 && break; sleep 0.5; done

"$BIN" load --url http://127.0.0.1:18180 --mix checkout=1 --decline-rate 0 --seed 7 \
  --rate "$RATE" --duration "$DURATION" --timeout 60s --quiet --json "$OUT/load.$SERVICE.$MODE.json" \
  >"$OUT/load.$SERVICE.$MODE.txt" || true
sleep 3
kill -TERM "$PROFILED"
wait "$PROFILED" 2>/dev/null || true
FILE=$(ls -t "$OUT"/callgrind."$SERVICE"."$MODE".* | head -1)
echo "== $FILE"
callgrind_annotate --inclusive=yes "$FILE" >"$OUT/inclusive.$SERVICE.$MODE.txt" 2>/dev/null || true
callgrind_annotate "$FILE" >"$OUT/exclusive.$SERVICE.$MODE.txt" 2>/dev/null || true
sed -n 1,60p "$OUT/exclusive.$SERVICE.$MODE.txt"
