/*
 * rng.c - helpers over an injected random source.
 */
#include "core/rng.h"

uint32_t lk_rng_below(const struct lk_rng *rng, uint32_t bound)
{
    /* Rejection sampling: draw until the value falls in a multiple of bound. */
    uint32_t limit = UINT32_MAX - (UINT32_MAX % bound);
    for (;;) {
        uint32_t v;
        rng->fill(rng->ctx, &v, sizeof(v));
        if (v < limit)
            return v % bound;
    }
}
