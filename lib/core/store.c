/*
 * store.c - the key -> string store interface, its in-memory implementation,
 * the parsed-session cache and the session allocation rules (SPEC §2.5, §2.7).
 *
 * Both the memory kv and the cache sit on one small chained hash map (FNV-1a,
 * doubling at load factor 1), so lookups stay O(1) on average for any number
 * of sessions.
 */
#include "core/store.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/names.h"
#include "core/str.h"

/* ---- hash map ---------------------------------------------------------------- */

struct entry {
    struct entry *next;
    uint64_t hash;
    char *key; /* owned */
    char *raw; /* owned value bytes (NUL-terminated) */
    size_t raw_len;
    struct lk_session *session; /* cache only: one reference */
    const void *stamp_kv;       /* cache only: the kv (ctx) and its stamp when */
    uint64_t stamp;             /* the session was read; 0: no stamp */
};

struct map {
    struct entry **buckets;
    size_t n_buckets, count;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static struct entry **map_slot(const struct map *m, const char *key, uint64_t h)
{
    struct entry **pp = &m->buckets[h & (m->n_buckets - 1)];
    while (*pp != NULL && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->next;
    return pp;
}

static struct entry *map_find(const struct map *m, const char *key)
{
    if (m->n_buckets == 0)
        return NULL;
    return *map_slot(m, key, fnv1a(key));
}

static void map_grow(struct map *m)
{
    size_t n = m->n_buckets ? m->n_buckets * 2 : 16;
    struct entry **b = lk_xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < m->n_buckets; i++) {
        struct entry *e = m->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = n;
}

/* Returns the entry for key, creating an empty one when missing. */
static struct entry *map_upsert(struct map *m, const char *key)
{
    struct entry *e = map_find(m, key);
    if (e != NULL)
        return e;
    if (m->count >= m->n_buckets)
        map_grow(m);
    e = lk_xcalloc(1, sizeof(*e));
    e->hash = fnv1a(key);
    e->key = lk_xstrdup(key);
    e->next = m->buckets[e->hash & (m->n_buckets - 1)];
    m->buckets[e->hash & (m->n_buckets - 1)] = e;
    m->count++;
    return e;
}

static void entry_free(struct entry *e)
{
    free(e->key);
    free(e->raw);
    lk_session_free(e->session);
    free(e);
}

static void map_remove(struct map *m, const char *key)
{
    if (m->n_buckets == 0)
        return;
    struct entry **pp = map_slot(m, key, fnv1a(key));
    struct entry *e = *pp;
    if (e == NULL)
        return;
    *pp = e->next;
    entry_free(e);
    m->count--;
}

/* Removes one entry, scanning buckets from a position derived from hint;
 * returns its raw_len. */
static size_t map_evict_one(struct map *m, uint64_t hint)
{
    for (size_t i = 0; i < m->n_buckets; i++) {
        struct entry **pp = &m->buckets[(hint + i) & (m->n_buckets - 1)];
        if (*pp != NULL) {
            struct entry *e = *pp;
            size_t len = e->raw_len;
            *pp = e->next;
            entry_free(e);
            m->count--;
            return len;
        }
    }
    return 0;
}

static void map_release(struct map *m)
{
    for (size_t i = 0; i < m->n_buckets; i++) {
        struct entry *e = m->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            entry_free(e);
            e = next;
        }
    }
    free(m->buckets);
    memset(m, 0, sizeof(*m));
}

static void entry_set_raw(struct entry *e, const char *value, size_t len)
{
    free(e->raw);
    e->raw = lk_xstrndup(value, len);
    e->raw_len = len;
}

/* ---- kv interface -------------------------------------------------------------- */

void lk_kv_free(struct lk_kv *kv)
{
    if (kv->ops != NULL && kv->ops->destroy != NULL)
        kv->ops->destroy(kv->ctx);
    kv->ops = NULL;
    kv->ctx = NULL;
}

int lk_kv_get(const struct lk_kv *kv, const char *key, struct lk_buf *value, struct lk_buf *err)
{
    return kv->ops->get(kv->ctx, key, value, err);
}

int lk_kv_exists(const struct lk_kv *kv, const char *key, bool *exists, struct lk_buf *err)
{
    return kv->ops->exists(kv->ctx, key, exists, err);
}

int lk_kv_put(const struct lk_kv *kv, const char *key, const char *value, size_t len,
              struct lk_buf *err)
{
    return kv->ops->put(kv->ctx, key, value, len, err);
}

int lk_kv_put_if(const struct lk_kv *kv, const char *key, const char *expect, size_t expect_len,
                 const char *value, size_t len, struct lk_buf *err)
{
    if (kv->ops->put_if != NULL)
        return kv->ops->put_if(kv->ctx, key, expect, expect_len, value, len, err);
    struct lk_buf cur = LK_BUF_INIT;
    int rc = lk_kv_get(kv, key, &cur, err);
    bool match = expect == NULL
                     ? rc == LK_ENOTFOUND
                     : rc == 0 && cur.len == expect_len &&
                           (expect_len == 0 || memcmp(cur.data, expect, expect_len) == 0);
    lk_buf_release(&cur);
    if (rc != 0 && rc != LK_ENOTFOUND)
        return rc;
    return match ? lk_kv_put(kv, key, value, len, err) : LK_ECONFLICT;
}

int lk_kv_del(const struct lk_kv *kv, const char *key, struct lk_buf *err)
{
    return kv->ops->del(kv->ctx, key, err);
}

int lk_kv_list(const struct lk_kv *kv, lk_kv_list_cb *cb, void *data, struct lk_buf *err)
{
    if (kv->ops->list == NULL) {
        if (err)
            lk_buf_adds(err, "Not implemented");
        return LK_EUNSUPPORTED;
    }
    return kv->ops->list(kv->ctx, cb, data, err);
}

int lk_kv_stamp(const struct lk_kv *kv, uint64_t *stamp)
{
    if (kv->ops->stamp == NULL)
        return LK_EUNSUPPORTED;
    return kv->ops->stamp(kv->ctx, stamp);
}

/* ---- in-memory kv ---------------------------------------------------------------- */

struct mem_kv {
    struct map map;
    uint64_t stamp; /* counts writes, from 1 */
};

static int mem_get(void *ctx, const char *key, struct lk_buf *value, struct lk_buf *err)
{
    (void)err;
    const struct entry *e = map_find(&((struct mem_kv *)ctx)->map, key);
    if (e == NULL)
        return LK_ENOTFOUND;
    lk_buf_reset(value);
    return lk_buf_add(value, e->raw, e->raw_len);
}

static int mem_exists(void *ctx, const char *key, bool *exists, struct lk_buf *err)
{
    (void)err;
    *exists = map_find(&((struct mem_kv *)ctx)->map, key) != NULL;
    return 0;
}

static int mem_put(void *ctx, const char *key, const char *value, size_t len, struct lk_buf *err)
{
    struct mem_kv *m = ctx;
    (void)err;
    entry_set_raw(map_upsert(&m->map, key), value, len);
    m->stamp++;
    return 0;
}

static int mem_del(void *ctx, const char *key, struct lk_buf *err)
{
    struct mem_kv *m = ctx;
    (void)err;
    map_remove(&m->map, key);
    m->stamp++;
    return 0;
}

static int mem_stamp(void *ctx, uint64_t *stamp)
{
    *stamp = ((const struct mem_kv *)ctx)->stamp;
    return 0;
}

static int mem_list(void *ctx, lk_kv_list_cb *cb, void *data, struct lk_buf *err)
{
    (void)err;
    const struct map *m = &((const struct mem_kv *)ctx)->map;
    for (size_t i = 0; i < m->n_buckets; i++) {
        for (const struct entry *e = m->buckets[i]; e != NULL; e = e->next) {
            int rc = cb(data, e->key, e->raw, e->raw_len);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static void mem_destroy(void *ctx)
{
    map_release(&((struct mem_kv *)ctx)->map);
    free(ctx);
}

static const struct lk_kv_ops memory_ops = {
    mem_get, mem_exists, mem_put, mem_del, mem_list, mem_destroy, mem_stamp, NULL,
};

void lk_kv_memory_init(struct lk_kv *kv)
{
    struct mem_kv *m = lk_xcalloc(1, sizeof(*m));
    m->stamp = 1;
    kv->ops = &memory_ops;
    kv->ctx = m;
}

size_t lk_kv_memory_count(const struct lk_kv *kv)
{
    LK_ASSERT(kv->ops == &memory_ops);
    return ((const struct mem_kv *)kv->ctx)->map.count;
}

/* ---- parsed-session cache -------------------------------------------------------- */

struct lk_session_cache {
    struct map map;
    size_t max_entries;
    size_t max_bytes, bytes; /* stored JSON of the cached sessions */
    struct lk_buf raw;       /* lk_store_get_session()'s copy of the stored bytes, reused */
};

/* A scratch copy that grew past this is freed after use. */
#define CACHE_RAW_KEEP (64 * 1024)

struct lk_session_cache *lk_session_cache_new(size_t max_entries, size_t max_bytes)
{
    struct lk_session_cache *c = lk_xcalloc(1, sizeof(*c));
    c->max_entries = max_entries ? max_entries : 1024;
    c->max_bytes = max_bytes ? max_bytes : LK_SESSION_CACHE_BYTES;
    lk_buf_init(&c->raw, 0);
    return c;
}

size_t lk_session_cache_size(const struct lk_session_cache *cache, size_t *bytes)
{
    *bytes = cache->bytes;
    return cache->map.count;
}

void lk_session_cache_free(struct lk_session_cache *cache)
{
    if (cache == NULL)
        return;
    map_release(&cache->map);
    lk_buf_release(&cache->raw);
    free(cache);
}

/* Removes name's entry, if any, with its bytes. */
static void cache_drop(struct lk_session_cache *cache, const char *name)
{
    const struct entry *e = map_find(&cache->map, name);
    if (e == NULL)
        return;
    cache->bytes -= e->raw_len;
    map_remove(&cache->map, name);
}

/* Returns a new reference to the cached session when its bytes match. */
static struct lk_session *cache_lookup(struct lk_session_cache *cache, const char *name,
                                       const struct lk_buf *raw)
{
    if (cache == NULL)
        return NULL;
    struct entry *e = map_find(&cache->map, name);
    if (e == NULL || e->raw_len != raw->len || memcmp(e->raw, raw->data, raw->len) != 0)
        return NULL;
    return lk_session_ref(e->session);
}

/* A new reference to the cached session when kv's stamp has not moved since
 * it was read: no read of the kv needed. */
static struct lk_session *cache_lookup_stamped(struct lk_session_cache *cache,
                                               const struct lk_kv *kv, const char *name,
                                               uint64_t stamp)
{
    if (cache == NULL || stamp == 0)
        return NULL;
    const struct entry *e = map_find(&cache->map, name);
    if (e == NULL || e->stamp != stamp || e->stamp_kv != kv->ctx)
        return NULL;
    return lk_session_ref(e->session);
}

/* stamp is kv's stamp taken before raw was read (0 when it has none). */
static void cache_store(struct lk_session_cache *cache, const struct lk_kv *kv, const char *name,
                        const struct lk_buf *raw, struct lk_session *s, uint64_t stamp)
{
    if (cache == NULL)
        return;
    struct entry *e = map_find(&cache->map, name);
    /* s is the entry's own session exactly when cache_lookup() found raw
     * unchanged; otherwise both are new and the entry is replaced. */
    if (e != NULL && e->session != s) {
        cache_drop(cache, name);
        e = NULL;
    }
    if (e == NULL) {
        /* Bounded in entries and in stored bytes: a parsed session (its
         * compiled regexes above all) costs a multiple of its JSON. */
        if (raw->len > cache->max_bytes)
            return;
        while (cache->map.count > 0 && (cache->map.count >= cache->max_entries ||
                                        cache->bytes + raw->len > cache->max_bytes))
            cache->bytes -= map_evict_one(&cache->map, fnv1a(name));
        e = map_upsert(&cache->map, name);
        entry_set_raw(e, raw->data, raw->len);
        e->session = lk_session_ref(s);
        cache->bytes += raw->len;
    }
    e->stamp_kv = kv->ctx;
    e->stamp = stamp;
}

/* ---- sessions over a kv ---------------------------------------------------------- */

static int wrap(int rc, const char *what, const struct lk_buf *why, struct lk_buf *err)
{
    if (rc != 0 && err)
        lk_buf_addf(err, "%s%s", what, why->data ? why->data : "");
    return rc;
}

/* The bytes stored under name into raw; LK_ENOTFOUND (no message) when none. */
static int get_stored(const struct lk_kv *kv, const char *name, struct lk_buf *raw,
                      struct lk_buf *err)
{
    struct lk_buf why = LK_BUF_INIT;
    lk_buf_reset(raw);
    int rc = lk_kv_get(kv, name, raw, &why);
    if (rc != 0 && rc != LK_ENOTFOUND)
        wrap(rc, "Could not get config: ", &why, err);
    lk_buf_release(&why);
    return rc;
}

static int parse_stored(const struct lk_buf *raw, struct lk_session **out, struct lk_buf *err)
{
    struct lk_buf why = LK_BUF_INIT;
    int rc = lk_session_from_json(raw->data, raw->len, out, &why) == 0
                 ? 0
                 : wrap(LK_EINVAL, "Invalid stored config: ", &why, err);
    lk_buf_release(&why);
    return rc;
}

int lk_store_get_session_str(const struct lk_kv *kv, struct lk_session_cache *cache,
                             struct lk_str name, struct lk_session **out, struct lk_buf *err)
{
    if (memchr(name.ptr, '\0', name.len) != NULL)
        return LK_ENOTFOUND;
    char small[64]; /* session names are short: no allocation per request */
    char *key = name.len < sizeof(small) ? small : lk_xmalloc(name.len + 1);
    memcpy(key, name.ptr, name.len);
    key[name.len] = '\0';
    int rc = lk_store_get_session(kv, cache, key, out, err);
    if (key != small)
        free(key);
    return rc;
}

int lk_store_get_session(const struct lk_kv *kv, struct lk_session_cache *cache, const char *name,
                         struct lk_session **out, struct lk_buf *err)
{
    /* The stamp is taken before the read: a write between the two leaves the
     * entry with an older stamp, so the next lookup reads again. */
    uint64_t stamp = 0;
    if (cache != NULL && lk_kv_stamp(kv, &stamp) != 0)
        stamp = 0;
    struct lk_session *s = cache_lookup_stamped(cache, kv, name, stamp);
    if (s != NULL) {
        *out = s;
        return 0;
    }
    /* With a cache, the stored bytes are copied into its scratch buffer:
     * no allocation per lookup (this runs for every proxied request). */
    struct lk_buf own = LK_BUF_INIT;
    struct lk_buf *raw = cache ? &cache->raw : &own;
    int rc = get_stored(kv, name, raw, err);
    if (rc != 0)
        goto out;
    s = cache_lookup(cache, name, raw);
    if (s == NULL) {
        rc = parse_stored(raw, &s, err);
        if (rc != 0) {
            if (cache)
                cache_drop(cache, name);
            goto out;
        }
    }
    cache_store(cache, kv, name, raw, s, stamp);
    *out = s;
out:
    lk_buf_release(&own);
    if (cache && cache->raw.cap > CACHE_RAW_KEEP)
        lk_buf_release(&cache->raw);
    return rc;
}

int lk_store_put_session(const struct lk_kv *kv, const char *name, const struct lk_session *s,
                         struct lk_buf *err)
{
    struct lk_buf json = LK_BUF_INIT;
    struct lk_buf why = LK_BUF_INIT;
    lk_session_to_json(s, &json);
    int rc =
        wrap(lk_kv_put(kv, name, json.data, json.len, &why), "Could not put config: ", &why, err);
    lk_buf_release(&why);
    lk_buf_release(&json);
    return rc;
}

/* How a session is written: over whatever is there, only where nothing is,
 * or only over the exact bytes read before (an atomic check-and-put, so two
 * workers sharing a store cannot both take a name, SPEC §2.5). */
enum put_mode {
    PUT_ALWAYS,
    PUT_IF_ABSENT,
    PUT_IF_UNCHANGED
};

/* LK_ECONFLICT without a message when the store changed since it was read. */
static int put_session_as(const struct lk_kv *kv, const char *name, const struct lk_session *s,
                          enum put_mode mode, const struct lk_buf *seen, struct lk_buf *err)
{
    struct lk_buf json = LK_BUF_INIT;
    struct lk_buf why = LK_BUF_INIT;
    lk_session_to_json(s, &json);
    int rc = mode == PUT_ALWAYS
                 ? lk_kv_put(kv, name, json.data, json.len, &why)
                 : lk_kv_put_if(kv, name, mode == PUT_IF_ABSENT ? NULL : lk_buf_str(seen).ptr,
                                mode == PUT_IF_ABSENT ? 0 : seen->len, json.data, json.len, &why);
    if (rc != LK_ECONFLICT)
        wrap(rc, "Could not put config: ", &why, err);
    lk_buf_release(&why);
    lk_buf_release(&json);
    return rc;
}

/* The session stored under name, parsed into *out, its bytes in raw;
 * LK_ENOTFOUND (no message) when there is none. */
static int read_session(const struct lk_kv *kv, const char *name, struct lk_buf *raw,
                        struct lk_session **out, struct lk_buf *err)
{
    int rc = get_stored(kv, name, raw, err);
    return rc == 0 ? parse_stored(raw, out, err) : rc;
}

/* Reads, checks and writes again when another writer came in between. */
#define STORE_ATTEMPTS 8

int lk_store_delete_session(const struct lk_kv *kv, const char *name, struct lk_buf *err)
{
    struct lk_buf why = LK_BUF_INIT;
    int rc = wrap(lk_kv_del(kv, name, &why), "Could not delete config: ", &why, err);
    lk_buf_release(&why);
    return rc;
}

static int key_exists(const struct lk_kv *kv, const char *key, bool *exists, struct lk_buf *err)
{
    struct lk_buf why = LK_BUF_INIT;
    int rc = wrap(lk_kv_exists(kv, key, exists, &why), "Could not get config: ", &why, err);
    lk_buf_release(&why);
    return rc;
}

/* Step 3 of the animal rule: draw six-char names while the candidate exists. */
static int settle_candidate(const struct lk_kv *kv, const struct lk_rng *rng, struct lk_buf *cand,
                            struct lk_buf *err)
{
    for (;;) {
        bool exists = false;
        int rc = key_exists(kv, cand->data, &exists, err);
        if (rc != 0 || !exists)
            return rc;
        lk_buf_reset(cand);
        lk_name_random_six_char(rng, cand);
    }
}

static int animal_name(const struct lk_kv *kv, const char *desired, const struct lk_rng *rng,
                       struct lk_buf *cand, struct lk_buf *err)
{
    bool exists = false;
    int rc;
    if (desired != NULL && desired[0] != '\0') {
        rc = key_exists(kv, desired, &exists, err);
        if (rc != 0)
            return rc;
        if (!exists) {
            lk_buf_adds(cand, desired);
            return 0;
        }
    }
    for (int i = 0; i < 20; i++) {
        lk_buf_reset(cand);
        lk_name_random_animal(rng, cand);
        rc = key_exists(kv, cand->data, &exists, err);
        if (rc != 0)
            return rc;
        if (!exists)
            break;
    }
    if (exists) {
        lk_buf_reset(cand);
        lk_name_random_six_char(rng, cand);
    }
    return settle_candidate(kv, rng, cand, err);
}

int lk_new_session_name(const struct lk_kv *kv, enum lk_name_kind kind, const char *desired,
                        const struct lk_session *s, const struct lk_rng *rng,
                        struct lk_buf *name_out, struct lk_buf *err)
{
    if (kind == LK_NAME_SIX_CHAR) {
        lk_name_hash(s, name_out);
        return 0;
    }
    struct lk_buf cand = LK_BUF_INIT;
    int rc = animal_name(kv, desired, rng, &cand, err);
    if (rc == 0)
        lk_buf_addstr(name_out, lk_buf_str(&cand));
    lk_buf_release(&cand);
    return rc;
}

/* Session tokens are secrets: compare them in constant time. */
static bool same_token(const char *a, const char *b)
{
    return a != NULL && b != NULL && lk_mem_ct_eq(a, strlen(a), b, strlen(b));
}

/* After a write of the owner's session under name lost its compare-and-set:
 * true when the name still holds a session of that owner's token. Another
 * write of the same owner came in between and overwrote ours, as it would
 * have had ours come first (SPEC §2.5: the owner's writes overwrite), so
 * ours counts as done instead of trying again: owners writing one name at
 * once from several workers never wear out the attempts. */
static bool owner_wrote_in_between(const struct lk_kv *kv, const char *name, const char *token,
                                   struct lk_buf *raw)
{
    struct lk_session *now = NULL;
    struct lk_buf why = LK_BUF_INIT;
    bool same =
        read_session(kv, name, raw, &now, &why) == 0 && same_token(now->session_token, token);
    lk_session_free(now);
    lk_buf_release(&why);
    return same;
}

int lk_store_session(const struct lk_kv *kv, const struct lk_session *s, enum lk_name_kind kind,
                     const char *desired, const struct lk_rng *rng, struct lk_buf *name_out,
                     struct lk_buf *err)
{
    struct lk_buf name = LK_BUF_INIT;
    struct lk_buf raw = LK_BUF_INIT;
    int rc = LK_ECONFLICT;
    for (int attempt = 0; attempt < STORE_ATTEMPTS && rc == LK_ECONFLICT; attempt++) {
        struct lk_session *existing = NULL;
        enum put_mode mode = PUT_ALWAYS;
        lk_buf_reset(&name);
        rc = 0;
        /* SPEC §2.5 step 1 + §2.7: a missing name is no error, but a value
         * that cannot be read or parsed fails the lookup ("Invalid stored
         * config: {e}") rather than silently allocating another name. */
        if (desired != NULL && desired[0] != '\0') {
            rc = read_session(kv, desired, &raw, &existing, err);
            if (rc == LK_ENOTFOUND)
                rc = 0;
        }
        if (rc == 0 && existing != NULL && same_token(existing->session_token, s->session_token)) {
            lk_buf_adds(&name, desired);
            mode = PUT_IF_UNCHANGED;
        } else if (rc == 0) {
            rc = lk_new_session_name(kv, kind, desired, s, rng, &name, err);
            /* A six-char name is the hash of the session: the same session
             * under it again is the same value (SPEC §2.6). */
            mode = kind == LK_NAME_SIX_CHAR ? PUT_ALWAYS : PUT_IF_ABSENT;
        }
        if (rc == 0)
            rc = put_session_as(kv, name.data, s, mode, &raw, err);
        if (rc == LK_ECONFLICT && mode == PUT_IF_UNCHANGED &&
            owner_wrote_in_between(kv, name.data, s->session_token, &raw))
            rc = 0;
        lk_session_free(existing);
    }
    if (rc == LK_ECONFLICT && err)
        lk_buf_adds(err, "Could not put config: the name kept changing under this write");
    if (rc == 0)
        lk_buf_addstr(name_out, lk_buf_str(&name));
    lk_buf_release(&raw);
    lk_buf_release(&name);
    return rc;
}

int lk_strict_store_session(const struct lk_kv *kv, const char *name, const struct lk_session *s,
                            struct lk_buf *err)
{
    if (name == NULL || name[0] == '\0') {
        if (err)
            lk_buf_adds(err, "Session name is empty");
        return LK_EINVAL;
    }
    struct lk_buf raw = LK_BUF_INIT;
    int rc = LK_ECONFLICT;
    bool taken = false;
    for (int attempt = 0; attempt < STORE_ATTEMPTS && rc == LK_ECONFLICT && !taken; attempt++) {
        struct lk_session *existing = NULL;
        rc = read_session(kv, name, &raw, &existing, err);
        if (rc == 0 && !same_token(existing->session_token, s->session_token)) {
            taken = true;
            rc = LK_ECONFLICT;
        } else if (rc == 0 || rc == LK_ENOTFOUND) {
            rc = put_session_as(kv, name, s, rc == 0 ? PUT_IF_UNCHANGED : PUT_IF_ABSENT, &raw, err);
            if (rc == LK_ECONFLICT && owner_wrote_in_between(kv, name, s->session_token, &raw))
                rc = 0;
        }
        lk_session_free(existing);
    }
    /* Taken by another token, also when that came in between the read and
     * the write (the next read saw it). */
    if (rc == LK_ECONFLICT && err)
        lk_buf_adds(err, "Session with name already exists");
    lk_buf_release(&raw);
    return rc;
}
