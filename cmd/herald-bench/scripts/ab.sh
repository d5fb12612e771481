#!/usr/bin/env bash
# Compares two commits of the gateway on one herald-bench scenario, runs interleaved (A B A B ...)
# so that the VM's drift over time falls on both alike. Builds both gateways and the bench (from
# the working tree) into OUT, then prints one line per run.
#
#   cmd/herald-bench/scripts/ab.sh OLD NEW PAIRS [valkey] -- herald-bench arguments...
#   cmd/herald-bench/scripts/ab.sh 94d8d97 HEAD 4 -- publish --publishers 64 --duration 10s
#
# With "valkey" each gateway gets a fresh throwaway valkey-server on port 16398. The JSON of
# every run is left in OUT (default /tmp/herald-ab).
set -euo pipefail
cd "$(dirname "$0")/../../.."
. cmd/herald-bench/scripts/lib.sh
[ $# -ge 4 ] || { sed -n '2,11p' "$0"; exit 2; }
old=$1 new=$2 pairs=$3
shift 3
valkey=no
if [ "$1" = valkey ]; then valkey=yes; shift; fi
[ "$1" = -- ] && shift
OUT=${OUT:-/tmp/herald-ab}
mkdir -p "$OUT"
for v in old new; do
	rev=${!v}
	dir=$(mktemp -d)
	git worktree add -q --detach "$dir" "$rev"
	(cd "$dir" && go build -o "$OUT/herald-$v" ./cmd/herald)
	git worktree remove --force "$dir"
done
go build -o "$OUT/herald-bench" ./cmd/herald-bench
SECRET=bench-secret-0123456789abcdef0123456789
ADDR=127.0.0.1:18092
ulimit -n 20000
trap 'pkill -f "serve --listen $ADDR" || true; valkey-cli -p 16398 shutdown nosave >/dev/null 2>&1 || true' EXIT
for r in $(seq "$pairs"); do
	for v in old new; do
		pkill -f "serve --listen $ADDR" || true
		sleep 0.5
		extra=()
		if [ $valkey = yes ]; then
			fresh_valkey 16398
			extra=(--valkey-url valkey://127.0.0.1:16398)
		fi
		"$OUT/herald-$v" serve --listen $ADDR --jwt-secret $SECRET "${extra[@]}" >"$OUT/gateway-$v.log" 2>&1 &
		wait_http "http://$ADDR/healthz"
		"$OUT/herald-bench" "$@" --url "http://$ADDR" --secret $SECRET --json --quiet >"$OUT/$v-$r.json"
		jq -r --arg tag "$v $r" '"\($tag): " + ([
			(if .accepted_per_second then "\(.accepted_per_second|floor) req/s" else empty end),
			(if .deliveries_per_second then "\(.deliveries_per_second|floor) deliveries/s" else empty end),
			(if .all_caught_up_seconds then "caught up \(.all_caught_up_seconds) s" else empty end),
			(if .request_latency then "p99 \(.request_latency.p99_ms) ms" else empty end),
			(if .latency then "p99 \(.latency.p99_ms) ms" else empty end),
			(if .gateway_cpu_us_per_publish then "\(.gateway_cpu_us_per_publish*10|floor/10) us/publish" else empty end),
			"lost \(.lost) dup \(.duplicated)"] | join(", "))' "$OUT/$v-$r.json"
	done
done
