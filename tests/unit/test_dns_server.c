/*
 * test_dns_server.c - in-process tests of lib/net/dns_server over loopback:
 * UDP and TCP answers, forwarding with id rewriting to an upstream socket the
 * test drives by hand, SERVFAIL on timeout, and freeing the server with
 * queries and connections still open (ASan checks nothing leaks).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/err.h"
#include "harness.h"
#include "net/dns_server.h"
#include "proto/dns.h"

static const char *const names[] = { "tiny-cow.example.com" };
static const char *const domains[] = { "example.com" };

static void zones_cb(struct lk_dns_zones *z, void *data)
{
    int *calls = data;
    (*calls)++;
    z->names = names;
    z->n_names = 1;
    z->domains = domains;
    z->n_domains = 1;
}

static struct sockaddr_in parse_addr(const char *s)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    const char *colon = strrchr(s, ':');
    char host[64];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
    inet_pton(AF_INET, host, &sin.sin_addr);
    sin.sin_port = htons((uint16_t)strtoul(colon + 1, NULL, 10));
    return sin;
}

/* Runs the loop until fd has a datagram/bytes (or ~3 s pass); returns the
 * recv() result. */
static ssize_t pump_recv(struct event_base *base, int fd, uint8_t *buf, size_t cap)
{
    for (int i = 0; i < 3000; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            return n;
        usleep(1000);
    }
    return -1;
}

static int udp_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in any = { .sin_family = AF_INET };
    inet_pton(AF_INET, "127.0.0.1", &any.sin_addr);
    bind(fd, (struct sockaddr *)&any, sizeof(any));
    return fd;
}

static char *bound_addr(int fd, char *out, size_t n)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    snprintf(out, n, "127.0.0.1:%u", ntohs(sin.sin_port));
    return out;
}

struct fixture {
    struct event_base *base;
    struct lk_dns_server *server;
    struct sockaddr_in addr;
    int calls;
    int upstream_fd;
};

static int setup(struct fixture *f, bool with_upstream, unsigned timeout_ms)
{
    char up[64];
    memset(f, 0, sizeof(*f));
    f->base = event_base_new();
    f->upstream_fd = with_upstream ? udp_socket() : -1;
    struct lk_dns_server_opts opts = { .listen = "127.0.0.1:0",
                                       .upstream = with_upstream
                                                       ? bound_addr(f->upstream_fd, up, sizeof(up))
                                                       : "127.0.0.1:0",
                                       .timeout_ms = timeout_ms,
                                       .zones_cb = zones_cb,
                                       .zones_data = &f->calls };
    int rc = lk_dns_server_new(f->base, &opts, &f->server);
    if (rc == 0) {
        char a[64];
        f->addr = parse_addr(lk_dns_server_addr(f->server, a, sizeof(a)));
    }
    return rc;
}

static void teardown(struct fixture *f)
{
    lk_dns_server_free(f->server);
    event_base_free(f->base);
    if (f->upstream_fd != -1)
        close(f->upstream_fd);
}

static void test_udp_and_tcp_answers(void)
{
    struct fixture f;
    CHECK_INT_EQ(setup(&f, false, 0), 0);
    char a[64], up[64];
    CHECK(strncmp(lk_dns_server_addr(f.server, a, sizeof(a)), "127.0.0.1:", 10) == 0);
    CHECK(ntohs(f.addr.sin_port) != 0);
    /* An upstream of 127.0.0.1:0 is not us: it is kept (and cannot answer). */
    CHECK_STR_EQ(lk_dns_server_upstream(f.server, up, sizeof(up)), "127.0.0.1:0");

    uint8_t q[512], r[1024];
    int qlen = lk_dns_build_query(0x5151, "api.tiny-cow.example.com", LK_DNS_T_A, 0, q, sizeof(q));
    int c = udp_socket();
    sendto(c, q, (size_t)qlen, 0, (struct sockaddr *)&f.addr, sizeof(f.addr));
    ssize_t n = pump_recv(f.base, c, r, sizeof(r));
    struct lk_dns_msg m;
    CHECK(n > 0 && lk_dns_parse(r, (size_t)n, &m) == 0);
    CHECK_INT_EQ(m.id, 0x5151);
    CHECK_INT_EQ(m.n_answer, 1);
    CHECK_INT_EQ(f.calls, 1);
    close(c);

    /* TCP on the same port, two pipelined queries in one write. */
    int t = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_INT_EQ(connect(t, (struct sockaddr *)&f.addr, sizeof(f.addr)), 0);
    uint8_t two[1024];
    size_t len = 0;
    for (int i = 0; i < 2; i++) {
        qlen =
            lk_dns_build_query((uint16_t)(i + 1), i ? "nope.example.com" : "tiny-cow.example.com",
                               LK_DNS_T_AAAA, 0, q, sizeof(q));
        two[len++] = 0;
        two[len++] = (uint8_t)qlen;
        memcpy(two + len, q, (size_t)qlen);
        len += (size_t)qlen;
    }
    CHECK_INT_EQ(send(t, two, len, 0), (ssize_t)len);
    size_t got = 0;
    while (got < 4) {
        n = pump_recv(f.base, t, r + got, sizeof(r) - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        size_t first = 2 + (size_t)((r[0] << 8) | r[1]);
        if (got > first + 2 && got >= first + 2 + (size_t)((r[first] << 8) | r[first + 1]))
            break;
    }
    size_t first = 2 + (size_t)((r[0] << 8) | r[1]);
    CHECK(got > first);
    CHECK_INT_EQ(lk_dns_parse(r + 2, first - 2, &m), 0);
    CHECK_INT_EQ(m.id, 1);
    CHECK_INT_EQ(m.n_answer, 1);
    CHECK_INT_EQ(lk_dns_parse(r + first + 2, got - first - 2, &m), 0);
    CHECK_INT_EQ(m.id, 2);
    CHECK_INT_EQ(LK_DNS_RCODE(m.flags), LK_DNS_NXDOMAIN);
    /* Freed with the TCP connection still open. */
    teardown(&f);
    close(t);
}

static void test_forwarding_rewrites_the_id(void)
{
    struct fixture f;
    CHECK_INT_EQ(setup(&f, true, 0), 0);
    uint8_t q[512], up[1024], r[1024];
    int qlen = lk_dns_build_query(0x0102, "www.example.org", LK_DNS_T_A, 0, q, sizeof(q));
    int c = udp_socket();
    sendto(c, q, (size_t)qlen, 0, (struct sockaddr *)&f.addr, sizeof(f.addr));

    struct sockaddr_in from;
    socklen_t from_len = sizeof(from);
    ssize_t n = -1;
    for (int i = 0; i < 2000 && n < 0; i++) {
        event_base_loop(f.base, EVLOOP_NONBLOCK);
        n = recvfrom(f.upstream_fd, up, sizeof(up), MSG_DONTWAIT, (struct sockaddr *)&from,
                     &from_len);
        if (n < 0)
            usleep(1000);
    }
    CHECK_INT_EQ(n, qlen);
    if (n != qlen)
        goto out;
    CHECK_MEM_EQ(up + 2, (size_t)n - 2, q + 2, (size_t)qlen - 2);
    /* A stray answer with the wrong id is ignored; the right one is relayed. */
    uint16_t upstream_id = (uint16_t)((up[0] << 8) | up[1]);
    up[2] |= 0x80;
    up[3] = 0x80 | LK_DNS_NXDOMAIN;
    up[0] = (uint8_t)((upstream_id + 1) >> 8);
    up[1] = (uint8_t)(upstream_id + 1);
    sendto(f.upstream_fd, up, (size_t)n, 0, (struct sockaddr *)&from, from_len);
    up[0] = (uint8_t)(upstream_id >> 8);
    up[1] = (uint8_t)upstream_id;
    sendto(f.upstream_fd, up, (size_t)n, 0, (struct sockaddr *)&from, from_len);
    ssize_t rn = pump_recv(f.base, c, r, sizeof(r));
    CHECK_INT_EQ(rn, n);
    CHECK_INT_EQ((r[0] << 8) | r[1], 0x0102);
    CHECK_INT_EQ(r[3] & 0x0F, LK_DNS_NXDOMAIN);
out:
    close(c);
    teardown(&f);
}

static void test_timeout_gives_servfail(void)
{
    struct fixture f;
    CHECK_INT_EQ(setup(&f, true, 100), 0);
    uint8_t q[512], r[512];
    int qlen = lk_dns_build_query(77, "example.org", LK_DNS_T_AAAA, 1232, q, sizeof(q));
    int c = udp_socket();
    sendto(c, q, (size_t)qlen, 0, (struct sockaddr *)&f.addr, sizeof(f.addr));
    ssize_t n = pump_recv(f.base, c, r, sizeof(r));
    struct lk_dns_msg m;
    CHECK(n > 0 && lk_dns_parse(r, (size_t)n, &m) == 0);
    CHECK_INT_EQ(m.id, 77);
    CHECK_INT_EQ(LK_DNS_RCODE(m.flags), LK_DNS_SERVFAIL);

    /* Another forward left in flight when the server is freed. */
    sendto(c, q, (size_t)qlen, 0, (struct sockaddr *)&f.addr, sizeof(f.addr));
    for (int i = 0; i < 20; i++)
        event_base_loop(f.base, EVLOOP_NONBLOCK);
    close(c);
    teardown(&f);
}

/* Reads one length-prefixed message from the TCP socket fd, running the loop
 * meanwhile; returns its length (without the prefix) or -1. */
static ssize_t pump_recv_framed(struct event_base *base, int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    while (got < 2 || got < 2 + (size_t)((buf[0] << 8) | buf[1])) {
        ssize_t n = pump_recv(base, fd, buf + got, cap - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    size_t len = (size_t)((buf[0] << 8) | buf[1]);
    memmove(buf, buf + 2, len);
    return (ssize_t)len;
}

static int tcp_connect(const struct sockaddr_in *to)
{
    int t = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(t, (const struct sockaddr *)to, sizeof(*to)) != 0) {
        close(t);
        return -1;
    }
    return t;
}

static void send_framed(int fd, const uint8_t *msg, size_t len)
{
    uint8_t hdr[2] = { (uint8_t)(len >> 8), (uint8_t)len };
    CHECK_INT_EQ(send(fd, hdr, 2, 0), 2);
    CHECK_INT_EQ(send(fd, msg, len, 0), (ssize_t)len);
}

/* RFC 7766 §5: a query that came over TCP is forwarded over TCP. A refused
 * connection gives SERVFAIL at once (the 30 s timeout never runs out here); an
 * answer of any size is relayed whole with the client's id. */
static void test_tcp_queries_are_forwarded_over_tcp(void)
{
    struct fixture f;
    CHECK_INT_EQ(setup(&f, true, 30000), 0);
    struct sockaddr_in up_addr;
    socklen_t up_len = sizeof(up_addr);
    getsockname(f.upstream_fd, (struct sockaddr *)&up_addr, &up_len);
    int lst = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (bind(lst, (struct sockaddr *)&up_addr, up_len) != 0) {
        close(lst); /* the upstream's port is taken for TCP: nothing to test */
        teardown(&f);
        return;
    }
    uint8_t q[512], r[8192];
    int qlen = lk_dns_build_query(0x0A0B, "big.example.org", LK_DNS_T_A, 0, q, sizeof(q));
    struct lk_dns_msg m;

    /* Bound but not listening: the connection is refused. */
    int t = tcp_connect(&f.addr);
    CHECK(t != -1);
    send_framed(t, q, (size_t)qlen);
    ssize_t n = pump_recv_framed(f.base, t, r, sizeof(r));
    CHECK(n > 0 && lk_dns_parse(r, (size_t)n, &m) == 0);
    CHECK_INT_EQ(m.id, 0x0A0B);
    CHECK_INT_EQ(LK_DNS_RCODE(m.flags), LK_DNS_SERVFAIL);

    /* Listening: the query arrives framed with its own id; a 100-record
     * answer (1.6 KB, more than UDP carries) comes back whole. */
    CHECK_INT_EQ(listen(lst, 4), 0);
    send_framed(t, q, (size_t)qlen);
    int a = -1;
    for (int i = 0; i < 3000 && a == -1; i++) {
        event_base_loop(f.base, EVLOOP_NONBLOCK);
        a = accept4(lst, NULL, NULL, SOCK_NONBLOCK);
        if (a == -1)
            usleep(1000);
    }
    CHECK(a != -1);
    if (a == -1)
        goto out;
    uint8_t up[8192];
    n = pump_recv_framed(f.base, a, up, sizeof(up));
    CHECK_INT_EQ(n, qlen);
    if (n != qlen)
        goto out;
    CHECK_MEM_EQ(up + 2, (size_t)qlen - 2, q + 2, (size_t)qlen - 2);
    uint8_t ans[4096];
    size_t len = (size_t)qlen;
    memcpy(ans, up, len);
    ans[2] = 0x81;
    ans[3] = 0x80;
    ans[7] = 100; /* ANCOUNT */
    for (int i = 0; i < 100; i++) {
        static const uint8_t rr[] = { 0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 33, 0, 4, 192, 0, 2, 7 };
        memcpy(ans + len, rr, sizeof(rr));
        len += sizeof(rr);
    }
    send_framed(a, ans, len);
    n = pump_recv_framed(f.base, t, r, sizeof(r));
    CHECK_INT_EQ(n, (ssize_t)len);
    CHECK(n > 0 && lk_dns_parse(r, (size_t)n, &m) == 0);
    CHECK_INT_EQ(m.id, 0x0A0B);
    CHECK_INT_EQ(m.n_answer, 100);
    CHECK_INT_EQ(LK_DNS_RCODE(m.flags), LK_DNS_NOERROR);

    /* One more left in flight when the server is freed. */
    send_framed(t, q, (size_t)qlen);
    for (int i = 0; i < 20; i++)
        event_base_loop(f.base, EVLOOP_NONBLOCK);
out:
    if (a != -1)
        close(a);
    close(t);
    close(lst);
    teardown(&f);
}

static void test_bad_addresses(void)
{
    struct event_base *base = event_base_new();
    struct lk_dns_server *s = NULL;
    int calls = 0;
    struct lk_dns_server_opts opts = { .listen = "nonsense",
                                       .zones_cb = zones_cb,
                                       .zones_data = &calls };
    CHECK_INT_EQ(lk_dns_server_new(base, &opts, &s), LK_EINVAL);
    opts.listen = "127.0.0.1:0";
    opts.upstream = "not an address";
    CHECK_INT_EQ(lk_dns_server_new(base, &opts, &s), LK_EINVAL);
    opts.upstream = NULL;
    opts.resolv_conf = "/nonexistent/resolv.conf";
    CHECK_INT_EQ(lk_dns_server_new(base, &opts, &s), 0);
    char up[64];
    CHECK_STR_EQ(lk_dns_server_upstream(s, up, sizeof(up)), "");
    lk_dns_server_free(s);
    lk_dns_server_free(NULL);
    event_base_free(base);
}

int main(void)
{
    RUN(test_udp_and_tcp_answers);
    RUN(test_forwarding_rewrites_the_id);
    RUN(test_timeout_gives_servfail);
    RUN(test_tcp_queries_are_forwarded_over_tcp);
    RUN(test_bad_addresses);
    return DONE();
}
