#!/usr/bin/env bash
# Static checks run by .ci/run: formatting, banned functions, layering.
# Usage: scripts/check.sh [format|banned|layering|all]
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
rc=0
csrc() { git ls-files -co --exclude-standard -- 'lib/*.[ch]' 'src/*.[ch]' 'tests/*.[ch]'; }

if [ "$what" = format ] || [ "$what" = all ]; then
    if ! csrc | xargs -r clang-format --dry-run --Werror; then
        echo "check: clang-format found unformatted files (run: scripts/check.sh fix)"
        rc=1
    fi
fi
if [ "$what" = fix ]; then
    csrc | xargs -r clang-format -i
fi
if [ "$what" = banned ] || [ "$what" = all ]; then
    # STYLE §3.6: curl's list of banned functions.
    if csrc | xargs -r grep -nE '\b(strcpy|strcat|sprintf|vsprintf|strtok|gets|atoi|atol|strncpy)[[:space:]]*\(' ; then
        echo "check: banned function used"
        rc=1
    fi
fi
if [ "$what" = layering ] || [ "$what" = all ]; then
    # DESIGN §5 / STYLE §3.1: lib/core and lib/proto are pure.
    pure=$(git ls-files -co --exclude-standard -- 'lib/core/*.[ch]' 'lib/proto/*.[ch]')
    if [ -n "$pure" ] && grep -nE '#[[:space:]]*include[[:space:]]*<(sys/socket\.h|netinet/|arpa/|netdb\.h|time\.h|sys/time\.h|openssl/|event2/)' $pure; then
        echo "check: socket/time/OpenSSL/libevent header included in a pure layer"
        rc=1
    fi
    if [ -n "$pure" ] && grep -nE '\b(getenv|time|rand|srand|random|gettimeofday|clock_gettime)[[:space:]]*\(' $pure; then
        echo "check: clock, randomness or environment used in a pure layer"
        rc=1
    fi
fi
exit $rc
