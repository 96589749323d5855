/*
 * test_rng_os.c - the ChaCha20 block function against RFC 8439 and the
 * process-wide generator of lib/net/rng_os.c.
 */
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "net/rng_os.h"

static void hex_decode(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + (size_t)k];
            v = v * 16 + (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        out[i] = (uint8_t)v;
    }
}

static void key_words(const uint8_t kb[32], uint32_t key[8])
{
    for (int i = 0; i < 8; i++)
        key[i] = (uint32_t)kb[4 * i] | (uint32_t)kb[4 * i + 1] << 8 |
                 (uint32_t)kb[4 * i + 2] << 16 | (uint32_t)kb[4 * i + 3] << 24;
}

/* RFC 8439 §2.3.2 and §A.1 (test vectors #1 and #2). */
static void test_chacha20_vectors(void)
{
    static const struct {
        uint8_t key_step; /* key byte i = i * key_step */
        uint32_t counter;
        uint32_t nonce[3];
        const char *hex;
    } cases[] = {
        { 1,
          1,
          { 0x09000000u, 0x4a000000u, 0 },
          "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
          "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e" },
        { 0,
          0,
          { 0, 0, 0 },
          "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
          "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586" },
        { 0,
          1,
          { 0, 0, 0 },
          "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed"
          "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t kb[32], want[64], got[64];
        uint32_t key[8];
        for (int k = 0; k < 32; k++)
            kb[k] = (uint8_t)(k * cases[i].key_step);
        key_words(kb, key);
        hex_decode(cases[i].hex, want, sizeof(want));
        lk_chacha20_block(key, cases[i].counter, cases[i].nonce, got);
        CHECK_MEM_EQ(got, sizeof(got), want, sizeof(want));
    }
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0)
            return false;
    }
    return true;
}

/* Draws of various sizes (across refills) never repeat and are not zero. */
static void test_fill_sizes(void)
{
    struct lk_rng rng = lk_rng_os();
    static const size_t sizes[] = { 1, 7, 16, 24, 64, 991, 1024, 5000 };
    uint8_t prev[5000], cur[5000];
    memset(prev, 0, sizeof(prev));
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        memset(cur, 0, sizeof(cur));
        rng.fill(rng.ctx, cur, n);
        if (n >= 16) {
            CHECK(!all_zero(cur, n));
            CHECK(memcmp(cur, prev, 16) != 0);
        }
        CHECK(all_zero(cur + n, sizeof(cur) - n)); /* no overrun */
        memcpy(prev, cur, sizeof(prev));
    }
}

/* 24-byte ids (traceparent) stay unique over many draws. */
static void test_unique_ids(void)
{
    enum {
        N = 2000
    };
    static uint8_t ids[N][24];
    struct lk_rng rng = lk_rng_os();
    for (int i = 0; i < N; i++)
        rng.fill(rng.ctx, ids[i], sizeof(ids[i]));
    int dups = 0;
    for (int i = 0; i < N; i++) {
        for (int j = i + 1; j < N; j++)
            dups += memcmp(ids[i], ids[j], sizeof(ids[i])) == 0;
    }
    CHECK_INT_EQ(dups, 0);
}

/* lk_rng_below() over the generator covers the range without leaving it. */
static void test_below(void)
{
    struct lk_rng rng = lk_rng_os();
    int seen[6] = { 0 };
    for (int i = 0; i < 600; i++) {
        uint32_t v = lk_rng_below(&rng, 6);
        CHECK(v < 6);
        if (v < 6)
            seen[v]++;
    }
    for (int i = 0; i < 6; i++)
        CHECK(seen[i] > 0);
}

/* A forked child does not repeat its parent's next bytes, and reseeding
 * changes the stream. */
static void test_fork_and_reseed(void)
{
    uint8_t first[32];
    lk_rng_os_fill(NULL, first, sizeof(first)); /* state exists before fork */
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        uint8_t b[32];
        lk_rng_os_fill(NULL, b, sizeof(b));
        ssize_t w = write(fds[1], b, sizeof(b));
        _exit(w == (ssize_t)sizeof(b) ? 0 : 1);
    }
    uint8_t mine[32], child[32];
    lk_rng_os_fill(NULL, mine, sizeof(mine));
    CHECK(read(fds[0], child, sizeof(child)) == (ssize_t)sizeof(child));
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(memcmp(mine, child, sizeof(mine)) != 0);
    close(fds[0]);
    close(fds[1]);
    lk_rng_os_reseed();
    uint8_t after[32];
    lk_rng_os_fill(NULL, after, sizeof(after));
    CHECK(!all_zero(after, sizeof(after)));
    CHECK(memcmp(after, mine, sizeof(after)) != 0);
}

int main(void)
{
    RUN(test_chacha20_vectors);
    RUN(test_fill_sizes);
    RUN(test_unique_ids);
    RUN(test_below);
    RUN(test_fork_and_reseed);
    return DONE();
}
