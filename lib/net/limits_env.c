/*
 * limits_env.c - DESIGN §9 limit and timeout knobs of both servers from the
 * environment (limits_env.h).
 */
#include "net/limits_env.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "net/http_server.h"
#include "net/log.h"

#define LK_HEAD_LIMIT_MAX    (4u * 1024u * 1024u)
#define LK_HEADERS_LIMIT_MAX 10000u

/* A positive decimal from env into *dst (unchanged when unset or empty; a
 * warning when malformed or out of 1..max). */
static void size_from_env(const char *env, size_t max, size_t *dst)
{
    const char *v = getenv(env);
    if (v == NULL || v[0] == '\0')
        return;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || v[0] < '0' || v[0] > '9' || n == 0 || n > max) {
        LK_LOG(WARN, "ignoring %s=%s: expected a number from 1 to %zu", env, v, max);
        return;
    }
    *dst = (size_t)n;
}

static void ms_from_env(const char *env, unsigned *dst)
{
    size_t n = *dst;
    size_from_env(env, UINT_MAX, &n);
    *dst = (unsigned)n;
}

void lk_limits_from_env(struct lk_http_server_opts *so, size_t *max_json_body)
{
    ms_from_env("LINKUP_HEAD_TIMEOUT_MS", &so->head_timeout_ms);
    ms_from_env("LINKUP_IDLE_TIMEOUT_MS", &so->idle_timeout_ms);
    ms_from_env("LINKUP_CONNECT_TIMEOUT_MS", &so->connect_timeout_ms);
    ms_from_env("LINKUP_FIRST_BYTE_TIMEOUT_MS", &so->first_byte_timeout_ms);
    ms_from_env("LINKUP_UPSTREAM_IDLE_TIMEOUT_MS", &so->upstream_idle_timeout_ms);
    ms_from_env("LINKUP_SEND_TIMEOUT_MS", &so->send_timeout_ms);
    size_from_env("LINKUP_MAX_CONNS", SIZE_MAX, &so->max_conns);
    size_from_env("LINKUP_WS_BUFFER_MAX", SIZE_MAX, &so->ws_buffer_max);
    size_from_env("LINKUP_MAX_JSON_BODY", SIZE_MAX, max_json_body);
    /* The request-head limits (431 / 414 past them). The head buffer holds
     * max_head bytes, so they stay within a few MiB. */
    size_from_env("LINKUP_MAX_HEADER_LINE", LK_HEAD_LIMIT_MAX, &so->limits.max_line);
    size_from_env("LINKUP_MAX_HEAD", LK_HEAD_LIMIT_MAX, &so->limits.max_head);
    size_from_env("LINKUP_MAX_HEADERS", LK_HEADERS_LIMIT_MAX, &so->limits.max_headers);
    size_from_env("LINKUP_MAX_TARGET", LK_HEAD_LIMIT_MAX, &so->limits.max_target);
}
