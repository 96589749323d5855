/*
 * tunnels.c - tunnel records: upsert, hostname recognition and the cleanup
 * of stale records. The records are JSON in the tunnels key space of the
 * worker store; this file only reads "id", "secret" and "last_started" back.
 */
#include "worker/tunnels.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/session.h"
#include "net/log.h"
#include "net/rng_os.h"

/* Reads and compare-and-set writes of one tunnel record before giving up
 * (another worker sharing the store wrote in between each time). */
#define TUNNEL_ATTEMPTS 8

/* lk_rng_os (ChaCha20 keyed from getrandom), not RAND_bytes: OpenSSL's DRBG
 * would activate its default provider, ~2 MiB of resident pages the worker
 * otherwise never needs (docs/performance.md, finding 10). */
static void random_bytes(unsigned char *p, size_t n)
{
    lk_rng_os_fill(NULL, p, n);
}

/* A random (version 4) UUID, lower-case. */
static void new_uuid(char out[37])
{
    unsigned char b[16];
    random_bytes(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    int n = snprintf(
        out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
        b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    LK_ASSERT(n == 36);
}

/* Base64 (standard alphabet, padded) of 32 random bytes: 44 characters. */
static void new_secret(char out[45])
{
    unsigned char b[32];
    random_bytes(b, sizeof(b));
    int n = EVP_EncodeBlock((unsigned char *)out, b, (int)sizeof(b));
    LK_ASSERT(n == 44);
}

void worker_tunnel_url(const struct worker_tunnel_cfg *cfg, const char *session, struct lk_buf *out)
{
    bool https = strcmp(cfg->scheme, "https") == 0;
    lk_buf_addf(out, "%s://%s%s.%s", https ? "https" : "http", cfg->prefix, session, cfg->domain);
    if (cfg->port != (https ? 443 : 80))
        lk_buf_addf(out, ":%d", cfg->port);
}

/* Copies the string member key of obj into out (size out_len) when it is a
 * string of exactly want_len bytes. */
static bool get_fixed(const json_t *obj, const char *key, size_t want_len, char *out,
                      size_t out_len)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v) || json_string_length(v) != want_len || want_len >= out_len)
        return false;
    memcpy(out, json_string_value(v), want_len + 1);
    return true;
}

/* Reads the record of key into raw (*found) and its id and secret; false
 * when there is none or it does not parse. */
static bool read_existing(const struct lk_kv *tunnels, const char *key, struct lk_buf *raw,
                          bool *found, char id[37], char secret[45], struct lk_buf *err, int *rc)
{
    bool ok = false;
    lk_buf_reset(raw);
    *rc = lk_kv_get(tunnels, key, raw, err);
    *found = *rc == 0;
    if (*rc == 0) {
        json_t *obj = json_loadb(raw->data, raw->len, 0, NULL);
        ok = obj != NULL && get_fixed(obj, "id", 36, id, 37) &&
             get_fixed(obj, "secret", 44, secret, 45);
        json_decref(obj);
        if (!ok)
            LK_LOG(WARN, "tunnel record %s does not parse; replacing it", key);
    } else if (*rc == LK_ENOTFOUND) {
        *rc = 0;
    }
    return ok;
}

static void record_json(const char *name, const char *url, const char *id, const char *secret,
                        uint64_t now_ms, struct lk_buf *out)
{
    lk_buf_adds(out, "{\"account_id\":\"\",\"name\":");
    lk_json_add_string(out, name, strlen(name));
    lk_buf_adds(out, ",\"url\":");
    lk_json_add_string(out, url, strlen(url));
    lk_buf_adds(out, ",\"id\":");
    lk_json_add_string(out, id, strlen(id));
    lk_buf_adds(out, ",\"secret\":");
    lk_json_add_string(out, secret, strlen(secret));
    lk_buf_addf(out, ",\"last_started\":%llu,\"provider\":\"linkup\"}", (unsigned long long)now_ms);
}

int worker_tunnel_upsert(const struct lk_kv *tunnels, const struct worker_tunnel_cfg *cfg,
                         const char *session, uint64_t now_ms, struct lk_buf *json_out,
                         struct lk_buf *url_out, struct lk_buf *err)
{
    struct lk_buf name = LK_BUF_INIT;
    struct lk_buf url = LK_BUF_INIT;
    struct lk_buf json = LK_BUF_INIT;
    struct lk_buf raw = LK_BUF_INIT;
    char id[37];
    char secret[45];
    int rc = LK_ECONFLICT;
    lk_buf_addf(&name, "%s%s", cfg->prefix, session);
    worker_tunnel_url(cfg, session, &url);
    /* One record per name (SPEC §4.8), written only over the value read, so
     * that workers sharing the store never hand out an id and secret other
     * than the stored ones. A write that lost to another one answers with
     * the record that one stored (a new tunnel's, or a refresh of the same
     * id and secret). */
    for (int attempt = 0; attempt < TUNNEL_ATTEMPTS && rc == LK_ECONFLICT; attempt++) {
        bool found = false;
        bool parsed = read_existing(tunnels, name.data, &raw, &found, id, secret, err, &rc);
        if (rc != 0)
            goto out;
        if (attempt > 0 && parsed) {
            lk_buf_reset(&json);
            lk_buf_add(&json, raw.data, raw.len);
            break;
        }
        if (!parsed) {
            new_uuid(id);
            new_secret(secret);
        }
        lk_buf_reset(&json);
        record_json(name.data, url.data, id, secret, now_ms, &json);
        rc = lk_kv_put_if(tunnels, name.data, found ? lk_buf_str(&raw).ptr : NULL,
                          found ? raw.len : 0, json.data, json.len, err);
    }
    if (rc == LK_ECONFLICT && err)
        lk_buf_adds(err, "the tunnel record kept changing under this write");
    if (rc != 0)
        goto out;
    if (json_out)
        lk_buf_addstr(json_out, lk_buf_str(&json));
    if (url_out)
        lk_buf_addstr(url_out, lk_buf_str(&url));
out:
    lk_buf_release(&raw);
    lk_buf_release(&json);
    lk_buf_release(&url);
    lk_buf_release(&name);
    return rc;
}

bool worker_tunnel_host_session(const struct worker_tunnel_cfg *cfg, struct lk_str host,
                                struct lk_str *session)
{
    struct lk_str prefix = lk_str_c(cfg->prefix);
    struct lk_str domain = lk_str_c(cfg->domain);
    if (host.len < prefix.len + 1 + domain.len + 1)
        return false;
    struct lk_str head = { host.ptr, prefix.len };
    struct lk_str tail = { host.ptr + host.len - domain.len, domain.len };
    if (!lk_str_ieq(head, prefix) || !lk_str_ieq(tail, domain) ||
        host.ptr[host.len - domain.len - 1] != '.')
        return false;
    session->ptr = host.ptr + prefix.len;
    session->len = host.len - prefix.len - domain.len - 1;
    return true;
}

struct cleanup_state {
    uint64_t now;
    char **stale;
    size_t n, cap;
};

static int collect_stale(void *data, const char *key, const char *value, size_t value_len)
{
    struct cleanup_state *cs = data;
    json_t *obj = json_loadb(value, value_len, 0, NULL);
    const json_t *ls = json_object_get(obj, "last_started");
    if (!json_is_integer(ls)) {
        LK_LOG(ERROR, "cleanup: tunnel record %s does not parse", key);
    } else {
        uint64_t last = (uint64_t)json_integer_value(ls);
        if (cs->now > last && cs->now - last > WORKER_TUNNEL_MAX_AGE_MS) {
            LK_GROW(cs->stale, cs->cap, cs->n + 1);
            cs->stale[cs->n++] = lk_xstrdup(key);
        }
    }
    json_decref(obj);
    return 0;
}

int worker_tunnel_cleanup(const struct lk_kv *tunnels, uint64_t now_ms, size_t *n_deleted,
                          struct lk_buf *err)
{
    struct cleanup_state cs = { now_ms, NULL, 0, 0 };
    size_t deleted = 0;
    /* Keys are collected first: deleting while a listing is open is not
     * allowed by every backend. */
    int rc = lk_kv_list(tunnels, collect_stale, &cs, err);
    for (size_t i = 0; i < cs.n; i++) {
        if (rc == 0) {
            rc = lk_kv_del(tunnels, cs.stale[i], err);
            if (rc == 0) {
                deleted++;
                LK_LOG(INFO, "cleanup: deleted tunnel %s (unused for 7 days)", cs.stale[i]);
            }
        }
        free(cs.stale[i]);
    }
    free(cs.stale);
    if (n_deleted)
        *n_deleted = deleted;
    return rc;
}
