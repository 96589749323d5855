/*
 * ws.c - WebSocket upgrade detection, frame heads and close frames.
 *
 * Connection may be repeated, and each field is a comma-separated list, so
 * every Connection field is searched for the token.
 */
#include "proto/ws.h"

#include <string.h>

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

int lk_ws_parse_head(const uint8_t *p, size_t n, struct lk_ws_head *h)
{
    if (n < 2)
        return 0;
    h->fin = (p[0] & 0x80) != 0;
    h->rsv = p[0] & 0x70;
    h->opcode = p[0] & 0x0F;
    h->masked = (p[1] & 0x80) != 0;
    uint64_t len = p[1] & 0x7F;
    size_t at = 2;
    if (len == 126 || len == 127) {
        size_t ext = len == 126 ? 2 : 8;
        if (n < at + ext)
            return 0;
        len = 0;
        for (size_t i = 0; i < ext; i++)
            len = len << 8 | p[at + i];
        at += ext;
        /* §5.2: the most significant bit must be 0, and "the minimal number
         * of bytes MUST be used to encode the length". */
        if (len >> 63 != 0 || (ext == 2 && len < 126) || (ext == 8 && len <= 0xFFFF))
            return -1;
    }
    if (h->opcode >= 8 && (!h->fin || len > LK_WS_CONTROL_MAX))
        return -1; /* §5.5 */
    if (h->masked) {
        if (n < at + 4)
            return 0;
        memcpy(h->mask, p + at, 4);
        at += 4;
    }
    h->payload_len = len;
    h->len = at;
    return 1;
}

size_t lk_ws_close_frame(uint8_t *out, uint16_t code, const uint8_t *reason, size_t len,
                         const uint8_t *mask)
{
    if (len > LK_WS_CONTROL_MAX - 2)
        len = LK_WS_CONTROL_MAX - 2;
    size_t at = 0;
    out[at++] = 0x80 | LK_WS_OP_CLOSE;
    out[at++] = (uint8_t)((mask ? 0x80 : 0) | (2 + len));
    if (mask) {
        memcpy(out + at, mask, 4);
        at += 4;
    }
    uint8_t *payload = out + at;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (len > 0)
        memcpy(payload + 2, reason, len);
    for (size_t i = 0; mask && i < 2 + len; i++)
        payload[i] ^= mask[i % 4];
    return at + 2 + len;
}

size_t lk_ws_close_normalize(const uint8_t *f, const struct lk_ws_head *h, uint8_t *out)
{
    /* A one-byte body is malformed (§5.5.1); it keeps no reason. */
    uint8_t reason[LK_WS_CONTROL_MAX];
    size_t n = h->payload_len >= 2 ? (size_t)h->payload_len - 2 : 0;
    for (size_t i = 0; i < n; i++)
        reason[i] = f[h->len + 2 + i] ^ (h->masked ? h->mask[(2 + i) % 4] : 0);
    return lk_ws_close_frame(out, LK_WS_CLOSE_NORMAL, reason, n, h->masked ? h->mask : NULL);
}
