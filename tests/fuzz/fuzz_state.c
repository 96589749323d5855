/*
 * fuzz_state.c - the state-file parser (SPEC §6.3). Invariant: whatever
 * parses emits YAML that parses again and emits the same bytes (a fixed
 * point after one round).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_state *st = NULL;
    if (lk_state_parse((const char *)data, size, &st, NULL) != 0)
        return 0;
    struct lk_buf once = LK_BUF_INIT;
    struct lk_buf twice = LK_BUF_INIT;
    lk_state_emit(st, &once);
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
