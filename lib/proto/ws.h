/*
 * ws.h - WebSocket upgrade detection (RFC 6455 §4.2.1, SPEC §5.4).
 *
 * Pure; any thread.
 */
#ifndef LK_PROTO_WS_H
#define LK_PROTO_WS_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
