/*
 * fuzz_envfile.c - env-file block injection and removal (SPEC §6.6).
 *
 * The input is split at its first NUL byte into target and source. Invariants:
 * after injecting into a target without a block, the block is found and
 * clearing it gives the target with its trailing newlines normalised to one;
 * clearing any text keeps its bytes before the first delimiter. The target
 * name of a source name (the whole input) is the name without its final
 * ".linkup", and exists exactly for ".env.*.linkup" names.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/envfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_clear_any(struct lk_str text)
{
    struct lk_buf out = LK_BUF_INIT;
    if (lk_envfile_clear(text, &out)) {
        LK_ASSERT(out.len >= 1 && out.data[out.len - 1] == '\n');
        LK_ASSERT(out.len <= text.len + 1);
    } else {
        LK_ASSERT(out.len == 0 && !lk_envfile_has_block(text));
    }
    lk_buf_release(&out);
}

static void check_target_name(struct lk_str name)
{
    static const char pre[] = ".env.", suf[] = ".linkup";
    struct lk_str t = { NULL, 0 };
    bool ok = lk_envfile_target_name(name, &t);
    bool want = lk_str_starts_with(name, LK_STR(pre)) && lk_str_ends_with(name, LK_STR(suf));
    LK_ASSERT(ok == want);
    if (ok)
        LK_ASSERT(t.ptr == name.ptr && t.len == name.len - (sizeof(suf) - 1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    check_target_name((struct lk_str){ p, size });
    const char *nul = memchr(p, 0, size);
    struct lk_str target = { p, nul ? (size_t)(nul - p) : size };
    struct lk_str source = nul ? (struct lk_str){ nul + 1, size - target.len - 1 } : LK_STR("");
    check_clear_any((struct lk_str){ p, size });
    if (lk_envfile_has_block(target) || lk_envfile_has_block(source))
        return 0;
    struct lk_buf injected = LK_BUF_INIT;
    struct lk_buf cleared = LK_BUF_INIT;
    lk_envfile_inject(target, source, &injected);
    LK_ASSERT(lk_envfile_has_block(lk_buf_str(&injected)));
    LK_ASSERT(lk_envfile_clear(lk_buf_str(&injected), &cleared));
    size_t n = target.len;
    while (n > 0 && target.ptr[n - 1] == '\n')
        n--;
    /* A target ending in LF got an empty line; without one the SPEC joins
     * nothing because the block ends the file. */
    LK_ASSERT(cleared.len == n + 1 && memcmp(cleared.data, target.ptr, n) == 0);
    lk_buf_release(&injected);
    lk_buf_release(&cleared);
    return 0;
}
