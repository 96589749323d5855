/*
 * procs.c - spawning, identifying and stopping background processes.
 *
 * Invariant: no signal is sent to a pid unless cli_procs_is_ours() held for
 * it just before (DESIGN §2.12).
 */
#include "cli/procs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/home.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"

#define ENV_KEY "LINKUP_SERVICE_ID="

static void child_exec(const struct cli_spawn *sp, int out_fd, int err_fd)
{
    int null_fd = open("/dev/null", O_RDONLY);
    setsid();
    if (null_fd != -1)
        dup2(null_fd, STDIN_FILENO);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    setenv("LINKUP_SERVICE_ID", sp->service_id, 1);
    /* Names the Linkup directory even after the process replaced its
     * arguments (cli_procs_find_or_scan()). */
    setenv("LINKUP_HOME", cli_home(), 1);
    if (sp->rust_log != NULL)
        setenv("RUST_LOG", sp->rust_log, 1);
    execv(sp->argv[0], (char *const *)(uintptr_t)sp->argv);
    dprintf(STDERR_FILENO, "failed to run %s: %s\n", sp->argv[0], strerror(errno));
    _exit(127);
}

int cli_procs_spawn(const struct cli_spawn *sp, pid_t *pid)
{
    int out_fd = open(sp->stdout_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int err_fd = open(sp->stderr_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = LK_EIO;
    if (out_fd != -1 && err_fd != -1) {
        fflush(NULL);
        pid_t child = fork();
        if (child == 0)
            child_exec(sp, out_fd, err_fd);
        if (child > 0) {
            char text[32];
            int n = snprintf(text, sizeof(text), "%ld\n", (long)child);
            rc = sp->pid_path ? cli_write_file(sp->pid_path, text, (size_t)n) : 0;
            *pid = child;
        }
    }
    if (out_fd != -1)
        close(out_fd);
    if (err_fd != -1)
        close(err_fd);
    return rc;
}

/* Reads /proc/<pid>/<what> into out; 0 or an error. */
static int read_proc(pid_t pid, const char *what, struct lk_buf *out)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/%s", (long)pid, what);
    return cli_read_file(path, out, 1u << 20);
}

static bool is_zombie(pid_t pid)
{
    struct lk_buf stat = LK_BUF_INIT;
    bool zombie = true;
    if (read_proc(pid, "stat", &stat) == 0) {
        const char *paren = strrchr(stat.data, ')');
        zombie = paren == NULL || paren[1] == '\0' || paren[2] == 'Z' || paren[2] == 'X';
    }
    lk_buf_release(&stat);
    return zombie;
}

/* The value of variable key ("NAME=") in pid's environment (owned), or NULL. */
static char *env_of(pid_t pid, const char *key)
{
    struct lk_buf env = LK_BUF_INIT;
    char *value = NULL;
    if (read_proc(pid, "environ", &env) == 0) {
        for (size_t off = 0; off < env.len; off += strlen(env.data + off) + 1) {
            if (strncmp(env.data + off, key, strlen(key)) == 0) {
                value = lk_xstrdup(env.data + off + strlen(key));
                break;
            }
        }
    }
    lk_buf_release(&env);
    return value;
}

static bool env_is(pid_t pid, const char *key, const char *want)
{
    char *value = env_of(pid, key);
    bool is = value && strcmp(value, want) == 0;
    free(value);
    return is;
}

bool cli_procs_is_ours(pid_t pid, const char *service_id)
{
    if (pid <= 1 || pid == getpid() || is_zombie(pid))
        return false;
    return env_is(pid, ENV_KEY, service_id);
}

pid_t cli_procs_find(const char *pid_path, const char *service_id)
{
    struct lk_buf text = LK_BUF_INIT;
    pid_t pid = 0;
    if (cli_read_file(pid_path, &text, 64) == 0) {
        uint64_t v = 0;
        if (lk_str_to_u64(lk_str_trim(lk_buf_str(&text)), 4194304, &v) == 0 &&
            cli_procs_is_ours((pid_t)v, service_id))
            pid = (pid_t)v;
    }
    lk_buf_release(&text);
    return pid;
}

/* True when pid's arguments hold opt immediately followed by value. */
static bool has_arg_pair(pid_t pid, const char *opt, const char *value)
{
    struct lk_buf text = LK_BUF_INIT;
    bool found = false;
    if (read_proc(pid, "cmdline", &text) == 0) {
        const char *prev = NULL;
        for (size_t off = 0; off < text.len && !found; off += strlen(text.data + off) + 1) {
            found = prev != NULL && strcmp(prev, opt) == 0 && strcmp(text.data + off, value) == 0;
            prev = text.data + off;
        }
    }
    lk_buf_release(&text);
    return found;
}

/* The next process id of a /proc listing (d may be NULL), or 0 at its end. */
static pid_t next_pid(DIR *d)
{
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        uint64_t v = 0;
        if (lk_str_to_u64(lk_str_c(e->d_name), 4194304, &v) == 0)
            return (pid_t)v;
    }
    return 0;
}

/* True when pid belongs to this Linkup directory: its arguments hold opt
 * followed by value, or (a process that replaced its arguments, such as a
 * wrapper script that execs) its environment has this LINKUP_HOME, which
 * child_exec() sets. */
static bool is_this_home(pid_t pid, const char *opt, const char *value)
{
    return has_arg_pair(pid, opt, value) || env_is(pid, "LINKUP_HOME=", cli_home());
}

pid_t cli_procs_find_or_scan(const char *pid_path, const char *service_id, const char *opt,
                             const char *value)
{
    pid_t found = cli_procs_find(pid_path, service_id);
    if (found != 0 && is_this_home(found, opt, value))
        return found;
    found = 0;
    DIR *d = opendir("/proc");
    for (pid_t pid; found == 0 && (pid = next_pid(d)) != 0;) {
        if (cli_procs_is_ours(pid, service_id) && is_this_home(pid, opt, value))
            found = pid;
    }
    if (d)
        closedir(d);
    return found;
}

bool cli_procs_is_dead(pid_t pid)
{
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid)
        return true;
    if (kill(pid, 0) == -1 && errno == ESRCH)
        return true;
    return is_zombie(pid);
}

void cli_procs_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static bool wait_dead(pid_t pid, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        if (cli_procs_is_dead(pid))
            return true;
        cli_procs_sleep_ms(50);
    }
    return cli_procs_is_dead(pid);
}

bool cli_procs_stop(pid_t pid, int timeout_ms)
{
    /* SIGINT, as the original stops its background processes (SPEC §6.4);
     * unlike it we wait, and kill what does not stop. The process leads its
     * own group (setsid at spawn), so its children (if any) get the signal
     * too. */
    bool leads = getpgid(pid) == pid;
    kill(leads ? -pid : pid, SIGINT);
    if (wait_dead(pid, timeout_ms))
        return true;
    kill(leads ? -pid : pid, SIGKILL);
    return wait_dead(pid, 2000);
}

/* Options whose value is a secret: shown masked (DESIGN §2.13). */
static bool is_secret_option(const char *arg, size_t n)
{
    static const char *const opts[] = { "--worker-token", "--token",   "--peer-secret",
                                        "--api-key",      "-k",        "--tunnel-secret",
                                        "--secret",       "--password" };
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        if (strlen(opts[i]) == n && memcmp(arg, opts[i], n) == 0)
            return true;
    }
    return false;
}

/* pid's arguments joined by spaces, with the values of secret options
 * masked ("--worker-token tok…3f", "--token=tok…3f"), truncated to cap. */
static void read_cmdline(pid_t pid, char *cmd, size_t cap)
{
    struct lk_buf text = LK_BUF_INIT;
    struct lk_buf out = LK_BUF_INIT;
    bool secret_next = false;
    cmd[0] = '\0';
    if (read_proc(pid, "cmdline", &text) == 0) {
        for (size_t off = 0; off < text.len; off += strlen(text.data + off) + 1) {
            const char *arg = text.data + off;
            const char *eq = strchr(arg, '=');
            if (out.len > 0)
                lk_buf_addch(&out, ' ');
            if (secret_next) {
                lk_config_mask_secret(arg, &out);
                secret_next = false;
            } else if (arg[0] == '-' && eq != NULL && is_secret_option(arg, (size_t)(eq - arg))) {
                lk_buf_add(&out, arg, (size_t)(eq + 1 - arg));
                lk_config_mask_secret(eq + 1, &out);
            } else {
                lk_buf_adds(&out, arg);
                secret_next = is_secret_option(arg, strlen(arg));
            }
        }
        while (out.len > 0 && out.data[out.len - 1] == ' ')
            out.len--;
        snprintf(cmd, cap, "%.*s", (int)out.len, out.len ? out.data : "");
    }
    lk_buf_release(&out);
    lk_buf_release(&text);
}

size_t cli_procs_scan(const pid_t *skip, size_t n_skip, struct cli_proc_info *out, size_t max)
{
    DIR *d = opendir("/proc");
    size_t n = 0;
    for (pid_t pid; n < max && (pid = next_pid(d)) != 0;) {
        if (pid == getpid())
            continue;
        bool skipped = false;
        for (size_t i = 0; i < n_skip; i++)
            skipped = skipped || skip[i] == pid;
        char *value = skipped || is_zombie(pid) ? NULL : env_of(pid, ENV_KEY);
        if (value == NULL)
            continue;
        free(value);
        out[n].pid = pid;
        read_cmdline(pid, out[n].cmd, sizeof(out[n].cmd));
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

int cli_procs_self_exe(char *buf, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return 0;
}
