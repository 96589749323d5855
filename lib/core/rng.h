/*
 * rng.h - randomness handed to the pure core as an argument (STYLE §3.1).
 *
 * Programs pass an RNG backed by the OS (getrandom/OpenSSL); tests pass a
 * deterministic one.
 */
#ifndef LK_CORE_RNG_H
#define LK_CORE_RNG_H

#include <stddef.h>
#include <stdint.h>

struct lk_rng {
    /* Fills buf[0..n) with random bytes. Never fails. */
    void (*fill)(void *ctx, void *buf, size_t n);
    void *ctx;
};

/* A uniformly distributed integer in [0, bound) (bound > 0), without modulo bias. */
uint32_t lk_rng_below(const struct lk_rng *rng, uint32_t bound);

#endif
