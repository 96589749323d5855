/*
 * log.c - stderr logging with RFC 3339 UTC timestamps.
 *
 * Each line is formatted into one stack buffer and written with a single
 * fwrite, so lines from one process never interleave mid-line.
 */
#include "net/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "core/err.h"

enum lk_log_level lk_log_level_ = LK_LOG_INFO;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

void lk_log_set_level(enum lk_log_level level)
{
    lk_log_level_ = level;
}

int lk_log_level_parse(const char *s, enum lk_log_level *out)
{
    *out = LK_LOG_INFO;
    if (s == NULL || *s == '\0')
        return 0;
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum lk_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LK_LOG_WARN;
        return 0;
    }
    return LK_EINVAL;
}

static size_t format_time(char *out, size_t cap)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(out + n, cap - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    return m > 0 ? n + (size_t)m : n;
}

void lk_log_write(enum lk_log_level level, uint64_t conn_id, const char *fmt, ...)
{
    char line[2048];
    size_t n = 0;
    line[n++] = '[';
    n += format_time(line + n, sizeof(line) - n);
    int m = snprintf(line + n, sizeof(line) - n, " %s] ", level_names[level]);
    n += m > 0 ? (size_t)m : 0;
    if (conn_id != 0) {
        m = snprintf(line + n, sizeof(line) - n, "conn %llu: ", (unsigned long long)conn_id);
        n += m > 0 ? (size_t)m : 0;
    }
    va_list ap;
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (m > 0)
        n += (size_t)m < sizeof(line) - n ? (size_t)m : sizeof(line) - n - 1;
    /* Keep room for the newline even when the message was truncated. */
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    fwrite(line, 1, n, stderr);
}

static int clip(size_t len)
{
    return len > 512 ? 512 : (int)len;
}

void lk_log_access(const struct lk_access_entry *e)
{
    if (!lk_log_enabled(LK_LOG_INFO))
        return;
    lk_log_write(LK_LOG_INFO, e->conn_id,
                 "access %.*s %.*s %.*s session=%s service=%s status=%d bytes=%llu ms=%llu",
                 e->method ? clip(e->method_len) : 1, e->method ? e->method : "-",
                 e->host ? clip(e->host_len) : 1, e->host ? e->host : "-",
                 e->path ? clip(e->path_len) : 1, e->path ? e->path : "-",
                 e->session ? e->session : "-", e->service ? e->service : "-", e->status,
                 (unsigned long long)e->bytes, (unsigned long long)e->ms);
}
