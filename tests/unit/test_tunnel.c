/*
 * test_tunnel.c - the built-in reverse tunnel (lib/net/tunnel.h), in process.
 *
 * One event loop in a thread runs both ends: an engine playing the worker
 * (its handler serves GET /linkup/v2/tunnel through a hub and proxies every
 * "NAME.test" request through NAME's tunnel), an engine playing the local
 * server (fed only by adopted tunnel streams; it answers some paths itself and
 * proxies the rest to a tiny blocking upstream), and a tunnel client between
 * them. The test body is a blocking HTTP client of the worker. Everything
 * binds 127.0.0.1:0; at the end both engines drain so that LSan sees no leaks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/err.h"
#include "harness.h"
#include "net/http_server.h"
#include "net/log.h"
#include "net/tunnel.h"
#include "net/tunnel_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define SECRET "s3cret-tunnel-secret"

static int up_port;         /* the tiny upstream behind the local server */
static int worker_port;     /* the worker engine */
static int worker_tls_port; /* the worker engine's TLS listener */
static char cert_path[64];  /* its self-signed certificate (localhost, 127.0.0.1) */

/* Written by the loop thread, read by the test. */
static atomic_int n_connects;          /* good client: connected transitions */
static atomic_int good_connected;      /* good client: current state */
static atomic_int n_rejected;          /* worker: failed tunnel authentications */
static atomic_int bad_connected;       /* wrong-secret client ever connected */
static atomic_int bad_saw_401;         /* wrong-secret client reported a 401 */
static atomic_int upstream_closed;     /* /slow and /hang saw their client go */
static atomic_int blob_cut;            /* a /blob/N send failed: its client went */
static atomic_int tls_connected;       /* the https client is connected */
static atomic_int silent_connects;     /* the client of a silent worker connected */
static atomic_int silent_dropped;      /* ... and dropped it as silent */
static atomic_int local_conns;         /* the local engine's connections ('n' command) */
static atomic_int n_counted;           /* 'n' commands answered */
static struct bufferevent *orphan_end; /* our end of a stream adopted by hand ('o') */
static _Atomic uint64_t spliced;       /* the good client's spliced bytes ('S') */
static atomic_int n_spliced_read;      /* 'S' commands answered */
static _Atomic uint64_t w_spliced;     /* the worker's, on the tunnel of "sess" ('W') */
static atomic_int n_w_spliced_read;    /* 'W' commands answered */
static _Atomic uint64_t posted_local;  /* lk_tunnel_posted_sent(false) ('P') */
static _Atomic uint64_t posted_worker; /* lk_tunnel_posted_sent(true) ('P') */
static atomic_int n_posted_read;       /* 'P' commands answered */
static struct lk_exchange *held_ex;    /* a local exchange left unanswered (/held) */
static atomic_int n_held;              /* /held requests that reached the local engine */
static atomic_int upper_connected;     /* the "Big-Cow" client: current state */
static atomic_int lower_connected;     /* the "big-cow" client: current state */
static atomic_int lower_saw_409;       /* ... was refused: "Big-Cow" holds the hostname */

/* ---- blocking helpers --------------------------------------------------- */

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 512) != 0)
        abort();
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

static void set_timeouts(int fd, int secs)
{
    struct timeval tv = { .tv_sec = secs };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    set_timeouts(fd, 20);
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int send_str(int fd, const char *s)
{
    return send_all(fd, s, strlen(s));
}

/* A buffered reader over a blocking socket. */
struct reader {
    int fd;
    size_t start, end;
    char buf[65536];
};

static int rd_fill(struct reader *r)
{
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == sizeof(r->buf))
        return -1;
    ssize_t k;
    do {
        k = recv(r->fd, r->buf + r->end, sizeof(r->buf) - r->end, 0);
    } while (k < 0 && errno == EINTR);
    if (k <= 0)
        return -1;
    r->end += (size_t)k;
    return 0;
}

/* Reads a head (through the blank line) into head, NUL-terminated. */
static int rd_head(struct reader *r, char *head, size_t cap)
{
    for (;;) {
        char *p = memmem(r->buf + r->start, r->end - r->start, "\r\n\r\n", 4);
        if (p != NULL) {
            size_t n = (size_t)(p + 4 - (r->buf + r->start));
            if (n >= cap)
                return -1;
            memcpy(head, r->buf + r->start, n);
            head[n] = '\0';
            r->start += n;
            return 0;
        }
        if (rd_fill(r) != 0)
            return -1;
    }
}

/* Value of header name in head (case-insensitive), copied into v. */
static const char *find_hdr(const char *head, const char *name, char *v, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *s = p + 3 + nl;
            while (*s == ' ')
                s++;
            const char *e = strstr(s, "\r\n");
            size_t n = (size_t)(e - s) < cap - 1 ? (size_t)(e - s) : cap - 1;
            memcpy(v, s, n);
            v[n] = '\0';
            return v;
        }
    }
    return NULL;
}

/* Reads exactly n bytes (into out when non-NULL). */
static int rd_exact(struct reader *r, char *out, size_t n)
{
    while (n > 0) {
        if (r->start == r->end && rd_fill(r) != 0)
            return -1;
        size_t k = r->end - r->start < n ? r->end - r->start : n;
        if (out != NULL) {
            memcpy(out, r->buf + r->start, k);
            out += k;
        }
        r->start += k;
        n -= k;
    }
    return 0;
}

struct response {
    int status;
    char head[8192];
    char body[8192];
    size_t body_len;
};

/* Reads a response with a Content-Length body of at most 8 KiB. */
static int read_response(struct reader *r, struct response *resp)
{
    char v[64];
    if (rd_head(r, resp->head, sizeof(resp->head)) != 0)
        return -1;
    resp->status = (int)strtol(resp->head + 9, NULL, 10);
    size_t len = find_hdr(resp->head, "Content-Length", v, sizeof(v)) ? strtoul(v, NULL, 10) : 0;
    if (len >= sizeof(resp->body) || rd_exact(r, resp->body, len) != 0)
        return -1;
    resp->body[len] = '\0';
    resp->body_len = len;
    return 0;
}

static int request(const char *host, const char *target, struct response *resp)
{
    int fd = dial(worker_port);
    if (fd < 0)
        return -1;
    char req[512];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target,
             host);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    int rc = send_str(fd, req) == 0 ? read_response(r, resp) : -1;
    free(r);
    close(fd);
    return rc;
}

static unsigned char pattern(uint64_t i)
{
    return (unsigned char)((i * 7) ^ (i >> 11));
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Waits up to ms for *flag to reach want. */
static bool wait_for(atomic_int *flag, int want, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (atomic_load(flag) >= want)
            return true;
        usleep(10 * 1000);
    }
    return atomic_load(flag) >= want;
}

/* ---- the tiny upstream behind the local server -------------------------- */

static void up_echo(int fd, struct reader *r, uint64_t n)
{
    char head[96];
    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)n);
    send_str(fd, head);
    while (n > 0) {
        if (r->start == r->end && rd_fill(r) != 0)
            return;
        size_t k = r->end - r->start < n ? r->end - r->start : (size_t)n;
        if (send_all(fd, r->buf + r->start, k) != 0)
            return;
        r->start += k;
        n -= k;
    }
}

/* A Content-Length body of n pattern bytes, of which only the first cut
 * are sent before the connection closes (cut == n: all of it). */
static int up_blob(int fd, uint64_t n, uint64_t cut)
{
    char head[96];
    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)n);
    if (send_str(fd, head) != 0)
        return -1;
    static _Thread_local unsigned char chunk[64 * 1024];
    for (uint64_t off = 0; off < cut;) {
        size_t k = cut - off < sizeof(chunk) ? (size_t)(cut - off) : sizeof(chunk);
        for (size_t i = 0; i < k; i++)
            chunk[i] = pattern(off + i);
        if (send_all(fd, chunk, k) != 0)
            return -1;
        off += k;
    }
    return 0;
}

/* Waits for the client to go away (read returns 0 or fails). */
static void up_wait_close(int fd)
{
    char b[256];
    set_timeouts(fd, 15);
    while (recv(fd, b, sizeof(b), 0) > 0)
        ;
    atomic_fetch_add(&upstream_closed, 1);
}

static void up_ws(int fd, struct reader *r)
{
    send_str(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\n" /* the accept of the tests' key, RFC 6455 §1.3 */
                 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
    for (;;) {
        if (r->start < r->end) {
            send_all(fd, r->buf + r->start, r->end - r->start);
            r->start = r->end;
        }
        if (rd_fill(r) != 0)
            break;
    }
    shutdown(fd, SHUT_WR);
}

static void *up_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    set_timeouts(fd, 30);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char head[16384], v[64], path[256];
    while (rd_head(r, head, sizeof(head)) == 0) {
        path[0] = '\0';
        sscanf(head, "%*s %255s", path);
        if (strncmp(path, "/blob/", 6) == 0) {
            if (up_blob(fd, strtoull(path + 6, NULL, 10), strtoull(path + 6, NULL, 10)) != 0) {
                atomic_fetch_add(&blob_cut, 1);
                break;
            }
        } else if (strcmp(path, "/cut") == 0) {
            up_blob(fd, 1 << 20, 400 << 10);
            break;
        } else if (strcmp(path, "/echo") == 0) {
            uint64_t n = find_hdr(head, "Content-Length", v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
            up_echo(fd, r, n);
        } else if (strcmp(path, "/slow") == 0) {
            static const char part[1000] = { 0 };
            send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
            send_all(fd, part, sizeof(part));
            up_wait_close(fd);
            break;
        } else if (strcmp(path, "/hang") == 0) {
            up_wait_close(fd);
            break;
        } else if (strcmp(path, "/ws") == 0) {
            up_ws(fd, r);
            break;
        } else {
            send_str(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
    free(r);
    close(fd);
    return NULL;
}

static void *up_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            break;
        pthread_t t;
        pthread_create(&t, NULL, up_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

/* ---- loop side: worker, local server, tunnel clients -------------------- */

static struct event_base *base;
static struct lk_http_server *worker, *local;
static struct lk_tunnel_hub *hub;
static struct lk_tunnel_client *good, *bad, *tls, *silent;
static struct lk_tunnel_client *upper, *lower; /* sessions "Big-Cow", "big-cow" */
static struct bufferevent *silent_bev;         /* a worker end that never speaks */
static int n_drained;
static int ctl[2]; /* test -> loop commands */

static const struct lk_http_header text_ct = { LK_STR("Content-Type"), LK_STR("text/plain") };

static void respond_text(struct lk_exchange *ex, int status, const char *text)
{
    lk_exchange_respond(ex, status, &text_ct, 1, text, strlen(text));
}

static enum lk_tunnel_auth auth(const char *session, const char *secret, size_t len, void *data)
{
    (void)data;
    if (strcmp(session, "down") == 0)
        return LK_TUNNEL_AUTH_UNAVAILABLE; /* a store that cannot be read */
    bool known = strcmp(session, "sess") == 0 || strcmp(session, "tlss") == 0 ||
                 strcmp(session, "Big-Cow") == 0 || strcmp(session, "big-cow") == 0;
    bool ok = known && lk_tunnel_secret_eq(SECRET, strlen(SECRET), secret, len);
    if (!ok)
        atomic_fetch_add(&n_rejected, 1);
    return ok ? LK_TUNNEL_AUTH_OK : LK_TUNNEL_AUTH_DENIED;
}

static void on_fetch_error(struct lk_exchange *ex, const char *errtext, void *data)
{
    (void)data;
    respond_text(ex, 502,
                 lk_exchange_printf(ex, "Failed to fetch from target service: %s", errtext));
}

/* The worker's proxy path: "NAME.test" goes through NAME's tunnel. */
static void worker_proxy(struct lk_exchange *ex)
{
    struct lk_str host = LK_STR_NULL;
    lk_exchange_header(ex, LK_STR("host"), &host);
    long dot = lk_str_index(host, '.');
    struct lk_str session = { host.ptr, dot > 0 ? (size_t)dot : host.len };
    struct lk_tunnel *t = lk_tunnel_hub_find(hub, session);
    if (t == NULL) {
        respond_text(ex, 502,
                     lk_exchange_printf(ex,
                                        "Failed to fetch from target service: tunnel for session "
                                        "'%.*s' is not connected",
                                        (int)session.len, session.ptr));
        return;
    }
    size_t n = 0;
    const struct lk_http_header *h = lk_exchange_headers(ex, &n);
    struct lk_str target = lk_exchange_target(ex);
    struct lk_proxy_req spec = {
        .url = lk_exchange_printf(ex, "http://linkup-tunnel-%.*s.localhost%.*s", (int)session.len,
                                  session.ptr, (int)target.len, target.ptr),
        .headers = h,
        .n_headers = n,
        .websocket = lk_exchange_is_websocket(ex),
        .on_error = on_fetch_error,
        .connect = lk_tunnel_connect,
        .connect_data = t,
    };
    if (lk_str_ends_with(host, LK_STR(".pooled")))
        lk_tunnel_hub_target(hub, ex, t, session, &spec); /* as the worker does */
    lk_exchange_proxy(ex, &spec);
}

static void worker_handler(struct lk_exchange *ex, void *data)
{
    (void)data;
    if (lk_str_eq(lk_exchange_target(ex), LK_STR("/silent" LK_TUNNEL_PATH))) {
        /* Upgrades, then never sends a byte (a dead peer behind a NAT). */
        static const struct lk_http_header up = { LK_STR("Upgrade"), LK_STR(LK_TUNNEL_UPGRADE) };
        if (silent_bev != NULL)
            bufferevent_free(silent_bev);
        if (lk_exchange_upgrade(ex, &up, 1, &silent_bev) == 0)
            bufferevent_enable(silent_bev, EV_WRITE);
    } else if (lk_str_eq(lk_exchange_target(ex), LK_STR(LK_TUNNEL_PATH)))
        lk_tunnel_hub_handle(hub, ex, auth, NULL);
    else
        worker_proxy(ex);
}

static void local_handler(struct lk_exchange *ex, void *data)
{
    (void)data;
    struct lk_str target = lk_exchange_target(ex);
    if (lk_str_eq(target, LK_STR("/hello"))) {
        struct lk_http_header h[2] = {
            text_ct,
            { LK_STR("X-Peer"), lk_str_c(lk_exchange_peer(ex)) },
        };
        lk_exchange_respond(ex, 200, h, 2, "hello from local", 16);
        return;
    }
    if (lk_str_eq(target, LK_STR("/held"))) {
        held_ex = ex; /* answered by command 'r' */
        atomic_fetch_add(&n_held, 1);
        return;
    }
    if (lk_str_eq(target, LK_STR("/huge"))) {
        size_t len = 4u << 20;
        char *body = malloc(len);
        memset(body, 'h', len);
        lk_exchange_respond(ex, 200, &text_ct, 1, body, len);
        free(body);
        return;
    }
    if (lk_str_eq(target, LK_STR("/admin"))) {
        if (lk_exchange_peer_is_loopback(ex))
            respond_text(ex, 200, "admin");
        else
            respond_text(ex, 403, "admin endpoints answer only to loopback peers");
        return;
    }
    size_t n = 0;
    const struct lk_http_header *h = lk_exchange_headers(ex, &n);
    struct lk_proxy_req spec = {
        .url =
            lk_exchange_printf(ex, "http://127.0.0.1:%d%.*s", up_port, (int)target.len, target.ptr),
        .headers = h,
        .n_headers = n,
        .websocket = lk_exchange_is_websocket(ex),
        .ws_pass_non_101 = true,
        .on_error = on_fetch_error,
    };
    lk_exchange_proxy(ex, &spec);
}

static void on_good_state(struct lk_tunnel_client *c, bool connected, const char *why, void *data)
{
    (void)c;
    (void)why;
    (void)data;
    atomic_store(&good_connected, connected);
    if (connected)
        atomic_fetch_add(&n_connects, 1);
}

static void on_bad_state(struct lk_tunnel_client *c, bool connected, const char *why, void *data)
{
    (void)c;
    (void)data;
    if (connected)
        atomic_store(&bad_connected, 1);
    if (strstr(why, "401") != NULL)
        atomic_store(&bad_saw_401, 1);
}

static void on_tls_state(struct lk_tunnel_client *c, bool connected, const char *why, void *data)
{
    (void)c;
    (void)why;
    (void)data;
    atomic_store(&tls_connected, connected);
}

static atomic_llong silent_for_ms;

static void on_silent_state(struct lk_tunnel_client *c, bool connected, const char *why, void *data)
{
    (void)c;
    (void)data;
    if (connected) {
        atomic_fetch_add(&silent_connects, 1);
    } else if (strstr(why, "silent") != NULL) {
        long long ms = 0;
        sscanf(strstr(why, "silent for "), "silent for %lld", &ms);
        atomic_store(&silent_for_ms, ms);
        atomic_store(&silent_dropped, 1);
    }
}

static void on_upper_state(struct lk_tunnel_client *c, bool connected, const char *why, void *data)
{
    (void)c;
    (void)why;
    (void)data;
    atomic_store(&upper_connected, connected);
}

static void on_lower_state(struct lk_tunnel_client *c, bool connected, const char *why, void *data)
{
    (void)c;
    (void)data;
    atomic_store(&lower_connected, connected);
    if (strstr(why, "409") != NULL)
        atomic_store(&lower_saw_409, 1);
}

static struct lk_tunnel_client *start_client(const char *session, const char *secret,
                                             lk_tunnel_client_state_cb *cb)
{
    char url[64];
    if (cb == on_tls_state) /* by name: verifies the certificate for localhost */
        snprintf(url, sizeof(url), "https://localhost:%d/", worker_tls_port);
    else if (cb == on_silent_state)
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/silent", worker_port);
    else
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", worker_port);
    struct lk_tunnel_client_opts o;
    lk_tunnel_client_opts_init(&o);
    o.worker_url = url;
    o.session = session;
    o.secret = secret;
    o.tunnel.ping_interval_ms = 300;                             /* exercise the keepalive */
    o.tunnel.dead_after_ms = cb == on_silent_state ? 650 : 5000; /* not a multiple of 300 */
    o.on_state = cb;
    struct lk_tunnel_client *c = NULL;
    CHECK_INT_EQ(lk_tunnel_client_start(local, &o, &c), 0);
    return c;
}

static void on_drained(void *data)
{
    (void)data;
    if (++n_drained == 2)
        event_base_loopexit(base, NULL);
}

static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    char cmd;
    if (read(fd, &cmd, 1) != 1)
        return;
    if (cmd == 'd') {
        lk_tunnel_hub_close(hub, LK_STR("sess"));
    } else if (cmd == 'b') {
        bad = start_client("other", "wrong-secret", on_bad_state);
    } else if (cmd == 't') {
        tls = start_client("tlss", SECRET, on_tls_state);
    } else if (cmd == 's') {
        silent = start_client("sess", SECRET, on_silent_state);
    } else if (cmd == 'u') {
        upper = start_client("Big-Cow", SECRET, on_upper_state);
    } else if (cmd == 'l') {
        lower = start_client("big-cow", SECRET, on_lower_state);
    } else if (cmd == 'c') {
        lk_tunnel_hub_close(hub, LK_STR("big-cow")); /* exact: not "Big-Cow"'s */
    } else if (cmd == 'U') {
        lk_tunnel_client_free(upper);
        upper = NULL;
        atomic_store(&upper_connected, 0);
    } else if (cmd == 'o') {
        /* A stream as the tunnel would hand it to the local engine, whose
         * other end takes no more than 64 KiB of the answer. */
        struct bufferevent *pair[2];
        if (bufferevent_pair_new(base, 0, pair) != 0)
            abort();
        orphan_end = pair[0];
        bufferevent_setwatermark(orphan_end, EV_READ, 0, 64 * 1024);
        bufferevent_enable(orphan_end, EV_READ | EV_WRITE);
        if (lk_http_server_adopt(local, pair[1], "tunnel", false) != 0)
            abort();
        static const char req[] = "GET /huge HTTP/1.1\r\nHost: x\r\n\r\n";
        bufferevent_write(orphan_end, req, sizeof(req) - 1);
    } else if (cmd == 'x') {
        /* That end goes away as the tunnel lets go of a reset stream
         * (lk_net_bev_free): EOF to the engine's end, then the free. */
        bufferevent_flush(orphan_end, EV_WRITE, BEV_FINISHED);
        bufferevent_free(orphan_end);
        orphan_end = NULL;
    } else if (cmd == 'r') {
        if (held_ex != NULL)
            respond_text(held_ex, 200, "late");
        held_ex = NULL;
    } else if (cmd == 'S') {
        atomic_store(&spliced, lk_tunnel_client_spliced_bytes(good));
        atomic_fetch_add(&n_spliced_read, 1);
    } else if (cmd == 'W') {
        struct lk_tunnel *t = lk_tunnel_hub_find(hub, LK_STR("sess"));
        atomic_store(&w_spliced, t != NULL ? lk_tunnel_spliced_bytes(t) : 0);
        atomic_fetch_add(&n_w_spliced_read, 1);
    } else if (cmd == 'P') {
        atomic_store(&posted_local, lk_tunnel_posted_sent(false));
        atomic_store(&posted_worker, lk_tunnel_posted_sent(true));
        atomic_fetch_add(&n_posted_read, 1);
    } else if (cmd == 'n') {
        atomic_store(&local_conns, (int)lk_http_server_n_conns(local));
        atomic_fetch_add(&n_counted, 1);
    } else if (cmd == 'q') {
        lk_tunnel_client_free(lower);
        lk_tunnel_client_free(upper);
        lk_tunnel_client_free(silent);
        if (silent_bev != NULL)
            bufferevent_free(silent_bev);
        lk_tunnel_client_free(tls);
        lk_tunnel_client_free(bad);
        lk_tunnel_client_free(good);
        lk_tunnel_hub_free(hub);
        lk_http_server_drain(worker, 2000, on_drained, NULL);
        lk_http_server_drain(local, 2000, on_drained, NULL);
    }
}

static void command(char c)
{
    if (write(ctl[1], &c, 1) != 1)
        abort();
}

static void *loop_main(void *arg)
{
    (void)arg;
    event_base_dispatch(base);
    return NULL;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_secret_eq(void)
{
    static const struct {
        const char *a, *b;
        bool eq;
    } cases[] = {
        { "abc", "abc", true }, { "abc", "abd", false }, { "abc", "ab", false },
        { "ab", "abc", false }, { "", "", true },        { "", "x", false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got =
            lk_tunnel_secret_eq(cases[i].a, strlen(cases[i].a), cases[i].b, strlen(cases[i].b));
        CHECK_INT_EQ(got, cases[i].eq);
    }
    CHECK(lk_tunnel_secret_eq(NULL, 0, NULL, 0));
    CHECK(!lk_tunnel_secret_eq("a", 1, NULL, 0));
}

static void test_client_start_rejects_bad_options(void)
{
    static const struct {
        const char *url, *session, *secret;
    } cases[] = {
        { NULL, "s", "x" },
        { "not a url", "s", "x" },
        { "ftp://127.0.0.1/", "s", "x" },
        { "http://127.0.0.1:1", "", "x" },
        { "http://127.0.0.1:1", NULL, "x" },
        { "http://127.0.0.1:1", "s", "" },
        { "http://127.0.0.1:1", "s", "with space" },
        { "http://127.0.0.1:1", "s\r\nx-evil: 1", "x" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_tunnel_client_opts o;
        lk_tunnel_client_opts_init(&o);
        o.worker_url = cases[i].url;
        o.session = cases[i].session;
        o.secret = cases[i].secret;
        struct lk_tunnel_client *c = NULL;
        CHECK_INT_EQ(lk_tunnel_client_start(local, &o, &c), LK_EINVAL);
        CHECK(c == NULL);
    }
    /* The connector refuses a missing tunnel. */
    struct bufferevent *bev = NULL;
    char err[128];
    CHECK_INT_EQ(lk_tunnel_connect(NULL, &bev, err, sizeof(err)), LK_ECLOSED);
    CHECK(bev == NULL);
}

static void test_get_through_tunnel(void)
{
    CHECK(wait_for(&good_connected, 1, 5000));
    struct response *resp = calloc(1, sizeof(*resp));
    CHECK_INT_EQ(request("sess.test", "/hello", resp), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_STR_EQ(resp->body, "hello from local");
    char v[64];
    /* Streams are adopted with the peer label "tunnel", not loopback. */
    CHECK_STR_EQ(find_hdr(resp->head, "X-Peer", v, sizeof(v)), "tunnel");
    CHECK_INT_EQ(request("sess.test", "/admin", resp), 0);
    CHECK_INT_EQ(resp->status, 403);
    /* The upstream behind the local server answers through the tunnel too. */
    CHECK_INT_EQ(request("sess.test", "/nothing-here", resp), 0);
    CHECK_INT_EQ(resp->status, 404);
    free(resp);
}

static void posted_sent(uint64_t *local_side, uint64_t *worker_side);

/* The request leaves for the tunnel from inside the worker's read callback
 * that received it, and the upstream's answer from inside the local
 * server's (lk_tunnel_flush_posted()), not a loop turn later. */
static void test_bytes_leave_within_the_callback(void)
{
    uint64_t local0, worker0, local1, worker1;
    posted_sent(&local0, &worker0);
    struct response *resp = calloc(1, sizeof(*resp));
    CHECK_INT_EQ(request("sess.test", "/nothing-here", resp), 0);
    CHECK_INT_EQ(resp->status, 404);
    free(resp);
    posted_sent(&local1, &worker1);
    CHECK(worker1 > worker0);
    CHECK(local1 > local0);
}

static void test_no_tunnel_is_502(void)
{
    struct response *resp = calloc(1, sizeof(*resp));
    CHECK_INT_EQ(request("nobody.test", "/hello", resp), 0);
    CHECK_INT_EQ(resp->status, 502);
    CHECK_STR_EQ(resp->body,
                 "Failed to fetch from target service: tunnel for session 'nobody' is not "
                 "connected");
    free(resp);
}

static void test_keepalive_requests_share_the_tunnel(void)
{
    /* Several requests on one client connection: one stream each. */
    int fd = dial(worker_port);
    struct reader *r = calloc(1, sizeof(*r));
    struct response *resp = calloc(1, sizeof(*resp));
    r->fd = fd;
    for (int i = 0; i < 5; i++) {
        send_str(fd, "GET /hello HTTP/1.1\r\nHost: sess.test\r\n\r\n");
        CHECK_INT_EQ(read_response(r, resp), 0);
        CHECK_INT_EQ(resp->status, 200);
    }
    free(resp);
    free(r);
    close(fd);
}

#define N_CONCURRENT 200

static void test_concurrent_requests(void)
{
    static int fds[N_CONCURRENT];
    for (int i = 0; i < N_CONCURRENT; i++) {
        fds[i] = dial(worker_port);
        CHECK(fds[i] >= 0);
        send_str(fds[i], "GET /hello HTTP/1.1\r\nHost: sess.test\r\nConnection: close\r\n\r\n");
    }
    int ok = 0;
    struct reader *r = calloc(1, sizeof(*r));
    struct response *resp = calloc(1, sizeof(*resp));
    for (int i = 0; i < N_CONCURRENT; i++) {
        r->fd = fds[i];
        r->start = r->end = 0;
        if (read_response(r, resp) == 0 && resp->status == 200 &&
            strcmp(resp->body, "hello from local") == 0)
            ok++;
        close(fds[i]);
    }
    CHECK_INT_EQ(ok, N_CONCURRENT);
    free(resp);
    free(r);
}

struct upload {
    int fd;
    uint64_t n;
    int rc;
};

static void *upload_main(void *arg)
{
    struct upload *u = arg;
    enum {
        CHUNK = 65536
    };
    char *chunk = malloc(CHUNK); /* per thread: several uploads run at once */
    uint64_t off = 0;
    u->rc = 0;
    while (off < u->n) {
        size_t k = u->n - off < CHUNK ? (size_t)(u->n - off) : CHUNK;
        for (size_t i = 0; i < k; i++)
            chunk[i] = (char)pattern(off + i);
        if (send_all(u->fd, chunk, k) != 0) {
            u->rc = -1;
            break;
        }
        off += k;
    }
    free(chunk);
    return NULL;
}

static void test_big_body_both_ways(void)
{
    /* 64 MiB up and the same 64 MiB echoed back, streamed through both
     * engines and the tunnel at once, checked byte by byte. */
    uint64_t n = SANITIZED ? 16ULL << 20 : 64ULL << 20;
    long rss_before = max_rss_kb();
    int fd = dial(worker_port);
    set_timeouts(fd, 40);
    char head[256];
    snprintf(head, sizeof(head),
             "POST /echo HTTP/1.1\r\nHost: sess.test\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)n);
    send_str(fd, head);
    struct upload u = { fd, n, 0 };
    pthread_t t;
    pthread_create(&t, NULL, upload_main, &u);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char resp_head[4096], v[64];
    CHECK_INT_EQ(rd_head(r, resp_head, sizeof(resp_head)), 0);
    CHECK(strncmp(resp_head, "HTTP/1.1 200", 12) == 0);
    CHECK_INT_EQ(strtoull(find_hdr(resp_head, "Content-Length", v, sizeof(v)) ? v : "0", NULL, 10),
                 n);
    uint64_t got = 0, bad_at = UINT64_MAX;
    while (got < n) {
        if (r->start == r->end && rd_fill(r) != 0)
            break;
        for (; r->start < r->end && got < n; r->start++, got++) {
            if ((unsigned char)r->buf[r->start] != pattern(got) && bad_at == UINT64_MAX)
                bad_at = got;
        }
    }
    pthread_join(t, NULL);
    CHECK_INT_EQ(u.rc, 0);
    CHECK_INT_EQ(got, n);
    CHECK(bad_at == UINT64_MAX);
    free(r);
    close(fd);
    long grown_kb = max_rss_kb() - rss_before;
    if (SANITIZED)
        return; /* ASan's quarantine keeps freed chunks resident */
    if (grown_kb > 40 * 1024)
        fprintf(stderr, "  rss grew by %ld KiB\n", grown_kb);
    CHECK(grown_kb < 40 * 1024);
}

/* Reads n echoed bytes from r (the head already read) and checks them. */
static bool read_echo_body(struct reader *r, uint64_t n, uint64_t *got)
{
    while (*got < n) {
        if (r->start == r->end && rd_fill(r) != 0)
            return false;
        for (; r->start < r->end && *got < n; r->start++, (*got)++) {
            if ((unsigned char)r->buf[r->start] != pattern(*got))
                return false;
        }
    }
    return true;
}

static void test_interleaved_big_streams(void)
{
    /* Several large echoes at once on one tunnel, their responses read in
     * turns of 256 KiB: the streams not being read stall on their windows
     * while the others keep flowing, and every byte arrives in order. This
     * is the data providers pulling from many stream sockets into large DATA
     * frames, interleaved on the tunnel connection. */
    enum {
        N = 8
    };
    uint64_t n = SANITIZED ? 1ULL << 20 : 4ULL << 20;
    static struct upload u[N];
    static struct reader *r[N];
    static uint64_t got[N];
    static bool head_ok[N], failed[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        int fd = dial(worker_port);
        set_timeouts(fd, 30);
        char head[256];
        snprintf(head, sizeof(head),
                 "POST /echo HTTP/1.1\r\nHost: sess.test\r\nContent-Length: %llu\r\n\r\n",
                 (unsigned long long)n);
        send_str(fd, head);
        u[i] = (struct upload){ fd, n, 0 };
        pthread_create(&th[i], NULL, upload_main, &u[i]);
        r[i] = calloc(1, sizeof(*r[i]));
        r[i]->fd = fd;
        got[i] = 0;
        head_ok[i] = failed[i] = false;
    }
    bool progress = true;
    while (progress) {
        progress = false;
        for (int i = 0; i < N; i++) {
            if (failed[i] || got[i] == n)
                continue;
            if (!head_ok[i]) {
                char resp_head[4096];
                head_ok[i] = rd_head(r[i], resp_head, sizeof(resp_head)) == 0 &&
                             strncmp(resp_head, "HTTP/1.1 200", 12) == 0;
                failed[i] = !head_ok[i];
                if (failed[i])
                    continue;
            }
            uint64_t turn = got[i] + (256 << 10) < n ? got[i] + (256 << 10) : n;
            failed[i] = !read_echo_body(r[i], turn, &got[i]);
            progress = true;
        }
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT_EQ(u[i].rc, 0);
        CHECK(!failed[i]);
        CHECK_INT_EQ(got[i], n);
        close(u[i].fd);
        free(r[i]);
    }
}

static void test_websocket_through_tunnel(void)
{
    int fd = dial(worker_port);
    send_str(fd, "GET /ws HTTP/1.1\r\nHost: sess.test\r\nConnection: Upgrade\r\n"
                 "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char head[4096], v[64];
    CHECK_INT_EQ(rd_head(r, head, sizeof(head)), 0);
    CHECK(strncmp(head, "HTTP/1.1 101", 12) == 0);
    CHECK_STR_EQ(find_hdr(head, "Upgrade", v, sizeof(v)), "websocket");
    /* Bytes both ways, in several rounds, then a half-close comes back. */
    static char out[300000], in[300000];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (char)pattern(i + 5);
    for (int round = 0; round < 3; round++) {
        CHECK_INT_EQ(send_all(fd, out, sizeof(out)), 0);
        memset(in, 0, sizeof(in));
        CHECK_INT_EQ(rd_exact(r, in, sizeof(in)), 0);
        CHECK(memcmp(in, out, sizeof(out)) == 0);
    }
    shutdown(fd, SHUT_WR);
    CHECK_INT_EQ(rd_fill(r), -1); /* EOF: the upstream's half-close came through */
    free(r);
    close(fd);
}

/* After a drop: the client has connected again (connects past before,
 * within connect_ms) and a request through the tunnel is answered 200. */
static void check_reconnects_and_serves(int before, int connect_ms, struct response *resp)
{
    CHECK(wait_for(&n_connects, before + 1, connect_ms));
    CHECK(wait_for(&good_connected, 1, 1000));
    CHECK_INT_EQ(request("sess.test", "/hello", resp), 0);
    CHECK_INT_EQ(resp->status, 200);
}

static void test_drop_mid_stream(void)
{
    int before = atomic_load(&n_connects);
    int closed_before = atomic_load(&upstream_closed);
    /* A response in progress: the client gets part of the body... */
    int fd = dial(worker_port);
    send_str(fd, "GET /slow HTTP/1.1\r\nHost: sess.test\r\n\r\n");
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char head[4096];
    CHECK_INT_EQ(rd_head(r, head, sizeof(head)), 0);
    CHECK(strncmp(head, "HTTP/1.1 200", 12) == 0);
    CHECK_INT_EQ(rd_exact(r, NULL, 1000), 0);
    /* ...and a request still waiting for its answer. */
    int fd2 = dial(worker_port);
    send_str(fd2, "GET /hang HTTP/1.1\r\nHost: sess.test\r\n\r\n");
    usleep(200 * 1000);
    command('d');
    /* The started response is cut: the client connection closes early. */
    uint64_t more = 0;
    while (rd_fill(r) == 0) {
        more += r->end - r->start;
        r->start = r->end;
    }
    CHECK(more < 1000000 - 1000);
    close(fd);
    /* The waiting one gets the worker's 502. */
    struct response *resp = calloc(1, sizeof(*resp));
    r->fd = fd2;
    r->start = r->end = 0;
    CHECK_INT_EQ(read_response(r, resp), 0);
    CHECK_INT_EQ(resp->status, 502);
    CHECK(strncmp(resp->body, "Failed to fetch from target service: ", 37) == 0);
    close(fd2);
    /* Both requests were cancelled all the way to the upstream. */
    CHECK(wait_for(&upstream_closed, closed_before + 2, 5000));
    /* The client reconnects within a second and the next request works. */
    check_reconnects_and_serves(before, 1000, resp);
    free(resp);
    free(r);
}

/* lk_tunnel_posted_sent() of both sides, read on the loop's thread. */
static void posted_sent(uint64_t *local_side, uint64_t *worker_side)
{
    int asked = atomic_load(&n_posted_read);
    command('P');
    CHECK(wait_for(&n_posted_read, asked + 1, 2000));
    *local_side = atomic_load(&posted_local);
    *worker_side = atomic_load(&posted_worker);
}

/* The good client's spliced bytes, read on the loop's thread. */
static uint64_t spliced_bytes(void)
{
    int asked = atomic_load(&n_spliced_read);
    command('S');
    CHECK(wait_for(&n_spliced_read, asked + 1, 2000));
    return atomic_load(&spliced);
}

/* The bytes the worker's side of the "sess" tunnel spliced to clients. */
static uint64_t worker_spliced_bytes(void)
{
    int asked = atomic_load(&n_w_spliced_read);
    command('W');
    CHECK(wait_for(&n_w_spliced_read, asked + 1, 2000));
    return atomic_load(&w_spliced);
}

/* Reads a response head and n pattern bytes from fd; false on any
 * difference. */
static bool read_blob(struct reader *r, uint64_t n)
{
    char head[4096], v[64];
    if (rd_head(r, head, sizeof(head)) != 0 || strncmp(head, "HTTP/1.1 200", 12) != 0 ||
        find_hdr(head, "Content-Length", v, sizeof(v)) == NULL || strtoull(v, NULL, 10) != n)
        return false;
    uint64_t got = 0;
    return read_echo_body(r, n, &got) && got == n;
}

static void test_spliced_downloads(void)
{
    /* Long Content-Length bodies from a plain origin leave the local side
     * by splice(2) (finding 27) and reach the client from the worker's
     * tunnel socket by splice(2) too (finding 31): two in a row on one kept
     * stream (the second's head must follow the first's spliced body), then
     * a short answer on the same stream, every byte checked. */
    uint64_t before = spliced_bytes(), w_before = worker_spliced_bytes();
    uint64_t n = 3u << 20;
    int fd = dial(worker_port);
    set_timeouts(fd, 20);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char req[128];
    snprintf(req, sizeof(req), "GET /blob/%llu HTTP/1.1\r\nHost: sess.pooled\r\n\r\n",
             (unsigned long long)n);
    for (int i = 0; i < 2; i++) {
        CHECK_INT_EQ(send_str(fd, req), 0);
        CHECK(read_blob(r, n));
    }
    struct response *resp = calloc(1, sizeof(*resp));
    CHECK_INT_EQ(send_str(fd, "GET /hello HTTP/1.1\r\nHost: sess.pooled\r\n\r\n"), 0);
    CHECK_INT_EQ(read_response(r, resp), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_STR_EQ(resp->body, "hello from local");
    close(fd);
    free(r);
    free(resp);
    /* All but what came with the head or before the hand-off was spliced. */
    uint64_t moved = spliced_bytes() - before;
    if (moved < 2 * (n - (256u << 10)))
        fprintf(stderr, "  spliced %llu of %llu bytes\n", (unsigned long long)moved,
                (unsigned long long)(2 * n));
    CHECK(moved >= 2 * (n - (256u << 10)) && moved <= 2 * n);
    moved = worker_spliced_bytes() - w_before;
    if (moved < 2 * (n - (256u << 10)))
        fprintf(stderr, "  the worker spliced %llu of %llu bytes\n", (unsigned long long)moved,
                (unsigned long long)(2 * n));
    CHECK(moved >= 2 * (n - (256u << 10)) && moved <= 2 * n);
}

static void test_spliced_body_cut_by_the_origin(void)
{
    /* The origin closes 400 KiB into a 1 MiB body: the client's connection
     * closes early, as with a socket origin, and the tunnel goes on serving. */
    int fd = dial(worker_port);
    set_timeouts(fd, 10);
    CHECK_INT_EQ(send_str(fd, "GET /cut HTTP/1.1\r\nHost: sess.test\r\n\r\n"), 0);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char head[4096];
    CHECK_INT_EQ(rd_head(r, head, sizeof(head)), 0);
    CHECK(strncmp(head, "HTTP/1.1 200", 12) == 0);
    uint64_t got = 0;
    CHECK(!read_echo_body(r, 1 << 20, &got)); /* ends early, no wrong byte before */
    CHECK(got <= 400 << 10);
    close(fd);
    free(r);
    struct response *resp = calloc(1, sizeof(*resp));
    CHECK_INT_EQ(request("sess.test", "/hello", resp), 0);
    CHECK_INT_EQ(resp->status, 200);
    free(resp);
}

static void test_spliced_body_slow_reader_and_stalled_origin(void)
{
    /* A client that reads nothing for longer than the local side's upstream
     * idle timeout (2 s here) while the origin has sent everything: the
     * splice waits for the tunnel, not the origin, so nothing times out and
     * every byte arrives. 64 MiB: more than all the socket buffers on the
     * way take, so that the splice does stall. */
    uint64_t n = 64u << 20;
    int fd = dial(worker_port);
    set_timeouts(fd, 20);
    char req[128];
    snprintf(req, sizeof(req), "GET /blob/%llu HTTP/1.1\r\nHost: sess.test\r\n\r\n",
             (unsigned long long)n);
    CHECK_INT_EQ(send_str(fd, req), 0);
    sleep(3);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    CHECK(read_blob(r, n));
    close(fd);
    /* An origin that stops sending mid-body (/slow: 1000 bytes of a million)
     * is cut after the idle timeout, all the way to the origin. */
    int closed_before = atomic_load(&upstream_closed);
    fd = dial(worker_port);
    set_timeouts(fd, 10);
    CHECK_INT_EQ(send_str(fd, "GET /slow HTTP/1.1\r\nHost: sess.test\r\n\r\n"), 0);
    r->fd = fd;
    r->start = r->end = 0;
    char head[4096];
    CHECK_INT_EQ(rd_head(r, head, sizeof(head)), 0);
    uint64_t more = 0;
    while (rd_fill(r) == 0) {
        more += r->end - r->start;
        r->start = r->end;
    }
    CHECK(more <= 1000);
    close(fd);
    free(r);
    CHECK(wait_for(&upstream_closed, closed_before + 1, 5000));
}

static void test_spliced_body_client_gone(void)
{
    /* The client goes away 1 MiB into a 64 MiB spliced body: the worker
     * resets the stream at the next DATA for it, and the local side lets go
     * of the origin connection at once (the origin's send fails), not after
     * an idle timeout: the splice, stalled on the tunnel, was not reading. */
    int cut_before = atomic_load(&blob_cut);
    int fd = dial(worker_port);
    set_timeouts(fd, 10);
    CHECK_INT_EQ(send_str(fd, "GET /blob/67108864 HTTP/1.1\r\nHost: sess.test\r\n\r\n"), 0);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char head[4096];
    CHECK_INT_EQ(rd_head(r, head, sizeof(head)), 0);
    uint64_t got = 0;
    CHECK(read_echo_body(r, 1 << 20, &got));
    close(fd);
    free(r);
    CHECK(wait_for(&blob_cut, cut_before + 1, 1500));
    struct response *resp = calloc(1, sizeof(*resp));
    CHECK_INT_EQ(request("sess.test", "/hello", resp), 0);
    CHECK_INT_EQ(resp->status, 200);
    free(resp);
}

/* The local engine's connection count, read on the loop's thread. */
static int count_local_conns(void)
{
    int asked = atomic_load(&n_counted);
    command('n');
    if (!wait_for(&n_counted, asked + 1, 2000))
        return -1;
    return atomic_load(&local_conns);
}

/* Polls the local engine's connection count until it is 0 or ms pass;
 * returns the last count. */
static int wait_local_conns_gone(int ms)
{
    int n = -1;
    for (int waited = 0; waited < ms && n != 0; waited += 20) {
        usleep(20 * 1000);
        n = count_local_conns();
    }
    return n;
}

static void test_orphaned_stream_is_closed_at_once(void)
{
    /* The local engine answers a stream with more than the stream's other
     * end takes, so most of the answer waits in the engine; then that end
     * goes away (the stream was reset). Nothing can take those bytes any
     * more: the engine closes the connection at once, instead of holding
     * it and its buffers until a timeout. */
    command('o');
    usleep(200 * 1000);
    CHECK_INT_EQ(count_local_conns(), 1);
    command('x');
    CHECK_INT_EQ(wait_local_conns_gone(1000), 0);
}

static void test_tunnel_loss_closes_waiting_local_streams(void)
{
    /* A request the local program has not answered yet, when the tunnel
     * goes away: the stream is gone with it, so the local engine closes
     * that connection at once (the program may still answer later, into
     * nothing) instead of keeping it as a half-closed client. */
    int before = atomic_load(&n_connects);
    int held = atomic_load(&n_held);
    int fd = dial(worker_port);
    send_str(fd, "GET /held HTTP/1.1\r\nHost: sess.test\r\n\r\n");
    CHECK(wait_for(&n_held, held + 1, 2000));
    CHECK_INT_EQ(count_local_conns(), 1);
    command('d');
    CHECK_INT_EQ(wait_local_conns_gone(1000), 0);
    command('r'); /* the late answer goes nowhere, and frees the exchange */
    struct reader *r = calloc(1, sizeof(*r));
    struct response *resp = calloc(1, sizeof(*resp));
    r->fd = fd;
    CHECK_INT_EQ(read_response(r, resp), 0);
    CHECK_INT_EQ(resp->status, 502);
    close(fd);
    /* The client reconnects and the tunnel serves again. */
    check_reconnects_and_serves(before, 2000, resp);
    free(resp);
    free(r);
}

static void test_wrong_secret_is_rejected(void)
{
    int rejected = atomic_load(&n_rejected);
    /* A raw upgrade with a wrong secret gets 401. */
    int fd = dial(worker_port);
    send_str(fd, "GET " LK_TUNNEL_PATH " HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\n"
                 "Upgrade: linkup-tunnel\r\nAuthorization: Bearer nope\r\n"
                 "x-linkup-session: sess\r\n\r\n");
    struct reader *r = calloc(1, sizeof(*r));
    struct response *resp = calloc(1, sizeof(*resp));
    r->fd = fd;
    CHECK_INT_EQ(read_response(r, resp), 0);
    CHECK_INT_EQ(resp->status, 401);
    CHECK_STR_EQ(resp->body, "Invalid tunnel secret");
    close(fd);
    /* Other malformed upgrades. */
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        { "GET " LK_TUNNEL_PATH " HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer " SECRET
          "\r\nx-linkup-session: sess\r\n\r\n",
          400 },
        { "GET " LK_TUNNEL_PATH " HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\n"
          "Upgrade: linkup-tunnel\r\nAuthorization: Bearer " SECRET "\r\n\r\n",
          400 },
        { "GET " LK_TUNNEL_PATH " HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\n"
          "Upgrade: linkup-tunnel\r\nx-linkup-session: sess\r\n\r\n",
          401 },
        { "GET " LK_TUNNEL_PATH " HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\n"
          "Upgrade: linkup-tunnel\r\nAuthorization: Basic " SECRET "\r\n"
          "x-linkup-session: sess\r\n\r\n",
          401 },
        /* A secret that cannot be looked up is not called wrong. */
        { "GET " LK_TUNNEL_PATH " HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\n"
          "Upgrade: linkup-tunnel\r\nAuthorization: Bearer " SECRET "\r\n"
          "x-linkup-session: down\r\n\r\n",
          503 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fd = dial(worker_port);
        r->fd = fd;
        r->start = r->end = 0;
        send_str(fd, cases[i].req);
        CHECK_INT_EQ(read_response(r, resp), 0);
        CHECK_INT_EQ(resp->status, cases[i].status);
        close(fd);
    }
    /* A tunnel client with a wrong secret never connects and sees the 401. */
    command('b');
    CHECK(wait_for(&bad_saw_401, 1, 3000));
    CHECK(atomic_load(&n_rejected) >= rejected + 2);
    usleep(300 * 1000);
    CHECK_INT_EQ(atomic_load(&bad_connected), 0);
    CHECK_INT_EQ(request("other.test", "/hello", resp), 0);
    CHECK_INT_EQ(resp->status, 502);
    /* The good tunnel is unaffected. */
    CHECK_INT_EQ(request("sess.test", "/hello", resp), 0);
    CHECK_INT_EQ(resp->status, 200);
    free(resp);
    free(r);
}

static void test_tls_tunnel(void)
{
    /* The local server dials https://localhost:P: SNI, certificate checked
     * against upstream_ca_file; the worker hands its TLS connection over. */
    command('t');
    CHECK(wait_for(&tls_connected, 1, 5000));
    struct response *resp = calloc(1, sizeof(*resp));
    CHECK_INT_EQ(request("tlss.test", "/hello", resp), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_STR_EQ(resp->body, "hello from local");
    /* A body large enough to need several windows, echoed back. */
    int fd = dial(worker_port);
    uint64_t n = 3 << 20;
    char head[128];
    snprintf(head, sizeof(head),
             "POST /echo HTTP/1.1\r\nHost: tlss.test\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)n);
    send_str(fd, head);
    struct upload u = { fd, n, 0 };
    pthread_t t;
    pthread_create(&t, NULL, upload_main, &u);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char resp_head[4096];
    CHECK_INT_EQ(rd_head(r, resp_head, sizeof(resp_head)), 0);
    CHECK(strncmp(resp_head, "HTTP/1.1 200", 12) == 0);
    uint64_t got = 0, bad_at = UINT64_MAX;
    while (got < n) {
        if (r->start == r->end && rd_fill(r) != 0)
            break;
        for (; r->start < r->end && got < n; r->start++, got++) {
            if ((unsigned char)r->buf[r->start] != pattern(got) && bad_at == UINT64_MAX)
                bad_at = got;
        }
    }
    pthread_join(t, NULL);
    CHECK_INT_EQ(got, n);
    CHECK(bad_at == UINT64_MAX);
    free(r);
    free(resp);
    close(fd);
}

/* Polls the local engine's connection count until it is want or ms pass;
 * returns the last count. */
static int wait_local_conns(int want, int ms)
{
    int n = -1;
    for (int waited = 0; waited < ms && n != want; waited += 20) {
        n = count_local_conns();
        if (n != want)
            usleep(20 * 1000);
    }
    return n;
}

static void test_pooled_streams(void)
{
    /* With a pool key, requests from different client connections take
     * turns on one stream: the local engine keeps one connection for them
     * all, a keep-alive client of its own. */
    CHECK(wait_for(&good_connected, 1, 5000));
    CHECK_INT_EQ(wait_local_conns(0, 2000), 0);
    struct response *resp = calloc(1, sizeof(*resp));
    for (int i = 0; i < 3; i++) {
        CHECK_INT_EQ(request("sess.pooled", "/hello", resp), 0);
        CHECK_INT_EQ(resp->status, 200);
        CHECK_STR_EQ(resp->body, "hello from local");
    }
    CHECK_INT_EQ(count_local_conns(), 1);
    /* A large answer on a kept stream, and the stream still serves after. */
    int fd = dial(worker_port);
    send_str(fd, "GET /huge HTTP/1.1\r\nHost: sess.pooled\r\n\r\n");
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char v[64];
    CHECK_INT_EQ(rd_head(r, resp->head, sizeof(resp->head)), 0);
    CHECK(strncmp(resp->head, "HTTP/1.1 200", 12) == 0);
    uint64_t len = find_hdr(resp->head, "Content-Length", v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
    CHECK_INT_EQ(len, 4u << 20);
    CHECK_INT_EQ(rd_exact(r, NULL, len), 0);
    free(r);
    close(fd);
    CHECK_INT_EQ(request("sess.pooled", "/nothing-here", resp), 0);
    CHECK_INT_EQ(resp->status, 404);
    CHECK_INT_EQ(count_local_conns(), 1);
    /* A new tunnel gets new streams: the kept one went with the old. */
    int before = atomic_load(&n_connects);
    command('d');
    check_reconnects_and_serves(before, 2000, resp);
    CHECK_INT_EQ(request("sess.pooled", "/hello", resp), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_INT_EQ(wait_local_conns(1, 2000), 1);
    free(resp);
}

static void test_silent_peer_is_dropped(void)
{
    /* Pings go unanswered: the client drops the connection after
     * dead_after_ms and reconnects. */
    command('s');
    CHECK(wait_for(&silent_connects, 1, 3000));
    CHECK(wait_for(&silent_dropped, 1, 3000));
    /* Dropped when the silence reaches dead_after_ms (650), not at the next
     * ping tick (900): the check is timed for it. */
    long long ms = atomic_load(&silent_for_ms);
    CHECK(ms >= 650 && ms < 850);
    CHECK(wait_for(&silent_connects, 2, 3000));
}

/* Hostnames are case-insensitive: the tunnel of "Big-Cow" serves whatever
 * case the host has. "big-cow" shares its hostname: refused (409) while
 * "Big-Cow" is connected, it takes over once that tunnel is gone. */
static void test_session_names_compare_case_insensitively(void)
{
    command('u');
    CHECK(wait_for(&upper_connected, 1, 5000));
    struct response *resp = calloc(1, sizeof(*resp));
    static const char *const hosts[] = { "big-cow.test", "Big-Cow.test", "BIG-COW.test",
                                         "big-cow.pooled" };
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        CHECK_INT_EQ(request(hosts[i], "/hello", resp), 0);
        CHECK_INT_EQ(resp->status, 200);
        CHECK_STR_EQ(resp->body, "hello from local");
    }
    command('l');
    CHECK(wait_for(&lower_saw_409, 1, 3000));
    CHECK_INT_EQ(atomic_load(&lower_connected), 0);
    /* Closing "big-cow" (exact) leaves "Big-Cow"'s tunnel alone. */
    command('c');
    usleep(200 * 1000);
    CHECK_INT_EQ(atomic_load(&upper_connected), 1);
    CHECK_INT_EQ(request("big-cow.test", "/hello", resp), 0);
    CHECK_INT_EQ(resp->status, 200);
    command('U');
    CHECK(wait_for(&lower_connected, 1, 8000));
    CHECK_INT_EQ(request("Big-Cow.test", "/hello", resp), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_STR_EQ(resp->body, "hello from local");
    free(resp);
}

static SSL_CTX *make_worker_tls(void)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, pkey, EVP_sha256());
    snprintf(cert_path, sizeof(cert_path), "/tmp/lk-test-tunnel-%d.pem", (int)getpid());
    FILE *f = fopen(cert_path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx, x);
    SSL_CTX_use_PrivateKey(ctx, pkey);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return ctx;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(55);
    enum lk_log_level level;
    lk_log_level_parse(getenv("LINKUP_LOG"), &level);
    lk_log_set_level(getenv("LINKUP_LOG") ? level : LK_LOG_ERROR);
    int up_fd = listen_any(&up_port);
    pthread_t up_thread;
    pthread_create(&up_thread, NULL, up_main, (void *)(intptr_t)up_fd);
    pthread_detach(up_thread);

    base = event_base_new();
    struct lk_http_server_opts opts;
    lk_http_server_opts_init(&opts);
    opts.access_log = false;
    CHECK_INT_EQ(lk_http_server_new(base, &opts, worker_handler, NULL, &worker), 0);
    char bound[64];
    CHECK_INT_EQ(lk_http_server_listen(worker, "127.0.0.1:0", NULL, bound, sizeof(bound)), 0);
    worker_port = (int)strtol(strrchr(bound, ':') + 1, NULL, 10);
    SSL_CTX *worker_tls = make_worker_tls();
    CHECK_INT_EQ(lk_http_server_listen(worker, "127.0.0.1:0", worker_tls, bound, sizeof(bound)), 0);
    worker_tls_port = (int)strtol(strrchr(bound, ':') + 1, NULL, 10);
    opts.upstream_ca_file = cert_path;
    opts.upstream_idle_timeout_ms = 2000; /* test_spliced_body_slow_reader_and_stalled_origin */
    CHECK_INT_EQ(lk_http_server_new(base, &opts, local_handler, NULL, &local), 0);
    struct lk_tunnel_opts topts;
    lk_tunnel_opts_init(&topts);
    topts.ping_interval_ms = 300;
    topts.dead_after_ms = 5000;
    /* The worker's stream window is larger than a splice's pipe (256 KiB):
     * what a stalled client leaves in flight beyond the pipe goes through
     * memory (test_spliced_body_slow_reader_and_stalled_origin). */
    topts.stream_window = 1024 * 1024;
    hub = lk_tunnel_hub_new(base, &topts, NULL, NULL);

    RUN(test_secret_eq);
    RUN(test_client_start_rejects_bad_options);

    good = start_client("sess", SECRET, on_good_state);
    if (pipe(ctl) != 0)
        abort();
    struct event *ctl_ev = event_new(base, ctl[0], EV_READ | EV_PERSIST, on_ctl, NULL);
    event_add(ctl_ev, NULL);
    pthread_t loop;
    pthread_create(&loop, NULL, loop_main, NULL);

    RUN(test_no_tunnel_is_502);
    RUN(test_get_through_tunnel);
    RUN(test_bytes_leave_within_the_callback);
    RUN(test_keepalive_requests_share_the_tunnel);
    RUN(test_concurrent_requests);
    RUN(test_big_body_both_ways);
    RUN(test_interleaved_big_streams);
    RUN(test_websocket_through_tunnel);
    RUN(test_spliced_downloads);
    RUN(test_spliced_body_cut_by_the_origin);
    RUN(test_spliced_body_slow_reader_and_stalled_origin);
    RUN(test_spliced_body_client_gone);
    RUN(test_drop_mid_stream);
    RUN(test_orphaned_stream_is_closed_at_once);
    RUN(test_tunnel_loss_closes_waiting_local_streams);
    RUN(test_wrong_secret_is_rejected);
    RUN(test_tls_tunnel);
    RUN(test_silent_peer_is_dropped);
    RUN(test_pooled_streams);
    RUN(test_session_names_compare_case_insensitively);

    command('q');
    pthread_join(loop, NULL);
    event_free(ctl_ev);
    close(ctl[0]);
    close(ctl[1]);
    event_base_free(base);
    SSL_CTX_free(worker_tls);
    unlink(cert_path);
    close(up_fd);
    return DONE();
}
