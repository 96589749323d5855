/*
 * dns_server.c - UDP + TCP DNS responder with upstream forwarding.
 *
 * Invariants: every forwarded query is one struct pending, linked in the
 * server's list, owning its upstream transport (a connected UDP socket and its
 * read event, or a TCP bufferevent when the client asked over TCP), its timer
 * and a copy of the client's query; finish_pending() is its only destructor. A pending
 * query remembers the TCP connection that asked; closing that connection
 * clears the pointer (the answer is then dropped), so no pointer dangles.
 * s->in and s->out are scratch buffers used synchronously within one
 * callback.
 */
#include "net/dns_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "net/accept_guard.h"
#include "net/addr.h"
#include "net/log.h"
#include "net/rng_os.h"

struct tcp_conn {
    struct lk_dns_server *s;
    struct tcp_conn *prev, *next;
    struct bufferevent *bev;
    unsigned inflight;
    bool eof;
};

struct pending {
    struct lk_dns_server *s;
    struct pending *prev, *next;
    int fd;                     /* UDP to the upstream, or -1 */
    struct event ev_read;       /* on fd; assigned only when fd != -1 */
    struct bufferevent *up_bev; /* TCP to the upstream, or NULL */
    struct event ev_timer;
    uint16_t upstream_id;
    uint8_t *query; /* the client's query, client id */
    size_t qlen;
    size_t udp_limit;
    bool via_tcp;
    struct tcp_conn *conn; /* NULL for UDP, or when the connection closed */
    struct sockaddr_storage client;
    socklen_t client_len;
};

struct lk_dns_server {
    struct event_base *base;
    int udp_fd;
    struct event ev_udp;
    struct evconnlistener *listener;
    struct lk_accept_guard guard; /* accept(2) failures (EMFILE ...): pause */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    struct sockaddr_storage upstream;
    socklen_t upstream_len;
    bool has_upstream;
    unsigned timeout_ms;
    lk_dns_zones_cb *zones_cb;
    void *zones_data;
    struct pending *pending;
    size_t n_pending;
    struct tcp_conn *conns;
    size_t n_conns;
    uint8_t in[LK_DNS_TCP_MAX];
    uint8_t out[LK_DNS_TCP_MAX + 2];
};

static void tcp_process(struct tcp_conn *c);
static void tcp_close(struct tcp_conn *c);

/* ---- addresses ---------------------------------------------------------- */

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static bool is_wildcard(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

/* a as the socket a datagram sent to it reaches: an IPv4-mapped IPv6
 * address is the IPv4 one, and the unspecified address (0.0.0.0, ::) is
 * the loopback one of its family, where the kernel delivers it. */
static struct sockaddr_storage reached(const struct sockaddr_storage *a)
{
    struct sockaddr_storage r = *a;
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)a;
        if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
            struct sockaddr_in v4 = { .sin_family = AF_INET, .sin_port = v6->sin6_port };
            memcpy(&v4.sin_addr, &v6->sin6_addr.s6_addr[12], 4);
            memset(&r, 0, sizeof(r));
            memcpy(&r, &v4, sizeof(v4));
        } else if (IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr)) {
            ((struct sockaddr_in6 *)&r)->sin6_addr = in6addr_loopback;
        }
    } else if (is_wildcard(a)) {
        ((struct sockaddr_in *)&r)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    return r;
}

/* True when a (port ignored) is an address of one of this host's
 * interfaces. */
static bool is_local_interface(const struct sockaddr_storage *a)
{
    struct ifaddrs *list;
    if (getifaddrs(&list) != 0)
        return false;
    bool found = false;
    for (const struct ifaddrs *i = list; i != NULL && !found; i = i->ifa_next) {
        const struct sockaddr *ia = i->ifa_addr;
        if (ia == NULL || ia->sa_family != a->ss_family)
            continue;
        if (ia->sa_family == AF_INET)
            found = ((const struct sockaddr_in *)(const void *)ia)->sin_addr.s_addr ==
                    ((const struct sockaddr_in *)a)->sin_addr.s_addr;
        else if (ia->sa_family == AF_INET6)
            found = memcmp(&((const struct sockaddr_in6 *)(const void *)ia)->sin6_addr,
                           &((const struct sockaddr_in6 *)a)->sin6_addr, 16) == 0;
    }
    freeifaddrs(list);
    return found;
}

/* True when sending to a would reach this server (DESIGN §2.9: never
 * forward to ourselves): a names our own address, however it is spelt
 * ("[::ffff:127.0.0.1]:P" or "0.0.0.0:P" for 127.0.0.1:P), or, while we
 * listen on every address, any address of this host on our port. Checked
 * once, when the upstream is chosen. */
static bool is_self(const struct lk_dns_server *s, const struct sockaddr_storage *a)
{
    struct sockaddr_storage to = reached(a), me = s->addr;
    if (lk_addr_port((const struct sockaddr *)&to) != lk_addr_port((const struct sockaddr *)&me))
        return false;
    if (is_wildcard(&me))
        return lk_addr_is_loopback((const struct sockaddr *)&to) || is_local_interface(&to);
    me = reached(&me);
    return same_addr(&to, &me);
}

/* Picks the first usable "nameserver" line of a resolv.conf file. */
static void upstream_from_resolv_conf(struct lk_dns_server *s, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[512];
    while (!s->has_upstream && fgets(line, sizeof(line), f) != NULL) {
        char host[256], spec[300];
        if (sscanf(line, " nameserver %255s", host) != 1)
            continue;
        char *pct = strchr(host, '%'); /* fe80::1%eth0: zone ids are not supported */
        if (pct != NULL)
            continue;
        snprintf(spec, sizeof(spec), strchr(host, ':') ? "[%s]:53" : "%s:53", host);
        struct sockaddr_storage ss;
        socklen_t len;
        if (lk_addr_parse(spec, &ss, &len) != 0 || is_self(s, &ss))
            continue;
        s->upstream = ss;
        s->upstream_len = len;
        s->has_upstream = true;
    }
    fclose(f);
}

static int setup_upstream(struct lk_dns_server *s, const struct lk_dns_server_opts *opts)
{
    if (opts->upstream == NULL) {
        upstream_from_resolv_conf(s, opts->resolv_conf ? opts->resolv_conf : "/etc/resolv.conf");
        return 0;
    }
    if (lk_addr_parse(opts->upstream, &s->upstream, &s->upstream_len) != 0)
        return LK_EINVAL;
    s->has_upstream = !is_self(s, &s->upstream);
    return 0;
}

/* ---- answering ---------------------------------------------------------- */

static void send_udp(struct lk_dns_server *s, const uint8_t *p, size_t n,
                     const struct sockaddr_storage *to, socklen_t to_len)
{
    ssize_t rc;
    do {
        rc = sendto(s->udp_fd, p, n, 0, (const struct sockaddr *)to, to_len);
    } while (rc == -1 && errno == EINTR);
    /* A full socket buffer drops the answer; the client retries (RFC 1035). */
}

static void send_tcp(struct tcp_conn *c, const uint8_t *p, size_t n)
{
    uint8_t len[2] = { (uint8_t)(n >> 8), (uint8_t)n };
    bufferevent_write(c->bev, len, 2);
    bufferevent_write(c->bev, p, n);
}

static void deliver(struct pending *p, const uint8_t *msg, size_t n)
{
    if (p->via_tcp) {
        if (p->conn != NULL)
            send_tcp(p->conn, msg, n);
        return;
    }
    send_udp(p->s, msg, n, &p->client, p->client_len);
}

static void finish_pending(struct pending *p)
{
    struct lk_dns_server *s = p->s;
    struct tcp_conn *c = p->conn;

    if (p->up_bev != NULL) {
        bufferevent_free(p->up_bev);
    } else {
        event_del(&p->ev_read);
        close(p->fd);
    }
    event_del(&p->ev_timer);
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        s->pending = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    s->n_pending--;
    free(p->query);
    free(p);
    if (c != NULL) {
        c->inflight--;
        tcp_process(c);
    }
}

static void servfail(struct lk_dns_server *s, struct pending *p, const uint8_t *q, size_t qlen,
                     size_t cap)
{
    int n = lk_dns_build_error(q, qlen, LK_DNS_SERVFAIL, s->out, cap);
    if (n > 0)
        deliver(p, s->out, (size_t)n);
}

static void on_upstream_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    (void)fd;
    (void)what;
    LK_LOG(DEBUG, "dns: upstream timed out; answering SERVFAIL");
    servfail(p->s, p, p->query, p->qlen, p->via_tcp ? LK_DNS_TCP_MAX : p->udp_limit);
    finish_pending(p);
}

/* True when the upstream answer is for our question (RFC 5452 §9.1). */
static bool answer_matches(const struct pending *p, const uint8_t *r, size_t n)
{
    struct lk_dns_msg *qm = lk_xmalloc(sizeof(*qm));
    struct lk_dns_msg *rm = lk_xmalloc(sizeof(*rm));
    bool ok = lk_dns_parse(p->query, p->qlen, qm) == 0 && lk_dns_parse(r, n, rm) == 0 &&
              rm->id == p->upstream_id && (rm->flags & LK_DNS_FLAG_QR) && rm->n_question == 1 &&
              rm->qtype == qm->qtype && rm->qclass == qm->qclass &&
              strcmp(rm->qname, qm->qname) == 0;
    free(qm);
    free(rm);
    return ok;
}

static void on_upstream_readable(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    struct lk_dns_server *s = p->s;
    (void)what;

    for (;;) {
        ssize_t n = recv(fd, s->in, sizeof(s->in), 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n == -1) { /* e.g. ECONNREFUSED from an ICMP port unreachable */
            servfail(s, p, p->query, p->qlen, p->via_tcp ? LK_DNS_TCP_MAX : p->udp_limit);
            finish_pending(p);
            return;
        }
        if (!answer_matches(p, s->in, (size_t)n))
            continue;               /* stray or spoofed datagram: keep waiting */
        memcpy(s->in, p->query, 2); /* the client's id */
        size_t len = (size_t)n;
        if (!p->via_tcp && len > p->udp_limit)
            len = lk_dns_truncate(s->in, len); /* header, question, OPT; TC set */
        deliver(p, s->in, len);
        finish_pending(p);
        return;
    }
}

/* Reads the upstream's framed answers (RFC 7766 §8); the first one for our
 * question is relayed (the stream goes to a TCP client, no truncation). */
static void on_upstream_tcp_read(struct bufferevent *bev, void *arg)
{
    struct pending *p = arg;
    struct lk_dns_server *s = p->s;
    struct evbuffer *in = bufferevent_get_input(bev);

    for (;;) {
        uint8_t hdr[2];
        if (evbuffer_copyout(in, hdr, 2) != 2)
            return;
        size_t n = ((size_t)hdr[0] << 8) | hdr[1];
        if (evbuffer_get_length(in) < 2 + n)
            return;
        evbuffer_drain(in, 2);
        evbuffer_remove(in, s->in, n);
        if (!answer_matches(p, s->in, n))
            continue;               /* not an answer to our question: keep waiting, as on UDP */
        memcpy(s->in, p->query, 2); /* the client's id */
        deliver(p, s->in, n);
        finish_pending(p);
        return;
    }
}

static void on_upstream_tcp_event(struct bufferevent *bev, short what, void *arg)
{
    struct pending *p = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    /* Refused, reset, or closed before an answer: as a UDP failure. */
    LK_LOG(DEBUG, "dns: upstream TCP connection failed; answering SERVFAIL");
    servfail(p->s, p, p->query, p->qlen, LK_DNS_TCP_MAX);
    finish_pending(p);
}

/* Sends the query in s->out over UDP on a fresh connected socket. */
static int send_upstream_udp(struct lk_dns_server *s, struct pending *p)
{
    p->fd = socket(s->upstream.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd == -1)
        return LK_EIO;
    if (connect(p->fd, (const struct sockaddr *)&s->upstream, s->upstream_len) == -1)
        return LK_EIO;
    ssize_t rc;
    do {
        rc = send(p->fd, s->out, p->qlen, 0);
    } while (rc == -1 && errno == EINTR);
    if (rc == -1)
        return LK_EIO;
    event_assign(&p->ev_read, s->base, p->fd, EV_READ | EV_PERSIST, on_upstream_readable, p);
    event_add(&p->ev_read, NULL);
    return 0;
}

/* Sends the query in s->out over a new TCP connection, length-prefixed (RFC
 * 1035 §4.2.2, RFC 7766 §5: a query that came over TCP is forwarded over TCP,
 * so answers too big for UDP come through). */
static int send_upstream_tcp(struct lk_dns_server *s, struct pending *p)
{
    p->up_bev = bufferevent_socket_new(s->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (p->up_bev == NULL)
        return LK_EIO;
    /* The callbacks are set once connect has returned: libevent runs the
     * event callback from inside a connect that fails at once. A refusal
     * noticed later arrives as an event on the loop. */
    if (bufferevent_socket_connect(p->up_bev, (struct sockaddr *)&s->upstream,
                                   (int)s->upstream_len) != 0)
        return LK_EIO;
    uint8_t len[2] = { (uint8_t)(p->qlen >> 8), (uint8_t)p->qlen };
    bufferevent_write(p->up_bev, len, 2);
    bufferevent_write(p->up_bev, s->out, p->qlen);
    bufferevent_setcb(p->up_bev, on_upstream_tcp_read, NULL, on_upstream_tcp_event, p);
    bufferevent_enable(p->up_bev, EV_READ);
    return 0;
}

static int start_forward(struct lk_dns_server *s, struct pending *p)
{
    uint8_t id[2];
    /* The process's ChaCha20 generator: no OpenSSL DRBG started for DNS. */
    lk_rng_os_fill(NULL, id, sizeof(id));
    p->upstream_id = (uint16_t)((id[0] << 8) | id[1]);
    memcpy(s->out, p->query, p->qlen);
    memcpy(s->out, id, 2);
    int rc = p->via_tcp ? send_upstream_tcp(s, p) : send_upstream_udp(s, p);
    if (rc != 0)
        return rc;
    struct timeval tv = { (time_t)(s->timeout_ms / 1000),
                          (suseconds_t)(s->timeout_ms % 1000) * 1000 };
    evtimer_assign(&p->ev_timer, s->base, on_upstream_timeout, p);
    event_add(&p->ev_timer, &tv);
    return 0;
}

static void forward(struct lk_dns_server *s, const uint8_t *q, size_t qlen, size_t cap,
                    const struct sockaddr_storage *from, socklen_t from_len, struct tcp_conn *c)
{
    struct pending *p = lk_xcalloc(1, sizeof(*p));
    p->s = s;
    p->fd = -1;
    p->via_tcp = c != NULL;
    p->conn = c;
    p->udp_limit = cap;
    if (from != NULL) {
        p->client = *from;
        p->client_len = from_len;
    }
    p->query = lk_xmemdup(q, qlen);
    p->qlen = qlen;
    if (!s->has_upstream || s->n_pending >= LK_DNS_MAX_PENDING || start_forward(s, p) != 0) {
        servfail(s, p, q, qlen, cap);
        if (p->up_bev != NULL)
            bufferevent_free(p->up_bev);
        if (p->fd != -1)
            close(p->fd);
        free(p->query);
        free(p);
        return;
    }
    p->next = s->pending;
    if (s->pending != NULL)
        s->pending->prev = p;
    s->pending = p;
    s->n_pending++;
    if (c != NULL)
        c->inflight++;
}

static void handle_query(struct lk_dns_server *s, size_t qlen, size_t cap,
                         const struct sockaddr_storage *from, socklen_t from_len,
                         struct tcp_conn *c)
{
    struct lk_dns_zones zones = { 0 };
    s->zones_cb(&zones, s->zones_data);
    int n = lk_dns_answer(s->in, qlen, &zones, s->out, cap);
    if (n == LK_DNS_FORWARD) {
        forward(s, s->in, qlen, cap, from, from_len, c);
        return;
    }
    if (n < 0)
        return; /* dropped: too short to answer, or not a query */
    if (c != NULL)
        send_tcp(c, s->out, (size_t)n);
    else
        send_udp(s, s->out, (size_t)n, from, from_len);
}

/* ---- UDP ---------------------------------------------------------------- */

static void on_udp_readable(evutil_socket_t fd, short what, void *arg)
{
    struct lk_dns_server *s = arg;
    (void)what;
    /* A bounded batch per wake-up keeps TCP and upstream answers flowing. */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage from;
        socklen_t from_len = sizeof(from);
        ssize_t n = recvfrom(fd, s->in, sizeof(s->in), 0, (struct sockaddr *)&from, &from_len);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return;
        handle_query(s, (size_t)n, lk_dns_udp_limit(s->in, (size_t)n), &from, from_len, NULL);
    }
}

/* ---- TCP ---------------------------------------------------------------- */

static void tcp_close(struct tcp_conn *c)
{
    struct lk_dns_server *s = c->s;
    for (struct pending *p = s->pending; p != NULL; p = p->next) {
        if (p->conn == c)
            p->conn = NULL;
    }
    bufferevent_free(c->bev);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->n_conns--;
    free(c);
}

/* Answers every complete message buffered on c, within the limits, then
 * enables reading only if more may be taken. May close c. */
static void tcp_process(struct tcp_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);

    while (c->inflight < LK_DNS_TCP_MAX_INFLIGHT &&
           evbuffer_get_length(out) < LK_DNS_TCP_MAX_OUTPUT) {
        uint8_t hdr[2];
        if (evbuffer_copyout(in, hdr, 2) != 2)
            break;
        size_t len = ((size_t)hdr[0] << 8) | hdr[1];
        if (len < LK_DNS_HEADER_LEN) {
            tcp_close(c); /* cannot even carry an id: the stream is garbage */
            return;
        }
        if (evbuffer_get_length(in) < 2 + len)
            break;
        evbuffer_drain(in, 2);
        evbuffer_remove(in, c->s->in, len);
        handle_query(c->s, len, LK_DNS_TCP_MAX, NULL, 0, c);
    }
    bool room =
        c->inflight < LK_DNS_TCP_MAX_INFLIGHT && evbuffer_get_length(out) < LK_DNS_TCP_MAX_OUTPUT;
    if (c->eof && c->inflight == 0 && evbuffer_get_length(out) == 0) {
        tcp_close(c);
        return;
    }
    if (room && !c->eof)
        bufferevent_enable(c->bev, EV_READ);
    else
        bufferevent_disable(c->bev, EV_READ);
}

static void on_tcp_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    tcp_process(arg);
}

static void on_tcp_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    tcp_process(arg);
}

static void on_tcp_event(struct bufferevent *bev, short what, void *arg)
{
    struct tcp_conn *c = arg;
    (void)bev;
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        /* The client may half-close after its last query: answer it first. */
        c->eof = true;
        tcp_process(c);
        return;
    }
    tcp_close(c);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct lk_dns_server *s = arg;
    (void)l;
    lk_accept_guard_failed(&s->guard, EVUTIL_SOCKET_ERROR());
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct lk_dns_server *s = arg;
    (void)l;
    (void)sa;
    (void)salen;
    if (s->n_conns >= LK_DNS_MAX_TCP_CONNS) {
        close(fd);
        return;
    }
    struct tcp_conn *c = lk_xcalloc(1, sizeof(*c));
    c->s = s;
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        close(fd);
        free(c);
        return;
    }
    struct timeval idle = { LK_DNS_TCP_IDLE_MS / 1000, (LK_DNS_TCP_IDLE_MS % 1000) * 1000 };
    bufferevent_setcb(c->bev, on_tcp_read, on_tcp_write, on_tcp_event, c);
    bufferevent_set_timeouts(c->bev, &idle, &idle);
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- lifecycle ---------------------------------------------------------- */

static int bind_socket(int type, const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(ss->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    int one = 1;
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, len) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Binds UDP then TCP on the same port; with port 0 retries a few ephemeral
 * ports until TCP gets the one UDP got. Returns the TCP fd or -1. */
static int bind_both(struct lk_dns_server *s, const struct sockaddr_storage *want, socklen_t len)
{
    bool ephemeral = lk_addr_port((const struct sockaddr *)want) == 0;
    for (int attempt = 0; attempt < 16; attempt++) {
        s->udp_fd = bind_socket(SOCK_DGRAM, want, len);
        if (s->udp_fd == -1)
            return -1;
        s->addr_len = sizeof(s->addr);
        getsockname(s->udp_fd, (struct sockaddr *)&s->addr, &s->addr_len);
        int tcp = bind_socket(SOCK_STREAM, &s->addr, s->addr_len);
        if (tcp != -1)
            return tcp;
        int e = errno;
        close(s->udp_fd);
        s->udp_fd = -1;
        errno = e;
        if (!ephemeral || e != EADDRINUSE)
            return -1;
    }
    return -1;
}

int lk_dns_server_new(struct event_base *base, const struct lk_dns_server_opts *opts,
                      struct lk_dns_server **out)
{
    struct sockaddr_storage want;
    socklen_t want_len;
    if (opts->listen == NULL || opts->zones_cb == NULL ||
        lk_addr_parse(opts->listen, &want, &want_len) != 0)
        return LK_EINVAL;

    struct lk_dns_server *s = lk_xcalloc(1, sizeof(*s));
    s->base = base;
    s->udp_fd = -1;
    s->zones_cb = opts->zones_cb;
    s->zones_data = opts->zones_data;
    s->timeout_ms = opts->timeout_ms ? opts->timeout_ms : LK_DNS_FORWARD_TIMEOUT_MS;
    int tcp = bind_both(s, &want, want_len);
    if (tcp == -1) {
        int e = errno;
        free(s);
        errno = e;
        return LK_EIO;
    }
    s->listener = evconnlistener_new(base, on_accept, s, LEV_OPT_CLOSE_ON_FREE, 64, tcp);
    char name[64];
    lk_addr_format((const struct sockaddr *)&s->addr, name, sizeof(name));
    int rc =
        s->listener == NULL ? LK_EIO : lk_accept_guard_init(&s->guard, base, s->listener, name);
    if (rc == 0 && setup_upstream(s, opts) != 0)
        rc = LK_EINVAL;
    if (rc != 0) {
        if (s->listener == NULL)
            close(tcp);
        else
            evconnlistener_free(s->listener);
        lk_accept_guard_release(&s->guard);
        close(s->udp_fd);
        free(s);
        return rc;
    }
    evconnlistener_set_error_cb(s->listener, on_accept_error);
    event_assign(&s->ev_udp, base, s->udp_fd, EV_READ | EV_PERSIST, on_udp_readable, s);
    event_add(&s->ev_udp, NULL);
    *out = s;
    return 0;
}

void lk_dns_server_free(struct lk_dns_server *s)
{
    if (s == NULL)
        return;
    while (s->conns != NULL)
        tcp_close(s->conns);
    while (s->pending != NULL)
        finish_pending(s->pending);
    event_del(&s->ev_udp);
    close(s->udp_fd);
    lk_accept_guard_release(&s->guard);
    evconnlistener_free(s->listener);
    free(s);
}

char *lk_dns_server_addr(const struct lk_dns_server *s, char *out, size_t out_len)
{
    return lk_addr_format((const struct sockaddr *)&s->addr, out, out_len);
}

char *lk_dns_server_upstream(const struct lk_dns_server *s, char *out, size_t out_len)
{
    if (!s->has_upstream) {
        if (out_len > 0)
            out[0] = '\0';
        return out;
    }
    return lk_addr_format((const struct sockaddr *)&s->upstream, out, out_len);
}
