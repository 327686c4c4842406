#!/usr/bin/env bash
# Instructions per request for the accept path of each layer and the full pipeline, counted by
# callgrind: repeatable whatever else the machine is doing, so a regression shows as a number.
#
#   benches/callgrind.sh            # N=2000 iterations per case
#
# Each case runs at N and at 0 iterations; (Ir(N) - Ir(0)) / N is the cost of one request, start-up
# excluded. "over baseline" subtracts the bare service_fn case (same request building and driving).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
cargo build --release --example instructions >/dev/null 2>&1
bin=target/release/examples/instructions
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count() { # case, iterations -> total instructions
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" "$1" "$2" >/dev/null 2>"$out/log"
  grep -oP 'Collected : \K[0-9]+' "$out/log"
}

per_request() { echo $(( ($(count "$1" "$N") - $(count "$1" 0)) / N )); }

base=$(per_request baseline)
printf '%-20s %12s %14s\n' case "Ir/request" "over baseline"
printf '%-20s %12d %14s\n' baseline "$base" -
for case in auth body_limit rate_limit in_flight scrub pipeline_get_flow pipeline_get_flow_any \
    router_get_flow telemetry_off_get_flow metrics_get_flow metrics_log_get_flow; do
  ir=$(per_request "$case")
  printf '%-20s %12d %14d\n' "$case" "$ir" $((ir - base))
done
