/*
 * fuzz_chunked.c - the chunked decoder: framing + data never exceed the
 * input, and feeding byte by byte (or in pieces chosen by the first input
 * byte) yields the same data, the same end position and the same outcome as
 * feeding everything at once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "proto/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
    int rc; /* 1 done, 0 incomplete, LK_EPARSE */
    size_t used;
    char *data;
    size_t data_len;
};

static void run(const char *in, size_t len, size_t step, struct outcome *o)
{
    struct lk_http1_chunked d;
    lk_http1_chunked_init(&d);
    o->data = lk_xmalloc(len + 1);
    o->data_len = 0;
    o->rc = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t n = len - pos < step ? len - pos : step;
        size_t off = 0;
        while (off < n) {
            size_t fr = 0, da = 0;
            int rc = lk_http1_chunked_decode(&d, in + pos + off, n - off, &fr, &da, NULL);
            if (rc < 0) {
                o->rc = rc;
                o->used = pos + off;
                return;
            }
            LK_ASSERT(fr + da <= n - off);
            memcpy(o->data + o->data_len, in + pos + off + fr, da);
            o->data_len += da;
            off += fr + da;
            if (rc == 1) {
                o->rc = 1;
                o->used = pos + off;
                LK_ASSERT(lk_http1_chunked_done(&d));
                return;
            }
            if (fr + da == 0)
                break;
        }
        pos += n;
    }
    o->used = pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct outcome whole, bytes, pieces;
    run(in, size, size ? size : 1, &whole);
    run(in, size, 1, &bytes);
    run(in, size, size ? (size_t)data[0] % 7 + 1 : 1, &pieces);
    LK_ASSERT(whole.rc == bytes.rc && whole.rc == pieces.rc);
    if (whole.rc >= 0) {
        LK_ASSERT(whole.data_len == bytes.data_len && whole.data_len == pieces.data_len);
        LK_ASSERT(memcmp(whole.data, bytes.data, whole.data_len) == 0);
        LK_ASSERT(memcmp(whole.data, pieces.data, whole.data_len) == 0);
        LK_ASSERT(whole.used == bytes.used && whole.used == pieces.used);
    }
    free(whole.data);
    free(bytes.data);
    free(pieces.data);
    return 0;
}
