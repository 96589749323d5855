/*
 * cmd_start.c - `linkup start` (SPEC §6.5.1 with DESIGN §2.6, §2.12, §3).
 *
 * Order matters: the state is saved before env files are touched, so a
 * failing start can still be undone by `linkup stop`. The tunnel step
 * (tunnel.h) runs after the upload, whose answer carries the tunnel data.
 * The server's address is recorded from its "HTTP listening on A:P" line, so
 * a LINKUP_HTTP_ADDR on port 0 (an ephemeral port) works too (DESIGN §3).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/home.h"
#include "cli/http.h"
#include "cli/procs.h"
#include "cli/tunnel.h"
#include "core/alloc.h"

#define START_RETRIES 10
/* How much of the server's stdout is searched for its listening line. */
#define START_STDOUT_MAX (64u * 1024u)
/* The longest address accepted from that line ("[v6]:port" fits). */
#define START_ADDR_MAX 128

static const char start_usage[] = "Start a new linkup session\n\n"
                                  "Usage: linkup start [OPTIONS]\n\n"
                                  "Options:\n"
                                  "  -c, --config <CONFIG>  Path to config file\n"
                                  "  -h, --help             Print help\n";

static bool already_running(void)
{
    struct lk_state *st = NULL;
    if (cli_state_load(&st, NULL) != 0)
        return false;
    lk_state_free(st);
    return cli_local_check(1000);
}

/* Step 2: a fresh state from the config, keeping name, token and tunnel. */
static struct lk_state *new_state(const struct lk_config *cfg, const char *abs_path)
{
    struct lk_state *st = cli_state_from_config(cfg, abs_path);
    struct lk_state *old = NULL;
    if (cli_state_load(&old, NULL) == 0) {
        lk_state_set_str(&st->session_name, old->session_name);
        lk_state_set_str(&st->session_token, old->session_token);
        lk_state_set_str(&st->tunnel, old->tunnel);
    }
    lk_state_free(old);
    if (st->session_token[0] == '\0') {
        char token[17];
        cli_random_token(token);
        lk_state_set_str(&st->session_token, token);
    }
    return st;
}

/* Step 4: files of older versions. */
static void delete_old_states(void)
{
    DIR *d = opendir(cli_home());
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "state-", 6) != 0)
            continue;
        struct lk_buf path = LK_BUF_INIT;
        cli_home_file(e->d_name, &path);
        unlink(path.data);
        lk_buf_release(&path);
    }
    if (d)
        closedir(d);
}

/* The last non-empty line of the server's stderr, for error messages, without
 * the server's own "Exited with error: " (start prints its own), and not a
 * usage hint ("Run 'linkup server --help' for usage.") but the error before
 * it. When the server could not bind a port below 1024, that line carries
 * the setcap command to run (server.c, issue 10), so start fails with it
 * too. */
static void last_log_line(const char *path, struct lk_buf *out)
{
    static const char prefix[] = "Exited with error: ";
    struct lk_buf text = LK_BUF_INIT;
    if (cli_read_file(path, &text, 1u << 20) == 0) {
        struct lk_str t = lk_str_trim(lk_buf_str(&text));
        const char *nl = t.len ? memrchr(t.ptr, '\n', t.len) : NULL;
        const char *from = nl ? nl + 1 : t.ptr;
        size_t len = (size_t)(t.ptr + t.len - from);
        struct lk_str last = { from, len };
        if (nl != NULL && lk_str_starts_with(last, LK_STR("Run '")) &&
            lk_str_ends_with(last, LK_STR("' for usage."))) {
            struct lk_str rest = lk_str_trim((struct lk_str){ t.ptr, (size_t)(nl - t.ptr) });
            nl = rest.len ? memrchr(rest.ptr, '\n', rest.len) : NULL;
            from = nl ? nl + 1 : rest.ptr;
            len = (size_t)(rest.ptr + rest.len - from);
        }
        if (len >= sizeof(prefix) - 1 && memcmp(from, prefix, sizeof(prefix) - 1) == 0) {
            from += sizeof(prefix) - 1;
            len -= sizeof(prefix) - 1;
        }
        lk_buf_add(out, from, len);
    }
    lk_buf_release(&text);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* The files of one spawned server (paths in the Linkup directory). */
struct server_files {
    struct lk_buf out, err, pid, addr;
};

/* The address of the first complete "HTTP listening on A:P" line of the
 * server's stdout into addr (DESIGN §3: printed, flushed, once it listens).
 * False while there is none yet; a line not ended by "\n" is not yet whole. */
static bool read_bound_addr(const char *out_path, struct lk_buf *addr)
{
    static const char prefix[] = "HTTP listening on ";
    struct lk_buf text = LK_BUF_INIT;
    bool found = false;
    /* The line comes first; LK_ELIMIT still leaves what was read. */
    (void)cli_read_file(out_path, &text, START_STDOUT_MAX);
    struct lk_str rest = lk_buf_str(&text);
    long nl;
    while (!found && (nl = lk_str_index(rest, '\n')) >= 0) {
        struct lk_str line = { rest.ptr, (size_t)nl };
        rest.ptr += nl + 1;
        rest.len -= (size_t)nl + 1;
        if (!lk_str_starts_with(line, lk_str_c(prefix)))
            continue;
        line.ptr += sizeof(prefix) - 1;
        line.len -= sizeof(prefix) - 1;
        line = lk_str_trim(line);
        /* "127.0.0.1:46729", "[::1]:46729": one word, a real port. */
        lk_buf_reset(addr);
        lk_buf_add(addr, line.ptr, line.len);
        found = line.len > 0 && line.len <= START_ADDR_MAX && strpbrk(addr->data, " \t") == NULL &&
                strchr(addr->data, ':') != NULL && !cli_addr_is_ephemeral(addr->data);
    }
    lk_buf_release(&text);
    return found;
}

/* Records the address the server bound once its stdout names it, so this
 * and later commands reach it there (cli_local_addr), and sets *recorded.
 * Returns 0, or LK_EXIT_FAIL (printed) when the address cannot be saved. */
static int record_bound_addr(const struct server_files *f, bool *recorded)
{
    struct lk_buf bound = LK_BUF_INIT;
    int rc = 0;
    if (read_bound_addr(f->out.data, &bound)) {
        if (cli_write_file(f->addr.data, bound.data, bound.len) != 0)
            rc = cli_fail("Failed to start the local server: cannot write %s: %s", f->addr.data,
                          strerror(errno));
        *recorded = rc == 0;
        cli_local_addr_reset();
    }
    lk_buf_release(&bound);
    return rc;
}

/* Waits for /linkup/check; fails early when the child died (port taken).
 * The check goes to the address the server printed, once it printed it. */
static int wait_ready(pid_t pid, const struct server_files *f)
{
    bool recorded = false;
    for (int retry = 0; retry <= START_RETRIES; retry++) {
        if (retry > 0) {
            cli_log(LK_LOG_INFO, "Waiting for server... retry #%d", retry);
            sleep_ms(1000);
        }
        if (!recorded && record_bound_addr(f, &recorded) != 0) {
            cli_procs_stop(pid, 2000);
            return LK_EXIT_FAIL;
        }
        /* Only once our server printed its line: a port it could not take
         * may be held by another Linkup directory's server, which answers
         * /linkup/check as well (issue 5: a taken port fails start). */
        if (recorded && cli_local_check(1000))
            return 0;
        if (cli_procs_is_dead(pid)) {
            struct lk_buf why = LK_BUF_INIT;
            last_log_line(f->err.data, &why);
            /* SPEC §6.5.1 step 5's error first, then why and where to look. */
            int rc = cli_fail(
                "Failed to reach the local server: the local server exited during start-up: "
                "%s (logs: %s)",
                why.len ? why.data : "no output", f->err.data);
            lk_buf_release(&why);
            return rc;
        }
    }
    cli_procs_stop(pid, 2000);
    cli_log(LK_LOG_ERROR, "Local server logs: %s", f->err.data);
    return cli_fail("Failed to reach the local server");
}

/* Before the spawn, localserver-http holds the listen address, or nothing
 * when its port is 0 (a stale address must not be polled meanwhile). */
static int record_listen_addr(const char *path, const char *listen)
{
    int rc = 0;
    if (!cli_addr_is_ephemeral(listen))
        rc = cli_write_file(path, listen, strlen(listen));
    else if (unlink(path) == -1 && errno != ENOENT)
        rc = -1;
    cli_local_addr_reset();
    return rc;
}

static int spawn_server(const char *config_path)
{
    char self[4096];
    if (cli_procs_self_exe(self, sizeof(self)) != 0)
        return cli_fail("Failed to start the local server: cannot find the linkup binary");
    const char *listen = cli_local_listen_addr();
    struct lk_buf certs = LK_BUF_INIT;
    cli_home_file("certs", &certs);
    /* SPEC §6.4: `linkup server --certs-dir <linkup dir>/certs`, plus the
     * config and address (DESIGN §2.6, §3). */
    const char *argv[] = { self,        "server", "--certs-dir", certs.data, "--config",
                           config_path, "--http", listen,        NULL };
    struct server_files f = { LK_BUF_INIT, LK_BUF_INIT, LK_BUF_INIT, LK_BUF_INIT };
    cli_home_file(CLI_SERVER_STDOUT, &f.out);
    cli_home_file(CLI_SERVER_STDERR, &f.err);
    cli_home_file(CLI_SERVER_PID_FILE, &f.pid);
    cli_home_file(CLI_SERVER_ADDR_FILE, &f.addr);
    struct cli_spawn sp = { argv, CLI_LOCAL_SERVER_ID, f.out.data, f.err.data, f.pid.data,
                            /* SPEC §6.4; our server reads LINKUP_LOG, not this. */
                            "info,hickory_server=warn,hyper_util=warn,h2=warn,tower_http=info" };
    pid_t pid = 0;
    int rc;
    /* Later commands find the server at the address recorded here. */
    if (record_listen_addr(f.addr.data, listen) != 0 || cli_procs_spawn(&sp, &pid) != 0)
        rc = cli_fail("Failed to start the local server: %s", strerror(errno));
    else
        rc = wait_ready(pid, &f);
    if (rc != 0 && pid > 0)
        unlink(f.pid.data);
    if (rc != 0) {
        /* No server answers there: later commands must not talk to
         * whatever holds that port (it may be the worker). */
        unlink(f.addr.data);
        cli_local_addr_reset();
    }
    lk_buf_release(&f.out);
    lk_buf_release(&f.err);
    lk_buf_release(&f.pid);
    lk_buf_release(&f.addr);
    lk_buf_release(&certs);
    return rc;
}

static int start_server(const char *config_path)
{
    pid_t pid = cli_local_server_find();
    if (pid > 0) {
        cli_log(LK_LOG_INFO, "Already running.");
        return 0;
    }
    return spawn_server(config_path);
}

static void print_session(const struct lk_state *st)
{
    struct cli_rows rows = { 0 };
    const char **domains = lk_xcalloc(st->n_domains + 1, sizeof(char *));
    for (size_t i = 0; i < st->n_domains; i++)
        domains[i] = st->domains[i].domain;
    cli_rows_add(&rows, st->session_name, "tunneled", domains, st->n_domains);
    printf("\n");
    cli_rows_print(&rows, NULL);
    free(domains);
    cli_rows_release(&rows);
}

/* Step 7: the tunnel the upload's answer describes (tunnel.h). */
static int start_tunnel(struct lk_state *st, bool wants_tunnel, const struct lk_buf *answer)
{
    if (!wants_tunnel) {
        cli_log(LK_LOG_INFO, "Skipping. State file requested no tunnel.");
        return 0;
    }
    struct cli_tunnel_data td;
    cli_tunnel_data_from_upsert(answer->data, answer->len, &td);
    int rc = cli_tunnel_start(st, &td);
    cli_tunnel_data_release(&td);
    return rc;
}

static int run_start(struct lk_state *st)
{
    struct lk_buf err = LK_BUF_INIT;
    struct lk_buf answer = LK_BUF_INIT;
    int rc = 0;
    if (cli_state_save(st) != 0)
        rc = cli_fail("Failed to save state file: %s", strerror(errno));
    else if (cli_env_inject(st, &err) != 0)
        rc = cli_fail("%s", err.data);
    if (rc != 0)
        goto out;
    delete_old_states();
    rc = start_server(st->config_path);
    if (rc != 0)
        goto out;
    bool wants_tunnel = st->tunnel != NULL;
    if (cli_upload(st, &answer, &err) != 0) {
        cli_log(LK_LOG_ERROR, "Failed to upload state: %s", err.data);
        rc = cli_fail("%s", err.data);
        goto out;
    }
    rc = start_tunnel(st, wants_tunnel, &answer);
    if (rc == 0)
        print_session(st);
out:
    lk_buf_release(&answer);
    lk_buf_release(&err);
    return rc;
}

int cmd_start(int argc, char **argv, struct cli_ctx *ctx)
{
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(start_usage, stdout);
            return LK_EXIT_OK;
        }
        return cli_usage_error("start", "unexpected argument '%s'", argv[i]);
    }
    cli_args_done(ctx);
    int rc = cli_home_ensure();
    if (rc != 0)
        return rc;
    cli_home_lock();
    if (already_running()) {
        printf("Linkup is already running. Run 'linkup stop' first to restart.\n");
        return LK_EXIT_OK;
    }
    struct lk_config *cfg = NULL;
    char *abs_path = NULL;
    rc = cli_config_load(ctx, &cfg, &abs_path);
    if (rc != 0)
        return rc;
    struct lk_state *st = new_state(cfg, abs_path);
    rc = run_start(st);
    lk_state_free(st);
    lk_config_free(cfg);
    free(abs_path);
    return rc;
}
