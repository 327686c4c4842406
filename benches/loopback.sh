#!/usr/bin/env bash
# Loopback HTTP: the gateway's full pipeline beside a bare hyper server (examples/bare_hyper.rs), each
# on one worker thread pinned to CPU 0, driven by wrk pinned to CPU 1, in alternating runs so drift on
# a shared machine hits both alike. Then floods that are 100 % refused (401, and 429 from the rate
# limit), whose throughput should not fall below the accept path's.
#
#   benches/loopback.sh                 # ROUNDS=3 DURATION=10s CONNS=8 by default
#   TELEMETRY=1 benches/loopback.sh     # also the gateway with metrics, and with metrics and the
#                                       # access log (RUST_LOG=info, to a file)
#   BEFORE=path/to/gateway benches/loopback.sh   # also an older gateway binary, for a before/after
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

start() { # name, command... (RUST_LOG from the environment, warn by default)
  local name=$1; shift
  TOKIO_WORKER_THREADS=1 RUST_LOG=${RUST_LOG:-warn} taskset -c 0 "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}
start bare target/release/examples/bare_hyper "$BARE"
start gateway target/release/examples/gateway --config "$work/open.json5" --listen "$GATEWAY"
start limited target/release/examples/gateway --config "$work/limited.json5" --listen "$LIMITED"
# name=address of every gateway variant whose get_flow is measured beside bare hyper.
variants=("gateway_get_flow=$GATEWAY")
if [ -n "${TELEMETRY:-}" ]; then
  start metrics target/release/examples/gateway --config "$work/open.json5" \
    --listen 127.0.0.1:18803 --metrics-listen 127.0.0.1:18813
  RUST_LOG=info start metrics_log target/release/examples/gateway --config "$work/open.json5" \
    --listen 127.0.0.1:18804 --metrics-listen 127.0.0.1:18814
  variants+=("metrics_get_flow=127.0.0.1:18803" "metrics_log_get_flow=127.0.0.1:18804")
fi
if [ -n "${BEFORE:-}" ]; then
  start before "$BEFORE" --config "$work/open.json5" --listen 127.0.0.1:18805
  variants+=("before_get_flow=127.0.0.1:18805")
fi
for addr in $BARE $LIMITED "${variants[@]#*=}"; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://$addr/" && break; sleep 0.1; done
done

get_flow_on() { # address -> a get_flow body for a flow created there
  local flow
  flow=$(curl -sS -X POST "http://$1$PATH_" -H "Authorization: Bearer $SECRET" \
    -H 'Content-Type: application/json' -d '{"action":"create_flow","goal":"loopback"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["flow"]["flowId"])')
  echo "{\"action\":\"get_flow\",\"flowId\":\"$flow\"}"
}
declare -A bodies
for variant in "${variants[@]}"; do bodies[$variant]=$(get_flow_on "${variant#*=}"); done
get_flow=${bodies[${variants[0]}]}

run() { # label, url, body, secret
  local line
  line=$(BODY=$3 SECRET=$4 taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
    -s benches/loopback/post.lua "$2" | grep '^RESULT')
  echo "$1 ${line#RESULT }"
}

echo "# $(date -u +%FT%TZ) rounds=$ROUNDS duration=$DURATION connections=$CONNS"
for round in $(seq "$ROUNDS"); do
  run "round=$round bare_hyper" "http://$BARE$PATH_" "$get_flow" "$SECRET"
  for variant in "${variants[@]}"; do
    run "round=$round ${variant%%=*}" "http://${variant#*=}$PATH_" "${bodies[$variant]}" "$SECRET"
  done
done
run "flood_401" "http://$GATEWAY$PATH_" "$get_flow" "wrong-secret"
run "flood_429" "http://$LIMITED$PATH_" "$get_flow" "$SECRET"
echo "# gateway RSS after the runs: $(ps -o rss= -p "${pids[1]}") KiB"
