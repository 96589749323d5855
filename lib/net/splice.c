/*
 * splice.c - a Content-Length body moved from the upstream socket to the
 * client socket through a kernel pipe (docs/performance.md, finding 28).
 *
 * The pipe holds in_pipe bytes taken from the upstream and not yet written
 * to the client. The upstream is read (EV_READ) while the pipe has room and
 * bytes are left; the client's EV_WRITE is watched only while it refuses
 * bytes. A splice into the pipe that returns EAGAIN means either an empty
 * socket or a pipe out of slots (they hold pages, not bytes): while the
 * pipe holds anything, reading waits for the next write to make room.
 */
#include "net/splice.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h> /* pipe2, splice */
#include <stdlib.h>
#include <unistd.h>

#include "core/alloc.h"

struct lk_splice {
    int from, to;
    uint64_t left; /* bytes still to take from the upstream */
    int pfd[2];
    size_t cap, in_pipe;
    struct event rd, wr;
    bool rd_added, wr_added;
    struct timeval send_tv; /* the client's send timeout; unset: none */
    lk_splice_cb *cb;
    void *ctx;
};

static uint64_t total_bytes; /* lk_splice_total_bytes() */
static unsigned n_out;       /* pipes handed out (LK_SPLICE_PIPES_MAX) */

/* lk_splice_pipe_put(): empty pipes, last in first out. */
static struct {
    int pfd[2];
    size_t cap;
} pool[LK_SPLICE_POOL];
static unsigned n_pool;

uint64_t lk_splice_total_bytes(void)
{
    return total_bytes;
}

int lk_splice_pipe(int pfd[2], size_t *cap)
{
    if (n_out >= LK_SPLICE_PIPES_MAX) {
        errno = EMFILE;
        return -1;
    }
    if (n_pool > 0) {
        n_pool--;
        pfd[0] = pool[n_pool].pfd[0];
        pfd[1] = pool[n_pool].pfd[1];
        *cap = pool[n_pool].cap;
        n_out++;
        return 0;
    }
    if (pipe2(pfd, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    int n = fcntl(pfd[1], F_SETPIPE_SZ, LK_SPLICE_PIPE);
    if (n < 0)
        n = fcntl(pfd[1], F_GETPIPE_SZ); /* over the user's pipe allowance */
    if (n <= 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    *cap = (size_t)n;
    n_out++;
    return 0;
}

void lk_splice_pipe_put(const int pfd[2], size_t cap, bool empty)
{
    n_out--;
    if (empty && n_pool < LK_SPLICE_POOL) {
        pool[n_pool].pfd[0] = pfd[0];
        pool[n_pool].pfd[1] = pfd[1];
        pool[n_pool].cap = cap;
        n_pool++;
        return;
    }
    close(pfd[0]);
    close(pfd[1]);
}

int lk_splice_fill(int from, int pipe_w, size_t room, uint64_t *left, size_t *n)
{
    *n = 0;
    if ((uint64_t)room > *left)
        room = (size_t)*left;
    if (room == 0)
        return LK_SPLICE_MOVED;
    ssize_t got = splice(from, NULL, pipe_w, NULL, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (got == 0)
        return LK_SPLICE_EOF;
    if (got < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return LK_SPLICE_MOVED;
        *n = (size_t)errno;
        return LK_SPLICE_READ_ERROR;
    }
    *n = (size_t)got;
    *left -= (uint64_t)got;
    return LK_SPLICE_MOVED;
}

int lk_splice_flush(int pipe_r, int to, size_t *in_pipe, size_t *moved)
{
    while (*in_pipe > 0) {
        ssize_t n = splice(pipe_r, NULL, to, NULL, *in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            *in_pipe -= (size_t)n;
            *moved += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return EAGAIN;
        return n < 0 ? errno : EPIPE;
    }
    return 0;
}

void lk_splice_wait_client(struct event *wr, bool *added, bool took, const struct timeval *send_tv)
{
    if (!*added || took) /* (re)adding restarts the timeout */
        event_add(wr, evutil_timerisset(send_tv) ? send_tv : NULL);
    *added = true;
}

static void watch(struct event *ev, bool *added, bool on)
{
    if (on && !*added)
        event_add(ev, NULL);
    else if (!on && *added)
        event_del(ev);
    *added = on;
}

static void splice_free(struct lk_splice *s)
{
    event_del(&s->rd);
    event_del(&s->wr);
    lk_splice_pipe_put(s->pfd, s->cap, s->in_pipe == 0);
    free(s);
}

/* Ends the splice and tells the caller; s is gone after. */
static void end(struct lk_splice *s, int status, int err)
{
    lk_splice_cb *cb = s->cb;
    void *ctx = s->ctx;
    splice_free(s);
    cb(ctx, status, (size_t)err);
}

/* Writes what the pipe holds; false when s ended. */
static bool drain(struct lk_splice *s)
{
    size_t moved = 0;
    int err = lk_splice_flush(s->pfd[0], s->to, &s->in_pipe, &moved);
    total_bytes += moved;
    if (err == EAGAIN) {
        lk_splice_wait_client(&s->wr, &s->wr_added, moved > 0, &s->send_tv);
        return true;
    }
    if (err != 0) {
        end(s, LK_SPLICE_WRITE_ERROR, err);
        return false;
    }
    watch(&s->wr, &s->wr_added, false);
    if (s->left == 0) {
        end(s, LK_SPLICE_DONE, 0);
        return false;
    }
    return true;
}

/* Takes what the upstream has, up to the pipe's room and the bytes left,
 * then writes it on. */
static void pump(struct lk_splice *s)
{
    if (!drain(s))
        return;
    size_t n = 0;
    int status = lk_splice_fill(s->from, s->pfd[1], s->cap - s->in_pipe, &s->left, &n);
    if (status != LK_SPLICE_MOVED) {
        end(s, status, (int)n);
        return;
    }
    /* Nothing moved: while the pipe holds anything, the client's EV_WRITE
     * calls again once it took some (the pipe may be out of room). */
    watch(&s->rd, &s->rd_added, s->left > 0 && (n > 0 || s->in_pipe == 0));
    if (n == 0)
        return;
    s->in_pipe += n;
    s->cb(s->ctx, LK_SPLICE_MOVED, n);
    drain(s);
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    if (what & EV_TIMEOUT) { /* only wr has one: the client took nothing */
        end(arg, LK_SPLICE_WRITE_ERROR, ETIMEDOUT);
        return;
    }
    pump(arg);
}

struct lk_splice *lk_splice_start(struct event_base *base, int from, int to, uint64_t len,
                                  const struct timeval *send_tv, lk_splice_cb *cb, void *ctx)
{
    if (len == 0)
        return NULL;
    struct lk_splice *s = lk_xcalloc(1, sizeof(*s));
    if (lk_splice_pipe(s->pfd, &s->cap) != 0) {
        free(s);
        return NULL;
    }
    s->from = from;
    s->to = to;
    s->left = len;
    s->cb = cb;
    s->ctx = ctx;
    if (send_tv != NULL)
        s->send_tv = *send_tv;
    event_assign(&s->rd, base, from, EV_READ | EV_PERSIST, on_event, s);
    event_assign(&s->wr, base, to, EV_WRITE | EV_PERSIST, on_event, s);
    watch(&s->rd, &s->rd_added, true);
    return s;
}

void lk_splice_cancel(struct lk_splice *s)
{
    if (s != NULL)
        splice_free(s);
}

bool lk_splice_reading(const struct lk_splice *s)
{
    return s->rd_added;
}
