#!/usr/bin/env bash
# peak.sh LIMIT CAP RATE: a fleet with MAX_IN_FLIGHT=LIMIT, fleet load at RATE/s with CAP in flight for 10 s; peak RSS/PSS of the four services.
set -u
LIMIT=$1; CAP=$2; RATE=$3
FLEET=/work/main/target/release/fleet
d=$(mktemp -d /work/scratch/peak.XXXX)
MAX_IN_FLIGHT=$LIMIT $FLEET up --any-ports --data-dir $d/fd --sqlite-path $d/orders.sqlite --desk-memory-only > $d/up.log 2>&1 &
UP=$!
for i in $(seq 1 60); do grep -q "fleet:ready api-gateway" $d/up.log && grep -q "fleet:ready desk" $d/up.log && break; sleep 0.5; done
GW=$(grep "fleet:ready api-gateway" $d/up.log | awk '{print $3}')
sleep 2
pids=$(for s in api-gateway order-api payment-api notification; do pgrep -f "fleet run $s\$" -P $UP; done)
sum() { for p in $pids; do awk -v f="$1" '$1==f {print $2}' /proc/$p/smaps_rollup; done | awk '{s+=$1} END{printf "%.1f", s/1024}'; }
echo "idle: Rss $(sum Rss:) Pss $(sum Pss:) Anon $(sum Anonymous:)"
$FLEET load --url $GW --mix checkout=1 --rate 20 --duration 3s > /dev/null 2>&1
( maxr=0; maxp=0; while kill -0 $UP 2>/dev/null && [ ! -f $d/stop ]; do r=$(sum Rss:); p=$(sum Pss:); maxr=$(echo "$r $maxr" | awk '{print ($1>$2)?$1:$2}'); maxp=$(echo "$p $maxp" | awk '{print ($1>$2)?$1:$2}'); echo "$maxr $maxp" > $d/peak; sleep 0.25; done ) &
S=$!
$FLEET load --url $GW --mix checkout=1 --decline-rate 0 --rate $RATE --max-in-flight $CAP --duration 10s --json $d/load.json > $d/load.txt 2>&1
touch $d/stop; sleep 0.5
echo "limit $LIMIT cap $CAP rate $RATE: peak Rss/Pss $(cat $d/peak)"
python3 -c "import json;v=json.load(open('$d/load.json'));print({k:v[k] for k in v if k in ('sent','answered','ok','dropped','statuses','throughput','latency')})" 2>/dev/null || tail -5 $d/load.txt
kill $UP; wait $UP 2>/dev/null
