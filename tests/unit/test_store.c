/*
 * test_store.c - lib/core/store: the in-memory kv, the parsed-session cache,
 * new_session_name / store_session / strict_store_session (SPEC §2.5, §2.7,
 * §8.1.8) and the error texts of the store layer.
 */
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/names.h"
#include "core/store.h"
#include "harness.h"

static void fill_splitmix(void *ctx, void *buf, size_t n)
{
    unsigned long long *state = ctx;
    unsigned char *out = buf;
    for (size_t i = 0; i < n; i++) {
        unsigned long long z = (*state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        out[i] = (unsigned char)(z ^ (z >> 31));
    }
}

static struct lk_session *make(const char *token, const char *const *services, size_t n)
{
    struct lk_session *s = lk_session_new(LK_SESSION_PREVIEW, token);
    for (size_t i = 0; i < n; i++) {
        struct lk_buf loc = LK_BUF_INIT;
        lk_buf_addf(&loc, "https://%s.example.com", services[i]);
        CHECK_INT_EQ(lk_session_add_service(s, services[i], loc.data, loc.len, NULL), 0);
        lk_buf_release(&loc);
    }
    lk_session_add_domain(s, "example.com", "frontend");
    CHECK_INT_EQ(lk_session_add_route(s, 0, "^/api(?:/|$)", "backend", NULL), 0);
    CHECK_INT_EQ(lk_session_validate(s, NULL), 0);
    return s;
}

static const char *const fb[] = { "frontend", "backend" };
static const char *const bf[] = { "backend", "frontend" };

static int count_cb(void *data, const char *key, const char *value, size_t len)
{
    (void)key;
    (void)value;
    (void)len;
    (*(size_t *)data)++;
    return 0;
}

static void test_memory_kv(void)
{
    struct lk_kv kv;
    struct lk_buf v = LK_BUF_INIT;
    bool exists = true;
    size_t n = 0;
    lk_kv_memory_init(&kv);
    CHECK_INT_EQ(lk_kv_get(&kv, "a", &v, NULL), LK_ENOTFOUND);
    CHECK_INT_EQ(lk_kv_exists(&kv, "a", &exists, NULL), 0);
    CHECK(!exists);
    CHECK_INT_EQ(lk_kv_put(&kv, "a", "one", 3, NULL), 0);
    CHECK_INT_EQ(lk_kv_put(&kv, "a", "two", 3, NULL), 0);
    CHECK_INT_EQ(lk_kv_put(&kv, "", "empty", 5, NULL), 0);
    CHECK_INT_EQ(lk_kv_get(&kv, "a", &v, NULL), 0);
    CHECK_STR_EQ(v.data, "two");
    CHECK_INT_EQ(lk_kv_exists(&kv, "a", &exists, NULL), 0);
    CHECK(exists);
    CHECK_INT_EQ(lk_kv_memory_count(&kv), 2);
    CHECK_INT_EQ(lk_kv_list(&kv, count_cb, &n, NULL), 0);
    CHECK_INT_EQ(n, 2);
    CHECK_INT_EQ(lk_kv_del(&kv, "a", NULL), 0);
    CHECK_INT_EQ(lk_kv_del(&kv, "a", NULL), 0);
    CHECK_INT_EQ(lk_kv_get(&kv, "a", &v, NULL), LK_ENOTFOUND);
    CHECK_INT_EQ(lk_kv_memory_count(&kv), 1);
    lk_buf_release(&v);
    lk_kv_free(&kv);
    lk_kv_free(&kv);
}

/* 10,000 sessions: every one stored and read back through the cache. */
static void test_scale(void)
{
    struct lk_kv kv;
    struct lk_session_cache *cache = lk_session_cache_new(100, 0);
    struct lk_session *s = make("tok", fb, 2);
    lk_kv_memory_init(&kv);
    for (int i = 0; i < 10000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "session-%d", i);
        CHECK_INT_EQ(lk_store_put_session(&kv, name, s, NULL), 0);
    }
    CHECK_INT_EQ(lk_kv_memory_count(&kv), 10000);
    int ok = 0;
    for (int i = 0; i < 10000; i++) {
        char name[32];
        struct lk_session *got = NULL;
        snprintf(name, sizeof(name), "session-%d", (i * 7919) % 10000);
        if (lk_store_get_session(&kv, cache, name, &got, NULL) == 0 &&
            strcmp(got->session_token, "tok") == 0)
            ok++;
        lk_session_free(got);
    }
    CHECK_INT_EQ(ok, 10000);
    lk_session_free(s);
    lk_session_cache_free(cache);
    lk_kv_free(&kv);
}

/* A kv over a memory kv that counts reads and can hide its stamp. */
struct counting_kv {
    struct lk_kv inner;
    int gets;
    bool no_stamp;
};

static int counting_get(void *ctx, const char *key, struct lk_buf *value, struct lk_buf *err)
{
    struct counting_kv *c = ctx;
    c->gets++;
    return lk_kv_get(&c->inner, key, value, err);
}

static int counting_stamp(void *ctx, uint64_t *stamp)
{
    struct counting_kv *c = ctx;
    return c->no_stamp ? LK_EUNSUPPORTED : lk_kv_stamp(&c->inner, stamp);
}

/* With a stamp that has not moved, a cached session is the answer without a
 * read; any write moves the stamp, and a kv without stamps is read on every
 * lookup. */
static void test_cache_skips_reads_under_a_stamp(void)
{
    static const struct lk_kv_ops ops = { counting_get, NULL, NULL,           NULL,
                                          NULL,         NULL, counting_stamp, NULL };
    struct counting_kv c = { 0 };
    struct lk_kv kv = { &ops, &c };
    struct lk_session_cache *cache = lk_session_cache_new(10, 0);
    struct lk_session *s1 = make("one", fb, 2), *s2 = make("two", fb, 2), *got = NULL;
    uint64_t st0 = 0, st1 = 0, st2 = 0;
    lk_kv_memory_init(&c.inner);
    CHECK_INT_EQ(lk_kv_stamp(&c.inner, &st0), 0);
    CHECK(st0 != 0);
    CHECK_INT_EQ(lk_store_put_session(&c.inner, "n", s1, NULL), 0);
    CHECK_INT_EQ(lk_kv_stamp(&c.inner, &st1), 0);
    CHECK(st1 != st0);
    for (int i = 0; i < 3; i++) {
        CHECK_INT_EQ(lk_store_get_session(&kv, cache, "n", &got, NULL), 0);
        CHECK(got != NULL && strcmp(got->session_token, "one") == 0);
        lk_session_free(got);
    }
    CHECK_INT_EQ(c.gets, 1);
    /* A read moves nothing; a write does, and the next lookup reads it. */
    CHECK_INT_EQ(lk_kv_stamp(&c.inner, &st2), 0);
    CHECK(st2 == st1);
    CHECK_INT_EQ(lk_store_put_session(&c.inner, "n", s2, NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "n", &got, NULL), 0);
    CHECK(got != NULL && strcmp(got->session_token, "two") == 0);
    lk_session_free(got);
    CHECK_INT_EQ(c.gets, 2);
    CHECK_INT_EQ(lk_store_delete_session(&c.inner, "n", NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "n", &got, NULL), LK_ENOTFOUND);
    CHECK_INT_EQ(c.gets, 3);
    /* The same cache over another kv with the same stamp number reads. */
    struct counting_kv c2 = { 0 };
    struct lk_kv kv2 = { &ops, &c2 };
    lk_kv_memory_init(&c2.inner);
    CHECK_INT_EQ(lk_store_put_session(&c.inner, "m", s2, NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "m", &got, NULL), 0);
    lk_session_free(got);
    /* c2's stamp counts its writes: bring it to c's number. */
    CHECK_INT_EQ(lk_kv_stamp(&c.inner, &st1), 0);
    CHECK_INT_EQ(lk_kv_stamp(&c2.inner, &st2), 0);
    while (st2 < st1) {
        CHECK_INT_EQ(lk_store_put_session(&c2.inner, "m", s1, NULL), 0);
        CHECK_INT_EQ(lk_kv_stamp(&c2.inner, &st2), 0);
    }
    CHECK(st1 == st2);
    CHECK_INT_EQ(lk_store_get_session(&kv2, cache, "m", &got, NULL), 0);
    CHECK(got != NULL && strcmp(got->session_token, "one") == 0);
    lk_session_free(got);
    CHECK_INT_EQ(c2.gets, 1);
    /* Without a stamp, every lookup reads (and still parses once). */
    c.no_stamp = true;
    int before = c.gets;
    struct lk_session *a = NULL, *b = NULL;
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "m", &a, NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "m", &b, NULL), 0);
    CHECK(a != NULL && a == b);
    CHECK_INT_EQ(c.gets, before + 2);
    lk_session_free(a);
    lk_session_free(b);
    lk_session_free(s1);
    lk_session_free(s2);
    lk_session_cache_free(cache);
    lk_kv_free(&c.inner);
    lk_kv_free(&c2.inner);
}

/* Stores s under "k{i}" and reads it back through cache. */
static void put_and_read(struct lk_kv *kv, struct lk_session_cache *cache, int i,
                         const struct lk_session *s)
{
    char name[16];
    struct lk_session *got = NULL;
    snprintf(name, sizeof(name), "k%d", i);
    CHECK_INT_EQ(lk_store_put_session(kv, name, s, NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(kv, cache, name, &got, NULL), 0);
    CHECK(got != NULL);
    lk_session_free(got);
}

static void test_cache(void)
{
    struct lk_kv kv;
    struct lk_session_cache *cache = lk_session_cache_new(2, 0);
    struct lk_session *s1 = make("one", fb, 2);
    struct lk_session *s2 = make("two", fb, 2);
    struct lk_session *a = NULL, *b = NULL, *c = NULL;
    lk_kv_memory_init(&kv);
    CHECK_INT_EQ(lk_store_put_session(&kv, "n", s1, NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "n", &a, NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "n", &b, NULL), 0);
    CHECK(a != NULL && a == b); /* parsed once */
    CHECK_INT_EQ(lk_store_put_session(&kv, "n", s2, NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "n", &c, NULL), 0);
    CHECK(c != NULL && c != a);
    if (c)
        CHECK_STR_EQ(c->session_token, "two");
    /* The old reference is still valid after the entry was replaced. */
    if (a)
        CHECK_STR_EQ(a->session_token, "one");
    lk_session_free(a);
    lk_session_free(b);
    lk_session_free(c);
    /* Eviction keeps the cache bounded and lookups correct. */
    for (int i = 0; i < 10; i++)
        put_and_read(&kv, cache, i, s1);
    /* A deleted session is not served from the cache. */
    CHECK_INT_EQ(lk_store_delete_session(&kv, "k9", NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "k9", &a, NULL), LK_ENOTFOUND);
    /* The cache's scratch copy of the stored bytes: a large session (past
     * what the scratch keeps), then a shorter one under the same name, each
     * read back as itself. */
    enum {
        N_BIG = 1500
    };
    static char names[N_BIG][16];
    const char *svc[N_BIG];
    for (int i = 0; i < N_BIG; i++) {
        snprintf(names[i], sizeof(names[i]), "svc%d", i);
        svc[i] = i < 2 ? fb[i] : names[i]; /* make()'s routes name these two */
    }
    struct lk_session *big = make("big", svc, N_BIG);
    struct lk_buf json = LK_BUF_INIT;
    lk_session_to_json(big, &json);
    CHECK(json.len > 64 * 1024);
    lk_buf_release(&json);
    CHECK_INT_EQ(lk_store_put_session(&kv, "z", big, NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "z", &a, NULL), 0);
    CHECK(a != NULL && a->n_services == N_BIG);
    lk_session_free(a);
    CHECK_INT_EQ(lk_store_put_session(&kv, "z", s2, NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "z", &a, NULL), 0);
    CHECK(a != NULL && a->n_services == 2);
    if (a)
        CHECK_STR_EQ(a->session_token, "two");
    lk_session_free(a);
    lk_session_free(big);
    lk_session_free(s1);
    lk_session_free(s2);
    lk_session_cache_free(cache);
    lk_kv_free(&kv);
}

/* The cache is bounded by the stored JSON of its sessions as well as by
 * their count; a session larger than the whole budget is read, not cached. */
static void test_cache_byte_budget(void)
{
    struct lk_kv kv;
    struct lk_session *s1 = make("one", fb, 2);
    struct lk_buf json = LK_BUF_INIT;
    lk_session_to_json(s1, &json);
    size_t one = json.len;
    lk_buf_release(&json);
    struct lk_session_cache *cache = lk_session_cache_new(100, 3 * one + one / 2);
    lk_kv_memory_init(&kv);
    size_t bytes = 0;
    for (int i = 0; i < 10; i++) {
        put_and_read(&kv, cache, i, s1);
        size_t n = lk_session_cache_size(cache, &bytes);
        CHECK(n >= 1 && n <= 3);
        CHECK_INT_EQ(bytes, n * one);
    }
    /* Read twice, parsed twice: never cached, and nothing else is evicted. */
    const char *svc[64];
    char names[64][16];
    for (int i = 0; i < 64; i++) {
        snprintf(names[i], sizeof(names[i]), "svc%d", i);
        svc[i] = i < 2 ? fb[i] : names[i];
    }
    struct lk_session *big = make("big", svc, 64);
    struct lk_session *a = NULL, *b = NULL;
    size_t before = lk_session_cache_size(cache, &bytes);
    CHECK_INT_EQ(lk_store_put_session(&kv, "big", big, NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "big", &a, NULL), 0);
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "big", &b, NULL), 0);
    CHECK(a != NULL && b != NULL && a != b && a->n_services == 64);
    CHECK_INT_EQ(lk_session_cache_size(cache, &bytes), before);
    /* A cached session whose stored value stops parsing leaves the cache
     * with its bytes. */
    CHECK_INT_EQ(lk_kv_put(&kv, "k9", "not json", 8, NULL), 0);
    struct lk_session *bad = NULL;
    CHECK_INT_EQ(lk_store_get_session(&kv, cache, "k9", &bad, NULL), LK_EINVAL);
    size_t left = lk_session_cache_size(cache, &bytes);
    CHECK_INT_EQ(left, before - 1);
    CHECK_INT_EQ(bytes, left * one);
    lk_session_free(a);
    lk_session_free(b);
    lk_session_free(big);
    lk_session_free(s1);
    lk_session_cache_free(cache);
    lk_kv_free(&kv);
}

static void test_invalid_stored(void)
{
    static const struct {
        const char *value, *msg;
    } cases[] = {
        { "not json", "Invalid stored config: linkup session json format error: " },
        { "{\"session_token\":\"t\",\"services\":[],\"domains\":[]}",
          "Invalid stored config: empty config" },
    };
    struct lk_kv kv;
    lk_kv_memory_init(&kv);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_session *s = NULL;
        struct lk_buf err = LK_BUF_INIT;
        CHECK_INT_EQ(lk_kv_put(&kv, "bad", cases[i].value, strlen(cases[i].value), NULL), 0);
        CHECK_INT_EQ(lk_store_get_session(&kv, NULL, "bad", &s, &err), LK_EINVAL);
        CHECK(strncmp(err.data, cases[i].msg, strlen(cases[i].msg)) == 0);
        CHECK(s == NULL);
        lk_buf_release(&err);
    }
    lk_kv_free(&kv);
}

/* SPEC §8.1.8: identical preview sessions with services reversed -> 45201d. */
static void test_identical_preview_requests(void)
{
    struct lk_kv kv;
    struct lk_buf n1 = LK_BUF_INIT, n2 = LK_BUF_INIT;
    unsigned long long state = 1;
    struct lk_rng rng = { fill_splitmix, &state };
    struct lk_session *a = make("preview_session", fb, 2);
    struct lk_session *b = make("preview_session", bf, 2);
    lk_kv_memory_init(&kv);
    CHECK_INT_EQ(lk_store_session(&kv, a, LK_NAME_SIX_CHAR, "", &rng, &n1, NULL), 0);
    CHECK_INT_EQ(lk_store_session(&kv, b, LK_NAME_SIX_CHAR, NULL, &rng, &n2, NULL), 0);
    CHECK_STR_EQ(n1.data, "45201d");
    CHECK_STR_EQ(n2.data, "45201d");
    CHECK_INT_EQ(lk_kv_memory_count(&kv), 1);
    lk_buf_release(&n1);
    lk_buf_release(&n2);
    lk_session_free(a);
    lk_session_free(b);
    lk_kv_free(&kv);
}

static bool is_animal(const char *name)
{
    const char *dash = strchr(name, '-');
    if (dash == NULL)
        return false;
    bool adj = false, animal = false;
    for (size_t i = 0; i < LK_N_ADJECTIVES; i++)
        adj |= strlen(lk_name_adjectives[i]) == (size_t)(dash - name) &&
               strncmp(lk_name_adjectives[i], name, (size_t)(dash - name)) == 0;
    for (size_t i = 0; i < LK_N_ANIMALS; i++)
        animal |= strcmp(lk_name_animals[i], dash + 1) == 0;
    return adj && animal;
}

static bool is_six_char(const char *name)
{
    if (strlen(name) != 6)
        return false;
    for (int i = 0; i < 6; i++) {
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9')))
            return false;
    }
    return true;
}

static void test_store_session(void)
{
    struct lk_kv kv;
    unsigned long long state = 99;
    struct lk_rng rng = { fill_splitmix, &state };
    struct lk_session *mine = make("mine", fb, 2);
    struct lk_session *theirs = make("theirs", fb, 2);
    struct lk_buf name = LK_BUF_INIT;
    lk_kv_memory_init(&kv);

    /* A free desired name is taken (animal kind). */
    CHECK_INT_EQ(lk_store_session(&kv, mine, LK_NAME_ANIMAL, "tiny-cow", &rng, &name, NULL), 0);
    CHECK_STR_EQ(name.data, "tiny-cow");
    /* Same token: the desired name is reused and overwritten. */
    lk_buf_reset(&name);
    CHECK_INT_EQ(lk_store_session(&kv, mine, LK_NAME_ANIMAL, "tiny-cow", &rng, &name, NULL), 0);
    CHECK_STR_EQ(name.data, "tiny-cow");
    /* Same token reuses the desired name even with six-char naming (v1 preview). */
    lk_buf_reset(&name);
    CHECK_INT_EQ(lk_store_session(&kv, mine, LK_NAME_SIX_CHAR, "tiny-cow", &rng, &name, NULL), 0);
    CHECK_STR_EQ(name.data, "tiny-cow");
    /* Another token gets a random animal name. */
    lk_buf_reset(&name);
    CHECK_INT_EQ(lk_store_session(&kv, theirs, LK_NAME_ANIMAL, "tiny-cow", &rng, &name, NULL), 0);
    CHECK(strcmp(name.data, "tiny-cow") != 0);
    CHECK(is_animal(name.data));
    /* Quirk: a new desired name with six-char naming is ignored for the hash. */
    lk_buf_reset(&name);
    CHECK_INT_EQ(lk_store_session(&kv, theirs, LK_NAME_SIX_CHAR, "brand-new", &rng, &name, NULL),
                 0);
    CHECK(is_six_char(name.data));
    struct lk_session *got = NULL;
    CHECK_INT_EQ(lk_store_get_session(&kv, NULL, "tiny-cow", &got, NULL), 0);
    if (got)
        CHECK_STR_EQ(got->session_token, "mine");
    lk_session_free(got);
    lk_buf_release(&name);
    lk_session_free(mine);
    lk_session_free(theirs);
    lk_kv_free(&kv);
}

/* With every animal name taken, new_session_name falls back to six chars. */
static void test_saturation(void)
{
    struct lk_kv kv;
    unsigned long long state = 5;
    struct lk_rng rng = { fill_splitmix, &state };
    struct lk_session *s = make("t", fb, 2);
    lk_kv_memory_init(&kv);
    for (size_t i = 0; i < LK_N_ADJECTIVES; i++) {
        for (size_t j = 0; j < LK_N_ANIMALS; j++) {
            char key[64];
            snprintf(key, sizeof(key), "%s-%s", lk_name_adjectives[i], lk_name_animals[j]);
            CHECK_INT_EQ(lk_kv_put(&kv, key, "x", 1, NULL), 0);
        }
    }
    for (int i = 0; i < 20; i++) {
        struct lk_buf name = LK_BUF_INIT;
        CHECK_INT_EQ(lk_new_session_name(&kv, LK_NAME_ANIMAL, "able-ant", s, &rng, &name, NULL), 0);
        CHECK(is_six_char(name.data));
        lk_buf_release(&name);
    }
    /* A free desired name still wins. */
    struct lk_buf name = LK_BUF_INIT;
    CHECK_INT_EQ(lk_new_session_name(&kv, LK_NAME_ANIMAL, "mine", s, &rng, &name, NULL), 0);
    CHECK_STR_EQ(name.data, "mine");
    lk_buf_release(&name);
    lk_session_free(s);
    lk_kv_free(&kv);
}

static void test_strict_store(void)
{
    struct lk_kv kv;
    struct lk_session *mine = make("mine", fb, 2);
    struct lk_session *theirs = make("theirs", bf, 2);
    struct lk_buf err = LK_BUF_INIT;
    lk_kv_memory_init(&kv);
    CHECK_INT_EQ(lk_strict_store_session(&kv, "", mine, &err), LK_EINVAL);
    CHECK_STR_EQ(err.data, "Session name is empty");
    lk_buf_reset(&err);
    CHECK_INT_EQ(lk_strict_store_session(&kv, "n", mine, &err), 0);
    CHECK_INT_EQ(lk_strict_store_session(&kv, "n", mine, &err), 0);
    CHECK_INT_EQ(err.len, 0);
    CHECK_INT_EQ(lk_strict_store_session(&kv, "n", theirs, &err), LK_ECONFLICT);
    CHECK_STR_EQ(err.data, "Session with name already exists");
    struct lk_session *got = NULL;
    CHECK_INT_EQ(lk_store_get_session(&kv, NULL, "n", &got, NULL), 0);
    if (got)
        CHECK_STR_EQ(got->session_token, "mine");
    lk_session_free(got);
    lk_buf_release(&err);
    lk_session_free(mine);
    lk_session_free(theirs);
    lk_kv_free(&kv);
}

/* A kv over a memory kv whose first put_if finds that another writer (a
 * second worker sharing the store) stored `intruder` under the same key
 * after this one read it: the write is refused as the store would refuse it. */
struct racing_kv {
    struct lk_kv inner;
    const char *intruder;
    const char *alt; /* when set, every other race stores this instead */
    int races;
};

static int racing_get(void *ctx, const char *key, struct lk_buf *value, struct lk_buf *err)
{
    return lk_kv_get(&((struct racing_kv *)ctx)->inner, key, value, err);
}

static int racing_exists(void *ctx, const char *key, bool *exists, struct lk_buf *err)
{
    return lk_kv_exists(&((struct racing_kv *)ctx)->inner, key, exists, err);
}

static int racing_put(void *ctx, const char *key, const char *value, size_t len, struct lk_buf *err)
{
    return lk_kv_put(&((struct racing_kv *)ctx)->inner, key, value, len, err);
}

static int racing_put_if(void *ctx, const char *key, const char *expect, size_t expect_len,
                         const char *value, size_t len, struct lk_buf *err)
{
    struct racing_kv *r = ctx;
    if (r->races > 0) {
        const char *v = r->alt != NULL && r->races % 2 ? r->alt : r->intruder;
        r->races--;
        lk_kv_put(&r->inner, key, v, strlen(v), NULL);
    }
    return lk_kv_put_if(&r->inner, key, expect, expect_len, value, len, err);
}

static void test_store_race_with_another_writer(void)
{
    static const struct lk_kv_ops ops = { racing_get, racing_exists, racing_put, NULL,
                                          NULL,       NULL,          NULL,       racing_put_if };
    struct lk_session *mine = make("mine", fb, 2);
    struct lk_session *theirs = make("theirs", bf, 2);
    struct lk_buf json = LK_BUF_INIT;
    lk_session_to_json(theirs, &json);
    struct racing_kv r = { .intruder = json.data, .races = 1 };
    struct lk_kv kv = { &ops, &r };
    struct lk_buf err = LK_BUF_INIT;
    struct lk_session *got = NULL;
    lk_kv_memory_init(&r.inner);
    /* Strict (v2): the name was free when read, another token took it before
     * the write: 409, and the other's session stays. */
    CHECK_INT_EQ(lk_strict_store_session(&kv, "n", mine, &err), LK_ECONFLICT);
    CHECK_STR_EQ(err.data, "Session with name already exists");
    CHECK_INT_EQ(lk_store_get_session(&r.inner, NULL, "n", &got, NULL), 0);
    if (got)
        CHECK_STR_EQ(got->session_token, "theirs");
    lk_session_free(got);
    got = NULL;
    /* Without another writer the name is taken at once. */
    r.intruder = "{}";
    r.races = 0;
    lk_buf_reset(&err);
    CHECK_INT_EQ(lk_strict_store_session(&kv, "m", mine, &err), 0);
    /* Animal naming (v1): the desired name was taken in between: the retry
     * draws another name, and both sessions are kept. */
    unsigned long long state = 9;
    struct lk_rng rng = { fill_splitmix, &state };
    struct lk_buf name = LK_BUF_INIT;
    r.intruder = json.data;
    r.races = 1;
    CHECK_INT_EQ(lk_store_session(&kv, mine, LK_NAME_ANIMAL, "tiny-cow", &rng, &name, NULL), 0);
    CHECK(name.len > 0 && strcmp(name.data, "tiny-cow") != 0);
    CHECK_INT_EQ(lk_store_get_session(&r.inner, NULL, name.data, &got, NULL), 0);
    if (got)
        CHECK_STR_EQ(got->session_token, "mine");
    lk_session_free(got);
    got = NULL;
    CHECK_INT_EQ(lk_store_get_session(&r.inner, NULL, "tiny-cow", &got, NULL), 0);
    if (got)
        CHECK_STR_EQ(got->session_token, "theirs");
    lk_session_free(got);
    lk_buf_release(&name);
    lk_buf_release(&err);
    lk_buf_release(&json);
    lk_session_free(mine);
    lk_session_free(theirs);
    lk_kv_free(&r.inner);
}

/* The owner writing one name from many workers at once: every write of
 * this one loses its compare-and-set to another write of the same token
 * (more often than it may try again). Each counts as done, for both namings,
 * and the name stays the owner's. */
static void test_owner_writes_under_contention(void)
{
    static const struct lk_kv_ops ops = { racing_get, racing_exists, racing_put, NULL,
                                          NULL,       NULL,          NULL,       racing_put_if };
    struct lk_session *mine = make("mine", fb, 2);
    struct lk_session *also_mine = make("mine", bf, 2);
    struct lk_buf json = LK_BUF_INIT, json2 = LK_BUF_INIT;
    lk_session_to_json(also_mine, &json);
    lk_session_to_json(mine, &json2);
    struct racing_kv r = { .intruder = json.data, .alt = json2.data, .races = 0 };
    struct lk_kv kv = { &ops, &r };
    lk_kv_memory_init(&r.inner);
    struct lk_buf err = LK_BUF_INIT;
    CHECK_INT_EQ(lk_strict_store_session(&kv, "n", mine, &err), 0);
    r.races = 1000;
    CHECK_INT_EQ(lk_strict_store_session(&kv, "n", mine, &err), 0);
    CHECK_INT_EQ(err.len, 0);
    unsigned long long state = 3;
    struct lk_rng rng = { fill_splitmix, &state };
    struct lk_buf name = LK_BUF_INIT;
    CHECK_INT_EQ(lk_store_session(&kv, mine, LK_NAME_ANIMAL, "n", &rng, &name, &err), 0);
    CHECK_STR_EQ(name.data, "n");
    CHECK_INT_EQ(err.len, 0);
    struct lk_session *got = NULL;
    CHECK_INT_EQ(lk_store_get_session(&r.inner, NULL, "n", &got, NULL), 0);
    if (got)
        CHECK_STR_EQ(got->session_token, "mine");
    CHECK_INT_EQ(lk_kv_memory_count(&r.inner), 1);
    lk_session_free(got);
    lk_buf_release(&name);
    lk_buf_release(&err);
    lk_buf_release(&json);
    lk_buf_release(&json2);
    lk_session_free(mine);
    lk_session_free(also_mine);
    lk_kv_free(&r.inner);
}

/* SPEC §2.5 step 1 + §2.7: store_session's lookup of the desired name fails
 * on a stored value that does not parse, for both namings, and leaves the
 * store alone; a missing desired name is no error. */
static void test_store_session_invalid_desired(void)
{
    static const char corrupt[] = "not json";
    static const char want[] = "Invalid stored config: linkup session json format error: ";
    static const enum lk_name_kind kinds[] = { LK_NAME_ANIMAL, LK_NAME_SIX_CHAR };
    struct lk_kv kv;
    unsigned long long state = 5;
    struct lk_rng rng = { fill_splitmix, &state };
    struct lk_session *s = make("mine", fb, 2);
    lk_kv_memory_init(&kv);
    CHECK_INT_EQ(lk_kv_put(&kv, "tiny-cow", corrupt, sizeof(corrupt) - 1, NULL), 0);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        struct lk_buf name = LK_BUF_INIT;
        struct lk_buf err = LK_BUF_INIT;
        struct lk_buf raw = LK_BUF_INIT;
        CHECK_INT_EQ(lk_store_session(&kv, s, kinds[i], "tiny-cow", &rng, &name, &err), LK_EINVAL);
        CHECK_INT_EQ(name.len, 0);
        CHECK(strncmp(err.data, want, strlen(want)) == 0);
        CHECK_INT_EQ(lk_kv_memory_count(&kv), 1);
        CHECK_INT_EQ(lk_kv_get(&kv, "tiny-cow", &raw, NULL), 0);
        CHECK_STR_EQ(raw.data, corrupt);
        lk_buf_release(&raw);
        lk_buf_release(&err);
        lk_buf_release(&name);
    }
    /* A desired name that is not stored is taken, with no error text. */
    struct lk_buf name = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    CHECK_INT_EQ(lk_store_session(&kv, s, LK_NAME_ANIMAL, "free-fox", &rng, &name, &err), 0);
    CHECK_STR_EQ(name.data, "free-fox");
    CHECK_INT_EQ(err.len, 0);
    lk_buf_release(&err);
    lk_buf_release(&name);
    lk_session_free(s);
    lk_kv_free(&kv);
}

/* A kv whose every operation fails: the SPEC texts wrap its reason. */
static int fail_get(void *ctx, const char *key, struct lk_buf *value, struct lk_buf *err)
{
    (void)ctx, (void)key, (void)value;
    lk_buf_adds(err, "boom");
    return LK_ESTORE;
}
static int fail_exists(void *ctx, const char *key, bool *exists, struct lk_buf *err)
{
    (void)ctx, (void)key, (void)exists;
    lk_buf_adds(err, "boom");
    return LK_ESTORE;
}
static int fail_put(void *ctx, const char *key, const char *value, size_t len, struct lk_buf *err)
{
    (void)ctx, (void)key, (void)value, (void)len;
    lk_buf_adds(err, "boom");
    return LK_ESTORE;
}
static int fail_del(void *ctx, const char *key, struct lk_buf *err)
{
    (void)ctx, (void)key;
    lk_buf_adds(err, "boom");
    return LK_ESTORE;
}

static void test_failing_kv(void)
{
    static const struct lk_kv_ops ops = { fail_get, fail_exists, fail_put, fail_del,
                                          NULL,     NULL,        NULL,     NULL };
    struct lk_kv kv = { &ops, NULL };
    struct lk_session *s = make("t", fb, 2);
    struct lk_session *got = NULL;
    unsigned long long state = 3;
    struct lk_rng rng = { fill_splitmix, &state };
    static const char *const want[] = {
        "Could not get config: boom",    "Could not put config: boom",
        "Could not delete config: boom", "Not implemented",
        "Could not get config: boom",    "Could not put config: boom",
    };
    struct lk_buf err[6] = { LK_BUF_INIT, LK_BUF_INIT, LK_BUF_INIT,
                             LK_BUF_INIT, LK_BUF_INIT, LK_BUF_INIT };
    struct lk_buf name = LK_BUF_INIT;
    CHECK_INT_EQ(lk_store_get_session(&kv, NULL, "n", &got, &err[0]), LK_ESTORE);
    CHECK_INT_EQ(lk_store_put_session(&kv, "n", s, &err[1]), LK_ESTORE);
    CHECK_INT_EQ(lk_store_delete_session(&kv, "n", &err[2]), LK_ESTORE);
    CHECK_INT_EQ(lk_kv_list(&kv, count_cb, NULL, &err[3]), LK_EUNSUPPORTED);
    CHECK_INT_EQ(lk_store_session(&kv, s, LK_NAME_ANIMAL, "", &rng, &name, &err[4]), LK_ESTORE);
    CHECK_INT_EQ(lk_store_session(&kv, s, LK_NAME_SIX_CHAR, "", &rng, &name, &err[5]), LK_ESTORE);
    CHECK_INT_EQ(name.len, 0);
    for (int i = 0; i < 6; i++) {
        CHECK_STR_EQ(err[i].data, want[i]);
        lk_buf_release(&err[i]);
    }
    lk_buf_release(&name);
    lk_session_free(s);
    lk_kv_free(&kv);
}

/* Names as ranges (routing): short ones on the stack, long ones allocated,
 * a NUL byte never found. */
static void test_get_by_range(void)
{
    struct lk_kv kv;
    struct lk_session *s1 = make("one", fb, 2);
    struct lk_session *got = NULL;
    char longname[100];
    memset(longname, 'l', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    lk_kv_memory_init(&kv);
    CHECK_INT_EQ(lk_store_put_session(&kv, "tiny-cow", s1, NULL), 0);
    CHECK_INT_EQ(lk_store_put_session(&kv, longname, s1, NULL), 0);
    struct lk_str shortr = { "tiny-cow.example.com", 8 };
    CHECK_INT_EQ(lk_store_get_session_str(&kv, NULL, shortr, &got, NULL), 0);
    if (got)
        CHECK_STR_EQ(got->session_token, "one");
    lk_session_free(got);
    got = NULL;
    CHECK_INT_EQ(lk_store_get_session_str(&kv, NULL, lk_str_c(longname), &got, NULL), 0);
    lk_session_free(got);
    struct lk_str nul = { "tiny-cow\0x", 10 };
    CHECK_INT_EQ(lk_store_get_session_str(&kv, NULL, nul, &got, NULL), LK_ENOTFOUND);
    CHECK_INT_EQ(lk_store_get_session_str(&kv, NULL, LK_STR("tiny"), &got, NULL), LK_ENOTFOUND);
    lk_session_free(s1);
    lk_kv_free(&kv);
}

int main(void)
{
    RUN(test_memory_kv);
    RUN(test_get_by_range);
    RUN(test_scale);
    RUN(test_cache);
    RUN(test_cache_byte_budget);
    RUN(test_cache_skips_reads_under_a_stamp);
    RUN(test_invalid_stored);
    RUN(test_identical_preview_requests);
    RUN(test_store_session);
    RUN(test_store_session_invalid_desired);
    RUN(test_saturation);
    RUN(test_strict_store);
    RUN(test_store_race_with_another_writer);
    RUN(test_owner_writes_under_contention);
    RUN(test_failing_kv);
    return DONE();
}
