/*
 * splice.h - moving a response body from one socket to another with
 * splice(2) through a kernel pipe, so that it never enters the process's
 * memory (docs/performance.md, findings 27 and 28).
 *
 * The proxy hands the rest of a long Content-Length body over once
 * everything it read so far has left for the client. Two movers share the
 * callback below: lk_splice_start() (this file: plain upstream socket to a
 * plain client socket) and lk_tunnel_splice_start() (tunnel_internal.h:
 * plain upstream socket into a stream of a plain built-in tunnel, behind
 * each DATA frame header).
 *
 * The callback's statuses:
 *   LK_SPLICE_MOVED        n more bytes left the upstream (progress; the
 *                          handle stays valid);
 *   LK_SPLICE_DONE         all bytes are written on (for the tunnel: framed,
 *                          ahead of anything the engine writes next);
 *   LK_SPLICE_EOF          the upstream closed before the last byte;
 *   LK_SPLICE_READ_ERROR   reading the upstream failed (errno in n);
 *   LK_SPLICE_WRITE_ERROR  writing to the client failed (errno in n): it is
 *                          gone; ETIMEDOUT when it took no byte for the
 *                          send timeout;
 *   LK_SPLICE_GONE         the tunnel stream or the tunnel went away.
 * After any status but MOVED the handle is gone (freed before the call).
 * The sockets stay the caller's: cancel the splice before closing either.
 *
 * Loop thread only.
 */
#ifndef LK_NET_SPLICE_H
#define LK_NET_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;
struct event_base;
struct timeval;

enum {
    LK_SPLICE_MOVED = 0,
    LK_SPLICE_DONE,
    LK_SPLICE_EOF,
    LK_SPLICE_READ_ERROR,
    LK_SPLICE_WRITE_ERROR,
    LK_SPLICE_GONE,
};
typedef void lk_splice_cb(void *ctx, int status, size_t n);

/* Bodies shorter than this are not worth a pipe. */
#define LK_SPLICE_MIN (128 * 1024)
/* The size asked for each splice's kernel pipe. */
#define LK_SPLICE_PIPE (256 * 1024)

struct lk_splice;

/* Moves the next len bytes of from (a non-blocking socket) to to (the
 * same), reading from's readiness and waiting for to's room on the loop;
 * the first move happens from the loop, never inside this call. When to
 * takes no byte for *send_tv (NULL or unset: no limit; the server passes its
 * common timeout) while the pipe holds some, the splice ends with
 * LK_SPLICE_WRITE_ERROR, ETIMEDOUT. NULL when no pipe can be had
 * (lk_splice_pipe()): the caller copies as before. */
struct lk_splice *lk_splice_start(struct event_base *base, int from, int to, uint64_t len,
                                  const struct timeval *send_tv, lk_splice_cb *cb, void *ctx);
/* Ends a splice early; no callback follows. */
void lk_splice_cancel(struct lk_splice *s);
/* True while the splice waits for the upstream (not for the client to take
 * what the pipe holds): for the proxy's upstream idle timeout. */
bool lk_splice_reading(const struct lk_splice *s);

/* One splice(2) of at most room bytes, and no more than *left, from the
 * socket from into a pipe's write end: the step both movers read the
 * upstream with. LK_SPLICE_MOVED with *n the bytes moved (*left goes down by
 * as much; 0 when there was no room or nothing to read now: a socket with
 * nothing, or a pipe out of slots, which hold pages, not bytes),
 * LK_SPLICE_EOF, or LK_SPLICE_READ_ERROR with the errno in *n. */
int lk_splice_fill(int from, int pipe_w, size_t room, uint64_t *left, size_t *n);

/* Splices what a pipe holds (*in_pipe bytes, from its read end pipe_r) to
 * the socket to until the pipe is empty or to is full: the step both
 * movers write with. *in_pipe goes down and *moved up by the bytes written.
 * 0 when the pipe is empty, EAGAIN when to takes no more now, else the
 * errno of the failure (EPIPE for a socket that takes nothing). */
int lk_splice_flush(int pipe_r, int to, size_t *in_pipe, size_t *moved);

/* After lk_splice_flush() said EAGAIN: waits for the client's room with wr
 * (an EV_WRITE event on it; *added tells whether it is added), timing out
 * after *send_tv (unset: never). The timeout restarts when the client took
 * bytes (took), not when it took none: the step both movers wait with. */
void lk_splice_wait_client(struct event *wr, bool *added, bool took, const struct timeval *send_tv);

/* Bytes every lk_splice_start() splice of this process has written on (for
 * diagnostics and tests). */
uint64_t lk_splice_total_bytes(void);

/* A kernel pipe for splicing (O_NONBLOCK, O_CLOEXEC), grown to
 * LK_SPLICE_PIPE when the system allows; its size in *cap. An empty one
 * given back earlier when there is one, else a new one. -1 on failure, or
 * when LK_SPLICE_PIPES_MAX are out (every mover of the process counts). */
int lk_splice_pipe(int pfd[2], size_t *cap);
/* Gives a pipe of lk_splice_pipe() back: kept for the next splice when
 * empty (no byte written to it and not read back) and fewer than
 * LK_SPLICE_POOL are kept, else closed. */
void lk_splice_pipe_put(const int pfd[2], size_t cap, bool empty);
/* Pipes out at once, at most: each holds two descriptors, which must not
 * starve accept() of them; past this, bodies are copied. */
#define LK_SPLICE_PIPES_MAX 256
/* Empty pipes kept for reuse: saves a pipe2, an fcntl and two closes per
 * spliced body, for two idle descriptors each. */
#define LK_SPLICE_POOL 16

#endif
