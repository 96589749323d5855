/*
 * tunnel_internal.h - the HTTP/2 connection shared by the hub (worker side,
 * HTTP/2 client) and the client (local side, HTTP/2 server). Not for
 * programs: use tunnel.h.
 *
 * Ownership: a struct lk_tunnel owns its connection bufferevent, its nghttp2
 * session and every stream pipe (our end of a bufferevent pair per stream). The
 * owner (hub entry or client) frees it with lk_tunnel_free(), typically from
 * its closed callback.
 */
#ifndef LK_NET_TUNNEL_INTERNAL_H
#define LK_NET_TUNNEL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/splice.h"
#include "net/tunnel.h"

struct timeval;

/* The connection died (peer close, error, protocol error, silent peer, or
 * lk_tunnel_kill()). Called from the loop, once; why is borrowed during the
 * call. The owner must lk_tunnel_free(t) (it may do so inside the call). */
typedef void lk_tunnel_closed_cb(struct lk_tunnel *t, const char *why, void *data);

/* Starts the HTTP/2 side of an upgraded connection. Takes ownership of bev;
 * bytes already in its input buffer are processed from the loop. is_h2_client
 * is true on the worker (it opens streams), false on the local server, where
 * every stream is adopted into adopt_into (borrowed). label (copied) names the
 * tunnel in log lines. opts is copied. Never NULL. */
struct lk_tunnel *lk_tunnel_new(struct event_base *base, struct bufferevent *bev, bool is_h2_client,
                                const struct lk_tunnel_opts *opts, const char *label,
                                struct lk_http_server *adopt_into, lk_tunnel_closed_cb *on_closed,
                                void *data);

/* Called once when the peer sent GOAWAY (it is shutting down): t opens no
 * new stream from now on (lk_tunnel_connect refuses), those in progress
 * finish, and t then closes by itself (on_closed). Called from inside
 * nghttp2: must not free t. */
typedef void lk_tunnel_goaway_cb(struct lk_tunnel *t, void *data);

/* Sets t's GOAWAY callback (with lk_tunnel_new's data); NULL = none. */
void lk_tunnel_set_goaway_cb(struct lk_tunnel *t, lk_tunnel_goaway_cb *cb);

/* Graceful close: sends GOAWAY (NO_ERROR, the last stream the peer opened
 * that we took), so the peer opens no new stream; streams it opens anyway
 * are refused (REFUSED_STREAM). On the local side (the HTTP/2 server) that
 * GOAWAY follows a notice (last stream ID 2^31-1) by a PING's round trip,
 * RFC 9113 §6.8, so a stream crossing the notice is served, not refused,
 * and the engine's connections on our streams are retired only then.
 * Streams in progress finish; once none is left and everything is written,
 * t closes by itself (on_closed). A no-op when t is dead or already going
 * away. */
void lk_tunnel_go_away(struct lk_tunnel *t);

/* Marks t dead with why; on_closed follows from the loop. */
void lk_tunnel_kill(struct lk_tunnel *t, const char *why);

/* Closes everything at once (stream pipes, connection) and frees t. No
 * callback. NULL is a no-op. */
void lk_tunnel_free(struct lk_tunnel *t);
/* Streams whose bytes lk_tunnel_flush_posted() sent within the engine
 * callback that wrote them, so far, on the worker's tunnels (worker_side) or
 * the local server's. Loop thread. */
uint64_t lk_tunnel_posted_sent(bool worker_side);
/* Bytes t has moved by splice (lk_tunnel_splice_start). */
uint64_t lk_tunnel_spliced_bytes(const struct lk_tunnel *t);
/* A key unique to t, for the engine's pool of t's kept streams
 * (lk_tunnel_hub_target). */
const char *lk_tunnel_pool_key(const struct lk_tunnel *t);

/* ---- splicing a response body into a stream (local side) ----------------
 * A response body the engine relays from a plain origin socket into a
 * stream of a plain tunnel can skip the local server's memory (splice.h,
 * docs/performance.md finding 27): the tunnel reads the origin socket from
 * the hand-off on, splices it into a kernel pipe and from there, behind each
 * DATA frame header, into the tunnel socket. Statuses as in splice.h, where
 * DONE means all bytes are framed, ahead of anything the engine writes
 * next, and GONE (the stream or the tunnel went away) may come from inside
 * any tunnel call that closes the stream: the callee must then not call into
 * the tunnel. DONE, EOF and READ_ERROR come from the loop. */
struct lk_tunnel_splice;

/* Takes over the next len bytes of fd for the stream whose engine end is
 * engine_end. NULL (nothing taken) when engine_end is not a stream of a
 * plain tunnel, the stream's input is not empty, the tunnel has too many
 * splices running, or no pipe can be made. */
struct lk_tunnel_splice *lk_tunnel_splice_start(struct bufferevent *engine_end, int fd,
                                                uint64_t len, lk_splice_cb *cb, void *ctx);
/* Ends a splice early; no callback follows. Bytes already framed still go
 * out (their frame headers have). */
void lk_tunnel_splice_cancel(struct lk_tunnel_splice *sp);
/* True while the splice waits for the origin (not for the tunnel to take
 * what the pipe holds), or for the peer's bytes (not for the client): for
 * the engine's upstream idle timeout. */
bool lk_tunnel_splice_reading(const struct lk_tunnel_splice *sp);

/* ---- splicing a response body out of a stream (worker side) --------------
 * The mirror image, for a Content-Length body that a stream of a plain
 * tunnel brings for a plain client socket (docs/performance.md, finding
 * 31): the tunnel reads each DATA frame header of the stream and splices the
 * payload off the tunnel socket into a kernel pipe, and from there to the
 * client socket. Payload that came through memory anyway (read with other
 * frames) is written into the pipe, in order. The stream's window is given
 * back as bytes reach the client, so the pipe, sized like the window, is
 * where the peer's bytes wait. Statuses as in splice.h: MOVED counts bytes
 * taken from the stream, DONE means all len bytes are written to fd, EOF
 * that the stream ended before (the peer's END_STREAM is passed to the
 * engine only after the splice), WRITE_ERROR that the client failed or
 * took no byte for *send_tv, GONE as above. DONE, EOF and WRITE_ERROR come
 * from the loop. */

/* Takes over the next len bytes of the stream whose engine end is
 * engine_end, for fd. NULL (nothing taken) when engine_end is not a stream
 * of a plain tunnel on the worker side, bytes of the stream wait for the
 * engine, the stream has ended, too many splices run, or no pipe can be
 * made. Cancel with lk_tunnel_splice_cancel(): what the pipe holds is
 * dropped, so the stream is not reusable then. */
struct lk_tunnel_splice *lk_tunnel_splice_to(struct bufferevent *engine_end, int fd, uint64_t len,
                                             const struct timeval *send_tv, lk_splice_cb *cb,
                                             void *ctx);

/* ---- WebSockets (worker side) -------------------------------------------
 * The exchange on the stream whose engine end is engine_end became a byte
 * tunnel (a 101): from now on a reset of the stream by the peer with CANCEL,
 * which is how the local server's pipe ends a stream whose WebSocket
 * upstream failed (RFC 8441 §5), reaches engine_end as BEV_EVENT_ERROR with
 * the EOF, after every byte received before the reset; before, and for any
 * other reset, the engine sees the bytes and an EOF. No-op when engine_end
 * is not the engine end of a worker-side stream. Loop thread only. */
void lk_tunnel_stream_relaying(struct bufferevent *engine_end);

#endif
