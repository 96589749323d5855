/*
 * procs.h - the CLI's background processes (SPEC §6.4, DESIGN §2.12).
 *
 * A background process is spawned detached (new session and process group,
 * stdin /dev/null, stdout/stderr to log files) with LINKUP_SERVICE_ID=<id> in
 * its environment, and its pid is written to a pid file. It is found again
 * through that pid file, and only trusted when /proc/<pid>/environ holds
 * exactly LINKUP_SERVICE_ID=<id>: a stale pid file that now names an
 * unrelated process is never signalled.
 *
 * Linux only (/proc). Not thread-safe (fork).
 */
#ifndef LK_CLI_PROCS_H
#define LK_CLI_PROCS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The LINKUP_SERVICE_ID of the local server. */
#define CLI_LOCAL_SERVER_ID "linkup-local-server"
/* The LINKUP_SERVICE_ID of cloudflared (tunnel issue). */
#define CLI_TUNNEL_ID "cloudflare-tunnel"

/* What to spawn. All pointers are borrowed. */
struct cli_spawn {
    const char *const *argv; /* argv[0] is the program path; NULL-terminated */
    const char *service_id;  /* value of LINKUP_SERVICE_ID */
    const char *stdout_path; /* truncated */
    const char *stderr_path; /* truncated */
    const char *pid_path;    /* written with the decimal pid and "\n"; NULL: the
                                program writes its own (cloudflared --pidfile) */
    const char *rust_log;    /* value of RUST_LOG in the child (SPEC §6.4), or NULL */
};

/* Spawns sp. On success sets *pid and returns 0; LK_EIO when fork or the log
 * files fail (errno kept). The child is not waited for; see cli_procs_reap. */
int cli_procs_spawn(const struct cli_spawn *sp, pid_t *pid);

/* True when process pid is alive (not a zombie) and its environment contains
 * exactly LINKUP_SERVICE_ID=service_id. */
bool cli_procs_is_ours(pid_t pid, const char *service_id);

/* The pid recorded in pid_path when cli_procs_is_ours() holds for it, else 0. */
pid_t cli_procs_find(const char *pid_path, const char *service_id);

/* The process of pid_path, else the first process of the table, for which
 * cli_procs_is_ours(pid, service_id) holds and whose arguments hold opt
 * immediately followed by value (or, when it replaced its arguments, whose
 * environment names this LINKUP_HOME), else 0: a process whose pid file is gone is
 * found again (SPEC §6.4 scans the process table); the argument pins it to
 * one Linkup directory, so a pid file naming another directory's process is
 * stale (DESIGN §2.12). */
pid_t cli_procs_find_or_scan(const char *pid_path, const char *service_id, const char *opt,
                             const char *value);

/* True when pid is gone or a zombie (reaping it when it is our child). */
bool cli_procs_is_dead(pid_t pid);

/* Sends SIGTERM to pid (and its process group when it leads one), waits up
 * to timeout_ms for it to exit, then sends SIGKILL. Returns true when the
 * process is gone. */
bool cli_procs_stop(pid_t pid, int timeout_ms);

/* A process found by cli_procs_scan. */
struct cli_proc_info {
    pid_t pid;
    char cmd[256]; /* command line, arguments joined by spaces, truncated */
};

/* Lists up to max processes whose environment holds LINKUP_SERVICE_ID=<any
 * value>, except the pids in skip[0..n_skip) and this process. Returns the
 * number written to out. */
size_t cli_procs_scan(const pid_t *skip, size_t n_skip, struct cli_proc_info *out, size_t max);

/* Sleeps ms milliseconds (EINTR resumed). */
void cli_procs_sleep_ms(long ms);

/* Absolute path of the running executable into buf (cap bytes). 0 or -1. */
int cli_procs_self_exe(char *buf, size_t cap);

#endif
