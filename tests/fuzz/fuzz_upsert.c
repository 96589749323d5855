/*
 * fuzz_upsert.c - UpsertSessionRequest (SPEC §2.3): parse; when it succeeds,
 * convert into both session kinds and re-serialise; the re-serialised request
 * must parse back into the same shape and serialise to the same bytes (a
 * fixed point after one round).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/upsert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_upsert req;
    struct lk_upsert again;
    struct lk_buf err = LK_BUF_INIT;
    struct lk_buf json = LK_BUF_INIT;
    struct lk_session *s = NULL;

    memset(&again, 0, sizeof(again));
    int rc = lk_upsert_parse((const char *)data, size, &req, &err);
    if (rc != 0) {
        LK_ASSERT(rc == LK_EPARSE || rc == LK_EINVAL);
        LK_ASSERT(err.len > 0 && req.body == NULL);
        goto out;
    }
    for (int kind = LK_SESSION_TUNNELED; kind <= LK_SESSION_PREVIEW; kind++) {
        rc = lk_upsert_to_session(&req, (enum lk_session_kind)kind, &s, NULL);
        LK_ASSERT(rc == 0 || rc == LK_EVALIDATE);
        lk_session_free(s);
        s = NULL;
    }
    lk_upsert_to_json(&req, &json);
    if (lk_upsert_parse(json.data, json.len, &again, NULL) != 0)
        LK_BUG("a serialised upsert request does not parse back");
    LK_ASSERT(again.named == req.named);
    struct lk_buf json2 = LK_BUF_INIT;
    lk_upsert_to_json(&again, &json2);
    LK_ASSERT(json2.len == json.len && memcmp(json2.data, json.data, json.len) == 0);
    lk_buf_release(&json2);
out:
    lk_upsert_release(&again);
    lk_upsert_release(&req);
    lk_buf_release(&json);
    lk_buf_release(&err);
    return 0;
}
