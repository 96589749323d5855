#!/usr/bin/env bash
# The `make run` demo (DESIGN §6): a worker with its SQLite store, two sample
# services ("remote web" and "local web"), the local server through
# `linkup start`, and a service routed remote -> local -> remote. Ctrl-C stops
# everything this script started (by pid).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${LINKUP_BIN:-$ROOT/build/linkup}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

if [ ! -x "$BIN" ]; then
    echo "run: $BIN is missing; build first (make build)" >&2
    exit 1
fi
if ! "$BIN" worker --help >/dev/null 2>&1 || ! "$BIN" server --help >/dev/null 2>&1; then
    echo "run: 'linkup worker' and/or 'linkup server' are not available in this build yet."
    echo "run: falling back to checking the example config:"
    echo "+ linkup config check --config examples/linkup.yaml"
    exec "$BIN" config check --config examples/linkup.yaml
fi

TMP=$(mktemp -d /tmp/linkup-demo.XXXXXX)
PIDS=()
export LINKUP_HOME=$TMP/home HOME=$TMP LINKUP_NO_UPDATE_CHECK=1
export LINKUP_HTTPS_ADDR=off LINKUP_DNS_ADDR=off

cleanup() {
    trap - INT TERM EXIT
    echo
    echo "Stopping the demo..."
    "$BIN" stop >/dev/null 2>&1
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
    echo "Stopped."
}
trap cleanup EXIT
trap 'exit 0' INT # Ctrl-C is how the demo ends; the EXIT trap cleans up (without exit the wait loop below would go on)
trap 'exit 143' TERM

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts "$@" in the background with stdout to $log; its pid is recorded in
# PIDS (in this shell, never in a command substitution, so cleanup sees it).
start_bg() {
    local log=$1
    shift
    "$@" >"$log" 2>"$log.err" &
    PIDS+=($!)
}

# Waits for a line matching $pattern in $log; prints the A:P it announced.
wait_addr() {
    local log=$1 pattern=$2
    for _ in $(seq 1 100); do
        local line
        line=$(grep -m1 -E "$pattern" "$log" 2>/dev/null) && {
            echo "${line##* }"
            return 0
        }
        sleep 0.1
    done
    echo "run: the process logging to $log did not start; see $log.err" >&2
    return 1
}

start_bg "$TMP/worker.log" "$BIN" worker --listen 127.0.0.1:0 --token demo-token \
    --store "sqlite:$TMP/worker.db"
start_bg "$TMP/remote.log" "$PY" -u examples/sample_service.py "remote web"
start_bg "$TMP/local.log" "$PY" -u examples/sample_service.py "local web"
WORKER=$(wait_addr "$TMP/worker.log" '^Worker listening on ') || exit 1
REMOTE=$(wait_addr "$TMP/remote.log" '^Serving on ') || exit 1
LOCAL=$(wait_addr "$TMP/local.log" '^Serving on ') || exit 1
export LINKUP_HTTP_ADDR=127.0.0.1:$(free_port)

sed -e "s#@WORKER@#http://$WORKER#" -e "s#@REMOTE@#http://$REMOTE#" -e "s#@LOCAL@#http://$LOCAL#" \
    examples/demo.yaml.in >"$TMP/linkup.yaml"

echo "Worker on $WORKER, remote web on $REMOTE, local web on $LOCAL"
echo "+ linkup start --config $TMP/linkup.yaml"
"$BIN" start --config "$TMP/linkup.yaml" || exit 1
NAME=$(sed -n 's/^  session_name: //p' "$LINKUP_HOME/state" | tr -d "'")

show() {
    echo "+ curl -s -H 'Host: $NAME.example.com' http://$LINKUP_HTTP_ADDR/"
    curl -s -H "Host: $NAME.example.com" "http://$LINKUP_HTTP_ADDR/"
    echo
}
show
echo "+ linkup route local web"
"$BIN" route local web && show
echo "+ linkup route remote web"
"$BIN" route remote web && show

echo
echo "Try it yourself (LINKUP_HOME=$LINKUP_HOME LINKUP_HTTP_ADDR=$LINKUP_HTTP_ADDR):"
echo "  curl -H 'Host: $NAME.example.com' http://$LINKUP_HTTP_ADDR/"
echo "  $BIN route local web"
echo "Press Ctrl-C to stop everything."
while true; do
    sleep 1
done
