/*
 * test_sha256.c - lib/core/sha256: NIST FIPS 180-4 example vectors, streaming
 * in odd splits, the session-name vectors of SPEC §2.6 and §9, and the
 * HMAC-SHA256 vectors of RFC 4231.
 */
#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"
#include "harness.h"

static const struct {
    const char *msg;
    const char *hex;
} vectors[] = {
    { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    { "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmno"
      "p"
      "qrsmnopqrstnopqrstu",
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
    /* SPEC §9: the canonical JSON of a one-service preview session. */
    { "{\"kind\":\"preview\",\"session_token\":\"preview_session\",\"services\":[{\"name\":"
      "\"frontend\",\"location\":\"http://example.com/\",\"rewrites\":null}],\"domains\":[{"
      "\"domain\":\"example.com\",\"default_service\":\"frontend\",\"routes\":null}],"
      "\"cache_routes\":null}",
      "2551b2baac7888f8" },
};

static void test_vectors(void)
{
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        char hex[65];
        lk_sha256_hex(vectors[i].msg, strlen(vectors[i].msg), hex);
        /* The SPEC §9 vector gives only a prefix. */
        CHECK_MEM_EQ(hex, strlen(vectors[i].hex), vectors[i].hex, strlen(vectors[i].hex));
    }
}

static void test_million_a(void)
{
    struct lk_sha256 ctx;
    unsigned char chunk[1000];
    unsigned char d[LK_SHA256_LEN];
    static const unsigned char want[LK_SHA256_LEN] = {
        0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92, 0x81, 0xa1, 0xc7,
        0xe2, 0x84, 0xd7, 0x3e, 0x67, 0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97,
        0x20, 0x0e, 0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0,
    };
    memset(chunk, 'a', sizeof(chunk));
    lk_sha256_init(&ctx);
    for (int i = 0; i < 1000; i++)
        lk_sha256_update(&ctx, chunk, sizeof(chunk));
    lk_sha256_final(&ctx, d);
    CHECK(memcmp(d, want, sizeof(want)) == 0);
}

static void to_hex(const unsigned char d[LK_SHA256_LEN], char hex[2 * LK_SHA256_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < LK_SHA256_LEN; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[2 * LK_SHA256_LEN] = '\0';
}

/* Feeding the same message in splits of every size gives the same digest;
 * lengths around the 55/56/64-byte padding boundaries are covered. */
static void test_splits(void)
{
    char msg[200];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (char)('a' + i % 26);
    static const size_t lens[] = { 0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 200 };
    for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        unsigned char whole[LK_SHA256_LEN];
        lk_sha256(msg, lens[l], whole);
        for (size_t step = 1; step <= 70; step += 3) {
            struct lk_sha256 ctx;
            unsigned char d[LK_SHA256_LEN];
            lk_sha256_init(&ctx);
            for (size_t off = 0; off < lens[l]; off += step)
                lk_sha256_update(&ctx, msg + off, off + step > lens[l] ? lens[l] - off : step);
            lk_sha256_final(&ctx, d);
            CHECK(memcmp(d, whole, sizeof(whole)) == 0);
        }
    }
}

/* RFC 4231 test cases 1, 2 and 6 (a key longer than the block). */
static void test_hmac_rfc4231(void)
{
    static const char tc1[] = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
    static const char tc2[] = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    static const char tc6[] = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
    static const char big_msg[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    unsigned char key[131];
    unsigned char mac[LK_SHA256_LEN];
    char hex[2 * LK_SHA256_LEN + 1];

    memset(key, 0x0b, 20);
    lk_hmac_sha256(key, 20, "Hi There", 8, mac);
    to_hex(mac, hex);
    CHECK_STR_EQ(hex, tc1);

    lk_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
    to_hex(mac, hex);
    CHECK_STR_EQ(hex, tc2);

    memset(key, 0xaa, sizeof(key));
    lk_hmac_sha256(key, sizeof(key), big_msg, sizeof(big_msg) - 1, mac);
    to_hex(mac, hex);
    CHECK_STR_EQ(hex, tc6);
}

int main(void)
{
    RUN(test_vectors);
    RUN(test_million_a);
    RUN(test_splits);
    RUN(test_hmac_rfc4231);
    return DONE();
}
