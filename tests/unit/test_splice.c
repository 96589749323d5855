/*
 * test_splice.c - lib/net/splice.h on its own: the pipe pool, one
 * lk_splice_fill() step, lk_splice_flush(), and a splice between two socket pairs driven by a
 * libevent loop in this thread (done; upstream EOF; a client that takes
 * nothing for the send timeout).
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "net/splice.h"

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

static void nonblocking_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        abort();
    for (int i = 0; i < 2; i++)
        fcntl(sv[i], F_SETFL, fcntl(sv[i], F_GETFL) | O_NONBLOCK);
}

static void test_pipe_pool(void)
{
    int a[2], b[2], c[2];
    size_t cap = 0, cap2 = 0;
    CHECK_INT_EQ(lk_splice_pipe(a, &cap), 0);
    CHECK(cap >= 4096);
    /* An empty pipe given back is the next one handed out. */
    lk_splice_pipe_put(a, cap, true);
    CHECK(fd_open(a[0]) && fd_open(a[1]));
    CHECK_INT_EQ(lk_splice_pipe(b, &cap2), 0);
    CHECK_INT_EQ(b[0], a[0]);
    CHECK_INT_EQ(b[1], a[1]);
    CHECK_INT_EQ(cap2, cap);
    /* One that holds bytes is closed, never reused. */
    CHECK_INT_EQ(write(b[1], "x", 1), 1);
    lk_splice_pipe_put(b, cap2, false);
    CHECK(!fd_open(b[0]) && !fd_open(b[1]));
    /* At most LK_SPLICE_POOL are kept; the rest are closed. */
    int many[LK_SPLICE_POOL + 2][2];
    size_t caps[LK_SPLICE_POOL + 2];
    for (int i = 0; i < LK_SPLICE_POOL + 2; i++)
        CHECK_INT_EQ(lk_splice_pipe(many[i], &caps[i]), 0);
    for (int i = 0; i < LK_SPLICE_POOL + 2; i++)
        lk_splice_pipe_put(many[i], caps[i], true);
    for (int i = 0; i < LK_SPLICE_POOL + 2; i++) {
        bool kept = i < LK_SPLICE_POOL;
        CHECK(fd_open(many[i][0]) == kept);
    }
    /* Drain the pool so later tests start from nothing. */
    for (int i = 0; i < LK_SPLICE_POOL; i++) {
        CHECK_INT_EQ(lk_splice_pipe(c, &cap), 0);
        lk_splice_pipe_put(c, cap, false);
    }
    /* No more than LK_SPLICE_PIPES_MAX are out at once; one given back
     * makes room for the next. */
    static int out[LK_SPLICE_PIPES_MAX][2];
    static size_t out_cap[LK_SPLICE_PIPES_MAX];
    for (int i = 0; i < LK_SPLICE_PIPES_MAX; i++)
        CHECK_INT_EQ(lk_splice_pipe(out[i], &out_cap[i]), 0);
    CHECK_INT_EQ(lk_splice_pipe(c, &cap), -1);
    CHECK_INT_EQ(errno, EMFILE);
    lk_splice_pipe_put(out[0], out_cap[0], false);
    CHECK_INT_EQ(lk_splice_pipe(out[0], &out_cap[0]), 0);
    for (int i = 0; i < LK_SPLICE_PIPES_MAX; i++)
        lk_splice_pipe_put(out[i], out_cap[i], false);
}

static void test_fill(void)
{
    int sv[2], p[2];
    size_t cap = 0, n = 0;
    nonblocking_pair(sv);
    CHECK_INT_EQ(lk_splice_pipe(p, &cap), 0);
    uint64_t left = 5;
    /* Nothing to read yet: moved, 0 bytes. */
    CHECK_INT_EQ(lk_splice_fill(sv[1], p[1], cap, &left, &n), LK_SPLICE_MOVED);
    CHECK_INT_EQ(n, 0);
    /* At most left bytes, however many wait. */
    CHECK_INT_EQ(write(sv[0], "abcdefgh", 8), 8);
    CHECK_INT_EQ(lk_splice_fill(sv[1], p[1], cap, &left, &n), LK_SPLICE_MOVED);
    CHECK_INT_EQ(n, 5);
    CHECK_INT_EQ(left, 0);
    char got[8];
    CHECK_INT_EQ(read(p[0], got, sizeof(got)), 5);
    CHECK_MEM_EQ(got, 5, "abcde", 5);
    /* The peer's close is EOF. */
    left = 10;
    char rest[3];
    CHECK_INT_EQ(read(sv[1], rest, 3), 3);
    close(sv[0]);
    CHECK_INT_EQ(lk_splice_fill(sv[1], p[1], cap, &left, &n), LK_SPLICE_EOF);
    close(sv[1]);
    lk_splice_pipe_put(p, cap, true);
}

struct run {
    struct event_base *base;
    int last;
    size_t last_n;
    uint64_t moved;
};

static void on_status(void *ctx, int status, size_t n)
{
    struct run *r = ctx;
    if (status == LK_SPLICE_MOVED) {
        r->moved += n;
        return;
    }
    r->last = status;
    r->last_n = n;
    event_base_loopbreak(r->base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Runs base until the splice ends or secs pass. */
static void run_loop(struct run *r, int secs)
{
    struct event *deadline = evtimer_new(r->base, on_deadline, r->base);
    struct timeval tv = { .tv_sec = secs };
    evtimer_add(deadline, &tv);
    event_base_dispatch(r->base);
    event_free(deadline);
}

/* Writes what fd takes, up to left bytes in all. */
struct feeder {
    int fd;
    uint64_t left;
    struct event *ev;
};

static void on_feed(evutil_socket_t fd, short what, void *arg)
{
    static char block[65536];
    struct feeder *f = arg;
    (void)what;
    size_t k = f->left < sizeof(block) ? (size_t)f->left : sizeof(block);
    ssize_t n = write(fd, block, k);
    if (n > 0)
        f->left -= (uint64_t)n;
    if (f->left == 0)
        event_del(f->ev);
}

static void test_flush(void)
{
    int pfd[2], sv[2];
    size_t cap = 0, in_pipe = 0, moved = 0;
    CHECK_INT_EQ(lk_splice_pipe(pfd, &cap), 0);
    nonblocking_pair(sv);
    /* An empty pipe: nothing to do. */
    CHECK_INT_EQ(lk_splice_flush(pfd[0], sv[0], &in_pipe, &moved), 0);
    CHECK_INT_EQ(moved, 0);
    /* Everything the pipe holds goes out. */
    static char block[65536];
    memset(block, 'f', sizeof(block));
    CHECK_INT_EQ(write(pfd[1], block, 1000), 1000);
    in_pipe = 1000;
    CHECK_INT_EQ(lk_splice_flush(pfd[0], sv[0], &in_pipe, &moved), 0);
    CHECK_INT_EQ(in_pipe, 0);
    CHECK_INT_EQ(moved, 1000);
    char got[2000];
    CHECK_INT_EQ(read(sv[1], got, sizeof(got)), 1000);
    /* A socket that takes no more: EAGAIN, with what it took counted. */
    while (write(sv[0], block, sizeof(block)) > 0)
        ;
    CHECK_INT_EQ(write(pfd[1], block, 1000), 1000);
    in_pipe = 1000;
    moved = 0;
    CHECK_INT_EQ(lk_splice_flush(pfd[0], sv[0], &in_pipe, &moved), EAGAIN);
    CHECK_INT_EQ(in_pipe + moved, 1000);
    /* A socket whose peer is gone: the errno. */
    close(sv[1]);
    CHECK_INT_EQ(lk_splice_flush(pfd[0], sv[0], &in_pipe, &moved), EPIPE);
    close(sv[0]);
    lk_splice_pipe_put(pfd, cap, false);
}

/* from: up[1] (the test writes up[0]); to: down[0] (the test reads down[1]). */
static void test_mover(void)
{
    struct run r = { .base = event_base_new(), .last = -1 };
    int up[2], down[2];
    nonblocking_pair(up);
    nonblocking_pair(down);
    /* Everything through: DONE once the last byte is written on. */
    static char block[65536];
    memset(block, 'm', sizeof(block));
    CHECK_INT_EQ(write(up[0], block, 1000), 1000);
    struct lk_splice *s = lk_splice_start(r.base, up[1], down[0], 1000, NULL, on_status, &r);
    CHECK(s != NULL);
    run_loop(&r, 5);
    CHECK_INT_EQ(r.last, LK_SPLICE_DONE);
    CHECK_INT_EQ(r.moved, 1000);
    char got[2000];
    CHECK_INT_EQ(read(down[1], got, sizeof(got)), 1000);
    /* The upstream closes early: EOF. */
    r.last = -1;
    r.moved = 0;
    s = lk_splice_start(r.base, up[1], down[0], 1000, NULL, on_status, &r);
    CHECK(s != NULL);
    CHECK_INT_EQ(write(up[0], block, 10), 10);
    shutdown(up[0], SHUT_WR);
    run_loop(&r, 5);
    CHECK_INT_EQ(r.last, LK_SPLICE_EOF);
    CHECK_INT_EQ(r.moved, 10);
    close(up[0]);
    close(up[1]);
    /* A client that takes nothing: WRITE_ERROR, ETIMEDOUT, 300 ms after
     * the last byte it took. The upstream keeps offering bytes. */
    nonblocking_pair(up);
    r.last = -1;
    r.moved = 0;
    struct feeder f = { .fd = up[0], .left = 64u << 20 };
    f.ev = event_new(r.base, up[0], EV_WRITE | EV_PERSIST, on_feed, &f);
    event_add(f.ev, NULL);
    struct timeval send_tv = { 0, 300 * 1000 };
    s = lk_splice_start(r.base, up[1], down[0], f.left, &send_tv, on_status, &r);
    CHECK(s != NULL);
    run_loop(&r, 10);
    event_free(f.ev);
    CHECK_INT_EQ(r.last, LK_SPLICE_WRITE_ERROR);
    CHECK_INT_EQ(r.last_n, ETIMEDOUT);
    CHECK(r.moved > 0 && r.moved < (64u << 20));
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
    event_base_free(r.base);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(30);
    RUN(test_pipe_pool);
    RUN(test_fill);
    RUN(test_flush);
    RUN(test_mover);
    return DONE();
}
