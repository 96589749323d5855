/*
 * h2_front.h - HTTP/2 on the engine's listeners: cleartext with prior
 * knowledge (RFC 9113 §3.3) on plain-HTTP listeners and "h2" chosen by ALPN
 * on TLS listeners (SPEC §5.1: the local server's HTTP port serves "HTTP/1.1
 * and HTTP/2 cleartext (prior knowledge)", its HTTPS port "ALPN h2,
 * http/1.1").
 *
 * The engine (http_server.c) looks at every client connection's first
 * request (not adopted streams). When a plain TCP client's first bytes are
 * the 24-byte connection preface, or a TLS client agreed on "h2", it hands
 * the connection's bufferevent to lk_h2_front_new() instead of parsing an
 * HTTP/1.1 head. The front then runs
 * one nghttp2 server session over it and serves every request stream through
 * the HTTP/1.1 engine itself: the stream's request is re-serialised as an
 * HTTP/1.1 head (+ body) into one end of an in-memory bufferevent pair whose
 * other end is adopted into the server (lk_http_server_adopt_h2(), with the
 * real client's "ip:port" and loopback flag, https over TLS), and the engine's HTTP/1.1 response
 * read back from the pair is turned into HEADERS + DATA. So routing, the
 * admin API (loopback only, as for HTTP/1.1), proxying and the access log
 * are the engine's, unchanged. docs/internals/h2c.md has the details.
 *
 * WebSockets: an extended CONNECT with :protocol websocket (RFC 8441;
 * SETTINGS_ENABLE_CONNECT_PROTOCOL is advertised) goes to the engine as an
 * HTTP/1.1 upgrade with a key of the front's own; the engine's 101 becomes
 * a 200 and the stream's DATA then carries the WebSocket bytes both ways.
 * Not served: server push, plain CONNECT and other :protocol values (501).
 *
 * Ownership: a struct lk_h2_front owns the client bufferevent, its nghttp2
 * session and our end of every stream's pair; the engine owns the adopted
 * ends. The engine's connection object owns the front and frees it with
 * lk_h2_front_free() from its one destructor.
 *
 * Threading: loop thread only. No function calls on_closed before
 * returning.
 */
#ifndef LK_NET_H2_FRONT_H
#define LK_NET_H2_FRONT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct lk_http_server;
struct lk_h2_front;

/* The client connection preface (RFC 9113 §3.4). */
#define LK_H2_PREFACE     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define LK_H2_PREFACE_LEN 24

/* Compares the first bytes a client sent, (p, len), with the preface:
 * 1 when they start with the whole preface, 0 when they are a proper prefix
 * of it (wait for more bytes), -1 when they are something else (HTTP/1.x).
 * Pure. */
int lk_h2_preface_match(const char *p, size_t len);

/* The connection is finished (client gone, protocol error, idle timeout,
 * drained, send timeout). Called once, from the loop; why is borrowed during
 * the call. The owner must free the front afterwards (not necessarily
 * inside the call: the front stays inert until then). */
typedef void lk_h2_front_closed_cb(void *data, const char *why);

/* Starts serving HTTP/2 on bev, a plain socket bufferevent whose input
 * starts with the preface, or (is_tls) a TLS bufferevent whose handshake
 * chose "h2" (either way the preface is left in place: nghttp2 checks it).
 * Takes
 * ownership of bev (callbacks, watermarks and read/write state are replaced;
 * its write timeout, the engine's send timeout, is kept). Requests are
 * adopted into srv (borrowed; must outlive the front) with peer_label
 * (copied) and peer_is_loopback. conn_id names the connection in log
 * lines. Bytes already in bev's input are processed from the loop. The
 * connection closes after srv's idle_timeout_ms with no open stream (a
 * GOAWAY first). Never NULL. */
struct lk_h2_front *lk_h2_front_new(struct lk_http_server *srv, struct bufferevent *bev,
                                    uint64_t conn_id, const char *peer_label, bool peer_is_loopback,
                                    bool is_tls, lk_h2_front_closed_cb *on_closed, void *data);

/* Graceful shutdown: sends GOAWAY (no new streams), lets the open streams
 * finish and then reports on_closed. Idempotent. */
void lk_h2_front_drain(struct lk_h2_front *f);

/* Number of open streams (for tests and drain decisions). */
size_t lk_h2_front_n_streams(const struct lk_h2_front *f);

/* Closes everything at once: every stream's pair is reset (the engine sees
 * an error and cancels the upstream work), the client connection is closed,
 * and f is freed. No callback. NULL is a no-op. */
void lk_h2_front_free(struct lk_h2_front *f);

#endif
