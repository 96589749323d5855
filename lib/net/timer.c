/*
 * timer.c - lazy timers (timer.h).
 */
#include "net/timer.h"

#include <time.h>

/* Monotonic milliseconds, never 0 (0 means "off" / "not armed"). */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1;
}

static void arm(struct lk_timer *t, int64_t now, int64_t ms)
{
    struct timeval tv = lk_ms_tv((unsigned)ms); /* ms: at most an unsigned deadline */
    event_add(&t->ev, &tv);
    t->armed_ms = now + ms;
}

static void on_fire(evutil_socket_t fd, short what, void *arg)
{
    struct lk_timer *t = arg;
    t->armed_ms = 0;
    if (t->due_ms == 0)
        return; /* turned off after it was armed */
    int64_t now = now_ms();
    if (now < t->due_ms) {
        arm(t, now, t->due_ms - now); /* the deadline moved on meanwhile */
        return;
    }
    t->due_ms = 0;
    t->cb(fd, what, t->arg);
}

void lk_timer_init(struct lk_timer *t, struct event_base *base, event_callback_fn cb, void *arg)
{
    evtimer_assign(&t->ev, base, on_fire, t);
    t->cb = cb;
    t->arg = arg;
    t->due_ms = t->armed_ms = 0;
}

void lk_timer_set_cb(struct lk_timer *t, event_callback_fn cb, void *arg)
{
    t->cb = cb;
    t->arg = arg;
}

void lk_timer_set(struct lk_timer *t, unsigned ms)
{
    if (ms == 0) {
        t->due_ms = 0;
        return;
    }
    int64_t now = now_ms();
    t->due_ms = now + ms;
    if (t->armed_ms != 0 && t->armed_ms <= t->due_ms)
        return; /* fires first, then re-arms for the rest */
    arm(t, now, ms);
}

void lk_timer_cancel(struct lk_timer *t)
{
    if (t->armed_ms != 0)
        event_del(&t->ev);
    t->due_ms = t->armed_ms = 0;
}
