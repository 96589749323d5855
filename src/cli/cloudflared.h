/*
 * cloudflared.h - driving `cloudflared` for tunnel data that are Cloudflare
 * credentials (SPEC §7, DESIGN §2.12).
 *
 * Files: $HOME/.cloudflared/{id}.json (credentials, mode 0600) and
 * $HOME/.cloudflared/config.yml (overwritten on every start), logs in
 * $LINKUP_HOME/cloudflared-stdout|stderr, pid file
 * $LINKUP_HOME/cloudflared-pid written by cloudflared itself (--pidfile).
 * The process is trusted only when its environment carries
 * LINKUP_SERVICE_ID=cloudflare-tunnel (procs.h).
 *
 * Deliberate difference: config.yml says `url: http://<local server address>`
 * (LINKUP_HTTP_ADDR or the address `start` recorded, 0.0.0.0 read as
 * 127.0.0.1) instead of the fixed `http://localhost`, because our local
 * server's port is configurable.
 *
 * Waits, overridable from the environment (tests): pid file
 * LINKUP_TUNNEL_PID_RETRIES (11) x LINKUP_TUNNEL_PID_INTERVAL_MS (1000); DNS
 * LINKUP_TUNNEL_DNS_RETRIES (21) x LINKUP_TUNNEL_DNS_INTERVAL_MS (2000).
 *
 * Blocking; CLI only; not thread-safe (fork).
 */
#ifndef LK_CLI_CLOUDFLARED_H
#define LK_CLI_CLOUDFLARED_H

#include <stdbool.h>
#include <sys/types.h>

#include "cli/tunnel.h"

/* Name of the pid file and logs inside the Linkup directory. */
#define CLI_CLOUDFLARED_PID_FILE "cloudflared-pid"
#define CLI_CLOUDFLARED_STDOUT   "cloudflared-stdout"
#define CLI_CLOUDFLARED_STDERR   "cloudflared-stderr"

/*
 * SPEC §7 steps 1-7 for td (kind CLI_TUNNEL_CLOUDFLARE): skips when our
 * cloudflared already runs ("Already running. Skipping starting tunnel."),
 * writes the credentials and config.yml, spawns `cloudflared tunnel
 * --pidfile <pid file> run` found on PATH, waits for its pid file and for
 * the tunnel host to resolve (A record). Progress on stderr; "Started!" on
 * success. Returns 0, or LK_EXIT_FAIL after printing "Exited with error:"
 * and one of: "Failed while handing file: <e>", the OS error text when
 * cloudflared is not on PATH, "Failed to start: Failed to find pidfile
 * (logs: <stderr log>)", "Failed to verify that DNS got propagated". A
 * cloudflared that never wrote its pid file is stopped; after a DNS failure
 * it keeps running (as in the original; `linkup stop` stops it).
 */
int cli_cloudflared_start(const struct cli_tunnel_data *td);

/* The pid of our running cloudflared (pid file + environment; without a
 * pid file, a process with that environment whose arguments hold
 * `--pidfile $LINKUP_HOME/cloudflared-pid`), or 0. */
pid_t cli_cloudflared_find(void);

/* Stops our cloudflared (SIGTERM to its group, up to 5 s, then SIGKILL) and
 * removes the pid file. Returns true when one was running. */
bool cli_cloudflared_stop(void);

#endif
