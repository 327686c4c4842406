#!/usr/bin/env bash
# Loopback HTTP: the gateway's full pipeline beside a bare hyper server (examples/bare_hyper.rs), each
# on one worker thread pinned to CPU 0, driven by wrk pinned to CPU 1, in alternating runs so drift on
# a shared machine hits both alike. Then floods that are 100 % refused (401, and 429 from the rate
# limit), whose throughput should not fall below the accept path's.
#
#   benches/loopback.sh                 # ROUNDS=3 DURATION=10s CONNS=8 by default
#
# Needs wrk (installed from Debian's packages if missing) and taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-8}
SECRET=loopback-bench-secret-0123456789
BARE=127.0.0.1:18800
GATEWAY=127.0.0.1:18801
LIMITED=127.0.0.1:18802
PATH_=/plugins/webhooks/bench

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --example gateway --example bare_hyper >/dev/null 2>&1

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Limits a 10 s run never reaches, so the accept path is measured (the flood runs use the defaults).
cat > "$work/open.json5" <<JSON
{ routes: { bench: { sessionKey: "agent:main:main", secret: "$SECRET" } },
  limits: { rateLimit: { maxRequests: 4294967295 }, inFlight: { maxPerKey: 1024 },
            authFailures: { max: 4294967295 } } }
JSON
cat > "$work/limited.json5" <<JSON
{ routes: { bench: { sessionKey: "agent:main:main", secret: "$SECRET" } } }
JSON

start() { # name, command...
  local name=$1; shift
  TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c 0 "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}
start bare target/release/examples/bare_hyper "$BARE"
start gateway target/release/examples/gateway --config "$work/open.json5" --listen "$GATEWAY"
start limited target/release/examples/gateway --config "$work/limited.json5" --listen "$LIMITED"
for addr in $BARE $GATEWAY $LIMITED; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://$addr/" && break; sleep 0.1; done
done

flow=$(curl -sS -X POST "http://$GATEWAY$PATH_" -H "Authorization: Bearer $SECRET" \
  -H 'Content-Type: application/json' -d '{"action":"create_flow","goal":"loopback"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["flow"]["flowId"])')
get_flow="{\"action\":\"get_flow\",\"flowId\":\"$flow\"}"

run() { # label, url, body, secret
  local line
  line=$(BODY=$3 SECRET=$4 taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
    -s benches/loopback/post.lua "$2" | grep '^RESULT')
  echo "$1 ${line#RESULT }"
}

echo "# $(date -u +%FT%TZ) rounds=$ROUNDS duration=$DURATION connections=$CONNS"
for round in $(seq "$ROUNDS"); do
  run "round=$round bare_hyper" "http://$BARE$PATH_" "$get_flow" "$SECRET"
  run "round=$round gateway_get_flow" "http://$GATEWAY$PATH_" "$get_flow" "$SECRET"
done
run "flood_401" "http://$GATEWAY$PATH_" "$get_flow" "wrong-secret"
run "flood_429" "http://$LIMITED$PATH_" "$get_flow" "$SECRET"
echo "# gateway RSS after the runs: $(ps -o rss= -p "${pids[1]}") KiB"
