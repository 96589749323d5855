/*
 * store_sqlite.c - the "sqlite:PATH" worker store (the default).
 *
 * One database file in WAL mode with a short busy timeout, so several
 * processes may share it without one blocking the loop: a call that still
 * finds the lock fails, marks the store busy (worker_store_take_busy) and is
 * retried by the API from a timer. Two tables of the same shape, sessions and tunnels:
 *     (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at INTEGER)
 * expires_at is epoch milliseconds, NULL for no expiry (tunnels). Rows with
 * expires_at <= now are invisible to every read and deleted by the purge.
 * The SELECT of a lookup is prepared once per table and reset after each
 * use, which ends its read transaction, so no transaction is left open
 * between calls. The rarer statements are prepared per call.
 *
 * Stamps (core/store.h) spare the session cache that lookup on every
 * proxied request. inotify watches the database and WAL files: a commit of
 * any process writes one of them, and sq_stamp() drains the events with one
 * read(), or, once the worker's loop watches the descriptor
 * (worker_store_change_fd()), the loop does when it is readable: no read()
 * per lookup. A commit is written before it is published in the WAL index, so a
 * lookup racing a commit of another process can still read the old row
 * after its event; the stamp therefore also moves every STAMP_MAX_AGE_MS,
 * which bounds how long that row can be served. Our own writes move it at
 * once. Without inotify (or once a watched file is deleted or moved) there
 * is no stamp and every lookup reads.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "worker/store.h"

/* See the top of the file. */
#define STAMP_MAX_AGE_MS 1000

struct sq_db {
    sqlite3 *db;
    worker_clock_fn *clock;
    void *clock_ctx;
    bool busy;         /* a call failed on another process's lock */
    int watch;         /* inotify fd, -1: no stamps */
    bool loop_watched; /* the caller's loop drains watch (sqlite_changed) */
    struct worker_stamp stamp;
};

struct sq_view {
    struct sq_db *db; /* borrowed from the store */
    const char *table;
    bool ttl;
    sqlite3_stmt *select; /* kept; NULL until first used */
};

static int sq_fail(struct sq_db *d, const char *what, struct lk_buf *err)
{
    int code = sqlite3_errcode(d->db);
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
        d->busy = true;
    if (err)
        lk_buf_addf(err, "sqlite %s: %s", what, sqlite3_errmsg(d->db));
    return LK_ESTORE;
}

/* Prepares the statement head + the view's table + tail. */
static int sq_prepare(struct sq_view *v, const char *head, const char *tail, sqlite3_stmt **st,
                      struct lk_buf *err)
{
    struct lk_buf sql = LK_BUF_INIT;
    lk_buf_adds(&sql, head);
    lk_buf_adds(&sql, v->table);
    lk_buf_adds(&sql, tail);
    int rc = sqlite3_prepare_v2(v->db->db, sql.data, -1, st, NULL);
    lk_buf_release(&sql);
    return rc == SQLITE_OK ? 0 : sq_fail(v->db, "prepare", err);
}

static sqlite3_int64 sq_now(const struct sq_view *v)
{
    return (sqlite3_int64)v->db->clock(v->db->clock_ctx);
}

/* SELECT of the live row for key; *found tells whether there is one. Copies
 * the value into value when non-NULL. */
static int sq_select(struct sq_view *v, const char *key, struct lk_buf *value, bool *found,
                     struct lk_buf *err)
{
    if (v->select == NULL) {
        int rc = sq_prepare(v, "SELECT value, expires_at FROM ",
                            " WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
                            &v->select, err);
        if (rc != 0)
            return rc;
    }
    sqlite3_stmt *st = v->select;
    int rc = 0;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, sq_now(v));
    int step = sqlite3_step(st);
    *found = step == SQLITE_ROW;
    if (step == SQLITE_ROW && sqlite3_column_type(st, 1) != SQLITE_NULL)
        worker_stamp_saw_expiry(&v->db->stamp, (uint64_t)sqlite3_column_int64(st, 1));
    if (step == SQLITE_ROW && value != NULL) {
        lk_buf_reset(value);
        rc = lk_buf_add(value, sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
    } else if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = sq_fail(v->db, "select", err);
    }
    /* Ends the read transaction; the key is not referenced past the call. */
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static int sq_get(void *ctx, const char *key, struct lk_buf *value, struct lk_buf *err)
{
    bool found = false;
    int rc = sq_select(ctx, key, value, &found, err);
    if (rc == 0 && !found)
        rc = LK_ENOTFOUND;
    return rc;
}

static int sq_exists(void *ctx, const char *key, bool *exists, struct lk_buf *err)
{
    return sq_select(ctx, key, NULL, exists, err);
}

/* Runs a prepared write statement to completion and finalizes it. */
static int sq_run(struct sq_view *v, sqlite3_stmt *st, const char *what, struct lk_buf *err)
{
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sq_fail(v->db, what, err);
    sqlite3_finalize(st);
    worker_stamp_bump(&v->db->stamp);
    return rc;
}

static int sq_put(void *ctx, const char *key, const char *value, size_t len, struct lk_buf *err)
{
    struct sq_view *v = ctx;
    sqlite3_stmt *st = NULL;
    int rc = sq_prepare(v, "INSERT OR REPLACE INTO ",
                        " (key, value, expires_at) VALUES (?1, ?2, ?3)", &st, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, (int)len, SQLITE_STATIC);
    if (v->ttl)
        sqlite3_bind_int64(st, 3, sq_now(v) + (sqlite3_int64)WORKER_SESSION_TTL_MS);
    else
        sqlite3_bind_null(st, 3);
    return sq_run(v, st, "insert", err);
}

/* One statement, so atomic across processes sharing the file: an insert
 * that replaces only an expired row, or an update of the live row holding
 * exactly expect. No row changed: LK_ECONFLICT. */
static int sq_put_if(void *ctx, const char *key, const char *expect, size_t expect_len,
                     const char *value, size_t len, struct lk_buf *err)
{
    struct sq_view *v = ctx;
    sqlite3_stmt *st = NULL;
    int rc = expect == NULL
                 ? sq_prepare(v, "INSERT INTO ",
                              " (key, value, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT(key) DO "
                              "UPDATE SET value = excluded.value, expires_at = excluded.expires_at "
                              "WHERE expires_at IS NOT NULL AND expires_at <= ?4",
                              &st, err)
                 : sq_prepare(v, "UPDATE ",
                              " SET value = ?2, expires_at = ?3 WHERE key = ?1 AND value = ?5 AND "
                              "(expires_at IS NULL OR expires_at > ?4)",
                              &st, err);
    if (rc != 0)
        return rc;
    sqlite3_int64 now = sq_now(v);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, (int)len, SQLITE_STATIC);
    if (v->ttl)
        sqlite3_bind_int64(st, 3, now + (sqlite3_int64)WORKER_SESSION_TTL_MS);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, now);
    if (expect != NULL)
        sqlite3_bind_text(st, 5, expect, (int)expect_len, SQLITE_STATIC);
    rc = sq_run(v, st, expect == NULL ? "insert" : "update", err);
    if (rc == 0 && sqlite3_changes(v->db->db) == 0)
        rc = LK_ECONFLICT;
    return rc;
}

static int sq_del(void *ctx, const char *key, struct lk_buf *err)
{
    struct sq_view *v = ctx;
    sqlite3_stmt *st = NULL;
    int rc = sq_prepare(v, "DELETE FROM ", " WHERE key = ?1", &st, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    return sq_run(v, st, "delete", err);
}

static int sq_list(void *ctx, lk_kv_list_cb *cb, void *data, struct lk_buf *err)
{
    struct sq_view *v = ctx;
    sqlite3_stmt *st = NULL;
    int rc = sq_prepare(v, "SELECT key, value FROM ",
                        " WHERE expires_at IS NULL OR expires_at > ?1", &st, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, sq_now(v));
    int step;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        rc = cb(data, (const char *)sqlite3_column_text(st, 0),
                (const char *)sqlite3_column_text(st, 1), (size_t)sqlite3_column_bytes(st, 1));
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = sq_fail(v->db, "list", err);
    sqlite3_finalize(st);
    return rc;
}

static void unwatch(struct sq_db *d)
{
    if (d->watch >= 0)
        close(d->watch);
    d->watch = -1;
}

/* Drains the inotify events: any change moves the stamp; a watch that ends
 * (file deleted or moved, queue overflow) ends stamps. */
static void drain_events(struct sq_db *d)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(d->watch, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                unwatch(d);
            return;
        }
        worker_stamp_bump(&d->stamp);
        for (ssize_t off = 0; off < n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
            if (ev->mask & (IN_IGNORED | IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF)) {
                unwatch(d);
                return;
            }
            off += (ssize_t)(sizeof(*ev) + ev->len);
        }
    }
}

static int sq_stamp(void *ctx, uint64_t *stamp)
{
    struct sq_view *v = ctx;
    struct sq_db *d = v->db;
    if (d->watch >= 0 && !d->loop_watched)
        drain_events(d);
    if (d->watch < 0)
        return LK_EUNSUPPORTED;
    *stamp = worker_stamp_at(&d->stamp, (uint64_t)sq_now(v));
    return 0;
}

static void sq_view_destroy(void *ctx)
{
    struct sq_view *v = ctx;
    sqlite3_finalize(v->select); /* views go before the database (worker_store_free) */
    free(v);
}

static const struct lk_kv_ops sqlite_ops = {
    sq_get, sq_exists, sq_put, sq_del, sq_list, sq_view_destroy, sq_stamp, sq_put_if,
};

static int sqlite_purge(struct worker_store *st, struct lk_buf *err)
{
    struct sq_view *v = st->sessions.ctx;
    sqlite3_stmt *stmt = NULL;
    int rc = sq_prepare(v, "DELETE FROM ", " WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                        &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, sq_now(v));
    return sq_run(v, stmt, "purge", err);
}

static bool sqlite_take_busy(void *backend)
{
    struct sq_db *d = backend;
    bool busy = d->busy;
    d->busy = false;
    return busy;
}

static int sqlite_change_fd(void *backend)
{
    struct sq_db *d = backend;
    return d->watch;
}

static bool sqlite_changed(void *backend)
{
    struct sq_db *d = backend;
    d->loop_watched = true;
    if (d->watch >= 0)
        drain_events(d);
    return d->watch >= 0;
}

static void sqlite_close(void *backend)
{
    struct sq_db *d = backend;
    if (d == NULL)
        return;
    sqlite3_close(d->db);
    unwatch(d);
    free(d);
}

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
    "expires_at INTEGER);"
    "CREATE TABLE IF NOT EXISTS tunnels (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
    "expires_at INTEGER);";

/* Tables of that name made by something else, without our columns, fail
 * here at start-up (an unusable store) rather than on every call. */
static const char *const schema_check = "SELECT key, value, expires_at FROM sessions LIMIT 0;"
                                        "SELECT key, value, expires_at FROM tunnels LIMIT 0;";

/* Starts the inotify watch of the database file and its WAL (which exists
 * now: the schema ran in WAL mode). Any failure leaves the store without
 * stamps. */
static void watch_files(struct sq_db *d)
{
    sqlite3_filename name = sqlite3_db_filename(d->db, "main");
    const char *wal = name ? sqlite3_filename_wal(name) : NULL;
    if (name == NULL || *name == '\0' || wal == NULL || *wal == '\0')
        return;
    d->watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (d->watch < 0)
        return;
    uint32_t mask = IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF;
    if (inotify_add_watch(d->watch, name, mask) < 0 || inotify_add_watch(d->watch, wal, mask) < 0)
        unwatch(d);
}

static struct lk_kv sq_view_new(struct sq_db *d, const char *table, bool ttl)
{
    struct sq_view *v = lk_xcalloc(1, sizeof(*v));
    v->db = d;
    v->table = table;
    v->ttl = ttl;
    return (struct lk_kv){ &sqlite_ops, v };
}

int worker_store_open_sqlite(struct worker_store *st, const char *path, worker_clock_fn *clock,
                             void *clock_ctx, struct lk_buf *err)
{
    struct sq_db *d = lk_xcalloc(1, sizeof(*d));
    d->clock = clock;
    d->clock_ctx = clock_ctx;
    d->watch = -1;
    worker_stamp_init(&d->stamp, STAMP_MAX_AGE_MS);
    st->backend = d;
    st->close = sqlite_close;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &d->db, flags, NULL) != SQLITE_OK) {
        lk_buf_addf(err, "cannot open sqlite store '%s': %s", path,
                    d->db ? sqlite3_errmsg(d->db) : "out of memory");
        return LK_ESTORE;
    }
    sqlite3_busy_timeout(d->db, WORKER_SQLITE_BUSY_MS);
    /* WAL lets readers in other processes run while one writes; a
     * ":memory:" database silently stays in its own journal mode. */
    if (sqlite3_exec(d->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     NULL) != SQLITE_OK ||
        sqlite3_exec(d->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(d->db, schema_check, NULL, NULL, NULL) != SQLITE_OK) {
        lk_buf_addf(err, "cannot initialise sqlite store '%s': %s", path, sqlite3_errmsg(d->db));
        return LK_ESTORE;
    }
    watch_files(d);
    st->sessions = sq_view_new(d, "sessions", true);
    st->tunnels = sq_view_new(d, "tunnels", false);
    st->purge = sqlite_purge;
    st->take_busy = sqlite_take_busy;
    st->change_fd = sqlite_change_fd;
    st->changed = sqlite_changed;
    return 0;
}
