/*
 * dns_server.h - the local DNS responder on a libevent loop (DESIGN §2.9).
 *
 * One server listens on UDP and TCP on the same address and port. Each query
 * is handed to the pure lk_dns_answer() with the zones the owner provides at
 * that moment (a callback, so sessions registered later are seen at once).
 * Names outside every managed domain are forwarded to one upstream: the
 * configured "A:P", or else the first nameserver of /etc/resolv.conf that is
 * not this server itself. A query that came over UDP goes over UDP, on its own
 * connected socket (a fresh source port); one that came over TCP goes over its
 * own TCP connection (RFC 7766 §5), so answers too big for UDP resolve. Each
 * forwarded query gets a random id; the answer is relayed with the client's
 * id restored. No upstream, a refused or closed connection, or no answer
 * within the timeout (2 s by default) gives the client SERVFAIL.
 *
 * TCP queries use the 2-byte length prefix of RFC 7766; connections are
 * limited in number, in queries in flight, in buffered output and in idle
 * time (LK_DNS_* limits below). UDP answers are truncated (TC) to the
 * client's EDNS size or 512 bytes.
 *
 * Threading: loop thread only. Malformed packets are answered FORMERR or
 * dropped, never fatal.
 */
#ifndef LK_NET_DNS_SERVER_H
#define LK_NET_DNS_SERVER_H

#include <stddef.h>
#include <sys/socket.h>

#include "proto/dns.h"

struct event_base;
struct lk_dns_server;

#define LK_DNS_FORWARD_TIMEOUT_MS 2000         /* upstream answer deadline */
#define LK_DNS_MAX_PENDING        256          /* forwarded queries in flight, whole server */
#define LK_DNS_MAX_TCP_CONNS      64           /* open TCP connections */
#define LK_DNS_TCP_MAX_INFLIGHT   8            /* forwarded queries in flight per TCP connection */
#define LK_DNS_TCP_MAX_OUTPUT     (256 * 1024) /* unsent answer bytes per connection */
#define LK_DNS_TCP_IDLE_MS        10000

/* Fills *zones with the current zones. The arrays and strings are borrowed
 * by the server only until lk_dns_answer() returns, immediately after the
 * call. Called on the loop thread for each query. */
typedef void lk_dns_zones_cb(struct lk_dns_zones *zones, void *data);

struct lk_dns_server_opts {
    const char *listen;        /* "A:P" (port 0 = ephemeral); required; borrowed during new */
    const char *upstream;      /* "A:P", or NULL to read resolv_conf; borrowed during new */
    const char *resolv_conf;   /* NULL means "/etc/resolv.conf" */
    unsigned timeout_ms;       /* 0 means LK_DNS_FORWARD_TIMEOUT_MS */
    lk_dns_zones_cb *zones_cb; /* required */
    void *zones_data;          /* passed to zones_cb; borrowed for the server's life */
};

/* Binds UDP and TCP on opts->listen and starts serving on base. With port 0
 * both sockets share one ephemeral port. A missing or unusable upstream is not
 * an error (outside names then get SERVFAIL); an upstream equal to the listen
 * address is ignored (never forward to ourselves). Returns 0 and *out (owned;
 * lk_dns_server_free), LK_EINVAL for a bad address, LK_EIO when binding fails
 * (errno is kept for the caller's message). */
int lk_dns_server_new(struct event_base *base, const struct lk_dns_server_opts *opts,
                      struct lk_dns_server **out);

/* Stops listening, drops forwarded queries in flight, closes every
 * connection and frees everything. NULL is a no-op. Loop thread, not from
 * inside a zones callback. */
void lk_dns_server_free(struct lk_dns_server *s);

/* Writes the bound address as "A:P" (for "DNS listening on A:P") into out
 * (64 bytes is enough; always NUL-terminated). Returns out. */
char *lk_dns_server_addr(const struct lk_dns_server *s, char *out, size_t out_len);

/* Writes the upstream in use as "A:P", or "" when there is none. Returns out. */
char *lk_dns_server_upstream(const struct lk_dns_server *s, char *out, size_t out_len);

#endif
