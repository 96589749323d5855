/*
 * update_install.c - replacing the running binary with a released one
 * (`linkup update`, SPEC §6.5.9, DESIGN §2.15): download into a temp file in
 * the binary's own directory while hashing, verify the SHA-256, unpack a
 * .tar.gz with tar(1), chmod 0755, rename over the binary, setcap.
 *
 * Invariant: the running binary is only ever touched by the final rename(2),
 * which is atomic because the temp file lives in the same directory; every
 * failure before it deletes the temp files and leaves the old binary as it
 * was.
 */
#include "cli/update_install.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/home.h"
#include "cli/http.h"
#include "cli/update.h"
#include "core/err.h"
#include "core/sha256.h"
#include "net/curl_dl.h"
#include "proto/http1.h"

extern char **environ;

#define DOWNLOAD_MAX_BYTES  (1024ull * 1024ull * 1024ull)
#define DOWNLOAD_CONNECT_MS 10000L
#define DOWNLOAD_STALL_S    30L
#define TAR_LIST_MAX_BYTES  (1u * 1024u * 1024u)

/* State of one download. */
struct download {
    int fd;
    const char *name; /* borrowed: shown in the progress line */
    struct lk_sha256 sha;
    uint64_t n_bytes;
    bool too_big;
    int write_errno; /* non-zero when writing the temp file failed */
    bool progress;   /* stderr is a terminal */
    int last_pct;
    uint64_t last_shown;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *data)
{
    struct download *d = data;
    size_t n = size * nmemb;
    if (d->n_bytes + n > DOWNLOAD_MAX_BYTES) {
        d->too_big = true;
        return 0;
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(d->fd, ptr + off, n - off);
        if (w == -1 && errno == EINTR)
            continue;
        if (w == -1) {
            d->write_errno = errno;
            return 0;
        }
        off += (size_t)w;
    }
    lk_sha256_update(&d->sha, ptr, n);
    d->n_bytes += n;
    return n;
}

/* "1.5 MiB"-style size into out (cap bytes). */
static void human_size(uint64_t n, char *out, size_t cap)
{
    if (n < 1024)
        snprintf(out, cap, "%" PRIu64 " B", n);
    else if (n < 1024 * 1024)
        snprintf(out, cap, "%.1f KiB", (double)n / 1024.0);
    else
        snprintf(out, cap, "%.1f MiB", (double)n / (1024.0 * 1024.0));
}

static int on_progress(void *data, curl_off_t total, curl_off_t now, curl_off_t ut, curl_off_t un)
{
    struct download *d = data;
    char have[32];
    char all[32];
    (void)ut;
    (void)un;
    if (now <= 0)
        return 0;
    human_size((uint64_t)now, have, sizeof(have));
    if (total > 0) {
        int pct = (int)((now * 100) / total);
        if (pct == d->last_pct)
            return 0;
        d->last_pct = pct;
        human_size((uint64_t)total, all, sizeof(all));
        fprintf(stderr, "\rDownloading %s: %3d%% (%s / %s)", d->name, pct, have, all);
    } else {
        if ((uint64_t)now - d->last_shown < 64 * 1024)
            return 0;
        d->last_shown = (uint64_t)now;
        fprintf(stderr, "\rDownloading %s: %s", d->name, have);
    }
    return 0;
}

/* Downloads url into fd, hashing it; hex receives the SHA-256. */
static int download(const char *url, const char *name, int fd, char hex[2 * LK_SHA256_LEN + 1],
                    struct lk_buf *err)
{
    struct download d = { .fd = fd, .name = name, .last_pct = -1 };
    const struct lk_curl *lc;
    unsigned char digest[LK_SHA256_LEN];
    long status = 0;
    int rc = 0;

    lk_sha256_init(&d.sha);
    d.progress = isatty(STDERR_FILENO) == 1;
    CURL *c = cli_release_curl(url, 10L, on_data, &d, &lc, err);
    if (c == NULL)
        return LK_EIO;
    lc->easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    lc->easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, DOWNLOAD_CONNECT_MS);
    /* No overall timeout (binaries are large, links slow), but a stalled
     * transfer is abandoned. */
    lc->easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    lc->easy_setopt(c, CURLOPT_LOW_SPEED_TIME, DOWNLOAD_STALL_S);
    if (d.progress) {
        lc->easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        lc->easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        lc->easy_setopt(c, CURLOPT_XFERINFODATA, &d);
    }
    CURLcode cc = lc->easy_perform(c);
    if (d.progress && (d.last_pct >= 0 || d.last_shown > 0))
        fputc('\n', stderr); /* end the progress line */
    if (cc == CURLE_HTTP_RETURNED_ERROR) {
        lc->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        const char *reason = lk_http1_reason((int)status);
        lk_buf_addf(err, "HTTP %ld%s%s from %s", status, *reason ? " " : "", reason, url);
        rc = LK_EIO;
    } else if (cc != CURLE_OK) {
        if (d.too_big)
            lk_buf_adds(err, "the download is larger than 1 GiB");
        else if (d.write_errno != 0)
            lk_buf_addf(err, "cannot write the download: %s", strerror(d.write_errno));
        else
            lk_buf_addf(err, "%s (%s)", lc->easy_strerror(cc), url);
        rc = LK_EIO;
    }
    lc->easy_cleanup(c);
    lk_sha256_final(&d.sha, digest);
    for (size_t i = 0; i < LK_SHA256_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return rc;
}

/* Runs argv (PATH search) with stdin /dev/null, stdout to out_fd (-1:
 * inherited) and waits. Returns the exit status, or -1 when it could not
 * run or died from a signal. */
static int run(char *const argv[], int out_fd)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = 0;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    if (out_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    while (waitpid(pid, &status, 0) == -1) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- temp files and signals ------------------------------------------------ */

/* An update ended by a signal (Ctrl-C, kill) must not leave its temp files
 * next to the binary: the names of those that exist are kept here for the
 * handler (at most the download and the binary unpacked from it). */
#define TEMP_SLOTS 2
static char temp_paths[TEMP_SLOTS][4096];
static volatile sig_atomic_t temp_used[TEMP_SLOTS];

static void temp_track(const char *path)
{
    size_t n = strlen(path);
    for (int i = 0; i < TEMP_SLOTS; i++) {
        if (!temp_used[i] && n < sizeof(temp_paths[i])) {
            memcpy(temp_paths[i], path, n + 1);
            atomic_signal_fence(memory_order_seq_cst); /* the name before the flag */
            temp_used[i] = 1;
            return;
        }
    }
}

/* path was renamed or deleted. */
static void temp_forget(const char *path)
{
    for (int i = 0; i < TEMP_SLOTS; i++) {
        if (temp_used[i] && strcmp(temp_paths[i], path) == 0)
            temp_used[i] = 0;
    }
}

/* Deletes the temp files, then dies of the same signal. Only
 * async-signal-safe calls. */
static void on_fatal_signal(int sig)
{
    for (int i = 0; i < TEMP_SLOTS; i++) {
        if (temp_used[i])
            unlink(temp_paths[i]);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static const int fatal_signals[] = { SIGINT, SIGTERM, SIGHUP };
#define N_FATAL (sizeof(fatal_signals) / sizeof(fatal_signals[0]))

/* Creates "{dir}/.linkup-update-XXXXXX"; path receives its name. */
static int make_temp(const char *dir, struct lk_buf *path, struct lk_buf *err)
{
    lk_buf_reset(path);
    lk_buf_addf(path, "%s/.linkup-update-XXXXXX", dir);
    int fd = mkstemp(path->data);
    if (fd == -1) {
        lk_buf_addf(err, "cannot create a file in %s: %s", dir, strerror(errno));
        lk_buf_reset(path);
    } else {
        temp_track(path->data);
    }
    return fd;
}

static void remove_temp(const char *path)
{
    unlink(path);
    temp_forget(path);
}

/* Finds the first archive entry whose path contains "linkup" (not a
 * directory) by listing the archive with tar -t into a temp file. */
static int find_entry(const char *archive, const char *dir, struct lk_buf *entry,
                      struct lk_buf *err)
{
    struct lk_buf tmp = LK_BUF_INIT;
    struct lk_buf listing = LK_BUF_INIT;
    int rc = LK_EIO;
    int fd = make_temp(dir, &tmp, err);
    if (fd == -1)
        goto out;
    remove_temp(tmp.data);
    char *argv[] = { "tar", "--quoting-style=literal", "-tzf", (char *)(uintptr_t)archive, NULL };
    if (run(argv, fd) != 0 || lseek(fd, 0, SEEK_SET) == -1 ||
        cli_read_fd(fd, &listing, TAR_LIST_MAX_BYTES) != 0) {
        lk_buf_adds(err, "cannot read the downloaded archive");
        goto out;
    }
    for (char *line = listing.data; *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > 0 && line[len - 1] != '/' && memmem(line, len, "linkup", 6) != NULL) {
            lk_buf_add(entry, line, len);
            rc = 0;
            goto out;
        }
        line += len + (nl ? 1 : 0);
    }
    lk_buf_adds(err, "File missing from downloaded compressed archive");
out:
    if (fd >= 0)
        close(fd);
    lk_buf_release(&listing);
    lk_buf_release(&tmp);
    return rc;
}

/* Unpacks the linkup entry of archive into a new temp file (*fd, path). */
static int extract(const char *archive, const char *dir, int *fd, struct lk_buf *path,
                   struct lk_buf *err)
{
    struct lk_buf entry = LK_BUF_INIT;
    int rc = find_entry(archive, dir, &entry, err);
    if (rc != 0)
        goto out;
    *fd = make_temp(dir, path, err);
    if (*fd == -1) {
        rc = LK_EIO;
        goto out;
    }
    char *argv[] = { "tar", "-xzf", (char *)(uintptr_t)archive, "-O", "--", entry.data, NULL };
    if (run(argv, *fd) != 0) {
        lk_buf_adds(err, "cannot unpack the downloaded archive");
        rc = LK_EIO;
    }
out:
    lk_buf_release(&entry);
    return rc;
}

/* True when the file starts with the gzip magic 1f 8b. */
static bool is_gzip(int fd)
{
    unsigned char magic[2];
    return pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

/* Turns the downloaded asset (fd, path) into the executable to install:
 * itself, or the file unpacked from it (then fd/path are swapped and the
 * archive deleted). */
static int prepare_executable(const char *dir, int *fd, struct lk_buf *path, struct lk_buf *err)
{
    if (!is_gzip(*fd))
        return 0;
    struct lk_buf bin_path = LK_BUF_INIT;
    int bin_fd = -1;
    int rc = extract(path->data, dir, &bin_fd, &bin_path, err);
    close(*fd);
    remove_temp(path->data);
    lk_buf_reset(path);
    lk_buf_addstr(path, lk_buf_str(&bin_path));
    *fd = bin_fd;
    lk_buf_release(&bin_path);
    return rc;
}

int cli_update_install(const struct lk_release *rel, const char *exe, struct lk_buf *err)
{
    struct lk_buf dir = LK_BUF_INIT;
    struct lk_buf tmp = LK_BUF_INIT;
    char got[2 * LK_SHA256_LEN + 1];
    int fd = -1;
    int rc;

    const char *slash = strrchr(exe, '/');
    lk_buf_add(&dir, exe, slash && slash != exe ? (size_t)(slash - exe) : 1);
    struct sigaction sa, old[N_FATAL];
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_FATAL; i++)
        sigaction(fatal_signals[i], &sa, &old[i]);
    fd = make_temp(dir.data, &tmp, err);
    if (fd == -1) {
        rc = LK_EIO;
        goto out;
    }
    rc = download(rel->url, rel->name, fd, got, err);
    if (rc != 0)
        goto out;
    if (strcmp(got, rel->sha256) != 0) {
        lk_buf_addf(err, "SHA-256 mismatch (expected %s, got %s)", rel->sha256, got);
        rc = LK_EIO;
        goto out;
    }
    rc = prepare_executable(dir.data, &fd, &tmp, err);
    if (rc != 0)
        goto out;
    if (fchmod(fd, 0755) == -1 || fsync(fd) == -1 || rename(tmp.data, exe) == -1) {
        lk_buf_addf(err, "cannot replace %s: %s", exe, strerror(errno));
        rc = LK_EIO;
        goto out;
    }
    temp_forget(tmp.data);
    lk_buf_reset(&tmp); /* renamed: nothing to delete */
out:
    if (fd >= 0)
        close(fd);
    if (tmp.len > 0)
        remove_temp(tmp.data);
    for (size_t i = 0; i < N_FATAL; i++)
        sigaction(fatal_signals[i], &old[i], NULL);
    lk_buf_release(&tmp);
    lk_buf_release(&dir);
    return rc;
}

int cli_update_check_writable(const char *exe, struct lk_buf *err)
{
    struct lk_buf dir = LK_BUF_INIT;
    const char *slash = strrchr(exe, '/');
    lk_buf_add(&dir, exe, slash && slash != exe ? (size_t)(slash - exe) : 1);
    int rc = 0;
    if (access(dir.data, W_OK) == -1) {
        lk_buf_addf(
            err, "Cannot update %s: its directory %s is not writable (%s); run: sudo linkup update",
            exe, dir.data, strerror(errno));
        rc = LK_EIO;
    }
    lk_buf_release(&dir);
    return rc;
}

void cli_update_setcap(const char *exe)
{
    char *argv[] = { "sudo", "-n", "setcap", "cap_net_bind_service=+ep", (char *)(uintptr_t)exe,
                     NULL };
    char *const *cmd = geteuid() == 0 ? argv + 2 : argv;
    fflush(stdout);
    if (run(cmd, -1) != 0) {
        fprintf(stderr,
                "Warning: could not let %s bind ports 80/443; run:\n"
                "  sudo setcap cap_net_bind_service=+ep %s\n",
                exe, exe);
    }
}
