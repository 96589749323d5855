/*
 * tunnel.c - one tunnel connection: an nghttp2 session over an upgraded
 * bufferevent, and one pipe per stream joining the stream to a bufferevent
 * pair (in memory, no fd) whose other end belongs to the HTTP/1.1 engine.
 *
 * Invariants: nghttp2_session_send() runs only from libevent callbacks
 * (flush()), never inside an nghttp2 callback. Pair callbacks are always
 * deferred (libevent forces BEV_OPT_DEFER_CALLBACKS on pairs), so neither
 * side's code re-enters the other's. Received DATA is given back to the
 * flow-control windows only once it has left the pipe's output buffer for
 * the engine's input buffer (at once while the engine reads and its input is
 * under its read watermark, else from the pipe write callback), so a slow
 * reader stalls its own stream and nothing is buffered without bound. A
 * half-close or close of either end is passed as BEV_EVENT_EOF to the other
 * (bufferevent_flush(BEV_FINISHED): lk_net_shutdown_write(),
 * lk_net_bev_free()); a pipe whose engine end is gone aborts its stream when
 * DATA still arrives for it, as a write to a closed socket would fail. An
 * error joined to the engine end's EOF (a WebSocket whose upstream failed)
 * becomes RST_STREAM CANCEL after the last bytes, and on the worker side a
 * CANCEL on a stream that carries a WebSocket becomes an error after the
 * bytes received (RFC 8441 §5). A dying connection is only marked
 * (lk_tunnel_kill); its owner frees it from the deferred closed callback.
 *
 * Data path (docs/performance.md, finding 12): the engine's bytes move into
 * the pipe's input buffer (chains moved, not copied) up to PIPE_READ_MAX,
 * and leave it only when nghttp2 asks for the next DATA frame, without a
 * copy: the frame header and the pipe's evbuffer chains are moved into one
 * staging evbuffer, written to the tunnel socket inline when nothing is
 * queued before them. So what one tunnel holds on the sending side is
 * bounded by out_buffer_max plus one frame, whatever the number of streams;
 * on the receiving side by conn_window. A plain tunnel socket is read by our
 * own EV_READ event in 64 KiB reads instead of libevent's 4 KiB ones.
 */
#include "net/tunnel.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <fcntl.h> /* splice */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "net/http_internal.h"
#include "net/log.h"
#include "net/tunnel_internal.h"

/* Largest DATA frame we send and accept (SETTINGS_MAX_FRAME_SIZE; the
 * protocol default is 16 KiB): one frame per pull from a pipe. */
#define FRAME_MAX (256 * 1024)
/* What a pipe's input buffer takes from the engine before the pair stops
 * moving bytes (its read high watermark): one full frame. The rest waits in
 * the engine's output, under the engine's own limits. */
#define PIPE_READ_MAX FRAME_MAX
/* Received DATA is copied into a pipe's output in pieces of at most this
 * size, so that each evbuffer chain (data + header, rounded up to a power of
 * two) is a 64 KiB allocation: a 64 KiB chunk would make a 128 KiB chain, at
 * malloc's mmap threshold, and cost an mmap/munmap or brk trim per chunk
 * (as READ_CHUNK in io.c). */
#define PIPE_ADD_MAX (64 * 1024 - 256)
/* Bytes read from a plain tunnel socket per read event. */
#define TUNNEL_READ_MAX (256 * 1024)
/* Frames taken per read event while rx splices run (on_tunnel_readable). */
#define RX_FRAMES_PER_EVENT 8
/* nghttp2_session_send() rounds per flush() before the rest is left to the
 * loop (fairness towards the other connections). */
#define FLUSH_ROUNDS 16
/* Splices (both kinds) one tunnel runs at once; the process's pipes are
 * capped as well (LK_SPLICE_PIPES_MAX). */
#define SPLICE_MAX 128
/* How long a bare END_STREAM that only completes a stream's close (the
 * peer closed its side already) may wait for other frames to leave with. */
#define LAZY_CLOSE_MS 2

struct lk_tunnel_pipe {
    struct lk_tunnel *t;
    struct lk_tunnel_pipe *prev, *next;
    int32_t stream_id;       /* 0 once the HTTP/2 stream is closed */
    struct bufferevent *bev; /* our pair end (written through; read by the data
                                provider); NULL once closed */
    size_t unconsumed;       /* DATA bytes queued in bev, window not yet released */
    bool in_eof;             /* the engine shut its side: END_STREAM after the input */
    bool out_eof;            /* the peer sent END_STREAM: shut our side after the output */
    bool out_shut;
    bool deferred;   /* the data provider waits for input */
    bool unanswered; /* local side: ":status 200" waits for the first bytes */
    bool lazy;       /* a bare END_STREAM waits for other frames (t->n_lazy) */
    bool lazy_done;
    /* The engine's end reported an error with its EOF (lk_net_pair_error():
     * the WebSocket upstream of the local engine failed): once the input
     * has left as DATA, the stream is reset with CANCEL instead of ended
     * (cancel_when_flushed(); cancel: the reset was submitted). */
    bool in_err, cancel;
    /* Worker side: the exchange on the stream became a byte tunnel
     * (lk_tunnel_stream_relaying()): a CANCEL from the peer reaches the
     * engine as an error after the bytes received before it. */
    bool relaying;
    bool bad;                    /* request or response envelope rejected */
    struct lk_tunnel_splice *sp; /* a body spliced in from the origin, or NULL */
    struct lk_tunnel_splice *rx; /* a body spliced out to the client, or NULL */
    bool sp_frame;               /* the DATA frame being sent comes from sp's pipe */
    /* On the posted list while posted_at is set (the link that points at
     * us): the engine moved bytes in during its current callback
     * (lk_tunnel_flush_posted()). */
    struct lk_tunnel_pipe *posted_next, **posted_at;
};

/* A response body moved by splice(2) through a kernel pipe, one of two
 * kinds. Sending (lk_tunnel_splice_start, local side): from the origin
 * socket into the stream; the pipe holds, in order, the payload of a frame
 * being written (t->out_left, when t->out_sp is this one) and in_pipe bytes
 * not framed yet. Receiving (rx, lk_tunnel_splice_to, worker side): from
 * the stream to the client socket; the pipe holds in_pipe bytes of DATA
 * payload not written to the client yet, and ovf what came in through
 * memory while the pipe had no room (it goes into the pipe first). */
struct lk_tunnel_splice {
    struct lk_tunnel *t;
    struct lk_tunnel_pipe *p; /* NULL once released (the engine or the stream let go) */
    uint64_t left;            /* bytes still to take from the origin socket / the stream */
    int pfd[2];
    size_t cap;        /* the pipe's size */
    size_t in_pipe;    /* bytes in the pipe not framed yet / not written yet */
    struct event rd;   /* EV_READ on the origin socket (the engine's); unused by rx */
    struct event note; /* the end, told from the loop */
    bool rd_added;
    int status; /* LK_SPLICE_MOVED while running */
    int err;
    lk_splice_cb *cb;
    void *ctx;
    /* rx only */
    bool rx;
    bool eof;        /* the stream ended before the last byte came */
    bool wr_added;   /* wr waits for the client to take bytes */
    int to;          /* the client socket (the engine's) */
    struct event wr; /* EV_WRITE on it, with the send timeout */
    struct timeval send_tv;
    struct evbuffer *ovf; /* payload read into memory while the pipe was full */
    size_t held;          /* bytes in the pipe and ovf whose window is not given back */
};

struct lk_tunnel {
    struct event_base *base;
    struct bufferevent *bev;
    bool plain;            /* bev is a plain socket: own reads, inline writes */
    struct event read_ev;  /* our EV_READ on a plain bev's socket */
    struct evbuffer *wbuf; /* frames of the current flush(), not yet written */
    nghttp2_session *h2;
    struct lk_tunnel_opts opts;
    bool is_h2_client;
    char label[96];
    char pool_key[128]; /* lk_tunnel_pool_key() */
    struct lk_http_server *adopt_into;
    struct lk_tunnel_pipe *pipes;
    size_t n_pipes, n_streams;
    size_t n_lazy; /* pipes whose bare END_STREAM waits (on_data_source) */
    struct event ping_timer, close_ev, flush_ev;
    struct event lazy_ev; /* flushes a lazily closed stream's END_STREAM */
    struct timeval last_recv;
    struct timeval last_ping; /* when our last PING went out (or the start) */
    /* A DATA frame whose payload is spliced from a pipe: its header and
     * out_left payload bytes go to the socket before anything else. */
    struct lk_tunnel_splice *out_sp;
    size_t out_left;
    uint8_t out_hd[9];
    size_t out_hd_off;
    struct event wr_ev; /* EV_WRITE on a plain socket while out_sp waits */
    size_t n_splices;
    uint64_t spliced; /* payload bytes written by splice_out() and rx splices */
    /* Receiving splices (worker side of a plain tunnel): where the bytes
     * given to nghttp2 stand in the frame layout, so that the payload of a
     * DATA frame for an rx splice's stream is spliced off the socket instead
     * of read (rx_splice_payload). */
    bool track;
    uint8_t rx_hd[9]; /* the header being read ... */
    size_t rx_hd_n;   /* ... and how much of it is in */
    uint32_t rx_need; /* payload bytes of the current frame still to come */
    uint8_t rx_type, rx_flags;
    int32_t rx_sid;
    size_t n_rx;                      /* rx splices running */
    bool rx_faking;                   /* nghttp2 is fed zeros for spliced payload ... */
    struct lk_tunnel_splice *rx_fake; /* ... of this splice (NULL once it went) */
    size_t rx_fake_got;               /* ... and gave this many to its stream */
    bool dead;
    char why[160];
    /* GOAWAY (RFC 9113 §6.8): we are going away (lk_tunnel_go_away) /
     * our GOAWAY with the last stream we took is queued (streams the peer
     * opens from then on are refused; on the local side this follows a
     * round trip after a notice, go_away_final()) / the peer sent one (no
     * new stream of ours: lk_tunnel_connect refuses). Either way the
     * connection closes by itself once no stream is left and everything is
     * written. */
    bool going_away, goaway_final, peer_going_away;
    bool holding; /* a hold on adopt_into (lk_http_server_hold): between notice and final */
    uint32_t goaway_error; /* a GOAWAY with an error that nghttp2 sent (the peer broke HTTP/2) */
    lk_tunnel_closed_cb *on_closed;
    lk_tunnel_goaway_cb *on_goaway;
    void *data;
};

void lk_tunnel_opts_init(struct lk_tunnel_opts *o)
{
    o->ping_interval_ms = 15000;
    o->dead_after_ms = 45000;
    /* A 1 MiB body crosses in one window: no WINDOW_UPDATE round trips
     * mid-body (finding 36); the connection's window still bounds a tunnel. */
    o->stream_window = 1024 * 1024;
    o->conn_window = 16 * 1024 * 1024;
    o->max_streams = 1024;
    o->out_buffer_max = 1024 * 1024;
}

bool lk_tunnel_secret_eq(const char *a, size_t a_len, const char *b, size_t b_len)
{
    if (a == NULL || b == NULL)
        return a == b;
    /* Walk the expected length whatever the given one, so the time tells
     * nothing about where the first difference is. */
    volatile unsigned char diff = a_len != b_len;
    for (size_t i = 0; i < a_len; i++)
        diff |= (unsigned char)a[i] ^ (unsigned char)(i < b_len ? b[i] : 0);
    return diff == 0;
}

size_t lk_tunnel_n_streams(const struct lk_tunnel *t)
{
    return t->n_streams;
}

uint64_t lk_tunnel_spliced_bytes(const struct lk_tunnel *t)
{
    return t->spliced;
}

const char *lk_tunnel_pool_key(const struct lk_tunnel *t)
{
    return t->pool_key;
}

static long long ms_since(const struct timeval *then)
{
    struct timeval now;
    evutil_gettimeofday(&now, NULL);
    return (long long)(now.tv_sec - then->tv_sec) * 1000 + (now.tv_usec - then->tv_usec) / 1000;
}

/* Ends the hold that lets a draining engine wait for streams crossing our
 * GOAWAY notice (lk_tunnel_go_away()). */
static void drop_hold(struct lk_tunnel *t)
{
    if (t->holding) {
        t->holding = false;
        lk_http_server_release(&t->adopt_into);
    }
}

void lk_tunnel_kill(struct lk_tunnel *t, const char *why)
{
    if (t->dead)
        return;
    t->dead = true;
    drop_hold(t);
    snprintf(t->why, sizeof(t->why), "%s", why);
    LK_LOG(DEBUG, "tunnel %s: closing: %s", t->label, why);
    bufferevent_disable(t->bev, EV_READ | EV_WRITE);
    event_del(&t->read_ev);
    event_del(&t->wr_ev);
    event_active(&t->close_ev, EV_TIMEOUT, 0);
}

static size_t queued_out(const struct lk_tunnel *t)
{
    return evbuffer_get_length(t->wbuf) + evbuffer_get_length(bufferevent_get_output(t->bev));
}

/* Lets every waiting bare END_STREAM go (see on_data_source). */
static void resume_lazy(struct lk_tunnel *t)
{
    event_del(&t->lazy_ev);
    for (struct lk_tunnel_pipe *p = t->pipes; p != NULL && t->n_lazy > 0; p = p->next) {
        if (!p->lazy)
            continue;
        p->lazy = false;
        p->lazy_done = true;
        p->deferred = false;
        t->n_lazy--;
        if (p->stream_id != 0)
            nghttp2_session_resume_data(t->h2, p->stream_id);
    }
}

static bool splice_out(struct lk_tunnel *t);

/* Pipes the engine moved bytes into during its current callback
 * (on_pipe_input), newest first. Loop thread only, as everything here. */
static struct lk_tunnel_pipe *posted;
/* An nghttp2 send or receive pass is running: posted pipes wait for the
 * pair's deferred read callback instead (nothing may re-enter nghttp2). */
static int driving;
/* Pipes lk_tunnel_flush_posted() woke, local side [0] and worker side [1]. */
static uint64_t n_posted_sent[2];

static void unpost(struct lk_tunnel_pipe *p)
{
    if (p->posted_at == NULL)
        return;
    *p->posted_at = p->posted_next;
    if (p->posted_next != NULL)
        p->posted_next->posted_at = p->posted_at;
    p->posted_next = NULL;
    p->posted_at = NULL;
}

/* Sends what nghttp2 has queued; called after every batch of changes. The
 * frames are gathered in wbuf and written inline (lk_net_send); while the
 * socket takes everything and nghttp2 has more (it stopped at
 * out_buffer_max), another round follows. Once the socket is full, the
 * bufferevent's write callback calls us again. */
static void flush(struct lk_tunnel *t)
{
    if (t->out_sp != NULL && !t->dead && !splice_out(t))
        return; /* wr_ev calls again */
    for (int round = 0; !t->dead; round++) {
        bool want = nghttp2_session_want_write(t->h2) != 0;
        if (!want)
            break; /* a wake-up with nothing to frame costs a whole send pass */
        if (t->n_lazy > 0)
            resume_lazy(t); /* they leave with the frames that go now */
        driving++;
        int rc = nghttp2_session_send(t->h2);
        driving--;
        if (rc != 0) {
            char why[128];
            snprintf(why, sizeof(why), "http/2 send failed: %s", nghttp2_strerror(rc));
            lk_tunnel_kill(t, why);
            return;
        }
        size_t n = evbuffer_get_length(t->wbuf);
        if (n > 0)
            lk_net_send(t->bev, t->plain, NULL, 0, t->wbuf, n);
        if (n == 0 || evbuffer_get_length(bufferevent_get_output(t->bev)) > 0 ||
            !nghttp2_session_want_write(t->h2))
            break;
        if (round == FLUSH_ROUNDS) {
            event_active(&t->flush_ev, EV_TIMEOUT, 0);
            break;
        }
    }
    if (t->dead || nghttp2_session_want_read(t->h2) || nghttp2_session_want_write(t->h2))
        return;
    /* GOAWAY was sent or received and no stream is left. The last frames
     * (a response's end, the GOAWAY) leave before the close: the write
     * callback calls again once the output is empty. */
    if (queued_out(t) == 0 && t->out_sp == NULL) {
        const char *why = t->going_away ? "closed after GOAWAY" : "closed after the peer's GOAWAY";
        char err[128];
        if (t->goaway_error != NGHTTP2_NO_ERROR) {
            snprintf(err, sizeof(err), "http/2 protocol error: sent GOAWAY %s",
                     nghttp2_http2_strerror(t->goaway_error));
            why = err;
        }
        lk_tunnel_kill(t, why);
    } else
        bufferevent_setwatermark(t->bev, EV_WRITE, 0, 0);
}

/* The opaque data of the PING that follows the local side's GOAWAY notice:
 * its ACK ends the notice's round trip. */
static const uint8_t goaway_ping[8] = { 'l', 'k', 'G', 'O', 'A', 'W', 'A', 'Y' };

/* Queues the GOAWAY that names the last stream we took: streams the peer
 * opens after it are refused (REFUSED_STREAM, not processed: the worker may
 * retry them elsewhere, RFC 9113 §8.7). On the local side the engine's
 * connections on our streams then end with their current response (idle
 * ones now), so the streams end and then the tunnel, whether the engine
 * drains or serves on (a replaced client). Their callbacks are deferred: the
 * list does not change under us. May run inside an nghttp2 callback. */
static void go_away_final(struct lk_tunnel *t)
{
    t->goaway_final = true;
    drop_hold(t); /* no stream comes after this GOAWAY */
    LK_LOG(DEBUG, "tunnel %s: sending GOAWAY", t->label);
    int rc = nghttp2_submit_goaway(t->h2, NGHTTP2_FLAG_NONE,
                                   nghttp2_session_get_last_proc_stream_id(t->h2), NGHTTP2_NO_ERROR,
                                   NULL, 0);
    if (rc != 0) {
        lk_tunnel_kill(t, "cannot send GOAWAY");
        return;
    }
    for (struct lk_tunnel_pipe *p = t->is_h2_client ? NULL : t->pipes; p != NULL; p = p->next) {
        struct bufferevent *engine_end = p->bev ? bufferevent_pair_get_partner(p->bev) : NULL;
        if (engine_end != NULL)
            lk_http_server_retire_adopted(engine_end);
    }
}

void lk_tunnel_go_away(struct lk_tunnel *t)
{
    if (t->dead || t->going_away)
        return;
    t->going_away = true;
    if (t->is_h2_client) {
        go_away_final(t); /* the worker opens every stream: none can cross */
    } else {
        /* RFC 9113 §6.8: a server shutting down gracefully first sends a
         * GOAWAY with the last stream ID 2^31-1, then, at least a round trip
         * later, the one with the last stream it took. Streams the worker
         * opened before it saw the notice are served, and idle streams stay
         * open until then: one it is reusing is not closed under its
         * request. The round trip is a PING sent once the notice is out
         * (on_frame_send); its ACK (on_frame_recv) sends the real GOAWAY. */
        LK_LOG(DEBUG, "tunnel %s: sending the GOAWAY notice", t->label);
        if (nghttp2_submit_shutdown_notice(t->h2) != 0) {
            lk_tunnel_kill(t, "cannot send GOAWAY");
            return;
        }
        /* A draining engine waits for the streams that may still come. */
        if (t->adopt_into != NULL) {
            lk_http_server_hold(t->adopt_into, &t->adopt_into);
            t->holding = true;
        }
    }
    flush(t);
}

void lk_tunnel_set_goaway_cb(struct lk_tunnel *t, lk_tunnel_goaway_cb *cb)
{
    t->on_goaway = cb;
}

/* ---- pipes ------------------------------------------------------------- */

static void pipe_maybe_free(struct lk_tunnel_pipe *p)
{
    if (p->stream_id != 0 || p->bev != NULL)
        return;
    struct lk_tunnel *t = p->t;
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        t->pipes = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    t->n_pipes--;
    unpost(p);
    free(p);
}

static void on_pipe_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg);

/* Closes our end; the engine's end sees EOF (lk_net_bev_free). */
static void splice_gone(struct lk_tunnel_pipe *p);

static void pipe_close_bev(struct lk_tunnel_pipe *p)
{
    unpost(p);
    splice_gone(p);
    if (p->bev == NULL)
        return;
    /* A pair end outlives bufferevent_free() while libevent still holds a
     * reference (a deferred callback), and its partner can still move bytes
     * into it until then: nothing may call back into p after this. */
    evbuffer_remove_cb(bufferevent_get_input(p->bev), on_pipe_input, p);
    lk_net_bev_free(p->bev);
    p->bev = NULL;
}

/* The engine freed its end: nobody reads what we write any more. */
static bool pipe_orphaned(const struct lk_tunnel_pipe *p)
{
    return bufferevent_pair_get_partner(p->bev) == NULL;
}

/* Gives the bytes the socket has taken back to the windows. */
static void pipe_release(struct lk_tunnel_pipe *p, size_t still_queued)
{
    struct lk_tunnel *t = p->t;
    if (p->unconsumed <= still_queued || t->dead)
        return;
    size_t n = p->unconsumed - still_queued;
    p->unconsumed = still_queued;
    if (p->stream_id != 0)
        nghttp2_session_consume(t->h2, p->stream_id, n);
    else
        nghttp2_session_consume_connection(t->h2, n);
}

/* Closes our end of a stream that was reset (by either side) or whose
 * tunnel is gone. On the local side the engine's end is told with an error
 * first, as a reset socket would be: an EOF alone reads as the worker having
 * finished sending, and the engine would go on holding whatever it still had
 * queued for the stream. (The EOF of a freed pair end can also come before
 * libevent unlinks the pair, so the engine cannot tell from the EOF.) */
static void pipe_reset_bev(struct lk_tunnel_pipe *p)
{
    if (p->bev != NULL && !p->t->is_h2_client)
        lk_net_pair_error(p->bev);
    pipe_close_bev(p);
}

static void pipe_abort(struct lk_tunnel_pipe *p, uint32_t code)
{
    struct lk_tunnel *t = p->t;
    pipe_release(p, 0);
    pipe_reset_bev(p);
    if (p->stream_id != 0 && !t->dead)
        nghttp2_submit_rst_stream(t->h2, NGHTTP2_FLAG_NONE, p->stream_id, code);
}

/* Passes the peer's END_STREAM on once everything before it is written. */
static void pipe_check_out_eof(struct lk_tunnel_pipe *p)
{
    if (p->bev == NULL || !p->out_eof || p->out_shut || p->rx != NULL ||
        evbuffer_get_length(bufferevent_get_output(p->bev)) != 0)
        return;
    p->out_shut = true;
    /* When our side of the stream is done too, the stream closes now and
     * closing the socket (on_stream_close, or on_pipe_write once the output
     * is written) tells the engine; no half-close needed. */
    if (p->stream_id == 0 || nghttp2_session_get_stream_local_close(p->t->h2, p->stream_id) == 1)
        return;
    lk_net_shutdown_write(p->bev);
}

static void pipe_answer(struct lk_tunnel_pipe *p);

static void on_pipe_read(struct bufferevent *bev, void *arg);
static void on_pipe_write(struct bufferevent *bev, void *arg);
static void on_pipe_event(struct bufferevent *bev, short what, void *arg);

/* The read callback is set only while a provider waits: the pair runs it
 * after every move into our input, which is useless (and, with the input
 * at its watermark and the engine writing, frequent) otherwise. */
static void pipe_watch_input(struct lk_tunnel_pipe *p, bool on)
{
    bufferevent_setcb(p->bev, on ? on_pipe_read : NULL, on_pipe_write, on_pipe_event, p);
}

/* Stops the pair from moving the engine's bytes into our input while it
 * holds PIPE_READ_MAX or more; a move takes the engine's whole output (its
 * own limit bounds it), without splitting chains. */
static void pipe_throttle(struct lk_tunnel_pipe *p)
{
    bool full = evbuffer_get_length(bufferevent_get_input(p->bev)) >= PIPE_READ_MAX;
    if (full && (bufferevent_get_enabled(p->bev) & EV_READ))
        bufferevent_disable(p->bev, EV_READ);
    else if (!full && !(bufferevent_get_enabled(p->bev) & EV_READ))
        bufferevent_enable(p->bev, EV_READ);
}

/* Our input grew (a move from the engine): pause at PIPE_READ_MAX, and
 * post the pipe for lk_tunnel_flush_posted(). Only pauses and notes here;
 * resuming is on_send_data()'s, sending flush()'s, outside the pair's move. */
static void on_pipe_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    struct lk_tunnel_pipe *p = arg;
    if (info->n_added == 0 || p->bev == NULL)
        return;
    if (evbuffer_get_length(in) >= PIPE_READ_MAX)
        bufferevent_disable(p->bev, EV_READ);
    if (p->posted_at == NULL && p->stream_id != 0 && !p->t->dead) {
        p->posted_next = posted;
        if (posted != NULL)
            posted->posted_at = &p->posted_next;
        posted = p;
        p->posted_at = &posted;
    }
}

static void pipe_wake(struct lk_tunnel_pipe *p);

uint64_t lk_tunnel_posted_sent(bool worker_side)
{
    return n_posted_sent[worker_side];
}

void lk_tunnel_flush_posted(void)
{
    if (driving > 0)
        return;
    while (posted != NULL) {
        struct lk_tunnel_pipe *p = posted;
        unpost(p);
        struct lk_tunnel *t = p->t;
        n_posted_sent[t->is_h2_client]++;
        pipe_wake(p);
        flush(t); /* may free p (its stream closed), never t */
    }
}

/* All that is left of p's stream is a bare END_STREAM that only completes
 * its close: the engine shut its end, nothing of it is left to send, and the
 * peer finished first (the worker's engine letting go of a stream after the
 * whole response). */
static bool wants_lazy_close(const struct lk_tunnel_pipe *p)
{
    return p->in_eof && !p->in_err && !p->lazy_done && p->bev != NULL &&
           evbuffer_get_length(bufferevent_get_input(p->bev)) == 0 &&
           nghttp2_session_get_stream_remote_close(p->t->h2, p->stream_id) == 1;
}

/* Such an END_STREAM waits to leave with other frames, typically the next
 * request's, or for LAZY_CLOSE_MS: one write and one wake-up of the peer
 * fewer per request. The stream stays deferred in nghttp2 until
 * resume_lazy(). */
static void go_lazy(struct lk_tunnel_pipe *p)
{
    struct lk_tunnel *t = p->t;
    p->lazy = true;
    p->deferred = true;
    t->n_lazy++;
    if (!event_pending(&t->lazy_ev, EV_TIMEOUT, NULL)) {
        struct timeval tv = { 0, LAZY_CLOSE_MS * 1000 };
        evtimer_add(&t->lazy_ev, &tv);
    }
}

/* Wakes a data provider that waits for the engine's bytes or EOF (or sends
 * the local side's ":status 200" with the first of them). */
static void pipe_wake(struct lk_tunnel_pipe *p)
{
    struct lk_tunnel *t = p->t;
    if (p->stream_id == 0 || t->dead || p->cancel)
        return;
    /* A read callback of the pair can come after flush() took the bytes it
     * announced: with nothing new and no EOF, waking the provider would
     * only make it defer again, at the cost of a send pass. */
    if (p->bev != NULL && !p->in_eof && evbuffer_get_length(bufferevent_get_input(p->bev)) == 0)
        return;
    if (p->deferred && !p->lazy && !p->unanswered && wants_lazy_close(p)) {
        /* Deferred in nghttp2 already: going lazy here spares a send pass
         * that would only defer it again. */
        go_lazy(p);
        return;
    }
    bool resumed = p->unanswered || p->deferred;
    if (p->unanswered) {
        pipe_answer(p);
    } else if (p->deferred) {
        p->deferred = false;
        nghttp2_session_resume_data(t->h2, p->stream_id);
    }
    /* Nobody waits now; a provider that defers again inside flush() turns
     * the callback back on. */
    if (p->bev != NULL && !p->deferred && !p->unanswered)
        pipe_watch_input(p, false);
    if (!resumed)
        return;
    /* From the loop, after the callbacks already queued: an EOF that
     * follows the bytes (the engine closing after its response) then
     * leaves in the same DATA frame, and several woken streams share one
     * write. */
    event_active(&t->flush_ev, EV_TIMEOUT, 0);
}

/* The engine's bytes reached our input buffer. */
static void on_pipe_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    unpost(arg); /* its bytes go now; a posted flush would find nothing */
    pipe_wake(arg);
}

/* Our output moved on to the engine (or the engine's end went away). */
static void on_pipe_write(struct bufferevent *bev, void *arg)
{
    struct lk_tunnel_pipe *p = arg;
    struct lk_tunnel *t = p->t;
    size_t queued = evbuffer_get_length(bufferevent_get_output(bev));
    size_t before = p->unconsumed;
    pipe_release(p, queued);
    pipe_check_out_eof(p);
    if (p->stream_id == 0 && queued == 0) {
        /* The stream ended cleanly and everything is written. */
        pipe_close_bev(p);
        pipe_maybe_free(p);
    }
    if (before != p->unconsumed)
        flush(t); /* WINDOW_UPDATE */
}

/* A stream whose engine end ended with an error, all of whose input is in
 * DATA frames now: reset it with CANCEL instead of ending it (RFC 8441 §5:
 * "Orderly TCP-level closures are represented as END_STREAM flags ... RST
 * exceptions are represented with the RST_STREAM frame ... with the CANCEL
 * error code"). nghttp2 sends no empty DATA frame without END_STREAM, hence
 * the data provider defers while the error waits. Called at the error and
 * after each DATA frame (on_frame_send). */
static void cancel_when_flushed(struct lk_tunnel_pipe *p)
{
    struct lk_tunnel *t = p->t;
    if (!p->in_err || p->cancel || p->stream_id == 0 || t->dead || p->bev == NULL ||
        evbuffer_get_length(bufferevent_get_input(p->bev)) > 0)
        return;
    p->cancel = true;
    nghttp2_submit_rst_stream(t->h2, NGHTTP2_FLAG_NONE, p->stream_id, NGHTTP2_CANCEL);
}

/* The engine ended its end with an error after its last bytes (an error
 * joined to the EOF: lk_net_pair_error() then a half-close or free). Those
 * bytes still leave, then RST_STREAM CANCEL; what the peer sent for the
 * engine is dropped, as a reset socket drops it. Not while a body is
 * spliced: that end is an abort. */
static bool pipe_error_end(struct lk_tunnel_pipe *p, short what)
{
    if (!(what & BEV_EVENT_EOF) || p->stream_id == 0 || p->sp != NULL || p->rx != NULL || p->in_eof)
        return false;
    /* Also, while the tunnel goes away, an engine end freed with the peer's
     * direction still open (a WebSocket cut at the drain deadline): nothing
     * will read what the peer sends, so the stream ends now, not when the
     * peer is done (the worker tells its client 1011). */
    struct lk_tunnel *t = p->t;
    bool cut = t->going_away && !t->is_h2_client && pipe_orphaned(p) &&
               nghttp2_session_get_stream_remote_close(t->h2, p->stream_id) == 0;
    if (!(what & BEV_EVENT_ERROR) && !cut)
        return false;
    lk_net_drop_output(p->bev);
    pipe_release(p, 0);
    p->in_eof = p->in_err = true;
    LK_LOG(DEBUG,
           "tunnel %s: stream %d: the engine's end failed; %zu bytes, then RST_STREAM CANCEL",
           p->t->label, (int)p->stream_id, evbuffer_get_length(bufferevent_get_input(p->bev)));
    cancel_when_flushed(p);
    if (!p->cancel)
        pipe_wake(p); /* the bytes (":status 200" first, if it waits) */
    return true;
}

/* The engine half-closed or freed its end (BEV_FINISHED: EOF). Its last
 * bytes are in our input already: END_STREAM follows them (RST_STREAM
 * CANCEL when an error came with the EOF: pipe_error_end()). When the end
 * was freed and the peer's bytes still wait for it, or on an error alone,
 * the stream is aborted. */
static void on_pipe_event(struct bufferevent *bev, short what, void *arg)
{
    struct lk_tunnel_pipe *p = arg;
    struct lk_tunnel *t = p->t;
    if (!(what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)))
        return;
    if (pipe_error_end(p, what)) {
        flush(t);
        return;
    }
    if ((what & BEV_EVENT_ERROR) ||
        (pipe_orphaned(p) && evbuffer_get_length(bufferevent_get_output(bev)) > 0)) {
        pipe_abort(p, NGHTTP2_CANCEL);
        pipe_maybe_free(p);
        flush(t);
        return;
    }
    p->in_eof = true;
    pipe_wake(p);
}

/* Makes a bufferevent pair: *ours joins the stream, *theirs goes to the
 * engine. */
static void make_pair(struct lk_tunnel *t, struct bufferevent **ours, struct bufferevent **theirs)
{
    struct bufferevent *pair[2] = { NULL, NULL };
    LK_ASSERT(bufferevent_pair_new(t->base, 0, pair) == 0);
    *ours = pair[0];
    *theirs = pair[1];
}

static struct lk_tunnel_pipe *pipe_new(struct lk_tunnel *t)
{
    struct lk_tunnel_pipe *p = lk_xcalloc(1, sizeof(*p));
    p->t = t;
    p->next = t->pipes;
    if (t->pipes != NULL)
        t->pipes->prev = p;
    t->pipes = p;
    t->n_pipes++;
    return p;
}

static void pipe_attach(struct lk_tunnel_pipe *p, struct bufferevent *bev)
{
    p->bev = bev;
    pipe_watch_input(p, true);
    /* No read watermark: a pair moves only up to it and copies the split
     * chain; reading is paused by hand instead (pipe_throttle). */
    evbuffer_add_cb(bufferevent_get_input(bev), on_pipe_input, p);
    bufferevent_setwatermark(bev, EV_WRITE, p->t->opts.stream_window / 2, 0);
    /* A pair end polls nothing: enabled is only "bytes may move". */
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* ---- splicing a body from the origin (local side, plain tunnels) --------- */

static void splice_free(struct lk_tunnel_splice *sp)
{
    event_del(&sp->rd);
    event_del(&sp->note);
    /* Empty: nothing unframed (unwritten), and no frame of it half written. */
    lk_splice_pipe_put(sp->pfd, sp->cap, sp->in_pipe == 0 && sp->t->out_sp != sp);
    sp->t->n_splices--;
    if (sp->rx)
        evbuffer_free(sp->ovf);
    free(sp);
}

static void rx_give_back(struct lk_tunnel_splice *sp, size_t n);

/* Nobody is told anything more; sp goes, once a frame of it being written
 * is out (splice_out). */
static void splice_release(struct lk_tunnel_splice *sp)
{
    if (sp->rx && sp->p != NULL) {
        struct lk_tunnel *t = sp->t;
        rx_give_back(sp, sp->held); /* what it holds is dropped */
        event_del(&sp->wr);
        t->n_rx--;
        if (t->rx_fake == sp)
            t->rx_fake = NULL; /* rx_splice_payload() sees it went */
        sp->p->rx = NULL;
    } else if (sp->p != NULL) {
        sp->p->sp = NULL;
    }
    sp->p = NULL;
    sp->cb = NULL;
    event_del(&sp->rd);
    event_del(&sp->note);
    sp->rd_added = false;
    if (sp->t->out_sp != sp)
        splice_free(sp);
}

static void splice_gone_one(struct lk_tunnel_splice *sp)
{
    if (sp == NULL)
        return;
    lk_splice_cb *cb = sp->cb;
    void *ctx = sp->ctx;
    splice_release(sp);
    if (cb != NULL)
        cb(ctx, LK_SPLICE_GONE, 0);
}

/* p's stream or tunnel goes away: its splice ends, and the engine is told
 * at once (LK_SPLICE_GONE). */
static void splice_gone(struct lk_tunnel_pipe *p)
{
    splice_gone_one(p->sp);
    splice_gone_one(p->rx);
}

static void pipe_check_out_eof(struct lk_tunnel_pipe *p);

static void on_splice_note(evutil_socket_t fd, short what, void *arg)
{
    struct lk_tunnel_splice *sp = arg;
    (void)fd;
    (void)what;
    struct lk_tunnel *t = sp->t;
    struct lk_tunnel_pipe *rx_p = sp->rx ? sp->p : NULL;
    lk_splice_cb *cb = sp->cb;
    void *ctx = sp->ctx;
    int status = sp->status, err = sp->err;
    splice_release(sp);
    if (rx_p != NULL) {
        pipe_check_out_eof(rx_p); /* an END_STREAM held back behind the body */
        flush(t);                 /* the windows it gave back */
    }
    cb(ctx, status, (size_t)err);
}

/* Ends the splice with status, told from the loop (on_splice_note). */
static void splice_end(struct lk_tunnel_splice *sp, int status, int err)
{
    sp->status = status;
    sp->err = err;
    event_del(&sp->rd);
    sp->rd_added = false;
    if (sp->rx) {
        event_del(&sp->wr);
        sp->wr_added = false;
    }
    event_active(&sp->note, EV_TIMEOUT, 0);
}

static size_t splice_room(const struct lk_tunnel_splice *sp)
{
    size_t used = sp->in_pipe + (sp->t->out_sp == sp ? sp->t->out_left : 0);
    return used < sp->cap ? sp->cap - used : 0;
}

static void splice_watch(struct lk_tunnel_splice *sp, bool on)
{
    if (on && !sp->rd_added)
        event_add(&sp->rd, NULL);
    else if (!on && sp->rd_added)
        event_del(&sp->rd);
    sp->rd_added = on;
}

/* Moves what the origin has (up to the pipe's room and the bytes left) into
 * the pipe and wakes the stream's data provider. */
static void on_splice_readable(evutil_socket_t fd, short what, void *arg)
{
    struct lk_tunnel_splice *sp = arg;
    struct lk_tunnel_pipe *p = sp->p;
    (void)what;
    if (p == NULL || sp->status != LK_SPLICE_MOVED || sp->t->dead)
        return;
    size_t n = 0;
    int status = lk_splice_fill(fd, sp->pfd[1], splice_room(sp), &sp->left, &n);
    if (status != LK_SPLICE_MOVED) {
        splice_end(sp, status, (int)n);
        return;
    }
    /* Nothing moved: while the pipe holds anything, splice_out() calls again
     * once it wrote some (the pipe may be out of room). */
    bool empty = sp->in_pipe == 0 && sp->t->out_sp != sp;
    splice_watch(sp, sp->left > 0 && (n > 0 || empty));
    if (n == 0)
        return;
    sp->in_pipe += n;
    struct lk_tunnel *t = sp->t;
    if (p->deferred && !p->lazy && p->stream_id != 0) {
        p->deferred = false;
        nghttp2_session_resume_data(t->h2, p->stream_id);
        event_active(&t->flush_ev, EV_TIMEOUT, 0);
    }
    sp->cb(sp->ctx, LK_SPLICE_MOVED, n);
}

/* Writes the spliced frame's header and payload (t->out_sp); true when it
 * is all out. Then the splice's reading goes on (the pipe has room), or a
 * released splice is freed. */
static bool splice_out(struct lk_tunnel *t)
{
    struct lk_tunnel_splice *sp = t->out_sp;
    int fd = bufferevent_getfd(t->bev);
    while (t->out_hd_off < sizeof(t->out_hd)) {
        ssize_t n = send(fd, t->out_hd + t->out_hd_off, sizeof(t->out_hd) - t->out_hd_off,
                         MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            goto blocked;
        t->out_hd_off += (size_t)n;
    }
    while (t->out_left > 0) {
        ssize_t n =
            splice(sp->pfd[0], NULL, fd, NULL, t->out_left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n <= 0) {
            if (n == 0)
                errno = EPIPE;
            goto blocked;
        }
        t->out_left -= (size_t)n;
        t->spliced += (uint64_t)n;
    }
    t->out_sp = NULL;
    if (sp->p == NULL)
        splice_free(sp);
    else if (sp->status == LK_SPLICE_MOVED && sp->left > 0 && !sp->rd_added)
        event_active(&sp->rd, EV_READ, 0);
    return true;
blocked:
    if (errno == EAGAIN || errno == EINTR) {
        event_add(&t->wr_ev, NULL);
    } else {
        char why[128];
        snprintf(why, sizeof(why), "connection error: %s", evutil_socket_error_to_string(errno));
        lk_tunnel_kill(t, why);
    }
    return false;
}

static void on_wr_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush(arg);
}

/* on_send_data() of a frame whose payload is in sp's pipe: everything
 * queued before it is written first, then the header and the payload
 * (splice_out); what it cannot write at once leaves first later, and
 * nothing else is framed meanwhile. */
static int send_spliced(struct lk_tunnel *t, struct lk_tunnel_pipe *p, const uint8_t *framehd,
                        size_t len)
{
    struct lk_tunnel_splice *sp = p->sp;
    if (sp == NULL || sp->in_pipe < len) { /* cancelled since the frame was made */
        p->sp_frame = false;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (t->out_sp != NULL)
        return NGHTTP2_ERR_WOULDBLOCK;
    size_t q = evbuffer_get_length(t->wbuf);
    if (q > 0)
        lk_net_send(t->bev, true, NULL, 0, t->wbuf, q);
    if (evbuffer_get_length(bufferevent_get_output(t->bev)) > 0)
        return NGHTTP2_ERR_WOULDBLOCK; /* on_tunnel_write() calls again */
    p->sp_frame = false;
    memcpy(t->out_hd, framehd, sizeof(t->out_hd));
    t->out_hd_off = 0;
    t->out_sp = sp;
    t->out_left = len;
    sp->in_pipe -= len;
    if (sp->left == 0 && sp->in_pipe == 0)
        splice_end(sp, LK_SPLICE_DONE, 0);
    splice_out(t);
    return 0;
}

/* A splice of either kind for p's stream, reading fd (sending) or not
 * (-1), with its pipe; NULL when too many run or no pipe can be made. */
static struct lk_tunnel_splice *splice_new(struct lk_tunnel_pipe *p, int fd, uint64_t len,
                                           lk_splice_cb *cb, void *ctx)
{
    struct lk_tunnel *t = p->t;
    if (t->n_splices >= SPLICE_MAX)
        return NULL;
    struct lk_tunnel_splice *sp = lk_xcalloc(1, sizeof(*sp));
    if (lk_splice_pipe(sp->pfd, &sp->cap) != 0) {
        free(sp);
        return NULL;
    }
    sp->t = t;
    sp->p = p;
    sp->left = len;
    sp->cb = cb;
    sp->ctx = ctx;
    event_assign(&sp->rd, t->base, fd, fd >= 0 ? EV_READ | EV_PERSIST : 0, on_splice_readable, sp);
    event_assign(&sp->note, t->base, -1, 0, on_splice_note, sp);
    t->n_splices++;
    return sp;
}

/* The pipe whose engine end engine_end is, or NULL (not a pair of ours). */
static struct lk_tunnel_pipe *pipe_of(struct bufferevent *engine_end)
{
    struct bufferevent *ours = bufferevent_pair_get_partner(engine_end);
    if (ours == NULL)
        return NULL;
    bufferevent_data_cb rcb = NULL, wcb = NULL;
    bufferevent_event_cb ecb = NULL;
    void *arg = NULL;
    bufferevent_getcb(ours, &rcb, &wcb, &ecb, &arg);
    return wcb == on_pipe_write ? arg : NULL;
}

struct lk_tunnel_splice *lk_tunnel_splice_start(struct bufferevent *engine_end, int fd,
                                                uint64_t len, lk_splice_cb *cb, void *ctx)
{
    struct lk_tunnel_pipe *p = pipe_of(engine_end);
    if (p == NULL)
        return NULL;
    struct lk_tunnel *t = p->t;
    if (!t->plain || t->is_h2_client || t->dead || p->sp != NULL || p->sp_frame ||
        p->stream_id == 0 || p->in_eof ||
        evbuffer_get_length(bufferevent_get_output(engine_end)) > 0)
        return NULL;
    struct lk_tunnel_splice *sp = splice_new(p, fd, len, cb, ctx);
    if (sp == NULL)
        return NULL;
    splice_watch(sp, true);
    p->sp = sp;
    return sp;
}

void lk_tunnel_splice_cancel(struct lk_tunnel_splice *sp)
{
    if (sp != NULL)
        splice_release(sp);
}

bool lk_tunnel_splice_reading(const struct lk_tunnel_splice *sp)
{
    if (sp->rx)
        return sp->status == LK_SPLICE_MOVED && sp->in_pipe == 0 &&
               evbuffer_get_length(sp->ovf) == 0;
    return sp->status == LK_SPLICE_MOVED && sp->rd_added;
}

/* ---- splicing a body to the client (worker side, plain tunnels) ---------- */

/* Gives n bytes an rx splice held back to the windows (they left the pipe,
 * or the splice ends). */
static void rx_give_back(struct lk_tunnel_splice *sp, size_t n)
{
    struct lk_tunnel *t = sp->t;
    sp->held -= n;
    if (n == 0 || t->dead)
        return;
    if (sp->p != NULL && sp->p->stream_id != 0)
        nghttp2_session_consume(t->h2, sp->p->stream_id, n);
    else
        nghttp2_session_consume_connection(t->h2, n);
}

/* Writes what the pipe holds to the client, refilling the pipe from ovf;
 * ends the splice once every byte is written (DONE) or none more can come
 * (EOF), or the client fails. The caller flushes (WINDOW_UPDATE). */
static void rx_drain(struct lk_tunnel_splice *sp)
{
    if (sp->p == NULL || sp->status != LK_SPLICE_MOVED)
        return;
    size_t moved = 0, step;
    int err;
    do { /* the pipe, refilled from ovf while it empties */
        if (evbuffer_get_length(sp->ovf) > 0) {
            int n = evbuffer_write(sp->ovf, sp->pfd[1]);
            if (n > 0)
                sp->in_pipe += (size_t)n;
        }
        step = 0;
        err = lk_splice_flush(sp->pfd[0], sp->to, &sp->in_pipe, &step);
        moved += step;
        sp->t->spliced += step;
        rx_give_back(sp, step);
    } while (err == 0 && step > 0 && evbuffer_get_length(sp->ovf) > 0);
    if (err == EAGAIN) {
        lk_splice_wait_client(&sp->wr, &sp->wr_added, moved > 0, &sp->send_tv);
        return;
    }
    if (err != 0) {
        splice_end(sp, LK_SPLICE_WRITE_ERROR, err);
        return;
    }
    if (sp->wr_added) {
        event_del(&sp->wr);
        sp->wr_added = false;
    }
    if (evbuffer_get_length(sp->ovf) > 0)
        return; /* (only when the pipe takes nothing: the next call tries again) */
    if (sp->left == 0)
        splice_end(sp, LK_SPLICE_DONE, 0);
    else if (sp->eof)
        splice_end(sp, LK_SPLICE_EOF, 0);
}

static void on_rx_writable(evutil_socket_t fd, short what, void *arg)
{
    struct lk_tunnel_splice *sp = arg;
    (void)fd;
    if (what & EV_TIMEOUT) { /* the client took no byte for the send timeout */
        splice_end(sp, LK_SPLICE_WRITE_ERROR, ETIMEDOUT);
        return;
    }
    struct lk_tunnel *t = sp->t;
    rx_drain(sp);
    flush(t);
}

/* DATA payload for an rx splice's stream that came through memory (not
 * spliced off the socket): up to the bytes the body still needs go into
 * the pipe, or into ovf behind what waits there. Returns the bytes taken. */
static size_t rx_take(struct lk_tunnel_splice *sp, const uint8_t *data, size_t len)
{
    size_t k = (uint64_t)len < sp->left ? len : (size_t)sp->left;
    if (k == 0 || sp->status != LK_SPLICE_MOVED)
        return 0;
    size_t w = 0;
    if (evbuffer_get_length(sp->ovf) == 0) {
        ssize_t n = write(sp->pfd[1], data, k);
        w = n > 0 ? (size_t)n : 0;
    }
    if (w < k)
        evbuffer_add(sp->ovf, data + w, k - w);
    sp->in_pipe += w;
    sp->left -= k;
    sp->held += k;
    sp->cb(sp->ctx, LK_SPLICE_MOVED, k);
    rx_drain(sp);
    return k;
}

/* Follows the frame layout over n more bytes given to nghttp2. */
static void rx_track(struct lk_tunnel *t, const uint8_t *d, size_t n)
{
    while (n > 0) {
        if (t->rx_need > 0) {
            size_t k = n < t->rx_need ? n : t->rx_need;
            t->rx_need -= (uint32_t)k;
            d += k;
            n -= k;
            continue;
        }
        size_t k = sizeof(t->rx_hd) - t->rx_hd_n;
        k = k < n ? k : n;
        memcpy(t->rx_hd + t->rx_hd_n, d, k);
        t->rx_hd_n += k;
        d += k;
        n -= k;
        if (t->rx_hd_n < sizeof(t->rx_hd))
            break;
        const uint8_t *h = t->rx_hd; /* RFC 9113 §4.1 */
        t->rx_need = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
        t->rx_type = h[3];
        t->rx_flags = h[4];
        t->rx_sid = (int32_t)((uint32_t)(h[5] & 0x7f) << 24 | (uint32_t)h[6] << 16 |
                              (uint32_t)h[7] << 8 | h[8]);
        t->rx_hd_n = 0;
    }
}

/* How much the next read of the tunnel socket may take: while rx splices
 * run, no further than the next frame header, so that a payload for one of
 * them is spliced, not read. */
static size_t rx_read_max(const struct lk_tunnel *t)
{
    if (t->n_rx == 0)
        return TUNNEL_READ_MAX;
    if (t->rx_need == 0)
        return sizeof(t->rx_hd) - t->rx_hd_n;
    /* The rest of a frame that is not spliced, and the next header. */
    size_t n = (size_t)t->rx_need + sizeof(t->rx_hd);
    return n < TUNNEL_READ_MAX ? n : TUNNEL_READ_MAX;
}

/* When the frame under way is DATA for an rx splice's stream, splices as
 * much of its payload as the pipe and the body take off the socket into the
 * splice's pipe, and feeds nghttp2 as many zeros in its place (it looks at
 * no payload byte; on_data_chunk() only counts them). True when bytes
 * moved. */
static bool rx_splice_payload(struct lk_tunnel *t)
{
    if (t->rx_need == 0 || t->rx_type != NGHTTP2_DATA || (t->rx_flags & NGHTTP2_FLAG_PADDED) ||
        evbuffer_get_length(bufferevent_get_input(t->bev)) > 0)
        return false;
    struct lk_tunnel_pipe *p = nghttp2_session_get_stream_user_data(t->h2, t->rx_sid);
    struct lk_tunnel_splice *sp = p != NULL ? p->rx : NULL;
    if (sp == NULL || sp->status != LK_SPLICE_MOVED || sp->left == 0 ||
        evbuffer_get_length(sp->ovf) > 0)
        return false;
    size_t room = sp->cap > sp->in_pipe ? sp->cap - sp->in_pipe : 0;
    size_t n = 0;
    int status = lk_splice_fill(bufferevent_getfd(t->bev), sp->pfd[1],
                                room < t->rx_need ? room : t->rx_need, &sp->left, &n);
    if (status == LK_SPLICE_EOF) {
        lk_tunnel_kill(t, "connection closed by peer");
        return true;
    }
    if (status == LK_SPLICE_READ_ERROR) {
        char why[128];
        snprintf(why, sizeof(why), "connection error: %s", evutil_socket_error_to_string((int)n));
        lk_tunnel_kill(t, why);
        return true;
    }
    if (n == 0)
        return false; /* nothing there yet, or the pipe is out of slots: read instead */
    evutil_gettimeofday(&t->last_recv, NULL);
    sp->in_pipe += n;
    static uint8_t zeros[64 * 1024]; /* never written: costs no memory */
    t->rx_fake = sp;
    t->rx_fake_got = 0;
    t->rx_faking = true;
    for (size_t off = 0; off < n && !t->dead;) {
        size_t k = n - off < sizeof(zeros) ? n - off : sizeof(zeros);
        driving++;
        ssize_t rc = nghttp2_session_mem_recv(t->h2, zeros, k);
        driving--;
        if (rc < 0) {
            char why[128];
            snprintf(why, sizeof(why), "http/2 protocol error: %s", nghttp2_strerror((int)rc));
            lk_tunnel_kill(t, why);
            break;
        }
        rx_track(t, zeros, (size_t)rc);
        off += (size_t)rc;
    }
    t->rx_faking = false;
    if (t->rx_fake == NULL || t->dead) /* the stream went meanwhile, and its pipe with it */
        return true;
    t->rx_fake = NULL;
    if (t->rx_fake_got != n) {
        /* nghttp2 gave the stream less than the pipe took (it dropped the
         * frame): what the pipe holds is no longer the body. */
        pipe_abort(sp->p, NGHTTP2_INTERNAL_ERROR);
        return true;
    }
    sp->cb(sp->ctx, LK_SPLICE_MOVED, n);
    rx_drain(sp);
    return true;
}

struct lk_tunnel_splice *lk_tunnel_splice_to(struct bufferevent *engine_end, int fd, uint64_t len,
                                             const struct timeval *send_tv, lk_splice_cb *cb,
                                             void *ctx)
{
    struct lk_tunnel_pipe *p = pipe_of(engine_end);
    if (p == NULL)
        return NULL;
    struct lk_tunnel *t = p->t;
    if (!t->track || t->dead || len == 0 || p->rx != NULL || p->stream_id == 0 || p->out_eof ||
        evbuffer_get_length(bufferevent_get_output(p->bev)) > 0)
        return NULL;
    struct lk_tunnel_splice *sp = splice_new(p, -1, len, cb, ctx);
    if (sp == NULL)
        return NULL;
    sp->rx = true;
    sp->to = fd;
    if (send_tv != NULL)
        sp->send_tv = *send_tv;
    sp->ovf = evbuffer_new();
    LK_ASSERT(sp->ovf != NULL);
    event_assign(&sp->wr, t->base, fd, EV_WRITE | EV_PERSIST, on_rx_writable, sp);
    p->rx = sp;
    t->n_rx++;
    return sp;
}

/* nghttp2 data provider: the engine's bytes of this stream, now that the
 * windows and the tunnel's output have room for len of them. They stay in
 * the pipe's input buffer and on_send_data() moves them into the frame
 * (NO_COPY); taking them lets the pair move more from the engine. */
static ssize_t on_data_source(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                              uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct lk_tunnel_pipe *p = src->ptr;
    (void)s;
    (void)id;
    (void)buf;
    (void)user;
    if (p->bev == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t have = evbuffer_get_length(bufferevent_get_input(p->bev));
    struct lk_tunnel_splice *sp = p->sp;
    if (have == 0 && sp != NULL && sp->status == LK_SPLICE_MOVED) {
        /* The engine's bytes before the hand-off went first; now the pipe's. */
        if (sp->in_pipe > 0) {
            p->sp_frame = true;
            *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
            return (ssize_t)(sp->in_pipe < len ? sp->in_pipe : len);
        }
        p->deferred = true; /* on_splice_readable() resumes */
        return NGHTTP2_ERR_DEFERRED;
    }
    if (have == 0 && p->in_err) {
        p->deferred = true; /* cancel_when_flushed() resets the stream */
        return NGHTTP2_ERR_DEFERRED;
    }
    if (have == 0 && wants_lazy_close(p)) { /* see go_lazy() */
        go_lazy(p);
        return NGHTTP2_ERR_DEFERRED;
    }
    if (have == 0 && !p->in_eof) {
        p->deferred = true; /* on_pipe_read() or on_pipe_event() resumes */
        pipe_watch_input(p, true);
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = have < len ? have : lk_net_whole_chains(bufferevent_get_input(p->bev), len);
    if (n > 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (p->in_eof && !p->in_err && n == have)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- opening streams (worker side) --------------------------------------- */

void lk_tunnel_stream_relaying(struct bufferevent *engine_end)
{
    struct lk_tunnel_pipe *p = pipe_of(engine_end);
    if (p != NULL && p->t->is_h2_client)
        p->relaying = true;
}

/* Name and value are string literals: nghttp2 need not copy them. */
#define NV(n, v)                                                         \
    {                                                                    \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1,    \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE \
    }

int lk_tunnel_connect(void *tunnel, struct bufferevent **out, char *errtext, size_t errtext_len)
{
    struct lk_tunnel *t = tunnel;
    *out = NULL;
    if (t == NULL || t->dead || t->going_away || t->peer_going_away || !t->is_h2_client) {
        snprintf(errtext, errtext_len, "tunnel %s is closing", t ? t->label : "(none)");
        return LK_ECLOSED;
    }
    struct bufferevent *ours = NULL, *theirs = NULL;
    make_pair(t, &ours, &theirs);
    struct lk_tunnel_pipe *p = pipe_new(t);
    pipe_attach(p, ours);
    const nghttp2_nv nva[] = { NV(":method", "POST"), NV(":scheme", "http"),
                               NV(":authority", "linkup-tunnel"),
                               NV(":path", LK_TUNNEL_STREAM_PATH) };
    nghttp2_data_provider prd = { .source.ptr = p, .read_callback = on_data_source };
    int32_t id = nghttp2_submit_request(t->h2, NULL, nva, sizeof(nva) / sizeof(nva[0]), &prd, p);
    if (id < 0) {
        snprintf(errtext, errtext_len, "tunnel %s: cannot open a stream: %s", t->label,
                 nghttp2_strerror(id));
        pipe_close_bev(p);
        pipe_maybe_free(p);
        lk_net_bev_free(theirs);
        return LK_EIO;
    }
    p->stream_id = id;
    t->n_streams++;
    /* The engine writes the request head as soon as we return: flushing from
     * the loop sends HEADERS and the first DATA in one write. */
    event_active(&t->flush_ev, EV_TIMEOUT, 0);
    *out = theirs;
    return 0;
}

/* ---- accepting streams (local side) ------------------------------------- */

static void accept_stream(struct lk_tunnel *t, struct lk_tunnel_pipe *p)
{
    struct bufferevent *ours = NULL, *theirs = NULL;
    /* After our final GOAWAY (not yet sent, or crossing this stream's
     * HEADERS), or once the engine's drain reached its deadline (no engine
     * left): not processed, so the worker may retry it elsewhere (RFC 9113
     * §8.7). After the notice alone it is served, also by a draining engine
     * (lk_http_server_adopt_relayed()). */
    if (p->bad || t->goaway_final || t->adopt_into == NULL) {
        nghttp2_submit_rst_stream(t->h2, NGHTTP2_FLAG_NONE, p->stream_id, NGHTTP2_REFUSED_STREAM);
        return;
    }
    make_pair(t, &ours, &theirs);
    pipe_attach(p, ours);
    if (lk_http_server_adopt_relayed(t->adopt_into, theirs, "tunnel") != 0) {
        LK_LOG(WARN, "tunnel %s: local server refused a stream", t->label);
        pipe_abort(p, NGHTTP2_REFUSED_STREAM);
        return;
    }
    /* ":status 200" waits for the engine's first bytes (or its close), so
     * that HEADERS and the first DATA leave in one write. */
    p->unanswered = true;
}

static void pipe_answer(struct lk_tunnel_pipe *p)
{
    const nghttp2_nv nva[] = { NV(":status", "200") };
    nghttp2_data_provider prd = { .source.ptr = p, .read_callback = on_data_source };
    p->unanswered = false;
    if (nghttp2_submit_response(p->t->h2, p->stream_id, nva, 1, &prd) != 0)
        pipe_abort(p, NGHTTP2_INTERNAL_ERROR);
}

/* ---- nghttp2 callbacks -------------------------------------------------- */

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *user)
{
    struct lk_tunnel *t = user;
    (void)s;
    (void)flags;
    if (t->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (t->out_sp != NULL || queued_out(t) >= t->opts.out_buffer_max)
        return NGHTTP2_ERR_WOULDBLOCK;
    evbuffer_add(t->wbuf, data, len);
    return (ssize_t)len;
}

/* A DATA frame whose payload on_data_source() left in the pipe's input:
 * header, then the payload's evbuffer chains moved (not copied) behind it.
 * We never pad. */
static int on_send_data(nghttp2_session *s, nghttp2_frame *f, const uint8_t *framehd, size_t len,
                        nghttp2_data_source *src, void *user)
{
    struct lk_tunnel *t = user;
    struct lk_tunnel_pipe *p = src->ptr;
    (void)s;
    if (t->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (p->sp_frame && f->data.padlen == 0)
        return send_spliced(t, p, framehd, len);
    if (t->out_sp != NULL || queued_out(t) >= t->opts.out_buffer_max)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (p->bev == NULL || f->data.padlen != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    struct evbuffer *in = bufferevent_get_input(p->bev);
    LK_ASSERT(evbuffer_get_length(in) >= len);
    evbuffer_add(t->wbuf, framehd, 9);
    evbuffer_remove_buffer(in, t->wbuf, len);
    pipe_throttle(p);
    return 0;
}

static ssize_t on_read_length(nghttp2_session *s, uint8_t type, int32_t id, int32_t conn_window,
                              int32_t stream_window, uint32_t max_frame, void *user)
{
    (void)s;
    (void)type;
    (void)id;
    (void)conn_window;
    (void)stream_window;
    (void)max_frame;
    (void)user;
    return FRAME_MAX; /* nghttp2 caps it at the windows and the peer's frame size */
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct lk_tunnel *t = user;
    if (t->is_h2_client || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct lk_tunnel_pipe *p = pipe_new(t);
    p->stream_id = f->hd.stream_id;
    t->n_streams++;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, p);
    return 0;
}

static bool nv_is(const uint8_t *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    struct lk_tunnel *t = user;
    (void)flags;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct lk_tunnel_pipe *p = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (p == NULL)
        return 0;
    if (t->is_h2_client && nv_is(name, nlen, ":status"))
        p->bad |= !nv_is(value, vlen, "200");
    else if (!t->is_h2_client && nv_is(name, nlen, ":path"))
        p->bad |= !nv_is(value, vlen, LK_TUNNEL_STREAM_PATH);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct lk_tunnel *t = user;
    if (f->hd.type == NGHTTP2_GOAWAY && !t->peer_going_away) {
        /* Streams above its last stream ID are closed by nghttp2 as
         * refused; ours up to it finish. */
        t->peer_going_away = true;
        LK_LOG(DEBUG, "tunnel %s: peer sent GOAWAY (%u)", t->label, f->goaway.error_code);
        if (t->on_goaway != NULL)
            t->on_goaway(t, t->data);
        return 0;
    }
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK) && t->going_away &&
        !t->goaway_final && memcmp(f->ping.opaque_data, goaway_ping, sizeof(goaway_ping)) == 0) {
        go_away_final(t); /* the notice's round trip is over */
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    struct lk_tunnel_pipe *p = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (p == NULL)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && !t->is_h2_client && f->headers.cat == NGHTTP2_HCAT_REQUEST)
        accept_stream(t, p);
    else if (f->hd.type == NGHTTP2_HEADERS && p->bad)
        pipe_abort(p, NGHTTP2_REFUSED_STREAM);
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        p->out_eof = true;
        if (p->rx != NULL) {
            p->rx->eof = true;
            rx_drain(p->rx); /* EOF once the pipe is written, if bytes are missing */
        }
        pipe_check_out_eof(p);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    struct lk_tunnel *t = user;
    (void)flags;
    struct lk_tunnel_pipe *p = nghttp2_session_get_stream_user_data(s, id);
    if (t->rx_faking) {
        /* Zeros in place of payload spliced into t->rx_fake's pipe. */
        if (p != NULL && p->rx != NULL && p->rx == t->rx_fake) {
            t->rx_fake_got += len;
            p->rx->held += len;
        } else {
            nghttp2_session_consume(s, id, len);
        }
        return 0;
    }
    if (p == NULL || p->bev == NULL || p->in_err) {
        nghttp2_session_consume(s, id, len); /* in_err: the engine is gone */
        return 0;
    }
    if (pipe_orphaned(p)) {
        /* The engine freed its end: as a write to a closed socket. */
        nghttp2_session_consume(s, id, len);
        pipe_abort(p, NGHTTP2_CANCEL);
        return 0;
    }
    if (p->rx != NULL) {
        size_t k = rx_take(p->rx, data, len);
        data += k;
        len -= k;
        if (len == 0)
            return 0;
    }
    /* The pair moves the bytes on into the engine's input at once while the
     * engine reads and has room; what it delivered goes back to the windows
     * (WINDOW_UPDATE leaves with the next flush, batched by nghttp2 at half
     * a window), the rest once on_pipe_write() sees it moved. */
    struct evbuffer *out = bufferevent_get_output(p->bev);
    for (size_t off = 0; off < len; off += PIPE_ADD_MAX)
        evbuffer_add(out, data + off, len - off < PIPE_ADD_MAX ? len - off : PIPE_ADD_MAX);
    p->unconsumed += len;
    pipe_release(p, evbuffer_get_length(out));
    return 0;
}

/* After a DATA frame, a stream whose engine end failed may be reset now
 * (cancel_when_flushed()). */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct lk_tunnel *t = user;
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR)
        t->goaway_error = f->goaway.error_code;
    if (f->hd.type == NGHTTP2_GOAWAY && t->going_away && !t->goaway_final)
        return nghttp2_submit_ping(s, NGHTTP2_FLAG_NONE, goaway_ping) == 0
                   ? 0
                   : NGHTTP2_ERR_CALLBACK_FAILURE;
    if (f->hd.type != NGHTTP2_DATA)
        return 0;
    struct lk_tunnel_pipe *p = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (p != NULL && p->in_err)
        cancel_when_flushed(p);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
    struct lk_tunnel *t = user;
    struct lk_tunnel_pipe *p = nghttp2_session_get_stream_user_data(s, id);
    if (p == NULL)
        return 0;
    t->n_streams--;
    p->stream_id = 0;
    splice_gone(p);
    if (p->lazy) {
        p->lazy = false;
        t->n_lazy--;
    }
    pipe_release(p, 0); /* the stream window is gone: settle the connection's */
    if (code == NGHTTP2_CANCEL && p->relaying && p->bev != NULL) {
        /* The peer's engine saw its WebSocket upstream fail (RFC 8441 §5):
         * ours gets the bytes that came before the reset, then an error
         * with the EOF, as from a reset socket (proxy.c: a 1011 close, then
         * RST_STREAM CANCEL to an HTTP/2 client). The callbacks are
         * deferred, so the error and the EOF arrive together. */
        lk_net_pair_error(p->bev);
        pipe_close_bev(p);
    } else if (code != NGHTTP2_NO_ERROR) {
        pipe_reset_bev(p);
    } else if (p->bev == NULL || evbuffer_get_length(bufferevent_get_output(p->bev)) == 0) {
        pipe_close_bev(p);
    }
    pipe_maybe_free(p);
    return 0;
}

/* ---- the connection ------------------------------------------------------ */

/* Feeds everything in the connection's input buffer to nghttp2. */
static void tunnel_recv(struct lk_tunnel *t)
{
    struct evbuffer *in = bufferevent_get_input(t->bev);
    evutil_gettimeofday(&t->last_recv, NULL);
    while (!t->dead && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        driving++;
        ssize_t rc = nghttp2_session_mem_recv(t->h2, v.iov_base, v.iov_len);
        driving--;
        if (rc < 0) {
            char why[128];
            snprintf(why, sizeof(why), "http/2 protocol error: %s", nghttp2_strerror((int)rc));
            lk_tunnel_kill(t, why);
            return;
        }
        if (t->track)
            rx_track(t, v.iov_base, (size_t)rc);
        evbuffer_drain(in, (size_t)rc);
    }
}

static void on_tunnel_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    tunnel_recv(arg);
    flush(arg);
}

/* One read (or splice) of the tunnel socket; true when it may hold more. */
static bool tunnel_read_once(struct lk_tunnel *t)
{
    if (t->n_rx > 0 && rx_splice_payload(t))
        return !t->dead;
    int state = 0;
    size_t max = rx_read_max(t);
    size_t got = lk_net_read_more(t->bev, max, &state);
    int err = errno;
    tunnel_recv(t);
    if (state == 1) {
        lk_tunnel_kill(t, "connection closed by peer");
    } else if (state < 0) {
        char why[128];
        snprintf(why, sizeof(why), "connection error: %s", evutil_socket_error_to_string(err));
        lk_tunnel_kill(t, why);
    } else if (t->n_rx > 0 && !t->dead) {
        rx_splice_payload(t); /* the payload behind the header just read */
    }
    return got == max && !t->dead;
}

/* Our EV_READ on a plain tunnel socket: 256 KiB reads (lk_net_read_more)
 * instead of libevent's ioctl + 4 KiB read per event. While rx splices run,
 * a payload for one of them is spliced off the socket instead, and reads
 * stop at frame boundaries (rx_read_max): a few frames per event then,
 * instead of an epoll_wait each. */
static void on_tunnel_readable(evutil_socket_t fd, short what, void *arg)
{
    struct lk_tunnel *t = arg;
    (void)fd;
    (void)what;
    for (int i = 0; i < RX_FRAMES_PER_EVENT && tunnel_read_once(t) && t->n_rx > 0; i++)
        ;
    flush(t);
}

static void on_flush_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush(arg);
}

static void on_lazy_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    resume_lazy(arg);
    flush(arg);
}

static void on_tunnel_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    flush(arg);
}

static void on_tunnel_event(struct bufferevent *bev, short what, void *arg)
{
    struct lk_tunnel *t = arg;
    (void)bev;
    if (what & BEV_EVENT_ERROR) {
        int e = EVUTIL_SOCKET_ERROR();
        char why[128];
        snprintf(why, sizeof(why), "connection error: %s",
                 e ? evutil_socket_error_to_string(e) : "tls error");
        lk_tunnel_kill(t, why);
    } else if (what & BEV_EVENT_EOF) {
        lk_tunnel_kill(t, "connection closed by peer");
    }
}

/* The next tick: the next PING (ping_interval_ms after the last) or the
 * moment the peer's silence reaches dead_after_ms, whichever comes first, so
 * a silent peer is dropped on time, not up to a ping interval late. */
static void arm_ping(struct lk_tunnel *t)
{
    if (t->opts.ping_interval_ms == 0)
        return;
    long long next = (long long)t->opts.ping_interval_ms - ms_since(&t->last_ping);
    if (t->opts.dead_after_ms > 0) {
        long long dead_in = (long long)t->opts.dead_after_ms - ms_since(&t->last_recv);
        if (dead_in < next)
            next = dead_in;
    }
    if (next < 1)
        next = 1;
    struct timeval tv = { .tv_sec = (time_t)(next / 1000),
                          .tv_usec = (suseconds_t)(next % 1000) * 1000 };
    evtimer_add(&t->ping_timer, &tv);
}

static void on_ping_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lk_tunnel *t = arg;
    (void)fd;
    (void)what;
    if (t->dead)
        return;
    long long silent = ms_since(&t->last_recv);
    if (t->opts.dead_after_ms > 0 && silent >= (long long)t->opts.dead_after_ms) {
        char why[96];
        snprintf(why, sizeof(why), "peer silent for %lld ms", silent);
        lk_tunnel_kill(t, why);
        return;
    }
    if (ms_since(&t->last_ping) >= (long long)t->opts.ping_interval_ms) {
        nghttp2_submit_ping(t->h2, NGHTTP2_FLAG_NONE, NULL);
        flush(t);
        evutil_gettimeofday(&t->last_ping, NULL);
    }
    arm_ping(t);
}

static void on_close_ev(evutil_socket_t fd, short what, void *arg)
{
    struct lk_tunnel *t = arg;
    (void)fd;
    (void)what;
    t->on_closed(t, t->why, t->data);
}

static nghttp2_session *new_session(struct lk_tunnel *t)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_session *h2 = NULL;
    LK_ASSERT(nghttp2_session_callbacks_new(&cbs) == 0 && nghttp2_option_new(&opt) == 0);
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_send_data_callback(cbs, on_send_data);
    nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, on_read_length);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    /* Windows are released by hand once bytes reach the engine's socket. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    int rc = t->is_h2_client ? nghttp2_session_client_new2(&h2, cbs, t, opt)
                             : nghttp2_session_server_new2(&h2, cbs, t, opt);
    LK_ASSERT(rc == 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry iv[4] = {
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, t->opts.stream_window },
        { NGHTTP2_SETTINGS_MAX_FRAME_SIZE, FRAME_MAX },
        { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, t->is_h2_client ? 0 : t->opts.max_streams },
        { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
    };
    /* A server must not send ENABLE_PUSH; the client accepts no streams. A
     * peer that announces no larger frame size gets 16 KiB frames. */
    nghttp2_submit_settings(h2, NGHTTP2_FLAG_NONE, iv, t->is_h2_client ? 4 : 3);
    nghttp2_session_set_local_window_size(h2, NGHTTP2_FLAG_NONE, 0, (int32_t)t->opts.conn_window);
    return h2;
}

struct lk_tunnel *lk_tunnel_new(struct event_base *base, struct bufferevent *bev, bool is_h2_client,
                                const struct lk_tunnel_opts *opts, const char *label,
                                struct lk_http_server *adopt_into, lk_tunnel_closed_cb *on_closed,
                                void *data)
{
    struct lk_tunnel *t = lk_xcalloc(1, sizeof(*t));
    t->base = base;
    t->bev = bev;
    if (opts != NULL)
        t->opts = *opts;
    else
        lk_tunnel_opts_init(&t->opts);
    t->is_h2_client = is_h2_client;
    snprintf(t->label, sizeof(t->label), "%s", label);
    /* Unique for the process's life: the engine's pooled streams of a
     * replaced tunnel are never taken for its successor. */
    static uint64_t serial;
    snprintf(t->pool_key, sizeof(t->pool_key), "tunnel %s #%llu", t->label,
             (unsigned long long)++serial);
    t->adopt_into = adopt_into;
    t->on_closed = on_closed;
    t->data = data;
    evutil_gettimeofday(&t->last_recv, NULL);
    t->last_ping = t->last_recv;
    t->wbuf = evbuffer_new();
    LK_ASSERT(t->wbuf != NULL);
    evtimer_assign(&t->ping_timer, base, on_ping_timer, t);
    event_assign(&t->close_ev, base, -1, 0, on_close_ev, t);
    event_assign(&t->flush_ev, base, -1, 0, on_flush_ev, t);
    evtimer_assign(&t->lazy_ev, base, on_lazy_ev, t);
    t->plain = lk_net_bev_is_plain(bev);
    t->track = t->plain && is_h2_client; /* the client receives no preface */
    event_assign(&t->read_ev, base, t->plain ? bufferevent_getfd(bev) : -1, EV_READ | EV_PERSIST,
                 on_tunnel_readable, t);
    event_assign(&t->wr_ev, base, t->plain ? bufferevent_getfd(bev) : -1, EV_WRITE, on_wr_ev, t);
    lk_net_tune_socket(bev);
    t->h2 = new_session(t);
    bufferevent_setcb(bev, on_tunnel_read, on_tunnel_write, on_tunnel_event, t);
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bufferevent_setwatermark(bev, EV_WRITE, t->opts.out_buffer_max / 2, 0);
    if (t->plain) {
        /* Reading is ours; libevent only writes (and reports write errors). */
        bufferevent_disable(bev, EV_READ);
        bufferevent_enable(bev, EV_WRITE);
        event_add(&t->read_ev, NULL);
    } else {
        bufferevent_enable(bev, EV_READ | EV_WRITE);
    }
    arm_ping(t);
    flush(t);
    /* Bytes that arrived with the 101 are read from the loop. */
    if (evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
        if (t->plain)
            event_active(&t->read_ev, EV_READ, 0);
        else
            bufferevent_trigger(bev, EV_READ,
                                BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    }
    return t;
}

void lk_tunnel_free(struct lk_tunnel *t)
{
    if (t == NULL)
        return;
    drop_hold(t);
    event_del(&t->ping_timer);
    event_del(&t->close_ev);
    event_del(&t->flush_ev);
    event_del(&t->lazy_ev);
    event_del(&t->read_ev);
    event_del(&t->wr_ev);
    while (t->pipes != NULL) {
        struct lk_tunnel_pipe *p = t->pipes;
        t->pipes = p->next;
        pipe_reset_bev(p); /* ends its splice too (pipe_close_bev) */
        free(p);
    }
    if (t->out_sp != NULL) {
        splice_free(t->out_sp); /* (a frame of it half written: not pooled) */
        t->out_sp = NULL;
    }
    nghttp2_session_del(t->h2);
    evbuffer_free(t->wbuf);
    bufferevent_free(t->bev);
    free(t);
}
