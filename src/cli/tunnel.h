/*
 * tunnel.h - the tunnel step of `linkup start` (SPEC §6.5.1 step 7, SPEC §7,
 * DESIGN §8) and the tunnel state that `status` and `health` show.
 *
 * A tunneled upsert answers tunnel data (SPEC §2.4). They come in three kinds:
 *
 *   - built-in (`"provider":"linkup"`, DESIGN §8): the local server opens the
 *     tunnel itself when it forwards the upsert; `start` only polls
 *     `GET /linkup/tunnel` on the local server until it says connected;
 *   - Cloudflare credentials (a non-empty `account_id` and no
 *     `"provider":"linkup"`, an original worker): `start` drives cloudflared
 *     (cloudflared.h);
 *   - anything else (no data, or data without credentials): the tunnel URL is
 *     kept in the state and nothing is started.
 *
 * Counts and intervals of the waits can be overridden from the environment
 * (tests): LINKUP_TUNNEL_CONNECT_RETRIES (20) and
 * LINKUP_TUNNEL_CONNECT_INTERVAL_MS (500) for the built-in tunnel, the
 * cloudflared ones in cloudflared.h.
 *
 * Blocking; CLI only; not thread-safe.
 */
#ifndef LK_CLI_TUNNEL_H
#define LK_CLI_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/state.h"

/* What the tunnel data of an upsert ask for. */
enum cli_tunnel_kind {
    CLI_TUNNEL_OTHER = 0, /* nothing to start */
    CLI_TUNNEL_BUILTIN,   /* "provider":"linkup" */
    CLI_TUNNEL_CLOUDFLARE /* non-empty account_id, not "linkup" */
};

/* Tunnel data of SPEC §2.4, the fields the CLI uses. Every string is owned
 * and never NULL ("" when absent); release with cli_tunnel_data_release. */
struct cli_tunnel_data {
    enum cli_tunnel_kind kind;
    char *url;
    char *id;
    char *secret;
    char *account_id;
};

/* Reads the "tunnel_data" object of a tunneled upsert answer body[0..len)
 * into td (always initialised). Returns 0, or LK_EPARSE when the body is not
 * JSON or has no tunnel_data object (td is then of kind CLI_TUNNEL_OTHER). */
int cli_tunnel_data_from_upsert(const char *body, size_t len, struct cli_tunnel_data *td);

/* Frees the strings of td. Safe on a zeroed struct. */
void cli_tunnel_data_release(struct cli_tunnel_data *td);

/* The environment value name as a count in [0, 1000], or def when unset or
 * not a number. */
int cli_tunnel_env_count(const char *name, int def);

/*
 * `linkup start` step 7 for the tunnel data td of the upload that just
 * filled st: waits for the built-in tunnel, or starts cloudflared, then sets
 * st->tunnel to the normalised tunnel URL and saves the state. Progress goes
 * to stderr. Returns 0, or LK_EXIT_FAIL after printing
 * "Exited with error: ..." (for the built-in tunnel
 * "Failed to start: <last error or 'tunnel did not connect'> (logs: <path of
 * localserver-stderr>)").
 */
int cli_tunnel_start(struct lk_state *st, const struct cli_tunnel_data *td);

/* The tunnel as `status` and `health` show it. */
struct cli_tunnel_status {
    char *url;          /* owned; NULL when no tunnel is known */
    bool connected;     /* built-in: the local server says so; cloudflared: it runs */
    const char *source; /* static: "linkup", "cloudflared" or "none" */
    char *last_error;   /* owned; built-in tunnel's last error or NULL */
};

/* Asks the local server (GET /linkup/tunnel, 1 s) and, when it runs no
 * built-in tunnel, looks for cloudflared. st (may be NULL) gives the URL
 * when the server does not. Release out with cli_tunnel_status_release. */
void cli_tunnel_status_get(const struct lk_state *st, struct cli_tunnel_status *out);

/* Frees the strings of s. */
void cli_tunnel_status_release(struct cli_tunnel_status *s);

#endif
