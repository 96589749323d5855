/*
 * fuzz_state.c - the state-file parser (SPEC §6.3). Invariants: whatever
 * parses emits YAML that parses again and emits the same bytes (a fixed
 * point after one round); a clone emits the same bytes; and the upsert
 * request built from it (SPEC §6.5.13, named and unnamed) is JSON the
 * worker's upsert parser reads without a syntax error (lk_upsert_parse).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/state.h"
#include "core/upsert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *override_every_other(void *ctx, const struct lk_state_service *sv)
{
    (void)ctx;
    return sv->name[0] != '\0' && (sv->name[0] & 1) ? "http://127.0.0.1:9/over" : NULL;
}

static void check_upsert(const struct lk_state *st, const struct lk_state_upsert_opts *o)
{
    struct lk_buf json = LK_BUF_INIT;
    struct lk_upsert req;
    lk_state_upsert_json(st, o, &json);
    int rc = lk_upsert_parse(json.data, json.len, &req, NULL);
    LK_ASSERT(rc == 0 || rc == LK_EINVAL);
    if (rc == 0)
        LK_ASSERT(req.named == o->named);
    lk_upsert_release(&req);
    lk_buf_release(&json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_state *st = NULL;
    if (lk_state_parse((const char *)data, size, &st, NULL) != 0)
        return 0;
    struct lk_buf once = LK_BUF_INIT;
    struct lk_buf twice = LK_BUF_INIT;
    lk_state_emit(st, &once);
    struct lk_state *copy = lk_state_clone(st);
    struct lk_buf copied = LK_BUF_INIT;
    lk_state_emit(copy, &copied);
    LK_ASSERT(copied.len == once.len && memcmp(copied.data, once.data, once.len) == 0);
    lk_buf_release(&copied);
    lk_state_free(copy);
    const struct lk_state_upsert_opts named = {
        true, st->session_name, st->session_token, NULL, NULL, NULL
    };
    const struct lk_state_upsert_opts unnamed = {
        false, NULL, NULL, "six_char", override_every_other, NULL
    };
    check_upsert(st, &named);
    check_upsert(st, &unnamed);
    struct lk_state *back = NULL;
    /* Invalid UTF-8 is refused by the emitter; only then may re-parsing fail. */
    if (lk_state_parse(once.data, once.len, &back, NULL) == 0) {
        lk_state_emit(back, &twice);
        LK_ASSERT(once.len == twice.len && memcmp(once.data, twice.data, once.len) == 0);
    }
    lk_state_free(back);
    lk_state_free(st);
    lk_buf_release(&once);
    lk_buf_release(&twice);
    return 0;
}
