/*
 * test_heap.c - the malloc policy of lib/net/heap.c: memory freed in a burst
 * stays with the process while it is busy and goes back to the kernel once
 * it has been idle.
 */
#include <event2/event.h>
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "harness.h"
#include "net/heap.h"

/* mallinfo2() describes glibc's heap, which a sanitizer's allocator
 * replaces: the policy's effect is only checked without one. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LK_TEST_OTHER_MALLOC 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define LK_TEST_OTHER_MALLOC 1
#endif
#if defined(__GLIBC__) && !defined(LK_TEST_OTHER_MALLOC)
#define LK_TEST_GLIBC_HEAP 1
#endif

#define BLOCKS 64
#define BLOCK  (64 * 1024 - 256) /* an evbuffer read chunk (lib/net/io.c) */

static void burst(void)
{
    void *b[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) {
        b[i] = malloc(BLOCK);
        CHECK(b[i] != NULL);
        ((volatile char *)b[i])[0] = 1;
    }
    for (int i = BLOCKS - 1; i >= 0; i--)
        free(b[i]);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void run_for(struct event_base *base, unsigned ms)
{
    struct timeval tv = { 0, (suseconds_t)ms * 1000 };
    struct event *stop = evtimer_new(base, on_stop, base);
    evtimer_add(stop, &tv);
    event_base_dispatch(base);
    event_free(stop);
}

static void test_burst_kept_then_trimmed_when_idle(void)
{
    lk_heap_tune();
    burst();
#if defined(LK_TEST_GLIBC_HEAP)
    /* The freed burst stays at the top of the heap (glibc alone would have
     * trimmed it down to 128 KiB). */
    CHECK(mallinfo2().keepcost >= (size_t)BLOCKS * BLOCK / 2);
#endif
    struct event_base *base = event_base_new();
    struct lk_heap_idle *h = lk_heap_idle_new(base, 20);
    lk_heap_idle_quiet(h);
    run_for(base, 200);
    CHECK_INT_EQ(lk_heap_idle_trims(h), 1);
#if defined(LK_TEST_GLIBC_HEAP)
    CHECK(mallinfo2().keepcost < 256 * 1024);
#endif
    lk_heap_idle_free(h);
    event_base_free(base);
}

static void test_busy_cancels_the_trim(void)
{
    struct event_base *base = event_base_new();
    struct lk_heap_idle *h = lk_heap_idle_new(base, 20);
    lk_heap_idle_quiet(h);
    lk_heap_idle_busy(h);
    lk_heap_idle_busy(h); /* twice: harmless */
    run_for(base, 100);
    CHECK_INT_EQ(lk_heap_idle_trims(h), 0);
    /* Quiet again re-arms it; a second quiet only restarts the delay. */
    lk_heap_idle_quiet(h);
    lk_heap_idle_quiet(h);
    run_for(base, 100);
    CHECK_INT_EQ(lk_heap_idle_trims(h), 1);
    lk_heap_idle_free(h);
    lk_heap_idle_free(NULL);
    lk_heap_idle_quiet(NULL);
    lk_heap_idle_busy(NULL);
    event_base_free(base);
}

int main(void)
{
    RUN(test_burst_kept_then_trimmed_when_idle);
    RUN(test_busy_cancels_the_trim);
    return DONE();
}
