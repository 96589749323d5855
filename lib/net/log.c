/*
 * log.c - stderr logging with RFC 3339 UTC timestamps.
 *
 * Each line is formatted into one stack buffer and written with a single
 * fwrite, so lines from one process never interleave mid-line. Access-log
 * lines are formatted without printf into a process-wide buffer instead and
 * written in batches (lk_log_flush(): by the engine's timer, before any
 * other line, when the buffer fills, and at exit), at most PIPE_BUF bytes of
 * whole lines per write (docs/performance.md, finding 8).
 */
#include "net/log.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "core/err.h"
#include "core/str.h"

enum lk_log_level lk_log_level_ = LK_LOG_INFO;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

void lk_log_set_level(enum lk_log_level level)
{
    lk_log_level_ = level;
}

/* The level named by s[0..n), or -2 when it names none ("off" is OFF,
 * "trace" is DEBUG). */
static int level_named(const char *s, size_t n)
{
    static const char *const words[] = {
        "off", "error", "warn", "warning", "info", "debug", "trace"
    };
    static const int levels[] = { LK_LOG_OFF,  LK_LOG_ERROR, LK_LOG_WARN, LK_LOG_WARN,
                                  LK_LOG_INFO, LK_LOG_DEBUG, LK_LOG_DEBUG };
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strlen(words[i]) == n && strncasecmp(s, words[i], n) == 0)
            return levels[i];
    }
    return -2;
}

static bool names_linkup(const char *module, size_t n)
{
    return n >= 6 && strncmp(module, "linkup", 6) == 0;
}

int lk_log_level_parse(const char *s, enum lk_log_level *out)
{
    *out = LK_LOG_INFO;
    if (s == NULL || *s == '\0')
        return 0;
    /* As env_logger: a directive naming a module is more specific than a bare
     * level, so `info,linkup=warn` logs Linkup at warn. Several linkup...
     * directives (one per module of the original): the most verbose; several
     * bare levels: the last. */
    int named = -2, bare = -2;
    size_t end = strcspn(s, "/"); /* env_logger's "/regex" message filter: not kept */
    for (size_t at = 0; at < end;) {
        size_t len = strcspn(s + at, ",");
        if (at + len > end)
            len = end - at;
        const char *d = s + at, *eq = memchr(d, '=', len);
        if (eq == NULL) {
            int lv = level_named(d, len); /* "warn"; else a module name: all its lines */
            if (lv != -2)
                bare = lv;
            else if (names_linkup(d, len) && LK_LOG_DEBUG > named)
                named = LK_LOG_DEBUG;
        } else if (names_linkup(d, (size_t)(eq - d))) {
            int lv = level_named(eq + 1, len - (size_t)(eq + 1 - d));
            if (lv == -2)
                lv = LK_LOG_INFO;
            if (lv > named)
                named = lv;
        }
        at += len + 1;
    }
    int best = named != -2 ? named : bare;
    if (best == -2)
        return LK_EINVAL;
    *out = (enum lk_log_level)best;
    return 0;
}

#define LINE_MAX_BYTES 2048
#define PENDING_CAP    (32 * 1024)

/* Buffered access-log lines, whole lines only. */
static char pending[PENDING_CAP];
static size_t pending_len;
static bool flush_at_exit;

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 bytes); the seconds part is cached. */
static size_t format_time(char *out, size_t cap)
{
    static time_t cached_sec = -1;
    static char cached[32];
    static size_t cached_len;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        cached_len = strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = tv.tv_sec;
    }
    if (cap < cached_len + 6)
        return 0;
    memcpy(out, cached, cached_len);
    unsigned ms = (unsigned)(tv.tv_usec / 1000);
    char *p = out + cached_len;
    *p++ = '.';
    *p++ = (char)('0' + ms / 100);
    *p++ = (char)('0' + ms / 10 % 10);
    *p++ = (char)('0' + ms % 10);
    *p++ = 'Z';
    return (size_t)(p - out);
}

/* Writes whole lines, at most PIPE_BUF bytes per write, so that lines of
 * processes sharing one stderr pipe never interleave. */
static void write_lines(const char *p, size_t n)
{
    while (n > 0) {
        size_t k = n;
        if (k > PIPE_BUF) {
            k = PIPE_BUF;
            while (k > 0 && p[k - 1] != '\n')
                k--;
            if (k == 0)
                k = PIPE_BUF;
        }
        fwrite(p, 1, k, stderr);
        p += k;
        n -= k;
    }
}

void lk_log_flush(void)
{
    if (pending_len == 0)
        return;
    size_t n = pending_len;
    pending_len = 0;
    write_lines(pending, n);
}

bool lk_log_pending(void)
{
    return pending_len > 0;
}

static void at_exit_flush(void)
{
    lk_log_flush();
}

void lk_log_write(enum lk_log_level level, uint64_t conn_id, const char *fmt, ...)
{
    lk_log_flush(); /* keep lines in order */
    char line[LINE_MAX_BYTES];
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

/* A bounded line under construction; appends past the cap are cut. */
struct line {
    char *p;
    size_t len, cap;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (n > l->cap - l->len)
        n = l->cap - l->len;
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void put_s(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* A (ptr, len) field: at most 512 bytes, up to a NUL; NULL prints "-".
 * Control bytes are written \xHH, so that a field (a service name may hold
 * CR or LF) cannot end the line or forge another. */
static void put_field(struct line *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (s == NULL) {
        put(l, "-", 1);
        return;
    }
    n = strnlen(s, n > 512 ? 512 : n);
    size_t from = 0;
    for (size_t i = (size_t)(lk_skip_plain_words(s, s + n) - s); i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7f)
            continue;
        char esc[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
        put(l, s + from, i - from);
        put(l, esc, sizeof(esc));
        from = i + 1;
    }
    put(l, s + from, n - from);
}

static void put_u64(struct line *l, uint64_t v)
{
    char text[LK_U64_DEC_MAX];
    put(l, text, lk_u64_to_dec(v, text));
}

static void put_int(struct line *l, int v)
{
    if (v < 0) {
        put(l, "-", 1);
        put_u64(l, (uint64_t)0 - (uint64_t)(int64_t)v);
        return;
    }
    put_u64(l, (uint64_t)v);
}

void lk_log_access(const struct lk_access_entry *e)
{
    if (!lk_log_enabled(LK_LOG_INFO))
        return;
    if (!flush_at_exit) {
        flush_at_exit = true;
        atexit(at_exit_flush);
    }
    if (PENDING_CAP - pending_len < LINE_MAX_BYTES)
        lk_log_flush();
    /* The same line lk_log_write() would print, without printf. */
    struct line l = { pending + pending_len, 0, LINE_MAX_BYTES - 2 };
    put(&l, "[", 1);
    l.len += format_time(l.p + l.len, l.cap - l.len);
    put_s(&l, " INFO] ");
    if (e->conn_id != 0) {
        put_s(&l, "conn ");
        put_u64(&l, e->conn_id);
        put_s(&l, ": ");
    }
    put_s(&l, "access ");
    put_field(&l, e->method, e->method_len);
    put(&l, " ", 1);
    put_field(&l, e->host, e->host_len);
    put(&l, " ", 1);
    put_field(&l, e->path, e->path_len);
    put_s(&l, " session=");
    put_field(&l, e->session, SIZE_MAX);
    put_s(&l, " service=");
    put_field(&l, e->service, SIZE_MAX);
    put_s(&l, " status=");
    put_int(&l, e->status);
    put_s(&l, " bytes=");
    put_u64(&l, e->bytes);
    put_s(&l, " ms=");
    put_u64(&l, e->ms);
    l.p[l.len++] = '\n';
    pending_len += l.len;
}
