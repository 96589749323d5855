/*
 * ws.c - WebSocket upgrade detection.
 *
 * Connection may be repeated, and each field is a comma-separated list, so
 * every Connection field is searched for the token.
 */
#include "proto/ws.h"

static bool any_has_token(const struct lk_http_header *headers, size_t n, struct lk_str name,
                          struct lk_str token)
{
    for (size_t i = 0; i < n; i++) {
        if (lk_str_ieq(headers[i].name, name) && lk_str_has_token(headers[i].value, token))
            return true;
    }
    return false;
}

bool lk_ws_is_upgrade_request(struct lk_str method, int minor_version,
                              const struct lk_http_header *headers, size_t n_headers)
{
    if (minor_version != 1 || !lk_str_eq(method, LK_STR("GET")))
        return false;
    if (!any_has_token(headers, n_headers, LK_STR("connection"), LK_STR("upgrade")))
        return false;
    const struct lk_http_header *h;
    h = lk_http1_find_header(headers, n_headers, LK_STR("upgrade"));
    if (h == NULL || !lk_str_ieq(lk_str_trim(h->value), LK_STR("websocket")))
        return false;
    h = lk_http1_find_header(headers, n_headers, LK_STR("sec-websocket-version"));
    if (h == NULL || !lk_str_eq(lk_str_trim(h->value), LK_STR("13")))
        return false;
    return lk_http1_find_header(headers, n_headers, LK_STR("sec-websocket-key")) != NULL;
}

bool lk_ws_has_upgrade_websocket(const struct lk_http_header *headers, size_t n_headers)
{
    const struct lk_http_header *h = lk_http1_find_header(headers, n_headers, LK_STR("upgrade"));
    return h != NULL && lk_str_eq(h->value, LK_STR("websocket"));
}
