/*
 * test_names.c - lib/core/names: the SPEC §2.5 word lists, the random
 * generators under a deterministic RNG, and the hash name of §2.6/§9.
 */
#include <stdlib.h>
#include <string.h>

#include "core/names.h"
#include "harness.h"

/* splitmix64: a deterministic byte source for the injected RNG. */
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

static void fill_zero(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    memset(buf, 0, n);
}

static bool all_lower(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 'a' || s[i] > 'z')
            return false;
    }
    return n > 0;
}

static int index_of(const char *const *list, size_t n, const char *w, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (strlen(list[i]) == len && memcmp(list[i], w, len) == 0)
            return (int)i;
    }
    return -1;
}

static void test_lists(void)
{
    static const struct {
        int adj_index;
        const char *adj;
    } spots[] = { { 0, "able" },    { 1, "acid" },    { 24, "crazy" }, { 65, "lucky" },
                  { 107, "sweet" }, { 108, "sunny" }, { 122, "wild" }, { 126, "zesty" } };
    for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++)
        CHECK_STR_EQ(lk_name_adjectives[spots[i].adj_index], spots[i].adj);
    CHECK_STR_EQ(lk_name_animals[0], "ant");
    CHECK_STR_EQ(lk_name_animals[19], "koala");
    CHECK_STR_EQ(lk_name_animals[36], "zebra");
    for (size_t i = 0; i < LK_N_ADJECTIVES; i++)
        CHECK(all_lower(lk_name_adjectives[i], strlen(lk_name_adjectives[i])));
    for (size_t i = 0; i < LK_N_ANIMALS; i++)
        CHECK(all_lower(lk_name_animals[i], strlen(lk_name_animals[i])));
}

static void test_random_animal(void)
{
    unsigned long long state = 42;
    struct lk_rng rng = { fill_splitmix, &state };
    int seen_animals[LK_N_ANIMALS] = { 0 };
    for (int i = 0; i < 2000; i++) {
        struct lk_buf name = LK_BUF_INIT;
        lk_name_random_animal(&rng, &name);
        const char *dash = strchr(name.data, '-');
        CHECK(dash != NULL);
        if (dash == NULL)
            continue;
        size_t a = (size_t)(dash - name.data);
        size_t b = name.len - a - 1;
        CHECK(all_lower(name.data, a) && all_lower(dash + 1, b)); /* ^[a-z]+-[a-z]+$ */
        CHECK(index_of(lk_name_adjectives, LK_N_ADJECTIVES, name.data, a) >= 0);
        int k = index_of(lk_name_animals, LK_N_ANIMALS, dash + 1, b);
        CHECK(k >= 0);
        if (k >= 0)
            seen_animals[k]++;
        lk_buf_release(&name);
    }
    for (size_t i = 0; i < LK_N_ANIMALS; i++)
        CHECK(seen_animals[i] > 0);

    struct lk_rng zero = { fill_zero, NULL };
    struct lk_buf name = LK_BUF_INIT;
    lk_name_random_animal(&zero, &name);
    CHECK_STR_EQ(name.data, "able-ant");
    lk_buf_release(&name);
}

static void test_random_six_char(void)
{
    unsigned long long state = 7;
    struct lk_rng rng = { fill_splitmix, &state };
    size_t letters = 0, digits = 0;
    for (int i = 0; i < 5000; i++) {
        struct lk_buf name = LK_BUF_INIT;
        lk_name_random_six_char(&rng, &name);
        CHECK_INT_EQ(name.len, 6);
        for (size_t j = 0; j < name.len; j++) {
            char c = name.data[j];
            CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')); /* ^[a-z0-9]{6}$ */
            if (c >= 'a' && c <= 'z')
                letters++;
            else
                digits++;
        }
        lk_buf_release(&name);
    }
    /* 52 of 62 symbols are letters: about 84 %; per letter twice a digit's odds. */
    double share = (double)letters / (double)(letters + digits);
    CHECK(share > 0.80 && share < 0.88);

    struct lk_rng zero = { fill_zero, NULL };
    struct lk_buf name = LK_BUF_INIT;
    lk_name_random_six_char(&zero, &name);
    CHECK_STR_EQ(name.data, "aaaaaa");
    lk_buf_release(&name);
}

static void test_hash_name(void)
{
    struct lk_session *s = lk_session_new(LK_SESSION_PREVIEW, "preview_session");
    CHECK_INT_EQ(lk_session_add_service(s, "frontend", "http://example.com", 18, NULL), 0);
    lk_session_add_domain(s, "example.com", "frontend");
    struct lk_buf name = LK_BUF_INIT;
    lk_name_hash(s, &name);
    CHECK_STR_EQ(name.data, "2551b2");
    lk_buf_release(&name);
    lk_session_free(s);
}

int main(void)
{
    RUN(test_lists);
    RUN(test_random_animal);
    RUN(test_random_six_char);
    RUN(test_hash_name);
    return DONE();
}
