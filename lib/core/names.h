/*
 * names.h - session name generators (SPEC §2.5, §2.6).
 *
 * Names have no syntax rules; these are just the generators. Randomness comes
 * from an injected struct lk_rng (tests pass a deterministic one).
 *   animal:   "{adjective}-{animal}" from the fixed lists below (127 x 37)
 *   six-char: 6 characters uniform over [A-Za-z0-9], then lower-cased
 *   hash:     the first 6 hex characters of lk_session_hash (deterministic)
 * The allocation policy over a store (collisions, desired names) lives in
 * store.h (lk_new_session_name).
 */
#ifndef LK_CORE_NAMES_H
#define LK_CORE_NAMES_H

#include <stddef.h>

#include "core/buf.h"
#include "core/rng.h"
#include "core/session.h"

#define LK_N_ADJECTIVES 127
#define LK_N_ANIMALS    37

/* The word lists of SPEC §2.5, in order (borrowed, static). */
extern const char *const lk_name_adjectives[LK_N_ADJECTIVES];
extern const char *const lk_name_animals[LK_N_ANIMALS];

/* Appends a random "{adjective}-{animal}" to out. */
void lk_name_random_animal(const struct lk_rng *rng, struct lk_buf *out);

/* Appends 6 random characters matching ^[a-z0-9]{6}$ (letters twice as
 * likely as digits, SPEC §2.5). */
void lk_name_random_six_char(const struct lk_rng *rng, struct lk_buf *out);

/* Appends the deterministic six-char name of s: the first 6 hex characters of
 * the SHA-256 of its canonical JSON (SPEC §2.6). */
void lk_name_hash(const struct lk_session *s, struct lk_buf *out);

#endif
