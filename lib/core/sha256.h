/*
 * sha256.h - a small pure SHA-256 (FIPS 180-4) for the core.
 *
 * The core may not use OpenSSL (STYLE §3.1); session names need one digest
 * (SPEC §2.6), session-auth cookies one HMAC (session_auth.h). Streaming: init, update any number
 * of times, final. Tested against the NIST vectors in tests/unit/test_sha256.c.
 */
#ifndef LK_CORE_SHA256_H
#define LK_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define LK_SHA256_LEN 32

struct lk_sha256 {
    /* private; use the API */
    uint32_t state[8];
    uint64_t n_bytes;
    unsigned char block[64];
    size_t block_len;
};

void lk_sha256_init(struct lk_sha256 *ctx);
/* Feeds p[0..len). */
void lk_sha256_update(struct lk_sha256 *ctx, const void *p, size_t len);
/* Writes the digest; ctx must be re-initialised before reuse. */
void lk_sha256_final(struct lk_sha256 *ctx, unsigned char out[LK_SHA256_LEN]);

/* One-shot digest of p[0..len). */
void lk_sha256(const void *p, size_t len, unsigned char out[LK_SHA256_LEN]);

/* One-shot digest as lower-case hex, NUL-terminated (hex holds 65 bytes). */
void lk_sha256_hex(const void *p, size_t len, char hex[2 * LK_SHA256_LEN + 1]);

/* HMAC-SHA256 (RFC 2104) of msg[0..len) keyed with key[0..key_len);
 * tested against the RFC 4231 vectors. */
void lk_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t len,
                    unsigned char out[LK_SHA256_LEN]);

#endif
