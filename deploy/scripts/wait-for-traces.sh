#!/usr/bin/env bash
# Wait until Grafana shows a trace: ask Tempo's search API THROUGH Grafana's datasource proxy
# (so the Grafana -> Tempo datasource is proven too), sending one checkout per try so that even
# SAMPLING=head/tail (which keep ~1 trace in 10) produce a kept trace soon.
#
#   deploy/scripts/wait-for-traces.sh [GRAFANA_URL] [GATEWAY_URL]
# Env: WAIT_TIMEOUT (seconds, default 240).
set -euo pipefail

grafana="${1:-http://127.0.0.1:3000}"
gateway="${2:-http://127.0.0.1:8080}"
timeout="${WAIT_TIMEOUT:-240}"
deadline=$(( $(date +%s) + timeout ))

checkout='{"customer_email":"ada@example.com","items":[{"sku":"COFFEE-250G","quantity":2}],"card_number":"4242424242424242"}'

printf 'waiting for a trace in Grafana (%s, Tempo datasource) ' "$grafana"
while :; do
  curl -s -o /dev/null --max-time 5 -X POST "$gateway/checkout" \
    -H 'content-type: application/json' -d "$checkout" || true
  now=$(date +%s)
  body=$(curl -s --max-time 5 \
    "$grafana/api/datasources/proxy/uid/tempo/api/search?limit=1&start=$((now - 3600))&end=$((now + 60))" || true)
  if grep -q '"traceID"' <<<"$body"; then
    id=$(sed -E 's/.*"traceID":"([0-9a-f]+)".*/\1/' <<<"$body")
    printf '\ntrace %s is in Tempo and visible through Grafana\n' "$id"
    printf 'Grafana  %s/explore  (anonymous admin)\n' "$grafana"
    printf 'Overview %s/d/fleet-overview   Sampling %s/d/fleet-sampling\n' "$grafana" "$grafana"
    exit 0
  fi
  if (( now >= deadline )); then
    printf '\nno trace after %ss; last answer from Grafana:\n%s\n' "$timeout" "$body" >&2
    echo "see docs/deploy.md, Troubleshooting" >&2
    exit 1
  fi
  printf '.'
  sleep 3
done
