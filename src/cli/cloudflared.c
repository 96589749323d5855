/*
 * cloudflared.c - starting and stopping cloudflared (SPEC §7).
 *
 * Invariants: the pid file is cloudflared's own (--pidfile), so a stale one
 * is removed before each spawn and the wait never trusts an older process;
 * the tunnel id names a file, so only [A-Za-z0-9_-] ids are accepted.
 */
#include "cli/cloudflared.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/home.h"
#include "cli/http.h"
#include "cli/procs.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/url.h"
#include "proto/dns.h"

#define MAX_ID_LEN 128

static const char *user_home(void)
{
    const char *h = getenv("HOME");
    if (h && *h)
        return h;
    const struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_dir ? pw->pw_dir : "/var/tmp";
}

static bool is_safe_id(const char *id)
{
    size_t len = strlen(id);
    if (len == 0 || len > MAX_ID_LEN)
        return false;
    return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == len;
}

/* Appends an OS error the way the original prints one. */
static void add_os_error(struct lk_buf *err, int e)
{
    lk_buf_addf(err, "%s (os error %d)", strerror(e), e);
}

/* Writes $HOME/.cloudflared/{id}.json; its path goes to cred_path. */
static int write_credentials(const struct cli_tunnel_data *td, struct lk_buf *cred_path,
                             struct lk_buf *err)
{
    struct lk_buf dir = LK_BUF_INIT;
    lk_buf_addf(&dir, "%s/.cloudflared", user_home());
    lk_buf_addf(cred_path, "%s/%s.json", dir.data, td->id);
    int e = 0;
    if (mkdir(dir.data, 0700) == -1 && errno != EEXIST) {
        e = errno;
    } else {
        json_t *cred = json_pack("{s:s,s:s,s:s}", "AccountTag", td->account_id, "TunnelID", td->id,
                                 "TunnelSecret", td->secret);
        char *text = json_dumps(cred, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (cli_write_file(cred_path->data, text, strlen(text)) != 0)
            e = errno;
        free(text);
        json_decref(cred);
    }
    if (e != 0)
        add_os_error(err, e);
    int rc = e != 0 ? LK_EIO : 0;
    lk_buf_release(&dir);
    return rc;
}

/* Writes $HOME/.cloudflared/config.yml pointing the tunnel at our local
 * server (its configurable address, not a fixed port 80). */
static int write_config(const struct cli_tunnel_data *td, const char *cred_path, struct lk_buf *err)
{
    struct lk_buf path = LK_BUF_INIT;
    struct lk_buf text = LK_BUF_INIT;
    lk_buf_addf(&path, "%s/.cloudflared/config.yml", user_home());
    lk_buf_addf(&text, "url: http://%s\ntunnel: %s\ncredentials-file: %s\n", cli_local_addr(),
                td->id, cred_path);
    int rc = cli_write_file(path.data, text.data, text.len);
    if (rc != 0)
        add_os_error(err, errno);
    lk_buf_release(&path);
    lk_buf_release(&text);
    return rc;
}

/* Finds name on $PATH (execvp's default path when unset) into out. */
static int find_on_path(const char *name, struct lk_buf *out)
{
    const char *path = getenv("PATH");
    const char *p = path ? path : "/usr/local/bin:/bin:/usr/bin";
    for (;;) {
        size_t len = strcspn(p, ":");
        struct stat sb;
        lk_buf_reset(out);
        lk_buf_addf(out, "%.*s/%s", (int)(len ? len : 1), len ? p : ".", name);
        if (stat(out->data, &sb) == 0 && S_ISREG(sb.st_mode) && access(out->data, X_OK) == 0)
            return 0;
        if (p[len] == '\0')
            return LK_ENOTFOUND;
        p += len + 1;
    }
}

static void truncate_log(const char *name)
{
    struct lk_buf path = LK_BUF_INIT;
    cli_home_file(name, &path);
    int fd = open(path.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd != -1)
        close(fd);
    lk_buf_release(&path);
}

static int spawn(const char *exe, const char *pid_path, pid_t *pid)
{
    const char *argv[] = { exe, "tunnel", "--pidfile", pid_path, "run", NULL };
    struct lk_buf out = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    cli_home_file(CLI_CLOUDFLARED_STDOUT, &out);
    cli_home_file(CLI_CLOUDFLARED_STDERR, &err);
    struct cli_spawn sp = { argv, CLI_TUNNEL_ID, out.data, err.data, NULL, NULL };
    unlink(pid_path);
    int rc = cli_procs_spawn(&sp, pid);
    lk_buf_release(&out);
    lk_buf_release(&err);
    return rc;
}

/* SPEC §7 step 6. A child that died will never write the file: stop early. */
static bool wait_pidfile(pid_t child, const char *pid_path)
{
    int retries = cli_tunnel_env_count("LINKUP_TUNNEL_PID_RETRIES", 11);
    int interval = cli_tunnel_env_count("LINKUP_TUNNEL_PID_INTERVAL_MS", 1000);
    for (int retry = 0; retry <= retries; retry++) {
        if (retry > 0) {
            cli_log(LK_LOG_INFO, "Waiting for tunnel... retry #%d", retry);
            cli_procs_sleep_ms(interval);
        }
        if (cli_procs_find(pid_path, CLI_TUNNEL_ID) > 0)
            return true;
        if (cli_procs_is_dead(child))
            return false;
    }
    return false;
}

/* An A record for host, through the system resolver configuration. Names
 * under localhost are the loopback address without a query (RFC 6761 §6.3),
 * as in the original's resolver, whatever the system's NSS makes of them. */
static bool resolves(const char *host)
{
    if (lk_dns_name_at_or_under(host, "localhost"))
        return true;
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    bool ok = getaddrinfo(host, NULL, &hints, &res) == 0 && res != NULL;
    if (res)
        freeaddrinfo(res);
    return ok;
}

/* SPEC §7 step 7. */
static bool wait_dns(const char *url)
{
    int retries = cli_tunnel_env_count("LINKUP_TUNNEL_DNS_RETRIES", 21);
    int interval = cli_tunnel_env_count("LINKUP_TUNNEL_DNS_INTERVAL_MS", 2000);
    struct lk_url u;
    memset(&u, 0, sizeof(u));
    bool ok = false;
    if (lk_url_parse(url, strlen(url), &u, NULL) != 0 || u.host[0] == '\0')
        return false;
    for (int retry = 0; retry <= retries && !ok; retry++) {
        if (retry > 0) {
            cli_log(LK_LOG_INFO, "Waiting for tunnel DNS to propagate... retry #%d", retry);
            cli_procs_sleep_ms(interval);
        }
        ok = resolves(u.host);
    }
    lk_url_release(&u);
    return ok;
}

/* Steps 2-4: logs truncated, credentials and config.yml written. */
static int prepare(const struct cli_tunnel_data *td)
{
    struct lk_buf cred = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    int rc = 0;
    truncate_log(CLI_CLOUDFLARED_STDOUT);
    truncate_log(CLI_CLOUDFLARED_STDERR);
    if (!is_safe_id(td->id))
        lk_buf_addf(&err, "invalid tunnel id '%s'", td->id);
    else if (write_credentials(td, &cred, &err) == 0)
        write_config(td, cred.data, &err);
    if (err.len > 0)
        rc = cli_fail("Failed while handing file: %s", err.data);
    lk_buf_release(&cred);
    lk_buf_release(&err);
    return rc;
}

/* Steps 5-6: spawned and its pid file seen. */
static int launch(const char *pid_path)
{
    struct lk_buf exe = LK_BUF_INIT;
    pid_t child = 0;
    int rc = 0;
    if (find_on_path("cloudflared", &exe) != 0) {
        cli_log(LK_LOG_ERROR, "Failed to start: cloudflared was not found on PATH");
        rc = cli_fail("%s (os error %d)", strerror(ENOENT), ENOENT);
    } else if (spawn(exe.data, pid_path, &child) != 0) {
        rc = cli_fail("Failed to start: %s (os error %d)", strerror(errno), errno);
    } else if (!wait_pidfile(child, pid_path)) {
        struct lk_buf log = LK_BUF_INIT;
        cli_home_file(CLI_CLOUDFLARED_STDERR, &log);
        if (!cli_procs_is_dead(child))
            cli_procs_stop(child, 2000);
        /* SPEC §7 step 6: this log line and error; between them issue 7's
         * "Failed to start: …" with the log path. */
        cli_log(LK_LOG_ERROR, "Failed to start tunnel");
        cli_log(LK_LOG_ERROR,
                "Failed to start: cloudflared wrote no pid file (cloudflared logs: %s)", log.data);
        rc = cli_fail("Failed to find pidfile");
        lk_buf_release(&log);
    }
    lk_buf_release(&exe);
    return rc;
}

int cli_cloudflared_start(const struct cli_tunnel_data *td)
{
    if (cli_cloudflared_find() > 0) {
        cli_log(LK_LOG_INFO, "Already running. Skipping starting tunnel.");
        return 0;
    }
    struct lk_buf pid_path = LK_BUF_INIT;
    cli_home_file(CLI_CLOUDFLARED_PID_FILE, &pid_path);
    int rc = prepare(td);
    if (rc == 0)
        rc = launch(pid_path.data);
    if (rc == 0 && !wait_dns(td->url)) {
        cli_log(LK_LOG_ERROR, "Failed to propagate tunnel DNS");
        rc = cli_fail("Failed to verify that DNS got propagated");
    }
    if (rc == 0)
        cli_log(LK_LOG_INFO, "Started!");
    lk_buf_release(&pid_path);
    return rc;
}

pid_t cli_cloudflared_find(void)
{
    struct lk_buf path = LK_BUF_INIT;
    cli_home_file(CLI_CLOUDFLARED_PID_FILE, &path);
    /* The `--pidfile` of its command line (SPEC §7 step 5) keeps another
     * Linkup directory's cloudflared out. */
    pid_t pid = cli_procs_find_or_scan(path.data, CLI_TUNNEL_ID, "--pidfile", path.data);
    lk_buf_release(&path);
    return pid;
}

bool cli_cloudflared_stop(void)
{
    struct lk_buf path = LK_BUF_INIT;
    cli_home_file(CLI_CLOUDFLARED_PID_FILE, &path);
    pid_t pid = cli_cloudflared_find();
    if (pid > 0)
        cli_procs_stop(pid, 5000);
    /* A pid file that names no cloudflared of ours is stale: drop it. */
    unlink(path.data);
    lk_buf_release(&path);
    return pid > 0;
}
