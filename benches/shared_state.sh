#!/usr/bin/env bash
# Loopback HTTP on shared state: one gateway counting in memory, one on Redis, and two replicas on
# one Redis (each driven by its own wrk with half the connections; their requests/s summed), in
# alternating rounds. Gateways run on one worker thread pinned to CPU 0, wrk on CPU 1; Redis is the
# machine's (unpinned), so on a 2-core machine it competes with both. Every request is the same
# client and route: one hot key per limiter, the worst case for shared counters.
#
#   TOWER_WEBHOOKS_REDIS_URL=redis://127.0.0.1:6379 benches/shared_state.sh   # ROUNDS=3 DURATION=10s CONNS=8
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-8}
REDIS=${TOWER_WEBHOOKS_REDIS_URL:?set TOWER_WEBHOOKS_REDIS_URL}
SECRET=loopback-bench-secret-0123456789
MEMORY=127.0.0.1:18821
SHARED=127.0.0.1:18822
REPLICA_A=127.0.0.1:18823
REPLICA_B=127.0.0.1:18824
PATH_=/plugins/webhooks/bench

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --example gateway --features redis >/dev/null 2>&1

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

limits='limits: { rateLimit: { maxRequests: 4294967295 }, inFlight: { maxPerKey: 1024 },
                  authFailures: { max: 4294967295 } }'
route="routes: { bench: { sessionKey: \"agent:main:main\", secret: \"$SECRET\" } }"
echo "{ $route, $limits }" > "$work/memory.json5"
echo "{ $route, $limits, sharedState: { url: \"$REDIS\", keyPrefix: \"tw-bench-one:$$:\" } }" \
  > "$work/shared.json5"
echo "{ $route, $limits, sharedState: { url: \"$REDIS\", keyPrefix: \"tw-bench-two:$$:\" } }" \
  > "$work/replicas.json5"

start() { # name, config, address
  TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c 0 target/release/examples/gateway \
    --config "$work/$2.json5" --listen "$3" >"$work/$1.log" 2>&1 &
  pids+=($!)
}
start memory memory $MEMORY
start shared shared $SHARED
start replica_a replicas $REPLICA_A
start replica_b replicas $REPLICA_B
for addr in $MEMORY $SHARED $REPLICA_A $REPLICA_B; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://$addr/healthz" && break; sleep 0.1; done
done

get_flow_on() { # address -> a get_flow body for a flow created there (each has its own store)
  local flow
  flow=$(curl -sS -X POST "http://$1$PATH_" -H "Authorization: Bearer $SECRET" \
    -H 'Content-Type: application/json' -d '{"action":"create_flow","goal":"loopback"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["flow"]["flowId"])')
  echo "{\"action\":\"get_flow\",\"flowId\":\"$flow\"}"
}
declare -A bodies
for addr in $MEMORY $SHARED $REPLICA_A $REPLICA_B; do bodies[$addr]=$(get_flow_on "$addr"); done

wrk_on() { # address, connections
  BODY=${bodies[$1]} SECRET=$SECRET taskset -c 1 wrk -t1 -c"$2" -d"$DURATION" --latency \
    -s benches/loopback/post.lua "http://$1$PATH_" | grep '^RESULT'
}

echo "# $(date -u +%FT%TZ) rounds=$ROUNDS duration=$DURATION connections=$CONNS"
for round in $(seq "$ROUNDS"); do
  line=$(wrk_on $MEMORY "$CONNS"); echo "round=$round memory ${line#RESULT }"
  line=$(wrk_on $SHARED "$CONNS"); echo "round=$round redis ${line#RESULT }"
  wrk_on $REPLICA_A $((CONNS / 2)) > "$work/a" & a=$!
  wrk_on $REPLICA_B $((CONNS / 2)) > "$work/b" & b=$!
  wait $a $b
  echo "round=$round replica_a $(sed 's/^RESULT //' "$work/a")"
  echo "round=$round replica_b $(sed 's/^RESULT //' "$work/b")"
done
for name in shared replica_a replica_b; do
  grep -q "shared state unavailable" "$work/$name.log" && echo "# $name fell back to local limits!"
done
echo "# done"
