/*
 * store.c - picks the worker's store backend from its spec string and holds
 * what the backends share (the clock, the purge entry point, the stamp of
 * expiring entries).
 */
#include "worker/store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/err.h"

void worker_stamp_init(struct worker_stamp *s, uint64_t max_age_ms)
{
    *s = (struct worker_stamp){ .stamp = 1, .next_expiry = UINT64_MAX, .max_age_ms = max_age_ms };
}

void worker_stamp_bump(struct worker_stamp *s)
{
    s->stamp++;
    s->next_expiry = UINT64_MAX;
    s->timed = false; /* the next worker_stamp_at() starts the clock */
}

void worker_stamp_saw_expiry(struct worker_stamp *s, uint64_t expires_ms)
{
    if (expires_ms < s->next_expiry)
        s->next_expiry = expires_ms;
}

uint64_t worker_stamp_at(struct worker_stamp *s, uint64_t now_ms)
{
    /* A row is live while expires_at > now (store_sqlite.c, store_memory.c). */
    if (now_ms >= s->next_expiry)
        worker_stamp_bump(s);
    else if (s->max_age_ms > 0 && s->timed &&
             (now_ms < s->moved_at || now_ms - s->moved_at >= s->max_age_ms))
        worker_stamp_bump(s);
    if (!s->timed) {
        s->moved_at = now_ms;
        s->timed = true;
    }
    return s->stamp;
}

uint64_t worker_clock_real(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Parses "HOST:PORT[/DB]" (after "redis://"); HOST may be "[v6]". */
static int parse_redis(const char *s, char *host, size_t host_len, int *port, int *db)
{
    const char *colon = strrchr(s, ':');
    const char *slash = strchr(s, '/');
    uint64_t v = 0;
    if (colon == NULL || colon == s || (slash != NULL && slash < colon))
        return LK_EINVAL;
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_len)
        return LK_EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    const char *pend = slash ? slash : colon + strlen(colon);
    if (lk_str_to_u64((struct lk_str){ colon + 1, (size_t)(pend - colon - 1) }, 65535, &v) != 0 ||
        v == 0)
        return LK_EINVAL;
    *port = (int)v;
    *db = 0;
    if (slash != NULL && slash[1] != '\0') {
        if (lk_str_to_u64(lk_str_c(slash + 1), 1000000, &v) != 0)
            return LK_EINVAL;
        *db = (int)v;
    }
    return 0;
}

int worker_store_open(const char *spec, worker_clock_fn *clock, void *clock_ctx,
                      struct worker_store **out, struct lk_buf *err)
{
    struct worker_store *st = lk_xcalloc(1, sizeof(*st));
    int rc = 0;
    if (clock == NULL)
        clock = worker_clock_real;
    if (strcmp(spec, "memory") == 0) {
        worker_store_open_memory(st, clock, clock_ctx);
    } else if (strncmp(spec, "sqlite:", 7) == 0 && spec[7] != '\0') {
        rc = worker_store_open_sqlite(st, spec + 7, clock, clock_ctx, err);
    } else if (strncmp(spec, "redis://", 8) == 0) {
        char host[256];
        int port = 0;
        int db = 0;
        rc = parse_redis(spec + 8, host, sizeof(host), &port, &db);
        if (rc == 0)
            rc = worker_store_open_redis(st, host, port, db, clock, clock_ctx, err);
        else
            lk_buf_addf(err, "invalid redis store '%s' (expected redis://HOST:PORT[/DB])", spec);
    } else {
        lk_buf_addf(err,
                    "invalid store '%s' (expected memory, sqlite:PATH or "
                    "redis://HOST:PORT[/DB])",
                    spec);
        rc = LK_EINVAL;
    }
    if (rc != 0) {
        worker_store_free(st);
        return rc;
    }
    *out = st;
    return 0;
}

int worker_store_change_fd(const struct worker_store *st)
{
    return st->change_fd != NULL ? st->change_fd(st->backend) : -1;
}

bool worker_store_changed(struct worker_store *st)
{
    return st->changed != NULL && st->changed(st->backend);
}

bool worker_store_take_busy(struct worker_store *st)
{
    return st->take_busy != NULL && st->take_busy(st->backend);
}

int worker_store_purge(struct worker_store *st, struct lk_buf *err)
{
    return st->purge ? st->purge(st, err) : 0;
}

void worker_store_free(struct worker_store *st)
{
    if (st == NULL)
        return;
    lk_kv_free(&st->sessions);
    lk_kv_free(&st->tunnels);
    if (st->close != NULL)
        st->close(st->backend);
    free(st);
}

bool worker_store_is_shared(const struct worker_store *st)
{
    return st->reg_put != NULL;
}

int worker_store_reg_put(struct worker_store *st, const char *key, const char *value,
                         uint64_t ttl_ms, struct lk_buf *err)
{
    return st->reg_put ? st->reg_put(st->backend, key, value, ttl_ms, err) : 0;
}

int worker_store_reg_refresh(struct worker_store *st, const char *key, const char *value,
                             uint64_t ttl_ms, struct lk_buf *err)
{
    return st->reg_refresh ? st->reg_refresh(st->backend, key, value, ttl_ms, err) : 0;
}

int worker_store_reg_get(struct worker_store *st, const char *key, struct lk_buf *value,
                         struct lk_buf *err)
{
    return st->reg_get ? st->reg_get(st->backend, key, value, err) : LK_ENOTFOUND;
}

int worker_store_reg_del_if(struct worker_store *st, const char *key, const char *value,
                            struct lk_buf *err)
{
    return st->reg_del_if ? st->reg_del_if(st->backend, key, value, err) : 0;
}
