#!/usr/bin/env bash
# Builds and runs the whole suite (unit, e2e, fuzz-corpus replay) through ctest
# and ends with the line "N passed, N failed".
# Usage: scripts/test.sh [BUILD_DIR] [extra cmake args...]
#   LK_CC=clang LK_SANITIZE=1 scripts/test.sh build-asan   (the sanitizer run)
#   CTEST_ARGS="-R unit/" scripts/test.sh                   (a subset)
set -uo pipefail
cd "$(dirname "$0")/.."
bdir=${1:-build}
shift || true
args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
[ -n "${LK_CC:-}" ] && args+=(-DCMAKE_C_COMPILER="$LK_CC")
[ -n "${LK_SANITIZE:-}" ] && args+=(-DLK_SANITIZE=ON)
[ -n "${CI:-}" ] && args+=(-DLK_WERROR=ON)
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B "$bdir" "${args[@]}" "$@" >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
blog=$(mktemp)
if ! cmake --build "$bdir" -j "$jobs" >"$blog" 2>&1; then
    grep -E 'error|Error|warning' "$blog" | head -n 60
    rm -f "$blog"
    echo "build failed"
    echo "0 passed, 1 failed"
    exit 1
fi
grep -E 'warning' "$blog" | head -n 40
rm -f "$blog"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
log=$(mktemp)
# shellcheck disable=SC2086
(cd "$bdir" && ctest --output-on-failure -j "$jobs" ${CTEST_ARGS:-}) 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
summary=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
rm -f "$log"
if [ -z "$summary" ]; then
    echo "0 passed, 1 failed"
    exit 1
fi
failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$summary")
total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$summary")
echo "$((total - failed)) passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
