/*
 * test_release.c - lib/core/release: manifest selection per channel and
 * platform, relative asset URLs, the cache file round trip, the update rule
 * of SPEC §6.5.9 and the next-UTC-midnight arithmetic.
 */
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/release.h"
#include "harness.h"

#define SHA_A       "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define SHA_B       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define SHA_B_LOWER "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

#define BASE        "http://127.0.0.1:8000/rel/manifest.json"

static const char manifest[] =
    "{\"releases\": ["
    " {\"version\": \"4.2.0\", \"channel\": \"stable\", \"assets\": {"
    "   \"aarch64-apple-darwin\": {\"url\": \"mac.tar.gz\", \"sha256\": \"" SHA_A "\"},"
    "   \"x86_64-unknown-linux-gnu\": {\"url\": \"linkup-4.2.0\", \"sha256\": \"" SHA_A "\"}}},"
    " {\"version\": \"4.10.0\", \"assets\": {"
    "   \"x86_64-unknown-linux-musl\": {\"url\": \"/abs/linkup-4.10.0.tar.gz\","
    "    \"sha256\": \"" SHA_B "\", \"extra\": 1}}, \"notes\": \"ignored\"},"
    " {\"version\": \"9.0.0\", \"assets\": {"
    "   \"aarch64-unknown-linux-gnu\": {\"url\": \"arm\", \"sha256\": \"" SHA_A "\"}}},"
    " {\"version\": \"9.1.0\", \"assets\": {"
    "   \"x86_64-unknown-linux-gnu\": {\"url\": \"bad-sha\", \"sha256\": \"abc\"}}},"
    " {\"version\": \"not-a-version\", \"assets\": {}},"
    " {\"version\": \"9.2.0\", \"channel\": \"nightly\", \"assets\": {"
    "   \"x86_64-unknown-linux-gnu\": {\"url\": \"x\", \"sha256\": \"" SHA_A "\"}}},"
    " {\"version\": \"9.3.0\", \"assets\": {"
    "   \"x86_64-unknown-linux-gnu\": {\"url\": \"ftp://h/x\", \"sha256\": \"" SHA_A "\"}}},"
    " {\"version\": \"0.0.0-next-2026-01-02\", \"assets\": {"
    "   \"x86_64-unknown-linux-gnu\": {\"url\": \"https://cdn.test/b1\", \"sha256\": \"" SHA_A
    "\"}}},"
    " {\"version\": \"0.0.0-next-2026-03-04\", \"channel\": \"beta\", \"assets\": {"
    "   \"x86_64-unknown-linux-gnu\": {\"url\": \"../beta/b2?x=1\", \"sha256\": \"" SHA_A "\"}}},"
    " 42"
    "]}";

static void test_manifest_picks_highest_per_channel(void)
{
    struct lk_release_list list = LK_RELEASE_LIST_INIT;
    struct lk_buf why = LK_BUF_INIT;
    int rc = lk_release_manifest_parse(manifest, strlen(manifest), BASE, "unknown-linux", "x86_64",
                                       &list, &why);
    CHECK_INT_EQ(rc, 0);
    CHECK_INT_EQ(list.n, 2);
    const struct lk_release *st = lk_release_find(&list, LK_CHANNEL_STABLE);
    const struct lk_release *be = lk_release_find(&list, LK_CHANNEL_BETA);
    CHECK(st != NULL && be != NULL);
    if (st == NULL || be == NULL)
        goto out;
    /* 4.10.0 beats 4.2.0 numerically; 9.x have no usable asset here. */
    CHECK_INT_EQ(st->version.minor, 10);
    CHECK_STR_EQ(st->url, "http://127.0.0.1:8000/abs/linkup-4.10.0.tar.gz");
    CHECK_STR_EQ(st->name, "linkup-4.10.0.tar.gz");
    CHECK_STR_EQ(st->sha256, SHA_B_LOWER);
    CHECK_STR_EQ(be->version.pre, "next-2026-03-04");
    CHECK_STR_EQ(be->url, "http://127.0.0.1:8000/beta/b2?x=1");
    CHECK_STR_EQ(be->name, "b2");
out:
    lk_release_list_release(&list);
    lk_buf_release(&why);
}

static void test_manifest_platforms(void)
{
    struct lk_release_list list = LK_RELEASE_LIST_INIT;
    CHECK_INT_EQ(lk_release_manifest_parse(manifest, strlen(manifest), BASE, "apple-darwin",
                                           "aarch64", &list, NULL),
                 0);
    CHECK_INT_EQ(list.n, 1);
    if (list.n == 1) {
        CHECK_STR_EQ(list.items[0].url, "http://127.0.0.1:8000/rel/mac.tar.gz");
        CHECK_INT_EQ(list.items[0].version.minor, 2);
    }
    lk_release_list_release(&list);

    CHECK_INT_EQ(lk_release_manifest_parse(manifest, strlen(manifest), BASE, "unknown-linux",
                                           "aarch64", &list, NULL),
                 0);
    CHECK_INT_EQ(list.n, 1);
    if (list.n == 1)
        CHECK_INT_EQ(list.items[0].version.major, 9);
    lk_release_list_release(&list);

    CHECK_INT_EQ(lk_release_manifest_parse(manifest, strlen(manifest), BASE, "unknown-freebsd",
                                           "x86_64", &list, NULL),
                 0);
    CHECK_INT_EQ(list.n, 0);
    lk_release_list_release(&list);
}

static void test_manifest_errors(void)
{
    static const char *const bad[] = { "",    "not json",           "[]",
                                       "{}",  "{\"releases\": {}}", "{\"releases\": [1,",
                                       "null" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct lk_release_list list = LK_RELEASE_LIST_INIT;
        struct lk_buf why = LK_BUF_INIT;
        CHECK_INT_EQ(lk_release_manifest_parse(bad[i], strlen(bad[i]), BASE, "unknown-linux",
                                               "x86_64", &list, &why),
                     LK_EPARSE);
        CHECK(why.len > 0);
        CHECK_INT_EQ(list.n, 0);
        lk_buf_release(&why);
    }
    struct lk_release_list list = LK_RELEASE_LIST_INIT;
    const char *empty = "{\"releases\": []}";
    CHECK_INT_EQ(lk_release_manifest_parse(empty, strlen(empty), BASE, "unknown-linux", "x86_64",
                                           &list, NULL),
                 0);
    CHECK_INT_EQ(list.n, 0);
}

static void test_resolve_url(void)
{
    static const struct {
        const char *base, *ref, *want;
    } cases[] = {
        { BASE, "linkup", "http://127.0.0.1:8000/rel/linkup" },
        { BASE, "./a/../b", "http://127.0.0.1:8000/rel/b" },
        { BASE, "../x", "http://127.0.0.1:8000/x" },
        { BASE, "../../../x", "http://127.0.0.1:8000/x" },
        { BASE, "/top", "http://127.0.0.1:8000/top" },
        { BASE, "//other.test/p", "http://other.test/p" },
        { BASE, "https://Cdn.Test:443/a", "https://cdn.test/a" },
        { BASE, "?v=2", "http://127.0.0.1:8000/rel/manifest.json?v=2" },
        { "http://h.test", "f", "http://h.test/f" },
        { "http://u:p@h.test:81/d/m?q=1#f", "f", "http://u:p@h.test:81/d/f" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_buf out = LK_BUF_INIT;
        CHECK_INT_EQ(lk_release_resolve_url(cases[i].base, cases[i].ref, &out), 0);
        CHECK_STR_EQ(out.data, cases[i].want);
        lk_buf_release(&out);
    }
    struct lk_buf out = LK_BUF_INIT;
    CHECK_INT_EQ(lk_release_resolve_url("relative/base", "x", &out), LK_EPARSE);
    CHECK_INT_EQ(out.len, 0);
    lk_buf_release(&out);
}

static void test_cache_round_trip(void)
{
    struct lk_release_list list = LK_RELEASE_LIST_INIT;
    CHECK_INT_EQ(lk_release_manifest_parse(manifest, strlen(manifest), BASE, "unknown-linux",
                                           "x86_64", &list, NULL),
                 0);
    struct lk_release_cache cache = { 1700000000, 1700006400, list };
    struct lk_buf json = LK_BUF_INIT;
    lk_release_cache_to_json(&cache, &json);
    CHECK(strstr(json.data, "\n  \"fetched_at\": 1700000000,\n") != NULL);
    CHECK(strstr(json.data, "\"channel\": \"Stable\"") != NULL);
    CHECK(strstr(json.data, "\"channel\": \"Beta\"") != NULL);
    CHECK(strstr(json.data, "\"pre_release\": null") != NULL);
    CHECK(strstr(json.data, "\"pre_release\": \"next-2026-03-04\"") != NULL);
    CHECK(strstr(json.data, "\"browser_download_url\": ") != NULL);
    CHECK(json.len > 0 && json.data[json.len - 1] == '\n');

    struct lk_release_cache back;
    CHECK_INT_EQ(lk_release_cache_parse(json.data, json.len, &back, NULL), 0);
    CHECK_INT_EQ(back.fetched_at, 1700000000);
    CHECK_INT_EQ(back.next_fetch_at, 1700006400);
    CHECK_INT_EQ(back.releases.n, 2);
    for (size_t i = 0; i < back.releases.n && i < list.n; i++) {
        const struct lk_release *a = &list.items[i];
        const struct lk_release *b = &back.releases.items[i];
        CHECK_INT_EQ(a->channel, b->channel);
        CHECK(lk_version_eq(&a->version, &b->version));
        CHECK_STR_EQ(a->name, b->name);
        CHECK_STR_EQ(a->url, b->url);
        CHECK_STR_EQ(a->sha256, b->sha256);
    }
    struct lk_buf again = LK_BUF_INIT;
    lk_release_cache_to_json(&back, &again);
    CHECK_STR_EQ(again.data, json.data);
    lk_buf_release(&again);
    lk_buf_release(&json);
    lk_release_cache_release(&back);
    lk_release_cache_release(&cache);
}

static void test_cache_rejects(void)
{
    static const char *const bad[] = {
        "",
        "{}",
        "{\"fetched_at\": 1, \"next_fetch_at\": 2}",
        "{\"fetched_at\": \"1\", \"next_fetch_at\": 2, \"releases\": []}",
        "{\"fetched_at\": 1, \"next_fetch_at\": 2, \"releases\": [{}]}",
        "{\"fetched_at\": 1, \"next_fetch_at\": 2, \"releases\": [{\"channel\": \"stable\"}]}",
        "{\"fetched_at\": 1, \"next_fetch_at\": 2, \"releases\": [{\"channel\": \"Stable\","
        " \"version\": {\"major\": 70000, \"minor\": 0, \"patch\": 0, \"pre_release\": null},"
        " \"binary\": {\"name\": \"n\", \"browser_download_url\": \"http://h/x\","
        " \"sha256\": \"" SHA_A "\"}}]}",
        "{\"fetched_at\": 1, \"next_fetch_at\": 2, \"releases\": [{\"channel\": \"Stable\","
        " \"version\": {\"major\": 1, \"minor\": 0, \"patch\": 0, \"pre_release\": null},"
        " \"binary\": {\"name\": \"n\", \"browser_download_url\": \"http://h/x\","
        " \"sha256\": \"abc\"}}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct lk_release_cache c;
        struct lk_buf why = LK_BUF_INIT;
        CHECK_INT_EQ(lk_release_cache_parse(bad[i], strlen(bad[i]), &c, &why), LK_EPARSE);
        CHECK(why.len > 0);
        CHECK_INT_EQ(c.releases.n, 0);
        lk_buf_release(&why);
    }
    /* SPEC §6.5.9's own shape has no digest: read with an empty one, and
     * written back the same way. */
    const char *orig = "{\"fetched_at\": 1, \"next_fetch_at\": 2, \"releases\": [{\"channel\":"
                       " \"Stable\", \"version\": {\"major\": 9, \"minor\": 0, \"patch\": 0,"
                       " \"pre_release\": null}, \"binary\": {\"name\": \"n\","
                       " \"browser_download_url\": \"http://h/x\"}}]}";
    struct lk_release_cache oc;
    struct lk_buf ojson = LK_BUF_INIT;
    CHECK_INT_EQ(lk_release_cache_parse(orig, strlen(orig), &oc, NULL), 0);
    CHECK_INT_EQ(oc.releases.n, 1);
    CHECK_STR_EQ(oc.releases.items[0].sha256, "");
    lk_release_cache_to_json(&oc, &ojson);
    CHECK(strstr(ojson.data, "sha256") == NULL);
    lk_buf_release(&ojson);
    lk_release_cache_release(&oc);
    const char *empty = "{\"fetched_at\": 1, \"next_fetch_at\": 2, \"releases\": []}";
    struct lk_release_cache c;
    CHECK_INT_EQ(lk_release_cache_parse(empty, strlen(empty), &c, NULL), 0);
    CHECK_INT_EQ(c.next_fetch_at, 2);
    CHECK_INT_EQ(c.releases.n, 0);
    lk_release_cache_release(&c);
}

static void check_update(const char *rel, int requested, const char *cur, bool want)
{
    struct lk_release r;
    struct lk_version v;
    memset(&r, 0, sizeof(r));
    CHECK_INT_EQ(lk_version_parse(lk_str_c(rel), &r.version, NULL), 0);
    CHECK_INT_EQ(lk_version_parse(lk_str_c(cur), &v, NULL), 0);
    r.channel = lk_version_channel(&r.version);
    if (lk_release_is_update(&r, (enum lk_channel)requested, &v) != want)
        fprintf(stderr, "  update(%s, %d, %s) != %d\n", rel, requested, cur, want);
    CHECK(lk_release_is_update(&r, (enum lk_channel)requested, &v) == want);
    lk_version_release(&r.version);
    lk_version_release(&v);
}

static void test_is_update(void)
{
    check_update("4.1.2", LK_CHANNEL_STABLE, "4.1.1", true);
    check_update("4.1.1", LK_CHANNEL_STABLE, "4.1.1", false);
    check_update("4.1.0", LK_CHANNEL_STABLE, "4.1.1", false);
    check_update("4.10.0", LK_CHANNEL_STABLE, "4.9.0", true);
    /* Changing channel is an update even to a "lower" version. */
    check_update("0.0.0-next-1", LK_CHANNEL_BETA, "4.1.1", true);
    check_update("4.0.0", LK_CHANNEL_STABLE, "0.0.0-next-9", true);
    check_update("0.0.0-next-2", LK_CHANNEL_BETA, "0.0.0-next-1", true);
    check_update("0.0.0-next-1", LK_CHANNEL_BETA, "0.0.0-next-1", false);
    struct lk_version v;
    CHECK_INT_EQ(lk_version_parse(lk_str_c("4.1.1"), &v, NULL), 0);
    CHECK(!lk_release_is_update(NULL, LK_CHANNEL_BETA, &v));
    lk_version_release(&v);
}

static void test_next_midnight(void)
{
    CHECK_INT_EQ(lk_release_next_midnight(0), 86400);
    CHECK_INT_EQ(lk_release_next_midnight(86399), 86400);
    CHECK_INT_EQ(lk_release_next_midnight(86400), 172800);
    /* 2023-11-14T22:13:20Z -> 2023-11-15T00:00:00Z */
    CHECK_INT_EQ(lk_release_next_midnight(1700000000), 1700006400);
    CHECK_INT_EQ(lk_release_next_midnight(-1), 0);
    CHECK_INT_EQ(lk_release_next_midnight(-86400), 0);
}

static void test_platform_names(void)
{
    CHECK_STR_EQ(lk_release_os_part("Linux"), "unknown-linux");
    CHECK_STR_EQ(lk_release_os_part("Darwin"), "apple-darwin");
    CHECK(lk_release_os_part("FreeBSD") == NULL);
    CHECK_STR_EQ(lk_release_arch("x86_64"), "x86_64");
    CHECK_STR_EQ(lk_release_arch("arm64"), "aarch64");
    CHECK_STR_EQ(lk_release_arch("aarch64"), "aarch64");
    CHECK_STR_EQ(lk_release_arch("riscv64"), "riscv64");
}

int main(void)
{
    RUN(test_manifest_picks_highest_per_channel);
    RUN(test_manifest_platforms);
    RUN(test_manifest_errors);
    RUN(test_resolve_url);
    RUN(test_cache_round_trip);
    RUN(test_cache_rejects);
    RUN(test_is_update);
    RUN(test_next_midnight);
    RUN(test_platform_names);
    return DONE();
}
