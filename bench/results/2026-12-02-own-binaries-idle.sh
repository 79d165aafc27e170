#!/usr/bin/env bash
# Idle memory of the four services as `fleet run <name>` children of `fleet up` and, beside
# them, as their own binaries (what the images run) started with the same environment
# (docs/performance.md, fourth pass). Needs: cargo build --release -p fleet, and
# cargo build --release -p api-gateway -p order-api -p payment-api -p notification --bins
set -euo pipefail
T=${T:-target/release}
D=$(mktemp -d)
m() { # pid label: VmRSS, Anonymous and Pss in KiB
  echo "$2 rss=$(awk '/^VmRSS/{print $2}' /proc/$1/status) anon=$(awk '/^Anonymous/{print $2}' /proc/$1/smaps_rollup) pss=$(awk '/^Pss:/{print $2}' /proc/$1/smaps_rollup)"
}
"$T/fleet" up --any-ports --data-dir "$D/data" --desk-memory-only > "$D/up.log" 2>&1 &
UP=$!
sleep 15
for s in api-gateway order-api payment-api notification; do
  p=$(pgrep -f "fleet run $s\$"); m "$p" "fleet-run-$s"
  tr '\0' '\n' < /proc/$p/environ | grep -v '^LISTEN_ADDR=\|^FLEET_ANNOUNCE\|^FLEET_EXIT\|^SQLITE_PATH' > "$D/env.$s"
done
for s in api-gateway order-api payment-api notification; do
  env -i $(tr '\n' ' ' < "$D/env.$s") LISTEN_ADDR=127.0.0.1:0 SQLITE_PATH="$D/solo.sqlite" "$T/$s" > "$D/solo.$s.log" 2>&1 &
done
sleep 12
for s in api-gateway order-api payment-api notification; do m "$(pgrep -f "$T/$s\$")" "own-binary-$s"; done
pkill -f "$T/(api-gateway|order-api|payment-api|notification)\$" || true
kill -TERM "$UP"; wait "$UP" || true
rm -rf "$D"
