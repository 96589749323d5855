/*
 * rng_os.h - a fast process-wide random generator for programs to hand to
 * the core as a struct lk_rng (docs/performance.md, finding 9).
 *
 * The generator is ChaCha20 (RFC 8439) keyed once from getrandom(2) (32
 * bytes; /dev/urandom when getrandom is unavailable) and run in userspace
 * with fast key erasure: every refill produces 16 blocks, the first 32
 * bytes of which become the next key, so earlier output cannot be
 * recomputed from the state. It costs no syscall per call (getrandom(2) per
 * request and RAND_bytes()'s getpid() per request were measurable on the
 * proxy path) and is suitable for traceparent ids, session names and
 * secrets alike. The state lives on a MADV_WIPEONFORK page, so a forked
 * child reseeds instead of repeating its parent's output (on kernels
 * without it, a child must call lk_rng_os_reseed()).
 *
 * Threading: not thread-safe; one thread (the loop thread) per process.
 */
#ifndef LK_NET_RNG_OS_H
#define LK_NET_RNG_OS_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"

/* A struct lk_rng backed by the process-wide generator (ctx unused). Aborts
 * (LK_BUG) when the OS gives no randomness at all. */
struct lk_rng lk_rng_os(void);

/* The fill function behind lk_rng_os(): n random bytes into buf. */
void lk_rng_os_fill(void *ctx, void *buf, size_t n);

/* Discards the state and reseeds from the OS on the next call. */
void lk_rng_os_reseed(void);

/* The ChaCha20 block function of RFC 8439 §2.3: 64 bytes of keystream for
 * key, block counter and nonce (exposed for the test vectors). */
void lk_chacha20_block(const uint32_t key[8], uint32_t counter, const uint32_t nonce[3],
                       uint8_t out[64]);

#endif
