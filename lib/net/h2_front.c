/*
 * h2_front.c - HTTP/2 (cleartext with prior knowledge, or TLS with ALPN h2)
 * in front of the HTTP/1.1 engine: one nghttp2 server session per client
 * connection, one bufferevent pair per request stream (or WebSocket opened
 * by extended CONNECT), the far end adopted into the engine.
 *
 * Invariants: nghttp2_session_send() runs only from flush(), which is called
 * from libevent callbacks, never inside an nghttp2 callback. Pair callbacks
 * are always deferred (libevent forces it), so the engine never re-enters us
 * and we never re-enter it. A stream (struct h2s) lives from the request's
 * HEADERS until nghttp2 closes the stream (on_stream_close); its pair end
 * is freed as soon as the engine's response has been read completely, or
 * reset when the stream is reset. A dying connection is only marked
 * (front_kill); the engine frees it from on_closed.
 *
 * Memory bounds: request DATA is given back to the windows only as the
 * engine takes it from the pair (NO_AUTO_WINDOW_UPDATE), so at most a
 * stream window (per stream) and the connection window are buffered; on the
 * response side a stream holds at most BODY_MAX decoded bytes before its
 * pair stops moving the engine's output (which then backs up into the
 * engine's own bounded buffers), and nghttp2 frames are produced only while
 * the socket has less than OUT_MAX queued.
 */
#include "net/h2_front.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"
#include "net/http_internal.h"
#include "net/log.h"
#include "net/rng_os.h"
#include "proto/http1.h"

#define MAX_STREAMS 100
/* Receive windows: per stream, and for the whole connection. */
#define STREAM_WINDOW (256 * 1024)
#define CONN_WINDOW   (4 * 1024 * 1024)
/* How long request DATA is still read and dropped after our whole answer
 * left while the client was sending (an early 401 or 413), before
 * RST_STREAM NO_ERROR asks it to stop (RFC 9113 §8.1): the time an HTTP/1.1
 * client gets from the engine's lingering close. A client that ends its
 * request meanwhile sees no reset (curl before 8.x takes the reset for a
 * failure, even after a complete response). */
#define EARLY_ANSWER_DRAIN_MS 2000
/* Bytes queued on the client socket before nghttp2 produces more frames
 * (and before we read more from the client). */
#define OUT_MAX (1024 * 1024)
/* Decoded response bytes a stream holds before its pair pauses. */
#define BODY_MAX (256 * 1024)
/* After the last frame: how long to read (and drop) what the client still
 * sends before closing, so that the close does not become a reset that
 * destroys the frames the client has not read yet (as the engine's
 * lingering close, RFC 9112 §9.6). */
#define LINGER_MS 2000
/* The engine's response heads: its own CORS headers come on top of what an
 * upstream may send within the server's response limits, so allow twice
 * those. */
static struct lk_http1_limits resp_limits(const struct lk_http_server *srv)
{
    const struct lk_http1_limits *l = &srv->resp_limits;
    return (struct lk_http1_limits){ 2 * l->max_line, 2 * l->max_head, 2 * l->max_headers,
                                     l->max_target };
}

/* The :protocol of an extended CONNECT (RFC 8441 §4). */
enum ext_protocol {
    PROTO_NONE = 0,
    PROTO_WEBSOCKET, /* a WebSocket over this stream (RFC 8441 §5) */
    PROTO_OTHER,
};

enum resp_state {
    RESP_HEAD = 0, /* waiting for the engine's (next) response head */
    RESP_BODY,     /* HEADERS submitted; body bytes flow */
    RESP_DONE,     /* the whole response is in s->body (or was answered locally) */
};

struct h2s {
    struct lk_h2_front *f;
    struct h2s *prev, *next;
    int32_t id;
    struct bufferevent *bev; /* our pair end; NULL before adoption and once freed */
    /* The request as received. */
    struct lk_buf method, path, authority, host, fields, cookie;
    size_t head_bytes;
    bool too_big; /* head over the limit: 431 */
    bool bad;     /* a field the HTTP/1.1 head cannot carry: 400 */
    bool has_cl, chunked_req, req_done, is_head;
    bool started; /* the header block is complete (start_request) */
    enum ext_protocol protocol;
    /* An extended CONNECT for a WebSocket, handed to the engine as an
     * HTTP/1.1 upgrade: the engine's 101 becomes our 200 and the stream's
     * DATA carries the WebSocket bytes both ways from then on. */
    bool ws;
    size_t unconsumed; /* request DATA bytes in our pair output, window not given back */
    /* The response. */
    enum resp_state rs;
    enum lk_http1_body_kind kind;
    uint64_t left;
    struct lk_http1_chunked chunked;
    struct evbuffer *body; /* decoded body bytes for the data provider */
    bool in_eof;           /* the engine closed its end */
    bool deferred;         /* the data provider waits */
    bool throttled;        /* the pair's reading is paused (BODY_MAX) */
    bool pump_pending;     /* pump from the loop (on_pump_ev) */
    /* A WebSocket whose upstream failed (the engine's end reported an error):
     * after its last bytes the stream is reset with CANCEL, not ended
     * (cancel_when_flushed(); cancel: the reset was submitted). */
    bool in_err, cancel;
    /* Since when (ms, the loop's clock) the stream has response bytes the
     * client's flow-control windows do not let out; 0: not stalled
     * (on_stall). */
    uint64_t stalled_since;
    /* When our END_STREAM left before the client's (ms, the loop's clock):
     * its request DATA is dropped until EARLY_ANSWER_DRAIN_MS later
     * (on_stall); 0: not draining. */
    uint64_t answered_at;
};

struct lk_h2_front {
    struct lk_http_server *srv;
    struct bufferevent *bev;
    nghttp2_session *h2;
    uint64_t id;
    char peer[64];
    bool is_loopback;
    bool is_tls; /* ALPN h2 on a TLS listener: streams adopted as https */
    struct h2s *streams;
    size_t n_streams;
    size_t n_draining;                /* streams with answered_at set */
    bool stall_fast;                  /* stall_ev runs at the drain's pace (arm_stall) */
    struct lk_http_header *resp_hdrs; /* parser output, resp_limits().max_headers */
    struct event close_ev, pump_ev, idle_ev, stall_ev;
    bool goaway, finishing, lingering, dead, freeing;
    char why[128];
    lk_h2_front_closed_cb *on_closed;
    void *data;
};

int lk_h2_preface_match(const char *p, size_t len)
{
    size_t n = len < LK_H2_PREFACE_LEN ? len : LK_H2_PREFACE_LEN;
    if (memcmp(p, LK_H2_PREFACE, n) != 0)
        return -1;
    return n == LK_H2_PREFACE_LEN ? 1 : 0;
}

size_t lk_h2_front_n_streams(const struct lk_h2_front *f)
{
    return f->n_streams;
}

/* ---- the connection ---------------------------------------------------- */

static void front_kill(struct lk_h2_front *f, const char *why)
{
    if (f->dead)
        return;
    f->dead = true;
    snprintf(f->why, sizeof(f->why), "%s", why);
    LK_CLOG(f->id, DEBUG, "http/2: closing: %s", why);
    bufferevent_disable(f->bev, EV_READ | EV_WRITE);
    event_del(&f->idle_ev);
    event_del(&f->pump_ev);
    event_del(&f->stall_ev);
    event_active(&f->close_ev, EV_TIMEOUT, 0);
}

static size_t queued_out(const struct lk_h2_front *f)
{
    return evbuffer_get_length(bufferevent_get_output(f->bev));
}

static void arm_idle(struct lk_h2_front *f)
{
    unsigned ms = f->srv->opts.idle_timeout_ms;
    if (ms == 0 || f->dead || f->lingering)
        return;
    struct timeval tv = lk_ms_tv(ms);
    evtimer_add(&f->idle_ev, &tv);
}

/* Everything is written: shut our side, drop what still comes, close on the
 * client's EOF or after LINGER_MS (on_idle). */
static void start_linger(struct lk_h2_front *f)
{
    if (f->lingering)
        return;
    f->lingering = true;
    /* Over TLS a bare FIN (no close_notify) reads as a truncated stream:
     * the client closes after our GOAWAY instead. */
    evutil_socket_t fd = bufferevent_getfd(f->bev);
    if (fd >= 0 && !f->is_tls)
        (void)shutdown(fd, SHUT_WR);
    bufferevent_disable(f->bev, EV_WRITE);
    bufferevent_enable(f->bev, EV_READ);
    struct timeval tv = lk_ms_tv(LINGER_MS);
    evtimer_add(&f->idle_ev, &tv);
}

/* Sends what nghttp2 has queued, up to OUT_MAX on the socket; the write
 * callback calls again as the socket drains. Closes the connection once the
 * session has nothing left to read or write (after a GOAWAY, either side's)
 * and the socket took everything. */
static void flush(struct lk_h2_front *f)
{
    if (f->dead || f->lingering)
        return;
    int rc = nghttp2_session_send(f->h2);
    if (rc != 0) {
        char why[96];
        snprintf(why, sizeof(why), "http/2 send failed: %s", nghttp2_strerror(rc));
        front_kill(f, why);
        return;
    }
    /* A client that does not read its responses is not read either. */
    if (queued_out(f) >= OUT_MAX)
        bufferevent_disable(f->bev, EV_READ);
    else if (!f->finishing)
        bufferevent_enable(f->bev, EV_READ);
    if (nghttp2_session_want_read(f->h2) || nghttp2_session_want_write(f->h2))
        return;
    if (!f->finishing) {
        f->finishing = true;
        bufferevent_disable(f->bev, EV_READ);
        bufferevent_setwatermark(f->bev, EV_WRITE, 0, 0); /* on_write when empty */
    }
    if (queued_out(f) == 0)
        start_linger(f);
}

static void send_goaway(struct lk_h2_front *f)
{
    if (f->goaway || f->dead)
        return;
    f->goaway = true;
    nghttp2_submit_goaway(f->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(f->h2),
                          NGHTTP2_NO_ERROR, NULL, 0);
}

/* ---- streams ----------------------------------------------------------- */

/* How often on_stall() looks for streams the client's windows hold back,
 * and for early-answered streams whose drain is over. */
static void arm_stall(struct lk_h2_front *f)
{
    unsigned ms = f->srv->opts.send_timeout_ms / 4;
    bool fast = false;
    if (f->n_draining > 0 && (ms == 0 || ms > EARLY_ANSWER_DRAIN_MS / 4)) {
        ms = EARLY_ANSWER_DRAIN_MS / 4;
        fast = true;
    }
    /* A pending timer is kept unless a drain needs it sooner. */
    if (ms == 0 || f->dead || (evtimer_pending(&f->stall_ev, NULL) && (!fast || f->stall_fast)))
        return;
    f->stall_fast = fast;
    if (ms < 10)
        ms = 10;
    struct timeval tv = lk_ms_tv(ms);
    evtimer_add(&f->stall_ev, &tv);
}

static struct h2s *stream_new(struct lk_h2_front *f, int32_t id)
{
    struct h2s *s = lk_xcalloc(1, sizeof(*s));
    s->f = f;
    s->id = id;
    size_t max = f->srv->opts.limits.max_head;
    lk_buf_init(&s->method, max);
    lk_buf_init(&s->path, max);
    lk_buf_init(&s->authority, max);
    lk_buf_init(&s->host, max);
    lk_buf_init(&s->fields, max);
    lk_buf_init(&s->cookie, max);
    s->body = evbuffer_new();
    LK_ASSERT(s->body != NULL);
    s->next = f->streams;
    if (f->streams != NULL)
        f->streams->prev = s;
    f->streams = s;
    f->n_streams++;
    arm_stall(f);
    /* A header block in progress: nothing else may come on the connection
     * until it ends (RFC 9113 §6.10), so it is bounded as an HTTP/1.1
     * request head is (on_idle). */
    event_del(&f->idle_ev);
    unsigned ms = f->srv->opts.head_timeout_ms;
    if (ms > 0) {
        struct timeval tv = lk_ms_tv(ms);
        evtimer_add(&f->idle_ev, &tv);
    }
    return s;
}

/* Frees our pair end. reset: the stream was aborted, so the engine's end
 * is told with an error first, as a reset socket would be (an EOF alone
 * reads as a client that finished sending, mid-request). */
static void pair_close(struct h2s *s, bool reset)
{
    if (s->bev == NULL)
        return;
    struct bufferevent *engine = bufferevent_pair_get_partner(s->bev);
    if (reset && engine != NULL)
        bufferevent_trigger_event(engine, BEV_EVENT_ERROR | BEV_EVENT_READING, 0);
    lk_net_bev_free(s->bev);
    s->bev = NULL;
}

static void stream_free(struct h2s *s)
{
    struct lk_h2_front *f = s->f;
    pair_close(s, true);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        f->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    f->n_streams--;
    if (s->answered_at != 0)
        f->n_draining--;
    lk_buf_release(&s->method);
    lk_buf_release(&s->path);
    lk_buf_release(&s->authority);
    lk_buf_release(&s->host);
    lk_buf_release(&s->fields);
    lk_buf_release(&s->cookie);
    evbuffer_free(s->body);
    free(s);
}

static void stream_reset(struct h2s *s, uint32_t code)
{
    pair_close(s, true);
    s->rs = RESP_DONE;
    if (!s->f->dead)
        nghttp2_submit_rst_stream(s->f->h2, NGHTTP2_FLAG_NONE, s->id, code);
}

/* Gives request DATA that left our pair output back to the windows. */
static void release_window(struct h2s *s)
{
    size_t queued = s->bev != NULL ? evbuffer_get_length(bufferevent_get_output(s->bev)) : 0;
    if (s->unconsumed <= queued || s->f->dead)
        return;
    /* queued may include chunk framing: what we give back is a lower
     * bound, and everything once the output is empty. */
    size_t n = s->unconsumed - queued;
    s->unconsumed = queued;
    nghttp2_session_consume(s->f->h2, s->id, n);
}

static ssize_t on_data_source(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                              uint32_t *flags, nghttp2_data_source *src, void *user);

/* A WebSocket whose upstream failed, all of whose bytes are in DATA frames
 * now: the stream is reset with CANCEL instead of ended (RFC 8441 §5:
 * "Orderly TCP-level closures are represented as END_STREAM flags ... RST
 * exceptions are represented with the RST_STREAM frame ... with the CANCEL
 * error code"). A DATA frame nghttp2 is still writing leaves first. Called
 * when the response completes and after each DATA frame. */
static void cancel_when_flushed(struct h2s *s)
{
    if (!s->in_err || s->cancel || s->rs != RESP_DONE || evbuffer_get_length(s->body) > 0 ||
        s->f->dead)
        return;
    s->cancel = true;
    nghttp2_submit_rst_stream(s->f->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
}

static void schedule_pump(struct h2s *s)
{
    s->pump_pending = true;
    if (!s->f->dead)
        event_active(&s->f->pump_ev, EV_TIMEOUT, 0);
}

/* Wakes the data provider when it waits and has something to send. */
static void wake_provider(struct h2s *s)
{
    if (!s->deferred || (evbuffer_get_length(s->body) == 0 && s->rs != RESP_DONE))
        return;
    s->deferred = false;
    nghttp2_session_resume_data(s->f->h2, s->id);
}

/* A response from the front itself (431, 400, 405, 501): text/plain, an
 * Allow field when allow is not NULL; closes the stream's side. */
static void respond_local(struct h2s *s, int status, const char *text, const char *allow)
{
    char st[4], cl[24];
    snprintf(st, sizeof(st), "%d", status);
    snprintf(cl, sizeof(cl), "%zu", strlen(text));
    nghttp2_nv nva[] = {
        { (uint8_t *)":status", (uint8_t *)st, 7, strlen(st), NGHTTP2_NV_FLAG_NONE },
        { (uint8_t *)"content-type", (uint8_t *)"text/plain; charset=utf-8", 12, 25,
          NGHTTP2_NV_FLAG_NONE },
        { (uint8_t *)"content-length", (uint8_t *)cl, 14, strlen(cl), NGHTTP2_NV_FLAG_NONE },
        { (uint8_t *)"allow", (uint8_t *)(uintptr_t)allow, 5, allow ? strlen(allow) : 0,
          NGHTTP2_NV_FLAG_NONE },
    };
    evbuffer_add(s->body, text, strlen(text));
    s->rs = RESP_DONE;
    nghttp2_data_provider prd = { .source.ptr = s, .read_callback = on_data_source };
    if (nghttp2_submit_response(s->f->h2, s->id, nva, allow ? 4 : 3, &prd) != 0)
        stream_reset(s, NGHTTP2_INTERNAL_ERROR);
}

/* ---- the engine's response --------------------------------------------- */

/* Submits a parsed response head: :status and the fields, names
 * lower-cased, without the connection-specific ones (RFC 9113 §8.2.2).
 * final: a final response (with its body provider unless the response has
 * none); else an informational one. 0 or -1. */
static int submit_head(struct h2s *s, const struct lk_http1_response *r, int status, bool final)
{
    struct lk_h2_front *f = s->f;
    size_t names = 0;
    for (size_t i = 0; i < r->n_headers; i++)
        names += r->headers[i].name.len;
    nghttp2_nv *nva = lk_xcalloc(r->n_headers + 1, sizeof(*nva));
    char *lower = lk_xmalloc(names + 1);
    char st[4];
    snprintf(st, sizeof(st), "%d", status);
    nva[0] =
        (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)st, 7, strlen(st), NGHTTP2_NV_FLAG_NONE };
    size_t n = 1, off = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        struct lk_str name = r->headers[i].name, value = r->headers[i].value;
        /* RFC 8441 §5: the 200 carries no Sec-WebSocket-Accept (the key
         * was ours). */
        if (lk_http1_is_hop_by_hop(name) ||
            (s->ws && lk_str_ieq(name, LK_STR("sec-websocket-accept"))))
            continue;
        for (size_t k = 0; k < name.len; k++)
            lower[off + k] = lk_ascii_lower(name.ptr[k]);
        /* nghttp2_nv is not const-correct; submit copies, never writes. */
        nva[n++] = (nghttp2_nv){ (uint8_t *)lower + off, (uint8_t *)(uintptr_t)value.ptr, name.len,
                                 value.len, NGHTTP2_NV_FLAG_NONE };
        off += name.len;
    }
    int rc;
    if (!final) {
        rc = nghttp2_submit_headers(f->h2, NGHTTP2_FLAG_NONE, s->id, NULL, nva, n, NULL);
    } else {
        nghttp2_data_provider prd = { .source.ptr = s, .read_callback = on_data_source };
        rc = nghttp2_submit_response(f->h2, s->id, nva, n,
                                     r->body_kind == LK_HTTP1_BODY_NONE ? NULL : &prd);
    }
    free(lower);
    free(nva);
    return rc == 0 ? 0 : -1;
}

/* Parses the engine's next response head from our pair input. Returns 1 when
 * a final head was submitted, 0 when more bytes are needed, -1 on error
 * (the stream is reset). */
static int read_head(struct h2s *s)
{
    const struct lk_http1_limits lim = resp_limits(s->f->srv);
    struct evbuffer *in = bufferevent_get_input(s->bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        size_t n = len < lim.max_head + 1 ? len : lim.max_head + 1;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        struct lk_http1_response r = { .headers = s->f->resp_hdrs, .headers_cap = lim.max_headers };
        const char *why = NULL;
        int rc = lk_http1_parse_response(p, n, &lim, s->is_head, &r, &why);
        if (rc == LK_PARTIAL)
            return 0;
        bool switched = r.status == 101 && s->ws;
        if (rc < 0 || (r.status == 101 && !switched)) {
            LK_CLOG(s->f->id, WARN, "http/2 stream %d: bad response head from the engine: %s",
                    (int)s->id, rc < 0 ? (why ? why : "malformed") : "101");
            stream_reset(s, NGHTTP2_INTERNAL_ERROR);
            return -1;
        }
        if (s->ws && r.status >= 200 && r.status < 300) {
            /* A 2xx would tell an RFC 8441 client its WebSocket is open. */
            LK_CLOG(s->f->id, DEBUG, "http/2 stream %d: upstream answered %d to an upgrade",
                    (int)s->id, r.status);
            pair_close(s, true);
            respond_local(s, 502, "the upstream did not switch to the WebSocket protocol", NULL);
            return -1;
        }
        bool final = r.status >= 200 || switched;
        if (switched) /* RFC 8441 §5: the upgrade succeeded; bytes until the end */
            r.body_kind = LK_HTTP1_BODY_UNTIL_CLOSE;
        if (submit_head(s, &r, switched ? 200 : r.status, final) != 0) {
            stream_reset(s, NGHTTP2_INTERNAL_ERROR);
            return -1;
        }
        evbuffer_drain(in, (size_t)rc);
        if (!final)
            continue; /* 100 Continue, 103 Early Hints: forwarded, then the real one */
        s->kind = r.body_kind;
        s->left = r.content_length;
        lk_http1_chunked_init(&s->chunked);
        s->rs = RESP_BODY;
        if (s->kind == LK_HTTP1_BODY_NONE || (s->kind == LK_HTTP1_BODY_LENGTH && s->left == 0)) {
            s->rs = RESP_DONE;
        }
        return 1;
    }
}

/* Moves decoded body bytes from the pair input into s->body, up to
 * BODY_MAX. 0, or -1 when the chunked framing is bad (stream reset). */
static int read_body(struct h2s *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    while (s->rs == RESP_BODY && evbuffer_get_length(s->body) < BODY_MAX) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            break;
        if (s->kind == LK_HTTP1_BODY_LENGTH) {
            size_t n = len < s->left ? len : (size_t)s->left;
            evbuffer_remove_buffer(in, s->body, n);
            s->left -= n;
            if (s->left == 0)
                s->rs = RESP_DONE;
            continue;
        }
        if (s->kind == LK_HTTP1_BODY_UNTIL_CLOSE) {
            evbuffer_remove_buffer(in, s->body, len);
            continue;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t framing = 0, data = 0;
        const char *why = NULL;
        int rc = lk_http1_chunked_decode(&s->chunked, v.iov_base, v.iov_len, &framing, &data, &why);
        if (rc < 0) {
            LK_CLOG(s->f->id, WARN, "http/2 stream %d: bad chunked body from the engine: %s",
                    (int)s->id, why ? why : "malformed");
            stream_reset(s, NGHTTP2_INTERNAL_ERROR);
            return -1;
        }
        evbuffer_drain(in, framing);
        if (data > 0)
            evbuffer_remove_buffer(in, s->body, data);
        if (rc == 1)
            s->rs = RESP_DONE;
        else if (framing + data == 0)
            break; /* cannot happen with bytes left; never spin */
    }
    return 0;
}

/* Moves the engine's response on: heads, body, EOF; pauses or resumes the
 * pair; frees it once the response is complete. */
static void pump(struct h2s *s)
{
    s->pump_pending = false;
    if (s->bev == NULL || s->f->dead)
        return;
    if (s->rs == RESP_HEAD && read_head(s) < 0)
        return;
    if (s->rs == RESP_BODY && read_body(s) < 0)
        return;
    struct evbuffer *in = bufferevent_get_input(s->bev);
    if (s->rs != RESP_DONE && s->in_eof && evbuffer_get_length(in) == 0) {
        if (s->rs == RESP_BODY && s->kind == LK_HTTP1_BODY_UNTIL_CLOSE) {
            s->rs = RESP_DONE;
        } else {
            LK_CLOG(s->f->id, DEBUG, "http/2 stream %d: the engine closed mid-response",
                    (int)s->id);
            stream_reset(s, NGHTTP2_INTERNAL_ERROR);
            return;
        }
    }
    if (s->rs == RESP_DONE) {
        /* The whole response is in s->body: the pair has served its
         * purpose (the engine sees EOF after a complete exchange). */
        release_window(s);
        pair_close(s, false);
        cancel_when_flushed(s);
    } else {
        bool full = evbuffer_get_length(s->body) >= BODY_MAX;
        if (full != s->throttled) {
            s->throttled = full;
            if (full)
                bufferevent_disable(s->bev, EV_READ);
            else
                bufferevent_enable(s->bev, EV_READ);
        }
    }
    wake_provider(s);
}

static ssize_t on_data_source(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                              uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct h2s *s = src->ptr;
    (void)h2;
    (void)id;
    (void)user;
    size_t have = evbuffer_get_length(s->body);
    if (have == 0 && (s->rs != RESP_DONE || s->in_err)) {
        s->deferred = true; /* pump() resumes */
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = have < len ? have : len;
    if (n > 0)
        evbuffer_remove(s->body, buf, n);
    if (s->rs == RESP_DONE && n == have && !s->in_err)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (s->throttled && have - n < BODY_MAX / 2)
        schedule_pump(s); /* not from inside nghttp2: from the loop */
    return (ssize_t)n;
}

/* ---- pair callbacks ---------------------------------------------------- */

static void on_pair_read(struct bufferevent *bev, void *arg)
{
    struct h2s *s = arg;
    (void)bev;
    pump(s);
    flush(s->f);
}

/* Our output moved on to the engine: give the window back. */
static void on_pair_write(struct bufferevent *bev, void *arg)
{
    struct h2s *s = arg;
    (void)bev;
    size_t before = s->unconsumed;
    release_window(s);
    if (before != s->unconsumed)
        flush(s->f); /* WINDOW_UPDATE */
}

/* The engine closed (or freed) its end. Its last bytes are in our input
 * already; pump() decides whether the response was complete. An error
 * comes with the EOF (lk_net_pair_error()) when a WebSocket's upstream
 * failed. */
static void on_pair_event(struct bufferevent *bev, short what, void *arg)
{
    struct h2s *s = arg;
    (void)bev;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    s->in_eof = true;
    s->in_err = s->ws && (what & BEV_EVENT_ERROR) != 0; /* cancel_when_flushed() */
    pump(s);
    flush(s->f);
}

static void on_pump_ev(evutil_socket_t fd, short what, void *arg)
{
    struct lk_h2_front *f = arg;
    (void)fd;
    (void)what;
    for (struct h2s *s = f->streams; s != NULL; s = s->next)
        if (s->pump_pending)
            pump(s);
    flush(f);
}

/* ---- requests ---------------------------------------------------------- */

static bool method_has_body(struct lk_str m)
{
    return lk_str_eq(m, LK_STR("POST")) || lk_str_eq(m, LK_STR("PUT")) ||
           lk_str_eq(m, LK_STR("PATCH"));
}

/* The HTTP/1.1 request head for s (RFC 9113 §8.3.1 backwards): request line,
 * Host from :authority (else the host field), the fields, the cookies
 * joined (§8.2.3), and the body framing. */
static void build_head(const struct h2s *s, struct lk_buf *b)
{
    lk_buf_addstr(b, s->ws ? LK_STR("GET") : lk_buf_str(&s->method));
    lk_buf_addch(b, ' ');
    lk_buf_addstr(b, lk_buf_str(&s->path));
    lk_buf_adds(b, " HTTP/1.1\r\n");
    const struct lk_buf *host = s->authority.len > 0 ? &s->authority : &s->host;
    if (host->len > 0)
        lk_head_add_field(b, LK_STR("Host"), lk_buf_str(host));
    lk_buf_addstr(b, lk_buf_str(&s->fields));
    if (s->cookie.len > 0)
        lk_head_add_field(b, LK_STR("Cookie"), lk_buf_str(&s->cookie));
    if (s->ws) {
        /* RFC 8441 §5 backwards: an HTTP/1.1 upgrade with a key of ours
         * (the client's handshake has none); no body framing, the bytes
         * after the head are the WebSocket's. */
        uint8_t key[16];
        char key64[32];
        lk_rng_os_fill(NULL, key, sizeof(key));
        int n = EVP_EncodeBlock((unsigned char *)key64, key, (int)sizeof(key));
        lk_buf_adds(b, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
        lk_head_add_field(b, LK_STR("Sec-WebSocket-Key"), (struct lk_str){ key64, (size_t)n });
    } else if (s->req_done) {
        if (!s->has_cl && method_has_body(lk_buf_str(&s->method)))
            lk_buf_adds(b, "Content-Length: 0\r\n");
    } else if (!s->has_cl) {
        lk_buf_adds(b, "Transfer-Encoding: chunked\r\n");
    }
    lk_buf_adds(b, "\r\n");
}

static void make_pair(struct lk_h2_front *f, struct bufferevent **ours, struct bufferevent **theirs)
{
    struct bufferevent *pair[2] = { NULL, NULL };
    LK_ASSERT(bufferevent_pair_new(f->srv->base, BEV_OPT_CLOSE_ON_FREE, pair) == 0);
    *ours = pair[0];
    *theirs = pair[1];
}

/* The request's HEADERS are complete: answer locally, or hand the request to
 * the engine. */
static void start_request(struct h2s *s)
{
    struct lk_h2_front *f = s->f;
    s->started = true;
    if (s->too_big) {
        respond_local(s, 431, "request header fields too large", NULL);
        return;
    }
    if (lk_str_eq(lk_buf_str(&s->method), LK_STR("CONNECT"))) {
        if (s->protocol == PROTO_NONE) {
            /* A CONNECT for a raw tunnel: the answer of both servers on
             * HTTP/1.1 (405 with Allow; RFC 9110 §9.3.6). */
            respond_local(s, 405, "CONNECT is not supported by this server", LK_HTTP_PROXY_ALLOW);
            return;
        }
        if (s->protocol != PROTO_WEBSOCKET) {
            respond_local(s, 501, "extended CONNECT supports the websocket protocol only", NULL);
            return;
        }
        s->ws = true;
    }
    if (s->bad || s->method.len == 0 || s->path.len == 0) {
        respond_local(s, 400, "malformed request", NULL);
        return;
    }
    s->chunked_req = !s->ws && !s->req_done && !s->has_cl;
    struct lk_buf head = LK_BUF_INIT;
    build_head(s, &head);
    struct bufferevent *ours = NULL, *theirs = NULL;
    make_pair(f, &ours, &theirs);
    s->bev = ours;
    bufferevent_setcb(ours, on_pair_read, on_pair_write, on_pair_event, s);
    /* The write callback fires as the engine takes our output (window
     * release); no read watermark: reading is paused by hand (pump). */
    bufferevent_setwatermark(ours, EV_WRITE, STREAM_WINDOW / 2, 0);
    bufferevent_enable(ours, EV_READ | EV_WRITE);
    evbuffer_add(bufferevent_get_output(ours), head.data, head.len);
    lk_buf_release(&head);
    int rc = lk_http_server_adopt_h2(f->srv, theirs, f->peer, f->is_loopback, f->is_tls);
    if (rc != 0) {
        LK_CLOG(f->id, WARN, "http/2 stream %d: the server refused it (draining or full)",
                (int)s->id);
        stream_reset(s, NGHTTP2_REFUSED_STREAM);
    }
}

/* Request DATA: on into the pair (chunk-framed when the length is unknown). */
static void request_data(struct h2s *s, const uint8_t *data, size_t len)
{
    struct lk_h2_front *f = s->f;
    if (s->bev == NULL || lk_net_bev_orphaned(s->bev)) {
        /* Answered already, or the engine let go: drop, as a closed socket
         * would. */
        nghttp2_session_consume(f->h2, s->id, len);
        return;
    }
    struct evbuffer *out = bufferevent_get_output(s->bev);
    if (s->chunked_req) {
        char hex[24];
        int k = snprintf(hex, sizeof(hex), "%zx\r\n", len);
        evbuffer_add(out, hex, (size_t)k);
    }
    evbuffer_add(out, data, len);
    if (s->chunked_req)
        evbuffer_add(out, "\r\n", 2);
    s->unconsumed += len;
    release_window(s);
}

static void request_end(struct h2s *s)
{
    if (s->req_done)
        return;
    s->req_done = true;
    if (s->bev != NULL && s->chunked_req)
        evbuffer_add(bufferevent_get_output(s->bev), "0\r\n\r\n", 5);
}

/* ---- nghttp2 callbacks --------------------------------------------------- */

static ssize_t on_send(nghttp2_session *h2, const uint8_t *data, size_t len, int flags, void *user)
{
    struct lk_h2_front *f = user;
    (void)h2;
    (void)flags;
    if (f->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (queued_out(f) >= OUT_MAX)
        return NGHTTP2_ERR_WOULDBLOCK;
    evbuffer_add(bufferevent_get_output(f->bev), data, len);
    return (ssize_t)len;
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *fr, void *user)
{
    struct lk_h2_front *f = user;
    if (fr->hd.type != NGHTTP2_HEADERS || fr->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2s *s = stream_new(f, fr->hd.stream_id);
    nghttp2_session_set_stream_user_data(h2, fr->hd.stream_id, s);
    return 0;
}

static bool nv_is(const uint8_t *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

/* Fields that only mean something for one HTTP/1.1 connection (RFC 9113
 * §8.2.2); nghttp2 already rejects most of them. */
static bool drop_field(const uint8_t *name, size_t n)
{
    return lk_http1_is_hop_by_hop((struct lk_str){ (const char *)name, n }) ||
           nv_is(name, n, "http2-settings");
}

static bool has_ctl(const uint8_t *p, size_t n)
{
    return memchr(p, '\r', n) != NULL || memchr(p, '\n', n) != NULL || memchr(p, '\0', n) != NULL;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *fr, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    struct lk_h2_front *f = user;
    (void)flags;
    if (fr->hd.type != NGHTTP2_HEADERS || fr->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: dropped */
    struct h2s *s = nghttp2_session_get_stream_user_data(h2, fr->hd.stream_id);
    if (s == NULL || s->too_big || s->bad)
        return 0;
    s->head_bytes += nlen + vlen + 4;
    if (s->head_bytes > f->srv->opts.limits.max_head) {
        s->too_big = true;
        return 0;
    }
    if (has_ctl(name, nlen) || has_ctl(value, vlen)) {
        s->bad = true;
        return 0;
    }
    int rc = 0;
    if (nv_is(name, nlen, ":method")) {
        rc = lk_buf_add(&s->method, value, vlen);
        s->is_head = nv_is(value, vlen, "HEAD");
        s->bad |= memchr(value, ' ', vlen) != NULL;
    } else if (nv_is(name, nlen, ":path")) {
        rc = lk_buf_add(&s->path, value, vlen);
        s->bad |= memchr(value, ' ', vlen) != NULL;
    } else if (nv_is(name, nlen, ":authority")) {
        rc = lk_buf_add(&s->authority, value, vlen);
    } else if (nv_is(name, nlen, ":protocol")) {
        /* nghttp2 admits it on CONNECT only (we advertise
         * ENABLE_CONNECT_PROTOCOL); RFC 6455 tokens are case-insensitive. */
        s->protocol = lk_str_ieq((struct lk_str){ (const char *)value, vlen }, LK_STR("websocket"))
                          ? PROTO_WEBSOCKET
                          : PROTO_OTHER;
    } else if (nlen > 0 && name[0] == ':') {
        /* :scheme: the adopted exchange knows whether the connection is
         * TLS. */
    } else if (s->protocol == PROTO_WEBSOCKET &&
               (nv_is(name, nlen, "sec-websocket-key") || nv_is(name, nlen, "content-length"))) {
        /* The key: ours goes to the engine (build_head). A length: the
         * stream's bytes are the WebSocket's, not a body of the upgrade
         * request (RFC 9110 §9.3.6: CONNECT content has no defined
         * semantics). */
    } else if (nv_is(name, nlen, "host")) {
        if (s->host.len == 0)
            rc = lk_buf_add(&s->host, value, vlen);
    } else if (nv_is(name, nlen, "cookie")) {
        if (s->cookie.len > 0)
            rc = lk_buf_add(&s->cookie, "; ", 2);
        if (rc == 0)
            rc = lk_buf_add(&s->cookie, value, vlen);
    } else if (!drop_field(name, nlen)) {
        s->has_cl |= nv_is(name, nlen, "content-length");
        lk_head_add_field(&s->fields, (struct lk_str){ (const char *)name, nlen },
                          (struct lk_str){ (const char *)value, vlen });
    }
    if (rc != 0)
        s->too_big = true;
    return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *fr, void *user)
{
    (void)user;
    if (fr->hd.type != NGHTTP2_HEADERS && fr->hd.type != NGHTTP2_DATA)
        return 0;
    struct h2s *s = nghttp2_session_get_stream_user_data(h2, fr->hd.stream_id);
    if (s == NULL)
        return 0;
    bool end = (fr->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (fr->hd.type == NGHTTP2_HEADERS && fr->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->req_done = end;
        start_request(s);
        return 0;
    }
    if (end)
        request_end(s);
    return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    (void)user;
    struct h2s *s = nghttp2_session_get_stream_user_data(h2, id);
    if (s == NULL) {
        nghttp2_session_consume(h2, id, len);
        return 0;
    }
    request_data(s, data, len);
    return 0;
}

/* Our END_STREAM left before the client finished its request (the engine
 * answered early, e.g. 413): ask the client to stop sending (RFC 9113
 * §8.1). After a DATA frame, a WebSocket whose upstream failed may be
 * reset now (cancel_when_flushed()). */
static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *fr, void *user)
{
    (void)user;
    if (fr->hd.type == NGHTTP2_DATA) {
        struct h2s *s = nghttp2_session_get_stream_user_data(h2, fr->hd.stream_id);
        if (s != NULL) {
            s->stalled_since = 0; /* the client takes bytes (on_stall) */
            cancel_when_flushed(s);
        }
    }
    if ((fr->hd.type == NGHTTP2_HEADERS || fr->hd.type == NGHTTP2_DATA) &&
        (fr->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        nghttp2_session_get_stream_remote_close(h2, fr->hd.stream_id) == 0) {
        struct h2s *s = nghttp2_session_get_stream_user_data(h2, fr->hd.stream_id);
        if (s == NULL || s->ws) {
            nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, fr->hd.stream_id, NGHTTP2_NO_ERROR);
        } else if (s->answered_at == 0) {
            /* Read and drop the rest for a while first (request_data()). */
            s->answered_at = (uint64_t)lk_loop_now_ms(s->f->srv->base) | 1;
            s->f->n_draining++;
            arm_stall(s->f);
        }
    }
    return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t code, void *user)
{
    struct lk_h2_front *f = user;
    if (f->freeing)
        return 0;
    struct h2s *s = nghttp2_session_get_stream_user_data(h2, id);
    if (s == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(h2, id, NULL);
    if (code != NGHTTP2_NO_ERROR)
        LK_CLOG(f->id, DEBUG, "http/2 stream %d reset: %s", (int)id, nghttp2_http2_strerror(code));
    /* The stream window is gone with the stream: settle the connection's. */
    if (s->unconsumed > 0)
        nghttp2_session_consume_connection(h2, s->unconsumed);
    s->unconsumed = 0;
    stream_free(s); /* resets a pair still open: the engine cancels */
    if (f->n_streams == 0)
        arm_idle(f);
    return 0;
}

/* ---- the client socket --------------------------------------------------- */

static void on_read(struct bufferevent *bev, void *arg)
{
    struct lk_h2_front *f = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (f->lingering) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    while (!f->dead && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t rc = nghttp2_session_mem_recv(f->h2, v.iov_base, v.iov_len);
        if (rc < 0) {
            char why[96];
            snprintf(why, sizeof(why), "http/2 protocol error: %s", nghttp2_strerror((int)rc));
            front_kill(f, why);
            return;
        }
        evbuffer_drain(in, (size_t)rc);
    }
    flush(f);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    flush(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct lk_h2_front *f = arg;
    (void)bev;
    if (what & BEV_EVENT_TIMEOUT)
        front_kill(f, "send timeout");
    else if (what & BEV_EVENT_ERROR)
        front_kill(f, "client error");
    else if (what & BEV_EVENT_EOF)
        front_kill(f, f->lingering ? "http/2 connection finished" : "client closed");
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct lk_h2_front *f = arg;
    (void)fd;
    (void)what;
    if (f->lingering) {
        front_kill(f, "http/2 connection finished (lingering close timed out)");
        return;
    }
    if (f->n_streams > 0) {
        for (const struct h2s *s = f->streams; s != NULL; s = s->next)
            if (!s->started) {
                front_kill(f, "http/2: request head timed out");
                return;
            }
        return; /* re-armed when the last stream closes */
    }
    LK_CLOG(f->id, DEBUG, "http/2: idle for %u ms", f->srv->opts.idle_timeout_ms);
    send_goaway(f);
    flush(f);
}

/* The send timeout for what flow control holds back: a stream whose
 * response bytes the client's windows (the stream's or the connection's)
 * have not let out for the engine's send_timeout_ms
 * (LINKUP_SEND_TIMEOUT_MS) is reset with CANCEL, its pair reset (the
 * engine cancels the upstream), as a client that takes no byte of an
 * HTTP/1.1 response is closed. A client that never opens its windows would
 * otherwise hold the stream, its upstream and up to BODY_MAX for as long as
 * it keeps the connection (RFC 9113 §10.5). */
static void on_stall(evutil_socket_t fd, short what, void *arg)
{
    struct lk_h2_front *f = arg;
    (void)fd;
    (void)what;
    if (f->dead || f->lingering)
        return;
    uint64_t now = (uint64_t)lk_loop_now_ms(f->srv->base);
    bool conn_shut = nghttp2_session_get_remote_window_size(f->h2) <= 0;
    bool reset = false;
    for (struct h2s *s = f->streams; s != NULL; s = s->next) {
        if (s->answered_at != 0) {
            if (now - s->answered_at >= EARLY_ANSWER_DRAIN_MS) {
                s->answered_at = 0;
                f->n_draining--;
                nghttp2_submit_rst_stream(f->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
                reset = true;
            }
            continue;
        }
        bool stalled =
            s->rs != RESP_HEAD && !s->cancel && evbuffer_get_length(s->body) > 0 &&
            (conn_shut || nghttp2_session_get_stream_remote_window_size(f->h2, s->id) <= 0);
        if (!stalled) {
            s->stalled_since = 0;
        } else if (s->stalled_since == 0) {
            s->stalled_since = now;
        } else if (now - s->stalled_since >= f->srv->opts.send_timeout_ms) {
            LK_CLOG(f->id, DEBUG, "http/2 stream %d: send timeout (flow control kept closed)",
                    (int)s->id);
            s->stalled_since = 0;
            s->cancel = true;
            stream_reset(s, NGHTTP2_CANCEL);
            reset = true;
        }
    }
    if (f->n_streams > 0)
        arm_stall(f);
    if (reset)
        flush(f);
}

static void on_close_ev(evutil_socket_t fd, short what, void *arg)
{
    struct lk_h2_front *f = arg;
    (void)fd;
    (void)what;
    f->on_closed(f->data, f->why);
}

static nghttp2_session *new_session(struct lk_h2_front *f)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_session *h2 = NULL;
    LK_ASSERT(nghttp2_session_callbacks_new(&cbs) == 0 && nghttp2_option_new(&opt) == 0);
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    /* Windows are given back as the engine takes the bytes (release_window). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    LK_ASSERT(nghttp2_session_server_new2(&h2, cbs, f, opt) == 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    /* No ENABLE_PUSH (a server must not send it); ENABLE_CONNECT_PROTOCOL
     * for WebSockets over HTTP/2 (RFC 8441, SPEC §5.4). */
    nghttp2_settings_entry iv[] = {
        { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
        { NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 },
    };
    nghttp2_submit_settings(h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    return h2;
}

struct lk_h2_front *lk_h2_front_new(struct lk_http_server *srv, struct bufferevent *bev,
                                    uint64_t conn_id, const char *peer_label, bool peer_is_loopback,
                                    bool is_tls, lk_h2_front_closed_cb *on_closed, void *data)
{
    struct lk_h2_front *f = lk_xcalloc(1, sizeof(*f));
    f->srv = srv;
    f->bev = bev;
    f->id = conn_id;
    snprintf(f->peer, sizeof(f->peer), "%s", peer_label);
    f->is_loopback = peer_is_loopback;
    f->is_tls = is_tls;
    f->on_closed = on_closed;
    f->data = data;
    f->resp_hdrs = lk_xcalloc(resp_limits(srv).max_headers, sizeof(*f->resp_hdrs));
    event_assign(&f->close_ev, srv->base, -1, 0, on_close_ev, f);
    event_assign(&f->pump_ev, srv->base, -1, 0, on_pump_ev, f);
    evtimer_assign(&f->idle_ev, srv->base, on_idle, f);
    evtimer_assign(&f->stall_ev, srv->base, on_stall, f);
    f->h2 = new_session(f);
    bufferevent_setcb(bev, on_read, on_write, on_event, f);
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bufferevent_setwatermark(bev, EV_WRITE, OUT_MAX / 2, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    arm_idle(f);
    flush(f); /* our SETTINGS */
    /* The preface (and whatever came with it) is read from the loop. */
    bufferevent_trigger(bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    return f;
}

void lk_h2_front_drain(struct lk_h2_front *f)
{
    if (f->dead || f->goaway)
        return;
    send_goaway(f);
    flush(f);
}

void lk_h2_front_free(struct lk_h2_front *f)
{
    if (f == NULL)
        return;
    f->freeing = true;
    event_del(&f->close_ev);
    event_del(&f->pump_ev);
    event_del(&f->idle_ev);
    event_del(&f->stall_ev);
    while (f->streams != NULL)
        stream_free(f->streams); /* resets the pairs: the engine cancels */
    nghttp2_session_del(f->h2);
    bufferevent_free(f->bev);
    free(f->resp_hdrs);
    free(f);
}
