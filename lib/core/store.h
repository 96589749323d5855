/*
 * store.h - the key -> string store of sessions (SPEC §2.5, §2.7).
 *
 * struct lk_kv is an interface: a table of function pointers plus a context,
 * so the worker can plug in SQLite or Redis (src/worker) and the local server
 * uses the in-memory implementation below. Keys are session names, values are
 * Session JSON (SPEC §2.1). Calls are synchronous; an implementation may
 * block (SQLite, hiredis). Expiry (the worker's 7-day TTL) is the business of
 * the implementation: the core has no clock, so an implementation that needs
 * one keeps it in its context.
 *
 * Error convention for every kv operation: 0 on success; LK_ENOTFOUND when the
 * key is missing (get only); any other negative code (normally LK_ESTORE, or
 * LK_EUNSUPPORTED for list) with a one-line reason appended to err (which may
 * be NULL). The session-level helpers wrap those reasons in the SPEC texts:
 * "Could not get config: {e}", "Could not put config: {e}",
 * "Could not delete config: {e}", "Could not list configs: {e}",
 * "Invalid stored config: {e}", "Session name is empty",
 * "Session with name already exists".
 *
 * Parsed sessions: a value read back is re-parsed and re-validated. To avoid
 * parsing (and compiling regexes) on every request, lk_store_get_session takes
 * an optional struct lk_session_cache owned by the caller. When the kv has a
 * stamp and it has not moved since the cached session was read, that session
 * is the answer and the kv is not read at all. Otherwise it reads the raw
 * value (a kv shared between workers is never answered from the cache) and
 * returns the cached parsed session when the bytes are unchanged. Returned
 * sessions are new references (lk_session_free), so they stay valid while a
 * request is in flight even if the entry is replaced.
 *
 * Single-threaded use only.
 */
#ifndef LK_CORE_STORE_H
#define LK_CORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/rng.h"
#include "core/session.h"
#include "core/str.h"
#include "core/upsert.h"

/* Called by list for each entry; key and value are borrowed for the call.
 * A non-zero return stops the listing and is returned by list. */
typedef int lk_kv_list_cb(void *data, const char *key, const char *value, size_t value_len);

struct lk_kv_ops {
    /* Replaces *value's contents with the value of key (NUL-terminated). */
    int (*get)(void *ctx, const char *key, struct lk_buf *value, struct lk_buf *err);
    /* Sets *exists. */
    int (*exists)(void *ctx, const char *key, bool *exists, struct lk_buf *err);
    /* Stores a copy of value[0..len) under key, overwriting. */
    int (*put)(void *ctx, const char *key, const char *value, size_t len, struct lk_buf *err);
    /* Deletes key; deleting a missing key succeeds. */
    int (*del)(void *ctx, const char *key, struct lk_buf *err);
    /* Calls cb for every entry, in no particular order (LK_EUNSUPPORTED with
     * "Not implemented" when the store cannot list). */
    int (*list)(void *ctx, lk_kv_list_cb *cb, void *data, struct lk_buf *err);
    /* Frees ctx and everything it owns (lk_kv_free). */
    void (*destroy)(void *ctx);
    /* Optional (NULL: not supported). Sets *stamp to a non-zero number that
     * changes whenever get or exists of any key could answer differently than
     * before: a write by this or any other process, or an expiry coming due.
     * What get answered under a stamp is still the answer while stamp gives
     * the same number. Only a kv that learns of every change cheaply offers
     * it (not one shared over the network); one that learns of another
     * process's writes a moment late must bound how late (the worker's
     * SQLite store: a second). */
    int (*stamp)(void *ctx, uint64_t *stamp);
    /* Optional (NULL: lk_kv_put_if() checks with get, then puts, which is
     * atomic only for a kv that one process owns). Stores value under key
     * only if key has no value (expect NULL) or its value is exactly
     * expect[0..expect_len), as one atomic step of the store; LK_ECONFLICT
     * (no message) when not. */
    int (*put_if)(void *ctx, const char *key, const char *expect, size_t expect_len,
                  const char *value, size_t len, struct lk_buf *err);
};

struct lk_kv {
    const struct lk_kv_ops *ops; /* borrowed, static */
    void *ctx;                   /* owned by the kv; freed by ops->destroy */
};

/* Frees the implementation through ops->destroy and zeroes kv. Safe on a
 * zeroed struct. */
void lk_kv_free(struct lk_kv *kv);

/* Thin wrappers over kv->ops (same contracts). */
int lk_kv_get(const struct lk_kv *kv, const char *key, struct lk_buf *value, struct lk_buf *err);
int lk_kv_exists(const struct lk_kv *kv, const char *key, bool *exists, struct lk_buf *err);
int lk_kv_put(const struct lk_kv *kv, const char *key, const char *value, size_t len,
              struct lk_buf *err);
int lk_kv_put_if(const struct lk_kv *kv, const char *key, const char *expect, size_t expect_len,
                 const char *value, size_t len, struct lk_buf *err);
int lk_kv_del(const struct lk_kv *kv, const char *key, struct lk_buf *err);
int lk_kv_list(const struct lk_kv *kv, lk_kv_list_cb *cb, void *data, struct lk_buf *err);
/* LK_EUNSUPPORTED when the kv has no stamp. */
int lk_kv_stamp(const struct lk_kv *kv, uint64_t *stamp);

/*
 * Initialises kv as an in-memory store (a chained hash map with doubling, O(1)
 * average get/put/delete; fine for 10,000+ sessions). Never fails; list and
 * stamp are supported. Free with lk_kv_free.
 */
void lk_kv_memory_init(struct lk_kv *kv);

/* Number of entries of an in-memory kv (for tests and status). */
size_t lk_kv_memory_count(const struct lk_kv *kv);

/* ---- parsed-session cache ------------------------------------------------- */

struct lk_session_cache;

/* Default bound of a cache's stored session JSON (see below). */
#define LK_SESSION_CACHE_BYTES (4u * 1024 * 1024)

/* A cache of at most max_entries parsed sessions (0 means 1024) whose stored
 * JSON adds up to at most max_bytes (0 means LK_SESSION_CACHE_BYTES): a parsed
 * session, with its compiled regexes, takes 10-30 times its JSON, so a count
 * alone would let a few thousand sessions of hundreds of routes hold
 * gigabytes. When full, arbitrary entries are evicted; a session larger than
 * max_bytes is not cached. Entries remember their kv by its ctx pointer, so a
 * cache must not outlive a kv it was used with. Free with
 * lk_session_cache_free. */
struct lk_session_cache *lk_session_cache_new(size_t max_entries, size_t max_bytes);
/* Number of cached sessions; *bytes: their stored JSON. For tests. */
size_t lk_session_cache_size(const struct lk_session_cache *cache, size_t *bytes);
/* Drops every entry (its references). NULL is a no-op. */
void lk_session_cache_free(struct lk_session_cache *cache);

/* ---- sessions over a kv --------------------------------------------------- */

/*
 * Reads the session stored under name. cache may be NULL. Returns 0 and a new
 * reference in *out; LK_ENOTFOUND (no message); LK_ESTORE with
 * "Could not get config: {e}"; or LK_EINVAL with "Invalid stored config: {e}"
 * when the value fails to parse or validate ({e} = the session error text).
 */
int lk_store_get_session(const struct lk_kv *kv, struct lk_session_cache *cache, const char *name,
                         struct lk_session **out, struct lk_buf *err);
/* The same for a name given as a range (routing's session names): no
 * allocation for a short name; a name with a NUL byte is LK_ENOTFOUND. */
int lk_store_get_session_str(const struct lk_kv *kv, struct lk_session_cache *cache,
                             struct lk_str name, struct lk_session **out, struct lk_buf *err);

/* Serialises s (lk_session_to_json) and puts it under name. 0, or the kv's
 * code with "Could not put config: {e}". */
int lk_store_put_session(const struct lk_kv *kv, const char *name, const struct lk_session *s,
                         struct lk_buf *err);

/* Deletes name. 0, or the kv's code with "Could not delete config: {e}". */
int lk_store_delete_session(const struct lk_kv *kv, const char *name, struct lk_buf *err);

/*
 * new_session_name (SPEC §2.5). kind six_char: the hash name of s (desired is
 * ignored; no store access). kind animal: desired when non-empty (NULL ok) and
 * free; else up to 20 random animal names, the first free one; else a random
 * six-char; then while the candidate exists, another random six-char.
 * Appends the name to *name_out. Returns 0 or a kv error (message appended to
 * err as "Could not get config: {e}").
 */
int lk_new_session_name(const struct lk_kv *kv, enum lk_name_kind kind, const char *desired,
                        const struct lk_session *s, const struct lk_rng *rng,
                        struct lk_buf *name_out, struct lk_buf *err);

/*
 * store_session (SPEC §2.5, worker v1 and local server): name = desired when
 * it is non-empty and already holds a session with the same session_token;
 * otherwise lk_new_session_name. A desired name whose stored value cannot be
 * read or parsed fails the call with the lookup's error ("Invalid stored
 * config: {e}", SPEC §2.7). Puts s under the name (overwriting) and
 * appends the name to *name_out. Returns 0 or a kv error with its SPEC text.
 */
int lk_store_session(const struct lk_kv *kv, const struct lk_session *s, enum lk_name_kind kind,
                     const char *desired, const struct lk_rng *rng, struct lk_buf *name_out,
                     struct lk_buf *err);

/*
 * strict_store_session (SPEC §2.5, worker v2): returns LK_EINVAL with
 * "Session name is empty" for an empty name; LK_ECONFLICT with
 * "Session with name already exists" when a session with a different
 * session_token is stored under name (the worker maps this to 409, DESIGN
 * §2.1); otherwise puts s (overwriting) and returns 0. Errors reading the
 * existing value (I/O, or "Invalid stored config: {e}") are returned as is;
 * put errors as "Could not put config: {e}".
 */
int lk_strict_store_session(const struct lk_kv *kv, const char *name, const struct lk_session *s,
                            struct lk_buf *err);

#endif
