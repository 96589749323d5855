/*
 * home.c - locating and creating $LINKUP_HOME; small file helpers of the CLI.
 */
#include "cli/home.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/err.h"

static struct lk_buf home_path = LK_BUF_INIT;

const char *cli_home(void)
{
    if (home_path.len > 0)
        return home_path.data;
    const char *env = getenv("LINKUP_HOME");
    const char *home = getenv("HOME");
    if (env && *env)
        lk_buf_adds(&home_path, env);
    else if (home && *home)
        lk_buf_addf(&home_path, "%s/.linkup", home);
    else
        lk_buf_adds(&home_path, "/var/tmp/.linkup");
    return home_path.data;
}

int cli_home_ensure(void)
{
    const char *path = cli_home();
    if (mkdir(path, 0755) == -1 && errno != EEXIST) {
        int e = errno;
        /* The original prints Rust's io::Error: "<text> (os error N)". */
        return cli_fail("Could not create linkup dir at %s: %s (os error %d)", path, strerror(e),
                        e);
    }
    return 0;
}

void cli_home_lock(void)
{
    static int fd = -1;
    if (fd != -1)
        return;
    fd = open(cli_home(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return;
    int rc;
    while ((rc = flock(fd, LOCK_EX | LOCK_NB)) == -1 && errno == EINTR) {
    }
    if (rc == -1 && errno == EWOULDBLOCK) {
        cli_log(LK_LOG_INFO, "Waiting for another linkup command using %s to finish...",
                cli_home());
        while ((rc = flock(fd, LOCK_EX)) == -1 && errno == EINTR) {
        }
    }
    if (rc == -1) {
        close(fd);
        fd = -1;
    }
}

void cli_home_file(const char *name, struct lk_buf *out)
{
    lk_buf_addf(out, "%s/%s", cli_home(), name);
}

int cli_read_fd(int fd, struct lk_buf *out, size_t max)
{
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return LK_EIO;
        if (n == 0)
            return 0;
        if (out->len + (size_t)n > max)
            return LK_ELIMIT;
        lk_buf_add(out, chunk, (size_t)n);
    }
}

int cli_read_file(const char *path, struct lk_buf *out, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return errno == ENOENT ? LK_ENOTFOUND : LK_EIO;
    lk_buf_reset(out);
    int rc = cli_read_fd(fd, out, max);
    close(fd);
    return rc;
}

int cli_home_read(const char *name, struct lk_buf *out, size_t max)
{
    struct lk_buf path = LK_BUF_INIT;
    cli_home_file(name, &path);
    int rc = cli_read_file(path.data, out, max);
    lk_buf_release(&path);
    return rc;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return LK_EIO;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int cli_write_file(const char *path, const char *data, size_t len)
{
    struct lk_buf tmp = LK_BUF_INIT;
    lk_buf_addf(&tmp, "%s.tmp.%ld", path, (long)getpid());
    int rc = LK_EIO;
    int fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd != -1) {
        rc = write_all(fd, data, len);
        if (close(fd) == -1 && rc == 0)
            rc = LK_EIO;
        if (rc == 0 && rename(tmp.data, path) == -1)
            rc = LK_EIO;
        if (rc != 0)
            unlink(tmp.data);
    }
    lk_buf_release(&tmp);
    return rc;
}

static int write_with(const char *path, int flags, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
    if (fd == -1)
        return LK_EIO;
    int rc = write_all(fd, data, len);
    if (close(fd) == -1 && rc == 0)
        rc = LK_EIO;
    return rc;
}

int cli_rewrite_file(const char *path, const char *data, size_t len)
{
    return write_with(path, O_TRUNC, data, len);
}

int cli_append_file(const char *path, const char *data, size_t len)
{
    return write_with(path, O_APPEND, data, len);
}

bool cli_use_color(void)
{
    const char *no = getenv("NO_COLOR");
    const char *cc = getenv("CLICOLOR");
    if ((no && *no) || (cc && strcmp(cc, "0") == 0))
        return false;
    return isatty(STDOUT_FILENO) == 1;
}
