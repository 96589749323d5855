/*
 * store_memory.c - the "memory" worker store: two lk_kv_memory_init() maps.
 *
 * The sessions view wraps its map to add the 7-day expiry: each stored value
 * is prefixed with "{expires_at_ms}\n", which get/exists/list check and strip,
 * and its stamp moves on writes and expiries (struct worker_stamp).
 * The tunnels view is a plain memory map (no expiry).
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "worker/store.h"

struct ttl_kv {
    struct lk_kv inner; /* owned */
    worker_clock_fn *clock;
    void *clock_ctx;
    struct worker_stamp stamp;
};

/* Splits a stored "{expires}\n{value}"; false when malformed. */
static bool split_value(const char *raw, size_t len, uint64_t *expires, const char **value)
{
    const char *nl = memchr(raw, '\n', len);
    if (nl == NULL)
        return false;
    if (lk_str_to_u64((struct lk_str){ raw, (size_t)(nl - raw) }, UINT64_MAX, expires) != 0)
        return false;
    *value = nl + 1;
    return true;
}

/* Reads key; LK_ENOTFOUND when missing or expired (an expired entry is
 * deleted on the way). On success *value points into raw. */
static int ttl_read(struct ttl_kv *t, const char *key, struct lk_buf *raw, const char **value,
                    struct lk_buf *err)
{
    uint64_t expires = 0;
    int rc = lk_kv_get(&t->inner, key, raw, err);
    if (rc != 0)
        return rc;
    if (!split_value(raw->data, raw->len, &expires, value) || expires <= t->clock(t->clock_ctx)) {
        lk_kv_del(&t->inner, key, NULL);
        return LK_ENOTFOUND;
    }
    worker_stamp_saw_expiry(&t->stamp, expires);
    return 0;
}

static int ttl_get(void *ctx, const char *key, struct lk_buf *value, struct lk_buf *err)
{
    struct lk_buf raw = LK_BUF_INIT;
    const char *v = NULL;
    int rc = ttl_read(ctx, key, &raw, &v, err);
    if (rc == 0) {
        lk_buf_reset(value);
        rc = lk_buf_add(value, v, raw.len - (size_t)(v - raw.data));
    }
    lk_buf_release(&raw);
    return rc;
}

static int ttl_exists(void *ctx, const char *key, bool *exists, struct lk_buf *err)
{
    struct lk_buf raw = LK_BUF_INIT;
    const char *v = NULL;
    int rc = ttl_read(ctx, key, &raw, &v, err);
    lk_buf_release(&raw);
    *exists = rc == 0;
    return rc == LK_ENOTFOUND ? 0 : rc;
}

static int ttl_put(void *ctx, const char *key, const char *value, size_t len, struct lk_buf *err)
{
    struct ttl_kv *t = ctx;
    struct lk_buf raw = LK_BUF_INIT;
    lk_buf_addf(&raw, "%llu\n",
                (unsigned long long)(t->clock(t->clock_ctx) + WORKER_SESSION_TTL_MS));
    lk_buf_add(&raw, value, len);
    int rc = lk_kv_put(&t->inner, key, raw.data, raw.len, err);
    lk_buf_release(&raw);
    worker_stamp_bump(&t->stamp);
    return rc;
}

static int ttl_del(void *ctx, const char *key, struct lk_buf *err)
{
    struct ttl_kv *t = ctx;
    worker_stamp_bump(&t->stamp);
    return lk_kv_del(&t->inner, key, err);
}

static int ttl_stamp(void *ctx, uint64_t *stamp)
{
    struct ttl_kv *t = ctx;
    *stamp = worker_stamp_at(&t->stamp, t->clock(t->clock_ctx));
    return 0;
}

struct list_state {
    struct ttl_kv *t;
    uint64_t now;
    lk_kv_list_cb *cb;
    void *data;
};

static int ttl_list_one(void *data, const char *key, const char *value, size_t value_len)
{
    struct list_state *ls = data;
    uint64_t expires = 0;
    const char *v = NULL;
    if (!split_value(value, value_len, &expires, &v) || expires <= ls->now)
        return 0;
    return ls->cb(ls->data, key, v, value_len - (size_t)(v - value));
}

static int ttl_list(void *ctx, lk_kv_list_cb *cb, void *data, struct lk_buf *err)
{
    struct ttl_kv *t = ctx;
    struct list_state ls = { t, t->clock(t->clock_ctx), cb, data };
    return lk_kv_list(&t->inner, ttl_list_one, &ls, err);
}

static void ttl_destroy(void *ctx)
{
    struct ttl_kv *t = ctx;
    lk_kv_free(&t->inner);
    free(t);
}

static const struct lk_kv_ops ttl_ops = {
    ttl_get, ttl_exists, ttl_put, ttl_del, ttl_list, ttl_destroy, ttl_stamp, NULL,
};

/* Collects the keys of expired entries (deleted after the listing). */
struct purge_state {
    uint64_t now;
    char **keys;
    size_t n, cap;
};

static int collect_expired(void *data, const char *key, const char *value, size_t value_len)
{
    struct purge_state *ps = data;
    uint64_t expires = 0;
    const char *v = NULL;
    if (split_value(value, value_len, &expires, &v) && expires > ps->now)
        return 0;
    LK_GROW(ps->keys, ps->cap, ps->n + 1);
    ps->keys[ps->n++] = lk_xstrdup(key);
    return 0;
}

static int memory_purge(struct worker_store *st, struct lk_buf *err)
{
    struct ttl_kv *t = st->sessions.ctx;
    struct purge_state ps = { t->clock(t->clock_ctx), NULL, 0, 0 };
    int rc = lk_kv_list(&t->inner, collect_expired, &ps, err);
    for (size_t i = 0; i < ps.n; i++) {
        if (rc == 0)
            rc = lk_kv_del(&t->inner, ps.keys[i], err);
        free(ps.keys[i]);
    }
    free(ps.keys);
    return rc;
}

void worker_store_open_memory(struct worker_store *st, worker_clock_fn *clock, void *clock_ctx)
{
    struct ttl_kv *t = lk_xcalloc(1, sizeof(*t));
    lk_kv_memory_init(&t->inner);
    t->clock = clock;
    t->clock_ctx = clock_ctx;
    worker_stamp_init(&t->stamp, 0); /* every change is ours */
    st->sessions.ops = &ttl_ops;
    st->sessions.ctx = t;
    lk_kv_memory_init(&st->tunnels);
    st->purge = memory_purge;
}
