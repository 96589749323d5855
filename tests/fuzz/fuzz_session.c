/*
 * fuzz_session.c - Session JSON (SPEC §2.1-2.2): parse; when it succeeds,
 * serialise, parse again and serialise again: both serialisations must be
 * identical, and the canonical hash must be computable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_session *s = NULL;
    struct lk_session *again = NULL;
    struct lk_buf err = LK_BUF_INIT;
    struct lk_buf one = LK_BUF_INIT;
    struct lk_buf two = LK_BUF_INIT;
    char hex[65];

    if (lk_session_from_json((const char *)data, size, &s, &err) != 0) {
        LK_ASSERT(err.len > 0);
        goto out;
    }
    lk_session_to_json(s, &one);
    if (lk_session_from_json(one.data, one.len, &again, NULL) != 0)
        LK_BUG("a serialised session does not parse back");
    lk_session_to_json(again, &two);
    if (one.len != two.len || memcmp(one.data, two.data, one.len) != 0)
        LK_BUG("serialise -> parse -> serialise is not stable");
    lk_session_hash(s, hex);
    LK_ASSERT(strlen(hex) == 64);
out:
    lk_session_free(again);
    lk_session_free(s);
    lk_buf_release(&two);
    lk_buf_release(&one);
    lk_buf_release(&err);
    return 0;
}
