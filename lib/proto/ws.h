/*
 * ws.h - WebSocket upgrade detection (RFC 6455 §4.2.1, SPEC §5.4) and the
 * frame heads and close frames the worker's relay reads and writes (RFC 6455
 * §5.2, §5.5.1, SPEC §4.7).
 *
 * Pure; any thread.
 */
#ifndef LK_PROTO_WS_H
#define LK_PROTO_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/http1.h"

/* True when a request is a WebSocket upgrade as the local server defines it
 * (SPEC §5.4): HTTP/1.1, method GET, a Connection field with the token
 * "upgrade", "Upgrade: websocket" (case-insensitive), "Sec-WebSocket-Version:
 * 13" and a Sec-WebSocket-Key field. headers are borrowed during the call. */
bool lk_ws_is_upgrade_request(struct lk_str method, int minor_version,
                              const struct lk_http_header *headers, size_t n_headers);

/* The worker's looser test (SPEC §4.4 step 4): an Upgrade field whose value
 * is exactly "websocket" (case-sensitive). */
bool lk_ws_has_upgrade_websocket(const struct lk_http_header *headers, size_t n_headers);

enum {
    LK_WS_OP_CLOSE = 8,
    LK_WS_HEAD_MAX = 14,                           /* 2 + 8 (64-bit length) + 4 (mask key) */
    LK_WS_CONTROL_MAX = 125,                       /* payload bytes of a control frame */
    LK_WS_CLOSE_FRAME_MAX = 6 + LK_WS_CONTROL_MAX, /* head with mask + payload */
    LK_WS_CLOSE_NORMAL = 1000,
    LK_WS_CLOSE_GOING_AWAY = 1001, /* §7.4.1: "a server going down" */
    LK_WS_CLOSE_INTERNAL_ERROR = 1011,
};

/* A frame head (RFC 6455 §5.2). */
struct lk_ws_head {
    uint8_t opcode; /* low 4 bits of the first byte */
    uint8_t rsv;    /* RSV1-3 as they are in the first byte (0x70 mask) */
    bool fin;
    bool masked;
    uint8_t mask[4];      /* when masked */
    uint64_t payload_len; /* below 2^63 */
    size_t len;           /* bytes of the head: 2 to LK_WS_HEAD_MAX */
};

/* Reads the frame head at p[0..n): 1 when h is filled, 0 when more bytes are
 * needed, -1 when it is malformed (a 64-bit length with the top bit set, a
 * length not in its shortest form, or a control frame (opcode 8 and above)
 * that is fragmented or longer than LK_WS_CONTROL_MAX). */
int lk_ws_parse_head(const uint8_t *p, size_t n, struct lk_ws_head *h);

/* Writes to out a close frame (FIN, opcode 8) with code and reason[0..len)
 * (cut at LK_WS_CONTROL_MAX - 2 bytes), masked with mask when it is not NULL.
 * Returns its length, at most LK_WS_CLOSE_FRAME_MAX. */
size_t lk_ws_close_frame(uint8_t *out, uint16_t code, const uint8_t *reason, size_t len,
                         const uint8_t *mask);

/* The close frame f (whole: h->len + h->payload_len bytes, h read by
 * lk_ws_parse_head() with opcode 8) re-sent as SPEC §4.7 does: code 1000,
 * the received reason, the same mask key. Written to out (at least
 * LK_WS_CLOSE_FRAME_MAX bytes); returns its length. */
size_t lk_ws_close_normalize(const uint8_t *f, const struct lk_ws_head *h, uint8_t *out);

#endif
