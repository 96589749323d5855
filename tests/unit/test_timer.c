/*
 * test_timer.c - lazy timers (lib/net/timer.h) on a real event loop.
 *
 * Deadlines are tens of milliseconds apart and the checks only ask whether
 * a timer fired by a point well past its deadline, or not before one well
 * ahead of it, so a loaded machine cannot make them flaky.
 */
#include <event2/event.h>
#include <time.h>

#include "harness.h"
#include "net/timer.h"

static struct event_base *base;
static int fired;
static struct lk_timer *again; /* on_fire re-arms this one once */

static void on_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    CHECK_INT_EQ(what, EV_TIMEOUT);
    fired += arg != NULL ? *(int *)arg : 1;
    if (again != NULL) {
        struct lk_timer *t = again;
        again = NULL;
        lk_timer_set(t, 20);
    }
}

/* Runs the loop for ms (or until nothing is pending). */
static void run_for(unsigned ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static void test_fires_once(void)
{
    struct lk_timer t;
    fired = 0;
    lk_timer_init(&t, base, on_fire, NULL);
    CHECK(!lk_timer_is_on(&t));
    lk_timer_set(&t, 30);
    CHECK(lk_timer_is_on(&t));
    run_for(200);
    CHECK_INT_EQ(fired, 1);
    CHECK(!lk_timer_is_on(&t));
    run_for(100);
    CHECK_INT_EQ(fired, 1);
    lk_timer_cancel(&t);
}

static void test_off_does_not_fire(void)
{
    struct lk_timer t;
    fired = 0;
    lk_timer_init(&t, base, on_fire, NULL);
    lk_timer_set(&t, 30);
    lk_timer_set(&t, 0); /* lazily: the event stays armed, and fires into nothing */
    CHECK(!lk_timer_is_on(&t));
    run_for(150);
    CHECK_INT_EQ(fired, 0);
    CHECK(!event_pending(&t.ev, EV_TIMEOUT, NULL));
    lk_timer_cancel(&t);
}

static void test_later_deadline_is_kept(void)
{
    struct lk_timer t;
    fired = 0;
    lk_timer_init(&t, base, on_fire, NULL);
    lk_timer_set(&t, 30);
    lk_timer_set(&t, 2000); /* the armed event fires at 30 ms and re-arms */
    run_for(200);
    CHECK_INT_EQ(fired, 0);
    CHECK(event_pending(&t.ev, EV_TIMEOUT, NULL));
    run_for(2500);
    CHECK_INT_EQ(fired, 1);
    lk_timer_cancel(&t);
}

static void test_earlier_deadline_rearms(void)
{
    struct lk_timer t;
    fired = 0;
    lk_timer_init(&t, base, on_fire, NULL);
    lk_timer_set(&t, 10000);
    lk_timer_set(&t, 30);
    run_for(300);
    CHECK_INT_EQ(fired, 1);
    lk_timer_cancel(&t);
}

static void test_cancel_removes_the_event(void)
{
    struct lk_timer t;
    fired = 0;
    lk_timer_init(&t, base, on_fire, NULL);
    lk_timer_set(&t, 30);
    lk_timer_cancel(&t);
    CHECK(!lk_timer_is_on(&t));
    CHECK(!event_pending(&t.ev, EV_TIMEOUT, NULL));
    /* Nothing is left in the loop: it returns at once (1: no events). */
    CHECK_INT_EQ(event_base_loop(base, EVLOOP_NONBLOCK), 1);
    CHECK_INT_EQ(fired, 0);
}

static void test_callback_may_set_again_and_change(void)
{
    struct lk_timer t;
    int two = 2;
    fired = 0;
    lk_timer_init(&t, base, on_fire, NULL);
    again = &t;
    lk_timer_set(&t, 20);
    run_for(300);
    CHECK_INT_EQ(fired, 2); /* fired, set itself again from the callback, fired */
    lk_timer_set_cb(&t, on_fire, &two);
    lk_timer_set(&t, 20);
    run_for(300);
    CHECK_INT_EQ(fired, 4);
    lk_timer_cancel(&t);
}

int main(void)
{
    base = event_base_new();
    RUN(test_fires_once);
    RUN(test_off_does_not_fire);
    RUN(test_later_deadline_is_kept);
    RUN(test_earlier_deadline_rearms);
    RUN(test_cancel_removes_the_event);
    RUN(test_callback_may_set_again_and_change);
    event_base_free(base);
    return DONE();
}
