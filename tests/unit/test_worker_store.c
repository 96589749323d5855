/*
 * test_worker_store.c - the worker's stores (memory, SQLite on a temp file,
 * Redis when a redis-server binary exists) and its tunnel records.
 *
 * The worker's sources live in src/worker and are not a library, so the
 * store and tunnel modules are compiled into this test directly. Time is a
 * fake clock so expiry can be tested without waiting.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "worker/store.c"
#include "worker/store_memory.c"
#include "worker/store_redis.c"
#include "worker/store_sqlite.c"
#include "worker/tunnels.c"

extern char **environ;

static uint64_t fake_now = 1750000000000ULL;

static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}

static char tmp_dir[64];
static pid_t redis_pid = -1;
static char redis_spec[64];
static int redis_port;

/* ---- helpers ------------------------------------------------------------- */

static struct worker_store *open_store(const char *spec)
{
    struct worker_store *st = NULL;
    struct lk_buf err = LK_BUF_INIT;
    int rc = worker_store_open(spec, fake_clock, NULL, &st, &err);
    if (rc != 0)
        fprintf(stderr, "  open %s: %s\n", spec, err.data);
    lk_buf_release(&err);
    return st;
}

static int get_str(const struct lk_kv *kv, const char *key, struct lk_buf *out)
{
    lk_buf_reset(out);
    return lk_kv_get(kv, key, out, NULL);
}

static int count_cb(void *data, const char *key, const char *value, size_t len)
{
    (void)key;
    (void)value;
    (void)len;
    (*(int *)data)++;
    return 0;
}

static int count(const struct lk_kv *kv)
{
    int n = 0;
    CHECK_INT_EQ(lk_kv_list(kv, count_cb, &n, NULL), 0);
    return n;
}

/* The spec strings under test: memory, sqlite, and redis when running. */
static size_t backends(const char *specs[3])
{
    static char sqlite_spec[128];
    size_t n = 0;
    specs[n++] = "memory";
    snprintf(sqlite_spec, sizeof(sqlite_spec), "sqlite:%s/store.db", tmp_dir);
    specs[n++] = sqlite_spec;
    if (redis_pid > 0)
        specs[n++] = redis_spec;
    return n;
}

/* ---- Redis for the tests ------------------------------------------------------- */

static int free_port(void)
{
    struct sockaddr_in sa = { 0 };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) == -1) {
        if (fd != -1)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static bool can_connect(int port)
{
    struct sockaddr_in sa = { 0 };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = fd != -1 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd != -1)
        close(fd);
    return ok;
}

/* Starts redis-server on a free 127.0.0.1 port when the binary exists. */
static void start_redis(void)
{
    const char *exe = "/usr/bin/redis-server";
    char port_s[16];
    int port = free_port();
    if (access(exe, X_OK) != 0 || port <= 0) {
        printf("# redis-server not found: Redis cases skipped\n");
        return;
    }
    snprintf(port_s, sizeof(port_s), "%d", port);
    char *argv[] = { (char *)"redis-server",
                     (char *)"--port",
                     port_s,
                     (char *)"--bind",
                     (char *)"127.0.0.1",
                     (char *)"--save",
                     (char *)"",
                     (char *)"--appendonly",
                     (char *)"no",
                     NULL };
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&redis_pid, exe, &fa, NULL, argv, environ) != 0)
        redis_pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; redis_pid > 0 && i < 200 && !can_connect(port); i++)
        usleep(25000);
    snprintf(redis_spec, sizeof(redis_spec), "redis://127.0.0.1:%d/3", port);
    redis_port = port;
}

static void stop_redis(void)
{
    if (redis_pid <= 0)
        return;
    kill(redis_pid, SIGTERM);
    waitpid(redis_pid, NULL, 0);
    redis_pid = -1;
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_open_rejects_bad_specs(void)
{
    static const char *const bad[] = {
        "",
        "nosuch",
        "sqlite:",
        "redis://",
        "redis://h",
        "redis://h:0",
        "redis://h:x/1",
        "redis://:80",
        "sqlite:/nonexistent-dir/x/y.db",
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(bad); i++) {
        struct worker_store *st = NULL;
        struct lk_buf err = LK_BUF_INIT;
        int rc = worker_store_open(bad[i], fake_clock, NULL, &st, &err);
        CHECK(rc != 0);
        CHECK(st == NULL);
        CHECK(err.len > 0);
        lk_buf_release(&err);
    }
    /* A database whose sessions table is someone else's: refused at open,
     * not on every call after. */
    char path[sizeof(tmp_dir) + 32], spec[sizeof(path) + 8];
    snprintf(path, sizeof(path), "%s/foreign.db", tmp_dir);
    snprintf(spec, sizeof(spec), "sqlite:%s", path);
    sqlite3 *db = NULL;
    CHECK_INT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_INT_EQ(sqlite3_exec(db, "CREATE TABLE sessions (k TEXT, v TEXT);", NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    struct worker_store *st = NULL;
    struct lk_buf err = LK_BUF_INIT;
    CHECK(worker_store_open(spec, fake_clock, NULL, &st, &err) != 0);
    CHECK(st == NULL);
    CHECK(err.data != NULL && strstr(err.data, "no such column") != NULL);
    worker_store_free(st);
    lk_buf_release(&err);
}

static void test_kv_basics(void)
{
    const char *specs[3];
    size_t n = backends(specs);
    for (size_t i = 0; i < n; i++) {
        struct worker_store *st = open_store(specs[i]);
        struct lk_buf v = LK_BUF_INIT;
        bool exists = true;
        CHECK(st != NULL);
        if (st == NULL)
            continue;
        lk_kv_del(&st->sessions, "a", NULL);
        lk_kv_del(&st->tunnels, "a", NULL);
        CHECK_INT_EQ(get_str(&st->sessions, "a", &v), LK_ENOTFOUND);
        CHECK_INT_EQ(lk_kv_exists(&st->sessions, "a", &exists, NULL), 0);
        CHECK(!exists);
        CHECK_INT_EQ(lk_kv_put(&st->sessions, "a", "{\"x\":1}", 7, NULL), 0);
        CHECK_INT_EQ(get_str(&st->sessions, "a", &v), 0);
        CHECK_STR_EQ(v.data, "{\"x\":1}");
        CHECK_INT_EQ(lk_kv_put(&st->sessions, "a", "second", 6, NULL), 0);
        CHECK_INT_EQ(get_str(&st->sessions, "a", &v), 0);
        CHECK_STR_EQ(v.data, "second");
        /* The two key spaces are separate. */
        CHECK_INT_EQ(get_str(&st->tunnels, "a", &v), LK_ENOTFOUND);
        CHECK_INT_EQ(lk_kv_put(&st->tunnels, "a", "tunnel", 6, NULL), 0);
        CHECK_INT_EQ(get_str(&st->sessions, "a", &v), 0);
        CHECK_STR_EQ(v.data, "second");
        CHECK_INT_EQ(lk_kv_exists(&st->sessions, "a", &exists, NULL), 0);
        CHECK(exists);
        CHECK_INT_EQ(count(&st->sessions), 1);
        CHECK_INT_EQ(lk_kv_del(&st->sessions, "a", NULL), 0);
        CHECK_INT_EQ(lk_kv_del(&st->sessions, "a", NULL), 0);
        CHECK_INT_EQ(get_str(&st->sessions, "a", &v), LK_ENOTFOUND);
        CHECK_INT_EQ(get_str(&st->tunnels, "a", &v), 0);
        CHECK_INT_EQ(lk_kv_del(&st->tunnels, "a", NULL), 0);
        lk_buf_release(&v);
        worker_store_free(st);
    }
}

/* put_if is one atomic step of the store, seen by every process sharing it:
 * of two stores on the same backend, only the first takes an absent key; a
 * write over an expected value needs that exact value. */
static void test_put_if(void)
{
    const char *specs[3];
    size_t n = backends(specs);
    for (size_t i = 0; i < n; i++) {
        struct worker_store *a = open_store(specs[i]);
        struct worker_store *b = i == 0 ? a : open_store(specs[i]); /* memory: one process */
        struct lk_buf v = LK_BUF_INIT;
        CHECK(a != NULL && b != NULL);
        if (a == NULL || b == NULL)
            continue;
        lk_kv_del(&a->sessions, "p", NULL);
        CHECK_INT_EQ(lk_kv_put_if(&a->sessions, "p", NULL, 0, "one", 3, NULL), 0);
        CHECK_INT_EQ(lk_kv_put_if(&b->sessions, "p", NULL, 0, "two", 3, NULL), LK_ECONFLICT);
        CHECK_INT_EQ(lk_kv_put_if(&b->sessions, "p", "two", 3, "three", 5, NULL), LK_ECONFLICT);
        CHECK_INT_EQ(get_str(&a->sessions, "p", &v), 0);
        CHECK_STR_EQ(v.data, "one");
        CHECK_INT_EQ(lk_kv_put_if(&b->sessions, "p", "one", 3, "three", 5, NULL), 0);
        CHECK_INT_EQ(lk_kv_put_if(&a->sessions, "p", "one", 3, "four", 4, NULL), LK_ECONFLICT);
        CHECK_INT_EQ(get_str(&a->sessions, "p", &v), 0);
        CHECK_STR_EQ(v.data, "three");
        CHECK_INT_EQ(lk_kv_put_if(&a->sessions, "q", "x", 1, "y", 1, NULL), LK_ECONFLICT);
        CHECK_INT_EQ(get_str(&a->sessions, "q", &v), LK_ENOTFOUND);
        /* An expired session is no owner (memory and SQLite run on the
         * injected clock; Redis expires on its own). */
        if (strncmp(specs[i], "redis", 5) != 0) {
            uint64_t t0 = fake_now;
            fake_now = t0 + WORKER_SESSION_TTL_MS + 1;
            CHECK_INT_EQ(lk_kv_put_if(&b->sessions, "p", "three", 5, "five", 4, NULL),
                         LK_ECONFLICT);
            CHECK_INT_EQ(lk_kv_put_if(&b->sessions, "p", NULL, 0, "six", 3, NULL), 0);
            CHECK_INT_EQ(get_str(&a->sessions, "p", &v), 0);
            CHECK_STR_EQ(v.data, "six");
            fake_now = t0;
        }
        lk_kv_del(&a->sessions, "p", NULL);
        lk_buf_release(&v);
        if (b != a)
            worker_store_free(b);
        worker_store_free(a);
    }
}

/* Sessions expire 7 days after their last put (Redis keeps its own clock and
 * is checked through PTTL instead). */
static void test_session_expiry(void)
{
    const char *specs[2] = { "memory", NULL };
    char sqlite_spec[128];
    snprintf(sqlite_spec, sizeof(sqlite_spec), "sqlite:%s/expiry.db", tmp_dir);
    specs[1] = sqlite_spec;
    for (size_t i = 0; i < 2; i++) {
        struct worker_store *st = open_store(specs[i]);
        struct lk_buf v = LK_BUF_INIT;
        uint64_t t0 = fake_now;
        if (st == NULL)
            continue;
        lk_kv_put(&st->sessions, "s", "v", 1, NULL);
        lk_kv_put(&st->tunnels, "t", "v", 1, NULL);
        fake_now = t0 + WORKER_SESSION_TTL_MS - 1;
        CHECK_INT_EQ(get_str(&st->sessions, "s", &v), 0);
        /* A new put restarts the 7 days. */
        lk_kv_put(&st->sessions, "s", "w", 1, NULL);
        fake_now = t0 + WORKER_SESSION_TTL_MS + 10;
        CHECK_INT_EQ(get_str(&st->sessions, "s", &v), 0);
        CHECK_STR_EQ(v.data, "w");
        fake_now = t0 + 2 * WORKER_SESSION_TTL_MS - 1;
        CHECK_INT_EQ(get_str(&st->sessions, "s", &v), LK_ENOTFOUND);
        CHECK_INT_EQ(count(&st->sessions), 0);
        /* Tunnels never expire. */
        fake_now = t0 + 100 * WORKER_SESSION_TTL_MS;
        CHECK_INT_EQ(get_str(&st->tunnels, "t", &v), 0);
        CHECK_INT_EQ(worker_store_purge(st, NULL), 0);
        CHECK_INT_EQ(get_str(&st->tunnels, "t", &v), 0);
        fake_now = t0;
        lk_buf_release(&v);
        worker_store_free(st);
    }
}

static void test_sqlite_purge_deletes_rows(void)
{
    char spec[128];
    snprintf(spec, sizeof(spec), "sqlite:%s/purge.db", tmp_dir);
    struct worker_store *st = open_store(spec);
    uint64_t t0 = fake_now;
    if (st == NULL)
        return;
    lk_kv_put(&st->sessions, "old", "v", 1, NULL);
    fake_now = t0 + 1000;
    lk_kv_put(&st->sessions, "new", "v", 1, NULL);
    fake_now = t0 + WORKER_SESSION_TTL_MS + 500;
    CHECK_INT_EQ(worker_store_purge(st, NULL), 0);
    struct sq_db *d = st->backend;
    sqlite3_stmt *stmt = NULL;
    sqlite3_prepare_v2(d->db, "SELECT key FROM sessions", -1, &stmt, NULL);
    CHECK_INT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    CHECK_STR_EQ((const char *)sqlite3_column_text(stmt, 0), "new");
    CHECK_INT_EQ(sqlite3_step(stmt), SQLITE_DONE);
    sqlite3_finalize(stmt);
    fake_now = t0;
    worker_store_free(st);
}

static void test_sqlite_survives_reopen(void)
{
    char spec[128];
    struct lk_buf v = LK_BUF_INIT;
    snprintf(spec, sizeof(spec), "sqlite:%s/reopen.db", tmp_dir);
    struct worker_store *st = open_store(spec);
    if (st == NULL)
        return;
    lk_kv_put(&st->sessions, "potato", "json", 4, NULL);
    lk_kv_put(&st->tunnels, "linkup-tunnel-potato", "rec", 3, NULL);
    worker_store_free(st);
    st = open_store(spec);
    CHECK(st != NULL);
    if (st == NULL)
        return;
    CHECK_INT_EQ(get_str(&st->sessions, "potato", &v), 0);
    CHECK_STR_EQ(v.data, "json");
    CHECK_INT_EQ(get_str(&st->tunnels, "linkup-tunnel-potato", &v), 0);
    CHECK_STR_EQ(v.data, "rec");
    lk_buf_release(&v);
    worker_store_free(st);
}

/* The session lookup's statement is kept between calls: it still sees
 * another connection's writes, answers busy while that connection holds an
 * exclusive lock (and leaves no read transaction open that would block it),
 * works again afterwards, and is finalized before the database closes. */
static void test_sqlite_kept_select_sees_other_connections(void)
{
    char spec[160], path[128];
    struct lk_buf v = LK_BUF_INIT;
    snprintf(path, sizeof(path), "%s/kept.db", tmp_dir);
    snprintf(spec, sizeof(spec), "sqlite:%s", path);
    struct worker_store *st = open_store(spec);
    sqlite3 *other = NULL;
    if (st == NULL || sqlite3_open(path, &other) != SQLITE_OK)
        return;
    sqlite3_busy_timeout(other, 2000);
    CHECK_INT_EQ(lk_kv_put(&st->sessions, "potato", "one", 3, NULL), 0);
    CHECK_INT_EQ(get_str(&st->sessions, "potato", &v), 0);
    CHECK_STR_EQ(v.data, "one");
    CHECK_INT_EQ(sqlite3_exec(other, "UPDATE sessions SET value = 'two' WHERE key = 'potato'", NULL,
                              NULL, NULL),
                 SQLITE_OK);
    CHECK_INT_EQ(get_str(&st->sessions, "potato", &v), 0);
    CHECK_STR_EQ(v.data, "two");
    bool exists = false;
    CHECK_INT_EQ(lk_kv_exists(&st->sessions, "potato", &exists, NULL), 0);
    CHECK(exists);
    /* Our last read ended its transaction: a full checkpoint is not held
     * back by it (its first column is 1 when a reader blocked it). */
    sqlite3_stmt *ck = NULL;
    sqlite3_prepare_v2(other, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &ck, NULL);
    CHECK_INT_EQ(sqlite3_step(ck), SQLITE_ROW);
    CHECK_INT_EQ(sqlite3_column_int(ck, 0), 0);
    sqlite3_finalize(ck);
    CHECK_INT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE; UPDATE sessions SET value = 'three'", NULL,
                              NULL, NULL),
                 SQLITE_OK);
    /* WAL readers are not blocked by a writer: the committed value shows. */
    CHECK_INT_EQ(get_str(&st->sessions, "potato", &v), 0);
    CHECK_STR_EQ(v.data, "two");
    CHECK_INT_EQ(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    CHECK_INT_EQ(get_str(&st->sessions, "potato", &v), 0);
    CHECK_STR_EQ(v.data, "three");
    CHECK_INT_EQ(get_str(&st->sessions, "nope", &v), LK_ENOTFOUND);
    lk_buf_release(&v);
    sqlite3_close(other);
    worker_store_free(st);
}

/* Another connection to the database at path commits a change to every
 * session (as another worker process would). */
static void update_elsewhere(const char *path)
{
    sqlite3 *other = NULL;
    CHECK_INT_EQ(sqlite3_open(path, &other), SQLITE_OK);
    sqlite3_busy_timeout(other, 2000);
    CHECK_INT_EQ(sqlite3_exec(other, "UPDATE sessions SET value = 'two'", NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(other);
}

/* Stamps (core/store.h): they stay while nothing changes, move on writes,
 * on another connection's commit (sqlite, through inotify), when a row that
 * was read expires and, for sqlite, at least every STAMP_MAX_AGE_MS. */
static void test_stamps(void)
{
    char spec[160], path[128];
    snprintf(path, sizeof(path), "%s/stamp.db", tmp_dir);
    snprintf(spec, sizeof(spec), "sqlite:%s", path);
    const char *specs[] = { "memory", spec };
    uint64_t t0 = fake_now;
    for (size_t i = 0; i < LK_ARRAY_LEN(specs); i++) {
        struct worker_store *st = open_store(specs[i]);
        struct lk_buf v = LK_BUF_INIT;
        uint64_t a = 0, b = 0;
        bool sqlite = i == 1;
        if (st == NULL)
            continue;
        CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &a), 0);
        CHECK_INT_EQ(lk_kv_put(&st->sessions, "potato", "one", 3, NULL), 0);
        CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &b), 0);
        CHECK(a != b);
        CHECK_INT_EQ(get_str(&st->sessions, "potato", &v), 0);
        CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &a), 0);
        fake_now += 10;
        CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &b), 0);
        CHECK(a == b);
        if (sqlite) {
            update_elsewhere(path);
            CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &b), 0);
            CHECK(a != b);
            /* No change, but older than STAMP_MAX_AGE_MS: it moves anyway. */
            CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &a), 0);
            fake_now += STAMP_MAX_AGE_MS - 1;
            CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &b), 0);
            CHECK(a == b);
            fake_now += 1;
            CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &b), 0);
            CHECK(a != b);
        }
        /* A row read under a stamp expires a week after its put: the stamp
         * moves then, and the next read finds nothing. */
        fake_now = t0 + WORKER_SESSION_TTL_MS - 1;
        CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &a), 0);
        CHECK_INT_EQ(get_str(&st->sessions, "potato", &v), 0);
        fake_now = t0 + WORKER_SESSION_TTL_MS;
        CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &b), 0);
        CHECK(a != b);
        CHECK_INT_EQ(get_str(&st->sessions, "potato", &v), LK_ENOTFOUND);
        fake_now = t0;
        lk_buf_release(&v);
        worker_store_free(st);
    }
}

/* The change descriptor (worker_store_change_fd): once the caller's loop
 * takes the notices (worker_store_changed), a lookup no longer reads them
 * itself, so another connection's commit moves the stamp only when the
 * caller passes it on; a database file moved away ends the watch. Memory
 * has none. */
static void test_change_fd(void)
{
    struct worker_store *mem = open_store("memory");
    if (mem != NULL)
        CHECK_INT_EQ(worker_store_change_fd(mem), -1);
    worker_store_free(mem);
    char spec[160], path[128];
    snprintf(path, sizeof(path), "%s/change.db", tmp_dir);
    snprintf(spec, sizeof(spec), "sqlite:%s", path);
    struct worker_store *st = open_store(spec);
    if (st == NULL)
        return;
    int fd = worker_store_change_fd(st);
    CHECK(fd >= 0);
    CHECK(worker_store_changed(st)); /* the loop takes over */
    uint64_t a = 0, b = 0;
    CHECK_INT_EQ(lk_kv_put(&st->sessions, "potato", "one", 3, NULL), 0);
    CHECK(worker_store_changed(st)); /* our own write's notices */
    CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &a), 0);
    update_elsewhere(path);
    struct pollfd pfd = { fd, POLLIN, 0 };
    CHECK_INT_EQ(poll(&pfd, 1, 2000), 1); /* what the loop waits for */
    CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &b), 0);
    CHECK(a == b); /* a lookup did not read the notice */
    CHECK(worker_store_changed(st));
    CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &b), 0);
    CHECK(a != b);
    /* The file is moved away: the watch ends, and lookups read every time. */
    char moved[160];
    snprintf(moved, sizeof(moved), "%s.moved", path);
    CHECK_INT_EQ(rename(path, moved), 0);
    CHECK_INT_EQ(poll(&pfd, 1, 2000), 1);
    CHECK(!worker_store_changed(st));
    CHECK_INT_EQ(lk_kv_stamp(&st->sessions, &b), LK_EUNSUPPORTED);
    worker_store_free(st);
}

static void test_redis_shared_and_ttl(void)
{
    if (redis_pid <= 0)
        return;
    struct worker_store *a = open_store(redis_spec);
    struct worker_store *b = open_store(redis_spec);
    struct lk_buf v = LK_BUF_INIT;
    CHECK(a != NULL && b != NULL);
    if (a == NULL || b == NULL)
        goto out;
    CHECK_INT_EQ(lk_kv_put(&a->sessions, "shared", "one", 3, NULL), 0);
    CHECK_INT_EQ(get_str(&b->sessions, "shared", &v), 0);
    CHECK_STR_EQ(v.data, "one");
    CHECK_INT_EQ(lk_kv_put(&a->tunnels, "tun", "rec", 3, NULL), 0);
    struct rd_db *d = a->backend;
    redisReply *r = redisCommand(d->c, "PTTL session:shared");
    CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 0 &&
          r->integer <= (long long)WORKER_SESSION_TTL_MS);
    freeReplyObject(r);
    r = redisCommand(d->c, "PTTL tunnel:tun");
    CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == -1);
    freeReplyObject(r);
    /* A dropped connection is re-established by the next call. */
    rd_drop(d);
    CHECK_INT_EQ(get_str(&a->sessions, "shared", &v), 0);
    CHECK_INT_EQ(count(&b->tunnels), 1);
out:
    lk_buf_release(&v);
    worker_store_free(a);
    worker_store_free(b);
}

/* Connections redis has accepted so far, read over c (INFO stats). */
static long long redis_connections(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO stats");
    long long n = -1;
    const char *at = r != NULL && r->type == REDIS_REPLY_STRING
                         ? strstr(r->str, "total_connections_received:")
                         : NULL;
    if (at != NULL)
        n = strtoll(at + strlen("total_connections_received:"), NULL, 10);
    freeReplyObject(r);
    return n;
}

/* A stalled server (it accepts connections but answers nothing) fails a
 * call after one reply timeout: the call neither reconnects nor waits a
 * second time (docs/worker.md: a slow Redis stalls the worker that long). */
static void test_redis_stalled_is_one_timeout(void)
{
    if (redis_pid <= 0)
        return;
    struct worker_store *st = open_store(redis_spec);
    struct lk_buf v = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    redisContext *probe = redisConnect("127.0.0.1", redis_port);
    CHECK(st != NULL && probe != NULL && probe->err == 0);
    if (st == NULL || probe == NULL || probe->err != 0)
        goto out;
    CHECK_INT_EQ(lk_kv_put(&st->sessions, "x", "v", 1, NULL), 0); /* connected */
    long long before = redis_connections(probe);
    kill(redis_pid, SIGSTOP);
    CHECK_INT_EQ(lk_kv_get(&st->sessions, "x", &v, &err), LK_ESTORE);
    kill(redis_pid, SIGCONT);
    CHECK(err.data != NULL && strstr(err.data, "Resource temporarily unavailable") != NULL);
    nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL); /* queued accepts land */
    CHECK_INT_EQ(redis_connections(probe), before);
    /* The next call connects again and works. */
    lk_buf_reset(&v);
    CHECK_INT_EQ(lk_kv_get(&st->sessions, "x", &v, NULL), 0);
    CHECK_INT_EQ(redis_connections(probe), before + 1);
out:
    if (probe != NULL)
        redisFree(probe);
    lk_buf_release(&err);
    lk_buf_release(&v);
    worker_store_free(st);
}

static void test_redis_down_is_store_error(void)
{
    if (redis_pid <= 0)
        return;
    struct worker_store *st = open_store(redis_spec);
    struct lk_buf v = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    bool exists = false;
    if (st == NULL)
        return;
    stop_redis();
    CHECK_INT_EQ(lk_kv_get(&st->sessions, "x", &v, &err), LK_ESTORE);
    CHECK(err.len > 0);
    CHECK_INT_EQ(lk_kv_put(&st->sessions, "x", "v", 1, NULL), LK_ESTORE);
    CHECK_INT_EQ(lk_kv_exists(&st->sessions, "x", &exists, NULL), LK_ESTORE);
    CHECK(lk_kv_list(&st->tunnels, count_cb, &(int){ 0 }, NULL) != 0);
    lk_buf_release(&err);
    lk_buf_release(&v);
    worker_store_free(st);
}

/* The parsed-session cache over a real store follows updates at once. */
static void test_session_cache_follows_updates(void)
{
    char spec[128];
    snprintf(spec, sizeof(spec), "sqlite:%s/cache.db", tmp_dir);
    struct worker_store *st = open_store(spec);
    struct lk_session_cache *cache = lk_session_cache_new(0, 0);
    static const char *const locations[] = { "http://one.example.com/", "http://two.example.com/" };
    if (st == NULL)
        return;
    for (size_t i = 0; i < LK_ARRAY_LEN(locations); i++) {
        struct lk_session *s = lk_session_new(LK_SESSION_PREVIEW, "tok");
        struct lk_session *got = NULL;
        struct lk_session *again = NULL;
        lk_session_add_service(s, "fe", locations[i], strlen(locations[i]), NULL);
        lk_session_add_domain(s, "example.com", "fe");
        CHECK_INT_EQ(lk_store_put_session(&st->sessions, "n", s, NULL), 0);
        CHECK_INT_EQ(lk_store_get_session(&st->sessions, cache, "n", &got, NULL), 0);
        CHECK_INT_EQ(lk_store_get_session(&st->sessions, cache, "n", &again, NULL), 0);
        CHECK(got == again); /* parsed once */
        if (got != NULL)
            CHECK_STR_EQ(got->services[0].location_str, locations[i]);
        lk_session_free(again);
        lk_session_free(got);
        lk_session_free(s);
    }
    lk_session_cache_free(cache);
    worker_store_free(st);
}

/* ---- tunnels ----------------------------------------------------------------------- */

static void test_tunnel_url(void)
{
    static const struct {
        const char *prefix, *domain, *scheme;
        int port;
        const char *want;
    } cases[] = {
        { "linkup-tunnel-", "localhost", "http", 8787,
          "http://linkup-tunnel-tiny-cow.localhost:8787" },
        { "linkup-tunnel-", "localhost", "http", 80, "http://linkup-tunnel-tiny-cow.localhost" },
        { "t-", "tunnels.example.com", "http", 443, "http://t-tiny-cow.tunnels.example.com:443" },
        /* --tunnel-scheme https behind a TLS proxy: its default port is left out. */
        { "t-", "tunnels.example.com", "https", 443, "https://t-tiny-cow.tunnels.example.com" },
        { "t-", "tunnels.example.com", "https", 8443,
          "https://t-tiny-cow.tunnels.example.com:8443" },
        { "t-", "tunnels.example.com", "https", 80, "https://t-tiny-cow.tunnels.example.com:80" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct worker_tunnel_cfg cfg = { cases[i].prefix, cases[i].domain, cases[i].scheme,
                                         cases[i].port };
        struct lk_buf out = LK_BUF_INIT;
        worker_tunnel_url(&cfg, "tiny-cow", &out);
        CHECK_STR_EQ(out.data, cases[i].want);
        lk_buf_release(&out);
    }
}

static void test_tunnel_host_session(void)
{
    static const struct {
        const char *host;
        const char *session; /* NULL: not a tunnel host */
    } cases[] = {
        { "linkup-tunnel-tiny-cow.localhost", "tiny-cow" },
        { "LINKUP-TUNNEL-Tiny-Cow.LOCALHOST", "Tiny-Cow" },
        { "linkup-tunnel-a.b.localhost", "a.b" },
        { "linkup-tunnel-.localhost", NULL },
        { "linkup-tunnel-x.localhostx", NULL },
        { "linkup-tunnel-xlocalhost", NULL },
        { "tiny-cow.localhost", NULL },
        { "localhost", NULL },
        { "", NULL },
    };
    struct worker_tunnel_cfg cfg = { "linkup-tunnel-", "localhost", "http", 8787 };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_str s = LK_STR_NULL;
        bool is = worker_tunnel_host_session(&cfg, lk_str_c(cases[i].host), &s);
        CHECK_INT_EQ(is, cases[i].session != NULL);
        if (is && cases[i].session)
            CHECK_MEM_EQ(s.ptr, s.len, cases[i].session, strlen(cases[i].session));
    }
}

static const char *json_str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void test_tunnel_upsert_record(void)
{
    struct worker_store *st = open_store("memory");
    struct worker_tunnel_cfg cfg = { "linkup-tunnel-", "localhost", "http", 8787 };
    struct lk_buf j1 = LK_BUF_INIT;
    struct lk_buf j2 = LK_BUF_INIT;
    struct lk_buf url = LK_BUF_INIT;
    CHECK_INT_EQ(worker_tunnel_upsert(&st->tunnels, &cfg, "tiny-cow", 1000, &j1, &url, NULL), 0);
    CHECK_STR_EQ(url.data, "http://linkup-tunnel-tiny-cow.localhost:8787");
    json_t *a = json_loads(j1.data, JSON_PRESERVE_ORDER, NULL);
    CHECK(a != NULL);
    const char *order[] = {
        "account_id", "name", "url", "id", "secret", "last_started", "provider"
    };
    size_t k = 0;
    const char *key;
    json_t *val;
    json_object_foreach(a, key, val)
    {
        CHECK(k < LK_ARRAY_LEN(order) && strcmp(key, order[k]) == 0);
        k++;
    }
    CHECK_INT_EQ(k, LK_ARRAY_LEN(order));
    CHECK_STR_EQ(json_str(a, "account_id"), "");
    CHECK_STR_EQ(json_str(a, "name"), "linkup-tunnel-tiny-cow");
    CHECK_STR_EQ(json_str(a, "provider"), "linkup");
    CHECK_INT_EQ(strlen(json_str(a, "id")), 36);
    CHECK(json_str(a, "id")[14] == '4');
    CHECK_INT_EQ(strlen(json_str(a, "secret")), 44);
    CHECK_INT_EQ(json_integer_value(json_object_get(a, "last_started")), 1000);
    /* Upsert again: same id and secret, new last_started. */
    CHECK_INT_EQ(worker_tunnel_upsert(&st->tunnels, &cfg, "tiny-cow", 2000, &j2, NULL, NULL), 0);
    json_t *b = json_loads(j2.data, 0, NULL);
    CHECK_STR_EQ(json_str(b, "id"), json_str(a, "id"));
    CHECK_STR_EQ(json_str(b, "secret"), json_str(a, "secret"));
    CHECK_INT_EQ(json_integer_value(json_object_get(b, "last_started")), 2000);
    /* A broken record is replaced. */
    lk_kv_put(&st->tunnels, "linkup-tunnel-x", "garbage", 7, NULL);
    lk_buf_reset(&j2);
    CHECK_INT_EQ(worker_tunnel_upsert(&st->tunnels, &cfg, "x", 3000, &j2, NULL, NULL), 0);
    CHECK(strstr(j2.data, "\"last_started\":3000") != NULL);
    json_decref(a);
    json_decref(b);
    lk_buf_release(&url);
    lk_buf_release(&j2);
    lk_buf_release(&j1);
    worker_store_free(st);
}

/* A kv over another whose put_if first finds `intruder` stored under the key
 * by another worker (once): the compare-and-set is refused as the shared
 * store would refuse it. */
struct racing_kv {
    struct lk_kv *inner;
    const char *intruder;
    int races;
};

static int racing_get(void *ctx, const char *key, struct lk_buf *value, struct lk_buf *err)
{
    return lk_kv_get(((struct racing_kv *)ctx)->inner, key, value, err);
}

/* A plain write: the other worker's own plain write lands right after it. */
static int racing_put(void *ctx, const char *key, const char *value, size_t len, struct lk_buf *err)
{
    struct racing_kv *r = ctx;
    int rc = lk_kv_put(r->inner, key, value, len, err);
    if (r->races > 0) {
        r->races--;
        lk_kv_put(r->inner, key, r->intruder, strlen(r->intruder), NULL);
    }
    return rc;
}

static int racing_put_if(void *ctx, const char *key, const char *expect, size_t expect_len,
                         const char *value, size_t len, struct lk_buf *err)
{
    struct racing_kv *r = ctx;
    if (r->races > 0) {
        r->races--;
        lk_kv_put(r->inner, key, r->intruder, strlen(r->intruder), NULL);
    }
    return lk_kv_put_if(r->inner, key, expect, expect_len, value, len, err);
}

/* SPEC §4.8 with workers sharing a store: an upsert whose write loses to
 * another worker's (a new record, or a refresh) answers with the record
 * stored, never with an id and secret the store does not hold. */
static void test_tunnel_upsert_race(void)
{
    static const struct lk_kv_ops ops = { racing_get, NULL, racing_put, NULL,
                                          NULL,       NULL, NULL,       racing_put_if };
    struct worker_store *st = open_store("memory");
    struct worker_tunnel_cfg cfg = { "linkup-tunnel-", "localhost", "http", 8787 };
    static const char theirs[] =
        "{\"account_id\":\"\",\"name\":\"linkup-tunnel-tiny-cow\",\"url\":"
        "\"http://linkup-tunnel-tiny-cow.localhost:8787\",\"id\":"
        "\"11111111-2222-4333-8444-555555555555\",\"secret\":"
        "\"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=\",\"last_started\":1500,"
        "\"provider\":\"linkup\"}";
    struct racing_kv r = { &st->tunnels, theirs, 1 };
    struct lk_kv kv = { &ops, &r };
    struct lk_buf out = LK_BUF_INIT, stored = LK_BUF_INIT;
    /* A new tunnel: another worker created the record first. */
    CHECK_INT_EQ(worker_tunnel_upsert(&kv, &cfg, "tiny-cow", 1000, &out, NULL, NULL), 0);
    CHECK_INT_EQ(lk_kv_get(&st->tunnels, "linkup-tunnel-tiny-cow", &stored, NULL), 0);
    CHECK_STR_EQ(out.data, stored.data);
    CHECK_STR_EQ(stored.data, theirs);
    /* A refresh losing to another refresh of the same id and secret. */
    lk_buf_reset(&out);
    lk_buf_reset(&stored);
    r.races = 1;
    CHECK_INT_EQ(worker_tunnel_upsert(&kv, &cfg, "tiny-cow", 2000, &out, NULL, NULL), 0);
    CHECK_INT_EQ(lk_kv_get(&st->tunnels, "linkup-tunnel-tiny-cow", &stored, NULL), 0);
    CHECK_STR_EQ(out.data, stored.data);
    /* Without another writer the refresh is written. */
    lk_buf_reset(&out);
    lk_buf_reset(&stored);
    CHECK_INT_EQ(worker_tunnel_upsert(&kv, &cfg, "tiny-cow", 3000, &out, NULL, NULL), 0);
    CHECK_INT_EQ(lk_kv_get(&st->tunnels, "linkup-tunnel-tiny-cow", &stored, NULL), 0);
    CHECK_STR_EQ(out.data, stored.data);
    CHECK(strstr(stored.data, "\"last_started\":3000") != NULL);
    CHECK(strstr(stored.data, "11111111-2222-4333-8444-555555555555") != NULL);
    lk_buf_release(&out);
    lk_buf_release(&stored);
    worker_store_free(st);
}

static void test_tunnel_cleanup(void)
{
    struct worker_store *st = open_store("memory");
    struct worker_tunnel_cfg cfg = { "p-", "d", "http", 80 };
    const uint64_t now = 10 * WORKER_TUNNEL_MAX_AGE_MS;
    static const struct {
        const char *session;
        uint64_t age;
        bool kept;
    } cases[] = {
        { "fresh", 0, true },
        { "day", 86400000ULL, true },
        { "exactly", WORKER_TUNNEL_MAX_AGE_MS, true },
        { "over", WORKER_TUNNEL_MAX_AGE_MS + 1, false },
        { "ancient", 5 * WORKER_TUNNEL_MAX_AGE_MS, false },
    };
    struct lk_buf v = LK_BUF_INIT;
    size_t deleted = 99;
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++)
        worker_tunnel_upsert(&st->tunnels, &cfg, cases[i].session, now - cases[i].age, NULL, NULL,
                             NULL);
    lk_kv_put(&st->tunnels, "p-broken", "{", 1, NULL);
    CHECK_INT_EQ(worker_tunnel_cleanup(&st->tunnels, now, &deleted, NULL), 0);
    CHECK_INT_EQ(deleted, 2);
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        char key[64];
        snprintf(key, sizeof(key), "p-%s", cases[i].session);
        CHECK_INT_EQ(get_str(&st->tunnels, key, &v) == 0, cases[i].kept);
    }
    CHECK_INT_EQ(get_str(&st->tunnels, "p-broken", &v), 0);
    lk_buf_release(&v);
    worker_store_free(st);
}

int main(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/lk-worker-store-XXXXXX");
    if (mkdtemp(tmp_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    start_redis();
    RUN(test_open_rejects_bad_specs);
    RUN(test_kv_basics);
    RUN(test_put_if);
    RUN(test_session_expiry);
    RUN(test_sqlite_purge_deletes_rows);
    RUN(test_sqlite_survives_reopen);
    RUN(test_sqlite_kept_select_sees_other_connections);
    RUN(test_stamps);
    RUN(test_change_fd);
    RUN(test_redis_shared_and_ttl);
    RUN(test_redis_stalled_is_one_timeout);
    RUN(test_redis_down_is_store_error);
    RUN(test_session_cache_follows_updates);
    RUN(test_tunnel_url);
    RUN(test_tunnel_host_session);
    RUN(test_tunnel_upsert_record);
    RUN(test_tunnel_upsert_race);
    RUN(test_tunnel_cleanup);
    stop_redis();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp_dir);
    return DONE();
}
