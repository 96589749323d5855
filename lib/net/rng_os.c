/*
 * rng_os.c - ChaCha20 keystream generator seeded from the OS; see rng_os.h.
 */
#include "net/rng_os.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/alloc.h"

#define REFILL_BLOCKS 16
#define KEY_BYTES     32

struct rng_state {
    bool seeded; /* zero again in a forked child (MADV_WIPEONFORK) */
    uint32_t key[8];
    uint32_t counter;
    size_t pos; /* next unused byte of out */
    uint8_t out[REFILL_BLOCKS * 64];
};

static struct rng_state *state;

static uint32_t rotl(uint32_t v, int n)
{
    return (v << n) | (v >> (32 - n));
}

#define QR(a, b, c, d)       \
    do {                     \
        a += b;              \
        d = rotl(d ^ a, 16); \
        c += d;              \
        b = rotl(b ^ c, 12); \
        a += b;              \
        d = rotl(d ^ a, 8);  \
        c += d;              \
        b = rotl(b ^ c, 7);  \
    } while (0)

void lk_chacha20_block(const uint32_t key[8], uint32_t counter, const uint32_t nonce[3],
                       uint8_t out[64])
{
    uint32_t in[16] = { 0x61707865, 0x3320646e, 0x79622d32, 0x6b206574 };
    memcpy(in + 4, key, 8 * sizeof(uint32_t));
    in[12] = counter;
    memcpy(in + 13, nonce, 3 * sizeof(uint32_t));
    uint32_t x[16];
    memcpy(x, in, sizeof(x));
    for (int i = 0; i < 10; i++) {
        QR(x[0], x[4], x[8], x[12]);
        QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]);
        QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]);
        QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]);
        QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) {
        uint32_t v = x[i] + in[i];
        out[4 * i] = (uint8_t)v;
        out[4 * i + 1] = (uint8_t)(v >> 8);
        out[4 * i + 2] = (uint8_t)(v >> 16);
        out[4 * i + 3] = (uint8_t)(v >> 24);
    }
}

/* n bytes from the OS; false when there is no source at all. */
static bool os_random(void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got == -1 && errno == EINTR)
            continue;
        if (got == -1)
            break;
        p += got;
        n -= (size_t)got;
    }
    if (n == 0)
        return true;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return false;
    while (n > 0) {
        ssize_t got = read(fd, p, n);
        if (got == -1 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        p += got;
        n -= (size_t)got;
    }
    close(fd);
    return n == 0;
}

static struct rng_state *get_state(void)
{
    if (state == NULL) {
        void *page = mmap(NULL, sizeof(struct rng_state), PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED)
            LK_BUG("rng: cannot map its state");
#ifdef MADV_WIPEONFORK
        (void)madvise(page, sizeof(struct rng_state), MADV_WIPEONFORK);
#endif
        state = page;
    }
    if (!state->seeded) {
        if (!os_random(state->key, sizeof(state->key)))
            LK_BUG("rng: no randomness from the OS");
        state->counter = 0;
        state->pos = sizeof(state->out);
        state->seeded = true;
    }
    return state;
}

/* Fast key erasure: the first 32 bytes of each refill become the key. */
static void refill(struct rng_state *s)
{
    static const uint32_t nonce[3] = { 0, 0, 0 };
    for (uint32_t i = 0; i < REFILL_BLOCKS; i++)
        lk_chacha20_block(s->key, s->counter + i, nonce, s->out + 64 * i);
    s->counter += REFILL_BLOCKS;
    memcpy(s->key, s->out, KEY_BYTES);
    memset(s->out, 0, KEY_BYTES);
    s->pos = KEY_BYTES;
}

void lk_rng_os_fill(void *ctx, void *buf, size_t n)
{
    struct rng_state *s = get_state();
    uint8_t *p = buf;
    (void)ctx;
    while (n > 0) {
        if (s->pos == sizeof(s->out))
            refill(s);
        size_t k = sizeof(s->out) - s->pos;
        if (k > n)
            k = n;
        memcpy(p, s->out + s->pos, k);
        /* Used bytes are wiped so the state never holds past output. */
        memset(s->out + s->pos, 0, k);
        s->pos += k;
        p += k;
        n -= k;
    }
}

void lk_rng_os_reseed(void)
{
    if (state != NULL)
        state->seeded = false;
}

struct lk_rng lk_rng_os(void)
{
    return (struct lk_rng){ .fill = lk_rng_os_fill, .ctx = NULL };
}
