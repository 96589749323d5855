/*
 * heap.c - see heap.h. glibc's default trim threshold is 128 KiB and moves
 * only when a mapped chunk is freed, so a proxy whose memory comes and goes
 * in 64 KiB evbuffer chains shrinks and regrows its heap with brk() many
 * times a second (53 % of the tunnel path's syscall time, finding 13).
 * Setting the thresholds by hand also stops glibc's dynamic mmap threshold,
 * which would otherwise climb past the 256 KiB tunnel frames; both are what
 * the benchmark favoured (bench/run.sh, GLIBC_TUNABLES A/B in the finding).
 *
 * The threshold is 64 MiB, not 16 (finding 26): 64 tunnel streams of 1 MiB
 * responses swing the local server's heap by ~20 MiB, so at 16 MiB it gave
 * the top back and faulted it in again (9,000 page faults a second, half
 * its system time). Memory kept this way goes back when the process is
 * quiet (lk_heap_idle_*), and never exceeds the busy peak.
 */
#include "net/heap.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/alloc.h"

#define KEEP_FREE_MAX (64 * 1024 * 1024)
#define GROW_PAD      (1024 * 1024)

void lk_heap_tune(void)
{
#if defined(__GLIBC__)
    (void)mallopt(M_TRIM_THRESHOLD, KEEP_FREE_MAX);
    (void)mallopt(M_TOP_PAD, GROW_PAD);
#endif
}

/* busy()/quiet() run per request: they only set a flag and note the loop's
 * cached time; the timer is armed at most once per delay and checks, when it
 * fires, whether the process stayed quiet for the whole delay. */
struct lk_heap_idle {
    struct event_base *base;
    struct event timer;
    unsigned delay_ms;
    bool busy;
    struct timeval quiet_since; /* the last quiet() */
    size_t trims;
};

static void arm(struct lk_heap_idle *h, unsigned ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    evtimer_add(&h->timer, &tv);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct lk_heap_idle *h = arg;
    (void)fd;
    (void)what;
    if (h->busy)
        return; /* the next quiet() arms it again */
    struct timeval now;
    event_base_gettimeofday_cached(h->base, &now);
    long long quiet_ms = (now.tv_sec - h->quiet_since.tv_sec) * 1000LL +
                         (now.tv_usec - h->quiet_since.tv_usec) / 1000;
    if (quiet_ms >= 0 && quiet_ms < (long long)h->delay_ms) {
        arm(h, h->delay_ms - (unsigned)quiet_ms);
        return;
    }
    h->trims++;
#if defined(__GLIBC__)
    (void)malloc_trim(0);
#endif
}

struct lk_heap_idle *lk_heap_idle_new(struct event_base *base, unsigned delay_ms)
{
    struct lk_heap_idle *h = lk_xcalloc(1, sizeof(*h));
    h->base = base;
    evtimer_assign(&h->timer, base, on_idle, h);
    h->delay_ms = delay_ms;
    return h;
}

void lk_heap_idle_quiet(struct lk_heap_idle *h)
{
    if (h == NULL)
        return;
    h->busy = false;
    event_base_gettimeofday_cached(h->base, &h->quiet_since);
    if (!evtimer_pending(&h->timer, NULL))
        arm(h, h->delay_ms);
}

void lk_heap_idle_busy(struct lk_heap_idle *h)
{
    if (h != NULL)
        h->busy = true;
}

size_t lk_heap_idle_trims(const struct lk_heap_idle *h)
{
    return h->trims;
}

void lk_heap_idle_free(struct lk_heap_idle *h)
{
    if (h == NULL)
        return;
    evtimer_del(&h->timer);
    free(h);
}
