#!/usr/bin/env bash
# bench/candidate.sh [server|worker] - Linkup as the proxy under test of a harness that starts
# its candidate with a command and these variables (../shared/bench/run.sh --candidate):
#   LISTEN_PORT      plain HTTP port to listen on (127.0.0.1)
#   LISTEN_TLS_PORT  TLS port (local server only; optional). Its leaves are minted for the SNI
#                    name only (a handshake without SNI fails, docs/server.md), so a harness
#                    whose TLS check connects by address without SNI (curl https://127.0.0.1)
#                    cannot use it: measure TLS with bench/run.sh, which sends SNI.
#   BACKEND_HOST, BACKEND_PORT   the origin every request goes to
#   LINKUP           the binary (default: build/linkup of this checkout)
#
#   server  the local server on 127.0.0.1:$LISTEN_PORT (HTTPS on $LISTEN_TLS_PORT with leaves
#           minted by its own CA), registered with a `linkup worker` it starts on 127.0.0.1:0
#   worker  `linkup worker` on 127.0.0.1:$LISTEN_PORT (memory store)
#
# Two sessions route everything to http://$BACKEND_HOST:$BACKEND_PORT/:
#   bench  for `Host: bench.example.com` (the header to pass: --header 'Host: bench.example.com')
#   127    for requests with no such header: the first label of http://127.0.0.1:P/ is its
#          session (SPEC §3.6 first_subdomain) and 0.0.1 its domain, so a harness's header-less
#          readiness check (`curl http://127.0.0.1:$LISTEN_PORT/1k`) is proxied too.
# Runs in the foreground until SIGTERM/SIGINT, which stops what it started.
#
#   ../shared/bench/run.sh --candidate-name linkup --candidate-port 18089 \
#       --candidate 'bench/candidate.sh server' --header 'Host: bench.example.com'
set -euo pipefail
kind=${1:-server}
case $kind in server | worker) ;; *) echo "usage: bench/candidate.sh [server|worker]" >&2; exit 2 ;; esac
: "${LISTEN_PORT:?LISTEN_PORT is not set}" "${BACKEND_PORT:?BACKEND_PORT is not set}"
here=$(cd "$(dirname "$0")" && pwd)
LINKUP=${LINKUP:-$here/../build/linkup}
origin="http://${BACKEND_HOST:-127.0.0.1}:$BACKEND_PORT/"
token=bench-token
run=$(mktemp -d)
pids=()
stop() {
    trap - EXIT TERM INT
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$run"
}
trap stop EXIT
trap 'stop; exit 0' TERM INT

# Waits for "<what> listening on A:P" in file and prints A:P.
listen_addr() {
    local file=$1 what=$2 pid=$3 addr
    for _ in $(seq 100); do
        addr=$(grep -o "$what listening on [^ ]*" "$file" 2>/dev/null | head -1 | awk '{print $4}' || true)
        [ -n "$addr" ] && { echo "$addr"; return 0; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "candidate: no '$what listening on' line; log:" >&2
    tail -20 "$file" >&2
    return 1
}

session() { # name domain
    printf '{"desired_name":"%s","session_token":"bench-%s","services":[{"name":"web","location":"%s","rewrites":null}],"domains":[{"domain":"%s","default_service":"web","routes":null}],"cache_routes":null}' \
        "$1" "$1" "$origin" "$2"
}

post() { # url json
    local code
    code=$(curl -s --max-time 10 -o "$run/post.out" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' -H "Authorization: Bearer $token" --data-binary "$2" "$1")
    [ "$code" = 200 ] || { echo "candidate: POST $1: $code $(cat "$run/post.out")" >&2; return 1; }
}

listen=127.0.0.1:0 # the local server's worker: anywhere
[ "$kind" = worker ] && listen=127.0.0.1:$LISTEN_PORT
"$LINKUP" worker --listen "$listen" --token "$token" --store memory >"$run/worker.out" 2>"$run/worker.err" &
pids+=($!)
waddr=$(listen_addr "$run/worker.out" Worker "${pids[0]}")
if [ "$kind" = worker ]; then
    for s in "bench example.com" "127 0.0.1"; do
        read -r name domain <<<"$s"
        post "http://$waddr/linkup/v2/sessions/tunneled" "$(session "$name" "$domain")"
    done
else
    https=off
    [ -n "${LISTEN_TLS_PORT:-}" ] && https=127.0.0.1:$LISTEN_TLS_PORT
    LINKUP_HOME=$run/home "$LINKUP" server --http "127.0.0.1:$LISTEN_PORT" --https "$https" --dns off \
        --certs-dir "$run/certs" --worker-url "http://$waddr" --worker-token "$token" \
        >"$run/server.out" 2>"$run/server.err" &
    pids+=($!)
    listen_addr "$run/server.out" HTTP "${pids[1]}" >/dev/null
    for s in "bench example.com" "127 0.0.1"; do
        read -r name domain <<<"$s"
        post "http://127.0.0.1:$LISTEN_PORT/linkup/sessions/tunneled" "$(session "$name" "$domain")"
    done
fi
tls=""
[ "$kind" = server ] && [ -n "${LISTEN_TLS_PORT:-}" ] && tls=" (TLS on $LISTEN_TLS_PORT)"
echo "candidate: linkup $kind on 127.0.0.1:$LISTEN_PORT$tls -> $origin"
wait "${pids[@]}"
