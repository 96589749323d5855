/*
 * accept_guard.h - what a listener does when accept(2) fails.
 *
 * libevent's listener, with no error callback, logs "Error from accept()
 * call" and stays enabled: out of descriptors (EMFILE, ENFILE) or kernel
 * memory (ENOBUFS, ENOMEM), the connection stays in the backlog, the level-
 * triggered listener fires again at once, and the process spins at full CPU
 * writing that line thousands of times a second. The guard instead stops
 * accepting for LK_ACCEPT_PAUSE_MS, so the backlog waits until descriptors
 * are free again (nginx does the same), and logs one WARN line per
 * LK_ACCEPT_LOG_EVERY_S with the number of failures in between.
 *
 * Usage: embed a struct lk_accept_guard next to the evconnlistener, call
 * lk_accept_guard_init() after creating it and lk_accept_guard_failed() from
 * the listener's error callback (evconnlistener_set_error_cb()), and
 * lk_accept_guard_release() before freeing the listener. Loop thread only.
 */
#ifndef LK_NET_ACCEPT_GUARD_H
#define LK_NET_ACCEPT_GUARD_H

#include <stdint.h>

struct event;
struct event_base;
struct evconnlistener;

#define LK_ACCEPT_PAUSE_MS    100
#define LK_ACCEPT_LOG_EVERY_S 10

struct lk_accept_guard {
    struct evconnlistener *evl;
    struct event *resume; /* re-enables evl after the pause */
    char what[80];        /* named in the log line, e.g. "127.0.0.1:80" */
    int64_t logged_at_ms; /* monotonic; 0: never */
    uint64_t unlogged;    /* failures since the last line */
};

/* what (copied, cut at 79 bytes) names the listener in the log line, e.g.
 * its address. Returns 0 or LK_ENOMEM. */
int lk_accept_guard_init(struct lk_accept_guard *g, struct event_base *base,
                         struct evconnlistener *evl, const char *what);

/* The listener's accept failed with errno e: pause it (any error but the
 * retriable ones libevent already skips) and log as above. */
void lk_accept_guard_failed(struct lk_accept_guard *g, int e);

void lk_accept_guard_release(struct lk_accept_guard *g);

/* Raises the soft RLIMIT_NOFILE to the hard limit (at most LK_NOFILE_MAX),
 * as servers do at start: each proxied request holds two descriptors, and the
 * usual soft limit of 1024 exists only for select(2), which Linkup does not
 * use. Returns the soft limit in force afterwards. */
#define LK_NOFILE_MAX (1u << 20)
unsigned long lk_nofile_raise(void);

#endif
