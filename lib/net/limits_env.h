/*
 * limits_env.h - the limit and timeout knobs of DESIGN §9 ("all
 * configurable") for `linkup server` and `linkup worker`, read from the
 * environment (docs/reliability.md), so one environment drives both programs:
 *
 *   LINKUP_HEAD_TIMEOUT_MS        whole request head read
 *   LINKUP_IDLE_TIMEOUT_MS        keep-alive idle between requests
 *   LINKUP_CONNECT_TIMEOUT_MS     upstream DNS + connect + TLS
 *   LINKUP_FIRST_BYTE_TIMEOUT_MS  request sent -> first response byte
 *   LINKUP_UPSTREAM_IDLE_TIMEOUT_MS  response body: longest upstream silence
 *   LINKUP_SEND_TIMEOUT_MS        longest a client refuses pending output
 *   LINKUP_MAX_CONNS              open client connections (503 past it)
 *   LINKUP_WS_BUFFER_MAX          bytes queued per WebSocket direction
 *   LINKUP_MAX_JSON_BODY          session JSON bodies (413 past it)
 *   LINKUP_MAX_TARGET             request-target (414 past it)
 *   LINKUP_MAX_HEADER_LINE        one request header line (431 past it)
 *   LINKUP_MAX_HEAD               whole request head (431 past it)
 *   LINKUP_MAX_HEADERS            request header fields (431 past it)
 *
 * Each value is a decimal from 1 upwards (at most UINT_MAX for the _MS
 * ones, 4 MiB for the head sizes, 10 000 for the field count). Unset or
 * empty keeps the default; anything else is ignored with a warning in the
 * log. Uses getenv(): call from the main thread at start-up.
 */
#ifndef LK_NET_LIMITS_ENV_H
#define LK_NET_LIMITS_ENV_H

#include <stddef.h>

struct lk_http_server_opts;

/* Overrides the fields of *so (initialised by lk_http_server_opts_init())
 * and *max_json_body (initialised by the caller) that the environment sets
 * validly; leaves the others unchanged. Never fails. */
void lk_limits_from_env(struct lk_http_server_opts *so, size_t *max_json_body);

#endif
