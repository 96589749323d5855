/*
 * store.h - the worker's persistent stores (DESIGN §3, §8; SPEC §2.7, §4.8).
 *
 * A worker keeps two key spaces, each exposed as a struct lk_kv (core/store.h)
 * so the core's session helpers (lk_store_get_session, lk_strict_store_session,
 * ...) run unchanged on top of them:
 *
 *   sessions  key = session name, value = Session JSON (SPEC §2.1). Every put
 *             sets an expiry 7 days (WORKER_SESSION_TTL_MS) after the put, like
 *             the original's KV TTL; expired entries are never returned by
 *             get/exists/list and are purged by worker_store_purge().
 *   tunnels   key = tunnel name ({prefix}{session}), value = TunnelData JSON
 *             (SPEC §2.4 + "provider"). No expiry; stale records are removed
 *             by the tunnel cleanup (tunnels.h).
 *
 * Backends, chosen by a spec string:
 *   "memory"                  lk_kv_memory_init() maps, lost on exit;
 *   "sqlite:PATH"             one SQLite file (WAL, busy timeout), tables
 *                             sessions/tunnels(key TEXT PRIMARY KEY, value TEXT,
 *                             expires_at INTEGER); survives restarts; a call
 *                             finding another process's lock fails after a
 *                             short busy timeout (worker_store_take_busy);
 *   "redis://HOST:PORT[/DB]"  hiredis, keys "session:NAME" (SET ... EX) and
 *                             "tunnel:NAME"; synchronous calls with a short
 *                             timeout, reconnecting on failure.
 *
 * Errors of every kv call follow core/store.h: LK_ESTORE with a one-line
 * reason appended to err; never a crash when the backend goes away.
 *
 * Stamps (core/store.h), which let the session cache skip the read on every
 * proxied request: memory has them (one process, every write is its own);
 * sqlite has them while inotify watches its files (another process's commit
 * writes the WAL file, and one read() per stamp drains those events; without
 * inotify every lookup reads); redis has none (shared over the network).
 *
 * The clock is injected (now_ms) so tests can move time. Loop thread only
 * (calls block for at most the backend's timeout: WORKER_SQLITE_BUSY_MS for
 * SQLite, whose lock-refused calls are retried by the API from a timer, and
 * WORKER_REDIS_TIMEOUT_MS for Redis).
 */
#ifndef LK_WORKER_STORE_H
#define LK_WORKER_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/store.h"

/* Sessions expire this long after their last upsert (SPEC §2.7). */
#define WORKER_SESSION_TTL_MS 604800000ULL

/* Redis connect and command timeout. */
#define WORKER_REDIS_TIMEOUT_MS 2000

/* SQLite busy timeout (another process holding the write lock): how long
 * one call may block the loop. Short: a write that still finds the lock
 * fails with worker_store_take_busy() true and the API retries it later
 * from a timer (api.c), up to WORKER_SQLITE_RETRY_MS in total. */
#define WORKER_SQLITE_BUSY_MS 20

/* How long a store write refused as busy is retried before the request is
 * answered 500 ("... database is locked"). */
#define WORKER_SQLITE_RETRY_MS 5000

/* Returns the current time in Unix epoch milliseconds. */
typedef uint64_t worker_clock_fn(void *ctx);

/*
 * The stamp (core/store.h) of a view whose entries expire: it moves on every
 * write the backend learns of (worker_stamp_bump), once the earliest expiry
 * among the values read under the current stamp comes due (so a session
 * cached under a stamp never outlives its row) and, with a non-zero
 * max_age_ms, at least that often.
 */
struct worker_stamp {
    uint64_t stamp;       /* from 1 */
    uint64_t next_expiry; /* earliest expires_at read since the last move */
    uint64_t max_age_ms;  /* 0: no limit */
    uint64_t moved_at;    /* clock time of the first use since the last move */
    bool timed;           /* moved_at is set */
};

void worker_stamp_init(struct worker_stamp *s, uint64_t max_age_ms);
void worker_stamp_bump(struct worker_stamp *s);
/* A value that expires at expires_ms was read under the current stamp. */
void worker_stamp_saw_expiry(struct worker_stamp *s, uint64_t expires_ms);
/* The stamp at now_ms (moved first when a read value has expired or the
 * stamp is max_age_ms old). */
uint64_t worker_stamp_at(struct worker_stamp *s, uint64_t now_ms);

struct worker_store {
    struct lk_kv sessions; /* owned; 7-day expiry per put */
    struct lk_kv tunnels;  /* owned; no expiry */
    /* private: backend-specific purge of expired sessions (may be NULL) */
    int (*purge)(struct worker_store *st, struct lk_buf *err);
    /* private: frees backend after both views are gone (may be NULL) */
    void (*close)(void *backend);
    void *backend; /* private, shared by both views */
    /* private: the registry of tunnel holders; NULL for single-worker
     * backends (memory, sqlite). See worker_store_reg_put(). */
    int (*reg_put)(void *backend, const char *key, const char *value, uint64_t ttl_ms,
                   struct lk_buf *err);
    int (*reg_get)(void *backend, const char *key, struct lk_buf *value, struct lk_buf *err);
    int (*reg_del_if)(void *backend, const char *key, const char *value, struct lk_buf *err);
    int (*reg_refresh)(void *backend, const char *key, const char *value, uint64_t ttl_ms,
                       struct lk_buf *err);
    /* private: see worker_store_take_busy() (NULL: never busy) */
    bool (*take_busy)(void *backend);
    /* private: see worker_store_change_fd() (NULL: none) */
    int (*change_fd)(void *backend);
    bool (*changed)(void *backend);
};

/*
 * Opens the store described by spec (see the top of this file). clock and
 * clock_ctx are stored (clock NULL = the real-time clock). For sqlite the
 * file is created with its tables when missing (its directory must exist).
 * Returns 0 and *out (owned: worker_store_free), or LK_EINVAL for a spec that
 * is none of the three forms, or LK_ESTORE when the backend cannot be opened
 * (redis: the first connection fails); a reason is appended to err.
 */
int worker_store_open(const char *spec, worker_clock_fn *clock, void *clock_ctx,
                      struct worker_store **out, struct lk_buf *err);

/* True when a call since the last worker_store_take_busy() failed only
 * because another process held the database lock (SQLite SQLITE_BUSY /
 * SQLITE_LOCKED after WORKER_SQLITE_BUSY_MS): the same call may succeed
 * later. Clears the flag. Always false for memory and redis. */
bool worker_store_take_busy(struct worker_store *st);

/* A descriptor that becomes readable when another process changes the
 * store (sqlite: its inotify watch of the database and WAL files), or -1.
 * A caller whose loop watches it for EV_READ calls worker_store_changed()
 * whenever it is readable; from the first call on, lookups no longer poll it
 * themselves (docs/performance.md, finding 29: one read() per proxied
 * request fewer). */
int worker_store_change_fd(const struct worker_store *st);

/* Takes the change notices waiting on worker_store_change_fd(). False when
 * the watch ended (file deleted or moved, queue overflow): the descriptor is
 * closed already, the caller must drop its event at once, and lookups read
 * the store every time from then on. */
bool worker_store_changed(struct worker_store *st);

/* Deletes every expired session from the backend (Redis expires keys by
 * itself). Returns 0 or LK_ESTORE with a reason. */
int worker_store_purge(struct worker_store *st, struct lk_buf *err);

/* Closes the backend and frees st. NULL is a no-op. */
void worker_store_free(struct worker_store *st);

/* ---- registry of tunnel holders (DESIGN §8, "Several workers") ----------
 *
 * Workers sharing one Redis record which of them holds a session's tunnel:
 * key "tunnel-holder:<session>" (the caller passes the whole key, stored
 * without any prefix) -> that worker's --peer-url, with a short expiry the
 * holder keeps refreshing, so the entry of a dead worker disappears by
 * itself. Only the redis backend has a registry; for memory and sqlite
 * (one worker) put and del_if do nothing and get finds nothing. */

/* True when the store has a registry (redis). */
bool worker_store_is_shared(const struct worker_store *st);

/* Sets key = value (both copied to the backend) expiring after ttl_ms.
 * Returns 0 (also without a registry) or LK_ESTORE with a reason in err. */
int worker_store_reg_put(struct worker_store *st, const char *key, const char *value,
                         uint64_t ttl_ms, struct lk_buf *err);

/* As worker_store_reg_put(), but only while key is missing or still has
 * value (atomically on the server): a holder's periodic refresh never
 * writes over the entry of a newer holder (a worker whose tunnel is in fact
 * dead may not know it yet). Returns 0 (also when someone else holds key, or
 * without a registry) or LK_ESTORE with a reason in err. */
int worker_store_reg_refresh(struct worker_store *st, const char *key, const char *value,
                             uint64_t ttl_ms, struct lk_buf *err);

/* Replaces value with key's value. Returns 0, LK_ENOTFOUND (missing,
 * expired, or no registry) or LK_ESTORE with a reason in err. */
int worker_store_reg_get(struct worker_store *st, const char *key, struct lk_buf *value,
                         struct lk_buf *err);

/* Deletes key only while its value is still value (atomically on the
 * server, so a newer holder's entry survives). Returns 0 (also when the key
 * is missing or held by someone else, or without a registry) or LK_ESTORE. */
int worker_store_reg_del_if(struct worker_store *st, const char *key, const char *value,
                            struct lk_buf *err);

/* The real-time clock in epoch milliseconds (worker_clock_fn; ctx unused). */
uint64_t worker_clock_real(void *ctx);

/* ---- backends (store_memory.c, store_sqlite.c, store_redis.c) ------------- */

/* Each fills st->sessions, st->tunnels, st->purge and st->backend. */
void worker_store_open_memory(struct worker_store *st, worker_clock_fn *clock, void *clock_ctx);
int worker_store_open_sqlite(struct worker_store *st, const char *path, worker_clock_fn *clock,
                             void *clock_ctx, struct lk_buf *err);
int worker_store_open_redis(struct worker_store *st, const char *host, int port, int db,
                            worker_clock_fn *clock, void *clock_ctx, struct lk_buf *err);

#endif
