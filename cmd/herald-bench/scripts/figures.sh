#!/usr/bin/env bash
# Reproduces the figures of docs/benchmarks.md: builds herald and herald-bench from this tree,
# then runs each scenario named on the command line 3 times, each against a fresh gateway, and
# leaves one JSON result per run in OUT (default /tmp/herald-figures).
#
#   cmd/herald-bench/scripts/figures.sh [scenario...]
#
# Scenarios: idle-ws idle-sse fan5 fan5tick sat sse-sat vsat pub0 pub1k vpub0 vpub1k storm vstorm
# (default: all). The v* ones start a throwaway valkey-server on port 16399. Takes about 25
# minutes for all; the machine should be otherwise idle (each result reports other processes' CPU).
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-/tmp/herald-figures}
BIN="$OUT/bin"
mkdir -p "$BIN"
go build -o "$BIN/herald" ./cmd/herald
go build -o "$BIN/herald-bench" ./cmd/herald-bench
git rev-parse --short HEAD >"$OUT/COMMIT" 2>/dev/null || true
export SECRET=bench-secret-0123456789abcdef0123456789
ulimit -n 20000
ADDR=127.0.0.1:18090
VALKEY_PORT=16399
trap 'pkill -f "herald serve --listen $ADDR" || true; valkey-cli -p $VALKEY_PORT shutdown nosave >/dev/null 2>&1 || true' EXIT

start_gateway() {
	pkill -f "herald serve --listen $ADDR" || true
	sleep 0.5
	"$BIN/herald" serve --listen "$ADDR" --jwt-secret "$SECRET" --debug-listen 127.0.0.1:6060 "$@" >"$OUT/gateway.log" 2>&1 &
	for _ in $(seq 50); do curl -sf "http://$ADDR/healthz" >/dev/null && return; sleep 0.1; done
	echo "the gateway did not start; see $OUT/gateway.log" >&2
	exit 1
}

start_valkey() {
	valkey-cli -p $VALKEY_PORT ping >/dev/null 2>&1 ||
		valkey-server --port $VALKEY_PORT --save '' --appendonly no --daemonize yes >/dev/null
	for _ in $(seq 50); do valkey-cli -p $VALKEY_PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
	valkey-cli -p $VALKEY_PORT flushall >/dev/null
	start_gateway --valkey-url "valkey://127.0.0.1:$VALKEY_PORT" "$@"
}

bench() { "$BIN/herald-bench" "$@" --url "http://$ADDR" --secret "$SECRET" --json --quiet; }

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(idle-ws idle-sse fan5 fan5tick sat sse-sat vsat pub0 pub1k vpub0 vpub1k storm vstorm)
for sc in "${scenarios[@]}"; do
	for run in 1 2 3; do
		echo "$sc run $run ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
		case $sc in
		idle-ws) start_gateway; bench idle -n 15000 --transport ws --settle 60s --debug-url http://127.0.0.1:6060 --gc-settle 30s ;;
		idle-sse) start_gateway; bench idle -n 15000 --transport sse --settle 60s --debug-url http://127.0.0.1:6060 --gc-settle 30s ;;
		fan5) start_gateway; bench fanout -n 10000 --rate 5 --duration 30s ;;
		fan5tick) start_gateway; bench fanout -n 10000 --rate 5 --duration 30s --read-tick 1ms ;;
		sat) start_gateway; bench fanout -n 10000 --rate 0 --duration 5s --drain 300s ;;
		sse-sat) start_gateway; bench fanout -n 10000 --rate 0 --duration 5s --drain 300s --transport sse ;;
		vsat) start_valkey; bench fanout -n 10000 --rate 0 --duration 5s --drain 300s ;;
		pub0) start_gateway; bench publish --publishers 64 --duration 10s ;;
		pub1k) start_gateway --history-size 1000000 --replay-cap 1000000; bench publish --publishers 64 --duration 10s --subscribers 1000 ;;
		vpub0) start_valkey; bench publish --publishers 64 --duration 10s ;;
		vpub1k) start_valkey --history-size 1000000 --replay-cap 1000000; bench publish --publishers 64 --duration 10s --subscribers 1000 ;;
		storm) start_gateway; bench storm -n 15000 --messages 50 ;;
		vstorm) start_valkey; bench storm -n 15000 --messages 50 ;;
		*) echo "unknown scenario $sc" >&2; exit 2 ;;
		esac >"$OUT/$sc-$run.json"
	done
done
echo "results in $OUT" >&2
