/*
 * log.h - Linkup's one logging call (STYLE §3.8).
 *
 * LK_LOG(level, fmt, ...) writes one line to stderr:
 *     [2024-05-01T12:00:00.123Z INFO] message
 * The macro tests the level before the arguments are evaluated, so debug
 * logging costs one comparison when it is off. LK_CLOG(conn_id, level, ...)
 * prefixes the message with "conn N: ". The level is process-wide, set once
 * by the program (lk_log_set_level(), usually from LINKUP_LOG with
 * lk_log_level_parse()); default INFO. Loop thread or any single thread; the
 * level is a plain global read without locking.
 *
 * lk_log_access() writes the one access-log line per request:
 *     [... INFO] access GET example.com /path session=s service=web status=200 bytes=12 ms=3
 * Access lines are buffered (up to 32 KiB) and written in batches: by
 * lk_log_flush(), which the HTTP engine calls from a 100 ms timer after each
 * buffered line, before any other log line (order is kept), when the buffer
 * fills, and at exit (atexit). A process killed by a signal that skips exit
 * handlers loses at most the last 100 ms of access lines.
 */
#ifndef LK_NET_LOG_H
#define LK_NET_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lk_log_level {
    LK_LOG_OFF = -1, /* a threshold only: nothing is logged */
    LK_LOG_ERROR = 0,
    LK_LOG_WARN,
    LK_LOG_INFO,
    LK_LOG_DEBUG,
};

/* Current level; private, read it through the macros or lk_log_enabled(). */
extern enum lk_log_level lk_log_level_;

void lk_log_set_level(enum lk_log_level level);
/* Parses a LINKUP_LOG value in env_logger's syntax (SPEC §6.1): a level
 * ("off", "error", "warn", "info", "debug", "trace"; case-insensitive) or
 * comma-separated directives "[module=]level", of which those without a
 * module and those for a module named "linkup..." count (a bare "linkup..."
 * means all its levels); the most verbose wins; a "/filter" suffix is
 * ignored. NULL or "" gives INFO. Returns 0 and *out, or LK_EINVAL when no
 * directive applies to Linkup (then *out is INFO). */
int lk_log_level_parse(const char *s, enum lk_log_level *out);

static inline bool lk_log_enabled(enum lk_log_level level)
{
    return level <= lk_log_level_;
}

/* Writes one line; use the macros. conn_id 0 means no connection prefix. */
void lk_log_write(enum lk_log_level level, uint64_t conn_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LK_LOG(level, ...)                                \
    do {                                                  \
        if (lk_log_enabled(LK_LOG_##level))               \
            lk_log_write(LK_LOG_##level, 0, __VA_ARGS__); \
    } while (0)

#define LK_CLOG(conn_id, level, ...)                              \
    do {                                                          \
        if (lk_log_enabled(LK_LOG_##level))                       \
            lk_log_write(LK_LOG_##level, (conn_id), __VA_ARGS__); \
    } while (0)

/* One access-log line (INFO). Strings are (ptr, len) ranges, any may be
 * NULL/0 and then print as "-"; session and service are NUL-terminated or
 * NULL. */
struct lk_access_entry {
    uint64_t conn_id;
    const char *method;
    size_t method_len;
    const char *host;
    size_t host_len;
    const char *path;
    size_t path_len;
    const char *session;
    const char *service;
    int status;
    uint64_t bytes; /* response body bytes sent to the client */
    uint64_t ms;    /* head received -> response finished */
};
void lk_log_access(const struct lk_access_entry *e);

/* Writes the buffered access lines now (no-op when there are none). */
void lk_log_flush(void);
/* True when access lines are waiting for lk_log_flush(). */
bool lk_log_pending(void);

#endif
