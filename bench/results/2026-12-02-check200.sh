#!/usr/bin/env bash
# A traced fleet at 200 checkouts/s for 60 s (cap 64 in flight, as the bench): spans received vs
# checkouts x 20 + 4, and the gateway's email retries / notification's sheds.
set -u
FLEET=/work/main/target/release/fleet
d=$(mktemp -d /work/scratch/c200.XXXX)
$FLEET up --any-ports --data-dir $d/fd --sqlite-path $d/orders.sqlite --desk-memory-only > $d/up.log 2>&1 &
UP=$!
for i in $(seq 1 60); do grep -q "fleet:up" $d/up.log && break; sleep 0.5; done
GW=$(grep "fleet:ready api-gateway" $d/up.log | awk '{print $3}')
DESK=$(grep "fleet:ready desk" $d/up.log | awk '{print $3}')
NOTE=$(grep "fleet:ready notification" $d/up.log | awk '{print $3}')
rx() { curl -s $DESK/metrics | awk '/^trace_desk_spans_received_total /{print $2}'; }
b=$(rx)
$FLEET load --url $GW --mix checkout=1 --decline-rate 0 --rate 200 --max-in-flight 64 --duration 60s --json $d/l.json > /dev/null 2>&1
sleep 6
a=$(rx)
ok=$(python3 -c "import json;v=json.load(open('$d/l.json'));print(v['statuses'].get('201',0), v['statuses'], v['latency']['p99_ms'])")
echo "received $((a-b)); load: $ok"
curl -s $GW/metrics | grep -E "^fleet_gateway_(email|emails)" 
curl -s $NOTE/metrics | grep "^fleet_requests_shed_total"; curl -s $GW/metrics | grep "^fleet_requests_shed_total"
kill $UP; wait $UP 2>/dev/null
