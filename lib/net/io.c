/*
 * io.c - socket shortcuts around libevent's bufferevents on the proxy's hot
 * path (docs/performance.md, findings 1 and 4).
 *
 * libevent 2.1 reads at most 4 KiB per read event (EVBUFFER_MAX_READ inside
 * evbuffer_read(); evbuffer_set_max_read() only exists from 2.2) and never
 * writes inline: queued output arms EV_WRITE and waits for the next loop
 * turn. lk_net_read_more() tops a plain socket's input buffer up in 64 KiB
 * reads, and lk_net_send() writes to the socket at once when nothing is
 * queued before it, queueing only what the kernel did not take. Both only
 * touch plain socket bufferevents (lk_net_bev_is_plain()); TLS bufferevents
 * keep going through OpenSSL. Errors and EOF are left to libevent, which
 * sees them on its next (level-triggered) read or write of the same fd.
 *
 * A connection may also be one end of a bufferevent pair (a built-in tunnel
 * stream, tunnel.c): no fd, so the shortcuts above fall back to the
 * evbuffers, and a half-close or close is told to the other end with
 * lk_net_shutdown_write() / lk_net_bev_free().
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "net/http_internal.h"

#define SEND_IOV 32
/* Just under 64 KiB, so that libevent's chain (data + header, rounded up to
 * a power of two) is a 64 KiB allocation, not 128 KiB (which would sit at
 * malloc's mmap threshold). */
#define READ_CHUNK (64 * 1024 - 256)
/* libevent's default is 16 KiB per writev. */
#define MAX_SINGLE_WRITE (256 * 1024)

/* Moves all of a pair end's output to its partner, then tells the partner
 * EOF. A pair flush moves only up to the partner's read high watermark when
 * the partner is under it, and everything when it is at or over it: the
 * first flush fills it, the second (BEV_FINISHED) moves the rest. */
static void pair_finish(struct bufferevent *bev)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        bufferevent_flush(bev, EV_WRITE, BEV_FLUSH);
    bufferevent_flush(bev, EV_WRITE, BEV_FINISHED);
}

void lk_net_shutdown_write(struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd >= 0)
        (void)shutdown(fd, SHUT_WR);
    else if (bufferevent_pair_get_partner(bev) != NULL)
        pair_finish(bev);
}

void lk_net_pair_error(struct bufferevent *bev)
{
    struct bufferevent *partner = bufferevent_pair_get_partner(bev);
    if (partner != NULL)
        bufferevent_trigger_event(partner, BEV_EVENT_ERROR | BEV_EVENT_READING, 0);
}

void lk_net_drop_output(struct bufferevent *bev)
{
    /* A bufferevent's output is frozen at its start for everyone but the
     * bufferevent itself: a plain evbuffer_drain() fails (-1). */
    struct evbuffer *out = bufferevent_get_output(bev);
    evbuffer_unfreeze(out, 1);
    evbuffer_drain(out, evbuffer_get_length(out));
    evbuffer_freeze(out, 1);
}

void lk_net_bev_free(struct bufferevent *bev)
{
    if (bev == NULL)
        return;
    /* A pair end is unlinked silently on free: pass the queued bytes and an
     * EOF to the partner first, as closing a socket would. */
    if (bufferevent_pair_get_partner(bev) != NULL)
        pair_finish(bev);
    bufferevent_free(bev);
}

void lk_net_loop_settle(struct event_base *base)
{
    for (int i = 0; i < 16 && event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) > 0; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

size_t lk_net_whole_chains(struct evbuffer *b, size_t len)
{
    struct evbuffer_iovec v[16];
    int k = evbuffer_peek(b, (ev_ssize_t)len, NULL, v, 16);
    size_t whole = 0;
    for (int i = 0; i < k && i < 16 && whole + v[i].iov_len <= len; i++)
        whole += v[i].iov_len;
    return whole > 0 && whole >= len / 2 ? whole : len;
}

bool lk_net_bev_orphaned(struct bufferevent *bev)
{
    /* Engine connections are sockets (an fd) or pair ends: no fd and no
     * partner is a pair end that lost its other half. */
    return bufferevent_getfd(bev) < 0 && bufferevent_pair_get_partner(bev) == NULL;
}

void lk_net_tune_socket(struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    int one = 1;
    /* Fails harmlessly on AF_UNIX (tunnel streams). */
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bufferevent_set_max_single_write(bev, MAX_SINGLE_WRITE);
}

bool lk_net_bev_is_plain(struct bufferevent *bev)
{
    return bev != NULL && bufferevent_get_underlying(bev) == NULL &&
           bufferevent_openssl_get_ssl(bev) == NULL && bufferevent_getfd(bev) >= 0;
}

/* Fills iov with pre and the first n bytes of src; returns the count. */
static int fill_iov(struct iovec *iov, const void *pre, size_t pre_len, struct evbuffer *src,
                    size_t n)
{
    int k = 0;
    if (pre_len > 0) {
        iov[k].iov_base = (void *)(uintptr_t)pre;
        iov[k].iov_len = pre_len;
        k++;
    }
    if (src == NULL || n == 0)
        return k;
    struct evbuffer_iovec v[SEND_IOV];
    int got = evbuffer_peek(src, (ev_ssize_t)n, NULL, v, SEND_IOV - k);
    if (got > SEND_IOV - k)
        got = SEND_IOV - k;
    for (int i = 0; i < got && n > 0; i++) {
        size_t len = v[i].iov_len < n ? v[i].iov_len : n;
        iov[k].iov_base = v[i].iov_base;
        iov[k].iov_len = len;
        n -= len;
        k++;
    }
    return k;
}

/* One sendmsg of what fill_iov() gathered; 0 on EAGAIN or any error. */
static size_t send_once(evutil_socket_t fd, const void *pre, size_t pre_len, struct evbuffer *src,
                        size_t n, bool *all)
{
    struct iovec iov[SEND_IOV];
    struct msghdr msg = { 0 };
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)fill_iov(iov, pre, pre_len, src, n);
    size_t want = 0;
    for (size_t i = 0; i < msg.msg_iovlen; i++)
        want += iov[i].iov_len;
    ssize_t r;
    do {
        r = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (r == -1 && errno == EINTR);
    *all = r >= 0 && (size_t)r == want;
    return r > 0 ? (size_t)r : 0;
}

size_t lk_net_send(struct bufferevent *bev, bool plain, const void *pre, size_t pre_len,
                   struct evbuffer *src, size_t n)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t sent = 0;
    if (plain && pre_len + n > 0 && evbuffer_get_length(out) == 0) {
        evutil_socket_t fd = bufferevent_getfd(bev);
        bool all = fd >= 0;
        while (all && sent < pre_len + n) {
            size_t pre_sent = sent < pre_len ? sent : pre_len;
            const char *rest = pre_len > pre_sent ? (const char *)pre + pre_sent : NULL;
            size_t w = send_once(fd, rest, pre_len - pre_sent, src, n - (sent - pre_sent), &all);
            /* Drain what went out of src now, so that the next peek starts
             * at the first unsent byte. */
            size_t w_pre = w < pre_len - pre_sent ? w : pre_len - pre_sent;
            if (w > w_pre)
                evbuffer_drain(src, w - w_pre);
            sent += w;
        }
    }
    if (sent < pre_len)
        evbuffer_add(out, (const char *)pre + sent, pre_len - sent);
    size_t body_sent = sent > pre_len ? sent - pre_len : 0;
    if (n > body_sent)
        evbuffer_remove_buffer(src, out, n - body_sent);
    return sent;
}

size_t lk_net_read_more(struct bufferevent *bev, size_t max, int *state)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t total = 0;
    int err = 0;
    *state = 0;
    if (fd < 0)
        return 0;
    /* libevent freezes the end of a socket bufferevent's input outside its
     * own read callback; thaw it for the reads. */
    evbuffer_unfreeze(in, 0);
    while (total < max) {
        size_t want = max - total < READ_CHUNK ? max - total : READ_CHUNK;
        struct evbuffer_iovec v[2];
        int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
        if (nv <= 0)
            break;
        struct iovec iov[2];
        size_t cap = 0;
        for (int i = 0; i < nv; i++) {
            size_t len = v[i].iov_len < want - cap ? v[i].iov_len : want - cap;
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = len;
            cap += len;
        }
        ssize_t r;
        do {
            r = readv(fd, iov, nv);
        } while (r == -1 && errno == EINTR);
        if (r <= 0) {
            if (r == 0)
                *state = 1;
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                *state = -1;
            err = errno;
            evbuffer_commit_space(in, v, 0);
            break;
        }
        size_t left = (size_t)r;
        int used = 0;
        for (int i = 0; i < nv && left > 0; i++) {
            v[i].iov_len = iov[i].iov_len < left ? iov[i].iov_len : left;
            left -= v[i].iov_len;
            used++;
        }
        evbuffer_commit_space(in, v, used);
        total += (size_t)r;
        if ((size_t)r < cap)
            break;
    }
    evbuffer_freeze(in, 0);
    if (*state < 0)
        errno = err;
    return total;
}
