/*
 * test_state.c - the state file of SPEC §6.3: byte-exact emission, the
 * §8.2.2 config-derived state, the §8.2.3 null optional fields, round trips,
 * malformed input and the upsert JSON of §6.5.13.
 */
#include <stdlib.h>

#include "core/err.h"
#include "core/state.h"
#include "harness.h"

/* The §8.2.2 state as `linkup start` builds it from the §8.2.2 config. */
static struct lk_state *sample_state(void)
{
    struct lk_state *st = lk_state_new();
    lk_state_set_str(&st->session_name, "tiny-cow");
    lk_state_set_str(&st->session_token, "Q3kX9aBcDeFgHiJk");
    lk_state_set_str(&st->worker_url, "https://remote-linkup.example.com/");
    lk_state_set_str(&st->worker_token, "test_token_123");
    lk_state_set_str(&st->config_path, "./path/to/config.yaml");
    lk_state_set_str(&st->tunnel, "http://tunnel-not-yet-set/");
    struct lk_state_domain *d = lk_state_add_domain(st, "example.com", "frontend");
    lk_state_add_route(d, "/api/v1/.*", "backend");
    lk_state_add_domain(st, "api.example.com", "backend");
    struct lk_state_service *fe = lk_state_add_service(st);
    lk_state_set_str(&fe->name, "frontend");
    lk_state_set_str(&fe->remote, "http://remote-service1.example.com/");
    lk_state_set_str(&fe->local, "http://localhost:8000/");
    lk_state_add_rewrite(fe, "/foo/(.*)", "/bar/$1");
    struct lk_state_service *be = lk_state_add_service(st);
    lk_state_set_str(&be->name, "backend");
    lk_state_set_str(&be->remote, "http://remote-service2.example.com/");
    lk_state_set_str(&be->local, "http://localhost:8001/");
    lk_state_set_str(&be->directory, "../backend");
    lk_state_set_str(&be->health.path, "/health");
    lk_state_add_status(be, 200);
    lk_state_add_status(be, 304);
    return st;
}

static const char sample_yaml[] = "linkup:\n"
                                  "  session_name: tiny-cow\n"
                                  "  session_token: Q3kX9aBcDeFgHiJk\n"
                                  "  worker_url: https://remote-linkup.example.com/\n"
                                  "  worker_token: test_token_123\n"
                                  "  config_path: ./path/to/config.yaml\n"
                                  "  tunnel: http://tunnel-not-yet-set/\n"
                                  "  kind: tunneled\n"
                                  "  cache_routes: null\n"
                                  "domains:\n"
                                  "- domain: example.com\n"
                                  "  default_service: frontend\n"
                                  "  routes:\n"
                                  "  - path: /api/v1/.*\n"
                                  "    service: backend\n"
                                  "- domain: api.example.com\n"
                                  "  default_service: backend\n"
                                  "  routes: null\n"
                                  "services:\n"
                                  "- current: Remote\n"
                                  "  name: frontend\n"
                                  "  remote: http://remote-service1.example.com/\n"
                                  "  local: http://localhost:8000/\n"
                                  "  rewrites:\n"
                                  "  - source: /foo/(.*)\n"
                                  "    target: /bar/$1\n"
                                  "- current: Remote\n"
                                  "  name: backend\n"
                                  "  remote: http://remote-service2.example.com/\n"
                                  "  local: http://localhost:8001/\n"
                                  "  directory: ../backend\n"
                                  "  rewrites: null\n"
                                  "  health:\n"
                                  "    path: /health\n"
                                  "    statuses:\n"
                                  "    - 200\n"
                                  "    - 304\n";

static void test_emit_exact(void)
{
    struct lk_state *st = sample_state();
    struct lk_buf out = LK_BUF_INIT;
    lk_state_emit(st, &out);
    CHECK_STR_EQ(out.data, sample_yaml);
    lk_buf_release(&out);
    lk_state_free(st);
}

/* §8.2.2: the fields of the config-derived state, read back from the file. */
static void test_config_to_state(void)
{
    struct lk_state *st = NULL;
    CHECK_INT_EQ(lk_state_parse(sample_yaml, sizeof(sample_yaml) - 1, &st, NULL), 0);
    if (st == NULL)
        return;
    CHECK_STR_EQ(st->config_path, "./path/to/config.yaml");
    CHECK_STR_EQ(st->worker_url, "https://remote-linkup.example.com/");
    CHECK_STR_EQ(st->worker_token, "test_token_123");
    CHECK_INT_EQ(st->n_services, 2);
    CHECK_STR_EQ(st->services[0].name, "frontend");
    CHECK_STR_EQ(st->services[1].name, "backend");
    CHECK_INT_EQ(st->services[0].current, LK_TARGET_REMOTE);
    CHECK_INT_EQ(st->services[1].current, LK_TARGET_REMOTE);
    CHECK(!st->services[0].has_health);
    CHECK_INT_EQ(st->services[0].n_rewrites, 1);
    CHECK_STR_EQ(st->services[0].rewrites[0].target, "/bar/$1");
    CHECK(!st->services[1].has_rewrites);
    CHECK_STR_EQ(st->services[1].directory, "../backend");
    CHECK(st->services[1].has_health);
    CHECK_STR_EQ(st->services[1].health.path, "/health");
    CHECK_INT_EQ(st->services[1].health.n_statuses, 2);
    CHECK_INT_EQ(st->services[1].health.statuses[0], 200);
    CHECK_INT_EQ(st->services[1].health.statuses[1], 304);
    CHECK_INT_EQ(st->n_domains, 2);
    CHECK_STR_EQ(st->domains[0].domain, "example.com");
    CHECK_STR_EQ(st->domains[0].default_service, "frontend");
    CHECK_INT_EQ(st->domains[0].n_routes, 1);
    CHECK(!st->domains[1].has_routes);
    CHECK(!st->has_cache_routes);
    CHECK_STR_EQ(st->tunnel, "http://tunnel-not-yet-set/");
    lk_state_free(st);
}

/* §8.2.3: no tunnel/kind/cache_routes; rewrites null, [] and absent. */
static void test_null_optional_fields(void)
{
    static const char yaml[] = "linkup:\n"
                               "  session_name: ''\n"
                               "  session_token: abc\n"
                               "  worker_url: https://w.example.com/\n"
                               "  worker_token: t\n"
                               "  config_path: /c.yaml\n"
                               "domains:\n"
                               "- domain: example.com\n"
                               "  default_service: a\n"
                               "services:\n"
                               "- current: Remote\n"
                               "  name: a\n"
                               "  remote: http://a/\n"
                               "  local: http://localhost:1/\n"
                               "  rewrites: null\n"
                               "  health:\n"
                               "    path: /health\n"
                               "    statuses: null\n"
                               "- current: Local\n"
                               "  name: b\n"
                               "  remote: http://b/\n"
                               "  local: http://localhost:2/\n"
                               "  rewrites: []\n"
                               "- current: Remote\n"
                               "  name: c\n"
                               "  remote: http://c/\n"
                               "  local: http://localhost:3/\n";
    struct lk_state *st = NULL;
    CHECK_INT_EQ(lk_state_parse(yaml, sizeof(yaml) - 1, &st, NULL), 0);
    if (st == NULL)
        return;
    CHECK_STR_EQ(st->session_name, "");
    CHECK(st->tunnel == NULL);
    CHECK_STR_EQ(st->kind, "tunneled");
    CHECK(!st->has_cache_routes);
    CHECK(!st->services[0].has_rewrites);
    CHECK(st->services[0].has_health);
    CHECK(!st->services[0].health.has_statuses);
    CHECK(st->services[1].has_rewrites);
    CHECK_INT_EQ(st->services[1].n_rewrites, 0);
    CHECK_INT_EQ(st->services[1].current, LK_TARGET_LOCAL);
    CHECK_STR_EQ(lk_state_service_url(&st->services[1]), "http://localhost:2/");
    CHECK(!st->services[2].has_rewrites);
    CHECK(!st->domains[0].has_routes);
    /* Emitting keeps null and [] apart. */
    struct lk_buf out = LK_BUF_INIT;
    lk_state_emit(st, &out);
    CHECK(strstr(out.data, "  session_name: ''\n") != NULL);
    CHECK(strstr(out.data, "  tunnel: null\n") != NULL);
    CHECK(strstr(out.data, "  rewrites: []\n") != NULL);
    CHECK(strstr(out.data, "    statuses: null\n") != NULL);
    lk_buf_release(&out);
    lk_state_free(st);
}

/* Strings YAML would misread are quoted and come back unchanged. */
static void test_round_trip_tricky_strings(void)
{
    static const char *const values[] = {
        "",    "null", "~",   "true", "123", "-1", "0x1f",  ".5",     "a: b",        "#x",
        "- x", "'q'",  "\"d", "日本", "y",   "no", " lead", "trail ", "line\nbreak", "[x]",
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        struct lk_state *st = sample_state();
        lk_state_set_str(&st->session_name, values[i]);
        lk_state_set_str(&st->services[0].rewrites[0].target, values[i]);
        struct lk_buf out = LK_BUF_INIT;
        lk_state_emit(st, &out);
        struct lk_state *back = NULL;
        CHECK_INT_EQ(lk_state_parse(out.data, out.len, &back, NULL), 0);
        if (back) {
            CHECK_STR_EQ(back->session_name, values[i]);
            CHECK_STR_EQ(back->services[0].rewrites[0].target, values[i]);
            struct lk_buf again = LK_BUF_INIT;
            lk_state_emit(back, &again);
            CHECK_STR_EQ(again.data, out.data);
            lk_buf_release(&again);
        }
        lk_state_free(back);
        lk_buf_release(&out);
        lk_state_free(st);
    }
}

/* Only strings YAML reads as something else are quoted: a token that merely
 * starts with a digit stays plain, as the original writes it (SPEC §6.3). */
static void test_quoting_is_minimal(void)
{
    static const struct {
        const char *value;
        const char *line;
    } cases[] = {
        { "3zgtAVF848wWVlbB", "  session_name: 3zgtAVF848wWVlbB\n" },
        { "1e3x", "  session_name: 1e3x\n" },
        { "0xfg", "  session_name: 0xfg\n" },
        { "1.2.3", "  session_name: 1.2.3\n" },
        { "-", "  session_name: '-'\n" },
        { "1e3", "  session_name: '1e3'\n" },
        { "1_000", "  session_name: '1_000'\n" },
        { "+.inf", "  session_name: '+.inf'\n" },
        { "5.", "  session_name: '5.'\n" },
        { "1.5E-3", "  session_name: '1.5E-3'\n" },
        { "0o17", "  session_name: '0o17'\n" },
        { "NaN", "  session_name: 'NaN'\n" },
        { "1234567890123456", "  session_name: '1234567890123456'\n" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_state *st = sample_state();
        lk_state_set_str(&st->session_name, cases[i].value);
        struct lk_buf out = LK_BUF_INIT;
        lk_state_emit(st, &out);
        if (strstr(out.data, cases[i].line) == NULL)
            fprintf(stderr, "# %s:\n%s", cases[i].value, out.data);
        CHECK(strstr(out.data, cases[i].line) != NULL);
        struct lk_state *back = NULL;
        CHECK_INT_EQ(lk_state_parse(out.data, out.len, &back, NULL), 0);
        if (back)
            CHECK_STR_EQ(back->session_name, cases[i].value);
        lk_state_free(back);
        lk_buf_release(&out);
        lk_state_free(st);
    }
}

static void test_clone(void)
{
    struct lk_state *st = sample_state();
    struct lk_state *c = lk_state_clone(st);
    struct lk_buf a = LK_BUF_INIT, b = LK_BUF_INIT;
    lk_state_emit(st, &a);
    lk_state_emit(c, &b);
    CHECK_STR_EQ(a.data, b.data);
    lk_buf_release(&a);
    lk_buf_release(&b);
    lk_state_free(st);
    lk_state_free(c);
}

static void test_malformed(void)
{
    static const char *const bad[] = {
        "",
        "[1, 2]",
        "linkup: 3\ndomains: []\nservices: []\n",
        "linkup:\n  session_name: a\ndomains: []\nservices: []\n",
        "{{{",
        "linkup: {session_name: a, session_token: b, worker_url: \"http://c/\", worker_token: d, "
        "config_path: e}\ndomains: []\nservices:\n- {current: Sideways, name: a, remote: "
        "\"http://r/\", "
        "local: \"http://l/\"}\n",
        "linkup: {session_name: a, session_token: b, worker_url: \"http://c/\", worker_token: d, "
        "config_path: e}\ndomains: []\nservices:\n- {current: Local, name: a, remote: "
        "\"http://r/\", "
        "local: \"http://l/\", health: {statuses: [70000]}}\n",
        "linkup: {session_name: a, session_token: b, worker_url: \"http://c/\", worker_token: d, "
        "config_path: e, kind: isolated}\ndomains: []\nservices: []\n",
        "linkup: {session_name: a, session_token: b, worker_url: \"http://c/\", worker_token: d, "
        "config_path: e}\ndomains: [{domain: x}]\nservices: []\n",
        /* URLs are read as the original's Url fields (SPEC §6.3). */
        "linkup: {session_name: a, session_token: b, worker_url: c, worker_token: d, "
        "config_path: e}\ndomains: []\nservices: []\n",
        "linkup: {session_name: a, session_token: b, worker_url: \"http://c/\", worker_token: d, "
        "config_path: e}\ndomains: []\nservices:\n- {current: Local, name: a, remote: "
        "\"http://r/\", local: \"not a url\"}\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct lk_state *st = NULL;
        struct lk_buf err = LK_BUF_INIT;
        CHECK_INT_EQ(lk_state_parse(bad[i], strlen(bad[i]), &st, &err), LK_EPARSE);
        CHECK(st == NULL);
        CHECK(err.len > 0);
        lk_buf_release(&err);
    }
}

/* URL fields are normalised on read, as the original's Url type does. */
static void test_urls_normalised_on_read(void)
{
    static const char yaml[] =
        "linkup: {session_name: a, session_token: b, worker_url: \"HTTP://W.Example.com:80\", "
        "worker_token: d, config_path: e, tunnel: \"https://t.example.com\"}\n"
        "domains: []\n"
        "services:\n- {current: Local, name: a, remote: \"http://r.example.com\", "
        "local: \"http://localhost:8000\"}\n";
    struct lk_state *st = NULL;
    CHECK_INT_EQ(lk_state_parse(yaml, sizeof(yaml) - 1, &st, NULL), 0);
    if (st == NULL)
        return;
    CHECK_STR_EQ(st->worker_url, "http://w.example.com/");
    CHECK_STR_EQ(st->tunnel, "https://t.example.com/");
    CHECK_STR_EQ(st->services[0].remote, "http://r.example.com/");
    CHECK_STR_EQ(st->services[0].local, "http://localhost:8000/");
    lk_state_free(st);
}

static const char *override_fe(void *ctx, const struct lk_state_service *sv)
{
    return strcmp(sv->name, "frontend") == 0 ? ctx : NULL;
}

/* §6.5.13 / §6.5.6 request bodies. */
static void test_upsert_json(void)
{
    struct lk_state *st = sample_state();
    st->services[1].current = LK_TARGET_LOCAL;
    lk_state_add_cache_route(st, "/static/.*");
    static const char *const services =
        "\"services\":[{\"name\":\"frontend\",\"location\":\"http://remote-service1.example.com/"
        "\",\"rewrites\":[{\"source\":\"/foo/(.*)\",\"target\":\"/bar/$1\"}]},{\"name\":"
        "\"backend\",\"location\":\"http://localhost:8001/\",\"rewrites\":null}],";
    static const char *const domains =
        "\"domains\":[{\"domain\":\"example.com\",\"default_service\":\"frontend\",\"routes\":[{"
        "\"path\":\"/api/v1/.*\",\"service\":\"backend\"}]},{\"domain\":\"api.example.com\","
        "\"default_service\":\"backend\",\"routes\":null}],\"cache_routes\":[\"/static/.*\"]}";
    struct lk_buf want = LK_BUF_INIT, out = LK_BUF_INIT;

    struct lk_state_upsert_opts named = { .named = true,
                                          .desired_name = "tiny-cow",
                                          .token = "Q3kX9aBcDeFgHiJk" };
    lk_state_upsert_json(st, &named, &out);
    lk_buf_addf(&want, "{\"desired_name\":\"tiny-cow\",\"session_token\":\"Q3kX9aBcDeFgHiJk\",%s%s",
                services, domains);
    CHECK_STR_EQ(out.data, want.data);

    lk_buf_reset(&out);
    lk_buf_reset(&want);
    struct lk_state_upsert_opts unnamed = { .name_kind = "animal" };
    lk_state_upsert_json(st, &unnamed, &out);
    lk_buf_addf(&want, "{\"name_kind\":\"animal\",\"session_token\":null,%s%s", services, domains);
    CHECK_STR_EQ(out.data, want.data);

    lk_buf_reset(&out);
    struct lk_state_upsert_opts over = { .name_kind = "six_char",
                                         .override = override_fe,
                                         .override_ctx = "https://pr-1.example.com/" };
    lk_state_upsert_json(st, &over, &out);
    CHECK(strstr(out.data, "\"location\":\"https://pr-1.example.com/\"") != NULL);
    CHECK(strstr(out.data, "\"location\":\"http://localhost:8001/\"") != NULL);
    lk_buf_release(&out);
    lk_buf_release(&want);
    lk_state_free(st);
}

int main(void)
{
    RUN(test_emit_exact);
    RUN(test_config_to_state);
    RUN(test_null_optional_fields);
    RUN(test_round_trip_tricky_strings);
    RUN(test_quoting_is_minimal);
    RUN(test_clone);
    RUN(test_malformed);
    RUN(test_urls_normalised_on_read);
    RUN(test_upsert_json);
    return DONE();
}
