#!/usr/bin/env bash
# Issue 12's amplification cases against one gateway binary: for each case a fresh gateway
# (memory broker, defaults), channels filled with 1,000 x 60 KB messages, clients that ask for the
# whole backlog and never read. Prints one line per case; the JSON of each run is left in OUT
# (default /tmp/herald-amplify).
#
#   cmd/herald-bench/scripts/amplify.sh HERALD_BINARY [RUNS] [-- extra herald-bench flags]
#   cmd/herald-bench/scripts/amplify.sh /tmp/herald 3
#
# The bench is built from the working tree. CASES="ws sse" runs a subset.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. cmd/herald-bench/scripts/lib.sh
[ $# -ge 1 ] || { sed -n '2,11p' "$0"; exit 2; }
bin=$(realpath "$1")
runs=${2:-1}
shift $(( $# >= 2 ? 2 : 1 ))
[ "${1:-}" = -- ] && shift
OUT=${OUT:-/tmp/herald-amplify}
mkdir -p "$OUT"
go build -o "$OUT/herald-bench" ./cmd/herald-bench
SECRET=bench-secret-0123456789abcdef0123456789
ADDR=127.0.0.1:18093
# case -> herald-bench amplify arguments (the issue's numbers)
declare -A ARGS=(
	[ws]="--case ws --clients 20 --channels 1"
	[poll]="--case poll --clients 1 --channels 8"
	[history]="--case history --clients 10 --channels 1"
	[sse]="--case sse --clients 1 --channels 8"
)
gw=
stop_gateway() {
	if [ -n "$gw" ]; then kill "$gw" 2>/dev/null || true; wait "$gw" 2>/dev/null || true; gw=; fi
}
trap stop_gateway EXIT
for r in $(seq "$runs"); do
	for c in ${CASES:-ws poll history sse}; do
		stop_gateway
		"$bin" serve --listen $ADDR --jwt-secret $SECRET >"$OUT/gateway-$c-$r.log" 2>&1 &
		gw=$!
		wait_http "http://$ADDR/healthz"
		# shellcheck disable=SC2086
		"$OUT/herald-bench" amplify ${ARGS[$c]} --messages 1000 --size 60000 "$@" \
			--url "http://$ADDR" --pid "$gw" --secret $SECRET --json --quiet >"$OUT/$c-$r.json"
		jq -r --arg tag "$c $r" '"\($tag): \(.clients_opened) clients, RSS before \(.before.rss_bytes/1048576|floor) MiB, " +
			"peak \(.hold.peak_rss_bytes/1048576|floor) MiB, growth per client \(.hold.rss_growth_per_client_bytes/1048576*10|floor/10) MiB, " +
			"after close \(.after_close.rss_bytes/1048576|floor) MiB (\(.returned_fraction*100|floor)% of the growth back), " +
			"slow-consumer closes \(.slow_consumer_closes)"' "$OUT/$c-$r.json"
	done
done
