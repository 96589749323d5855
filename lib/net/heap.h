/*
 * heap.h - the malloc policy of the long-running programs (local server,
 * worker): keep freed memory while busy, give it back when idle
 * (docs/performance.md, finding 13).
 */
#ifndef LK_NET_HEAP_H
#define LK_NET_HEAP_H

#include <stddef.h>

struct event_base;
struct lk_heap_idle;

/* Sets the process's allocator policy once, before the first connection:
 * freed memory at the top of the heap is kept up to 64 MiB (glibc trims at
 * 128 KiB by default, i.e. a brk() pair per burst of 64 KiB body buffers,
 * and page faults on every regrowth)
 * and the heap grows 1 MiB past each request for it. Allocations of
 * 128 KiB and more are still mapped and unmapped one by one. No-op without
 * glibc. */
void lk_heap_tune(void);

/* Gives the kept memory back to the kernel (malloc_trim) once the process
 * has been idle for delay_ms: call lk_heap_idle_busy() whenever work starts
 * and lk_heap_idle_quiet() when the last piece of work ends. Both are cheap
 * enough to call per request (a flag and the loop's cached time). */
struct lk_heap_idle *lk_heap_idle_new(struct event_base *base, unsigned delay_ms);
void lk_heap_idle_quiet(struct lk_heap_idle *h);
void lk_heap_idle_busy(struct lk_heap_idle *h);
/* Number of trims done (tests). */
size_t lk_heap_idle_trims(const struct lk_heap_idle *h);
void lk_heap_idle_free(struct lk_heap_idle *h);

#endif
