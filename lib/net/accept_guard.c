/*
 * accept_guard.c - pausing a listener whose accept(2) fails (accept_guard.h).
 */
#include "net/accept_guard.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/err.h"
#include "net/log.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct lk_accept_guard *g = arg;
    (void)fd;
    (void)what;
    evconnlistener_enable(g->evl);
}

int lk_accept_guard_init(struct lk_accept_guard *g, struct event_base *base,
                         struct evconnlistener *evl, const char *what)
{
    memset(g, 0, sizeof(*g));
    g->evl = evl;
    snprintf(g->what, sizeof(g->what), "%s", what);
    g->resume = evtimer_new(base, on_resume, g);
    return g->resume != NULL ? 0 : LK_ENOMEM;
}

void lk_accept_guard_failed(struct lk_accept_guard *g, int e)
{
    evconnlistener_disable(g->evl);
    static const struct timeval pause = { 0, LK_ACCEPT_PAUSE_MS * 1000 };
    if (g->resume == NULL || evtimer_add(g->resume, &pause) != 0)
        evconnlistener_enable(g->evl); /* cannot pause: libevent's own behaviour */
    int64_t now = now_ms();
    if (g->logged_at_ms != 0 && now - g->logged_at_ms < LK_ACCEPT_LOG_EVERY_S * 1000) {
        g->unlogged++;
        return;
    }
    if (g->unlogged > 0)
        LK_LOG(WARN,
               "listener %s: accept failed: %s (%llu more failures since the last report); "
               "new connections wait %d ms in the backlog",
               g->what, strerror(e), (unsigned long long)g->unlogged, LK_ACCEPT_PAUSE_MS);
    else
        LK_LOG(WARN, "listener %s: accept failed: %s; new connections wait %d ms in the backlog",
               g->what, strerror(e), LK_ACCEPT_PAUSE_MS);
    g->logged_at_ms = now;
    g->unlogged = 0;
}

void lk_accept_guard_release(struct lk_accept_guard *g)
{
    if (g->resume != NULL)
        event_free(g->resume);
    g->resume = NULL;
}

unsigned long lk_nofile_raise(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    rlim_t want =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > LK_NOFILE_MAX ? LK_NOFILE_MAX : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            LK_LOG(DEBUG, "descriptor limit raised to %lu", (unsigned long)want);
        else
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (unsigned long)rl.rlim_cur;
}
