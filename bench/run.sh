#!/usr/bin/env bash
# Linkup benchmark: the local server, the worker and the worker -> tunnel -> local
# server path side by side with nginx (reverse proxy, upstream keep-alive) and a direct
# connection to the origin, in one interleaved run on 127.0.0.1.  See docs/performance.md.
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

usage() {
  cat <<'EOF'
usage: bench/run.sh [options]
       bench/run.sh --summarize DIR [DIR...]   re-print the tables of earlier runs, merged
                                               (starts nothing)

Starts, all on 127.0.0.1 and stopped by pid/process group at the end:
  origin      nginx (1 worker, sendfile) serving /1k (1024 B) and /1m (1 MiB) files,
              plain on --backend-port (18080) and TLS on port+360           -> target "direct"
  nginx       nginx reverse proxy, 1 worker, HTTP/1.1 keep-alive upstream  -> target "nginx"
  nginx2      a second nginx proxy (port+3) in front of that one: one more
              proxy hop, the machine's reference for the tunnel's bar     -> target "nginx2"
  worker      linkup worker --store sqlite:RUN/worker.db (or --store memory) -> target "worker"
  server      linkup server --http/--https 127.0.0.1:0, sessions forwarded
              to that worker                                                -> target "server"
  worker-10k  a second worker with 10,000 sessions in its store (--sessions) -> "worker-10k"
and creates the sessions (same-length names, so every target gets the same headers):
  bench  web -> origin                      Host: bench.example.com  (server, worker, worker-10k;
                                             direct and nginx get the same Host header)
  rt100  100 routes + 100 rewrites, the last
         of each matches /1k and /1m         Host: rt100.example.com  (server-r100, worker-r100)
  tunnl  web -> http://localhost:ORIGIN, so the worker routes it through the session's
         tunnel to the local server          Host: tunnl.example.com  (target "tunnel"; reported
                                             "not available" when the tunnel does not answer)
Workloads (wrk --latency, keep-alive; tls-newconn with bench/tlsconn.c, SNI bench.example.com):
  small-c64  wrk -t2 -c64 /1k     small-c1  wrk -t1 -c1 /1k
  1m-c64     wrk -t2 -c64 /1m     1m-c1     wrk -t1 -c1 /1m
  tls-newconn-c16   one full TLS handshake + request per connection, 16 connections
                    (direct = origin TLS, nginx TLS, server HTTPS listener)
Each rep runs every workload on every target back to back (order reversed on even reps);
ratios are medians of per-rep paired ratios.  RSS (VmRSS/VmHWM) of every Linkup process is
read at idle, sampled in the middle of each run and at the end.

options:
  --duration S       seconds per cell                                    [5]
  --reps N           repetitions                                         [2]
  --max-time S       budget; durations shrink to fit, watchdog at +60 s  [600]
  --targets LIST     comma list of direct,nginx,nginx2,server,worker,tunnel,worker-10k,server-r100,
                     worker-r100                                          [all]
  --workloads LIST   comma list of small-c64,small-c1,1m-c64,1m-c1,tls-newconn-c16,
                     h2-small-c64 (h2load, HTTP/2 prior knowledge, 8 conns x 8 streams) [all]
  --sessions N       sessions in the worker-10k store                    [10000]
  --store KIND       worker store: sqlite (a file in the run dir; the worker's
                     default) | memory                                   [sqlite]
  --linkup PATH      linkup binary       [build-bench/linkup, built Release and kept up to date]
  --backend-port N   origin port (nginx proxy = N+1, its h2c = N+2, TLS = N+360/N+361) [18080]
  --out DIR          results directory   [bench/results/<timestamp>]
  --perf TARGET[:WORKLOAD]  after the runs, `perf record -g` the Linkup process of TARGET
                     (server|worker|worker-10k|server-r100|worker-r100|tunnel) during one extra run
                     of WORKLOAD (default small-c64); report in OUT/perf-TARGET-WORKLOAD.txt
  --callgrind ROLE[:TARGET]  start the Linkup process ROLE (server|worker) under valgrind
                     --tool=callgrind and only run a short small-c1/small-c64 load on TARGET
                     (default ROLE; tunnel profiles ROLE's half of worker -> tunnel -> local
                     server); report in OUT/callgrind-ROLE.txt
  --no-deps          do not run scripts/deps.sh --bench
  -h, --help         this help

Outputs in OUT: summary.md (tables, the issue-8 targets check), runs.tsv (one row per cell),
rss.tsv, wrk/ (raw outputs), logs/, versions.txt.  Not part of `make test`.
EOF
}

# ---------------------------------------------------------------- options
DURATION=5; REPS=2; MAX_TIME=600; TARGETS_OPT=""; WORKLOADS_OPT=""; NSESS=10000
STORE=sqlite; LINKUP=""; BACKEND_PORT=18080; OUT=""; PERF_T=""; CG_T=""; DEPS=1; SUMMARIZE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2;;
    --reps) REPS=$2; shift 2;;
    --max-time) MAX_TIME=$2; shift 2;;
    --targets) TARGETS_OPT=$2; shift 2;;
    --workloads) WORKLOADS_OPT=$2; shift 2;;
    --sessions) NSESS=$2; shift 2;;
    --store) STORE=$2; shift 2;;
    --linkup) LINKUP=$2; shift 2;;
    --backend-port) BACKEND_PORT=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --perf) PERF_T=$2; shift 2;;
    --callgrind) CG_T=$2; shift 2;;
    --no-deps) DEPS=0; shift;;
    --summarize) SUMMARIZE=$2; shift 2; break;;
    -h|--help) usage; exit 0;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2;;
  esac
done

if [ -n "$SUMMARIZE" ]; then
  exec python3 "$HERE/report.py" "$SUMMARIZE" "$@"
fi

ALL_TARGETS="direct nginx nginx2 server worker tunnel worker-10k server-r100 worker-r100"
ALL_WORKLOADS="small-c64 small-c1 1m-c64 1m-c1 tls-newconn-c16 h2-small-c64"
TARGETS=${TARGETS_OPT:-$ALL_TARGETS}; TARGETS=${TARGETS//,/ }
WORKLOADS=${WORKLOADS_OPT:-$ALL_WORKLOADS}; WORKLOADS=${WORKLOADS//,/ }
for t in $TARGETS; do [[ " $ALL_TARGETS " == *" $t "* ]] || { echo "unknown target $t" >&2; exit 2; }; done
for w in $WORKLOADS; do [[ " $ALL_WORKLOADS " == *" $w "* ]] || { echo "unknown workload $w" >&2; exit 2; }; done
case $STORE in memory|sqlite) ;; *) echo "--store must be memory or sqlite" >&2; exit 2;; esac
if [ -n "$CG_T" ]; then
  CG_LOAD=$CG_T
  [[ $CG_T == *:* ]] && { CG_LOAD=${CG_T#*:}; CG_T=${CG_T%%:*}; }
  case $CG_T in server|worker) ;; *) echo "--callgrind takes server or worker (optionally :TARGET)" >&2; exit 2;; esac
  case $CG_LOAD in server|worker|tunnel) ;; *) echo "--callgrind ROLE:TARGET takes server, worker or tunnel as TARGET" >&2; exit 2;; esac
  TARGETS="direct $CG_LOAD"; WORKLOADS="small-c1 small-c64"; REPS=1
fi
PERF_W=small-c64
if [ -n "$PERF_T" ]; then
  [[ $PERF_T == *:* ]] && { PERF_W=${PERF_T#*:}; PERF_T=${PERF_T%%:*}; }
  case $PERF_T in server|worker|worker-10k|server-r100|worker-r100|tunnel) ;; *) echo "--perf takes server, worker, worker-10k, server-r100, worker-r100 or tunnel" >&2; exit 2;; esac
  [[ " $ALL_WORKLOADS " == *" $PERF_W "* ]] || { echo "unknown workload $PERF_W" >&2; exit 2; }
fi

# workload -> "kind path threads conns"
wl_spec() {
  case $1 in
    small-c64) echo "wrk /1k 2 64";;
    small-c1) echo "wrk /1k 1 1";;
    1m-c64) echo "wrk /1m 2 64";;
    1m-c1) echo "wrk /1m 1 1";;
    tls-newconn-c16) echo "tls /1k 16 16";;
    h2-small-c64) echo "h2 /1k 8 8";;   # h2load: 8 connections x 8 concurrent streams
  esac
}
# does target t take part in workload w?
applies() {
  case $2 in
    small-c64|small-c1) return 0;;
    1m-c64|1m-c1) case $1 in direct|nginx|nginx2|server|worker|tunnel) return 0;; esac; return 1;;
    tls-newconn-c16) case $1 in direct|nginx|server) return 0;; esac; return 1;;
    h2-small-c64) case $1 in nginx|server|worker|tunnel) return 0;; esac; return 1;;
  esac
  return 1
}
host_of() { case $1 in tunnel) echo tunnl.example.com;; *-r100) echo rt100.example.com;; *) echo bench.example.com;; esac; }

NRUNS=0
for w in $WORKLOADS; do for t in $TARGETS; do applies "$t" "$w" && NRUNS=$((NRUNS + 1)); done; done
NRUNS=$((NRUNS * REPS))
[ $NRUNS -gt 0 ] || { echo "nothing to run" >&2; exit 2; }
SETUP=$((40 + NSESS / 500))             # start-up, 10k sessions, sanity checks, warm-up
EST=$((SETUP + NRUNS * (DURATION + 1)))
if [ $EST -gt "$MAX_TIME" ]; then
  FIT=$(( (MAX_TIME - SETUP) / NRUNS - 1 ))
  [ $FIT -ge 2 ] || { echo "budget: $NRUNS runs do not fit in --max-time $MAX_TIME even at 2 s each" >&2; exit 2; }
  echo "budget: shrinking --duration $DURATION -> $FIT s ($NRUNS runs in $MAX_TIME s)"
  DURATION=$FIT
fi

# ---------------------------------------------------------------- dependencies and binaries
if [ $DEPS = 1 ]; then "$ROOT/scripts/deps.sh" --bench || { echo "scripts/deps.sh --bench failed" >&2; exit 2; }; fi
for bin in wrk curl nginx ss openssl python3 cc; do command -v $bin >/dev/null || { echo "missing $bin" >&2; exit 2; }; done
if [ -z "$LINKUP" ]; then
  LINKUP="$ROOT/build-bench/linkup"
  # Always brought up to date (incremental), so a stale binary is never measured.
  echo "building $LINKUP (Release)"
  { cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
    cmake --build "$ROOT/build-bench" -j"$(nproc)" --target linkup >/dev/null; } || { echo "build failed" >&2; exit 2; }
fi
[ -x "$LINKUP" ] || { echo "no linkup binary at $LINKUP" >&2; exit 2; }

[ -n "$OUT" ] || OUT="$HERE/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT/wrk" "$OUT/logs"
RUN=$(mktemp -d /tmp/linkup-bench.XXXXXX)
chmod 755 "$RUN"
mkdir -p "$RUN/www" "$RUN/tmp" "$RUN/certs"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cc -O2 -o "$RUN/tlsconn" "$HERE/tlsconn.c" -lssl -lcrypto -lpthread || { echo "cannot build bench/tlsconn.c" >&2; exit 2; }

# ---------------------------------------------------------------- process control
declare -a PIDS=()
declare -A PID_OF=()       # role -> pid (server, worker, worker10k, backend, nginx)
WD_PID=""; MAIN_PID=$$; LOAD_PID=""

is_running() { local s; s=$(awk '{sub(/.*\) /,""); print $1}' "/proc/$1/stat" 2>/dev/null) || return 1; [ -n "$s" ] && [ "$s" != Z ]; }

cleanup() {
  local rc=${1:-$?} pid any
  trap - EXIT INT TERM
  [ -n "$LOAD_PID" ] && kill -TERM "$LOAD_PID" 2>/dev/null
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 100); do
    any=0; for pid in "${PIDS[@]}"; do is_running "$pid" && any=1; done
    [ $any = 0 ] && break; sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    is_running "$pid" && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; }
    wait "$pid" 2>/dev/null
  done
  [ -n "$WD_PID" ] && kill -TERM "$WD_PID" 2>/dev/null && wait "$WD_PID" 2>/dev/null
  cp "$RUN"/*.log "$RUN"/*.conf "$OUT/logs/" 2>/dev/null
  cp "$RUN"/callgrind.out.* "$OUT/" 2>/dev/null
  rm -rf "$RUN"
  exit "$rc"
}
trap 'cleanup $?' EXIT
trap 'echo "interrupted" >&2; cleanup 130' INT
trap 'echo "terminated (watchdog or signal)" >&2; cleanup 124' TERM
HARD=$((MAX_TIME + 60))
( trap 'kill $sp 2>/dev/null; exit 0' TERM; sleep "$HARD" & sp=$!; wait $sp
  echo "watchdog: run exceeded ${HARD}s, stopping" >&2; kill -TERM "$MAIN_PID" ) &
WD_PID=$!

start_bg() { # role cmd... ; own session so the whole tree is one process group
  local role=$1; shift
  setsid "$@" >"$RUN/$role.log" 2>&1 </dev/null &
  PIDS+=("$!"); PID_OF[$role]=$!
}
listen_addr() { # role "prefix" -> A:P printed by the process, waits up to 10 s (30 s under valgrind)
  local a
  for _ in $(seq 300); do
    a=$(grep -o "^$2 [0-9.]*:[0-9]*" "$RUN/$1.log" 2>/dev/null | head -1 | awk '{print $NF}')
    [ -n "$a" ] && { echo "$a"; return 0; }
    is_running "${PID_OF[$1]}" || break
    sleep 0.1
  done
  echo "$1 did not print '$2 A:P'; log:" >&2; tail -20 "$RUN/$1.log" >&2; return 1
}
wait_200() { # url [curl args...]
  local u=$1; shift
  for _ in $(seq 100); do
    [ "$(curl -s --max-time 1 -o /dev/null -w '%{http_code}' "$@" "$u" 2>/dev/null)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}
for p in $BACKEND_PORT $((BACKEND_PORT + 1)) $((BACKEND_PORT + 2)) $((BACKEND_PORT + 3)) $((BACKEND_PORT + 4)) \
         $((BACKEND_PORT + 360)) $((BACKEND_PORT + 361)) $((BACKEND_PORT + 362)); do
  if ss -Hltn "sport = :$p" | grep -q .; then echo "port $p already in use; refusing to start (--backend-port)" >&2; exit 2; fi
done

T0=$(date +%s)
echo "== linkup bench: targets [$TARGETS] workloads [$WORKLOADS] reps=$REPS duration=${DURATION}s store=$STORE out=$OUT"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "linkup: $LINKUP (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD -- lib src 2>/dev/null || echo ' + uncommitted changes in lib/src'))"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "h2load: $(h2load --version 2>&1 | head -1)"
  echo "nginx: $(nginx -v 2>&1)"
  echo "openssl: $(openssl version)"
  echo "libevent: $(dpkg-query -W -f='${Version}' libevent-dev 2>/dev/null)"
  echo "cc: $(cc --version | head -1)"
  echo "args: targets=[$TARGETS] workloads=[$WORKLOADS] reps=$REPS duration=$DURATION sessions=$NSESS store=$STORE"
} > "$OUT/versions.txt"

# ---------------------------------------------------------------- origin and nginx
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj /CN=bench.example.com -addext "subjectAltName=DNS:bench.example.com,IP:127.0.0.1" \
  -keyout "$RUN/key.pem" -out "$RUN/cert.pem" >/dev/null 2>&1 || { echo "openssl failed" >&2; exit 1; }
head -c 1024 /dev/urandom > "$RUN/www/1k"
head -c 1048576 /dev/urandom > "$RUN/www/1m"
render() { # template -> $RUN/template
  sed -e "s#@RUN@#$RUN#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" -e "s#@BACKEND_TLS_PORT@#$((BACKEND_PORT + 360))#g" \
      -e "s#@PROXY_WORKERS@#1#g" -e "s#@BACKEND_WORKERS@#1#g" -e "s#@PORT@#$((BACKEND_PORT + 1))#g" -e "s#@TLS_PORT@#$((BACKEND_PORT + 361))#g" \
      -e "s#@H2_PORT@#$((BACKEND_PORT + 2))#g" "$HERE/conf/$1" > "$RUN/$1"
}
render backend.nginx.conf
start_bg backend nginx -c "$RUN/backend.nginx.conf" -p "$RUN"
wait_200 "http://127.0.0.1:$BACKEND_PORT/1k" || { echo "origin nginx did not start:" >&2; cat "$RUN/backend.log" >&2; exit 1; }
if [[ " $TARGETS " == *" nginx "* || " $TARGETS " == *" nginx2 "* ]]; then
  render proxy.nginx.conf
  start_bg nginx nginx -c "$RUN/proxy.nginx.conf" -p "$RUN"
fi
if [[ " $TARGETS " == *" nginx2 "* ]]; then
  # The same proxy once more, its upstream the first one: what one more proxy hop costs
  # on this machine, the reference for "tunnel vs worker" (which adds the local server).
  sed -e "s#@RUN@#$RUN#g" -e "s#@BACKEND_PORT@#$((BACKEND_PORT + 1))#g" -e "s#@PROXY_WORKERS@#1#g" \
      -e "s#@PORT@#$((BACKEND_PORT + 3))#g" -e "s#@H2_PORT@#$((BACKEND_PORT + 4))#g" \
      -e "s#@TLS_PORT@#$((BACKEND_PORT + 362))#g" -e "s#nginx-proxy#nginx-proxy2#g" -e "s#/np-#/np2-#g" \
      "$HERE/conf/proxy.nginx.conf" > "$RUN/proxy2.nginx.conf"
  start_bg nginx2 nginx -c "$RUN/proxy2.nginx.conf" -p "$RUN"
fi

# ---------------------------------------------------------------- linkup
TOKEN=bench-worker-token
store_spec() { [ "$STORE" = memory ] && echo memory || echo "sqlite:$RUN/$1.db"; }
CG_ROLE=""
if [ -n "$CG_T" ]; then
  command -v valgrind >/dev/null || { echo "valgrind missing" >&2; exit 2; }
  CG_ROLE=$CG_T
fi
wrap_for() { [ "$1" = "$CG_ROLE" ] && echo "valgrind --tool=callgrind --callgrind-out-file=$RUN/callgrind.out.$1"; }
need_server=0; need_worker=0; need_w10k=0; WADDR=""; SADDR=""; SHADDR=""; W10ADDR=""
for t in $TARGETS; do
  case $t in server|server-r100) need_server=1; need_worker=1;; worker|worker-r100) need_worker=1; need_server=1;;
             tunnel) need_server=1; need_worker=1;; worker-10k) need_w10k=1;; esac
done
# shellcheck disable=SC2046
[ $need_worker = 1 ] && start_bg worker $(wrap_for worker) "$LINKUP" worker --listen 127.0.0.1:0 --token "$TOKEN" --store "$(store_spec worker)"
[ $need_w10k = 1 ] && start_bg worker10k "$LINKUP" worker --listen 127.0.0.1:0 --token "$TOKEN" --store "$(store_spec worker10k)"
if [ $need_worker = 1 ]; then WADDR=$(listen_addr worker "Worker listening on") || exit 1; fi
if [ $need_server = 1 ]; then
  # shellcheck disable=SC2046
  start_bg server env LINKUP_HOME="$RUN/home" $(wrap_for server) "$LINKUP" server --http 127.0.0.1:0 --https 127.0.0.1:0 \
    --dns off --certs-dir "$RUN/certs" --worker-url "http://$WADDR" --worker-token "$TOKEN"
  SADDR=$(listen_addr server "HTTP listening on") || exit 1
  SHADDR=$(listen_addr server "HTTPS listening on") || SHADDR=""
fi
if [ $need_w10k = 1 ]; then W10ADDR=$(listen_addr worker10k "Worker listening on") || exit 1; fi

ORIGIN="http://127.0.0.1:$BACKEND_PORT/"
session_json() { # name location routes(0|100)
  python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
name, loc, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
web = {"name": "web", "location": loc, "rewrites": None}
svcs = [web, {"name": "other", "location": loc, "rewrites": None}]
routes = None
if n:
    # n-1 routes and rewrites that never match /1k or /1m, then one of each that does:
    # the worst case for a request (every regex evaluated).
    routes = [{"path": "^/api/v%d/" % i, "service": "other"} for i in range(1, n)]
    routes.append({"path": "^/1[km]$", "service": "web"})
    web["rewrites"] = [{"source": "^/old/v%d/(.*)" % i, "target": "/new/v%d/$1" % i} for i in range(1, n)]
    web["rewrites"].append({"source": "^/(1[km])$", "target": "/$1"})
print(json.dumps({"desired_name": name, "session_token": "bench-" + name, "services": svcs,
                  "domains": [{"domain": "example.com", "default_service": "web", "routes": routes}],
                  "cache_routes": None}, separators=(",", ":")))
EOF
}
post() { # url json [auth] -> prints status and body
  local auth=()
  [ -n "${3:-}" ] && auth=(-H "Authorization: Bearer $3")
  curl -s --max-time 10 -o "$RUN/post.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' "${auth[@]}" \
    --data-binary "$2" "$1"
}
declare -A ADDR_OF=( [direct]="127.0.0.1:$BACKEND_PORT" [nginx]="127.0.0.1:$((BACKEND_PORT + 1))"
                     [nginx2]="127.0.0.1:$((BACKEND_PORT + 3))" )
if [ $need_server = 1 ]; then
  for s in "bench $ORIGIN 0" "rt100 $ORIGIN 100" "tunnl http://localhost:$BACKEND_PORT/ 0"; do
    read -r name loc n <<<"$s"
    code=$(post "http://$SADDR/linkup/sessions/tunneled" "$(session_json "$name" "$loc" "$n")")
    [ "$code" = 200 ] || { echo "creating session $name on the local server: $code $(cat "$RUN/post.out")" >&2; exit 1; }
  done
  ADDR_OF[server]=$SADDR; ADDR_OF[server-r100]=$SADDR; ADDR_OF[worker]=$WADDR; ADDR_OF[worker-r100]=$WADDR
  ADDR_OF[tunnel]=$WADDR
fi
if [ $need_w10k = 1 ]; then
  code=$(post "http://$W10ADDR/linkup/v2/sessions/preview" "$(session_json bench "$ORIGIN" 0)" "$TOKEN")
  [ "$code" = 200 ] || { echo "creating session bench on worker-10k: $code $(cat "$RUN/post.out")" >&2; exit 1; }
  echo "   filling worker-10k: $((NSESS - 1)) more sessions through POST /linkup/v2/sessions/preview"
  python3 "$HERE/mksessions.py" "$W10ADDR" "$TOKEN" $((NSESS - 1)) "$ORIGIN" s 4 | tee "$OUT/sessions.txt" || exit 1
  ADDR_OF[worker-10k]=$W10ADDR
fi
declare -A TLSADDR_OF=( [direct]="127.0.0.1:$((BACKEND_PORT + 360))" [nginx]="127.0.0.1:$((BACKEND_PORT + 361))" [server]="$SHADDR" )
pids_of() { # target -> pids whose CPU counts for it
  case $1 in
    direct) echo "${PID_OF[backend]}";; nginx) echo "${PID_OF[nginx]}";; nginx2) echo "${PID_OF[nginx2]} ${PID_OF[nginx]}";;
    server|server-r100) echo "${PID_OF[server]}";; worker|worker-r100) echo "${PID_OF[worker]}";;
    worker-10k) echo "${PID_OF[worker10k]}";; tunnel) echo "${PID_OF[worker]} ${PID_OF[server]}";;
  esac
}

# ---------------------------------------------------------------- RSS
RSS="$OUT/rss.tsv"
printf 'process\tphase\tVmRSS_kB\tVmHWM_kB\tRssAnon_kB\n' > "$RSS"
rss_row() { # role phase
  local p=${PID_OF[$1]:-}; [ -n "$p" ] || return 0
  awk -v r="$1" -v ph="$2" '/^VmRSS/{a=$2} /^VmHWM/{b=$2} /^RssAnon/{c=$2} END{ if (a != "") printf "%s\t%s\t%s\t%s\t%s\n", r, ph, a, b, c }' \
    "/proc/$p/status" >> "$RSS" 2>/dev/null
}
nginx_rss() { # sum over the nginx proxy's processes (master + worker)
  local p=${PID_OF[nginx]:-} t=0 c v
  [ -n "$p" ] || return 0
  for c in $p $(cat /proc/"$p"/task/*/children 2>/dev/null); do v=$(awk '/^VmRSS/{print $2}' /proc/"$c"/status 2>/dev/null); t=$((t + ${v:-0})); done
  printf 'nginx-proxy(all)\t%s\t%s\t-\t-\n' "$1" "$t" >> "$RSS"
}
LK_ROLES=""; for r in server worker worker10k; do [ -n "${PID_OF[$r]:-}" ] && LK_ROLES="$LK_ROLES $r"; done
rss_idle() {
  sleep 1
  for r in $LK_ROLES; do rss_row "$r" "$1"; done
  nginx_rss "$1"
}
# Idle: after start-up and session creation, before the checks below make the
# first requests (the HTTPS check maps OpenSSL into the local server).
rss_idle idle

# ---------------------------------------------------------------- sanity: byte-identical bodies
LIVE=""
for t in $TARGETS; do
  a=${ADDR_OF[$t]:-}; h=$(host_of "$t"); ok=1
  if [ -z "$a" ]; then ok=0
  else
    wait_200 "http://$a/1k" -H "Host: $h" || ok=0
    for f in 1k 1m; do
      [ $ok = 1 ] || break
      curl -s --max-time 10 -H "Host: $h" "http://$a/$f" | cmp -s - "$RUN/www/$f" || ok=0
    done
  fi
  if [ $ok = 1 ]; then LIVE="$LIVE $t"
  elif [ "$t" = tunnel ]; then
    why=$(curl -s --max-time 5 -H "Host: $h" "http://$a/1k" | head -c 200)
    echo "   tunnel: not available (worker answers: ${why:-nothing})"
    echo "tunnel: not available (worker -> tunnel -> local server; worker answered: ${why:-nothing})" >> "$OUT/versions.txt"
  else echo "!! excluding target $t: /1k or /1m not served byte-identical with Host: $h" >&2; fi
done
TARGETS=${LIVE# }
[ -n "$TARGETS" ] || { echo "no target passed the sanity check" >&2; exit 1; }
if [[ " $WORKLOADS " == *" tls-newconn-c16 "* ]]; then
  for t in direct nginx server; do
    [[ " $TARGETS " == *" $t "* ]] || continue
    a=${TLSADDR_OF[$t]:-}
    if [ -z "$a" ] || ! "$RUN/tlsconn" 127.0.0.1 "${a##*:}" bench.example.com /1k 1 1 > "$RUN/tls-check.txt" 2>&1; then
      echo "   $t: TLS not available ($(cat "$RUN/tls-check.txt" 2>/dev/null | tail -1))"
      TLSADDR_OF[$t]=""
    fi
  done
fi


# ---------------------------------------------------------------- measuring
tree_pids() { local p=$1 c; echo "$p"; for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree_pids "$c"; done; }
# tree_sum AWK FILES PID...: the sum of what AWK prints for /proc/P/FILES (a glob) over every
# process of the trees under the PIDs
tree_sum() { local prog=$1 files=$2 t=0 p v q; shift 2; for q in "$@"; do for p in $(tree_pids "$q"); do
  # shellcheck disable=SC2086
  v=$(awk "$prog" /proc/"$p"/$files 2>/dev/null) && t=$((t + ${v:-0})); done; done; echo $t; }
cpu_ticks() { tree_sum '{sub(/.*\) /,""); print $12+$13+$14+$15}' stat "$@"; }
# voluntary context switches (a sleep in epoll_wait/accept ended by a wake-up) of every thread
wakeups() { tree_sum '/^voluntary_ctxt_switches/{s+=$2} END{print s+0}' 'task/*/status' "$@"; }
HZ=$(getconf CLK_TCK)
role_of() { case $1 in server|server-r100) echo server;; worker|worker-r100) echo worker;; worker-10k) echo worker10k;; tunnel) echo "worker server";; esac; }

# h2load with prior knowledge, its summary turned into report.lua's RESULT line
# (h2load prints no percentiles: p50/p99 are NA, the mean comes from "time for
# request"). streams per connection = $3, connections = $4.
h2_cell() { # addr path streams conns duration host outfile
  timeout -k 2 $(($5 + 20)) h2load -D "$5" -c "$4" -m "$3" -t 1 -H ":authority: $6" "http://$1$2" > "$7" 2>&1
  awk -v secs="$5" '
    function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v }
    /^requests:/ { done = $8; failed = $10; errored = $12; timeout = $14 }
    /^status codes:/ { non2 = $5 + $7 + $9 }
    /^traffic:/ { gsub(/[()]/, "", $3); bytes = $3 }
    /^time for request:/ { mean = us($6) }
    END { if (done == "") exit 1
          printf "RESULT rps=%.2f p50_us=NA p90_us=NA p99_us=NA max_us=NA bytes=%s errors=%d mean_us=%.1f reqs=%d secs=%s\n",
                 done / secs, bytes, failed + errored + timeout + non2, mean, done, secs }' "$7" >> "$7"
}

run_cell() { # workload target outfile duration
  local kind path th co a
  read -r kind path th co <<<"$(wl_spec "$1")"
  if [ "$kind" = tls ]; then
    a=${TLSADDR_OF[$2]:-}; [ -n "$a" ] || return 2
    timeout -k 2 $(($4 + 20)) "$RUN/tlsconn" 127.0.0.1 "${a##*:}" bench.example.com "$path" "$co" "$4" > "$3" 2>&1 &
  elif [ "$kind" = h2 ]; then
    # nginx serves HTTP/2 prior knowledge on its own port; Linkup on its HTTP port.
    a=${ADDR_OF[$2]}; [ "$2" = nginx ] && a="127.0.0.1:$((BACKEND_PORT + 2))"
    h2_cell "$a" "$path" "$th" "$co" "$4" "$(host_of "$2")" "$3" &
  else
    a=${ADDR_OF[$2]}
    timeout -k 2 $(($4 + 15)) wrk --latency -t"$th" -c"$co" -d"$4"s --timeout 5s -s "$HERE/report.lua" \
      -H "Host: $(host_of "$2")" "http://$a$path" > "$3" 2>&1 &
  fi
  LOAD_PID=$!
}

# warm-up, 1 s per target
for t in $TARGETS; do run_cell small-c64 "$t" "$RUN/warmup.out" 1; wait "$LOAD_PID"; LOAD_PID=""; done

RAW="$OUT/runs.tsv"
printf 'rep\tworkload\ttarget\trps\tp50_us\tp90_us\tp99_us\tmax_us\tMiBps\terrors\tcpu_us_per_req\trss_load_kB\tforeign_pct\tmean_us\treqs\tsecs\twakeups_per_req\n' > "$RAW"
sys_cpu() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; }   # busy idle (ticks)
for rep in $(seq "$REPS"); do
  order=$TARGETS
  [ $((rep % 2)) = 0 ] && order=$(tr ' ' '\n' <<<"$TARGETS" | tac | tr '\n' ' ')
  for w in $WORKLOADS; do
    for t in $order; do
      applies "$t" "$w" || continue
      f="$OUT/wrk/$w.$t.$rep.txt"
      # shellcheck disable=SC2046
      c0=$(cpu_ticks $(pids_of "$t")); o0=$(cpu_ticks "${PID_OF[backend]}"); k0=$(wakeups $(pids_of "$t"))
      read -r b0 i0 <<<"$(sys_cpu)"; read -r -a ST0 < /proc/$$/stat   # fields 16/17: reaped children (wrk)
      run_cell "$w" "$t" "$f" "$DURATION" || continue
      # RSS of the Linkup process(es) in the middle of the run
      sleep "$(awk -v d="$DURATION" 'BEGIN{print d/2}')"
      rl=0
      for r in $(role_of "$t"); do v=$(awk '/^VmRSS/{print $2}' "/proc/${PID_OF[$r]}/status" 2>/dev/null); rl=$((rl + ${v:-0})); done
      wait "$LOAD_PID"; LOAD_PID=""
      # shellcheck disable=SC2046
      c1=$(cpu_ticks $(pids_of "$t")); o1=$(cpu_ticks "${PID_OF[backend]}"); k1=$(wakeups $(pids_of "$t"))
      read -r b1 i1 <<<"$(sys_cpu)"; read -r -a ST1 < /proc/$$/stat
      # foreign = share of the machine's CPU used by anything but wrk, the origin and the target
      ours=$(( ST1[15] + ST1[16] - ST0[15] - ST0[16] + o1 - o0 ))
      [ "$t" != direct ] && ours=$(( ours + c1 - c0 ))
      fg=$(awk -v b0="$b0" -v b1="$b1" -v i0="$i0" -v i1="$i1" -v o="$ours" \
           'BEGIN{ t=(b1-b0)+(i1-i0); if (t<=0) t=1; f=100*((b1-b0)-o)/t; if (f<0) f=0; printf "%.0f", f }')
      line=$(grep '^RESULT' "$f" | tail -1)
      if [ -z "$line" ]; then echo "  [$rep] $w $t: load generator failed ($(tail -1 "$f"))" >&2; continue; fi
      declare -A R=([err_connect]=0 [err_read]=0 [err_write]=0 [err_timeout]=0 [errors]=0 [bytes]=0 [mean_us]=NA [reqs]=0 [secs]=NA)
      for kv in ${line#RESULT }; do R[${kv%%=*}]=${kv#*=}; done
      non2xx=$(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$f" | grep -o '[0-9]*$' || true)
      errs=$(( R[err_connect] + R[err_read] + R[err_write] + R[err_timeout] + R[errors] + ${non2xx:-0} ))
      cpu=$(awk -v a="$c0" -v b="$c1" -v n="${R[reqs]}" -v hz="$HZ" 'BEGIN{ if (n == 0) print "NA"; else printf "%.1f", (b-a)/hz*1e6/n }')
      wk=$(awk -v a="$k0" -v b="$k1" -v n="${R[reqs]}" 'BEGIN{ if (n == 0) print "NA"; else printf "%.2f", (b-a)/n }')
      mib=$(awk -v by="${R[bytes]}" -v s="${R[secs]}" 'BEGIN{ printf "%.1f", by/s/1048576 }')
      [ "$rl" = 0 ] && rl=NA
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$w" "$t" "${R[rps]}" "${R[p50_us]}" "${R[p90_us]}" \
        "${R[p99_us]}" "${R[max_us]}" "$mib" "$errs" "$cpu" "$rl" "$fg" "${R[mean_us]}" "${R[reqs]}" "${R[secs]}" "$wk" >> "$RAW"
      printf '  [%s] %-15s %-11s %9s req/s  p50 %6sus  p99 %7sus  %7s MiB/s  err %s  cpu %s us/req  rss %s kB  foreign %s%%\n' \
        "$rep" "$w" "$t" "${R[rps]}" "${R[p50_us]}" "${R[p99_us]}" "$mib" "$errs" "$cpu" "$rl" "$fg"
      unset R
    done
  done
done
for r in $LK_ROLES; do rss_row "$r" after-load; done
nginx_rss after-load
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/versions.txt"

# ---------------------------------------------------------------- profiling (optional)
if [ -n "$PERF_T" ] && [[ " $TARGETS " == *" $PERF_T "* ]]; then
  pp=""; for role in $(role_of "$PERF_T"); do pp="$pp${pp:+,}${PID_OF[$role]}"; done
  pf="$OUT/perf-$PERF_T-$PERF_W.txt"
  echo "== perf record -g on $PERF_T (pid $pp) during one $PERF_W run"
  perf record -g -o "$RUN/perf.data" -p "$pp" -- sleep "$DURATION" > "$RUN/perf.log" 2>&1 &
  ppid=$!
  run_cell "$PERF_W" "$PERF_T" "$OUT/wrk/perf-$PERF_T-$PERF_W.txt" "$DURATION"; wait "$LOAD_PID"; LOAD_PID=""
  wait "$ppid"
  { echo "# perf report --no-children (self %), $PERF_T under $PERF_W for ${DURATION}s"
    grep '^RESULT' "$OUT/wrk/perf-$PERF_T-$PERF_W.txt"
    perf report -i "$RUN/perf.data" --no-children --stdio --sort comm,symbol,dso -g none 2>/dev/null | grep -v '^$' | head -70
    echo; echo "# with children (inclusive %)"
    perf report -i "$RUN/perf.data" --children --stdio --sort symbol -g none 2>/dev/null | grep -v '^$' | head -70
  } > "$pf"
  echo "   -> $pf"
fi

# ---------------------------------------------------------------- summary
END_S=$(( $(date +%s) - T0 ))
echo "elapsed: ${END_S}s" >> "$OUT/versions.txt"
python3 "$HERE/report.py" "$OUT" | tee "$OUT/summary.md"
echo
echo "elapsed: ${END_S}s; raw: $RAW; outputs: $OUT"
if [ -n "$CG_ROLE" ]; then
  # stop the valgrind'd process first so callgrind writes its profile, then annotate
  p=${PID_OF[$CG_ROLE]}; kill -TERM "$p" 2>/dev/null
  for _ in $(seq 100); do is_running "$p" || break; sleep 0.1; done
  callgrind_annotate --inclusive=yes "$RUN/callgrind.out.$CG_ROLE" 2>/dev/null | head -80 > "$OUT/callgrind-$CG_ROLE.txt"
  callgrind_annotate "$RUN/callgrind.out.$CG_ROLE" 2>/dev/null | head -60 >> "$OUT/callgrind-$CG_ROLE.txt"
  echo "   -> $OUT/callgrind-$CG_ROLE.txt"
fi
