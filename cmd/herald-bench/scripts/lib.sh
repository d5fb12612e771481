# Helpers shared by ab.sh and peer-ab.sh (sourced, not run).

# fresh_valkey PORT starts a throwaway valkey-server on PORT, shutting down any earlier one
# there first, and waits until it answers.
fresh_valkey() {
	valkey-cli -p "$1" shutdown nosave >/dev/null 2>&1 || true
	valkey-server --port "$1" --save '' --appendonly no --daemonize yes >/dev/null
	for _ in $(seq 50); do valkey-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.1; done
}

# wait_http URL waits up to 5 s for URL to answer with a 2xx status.
wait_http() {
	for _ in $(seq 50); do curl -sf "$1" >/dev/null && return; sleep 0.1; done
}
