/*
 * fuzz_ws_frame.c - lk_ws_parse_head(), lk_ws_close_frame() and
 * lk_ws_close_normalize() (lib/proto/ws.h) on arbitrary bytes.
 *
 * The input is read as a stream of frames, as the worker's WebSocket relay
 * reads it. Invariants: a head is 2 to LK_WS_HEAD_MAX bytes, every shorter
 * prefix of it asks for more bytes, its length is below 2^63, a control frame
 * is final and at most 125 bytes; a whole close frame re-sent by
 * lk_ws_close_normalize() is a well-formed close frame with the same mask
 * key, code 1000 and the same reason bytes; and lk_ws_close_frame() on any
 * code and reason (masked or not) writes a frame that reads back as such.
 */
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "proto/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void unmask(uint8_t *p, size_t n, const struct lk_ws_head *h)
{
    for (size_t i = 0; h->masked && i < n; i++)
        p[i] ^= h->mask[i % 4];
}

static void check_close(const uint8_t *f, const struct lk_ws_head *h)
{
    uint8_t in[LK_WS_CONTROL_MAX], out[LK_WS_CLOSE_FRAME_MAX];
    size_t pl = (size_t)h->payload_len;
    memcpy(in, f + h->len, pl);
    unmask(in, pl, h);
    size_t m = lk_ws_close_normalize(f, h, out);
    LK_ASSERT(m <= LK_WS_CLOSE_FRAME_MAX);
    struct lk_ws_head o;
    LK_ASSERT(lk_ws_parse_head(out, m, &o) == 1);
    LK_ASSERT(o.opcode == LK_WS_OP_CLOSE && o.fin && o.masked == h->masked);
    LK_ASSERT(!o.masked || memcmp(o.mask, h->mask, 4) == 0);
    LK_ASSERT(o.len + o.payload_len == m);
    size_t reason = pl >= 2 ? pl - 2 : 0;
    LK_ASSERT(o.payload_len == 2 + reason);
    unmask(out + o.len, (size_t)o.payload_len, &o);
    LK_ASSERT(out[o.len] == 0x03 && out[o.len + 1] == 0xE8);
    LK_ASSERT(reason == 0 || memcmp(out + o.len + 2, in + 2, reason) == 0);
}

/* A close frame built from the input's first bytes (code, mask flag and
 * key, then the reason) reads back with that code and reason, cut at 123. */
static void check_close_frame(const uint8_t *data, size_t size)
{
    if (size < 7)
        return;
    uint16_t code = (uint16_t)(data[0] << 8 | data[1]);
    const uint8_t *mask = data[2] & 1 ? data + 3 : NULL;
    const uint8_t *reason = data + 7;
    size_t len = size - 7;
    uint8_t out[LK_WS_CLOSE_FRAME_MAX];
    size_t m = lk_ws_close_frame(out, code, reason, len, mask);
    LK_ASSERT(m <= LK_WS_CLOSE_FRAME_MAX);
    struct lk_ws_head h;
    LK_ASSERT(lk_ws_parse_head(out, m, &h) == 1);
    LK_ASSERT(h.opcode == LK_WS_OP_CLOSE && h.fin && h.rsv == 0 && h.masked == (mask != NULL));
    LK_ASSERT(!h.masked || memcmp(h.mask, mask, 4) == 0);
    size_t want = len < LK_WS_CONTROL_MAX - 2 ? len : LK_WS_CONTROL_MAX - 2;
    LK_ASSERT(h.len + h.payload_len == m && h.payload_len == 2 + want);
    unmask(out + h.len, (size_t)h.payload_len, &h);
    LK_ASSERT(out[h.len] == code >> 8 && out[h.len + 1] == (code & 0xff));
    LK_ASSERT(want == 0 || memcmp(out + h.len + 2, reason, want) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t at = 0;
    check_close_frame(data, size);
    while (at < size) {
        struct lk_ws_head h;
        int rc = lk_ws_parse_head(data + at, size - at, &h);
        if (rc <= 0)
            break; /* more bytes needed, or a malformed head: the rest passes as bytes */
        LK_ASSERT(h.len >= 2 && h.len <= LK_WS_HEAD_MAX);
        LK_ASSERT(h.payload_len >> 63 == 0);
        LK_ASSERT(h.opcode < 8 || (h.fin && h.payload_len <= LK_WS_CONTROL_MAX));
        struct lk_ws_head p;
        for (size_t k = 0; k < h.len; k++)
            LK_ASSERT(lk_ws_parse_head(data + at, k, &p) == 0);
        if (h.payload_len > size - at - h.len)
            break;
        if (h.opcode == LK_WS_OP_CLOSE)
            check_close(data + at, &h);
        at += h.len + (size_t)h.payload_len;
    }
    return 0;
}
