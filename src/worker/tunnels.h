/*
 * tunnels.h - tunnel records of the built-in tunnel (DESIGN §8, SPEC §2.4,
 * §4.8, §4.9).
 *
 * A tunneled upsert (v2 tunneled, v1 /linkup/tunnel) gives its session a
 * tunnel record in the store's tunnels key space, keyed by the tunnel name
 * "{prefix}{session}", never expiring:
 *
 *   {"account_id":"","name":"{prefix}{session}",
 *    "url":"http://{prefix}{session}.{domain}[:{port}]","id":"<uuid v4>",
 *    "secret":"<base64 of 32 random bytes>","last_started":<epoch ms>,
 *    "provider":"linkup"}
 *
 * The fields of SPEC §2.4 come first, in its order; ":{port}" is present
 * when the worker does not listen on port 80; id and secret are kept across
 * upserts while last_started is refreshed. The worker serves the tunnel
 * hostnames itself: worker_tunnel_host_session() recognises them. Records
 * unused for more than 7 days are deleted by worker_tunnel_cleanup().
 *
 * Randomness comes from OpenSSL's RAND_bytes. Loop thread only.
 */
#ifndef LK_WORKER_TUNNELS_H
#define LK_WORKER_TUNNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/store.h"
#include "core/str.h"

/* A tunnel record older than this (now - last_started, strictly greater) is
 * deleted by the cleanup (SPEC §4.9). */
#define WORKER_TUNNEL_MAX_AGE_MS 604800000ULL

/* Where the worker serves tunnels. All borrowed. */
struct worker_tunnel_cfg {
    const char *prefix; /* "linkup-tunnel-" */
    const char *domain; /* "localhost" */
    const char *scheme; /* "http" or "https" (--tunnel-scheme) */
    int port;           /* published port (--tunnel-port, else the listening
                           one); the scheme's default port is left out */
};

/* Appends the tunnel URL of session to out (no trailing slash). */
void worker_tunnel_url(const struct worker_tunnel_cfg *cfg, const char *session,
                       struct lk_buf *out);

/*
 * upsert_tunnel (SPEC §4.8, DESIGN §8): reads the record of session from
 * tunnels; keeps its id and secret when it parses, else makes new ones;
 * sets last_started = now_ms and the current name and url; writes it back.
 * Appends the record's JSON to json_out and its url to url_out (either may
 * be NULL). Returns 0, or the kv's error code with a reason in err.
 */
int worker_tunnel_upsert(const struct lk_kv *tunnels, const struct worker_tunnel_cfg *cfg,
                         const char *session, uint64_t now_ms, struct lk_buf *json_out,
                         struct lk_buf *url_out, struct lk_buf *err);

/*
 * True when host (no port) is "{prefix}{session}.{domain}" (ASCII
 * case-insensitive) with a non-empty session; *session then borrows the
 * session part of host.
 */
bool worker_tunnel_host_session(const struct worker_tunnel_cfg *cfg, struct lk_str host,
                                struct lk_str *session);

/*
 * SPEC §4.9 for the built-in tunnel: deletes every record whose last_started
 * is more than WORKER_TUNNEL_MAX_AGE_MS before now_ms. Unparseable records
 * are logged and kept. Sets *n_deleted (may be NULL). Returns 0 or the kv's
 * error with a reason in err.
 */
int worker_tunnel_cleanup(const struct lk_kv *tunnels, uint64_t now_ms, size_t *n_deleted,
                          struct lk_buf *err);

#endif
