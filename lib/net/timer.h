/*
 * timer.h - lazy timers for deadlines that move on every request.
 *
 * A keep-alive connection's idle deadline and a pooled upstream's idle
 * deadline are set and cleared once per request; with a plain evtimer each
 * is an event_add() and an event_del() (min-heap work) per request. An
 * lk_timer keeps its event armed for the earliest deadline it was given and
 * only records later ones (and "off"): when the event fires before the
 * current deadline, it re-arms for the rest; when the timer is off by then,
 * nothing happens. Moving a deadline later or turning it off costs two
 * stores; only an earlier deadline than the armed one touches the heap.
 *
 * Deadlines are read from CLOCK_MONOTONIC_COARSE (a vDSO read, no system
 * call), so a timer fires within a clock tick (a few ms) of its deadline.
 */
#ifndef LK_NET_TIMER_H
#define LK_NET_TIMER_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>

/* ms as a timeval for a libevent timer. */
static inline struct timeval lk_ms_tv(unsigned ms)
{
    return (struct timeval){ .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
}

struct lk_timer {
    struct event ev;
    event_callback_fn cb;
    void *arg;
    int64_t due_ms;   /* the deadline; 0: off */
    int64_t armed_ms; /* when ev fires; 0: not pending */
};

/* cb(-1, EV_TIMEOUT, arg) runs once the deadline passes. */
void lk_timer_init(struct lk_timer *t, struct event_base *base, event_callback_fn cb, void *arg);
/* Another callback for the same timer (the deadline is kept). */
void lk_timer_set_cb(struct lk_timer *t, event_callback_fn cb, void *arg);
/* The deadline is ms from now; 0 turns the timer off (lazily). */
void lk_timer_set(struct lk_timer *t, unsigned ms);
/* Off, with the event removed from the loop: before the timer is freed. */
void lk_timer_cancel(struct lk_timer *t);

static inline bool lk_timer_is_on(const struct lk_timer *t)
{
    return t->due_ms != 0;
}

#endif
