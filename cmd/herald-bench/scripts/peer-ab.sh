#!/usr/bin/env bash
# Runs the publish scenario against herald and against Centrifugo, interleaved (H C H C ...), so
# that the VM's drift falls on both alike, and prints one line per run. Both keep a history of
# 1,000 messages for 24 h per channel, as herald does by default.
#
#   cmd/herald-bench/scripts/peer-ab.sh CENTRIFUGO_BIN PAIRS [valkey] -- herald-bench publish arguments...
#   cmd/herald-bench/scripts/peer-ab.sh ~/go/bin/centrifugo 4 -- --publishers 64 --duration 10s
#
# Centrifugo v6.9.1 builds from the Go module proxy:
#   GOBIN=/tmp/peer go install github.com/centrifugal/centrifugo/v6@v6.9.1
# After each Centrifugo run the script reads the channel's stream position through Centrifugo's
# history API and fails unless it equals the accepted count (Centrifugo answers API errors with
# 200). With "valkey", each run gets a fresh throwaway valkey-server on port 16398. JSON results
# are left in OUT (default /tmp/herald-peer).
set -euo pipefail
cd "$(dirname "$0")/../../.."
. cmd/herald-bench/scripts/lib.sh
[ $# -ge 3 ] || { sed -n '2,14p' "$0"; exit 2; }
centrifugo=$1 pairs=$2
shift 2
valkey=no
if [ "$1" = valkey ]; then valkey=yes; shift; fi
[ "$1" = -- ] && shift
OUT=${OUT:-/tmp/herald-peer}
mkdir -p "$OUT"
go build -o "$OUT/herald" ./cmd/herald
go build -o "$OUT/herald-bench" ./cmd/herald-bench
SECRET=bench-secret-0123456789abcdef0123456789
KEY=bench-api-key-0123456789
ADDR=127.0.0.1:18097
ulimit -n 20000
stop() {
	pkill -f "serve --listen $ADDR" || true
	pkill -f "centrifugo --config $OUT/centrifugo.json" || true
	valkey-cli -p 16398 shutdown nosave >/dev/null 2>&1 || true
}
trap stop EXIT
engine='{"type":"memory"}'
[ $valkey = yes ] && engine='{"type":"redis","redis":{"address":["redis://127.0.0.1:16398"]}}'
cat >"$OUT/centrifugo.json" <<JSON
{"http_server":{"address":"127.0.0.1","port":${ADDR#*:}},"http_api":{"key":"$KEY"},"prometheus":{"enabled":true},
 "log":{"level":"error"},"engine":$engine,
 "channel":{"without_namespace":{"history_size":1000,"history_ttl":"24h","force_recovery":true}}}
JSON
for r in $(seq "$pairs"); do
	for v in herald centrifugo; do
		stop
		sleep 0.5
		extra=()
		if [ $valkey = yes ]; then
			fresh_valkey 16398
			extra=(--valkey-url valkey://127.0.0.1:16398)
		fi
		channel=benchpub$r
		if [ $v = herald ]; then
			"$OUT/herald" serve --listen $ADDR --jwt-secret $SECRET "${extra[@]}" >"$OUT/gateway-$v.log" 2>&1 &
			wait_http "http://$ADDR/healthz"
			cred=(--secret $SECRET)
		else
			"$centrifugo" --config "$OUT/centrifugo.json" >"$OUT/gateway-$v.log" 2>&1 &
			wait_http "http://$ADDR/health"
			cred=(--token $KEY --api centrifugo)
		fi
		"$OUT/herald-bench" publish "$@" --channel $channel --url "http://$ADDR" "${cred[@]}" --json --quiet >"$OUT/$v-$r.json"
		accepted=$(jq .accepted "$OUT/$v-$r.json")
		if [ $v = centrifugo ]; then
			stored=$(curl -sf -H "X-API-Key: $KEY" -d "{\"channel\":\"$channel\",\"limit\":0}" "http://$ADDR/api/history" | jq '.result.offset // 0')
			[ "$stored" = "$accepted" ] || { echo "centrifugo stored $stored of $accepted accepted publishes" >&2; exit 1; }
		fi
		jq -r --arg tag "$v $r" '"\($tag): \(.accepted_per_second|floor) req/s, p99 \(.request_latency.p99_ms) ms, \(.gateway_cpu_us_per_publish*10|floor/10) us/publish, statuses \(.statuses)"' "$OUT/$v-$r.json"
	done
done
