/*
 * harness.h - a tiny unit-test harness (STYLE §3.10).
 *
 * Each test file defines static void test_x(void) functions and a main() that
 * calls RUN(test_x) for each and returns DONE(). Failed checks print both
 * sides with file:line; each test prints "ok N - name" or "not ok N - name";
 * the run ends with "N passed, N failed".
 */
#ifndef LK_TEST_HARNESS_H
#define LK_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>

static int h_failed_checks;
static int h_passed, h_failed, h_n;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            h_failed_checks++;                                                         \
        }                                                                              \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                                      \
    do {                                                                                        \
        long long h_a = (long long)(a), h_b = (long long)(b);                                   \
        if (h_a != h_b) {                                                                       \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, \
                    #b, h_a, h_b);                                                              \
            h_failed_checks++;                                                                  \
        }                                                                                       \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                   \
    do {                                                                                     \
        const char *h_a = (a), *h_b = (b);                                                   \
        if (h_a == NULL || h_b == NULL ? h_a != h_b : strcmp(h_a, h_b) != 0) {               \
            fprintf(stderr, "  %s:%d: %s == %s failed:\n    \"%s\"\n != \"%s\"\n", __FILE__, \
                    __LINE__, #a, #b, h_a ? h_a : "(null)", h_b ? h_b : "(null)");           \
            h_failed_checks++;                                                               \
        }                                                                                    \
    } while (0)

#define CHECK_MEM_EQ(a, alen, b, blen)                                                             \
    do {                                                                                           \
        size_t h_al = (alen), h_bl = (blen);                                                       \
        if (h_al != h_bl || memcmp((a), (b), h_al) != 0) {                                         \
            fprintf(stderr, "  %s:%d: %s == %s failed:\n    \"%.*s\"\n != \"%.*s\"\n", __FILE__,   \
                    __LINE__, #a, #b, (int)h_al, (const char *)(a), (int)h_bl, (const char *)(b)); \
            h_failed_checks++;                                                                     \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                   \
    do {                                          \
        int h_before = h_failed_checks;           \
        fn();                                     \
        h_n++;                                    \
        if (h_failed_checks == h_before) {        \
            h_passed++;                           \
            printf("ok %d - %s\n", h_n, #fn);     \
        } else {                                  \
            h_failed++;                           \
            printf("not ok %d - %s\n", h_n, #fn); \
        }                                         \
    } while (0)

#define DONE() (printf("%d passed, %d failed\n", h_passed, h_failed), h_failed ? 1 : 0)

#endif
