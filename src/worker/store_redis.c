/*
 * store_redis.c - the "redis://HOST:PORT[/DB]" worker store, for several
 * workers sharing sessions.
 *
 * Keys: "session:{name}" (SET ... EX 604800, so Redis expires them itself),
 * "tunnel:{name}" (no expiry) and the registry of tunnel holders
 * "tunnel-holder:{session}" (SET ... PX ttl; deleted with a compare-and-
 * delete EVAL; store.h). Calls are synchronous hiredis commands
 * with WORKER_REDIS_TIMEOUT_MS for connect and each reply; they run on the
 * loop thread, which is acceptable on a local network and documented in
 * docs/worker.md. A failed call drops the connection; the next call (and one
 * immediate retry of the failed call) reconnects, so a restarted Redis is
 * picked up without restarting the worker. Every failure is a store error,
 * never a crash.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/alloc.h"
#include "core/err.h"
#include "worker/store.h"

struct rd_db {
    redisContext *c; /* NULL while disconnected */
    char *host;
    int port, db;
};

struct rd_view {
    struct rd_db *db; /* borrowed from the store */
    const char *prefix;
    bool ttl;
};

static void rd_drop(struct rd_db *d)
{
    if (d->c != NULL)
        redisFree(d->c);
    d->c = NULL;
}

static int rd_connect(struct rd_db *d, struct lk_buf *err)
{
    struct timeval tv = { WORKER_REDIS_TIMEOUT_MS / 1000, (WORKER_REDIS_TIMEOUT_MS % 1000) * 1000 };
    if (d->c != NULL)
        return 0;
    d->c = redisConnectWithTimeout(d->host, d->port, tv);
    if (d->c == NULL || d->c->err) {
        if (err)
            lk_buf_addf(err, "redis %s:%d: %s", d->host, d->port,
                        d->c ? d->c->errstr : "cannot allocate context");
        rd_drop(d);
        return LK_ESTORE;
    }
    redisSetTimeout(d->c, tv);
    if (d->db != 0) {
        redisReply *r = redisCommand(d->c, "SELECT %d", d->db);
        bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (r != NULL)
            freeReplyObject(r);
        if (!ok) {
            if (err)
                lk_buf_addf(err, "redis %s:%d: SELECT %d failed", d->host, d->port, d->db);
            rd_drop(d);
            return LK_ESTORE;
        }
    }
    return 0;
}

/* Runs a command (argv form); on a connection failure reconnects and retries
 * once. Returns the reply (caller frees) or NULL with err filled. Error
 * replies are returned as NULL too. */
static redisReply *rd_command(struct rd_db *d, int argc, const char **argv, const size_t *lens,
                              struct lk_buf *err)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        struct lk_buf why = LK_BUF_INIT;
        if (rd_connect(d, &why) != 0) {
            if (attempt == 1 && err)
                lk_buf_addstr(err, lk_buf_str(&why));
            lk_buf_release(&why);
            continue;
        }
        lk_buf_release(&why);
        redisReply *r = redisCommandArgv(d->c, argc, argv, lens);
        if (r == NULL) {
            /* A reply that did not come within the timeout: the server is
             * there but stalled, and a second try would wait as long again.
             * Only a connection that failed (a restarted server) is tried
             * once more. */
            int e = errno;
            bool timed_out = d->c->err == REDIS_ERR_IO && (e == EAGAIN || e == EWOULDBLOCK);
            if ((attempt == 1 || timed_out) && err)
                lk_buf_addf(err, "redis %s:%d: %s", d->host, d->port, d->c->errstr);
            rd_drop(d);
            if (timed_out)
                return NULL;
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            if (err)
                lk_buf_addf(err, "redis: %s", r->str);
            freeReplyObject(r);
            return NULL;
        }
        return r;
    }
    return NULL;
}

static void rd_key(const struct rd_view *v, const char *key, struct lk_buf *out)
{
    lk_buf_adds(out, v->prefix);
    lk_buf_adds(out, key);
}

/* One-key command: argv = {cmd, prefixed key}. */
static redisReply *rd_key_command(struct rd_view *v, const char *cmd, const char *key,
                                  struct lk_buf *err)
{
    struct lk_buf k = LK_BUF_INIT;
    rd_key(v, key, &k);
    const char *argv[2] = { cmd, k.data };
    size_t lens[2] = { strlen(cmd), k.len };
    redisReply *r = rd_command(v->db, 2, argv, lens, err);
    lk_buf_release(&k);
    return r;
}

static int rd_get(void *ctx, const char *key, struct lk_buf *value, struct lk_buf *err)
{
    redisReply *r = rd_key_command(ctx, "GET", key, err);
    int rc = 0;
    if (r == NULL)
        return LK_ESTORE;
    if (r->type == REDIS_REPLY_NIL) {
        rc = LK_ENOTFOUND;
    } else if (r->type == REDIS_REPLY_STRING) {
        lk_buf_reset(value);
        rc = lk_buf_add(value, r->str, r->len);
    } else {
        if (err)
            lk_buf_adds(err, "redis: unexpected reply to GET");
        rc = LK_ESTORE;
    }
    freeReplyObject(r);
    return rc;
}

static int rd_exists(void *ctx, const char *key, bool *exists, struct lk_buf *err)
{
    redisReply *r = rd_key_command(ctx, "EXISTS", key, err);
    if (r == NULL)
        return LK_ESTORE;
    *exists = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    return 0;
}

static int rd_put(void *ctx, const char *key, const char *value, size_t len, struct lk_buf *err)
{
    struct rd_view *v = ctx;
    struct lk_buf k = LK_BUF_INIT;
    char ttl[32];
    rd_key(v, key, &k);
    int n = snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(WORKER_SESSION_TTL_MS / 1000));
    LK_ASSERT(n > 0 && (size_t)n < sizeof(ttl));
    const char *argv[5] = { "SET", k.data, value, "EX", ttl };
    size_t lens[5] = { 3, k.len, len, 2, (size_t)n };
    redisReply *r = rd_command(v->db, v->ttl ? 5 : 3, argv, lens, err);
    lk_buf_release(&k);
    if (r == NULL)
        return LK_ESTORE;
    freeReplyObject(r);
    return 0;
}

/* A script runs atomically on the server: workers sharing it cannot both
 * take a key. ARGV: mode ("0": only when absent, "1": only over ARGV[2]),
 * expected value, new value, TTL in seconds ("0": none). */
static int rd_put_if(void *ctx, const char *key, const char *expect, size_t expect_len,
                     const char *value, size_t len, struct lk_buf *err)
{
    static const char script[] = "local v = redis.call('GET', KEYS[1]) "
                                 "if ARGV[1] == '0' then if v then return 0 end "
                                 "elseif v ~= ARGV[2] then return 0 end "
                                 "if ARGV[4] == '0' then redis.call('SET', KEYS[1], ARGV[3]) "
                                 "else redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4]) end "
                                 "return 1";
    struct rd_view *v = ctx;
    struct lk_buf k = LK_BUF_INIT;
    char ttl[32];
    rd_key(v, key, &k);
    int n = snprintf(ttl, sizeof(ttl), "%llu",
                     v->ttl ? (unsigned long long)(WORKER_SESSION_TTL_MS / 1000) : 0ULL);
    LK_ASSERT(n > 0 && (size_t)n < sizeof(ttl));
    const char *argv[8] = { "EVAL", script, "1", k.data, expect ? "1" : "0", expect ? expect : "",
                            value,  ttl };
    size_t lens[8] = {
        4, sizeof(script) - 1, 1, k.len, 1, expect ? expect_len : 0, len, (size_t)n
    };
    redisReply *r = rd_command(v->db, 8, argv, lens, err);
    lk_buf_release(&k);
    if (r == NULL)
        return LK_ESTORE;
    int rc = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 0 : LK_ECONFLICT;
    freeReplyObject(r);
    return rc;
}

static int rd_del(void *ctx, const char *key, struct lk_buf *err)
{
    redisReply *r = rd_key_command(ctx, "DEL", key, err);
    if (r == NULL)
        return LK_ESTORE;
    freeReplyObject(r);
    return 0;
}

/* Calls cb for one SCAN batch of keys (each read with GET). */
static int rd_list_batch(struct rd_view *v, const redisReply *keys, lk_kv_list_cb *cb, void *data,
                         struct lk_buf *err)
{
    size_t plen = strlen(v->prefix);
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        if (k->type != REDIS_REPLY_STRING || k->len < plen)
            continue;
        struct lk_buf value = LK_BUF_INIT;
        int rc = rd_get(v, k->str + plen, &value, err);
        if (rc == 0)
            rc = cb(data, k->str + plen, value.data, value.len);
        lk_buf_release(&value);
        if (rc == LK_ENOTFOUND)
            continue; /* expired between SCAN and GET */
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int rd_list(void *ctx, lk_kv_list_cb *cb, void *data, struct lk_buf *err)
{
    struct rd_view *v = ctx;
    struct lk_buf cursor = LK_BUF_INIT;
    struct lk_buf pattern = LK_BUF_INIT;
    int rc = 0;
    lk_buf_adds(&cursor, "0");
    lk_buf_addf(&pattern, "%s*", v->prefix);
    do {
        const char *argv[6] = { "SCAN", cursor.data, "MATCH", pattern.data, "COUNT", "200" };
        size_t lens[6] = { 4, cursor.len, 5, pattern.len, 5, 3 };
        redisReply *r = rd_command(v->db, 6, argv, lens, err);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            if (r != NULL && err)
                lk_buf_adds(err, "redis: unexpected reply to SCAN");
            if (r != NULL)
                freeReplyObject(r);
            rc = LK_ESTORE;
            break;
        }
        lk_buf_reset(&cursor);
        lk_buf_add(&cursor, r->element[0]->str, r->element[0]->len);
        rc = rd_list_batch(v, r->element[1], cb, data, err);
        freeReplyObject(r);
    } while (rc == 0 && strcmp(cursor.data, "0") != 0);
    lk_buf_release(&pattern);
    lk_buf_release(&cursor);
    return rc;
}

/* ---- registry of tunnel holders (store.h) --------------------------------- */

static int rd_reg_put(void *backend, const char *key, const char *value, uint64_t ttl_ms,
                      struct lk_buf *err)
{
    char ttl[32];
    int n = snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(ttl_ms ? ttl_ms : 1));
    LK_ASSERT(n > 0 && (size_t)n < sizeof(ttl));
    const char *argv[5] = { "SET", key, value, "PX", ttl };
    size_t lens[5] = { 3, strlen(key), strlen(value), 2, (size_t)n };
    redisReply *r = rd_command(backend, 5, argv, lens, err);
    if (r == NULL)
        return LK_ESTORE;
    freeReplyObject(r);
    return 0;
}

static int rd_reg_refresh(void *backend, const char *key, const char *value, uint64_t ttl_ms,
                          struct lk_buf *err)
{
    static const char script[] = "local v = redis.call('GET', KEYS[1]) "
                                 "if v == false or v == ARGV[1] then "
                                 "return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
                                 "else return 0 end";
    char ttl[32];
    int n = snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(ttl_ms ? ttl_ms : 1));
    LK_ASSERT(n > 0 && (size_t)n < sizeof(ttl));
    const char *argv[6] = { "EVAL", script, "1", key, value, ttl };
    size_t lens[6] = { 4, sizeof(script) - 1, 1, strlen(key), strlen(value), (size_t)n };
    redisReply *r = rd_command(backend, 6, argv, lens, err);
    if (r == NULL)
        return LK_ESTORE;
    freeReplyObject(r);
    return 0;
}

static int rd_reg_get(void *backend, const char *key, struct lk_buf *value, struct lk_buf *err)
{
    struct rd_view v = { backend, "", false };
    return rd_get(&v, key, value, err);
}

static int rd_reg_del_if(void *backend, const char *key, const char *value, struct lk_buf *err)
{
    static const char script[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                 "return redis.call('DEL', KEYS[1]) else return 0 end";
    const char *argv[5] = { "EVAL", script, "1", key, value };
    size_t lens[5] = { 4, sizeof(script) - 1, 1, strlen(key), strlen(value) };
    redisReply *r = rd_command(backend, 5, argv, lens, err);
    if (r == NULL)
        return LK_ESTORE;
    freeReplyObject(r);
    return 0;
}

static void rd_view_destroy(void *ctx)
{
    free(ctx);
}

static const struct lk_kv_ops redis_ops = {
    rd_get,    rd_exists,       rd_put, rd_del,
    rd_list,   rd_view_destroy, NULL, /* no stamp: other workers write without telling this one */
    rd_put_if,
};

static void redis_close(void *backend)
{
    struct rd_db *d = backend;
    if (d == NULL)
        return;
    rd_drop(d);
    free(d->host);
    free(d);
}

static struct lk_kv rd_view_new(struct rd_db *d, const char *prefix, bool ttl)
{
    struct rd_view *v = lk_xcalloc(1, sizeof(*v));
    v->db = d;
    v->prefix = prefix;
    v->ttl = ttl;
    return (struct lk_kv){ &redis_ops, v };
}

int worker_store_open_redis(struct worker_store *st, const char *host, int port, int db,
                            worker_clock_fn *clock, void *clock_ctx, struct lk_buf *err)
{
    (void)clock; /* Redis keeps time itself (EX). */
    (void)clock_ctx;
    struct rd_db *d = lk_xcalloc(1, sizeof(*d));
    d->host = lk_xstrdup(host);
    d->port = port;
    d->db = db;
    st->backend = d;
    st->close = redis_close;
    int rc = rd_connect(d, err);
    if (rc != 0)
        return rc;
    st->sessions = rd_view_new(d, "session:", true);
    st->tunnels = rd_view_new(d, "tunnel:", false);
    st->reg_put = rd_reg_put;
    st->reg_get = rd_reg_get;
    st->reg_del_if = rd_reg_del_if;
    st->reg_refresh = rd_reg_refresh;
    return 0;
}
