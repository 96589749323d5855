#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS (default
# 30) on a copy of its corpus, as many at once as there are cores; new
# interesting inputs stay in build-fuzz/.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
secs=${1:-30}
shift || true
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DLK_FUZZ=ON -DLK_SANITIZE=ON >/dev/null || exit 1
cmake --build build-fuzz -j "$(nproc)" >/dev/null || { echo "fuzz build failed"; exit 1; }
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        [ -e "$f" ] || continue
        t=$(basename "$f" .c)
        targets+=("${t#fuzz_}")
    done
fi
jobs=$(nproc 2>/dev/null || echo 1)

# Runs one target; its verdict is the exit status, its output the log file.
run_one() {
    local t=$1 work="build-fuzz/corpus-$1" dict=()
    mkdir -p "$work"
    cp -n "tests/fuzz/corpus/$t"/* "$work"/ 2>/dev/null || true
    if [ -f "tests/fuzz/$t.dict" ]; then
        dict=(-dict="tests/fuzz/$t.dict")
    else
        case $t in http1_request | http1_response | chunked | ws) dict=(-dict=tests/fuzz/http.dict) ;; esac
    fi
    build-fuzz/fuzz/fuzz_"$t" -max_total_time="$secs" -max_len=65536 "${dict[@]}" \
        -artifact_prefix="build-fuzz/crash-$t-" "$work" >"build-fuzz/fuzz-$t.log" 2>&1
}

report() {
    local t=$1 status=$2
    if [ "$status" -eq 0 ]; then
        echo "fuzz $t: ok ($(grep -c . "build-fuzz/fuzz-$t.log") log lines)"
    else
        echo "fuzz $t: FAILED (see build-fuzz/fuzz-$t.log)"
        tail -n 30 "build-fuzz/fuzz-$t.log"
        rc=1
    fi
}

rc=0
declare -A name_of=() # running targets by pid

# Waits for one running target and reports it.
reap_one() {
    local pid status
    wait -n -p pid
    status=$?
    report "${name_of[$pid]}" "$status"
    unset "name_of[$pid]"
}

for t in "${targets[@]}"; do
    [ ${#name_of[@]} -ge "$jobs" ] && reap_one
    run_one "$t" &
    name_of[$!]=$t
done
while [ ${#name_of[@]} -gt 0 ]; do
    reap_one
done
exit $rc
