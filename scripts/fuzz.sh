#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS (default
# 30) on a copy of its corpus; new interesting inputs stay in build-fuzz/.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.."
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
rc=0
for t in "${targets[@]}"; do
    work="build-fuzz/corpus-$t"
    mkdir -p "$work"
    cp -n "tests/fuzz/corpus/$t"/* "$work"/ 2>/dev/null || true
    dict=()
    [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
    if build-fuzz/fuzz/fuzz_"$t" -max_total_time="$secs" -max_len=65536 "${dict[@]}" \
        -artifact_prefix="build-fuzz/crash-$t-" "$work" >"build-fuzz/fuzz-$t.log" 2>&1; then
        echo "fuzz $t: ok ($(grep -c . "build-fuzz/fuzz-$t.log") log lines)"
    else
        echo "fuzz $t: FAILED (see build-fuzz/fuzz-$t.log)"
        tail -n 30 "build-fuzz/fuzz-$t.log"
        rc=1
    fi
done
exit $rc
