/*
 * test_curl_dl.c - the run-time libcurl loader of lib/net/curl_dl.c: a
 * missing library gives the user's message, the real one resolves every
 * function, and nothing is loaded before the first lk_curl().
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "harness.h"
#include "net/curl_dl.h"

/* True when /proc/self/maps shows a mapping of libcurl. */
static bool curl_mapped(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    bool found = false;
    while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, "/libcurl") != NULL;
    if (f != NULL)
        fclose(f);
    return found;
}

static void test_missing_library(void)
{
    struct lk_curl t;
    char err[160] = "";
    CHECK_INT_EQ(lk_curl_open("libcurl-missing-for-test.so.4", &t, err, sizeof(err)), LK_ENOTFOUND);
    CHECK_STR_EQ(err, "libcurl-missing-for-test.so.4 not found: install libcurl4");
    CHECK(!curl_mapped());
}

static void test_load_and_use(void)
{
    CHECK(!curl_mapped()); /* the binary does not link libcurl */
    const char *why = "unset";
    const struct lk_curl *lc = lk_curl(&why);
    CHECK(lc != NULL);
    CHECK_STR_EQ(why, "unset");
    if (lc == NULL)
        return;
    CHECK(curl_mapped());
    CHECK(lk_curl(NULL) == lc); /* loaded once */
    CHECK_STR_EQ(lc->easy_strerror(CURLE_OK), "No error");
    struct curl_slist *l = lc->slist_append(NULL, "X-A: 1");
    l = lc->slist_append(l, "X-B: 2");
    CHECK_STR_EQ(l->next->data, "X-B: 2");
    lc->slist_free_all(l);
    CURL *e = lc->easy_init();
    CHECK(e != NULL);
    CHECK_INT_EQ(lc->easy_setopt(e, CURLOPT_URL, "http://127.0.0.1:1/"), CURLE_OK);
    CHECK_INT_EQ(lc->easy_setopt(e, CURLOPT_NOSIGNAL, 1L), CURLE_OK);
    lc->easy_cleanup(e);
    CURLM *m = lc->multi_init();
    CHECK(m != NULL);
    CHECK_INT_EQ(lc->multi_cleanup(m), CURLM_OK);
    lk_curl_cleanup();
    lk_curl_cleanup();          /* idempotent */
    CHECK(lk_curl(NULL) == lc); /* initialised again */
    lk_curl_cleanup();
}

int main(void)
{
    RUN(test_missing_library);
    RUN(test_load_and_use);
    return DONE();
}
