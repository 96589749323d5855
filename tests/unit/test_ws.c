/*
 * test_ws.c - lib/proto/ws: frame heads (RFC 6455 §5.2), close frames
 * (§5.5.1) and the worker's close rewrite (SPEC §4.7).
 */
#include <string.h>

#include "core/alloc.h"
#include "harness.h"
#include "proto/ws.h"

static void test_head_lengths(void)
{
    static const struct {
        const char *bytes;
        size_t n;
        uint64_t payload;
        size_t head;
    } cases[] = {
        { "\x81\x05", 2, 5, 2 },
        { "\x82\x7d", 2, 125, 2 },
        { "\x82\x7e\x00\x7e", 4, 126, 4 },
        { "\x02\x7e\xff\xff", 4, 65535, 4 },
        { "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10, 65536, 10 },
        { "\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", 10, 0x7fffffffffffffffULL, 10 },
        { "\x88\x82\x01\x02\x03\x04", 6, 2, 6 },
        { "\x81\xfe\x01\x00\xaa\xbb\xcc\xdd", 8, 256, 8 },
        { "\xc1\x03", 2, 3, 2 }, /* RSV1: read; the relay decides (permessage-deflate) */
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        const uint8_t *p = (const uint8_t *)cases[i].bytes;
        struct lk_ws_head h;
        /* Every proper prefix asks for more. */
        for (size_t k = 0; k < cases[i].n; k++)
            CHECK_INT_EQ(lk_ws_parse_head(p, k, &h), 0);
        CHECK_INT_EQ(lk_ws_parse_head(p, cases[i].n, &h), 1);
        CHECK(h.payload_len == cases[i].payload);
        CHECK_INT_EQ(h.len, cases[i].head);
        CHECK_INT_EQ(h.opcode, p[0] & 0x0F);
        CHECK_INT_EQ(h.rsv, p[0] & 0x70);
        CHECK(h.fin == ((p[0] & 0x80) != 0));
        CHECK(h.masked == ((p[1] & 0x80) != 0));
        if (h.masked)
            CHECK(memcmp(h.mask, p + h.len - 4, 4) == 0);
    }
}

static void test_head_malformed(void)
{
    static const struct {
        const char *bytes;
        size_t n;
    } cases[] = {
        { "\x82\x7e\x00\x7d", 4 },                          /* 125 in 16 bits */
        { "\x82\x7f\x00\x00\x00\x00\x00\x00\xff\xff", 10 }, /* 65535 in 64 bits */
        { "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 10 }, /* top bit set */
        { "\x88\x7e\x00\x7e", 4 },                          /* close of 126 bytes */
        { "\x09\x00", 2 },                                  /* fragmented ping */
        { "\x8a\x7e\x00\x80", 4 },                          /* long pong */
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_ws_head h;
        CHECK_INT_EQ(lk_ws_parse_head((const uint8_t *)cases[i].bytes, cases[i].n, &h), -1);
    }
}

static void test_close_frame(void)
{
    uint8_t f[LK_WS_CLOSE_FRAME_MAX];
    size_t n = lk_ws_close_frame(f, 1011, (const uint8_t *)"gone", 4, NULL);
    CHECK_MEM_EQ(f, n, "\x88\x06\x03\xf3gone", 8);
    const uint8_t mask[4] = { 0x11, 0x22, 0x33, 0x44 };
    n = lk_ws_close_frame(f, 1000, (const uint8_t *)"ab", 2, mask);
    CHECK_INT_EQ(n, 10);
    CHECK_MEM_EQ(f, 6, "\x88\x84\x11\x22\x33\x44", 6);
    const uint8_t want[4] = { 0x03 ^ 0x11, 0xe8 ^ 0x22, 'a' ^ 0x33, 'b' ^ 0x44 };
    CHECK_MEM_EQ(f + 6, 4, want, 4);
    /* A long reason is cut to fit a control frame. */
    uint8_t reason[200];
    memset(reason, 'r', sizeof(reason));
    n = lk_ws_close_frame(f, 1000, reason, sizeof(reason), mask);
    CHECK_INT_EQ(n, LK_WS_CLOSE_FRAME_MAX);
    struct lk_ws_head h;
    CHECK_INT_EQ(lk_ws_parse_head(f, n, &h), 1);
    CHECK(h.payload_len == LK_WS_CONTROL_MAX);
}

/* SPEC §4.7: the other side is closed with 1000 and the received reason. */
static void test_close_normalize(void)
{
    const uint8_t mask[4] = { 0xde, 0xad, 0xbe, 0xef };
    uint8_t in[LK_WS_CLOSE_FRAME_MAX], out[LK_WS_CLOSE_FRAME_MAX], plain[LK_WS_CLOSE_FRAME_MAX];
    struct lk_ws_head h;

    size_t n = lk_ws_close_frame(in, 4001, (const uint8_t *)"bye now", 7, mask);
    CHECK_INT_EQ(lk_ws_parse_head(in, n, &h), 1);
    size_t m = lk_ws_close_normalize(in, &h, out);
    CHECK_MEM_EQ(out, m, plain,
                 lk_ws_close_frame(plain, 1000, (const uint8_t *)"bye now", 7, mask));

    n = lk_ws_close_frame(in, 1001, NULL, 0, NULL);
    CHECK_INT_EQ(lk_ws_parse_head(in, n, &h), 1);
    m = lk_ws_close_normalize(in, &h, out);
    CHECK_MEM_EQ(out, m, "\x88\x02\x03\xe8", 4);

    /* No body, or a malformed one-byte body: 1000 without a reason. */
    CHECK_INT_EQ(lk_ws_parse_head((const uint8_t *)"\x88\x00", 2, &h), 1);
    m = lk_ws_close_normalize((const uint8_t *)"\x88\x00", &h, out);
    CHECK_MEM_EQ(out, m, "\x88\x02\x03\xe8", 4);
    const uint8_t one[] = { 0x88, 0x81, 1, 2, 3, 4, 0x55 };
    CHECK_INT_EQ(lk_ws_parse_head(one, sizeof(one), &h), 1);
    m = lk_ws_close_normalize(one, &h, out);
    const uint8_t want[] = { 0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2 };
    CHECK_MEM_EQ(out, m, want, sizeof(want));
}

int main(void)
{
    RUN(test_head_lengths);
    RUN(test_head_malformed);
    RUN(test_close_frame);
    RUN(test_close_normalize);
    return DONE();
}
