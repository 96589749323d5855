/*
 * test_proxy.c - the engine (lib/net/http_server.h) end to end, in process.
 *
 * The server runs on its own event loop in a thread; a hand-made blocking
 * upstream runs in other threads (one per connection); the test body is a
 * blocking client with socket timeouts. Everything binds 127.0.0.1:0. At the
 * end the server is drained so that LSan sees no leaks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
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
#include "net/splice.h"

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

static int up_port;     /* the upstream */
static int dead_port;   /* nothing listens there */
static int server_port; /* the engine */
static int up_conn_seq; /* upstream connection counter */
static pthread_mutex_t up_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- tiny blocking helpers --------------------------------------------- */

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0)
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
    set_timeouts(fd, 10);
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w == -1 && errno == EINTR)
                continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
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
    char buf[65536];
    size_t start, end;
};

static int rd_fill(struct reader *r)
{
    if (r->start == r->end)
        r->start = r->end = 0;
    if (r->end == sizeof(r->buf)) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    ssize_t n;
    do {
        n = recv(r->fd, r->buf + r->end, sizeof(r->buf) - r->end, 0);
    } while (n == -1 && errno == EINTR);
    if (n <= 0)
        return -1;
    r->end += (size_t)n;
    return 0;
}

/* Reads a head (through CRLFCRLF) into out (NUL-terminated). */
static int rd_head(struct reader *r, char *out, size_t cap)
{
    for (;;) {
        char *p = memmem(r->buf + r->start, r->end - r->start, "\r\n\r\n", 4);
        if (p != NULL) {
            size_t n = (size_t)(p + 4 - (r->buf + r->start));
            if (n >= cap)
                return -1;
            memcpy(out, r->buf + r->start, n);
            out[n] = '\0';
            r->start += n;
            return 0;
        }
        if (rd_fill(r) != 0)
            return -1;
    }
}

static int rd_line(struct reader *r, char *out, size_t cap)
{
    for (;;) {
        char *p = memmem(r->buf + r->start, r->end - r->start, "\r\n", 2);
        if (p != NULL) {
            size_t n = (size_t)(p - (r->buf + r->start));
            if (n >= cap)
                return -1;
            memcpy(out, r->buf + r->start, n);
            out[n] = '\0';
            r->start += n + 2;
            return 0;
        }
        if (rd_fill(r) != 0)
            return -1;
    }
}

/* Reads n bytes, copying at most cap into out (NULL: count only). */
static int rd_n(struct reader *r, uint64_t n, char *out, size_t cap, size_t *got)
{
    while (n > 0) {
        if (r->start == r->end && rd_fill(r) != 0)
            return -1;
        size_t k = r->end - r->start;
        if (k > n)
            k = (size_t)n;
        if (out != NULL && *got < cap) {
            size_t c = cap - *got < k ? cap - *got : k;
            memcpy(out + *got, r->buf + r->start, c);
        }
        *got += k;
        r->start += k;
        n -= k;
    }
    return 0;
}

static const char *find_hdr(const char *head, const char *name, char *val, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t n = (size_t)(e - v) < cap - 1 ? (size_t)(e - v) : cap - 1;
            memcpy(val, v, n);
            val[n] = '\0';
            return val;
        }
    }
    return NULL;
}

struct response {
    int status;
    char head[16384];
    char body[65536];
    size_t body_len; /* total, may exceed sizeof(body) */
    bool chunked;
};

/* Reads one response; request_head: the request was HEAD. */
static int read_response(struct reader *r, struct response *resp, bool request_head)
{
    memset(resp, 0, sizeof(*resp));
    do {
        if (rd_head(r, resp->head, sizeof(resp->head)) != 0)
            return -1;
        resp->status = (int)strtol(resp->head + 9, NULL, 10);
    } while (resp->status >= 100 && resp->status < 200 && resp->status != 101);
    char v[256];
    if (request_head || resp->status == 204 || resp->status == 304 || resp->status == 101)
        return 0;
    if (find_hdr(resp->head, "Transfer-Encoding", v, sizeof(v)) != NULL) {
        resp->chunked = true;
        for (;;) {
            char line[256];
            if (rd_line(r, line, sizeof(line)) != 0)
                return -1;
            uint64_t n = strtoull(line, NULL, 16);
            if (n == 0) {
                rd_line(r, line, sizeof(line));
                return 0;
            }
            if (rd_n(r, n, resp->body, sizeof(resp->body), &resp->body_len) != 0)
                return -1;
            rd_line(r, line, sizeof(line));
        }
    }
    if (find_hdr(resp->head, "Content-Length", v, sizeof(v)) != NULL)
        return rd_n(r, strtoull(v, NULL, 10), resp->body, sizeof(resp->body), &resp->body_len);
    while (rd_fill(r) == 0) {
    }
    size_t n = r->end - r->start;
    return rd_n(r, n, resp->body, sizeof(resp->body), &resp->body_len);
}

/* ---- the upstream ------------------------------------------------------- */

static void append(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(dst);
    snprintf(dst + n, cap - n, "%s", s);
}

static void up_respond(int fd, const char *status, const char *extra, const char *body)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\n\r\n%s", status, extra,
             strlen(body), body);
    send_str(fd, buf);
}

/* Reads the request body per the head; returns its length. */
static uint64_t up_read_body(struct reader *r, const char *head)
{
    char v[64];
    size_t got = 0;
    if (find_hdr(head, "Content-Length", v, sizeof(v)) != NULL) {
        rd_n(r, strtoull(v, NULL, 10), NULL, 0, &got);
        return got;
    }
    if (find_hdr(head, "Transfer-Encoding", v, sizeof(v)) != NULL) {
        for (;;) {
            char line[128];
            if (rd_line(r, line, sizeof(line)) != 0)
                return got;
            uint64_t n = strtoull(line, NULL, 16);
            if (n == 0) {
                rd_line(r, line, sizeof(line));
                return got;
            }
            rd_n(r, n, NULL, 0, &got);
            rd_line(r, line, sizeof(line));
        }
    }
    return 0;
}

static void up_ws(int fd, struct reader *r)
{
    /* The accept of the key every test client sends (RFC 6455 §1.3). */
    send_str(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nmy-special-header: special-value\r\n"
                 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
    /* Echo raw bytes until EOF, then half-close back. */
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

static void up_big(int fd, uint64_t n)
{
    char head[128];
    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)n);
    send_str(fd, head);
    static char chunk[65536];
    while (n > 0) {
        size_t k = n < sizeof(chunk) ? (size_t)n : sizeof(chunk);
        if (send_all(fd, chunk, k) != 0)
            return;
        n -= k;
    }
}

/* A chunked body of n bytes in 64 KiB chunks: never spliced. */
static void up_chunked_big(int fd, uint64_t n)
{
    send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    static char chunk[65536];
    memset(chunk, 'c', sizeof(chunk));
    while (n > 0) {
        size_t k = n < sizeof(chunk) ? (size_t)n : sizeof(chunk);
        char size[24];
        snprintf(size, sizeof(size), "%zx\r\n", k);
        if (send_str(fd, size) != 0 || send_all(fd, chunk, k) != 0 || send_str(fd, "\r\n") != 0)
            return;
        n -= k;
    }
    send_str(fd, "0\r\n\r\n");
}

static unsigned char pattern(uint64_t i);

/* A Content-Length body of n pattern bytes, of which only the first send
 * are sent; then the connection closes (close) or waits for the proxy to go. */
static void up_pattern(int fd, struct reader *r, uint64_t n, uint64_t send, bool close_after)
{
    char head[128];
    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)n);
    send_str(fd, head);
    static _Thread_local unsigned char chunk[65536];
    for (uint64_t off = 0; off < send;) {
        size_t k = send - off < sizeof(chunk) ? (size_t)(send - off) : sizeof(chunk);
        for (size_t i = 0; i < k; i++)
            chunk[i] = pattern(off + i);
        if (send_all(fd, chunk, k) != 0)
            return;
        off += k;
    }
    if (send < n && !close_after)
        while (rd_fill(r) == 0) /* until the proxy goes */
            ;
}

static void *up_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    set_timeouts(fd, 20);
    pthread_mutex_lock(&up_mu);
    int id = ++up_conn_seq;
    pthread_mutex_unlock(&up_mu);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char head[16384], extra[512], v[256];
    int served = 0; /* requests answered on this connection */
    for (; rd_head(r, head, sizeof(head)) == 0; served++) {
        uint64_t body = up_read_body(r, head);
        char path[256] = "";
        sscanf(head, "%*s %255s", path);
        snprintf(extra, sizeof(extra), "X-Conn: %d\r\nX-Seen-Host: %s\r\n", id,
                 find_hdr(head, "Host", v, sizeof(v)) ? v : "-");
        if (strcmp(path, "/cookies") == 0) {
            append(extra, sizeof(extra),
                   "Set-Cookie: cookie1=value1; Path=/\r\n"
                   "Set-Cookie: cookie2=value2; Path=/\r\n");
            up_respond(fd, "200 OK", extra, "cookies");
        } else if (strcmp(path, "/redirect") == 0) {
            append(extra, sizeof(extra), "Location: /somethingelse\r\n");
            up_respond(fd, "307 Temporary Redirect", extra, "");
        } else if (strcmp(path, "/chunked") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "6\r\nhello \r\n5;x=y\r\nworld\r\n0\r\nT: 1\r\n\r\n");
        } else if (strcmp(path, "/close") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close");
            break;
        } else if (strcmp(path, "/count") == 0) {
            char b[64];
            snprintf(b, sizeof(b), "%llu", (unsigned long long)body);
            up_respond(fd, "200 OK", extra, b);
        } else if (strncmp(path, "/big/", 5) == 0) {
            up_big(fd, strtoull(path + 5, NULL, 10));
        } else if (strncmp(path, "/chunkbig/", 10) == 0) {
            up_chunked_big(fd, strtoull(path + 10, NULL, 10));
        } else if (strncmp(path, "/pat/", 5) == 0) { /* /pat/N[/SENT[/close]] */
            char *end = NULL;
            uint64_t n = strtoull(path + 5, &end, 10);
            uint64_t sent = *end == '/' ? strtoull(end + 1, &end, 10) : n;
            bool close_after = strstr(path, "/close") != NULL;
            up_pattern(fd, r, n, sent, close_after);
            if (sent < n)
                break;
        } else if (strcmp(path, "/cors") == 0) {
            append(extra, sizeof(extra),
                   "Access-Control-Allow-Origin: https://x.example\r\n"
                   "access-control-max-age: 5\r\nAccess-Control-Allow-Headrs: typo\r\n");
            up_respond(fd, "200 OK", extra, "cors");
        } else if (strcmp(path, "/hop") == 0) {
            /* Report which hop-by-hop headers arrived. */
            char b[256];
            snprintf(b, sizeof(b), "te=%d keep=%d x-private=%d x-end=%d",
                     find_hdr(head, "TE", v, sizeof(v)) != NULL,
                     find_hdr(head, "Keep-Alive", v, sizeof(v)) != NULL,
                     find_hdr(head, "X-Private", v, sizeof(v)) != NULL,
                     find_hdr(head, "X-End", v, sizeof(v)) != NULL);
            append(extra, sizeof(extra),
                   "Connection: X-Up-Private\r\nX-Up-Private: 1\r\nKeep-Alive: 5\r\n");
            up_respond(fd, "200 OK", extra, b);
        } else if (strcmp(path, "/ws") == 0) {
            up_ws(fd, r);
            break;
        } else if (strcmp(path, "/nows") == 0) {
            up_respond(fd, "403 Forbidden", extra, "no websocket");
        } else if (strncmp(path, "/late-garbage/", 14) == 0) {
            usleep((useconds_t)strtoul(path + 14, NULL, 10) * 1000);
            send_str(fd, "HTTP/1.1 200 OK\r\nBad\rHeader: x\r\n\r\n"); /* bare CR */
            while (rd_fill(r) == 0)                                    /* until the proxy goes */
                ;
            break;
        } else if (strcmp(path, "/drop") == 0) {
            break; /* close without answering */
        } else if (strcmp(path, "/stall") == 0) {
            while (rd_fill(r) == 0) /* never answer; wait for the proxy to go */
                ;
            break;
        } else if (strcmp(path, "/drop-reused") == 0) {
            if (served > 0)
                break; /* a kept-alive connection that died before this request */
            up_respond(fd, "200 OK", extra, "fresh");
        } else if (strcmp(path, "/bye-idle") == 0) {
            up_respond(fd, "200 OK", extra, "bye");
            usleep(50 * 1000); /* then close while the proxy pools it */
            break;
        } else if (strcmp(path, "/conn-header") == 0) {
            up_respond(fd, "200 OK", extra, find_hdr(head, "Connection", v, sizeof(v)) ? v : "-");
        } else {
            up_respond(fd, "200 OK", extra, "under_fe");
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

/* ---- a TLS upstream with a self-signed certificate ---------------------- */

static int tls_port;
static char cert_path[64];

static SSL_CTX *make_tls_upstream(void)
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
    snprintf(cert_path, sizeof(cert_path), "/tmp/lk-test-proxy-%d.pem", (int)getpid());
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

struct tls_up {
    int lfd;
    SSL_CTX *ctx;
};

/* One request per connection: answers with the SNI it saw. */
static void *tls_up_main(void *arg)
{
    struct tls_up *t = arg;
    for (;;) {
        int fd = accept(t->lfd, NULL, NULL);
        if (fd < 0)
            break;
        set_timeouts(fd, 10);
        SSL *ssl = SSL_new(t->ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            char buf[8192];
            size_t n = 0;
            while (n < sizeof(buf) - 1) {
                int k = SSL_read(ssl, buf + n, (int)(sizeof(buf) - 1 - n));
                if (k <= 0)
                    break;
                n += (size_t)k;
                buf[n] = '\0';
                if (strstr(buf, "\r\n\r\n") != NULL)
                    break;
            }
            const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
            char resp[256];
            int len = snprintf(resp, sizeof(resp),
                               "HTTP/1.1 200 OK\r\nX-SNI: %s\r\nContent-Length: 3\r\n\r\ntls",
                               sni ? sni : "-");
            SSL_write(ssl, resp, len);
            SSL_shutdown(ssl);
        }
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

/* ---- the server under test --------------------------------------------- */

static struct event_base *base;
static struct lk_http_server *srv;
static struct lk_http_server *small_srv; /* max_conns 1, short head timeout */
static int small_port;
static struct lk_http_server *tiny_srv; /* stream_buffer_max 8 KiB */
static int tiny_port;
static int n_drained;

/* ---- custom connectors (lk_proxy_req.connect) ---------------------------- */

static void on_proxy_error(struct lk_exchange *ex, const char *errtext, void *data);

static atomic_int connector_calls;

/* A plain TCP connection to the upstream, made at once. */
static int connect_up(void *data, struct bufferevent **out, char *errtext, size_t errtext_len)
{
    (void)data;
    atomic_fetch_add(&connector_calls, 1);
    int fd = dial(up_port);
    if (fd < 0 || evutil_make_socket_nonblocking(fd) != 0) {
        if (fd >= 0)
            close(fd);
        snprintf(errtext, errtext_len, "cannot reach the upstream");
        *out = NULL;
        return LK_EIO;
    }
    *out = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    return 0;
}

static unsigned char pattern(uint64_t i)
{
    return (unsigned char)(i % 251);
}

/* The upstream end of an in-memory connection: once the request head is in,
 * the whole answer (head and n body bytes) is written at once, far more
 * than one socket read brings. */
struct pair_up {
    uint64_t n;
    bool answered;
};

static void on_pair_up_read(struct bufferevent *bev, void *arg)
{
    struct pair_up *u = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (u->answered || end.pos < 0)
        return;
    u->answered = true;
    evbuffer_drain(in, (size_t)end.pos + 4);
    struct evbuffer *out = bufferevent_get_output(bev);
    evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n",
                        (unsigned long long)u->n);
    static unsigned char chunk[251 * 64];
    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = pattern(i);
    for (uint64_t left = u->n; left > 0;) {
        size_t k = left < sizeof(chunk) ? (size_t)left : sizeof(chunk);
        evbuffer_add(out, chunk, k);
        left -= k;
    }
}

static void on_pair_up_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        bufferevent_free(bev);
        free(arg);
    }
}

static int connect_pair(void *data, struct bufferevent **out, char *errtext, size_t errtext_len)
{
    (void)errtext;
    (void)errtext_len;
    struct bufferevent *pair[2];
    if (bufferevent_pair_new(base, 0, pair) != 0)
        abort();
    struct pair_up *u = calloc(1, sizeof(*u));
    u->n = (uint64_t)(uintptr_t)data;
    bufferevent_setcb(pair[0], on_pair_up_read, NULL, on_pair_up_event, u);
    bufferevent_enable(pair[0], EV_READ | EV_WRITE);
    *out = pair[1];
    return 0;
}

/* /kc/REST and /uc/REST: REST from the upstream through connect_up(), with
 * and without a pool key; /pair/N: N bytes through connect_pair(). */
static bool proxy_by_connector(struct lk_exchange *ex, struct lk_str target)
{
    bool keyed = lk_str_starts_with(target, LK_STR("/kc/"));
    bool pair = lk_str_starts_with(target, LK_STR("/pair/"));
    if (!keyed && !pair && !lk_str_starts_with(target, LK_STR("/uc/")))
        return false;
    size_t skip = pair ? 5 : 3;
    struct lk_proxy_req spec = {
        .url = lk_exchange_printf(ex, "http://127.0.0.1:%d%.*s", up_port, (int)(target.len - skip),
                                  target.ptr + skip),
        .on_error = on_proxy_error,
        .connect = pair ? connect_pair : connect_up,
        .connect_pool_key = keyed ? "test-connector" : NULL,
    };
    if (pair)
        spec.connect_data = (void *)(uintptr_t)strtoull(target.ptr + 6, NULL, 10);
    lk_exchange_proxy(ex, &spec);
    return true;
}
static int ctl[2];               /* test -> loop: 'h' heap trims, anything else drains */
static atomic_int heap_trims;    /* srv's, as of the last 'h' */
static atomic_int n_asked;       /* 'h' and 's' commands answered */
static _Atomic uint64_t spliced; /* lk_splice_total_bytes(), as of the last 's' */

/* Response defaults (CORS, DESIGN §2.7): each added where the upstream's
 * head lacks its name. */
static const struct lk_http_header cors[] = {
    { LK_STR("Access-Control-Allow-Origin"), LK_STR("*") },
    { LK_STR("Access-Control-Max-Age"), LK_STR("86400") },
    { LK_STR("Access-Control-Allow-Headers"), LK_STR("*") },
};

static void on_proxy_error(struct lk_exchange *ex, const char *errtext, void *data)
{
    (void)data;
    char *body = lk_exchange_printf(ex, "Failed to fetch from target service: %s", errtext);
    struct lk_http_header ct = { LK_STR("Content-Type"), LK_STR("text/plain; charset=utf-8") };
    lk_exchange_respond(ex, 502, &ct, 1, body, strlen(body));
}

static void on_body(struct lk_exchange *ex, const char *body, size_t len, int err, void *data)
{
    (void)data;
    struct lk_http_header ct = { LK_STR("Content-Type"), LK_STR("application/json") };
    if (err == LK_ELIMIT) {
        lk_exchange_respond(ex, 413, NULL, 0, "too large", 9);
        return;
    }
    if (err != 0) {
        lk_exchange_respond(ex, 400, NULL, 0, "bad", 3);
        return;
    }
    lk_exchange_respond(ex, 200, &ct, 1, body, len);
}

static void handler(struct lk_exchange *ex, void *data)
{
    (void)data;
    struct lk_str target = lk_exchange_target(ex);
    if (lk_str_starts_with(target, LK_STR("/local"))) {
        struct lk_http_header ct = { LK_STR("Content-Type"), LK_STR("text/plain") };
        lk_exchange_respond(ex, 200, &ct, 1, "local", 5);
        return;
    }
    if (lk_str_starts_with(target, LK_STR("/json"))) {
        lk_exchange_read_body(ex, 16, on_body, NULL);
        return;
    }
    if (proxy_by_connector(ex, target))
        return;
    /* Proxy: all headers but Host; the upstream URL from the target. */
    size_t n = 0;
    const struct lk_http_header *in = lk_exchange_headers(ex, &n);
    struct lk_http_header *out = lk_exchange_alloc(ex, (n + 1) * sizeof(*out));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!lk_str_ieq(in[i].name, LK_STR("host")))
            out[k++] = in[i];
    }
    if (lk_str_starts_with(target, LK_STR("/tls"))) {
        struct lk_proxy_req tls_spec = {
            .url = lk_exchange_printf(
                ex, "https://%s:%d/",
                lk_str_eq(target, LK_STR("/tlsip")) ? "127.0.0.1" : "localhost", tls_port),
            .on_error = on_proxy_error,
        };
        lk_exchange_proxy(ex, &tls_spec);
        return;
    }
    bool dead = lk_str_starts_with(target, LK_STR("/dead"));
    bool via_localhost = lk_str_starts_with(target, LK_STR("/viahost"));
    const char *host = via_localhost ? "localhost" : "127.0.0.1";
    int port = dead ? dead_port : up_port;
    struct lk_proxy_req spec = {
        .url = lk_exchange_printf(ex, "http://%s:%d%.*s", host, port, (int)target.len, target.ptr),
        .headers = out,
        .n_headers = k,
        .resp_default = cors,
        .n_resp_default = sizeof(cors) / sizeof(cors[0]),
        .websocket = lk_exchange_is_websocket(ex),
        .ws_pass_non_101 = lk_str_starts_with(target, LK_STR("/nows")),
        .on_error = on_proxy_error,
    };
    if (via_localhost)
        spec.url = lk_exchange_printf(ex, "http://localhost:%d/", port);
    lk_exchange_set_log_fields(ex, "test-session", "web");
    lk_exchange_proxy(ex, &spec);
}

static void on_drained(void *data)
{
    (void)data;
    if (++n_drained == 3)
        event_base_loopexit(base, NULL);
}

static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    char c;
    if (read(fd, &c, 1) == 1 && c == 'h') {
        atomic_store(&heap_trims, (int)lk_http_server_n_heap_trims(srv));
        atomic_fetch_add(&n_asked, 1);
    } else if (c == 's') {
        atomic_store(&spliced, lk_splice_total_bytes());
        atomic_fetch_add(&n_asked, 1);
    } else if (c == 'p') {
        usleep(400 * 1000); /* hold the loop: the next wake-up sees all that happened */
    } else {
        lk_http_server_drain(srv, 2000, on_drained, NULL);
        lk_http_server_drain(small_srv, 2000, on_drained, NULL);
        lk_http_server_drain(tiny_srv, 2000, on_drained, NULL);
    }
}

static void *loop_main(void *arg)
{
    (void)arg;
    event_base_dispatch(base);
    return NULL;
}

/* ---- tests ------------------------------------------------------------- */

static int request(const char *raw, struct response *resp, bool is_head)
{
    int fd = dial(server_port);
    if (fd < 0)
        return -1;
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    int rc = send_str(fd, raw) == 0 ? read_response(r, resp, is_head) : -1;
    free(r);
    close(fd);
    return rc;
}

static struct response resp_storage;

static void test_basic_proxy(void)
{
    struct response *resp = &resp_storage;
    CHECK_INT_EQ(request("GET /anypath HTTP/1.1\r\nHost: app.example\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_MEM_EQ(resp->body, resp->body_len, "under_fe", 8);
    char v[128], want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d", up_port);
    CHECK_STR_EQ(find_hdr(resp->head, "X-Seen-Host", v, sizeof(v)), want);
    CHECK_STR_EQ(find_hdr(resp->head, "Access-Control-Allow-Origin", v, sizeof(v)), "*");
}

static void test_local_respond_and_head(void)
{
    struct response *resp = &resp_storage;
    CHECK_INT_EQ(request("GET /local HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_MEM_EQ(resp->body, resp->body_len, "local", 5);
    char v[128];
    CHECK_STR_EQ(find_hdr(resp->head, "Content-Type", v, sizeof(v)), "text/plain");
    CHECK_INT_EQ(request("HEAD /local HTTP/1.1\r\nHost: a\r\n\r\n", resp, true), 0);
    CHECK_STR_EQ(find_hdr(resp->head, "Content-Length", v, sizeof(v)), "5");
    CHECK_INT_EQ(request("HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", resp, true), 0);
    CHECK_INT_EQ(resp->status, 200);
}

static void test_cookies_redirect_cors(void)
{
    struct response *resp = &resp_storage;
    CHECK_INT_EQ(request("GET /cookies HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    const char *c1 = strstr(resp->head, "Set-Cookie: cookie1=value1; Path=/\r\n");
    const char *c2 = strstr(resp->head, "Set-Cookie: cookie2=value2; Path=/\r\n");
    CHECK(c1 != NULL && c2 != NULL && c1 < c2);
    CHECK_INT_EQ(request("GET /redirect HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 307);
    char v[128];
    CHECK_STR_EQ(find_hdr(resp->head, "Location", v, sizeof(v)), "/somethingelse");
    CHECK_INT_EQ(request("GET /cors HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_STR_EQ(find_hdr(resp->head, "Access-Control-Allow-Origin", v, sizeof(v)),
                 "https://x.example");
    CHECK(strstr(resp->head, "Access-Control-Allow-Origin: *") == NULL);
    /* the upstream's own, in any case, stands; a name of another length
     * or spelling does not */
    CHECK_STR_EQ(find_hdr(resp->head, "Access-Control-Max-Age", v, sizeof(v)), "5");
    CHECK(strstr(resp->head, "86400") == NULL);
    CHECK(strstr(resp->head, "Access-Control-Allow-Headers: *\r\n") != NULL);
    /* a response without them gets every default */
    CHECK_INT_EQ(request("GET /redirect HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK(strstr(resp->head, "Access-Control-Allow-Origin: *\r\n") != NULL);
    CHECK(strstr(resp->head, "Access-Control-Max-Age: 86400\r\n") != NULL);
    CHECK(strstr(resp->head, "Access-Control-Allow-Headers: *\r\n") != NULL);
}

static void test_hop_by_hop(void)
{
    struct response *resp = &resp_storage;
    CHECK_INT_EQ(request("GET /hop HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nKeep-Alive: 1\r\n"
                         "Connection: X-Private\r\nX-Private: 1\r\nX-End: 1\r\n\r\n",
                         resp, false),
                 0);
    CHECK_MEM_EQ(resp->body, resp->body_len, "te=0 keep=0 x-private=0 x-end=1", 31);
    CHECK(strstr(resp->head, "X-Up-Private") == NULL);
    CHECK(strstr(resp->head, "Keep-Alive") == NULL);
    static const char *const more[] = {
        /* Tokens with white space around them, in a second Connection field. */
        "GET /hop HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n"
        "X-Private: 1\r\nConnection: foo ,\t x-private \t,\r\nX-End: 1\r\n\r\n",
        /* More tokens than the proxy splits up front: the last one still counts. */
        "GET /hop HTTP/1.1\r\nHost: a\r\nConnection: a, b, c, d, e\r\n"
        "Connection: f, g, h, i,X-Private\r\nX-Private: 1\r\nX-End: 1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
        CHECK_INT_EQ(request(more[i], resp, false), 0);
        CHECK_MEM_EQ(resp->body, resp->body_len, "te=0 keep=0 x-private=0 x-end=1", 31);
    }
}

static void test_reframing(void)
{
    struct response *resp = &resp_storage;
    CHECK_INT_EQ(request("GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK(resp->chunked);
    CHECK_MEM_EQ(resp->body, resp->body_len, "hello world", 11);
    CHECK_INT_EQ(request("GET /close HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK(resp->chunked);
    CHECK_MEM_EQ(resp->body, resp->body_len, "until close", 11);
    /* HTTP/1.0 client: close-delimited instead of chunked. */
    CHECK_INT_EQ(request("GET /chunked HTTP/1.0\r\n\r\n", resp, false), 0);
    CHECK(!resp->chunked);
    CHECK_MEM_EQ(resp->body, resp->body_len, "hello world", 11);
    /* chunked upload arrives complete. */
    CHECK_INT_EQ(request("POST /count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\nabc\r\n4;e=1\r\ndefg\r\n0\r\n\r\n",
                         resp, false),
                 0);
    CHECK_MEM_EQ(resp->body, resp->body_len, "7", 1);
}

static void test_keepalive_pool_and_pipelining(void)
{
    int fd = dial(server_port);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    struct response *resp = &resp_storage;
    char v1[32] = "", v2[32] = "";
    send_str(fd, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    find_hdr(resp->head, "X-Conn", v1, sizeof(v1));
    send_str(fd, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    find_hdr(resp->head, "X-Conn", v2, sizeof(v2));
    CHECK_STR_EQ(v1, v2); /* the pooled upstream connection was reused */
    /* Three pipelined requests, answered in order. */
    send_str(fd, "GET /local/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /cookies HTTP/1.1\r\nHost: a\r\n\r\n"
                 "GET /local/3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    CHECK_MEM_EQ(resp->body, resp->body_len, "local", 5);
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    CHECK_MEM_EQ(resp->body, resp->body_len, "cookies", 7);
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    CHECK_MEM_EQ(resp->body, resp->body_len, "local", 5);
    CHECK(strstr(resp->head, "Connection: close") != NULL);
    CHECK_INT_EQ(rd_fill(r), -1); /* the server closed */
    free(r);
    close(fd);
}

static void test_upstream_errors(void)
{
    struct response *resp = &resp_storage;
    CHECK_INT_EQ(request("GET /dead HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 502);
    CHECK(resp->body_len > 0 &&
          strncmp(resp->body, "Failed to fetch from target service: ", 37) == 0);
    char v[128];
    CHECK(find_hdr(resp->head, "Access-Control-Allow-Origin", v, sizeof(v)) == NULL);
    CHECK_INT_EQ(request("GET /drop HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 502);
    /* localhost: ::1 first (nothing there), then 127.0.0.1. */
    CHECK_INT_EQ(request("GET /viahost HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_MEM_EQ(resp->body, resp->body_len, "under_fe", 8);
}

static void test_bad_requests(void)
{
    struct response *resp = &resp_storage;
    CHECK_INT_EQ(request("GET / HTTP/1.1\r\nHost : a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 400);
    CHECK_MEM_EQ(resp->body, resp->body_len, "whitespace before colon in header field", 39);
    char *big = malloc(20000);
    memset(big, 'a', 20000);
    memcpy(big, "GET /", 5);
    memcpy(big + 9000, " HTTP/1.1\r\n\r\n", 14);
    big[9014] = '\0';
    CHECK_INT_EQ(request(big, resp, false), 0);
    CHECK_INT_EQ(resp->status, 414);
    free(big);
    CHECK_INT_EQ(request("POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\n"
                         "0123456789012345678901234567890123456789",
                         resp, false),
                 0);
    CHECK_INT_EQ(resp->status, 413);
    CHECK_INT_EQ(request("POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
                         resp, false),
                 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_MEM_EQ(resp->body, resp->body_len, "{\"a\":1}", 7);
}

/* Asks the server for a WebSocket to the echoing upstream (/ws) on r's
 * connection; the answer (101 expected) is left in resp. */
static void ws_open(struct reader *r, struct response *resp)
{
    send_str(r->fd,
             "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    CHECK_INT_EQ(resp->status, 101);
}

/* Sends frame (no NUL inside) through an open WebSocket, checks the echo,
 * then half-closes: that travels to the upstream, which closes back. */
static void ws_echo_then_close(struct reader *r, const char *frame)
{
    size_t len = strlen(frame), got = 0;
    char echo[16];
    send_str(r->fd, frame);
    CHECK_INT_EQ(rd_n(r, len, echo, sizeof(echo), &got), 0);
    CHECK_MEM_EQ(echo, got, frame, len);
    shutdown(r->fd, SHUT_WR);
    CHECK_INT_EQ(rd_fill(r), -1);
}

static void test_websocket(void)
{
    int fd = dial(server_port);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    struct response *resp = &resp_storage;
    ws_open(r, resp);
    char v[128];
    CHECK_STR_EQ(find_hdr(resp->head, "my-special-header", v, sizeof(v)), "special-value");
    CHECK_STR_EQ(find_hdr(resp->head, "Access-Control-Allow-Origin", v, sizeof(v)), "*");
    ws_echo_then_close(r, "\x81\x05hello");
    free(r);
    close(fd);
    /* Non-101 passed through when asked to. */
    CHECK_INT_EQ(request("GET /nows HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                         "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                         resp, false),
                 0);
    CHECK_INT_EQ(resp->status, 403);
    CHECK_MEM_EQ(resp->body, resp->body_len, "no websocket", 12);
}

struct upload {
    int fd;
    uint64_t n;
};

static void *upload_main(void *arg)
{
    struct upload *u = arg;
    static char chunk[65536];
    uint64_t n = u->n;
    while (n > 0) {
        size_t k = n < sizeof(chunk) ? (size_t)n : sizeof(chunk);
        if (send_all(u->fd, chunk, k) != 0)
            break;
        n -= k;
    }
    return NULL;
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_streaming_large(void)
{
    const uint64_t n = 256ull * 1024 * 1024;
    long rss_before = max_rss_kb();
    /* Upload. */
    int fd = dial(server_port);
    set_timeouts(fd, 60);
    char head[128];
    snprintf(head, sizeof(head), "POST /count HTTP/1.1\r\nHost: a\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)n);
    send_str(fd, head);
    struct upload u = { fd, n };
    pthread_t t;
    pthread_create(&t, NULL, upload_main, &u);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    struct response *resp = &resp_storage;
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    pthread_join(t, NULL);
    char want[32];
    snprintf(want, sizeof(want), "%llu", (unsigned long long)n);
    CHECK_MEM_EQ(resp->body, resp->body_len, want, strlen(want));
    /* Download on the same connection. */
    snprintf(head, sizeof(head), "GET /big/%llu HTTP/1.1\r\nHost: a\r\n\r\n",
             (unsigned long long)n);
    send_str(fd, head);
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    CHECK_INT_EQ(resp->body_len, n);
    free(r);
    close(fd);
    /* The engine never held a body whole: memory grew by far less than n. */
    long grown_kb = max_rss_kb() - rss_before;
    if (SANITIZED)
        return; /* ASan's quarantine keeps freed chunks resident */
    if (grown_kb > 64 * 1024)
        fprintf(stderr, "  rss grew by %ld KiB\n", grown_kb);
    CHECK(grown_kb < 64 * 1024);
}

/* An upstream that closes a kept-alive connection while it waits in the
 * pool: the pool's watch drops it, so a POST (never retried) after it gets
 * a fresh connection instead of a dead one. */
static void test_pooled_connection_closed_by_upstream(void)
{
    struct response *resp = &resp_storage;
    char v1[32] = "", v2[32] = "";
    CHECK_INT_EQ(request("GET /bye-idle HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    find_hdr(resp->head, "X-Conn", v1, sizeof(v1));
    usleep(300 * 1000); /* the upstream closed; the pool saw it */
    CHECK_INT_EQ(
        request("POST /count HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_MEM_EQ(resp->body, resp->body_len, "3", 1);
    find_hdr(resp->head, "X-Conn", v2, sizeof(v2));
    CHECK(strcmp(v1, v2) != 0);
}

static void test_client_abort_frees_upstream(void)
{
    /* A download the client abandons: the upstream connection is closed, not
     * pooled, and the server keeps serving. */
    int fd = dial(server_port);
    send_str(fd, "GET /big/104857600 HTTP/1.1\r\nHost: a\r\n\r\n");
    char buf[4096];
    CHECK(recv(fd, buf, sizeof(buf), 0) > 0);
    close(fd);
    usleep(200 * 1000);
    struct response *resp = &resp_storage;
    CHECK_INT_EQ(request("GET /local HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
}

/* The client resets while the upstream's answer turns out invalid, both seen
 * in one loop wake-up: the connection is closed first, then the proxy fails
 * before any response byte. The closed connection must stay closed (it was
 * queued for freeing twice, and the reaper crashed on the list), and the
 * server keeps serving. */
static void test_client_reset_as_upstream_answer_fails(void)
{
    int fd = dial(server_port);
    send_str(fd, "GET /late-garbage/150 HTTP/1.1\r\nHost: a\r\n\r\n");
    usleep(50 * 1000); /* the request is with the upstream */
    if (write(ctl[1], "p", 1) != 1)
        abort();
    usleep(50 * 1000);
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);          /* RST, before the upstream's answer at 150 ms */
    usleep(450 * 1000); /* the loop wakes with both */
    struct response *resp = &resp_storage;
    for (int i = 0; i < 3; i++) {
        CHECK_INT_EQ(request("GET /local HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
        CHECK_INT_EQ(resp->status, 200);
    }
}

static uint64_t spliced_bytes(void)
{
    int asked = atomic_load(&n_asked);
    if (write(ctl[1], "s", 1) != 1)
        abort();
    for (int i = 0; i < 500 && atomic_load(&n_asked) == asked; i++)
        usleep(10 * 1000);
    return atomic_load(&spliced);
}

/* Reads a response head (into head) and up to n pattern bytes; returns how
 * many arrived before the end, a wrong byte or a timeout. */
static uint64_t read_pattern(struct reader *r, uint64_t n, char *head, size_t cap)
{
    if (rd_head(r, head, cap) != 0 || strncmp(head, "HTTP/1.1 200", 12) != 0)
        return 0;
    uint64_t got = 0;
    while (got < n) {
        if (r->start == r->end && rd_fill(r) != 0)
            break;
        for (; r->start < r->end && got < n; r->start++, got++) {
            if ((unsigned char)r->buf[r->start] != pattern(got))
                return got;
        }
    }
    return got;
}

static void test_spliced_relay(void)
{
    /* A long Content-Length body from a plain upstream to a plain client
     * moves by splice(2) (finding 28): two in a row on one keep-alive
     * connection (the second head must follow the first body), then a short
     * answer on it, every byte checked, and the bytes counted as spliced. */
    uint64_t before = spliced_bytes();
    uint64_t n = 3u << 20;
    int fd = dial(server_port);
    set_timeouts(fd, 20);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char req[96], head[4096], v[64];
    snprintf(req, sizeof(req), "GET /pat/%llu HTTP/1.1\r\nHost: a\r\n\r\n", (unsigned long long)n);
    for (int i = 0; i < 2; i++) {
        send_str(fd, req);
        CHECK_INT_EQ(read_pattern(r, n, head, sizeof(head)), n);
        CHECK_INT_EQ(strtoull(find_hdr(head, "Content-Length", v, sizeof(v)) ? v : "0", NULL, 10),
                     n);
    }
    struct response *resp = &resp_storage;
    send_str(fd, "GET /count HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    free(r);
    close(fd);
    uint64_t moved = spliced_bytes() - before;
    if (moved < 2 * (n - (256u << 10)))
        fprintf(stderr, "  spliced %llu of %llu bytes\n", (unsigned long long)moved,
                (unsigned long long)(2 * n));
    CHECK(moved >= 2 * (n - (256u << 10)) && moved <= 2 * n);
}

static void test_spliced_relay_failures(void)
{
    /* (tiny_srv: upstream idle timeout 1.5 s.) An upstream that closes
     * 300 KiB into a 1 MiB body: the client's connection closes early, with
     * no wrong byte before. */
    char head[4096];
    int fd = dial(tiny_port);
    set_timeouts(fd, 10);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    send_str(fd, "GET /pat/1048576/307200/close HTTP/1.1\r\nHost: a\r\n\r\n");
    uint64_t got = read_pattern(r, 1 << 20, head, sizeof(head));
    CHECK(got <= 307200);
    CHECK(rd_fill(r) != 0); /* closed, not stalled */
    close(fd);
    /* One that stops sending 300 KiB in: cut after the idle timeout. */
    fd = dial(tiny_port);
    set_timeouts(fd, 10);
    r->fd = fd;
    r->start = r->end = 0;
    send_str(fd, "GET /pat/1048576/307200 HTTP/1.1\r\nHost: a\r\n\r\n");
    got = read_pattern(r, 1 << 20, head, sizeof(head));
    CHECK(got <= 307200);
    CHECK(rd_fill(r) != 0);
    close(fd);
    /* A client that reads nothing for longer than the idle timeout while the
     * upstream has sent everything (64 MiB: more than the socket buffers on
     * the way take, so the splice does wait for the client): nothing times
     * out, and every byte arrives. */
    uint64_t n = 64u << 20;
    fd = dial(tiny_port);
    set_timeouts(fd, 20);
    r->fd = fd;
    r->start = r->end = 0;
    char req[96];
    snprintf(req, sizeof(req), "GET /pat/%llu HTTP/1.1\r\nHost: a\r\n\r\n", (unsigned long long)n);
    send_str(fd, req);
    sleep(3);
    CHECK_INT_EQ(read_pattern(r, n, head, sizeof(head)), n);
    close(fd);
    free(r);
}

/* Reads what fd still holds until the server's close: the byte count, or
 * UINT64_MAX when the connection stays open (a read times out). */
static uint64_t read_to_close(int fd)
{
    static char sink[65536];
    uint64_t total = 0;
    for (;;) {
        ssize_t n = recv(fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return total;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return UINT64_MAX;
        total += (uint64_t)n;
    }
}

/* Reads on (r's buffer is dropped) until upto bytes arrived in all, counting
 * from got; returns the new count (less at the end or a timeout). */
static uint64_t read_more(struct reader *r, uint64_t got, uint64_t upto)
{
    while (got < upto) {
        r->start = r->end = 0;
        if (rd_fill(r) != 0)
            break;
        got += r->end;
    }
    r->start = r->end = 0;
    return got;
}

/* A client that stops taking a response (64 MiB: more than every socket
 * buffer on the way) for longer than the send timeout (small_srv: 600 ms)
 * is cut, on the spliced path (Content-Length) as on the copying one
 * (chunked); pauses shorter than the timeout, one after another, are not
 * (the client reads 8 MiB after each: a socket is only writable again once
 * a third of its send buffer is free). */
static void test_send_timeout(void)
{
    const uint64_t n = 64u << 20;
    char req[96], head[4096];
    struct reader *r = calloc(1, sizeof(*r));
    for (int chunked = 0; chunked < 2; chunked++) {
        uint64_t before = spliced_bytes();
        int fd = dial(small_port);
        set_timeouts(fd, 10);
        r->fd = fd;
        r->start = r->end = 0;
        snprintf(req, sizeof(req), "GET /%s/%llu HTTP/1.1\r\nHost: a\r\n\r\n",
                 chunked ? "chunkbig" : "pat", (unsigned long long)n);
        send_str(fd, req);
        CHECK_INT_EQ(rd_head(r, head, sizeof(head)), 0);
        uint64_t got = read_more(r, r->end - r->start, 1u << 20);
        usleep(1500 * 1000); /* takes nothing: the send timeout fires */
        uint64_t rest = read_to_close(fd);
        CHECK(rest != UINT64_MAX);
        CHECK(got + rest < n);
        if (chunked)
            CHECK_INT_EQ(spliced_bytes(), before);
        else
            CHECK(spliced_bytes() > before);
        close(fd);
    }
    /* Three pauses of 400 ms, each shorter than the timeout: every byte. */
    int fd = dial(small_port);
    set_timeouts(fd, 20);
    r->fd = fd;
    r->start = r->end = 0;
    snprintf(req, sizeof(req), "GET /pat/%llu HTTP/1.1\r\nHost: a\r\n\r\n", (unsigned long long)n);
    send_str(fd, req);
    CHECK_INT_EQ(rd_head(r, head, sizeof(head)), 0);
    uint64_t got = r->end - r->start;
    for (int i = 1; i <= 3; i++) {
        usleep(400 * 1000);
        got = read_more(r, got, (uint64_t)i * (8u << 20));
    }
    CHECK_INT_EQ(read_more(r, got, n), n);
    close(fd);
    free(r);
}

static void test_tls_upstream(void)
{
    struct response *resp = &resp_storage;
    char v[64];
    CHECK_INT_EQ(request("GET /tls HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_MEM_EQ(resp->body, resp->body_len, "tls", 3);
    CHECK_STR_EQ(find_hdr(resp->head, "X-SNI", v, sizeof(v)), "localhost");
    CHECK_INT_EQ(request("GET /tlsip HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_STR_EQ(find_hdr(resp->head, "X-SNI", v, sizeof(v)), "-");
    /* The small server does not trust the test certificate. */
    int fd = dial(small_port);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    send_str(fd, "GET /tls HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    CHECK_INT_EQ(resp->status, 502);
    CHECK(strstr(resp->body, "certificate") != NULL);
    free(r);
    close(fd);
}

static void test_max_conns_and_head_timeout(void)
{
    usleep(300 * 1000); /* let earlier connections to this server close */
    int a = dial(small_port);
    CHECK(a >= 0);
    usleep(100 * 1000);
    /* The second connection is over the limit: 503 and close. */
    struct response *resp = &resp_storage;
    int b = dial(small_port);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = b;
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    CHECK_INT_EQ(resp->status, 503);
    close(b);
    /* The first one sends half a head and is closed by the head timeout. */
    send_str(a, "GET / HTTP/1.1\r\nHo");
    r->fd = a;
    r->start = r->end = 0;
    CHECK_INT_EQ(rd_fill(r), -1);
    free(r);
    close(a);
}

static void test_connector_pool(void)
{
    struct response *resp = &resp_storage;
    char v1[32] = "", v2[32] = "";
    int calls = atomic_load(&connector_calls);
    /* A connector with a pool key: its connections are kept alive (no
     * Connection: close) and the next request under the key takes one. */
    CHECK_INT_EQ(request("GET /kc/conn-header HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_MEM_EQ(resp->body, resp->body_len, "-", 1);
    find_hdr(resp->head, "X-Conn", v1, sizeof(v1));
    CHECK_INT_EQ(request("GET /kc/b HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    find_hdr(resp->head, "X-Conn", v2, sizeof(v2));
    CHECK_STR_EQ(v1, v2);
    CHECK_INT_EQ(atomic_load(&connector_calls), calls + 1);
    /* One found dead when reused is retried through the connector... */
    CHECK_INT_EQ(request("GET /kc/drop-reused HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    CHECK_MEM_EQ(resp->body, resp->body_len, "fresh", 5);
    CHECK_INT_EQ(atomic_load(&connector_calls), calls + 2);
    /* ...unless the request has a body. */
    CHECK_INT_EQ(request("POST /kc/drop-reused HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
                         resp, false),
                 0);
    CHECK_INT_EQ(resp->status, 502);
    CHECK_INT_EQ(atomic_load(&connector_calls), calls + 2);
    /* Without a key: a new connection per request, told Connection: close. */
    CHECK_INT_EQ(request("GET /uc/conn-header HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    CHECK_MEM_EQ(resp->body, resp->body_len, "close", 5);
    find_hdr(resp->head, "X-Conn", v1, sizeof(v1));
    CHECK_INT_EQ(request("GET /uc/b HTTP/1.1\r\nHost: a\r\n\r\n", resp, false), 0);
    find_hdr(resp->head, "X-Conn", v2, sizeof(v2));
    CHECK(strcmp(v1, v2) != 0);
    CHECK_INT_EQ(atomic_load(&connector_calls), calls + 4);
}

static void test_upstream_delivering_more_than_room(void)
{
    /* An upstream whose whole 4 MiB answer lands in the engine's input at
     * once (a tunnel stream does that), behind a stream_buffer_max of 8 KiB,
     * to a client that takes every write at once: each pass moves one room's
     * worth, and no write callback follows a write the socket took whole, so
     * the pass must go on by itself. Before it did, the client got the first
     * pieces and then waited forever. */
    uint64_t n = 4u << 20;
    int fd = dial(tiny_port);
    CHECK(fd >= 0);
    char req[64];
    snprintf(req, sizeof(req), "GET /pair/%llu HTTP/1.1\r\nHost: a\r\n\r\n", (unsigned long long)n);
    send_str(fd, req);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    char head[4096], v[64];
    CHECK_INT_EQ(rd_head(r, head, sizeof(head)), 0);
    CHECK(strncmp(head, "HTTP/1.1 200", 12) == 0);
    CHECK_INT_EQ(strtoull(find_hdr(head, "Content-Length", v, sizeof(v)) ? v : "0", NULL, 10), n);
    uint64_t got = 0, bad_at = UINT64_MAX;
    while (got < n) {
        if (r->start == r->end && rd_fill(r) != 0)
            break;
        for (; r->start < r->end && got < n; r->start++, got++) {
            if ((unsigned char)r->buf[r->start] != pattern(got) && bad_at == UINT64_MAX)
                bad_at = got;
        }
    }
    CHECK_INT_EQ(got, n);
    CHECK(bad_at == UINT64_MAX);
    free(r);
    close(fd);
}

static int ask_heap_trims(void)
{
    int asked = atomic_load(&n_asked);
    if (write(ctl[1], "h", 1) != 1)
        abort();
    for (int i = 0; i < 500 && atomic_load(&n_asked) == asked; i++)
        usleep(10 * 1000);
    return atomic_load(&heap_trims);
}

static int wait_heap_trim(int before)
{
    int now = before;
    for (int waited = 0; waited < 6000 && now == before; waited += 100) {
        usleep(100 * 1000);
        now = ask_heap_trims();
    }
    return now;
}

static void test_heap_trimmed_while_keepalive_idle(void)
{
    /* The heap goes back to the kernel 2 s after the last request ended,
     * even while keep-alive connections stay open without one (browsers
     * keep theirs for minutes, the worker its pooled tunnel streams). */
    struct response *resp = &resp_storage;
    int fd = dial(server_port);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    send_str(fd, "GET /local HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    int before = ask_heap_trims();
    CHECK_INT_EQ(wait_heap_trim(before), before + 1);
    /* The connection is still there and serves. */
    send_str(fd, "GET /local HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK_INT_EQ(read_response(r, resp, false), 0);
    CHECK_INT_EQ(resp->status, 200);
    free(r);
    close(fd);
}

static void test_heap_trimmed_while_websocket_open(void)
{
    /* An open WebSocket tunnel (a dev server's hot-reload socket stays open
     * for hours) does not keep the process busy; a request does. */
    struct response *resp = &resp_storage;
    int fd = dial(server_port);
    struct reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    ws_open(r, resp);
    int before = ask_heap_trims();
    CHECK_INT_EQ(wait_heap_trim(before), before + 1);
    /* A request in flight (a slow upstream) holds the trim off. */
    int slow = dial(server_port);
    send_str(slow, "GET /stall HTTP/1.1\r\nHost: a\r\n\r\n");
    usleep(100 * 1000);
    before = ask_heap_trims();
    usleep(2500 * 1000);
    CHECK_INT_EQ(ask_heap_trims(), before);
    close(slow);
    /* The tunnel still relays, and closes cleanly. */
    ws_echo_then_close(r, "\x81\x02hi");
    free(r);
    close(fd);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(120);
    enum lk_log_level level;
    lk_log_level_parse(getenv("LINKUP_LOG"), &level);
    lk_log_set_level(getenv("LINKUP_LOG") ? level : LK_LOG_WARN);
    int up_fd = listen_any(&up_port);
    int dead_fd = listen_any(&dead_port);
    close(dead_fd); /* now nothing listens on dead_port */
    pthread_t up_thread;
    pthread_create(&up_thread, NULL, up_main, (void *)(intptr_t)up_fd);
    pthread_detach(up_thread);

    struct tls_up tls_up = { listen_any(&tls_port), make_tls_upstream() };
    pthread_t tls_thread;
    pthread_create(&tls_thread, NULL, tls_up_main, &tls_up);

    base = event_base_new();
    struct lk_http_server_opts opts;
    lk_http_server_opts_init(&opts);
    opts.upstream_ca_file = cert_path;
    CHECK_INT_EQ(lk_http_server_new(base, &opts, handler, NULL, &srv), 0);
    char bound[64];
    CHECK_INT_EQ(lk_http_server_listen(srv, "127.0.0.1:0", NULL, bound, sizeof(bound)), 0);
    server_port = (int)strtol(strrchr(bound, ':') + 1, NULL, 10);
    CHECK(strncmp(bound, "127.0.0.1:", 10) == 0 && server_port > 0);
    struct lk_http_server_opts small = opts;
    small.upstream_ca_file = NULL;
    small.max_conns = 1;
    small.head_timeout_ms = 300;
    small.send_timeout_ms = 600; /* test_send_timeout */
    CHECK_INT_EQ(lk_http_server_new(base, &small, handler, NULL, &small_srv), 0);
    CHECK_INT_EQ(lk_http_server_listen(small_srv, "127.0.0.1:0", NULL, bound, sizeof(bound)), 0);
    small_port = (int)strtol(strrchr(bound, ':') + 1, NULL, 10);
    struct lk_http_server_opts tiny = opts;
    tiny.upstream_ca_file = NULL;
    tiny.stream_buffer_max = 8 * 1024;
    tiny.upstream_idle_timeout_ms = 1500; /* test_spliced_relay_failures */
    CHECK_INT_EQ(lk_http_server_new(base, &tiny, handler, NULL, &tiny_srv), 0);
    CHECK_INT_EQ(lk_http_server_listen(tiny_srv, "127.0.0.1:0", NULL, bound, sizeof(bound)), 0);
    tiny_port = (int)strtol(strrchr(bound, ':') + 1, NULL, 10);
    if (pipe(ctl) != 0)
        abort();
    struct event *ctl_ev = event_new(base, ctl[0], EV_READ | EV_PERSIST, on_ctl, NULL);
    event_add(ctl_ev, NULL);
    pthread_t loop;
    pthread_create(&loop, NULL, loop_main, NULL);

    RUN(test_basic_proxy);
    RUN(test_local_respond_and_head);
    RUN(test_cookies_redirect_cors);
    RUN(test_hop_by_hop);
    RUN(test_reframing);
    RUN(test_keepalive_pool_and_pipelining);
    RUN(test_pooled_connection_closed_by_upstream);
    RUN(test_upstream_errors);
    RUN(test_bad_requests);
    RUN(test_websocket);
    RUN(test_streaming_large);
    RUN(test_client_abort_frees_upstream);
    RUN(test_client_reset_as_upstream_answer_fails);
    RUN(test_spliced_relay);
    RUN(test_spliced_relay_failures);
    RUN(test_tls_upstream);
    RUN(test_max_conns_and_head_timeout);
    RUN(test_connector_pool);
    RUN(test_upstream_delivering_more_than_room);
    RUN(test_heap_trimmed_while_keepalive_idle);
    RUN(test_heap_trimmed_while_websocket_open);
    RUN(test_send_timeout);

    if (write(ctl[1], "x", 1) != 1)
        abort();
    pthread_join(loop, NULL);
    event_free(ctl_ev);
    event_base_free(base);
    close(ctl[0]);
    close(ctl[1]);
    shutdown(up_fd, SHUT_RDWR);
    close(up_fd);
    shutdown(tls_up.lfd, SHUT_RDWR);
    pthread_join(tls_thread, NULL);
    close(tls_up.lfd);
    SSL_CTX_free(tls_up.ctx);
    unlink(cert_path);
    return DONE();
}
