/*
 * test_table.c - the sessions table of SPEC §6.7, byte-exact.
 *
 * table.c belongs to the linkup program, not to a library, so it is compiled
 * into this test directly.
 */
#include "cli/table.c"
#include "harness.h"

static const char *const tiny_domains[] = { "https://tiny-cow.example.com" };

struct table_case {
    const char *name;
    struct cli_session_row rows[3];
    size_t n_rows;
    const char *current;
    const char *want;
};

static const char *const two_domains[] = { "https://ab.example.com", "https://ab.other.org" };
static const char *const short_domain[] = { "https://x.io" };

static const struct table_case cases[] = {
    { "spec example",
      { { "tiny-cow", "tunneled", tiny_domains, 1 } },
      1,
      NULL,
      "┌──────────────┬──────────┬──────────────────────────────┐\n"
      "│ SESSION NAME │ TYPE     │ DOMAINS                      │\n"
      "├──────────────┼──────────┼──────────────────────────────┤\n"
      "│ tiny-cow     │ tunneled │ https://tiny-cow.example.com │\n"
      "└──────────────┴──────────┴──────────────────────────────┘\n" },
    { "marker, two sessions, two domains",
      { { "ab", "tunneled", two_domains, 2 }, { "x", "preview", short_domain, 1 } },
      2,
      "ab",
      "┌────────────────┬──────────┬────────────────────────┐\n"
      "│   SESSION NAME │ TYPE     │ DOMAINS                │\n"
      "├────────────────┼──────────┼────────────────────────┤\n"
      "│ > ab           │ tunneled │ https://ab.example.com │\n"
      "│                │          │ https://ab.other.org   │\n"
      "├────────────────┼──────────┼────────────────────────┤\n"
      "│   x            │ preview  │ https://x.io           │\n"
      "└────────────────┴──────────┴────────────────────────┘\n" },
    { "minimum widths",
      { { "a", "b", NULL, 0 }, { "c", "d", short_domain, 1 } },
      2,
      NULL,
      "┌──────────────┬──────┬──────────────┐\n"
      "│ SESSION NAME │ TYPE │ DOMAINS      │\n"
      "├──────────────┼──────┼──────────────┤\n"
      "│ c            │ d    │ https://x.io │\n"
      "└──────────────┴──────┴──────────────┘\n" },
    { "empty list", { { NULL, NULL, NULL, 0 } }, 0, NULL, "" },
};

static void test_render(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_buf out;
        lk_buf_init(&out, 0);
        cli_table_render(cases[i].rows, cases[i].n_rows, cases[i].current, false, &out);
        if (strcmp(out.data, cases[i].want) != 0)
            fprintf(stderr, "  case: %s\n", cases[i].name);
        CHECK_STR_EQ(out.data, cases[i].want);
        lk_buf_release(&out);
    }
}

static void test_bold_only_adds_escapes(void)
{
    struct lk_buf out = LK_BUF_INIT;
    cli_table_render(cases[1].rows, cases[1].n_rows, "ab", true, &out);
    CHECK(strstr(out.data, "│ \x1b[1m> ab\x1b[0m           │") != NULL);
    CHECK(strstr(out.data, "\x1b[1m  SESSION NAME\x1b[0m") != NULL);
    lk_buf_release(&out);
}

static void test_domain_urls(void)
{
    static const char *const domains[] = { "example.com", "api.example.com", "myexample.com",
                                           "other.org" };
    char *urls[4];
    size_t n = cli_table_domain_urls("tiny-cow", domains, 4, urls);
    CHECK_INT_EQ(n, 2);
    CHECK_STR_EQ(urls[0], "https://tiny-cow.example.com");
    CHECK_STR_EQ(urls[1], "https://tiny-cow.other.org");
    for (size_t i = 0; i < n; i++)
        free(urls[i]);
}

static void test_sort(void)
{
    struct cli_session_row rows[] = {
        { "b", "preview", NULL, 0 },
        { "z", "tunneled", NULL, 0 },
        { "a", "preview", NULL, 0 },
        { "c", "tunneled", NULL, 0 },
    };
    cli_table_sort(rows, 4);
    CHECK_STR_EQ(rows[0].name, "c");
    CHECK_STR_EQ(rows[1].name, "z");
    CHECK_STR_EQ(rows[2].name, "a");
    CHECK_STR_EQ(rows[3].name, "b");
}

int main(void)
{
    RUN(test_render);
    RUN(test_bold_only_adds_escapes);
    RUN(test_domain_urls);
    RUN(test_sort);
    return DONE();
}
