/*
 * test_config.c - lk_config_parse and helpers (lib/core/config.h).
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "harness.h"

/* SPEC §1.4 verbatim. */
static const char spec_example[] = "linkup:\n"
                                   "  worker_url: https://where.linkup.is.deployed.com\n"
                                   "  worker_token: worker_token_from_linkup_deploy\n"
                                   "  cache_routes:\n"
                                   "    - .*/_next/static/.*\n"
                                   "services:\n"
                                   "  - name: web\n"
                                   "    remote: https://web-dev.hosting-provider.com\n"
                                   "    local: http://localhost:3000\n"
                                   "    rewrites:\n"
                                   "      - source: /foo/(.*)\n"
                                   "        target: /bar/$1\n"
                                   "  - name: backend\n"
                                   "    remote: https://api-dev.hosting-provider.com\n"
                                   "    local: http://localhost:9000\n"
                                   "    directory: ./relative/path/to/backend\n"
                                   "    health:\n"
                                   "      path: /healthz\n"
                                   "      statuses: [200, 204]\n"
                                   "domains:\n"
                                   "  - domain: dev-domain.com\n"
                                   "    default_service: web\n"
                                   "    routes:\n"
                                   "      - path: /api/v1/.*\n"
                                   "        service: backend\n"
                                   "  - domain: api.dev-domain.com\n"
                                   "    default_service: backend\n";

/* The config of SPEC §8.2.2 (config_to_state). */
static const char state_example[] = "linkup:\n"
                                    "  worker_url: https://remote-linkup.example.com\n"
                                    "  worker_token: test_token_123\n"
                                    "services:\n"
                                    "  - name: frontend\n"
                                    "    remote: http://remote-service1.example.com\n"
                                    "    local: http://localhost:8000\n"
                                    "    rewrites:\n"
                                    "      - source: /foo/(.*)\n"
                                    "        target: /bar/$1\n"
                                    "  - name: backend\n"
                                    "    remote: http://remote-service2.example.com\n"
                                    "    local: http://localhost:8001\n"
                                    "    directory: ../backend\n"
                                    "    health:\n"
                                    "      path: /health\n"
                                    "      statuses: [200, 304]\n"
                                    "domains:\n"
                                    "  - domain: example.com\n"
                                    "    default_service: frontend\n"
                                    "    routes:\n"
                                    "      - path: /api/v1/.*\n"
                                    "        service: backend\n"
                                    "  - domain: api.example.com\n"
                                    "    default_service: backend\n";

#define HEAD                        \
    "linkup:\n"                     \
    "  worker_url: http://w.test\n" \
    "  worker_token: t\n"
#define SVC_WEB                   \
    "services:\n"                 \
    "  - name: web\n"             \
    "    remote: http://r.test\n" \
    "    local: http://l.test\n"
#define DOM_WEB       \
    "domains:\n"      \
    "  - domain: d\n" \
    "    default_service: web\n"

static struct lk_config *parse_ok(const char *text)
{
    struct lk_config *cfg = NULL;
    struct lk_diag d;
    int rc = lk_config_parse(text, strlen(text), "/t/linkup.yaml", &cfg, &d);
    if (rc != 0)
        fprintf(stderr, "  unexpected error %d at %d:%d: %s\n", rc, d.line, d.col, d.msg);
    CHECK_INT_EQ(rc, 0);
    return cfg;
}

static void test_spec_example(void)
{
    struct lk_config *c = parse_ok(spec_example);
    if (c == NULL)
        return;
    CHECK_STR_EQ(c->worker_url, "https://where.linkup.is.deployed.com/");
    CHECK_STR_EQ(c->worker_token, "worker_token_from_linkup_deploy");
    CHECK(c->has_cache_routes);
    CHECK_INT_EQ(c->n_cache_routes, 1);
    CHECK_STR_EQ(lk_regex_source(c->cache_routes[0]), ".*/_next/static/.*");
    CHECK(lk_regex_search(c->cache_routes[0], "/a/_next/static/x.js", 20));
    CHECK_INT_EQ(c->n_services, 2);
    const struct lk_config_service *web = &c->services[0];
    CHECK_STR_EQ(web->name, "web");
    CHECK_STR_EQ(web->remote, "https://web-dev.hosting-provider.com/");
    CHECK_STR_EQ(web->local, "http://localhost:3000/");
    CHECK_STR_EQ(web->local_url.host, "localhost");
    CHECK_INT_EQ(web->local_url.port, 3000);
    CHECK_INT_EQ(web->remote_url.port, -1);
    CHECK(web->has_rewrites);
    CHECK_INT_EQ(web->n_rewrites, 1);
    CHECK_STR_EQ(lk_regex_source(web->rewrites[0].source), "/foo/(.*)");
    CHECK_STR_EQ(web->rewrites[0].target, "/bar/$1");
    CHECK(web->directory == NULL);
    CHECK(web->health == NULL);
    const struct lk_config_service *be = &c->services[1];
    CHECK_STR_EQ(be->directory, "./relative/path/to/backend");
    CHECK(!be->has_rewrites);
    CHECK(be->health != NULL);
    if (be->health) {
        CHECK_STR_EQ(be->health->path, "/healthz");
        CHECK(be->health->has_statuses);
        CHECK_INT_EQ(be->health->n_statuses, 2);
        CHECK_INT_EQ(be->health->statuses[0], 200);
        CHECK_INT_EQ(be->health->statuses[1], 204);
    }
    CHECK_INT_EQ(c->n_domains, 2);
    CHECK_STR_EQ(c->domains[0].domain, "dev-domain.com");
    CHECK_STR_EQ(c->domains[0].default_service, "web");
    CHECK(c->domains[0].has_routes);
    CHECK_INT_EQ(c->domains[0].n_routes, 1);
    CHECK_STR_EQ(lk_regex_source(c->domains[0].routes[0].path), "/api/v1/.*");
    CHECK_STR_EQ(c->domains[0].routes[0].service, "backend");
    CHECK_STR_EQ(c->domains[1].domain, "api.dev-domain.com");
    CHECK(!c->domains[1].has_routes);
    lk_config_free(c);
}

static void test_state_example(void)
{
    struct lk_config *c = parse_ok(state_example);
    if (c == NULL)
        return;
    CHECK_STR_EQ(c->worker_url, "https://remote-linkup.example.com/");
    CHECK_STR_EQ(c->worker_token, "test_token_123");
    CHECK(!c->has_cache_routes);
    CHECK_INT_EQ(c->n_services, 2);
    CHECK_STR_EQ(c->services[0].name, "frontend");
    CHECK_STR_EQ(c->services[0].remote, "http://remote-service1.example.com/");
    CHECK_STR_EQ(c->services[0].local, "http://localhost:8000/");
    CHECK(c->services[0].health == NULL);
    CHECK_INT_EQ(c->services[0].n_rewrites, 1);
    CHECK_STR_EQ(c->services[1].name, "backend");
    CHECK(!c->services[1].has_rewrites);
    CHECK_STR_EQ(c->services[1].directory, "../backend");
    CHECK(c->services[1].health && c->services[1].health->n_statuses == 2);
    if (c->services[1].health) {
        CHECK_STR_EQ(c->services[1].health->path, "/health");
        CHECK_INT_EQ(c->services[1].health->statuses[1], 304);
    }
    CHECK_INT_EQ(c->n_domains, 2);
    CHECK_STR_EQ(c->domains[0].domain, "example.com");
    CHECK_STR_EQ(c->domains[0].default_service, "frontend");
    CHECK_INT_EQ(c->domains[0].n_routes, 1);
    lk_config_free(c);
}

/* null vs absent vs [] (SPEC §1.2, §8.2.3). */
static void test_null_absent_empty(void)
{
    static const char text[] = "linkup:\n"
                               "  worker_url: http://w.test\n"
                               "  worker_token: t\n"
                               "  cache_routes: []\n"
                               "services:\n"
                               "  - name: a\n"
                               "    remote: http://r.test\n"
                               "    local: http://l.test\n"
                               "    rewrites: null\n"
                               "    directory: ~\n"
                               "    health:\n"
                               "      path: /health\n"
                               "      statuses: null\n"
                               "  - name: b\n"
                               "    remote: http://r.test\n"
                               "    local: http://l.test\n"
                               "    rewrites: []\n"
                               "    health: {}\n"
                               "  - name: c\n"
                               "    remote: http://r.test\n"
                               "    local: http://l.test\n"
                               "    health:\n"
                               "domains:\n"
                               "  - domain: d\n"
                               "    default_service: a\n"
                               "    routes: []\n"
                               "  - domain: e\n"
                               "    default_service: b\n"
                               "    routes:\n";
    struct lk_config *c = parse_ok(text);
    if (c == NULL)
        return;
    CHECK(c->has_cache_routes);
    CHECK_INT_EQ(c->n_cache_routes, 0);
    CHECK(!c->services[0].has_rewrites);
    CHECK(c->services[0].directory == NULL);
    CHECK(c->services[0].health != NULL);
    if (c->services[0].health) {
        CHECK_STR_EQ(c->services[0].health->path, "/health");
        CHECK(!c->services[0].health->has_statuses);
    }
    CHECK(c->services[1].has_rewrites);
    CHECK_INT_EQ(c->services[1].n_rewrites, 0);
    CHECK(c->services[1].health != NULL);
    if (c->services[1].health) {
        CHECK(c->services[1].health->path == NULL);
        CHECK(!c->services[1].health->has_statuses);
    }
    CHECK(!c->services[2].has_rewrites);
    CHECK(c->services[2].health == NULL);
    CHECK(c->domains[0].has_routes);
    CHECK_INT_EQ(c->domains[0].n_routes, 0);
    CHECK(!c->domains[1].has_routes);
    lk_config_free(c);
}

static void test_valid_variants(void)
{
    static const char *const ok[] = {
        /* Empty lists are allowed syntactically. */
        HEAD "services: []\ndomains: []\n",
        /* Unknown keys are ignored everywhere. */
        "extra: 1\n" HEAD "  other: [1, {a: b}]\n" SVC_WEB "    colour: blue\n" DOM_WEB
        "    x: y\n",
        /* Flow style, quoted scalars, comments, document markers. */
        "---\n{linkup: {worker_url: 'http://w.test', worker_token: \"t\"}, # c\n"
        " services: [{name: web, remote: 'http://r.test', local: http://l.test}],\n"
        " domains: [{domain: d, default_service: web}]}\n...\n",
        /* Anchors and aliases used sensibly. */
        HEAD "services:\n  - name: web\n    remote: &u http://r.test\n    local: *u\n"
             "    health: &h {path: /h, statuses: [0x10, 0o7, +200, 65535, 0, -0, -0x0]}\n"
             "  - name: api\n    remote: *u\n    local: *u\n    health: *h\n" DOM_WEB,
        /* Numbers and booleans read as strings where strings are expected. */
        HEAD "services:\n  - name: 123\n    remote: http://r.test\n    local: http://l.test\n"
             "domains:\n  - domain: true\n    default_service: 123\n",
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(ok); i++) {
        struct lk_config *c = parse_ok(ok[i]);
        if (c == NULL)
            fprintf(stderr, "  case %zu\n", i);
        lk_config_free(c);
    }
}

struct bad_case {
    const char *text;
    int rc;
    int line, col;
    const char *msg; /* exact diag message */
};

static const struct bad_case bad_cases[] = {
    /* YAML syntax. */
    { "linkup: [\n", LK_EPARSE, 2, 1,
      "invalid YAML: did not find expected node content while parsing a flow node" },
    { "a: b\n c: d\n", LK_EPARSE, 2, 3,
      "invalid YAML: mapping values are not allowed in this context" },
    { "a: *nope\n", LK_EPARSE, 1, 4, "invalid YAML: found undefined alias" },
    { "a: 1\n--- \nb: 2\n", LK_EPARSE, 3, 1, "invalid YAML: more than one document" },
    { "a: \x01\n", LK_EPARSE, 1, 4, "invalid YAML: control characters are not allowed" },
    { "", LK_EPARSE, 1, 1,
      "the config is empty: expected the keys \"linkup\", \"services\" and \"domains\"" },
    { "- a\n", LK_EPARSE, 1, 1, "the config must be a mapping, found a list" },
    /* Missing keys. */
    { SVC_WEB DOM_WEB, LK_EPARSE, 1, 1, "missing key \"linkup\"" },
    { HEAD DOM_WEB, LK_EPARSE, 1, 1, "missing key \"services\"" },
    { HEAD SVC_WEB, LK_EPARSE, 1, 1, "missing key \"domains\"" },
    { "linkup:\n  worker_token: t\n" SVC_WEB DOM_WEB, LK_EPARSE, 2, 3,
      "missing key \"worker_url\"" },
    { "linkup:\n  worker_url: http://w.test\n" SVC_WEB DOM_WEB, LK_EPARSE, 2, 3,
      "missing key \"worker_token\"" },
    { HEAD "services:\n  - name: web\n    local: http://l.test\n" DOM_WEB, LK_EPARSE, 5, 5,
      "missing key \"remote\"" },
    { HEAD SVC_WEB "domains:\n  - domain: d\n", LK_EPARSE, 9, 5,
      "missing key \"default_service\"" },
    { HEAD SVC_WEB "    rewrites: [{source: a}]\n" DOM_WEB, LK_EPARSE, 8, 16,
      "missing key \"target\"" },
    { HEAD SVC_WEB DOM_WEB "    routes: [{path: /a}]\n", LK_EPARSE, 11, 14,
      "missing key \"service\"" },
    /* Wrong types. */
    { HEAD "services: web\n" DOM_WEB, LK_EPARSE, 4, 11,
      "\"services\": expected a list, found \"web\"" },
    { HEAD "services: {name: web}\n" DOM_WEB, LK_EPARSE, 4, 11,
      "\"services\": expected a list, found a mapping" },
    { HEAD "services: [web]\n" DOM_WEB, LK_EPARSE, 4, 12,
      "\"services\": expected a mapping, found \"web\"" },
    { "linkup: null\n" SVC_WEB DOM_WEB, LK_EPARSE, 1, 9,
      "\"linkup\": expected a mapping, found null" },
    { "linkup:\n  worker_url: http://w.test\n  worker_token: [a]\n" SVC_WEB DOM_WEB, LK_EPARSE, 3,
      17, "\"worker_token\": expected a string, found a list" },
    { HEAD "services:\n  - name:\n    remote: http://r.test\n    local: http://l.test\n" DOM_WEB,
      LK_EPARSE, 5, 10, "\"name\": expected a string, found null" },
    { HEAD "services:\n  - name: ''\n    remote: http://r.test\n    local: http://l.test\n" DOM_WEB,
      LK_EPARSE, 5, 11, "\"name\": must not be empty" },
    { HEAD SVC_WEB "    health: [1]\n" DOM_WEB, LK_EPARSE, 8, 13,
      "\"health\": expected a mapping, found a list" },
    { HEAD SVC_WEB "    health: {statuses: [200, 70000]}\n" DOM_WEB, LK_EPARSE, 8, 30,
      "\"statuses\": expected an integer 0..65535, found \"70000\"" },
    { HEAD SVC_WEB "    health: {statuses: [-1]}\n" DOM_WEB, LK_EPARSE, 8, 25,
      "\"statuses\": expected an integer 0..65535, found \"-1\"" },
    /* YAML 1.2 (serde_yaml): a leading zero before digits makes a string. */
    { HEAD SVC_WEB "    health: {statuses: [0200]}\n" DOM_WEB, LK_EPARSE, 8, 25,
      "\"statuses\": expected an integer 0..65535, found \"0200\"" },
    { HEAD SVC_WEB "    health: {statuses: [+00]}\n" DOM_WEB, LK_EPARSE, 8, 25,
      "\"statuses\": expected an integer 0..65535, found \"+00\"" },
    { HEAD SVC_WEB "    health: {statuses: [-01]}\n" DOM_WEB, LK_EPARSE, 8, 25,
      "\"statuses\": expected an integer 0..65535, found \"-01\"" },
    { HEAD SVC_WEB "    health: {statuses: [0x+1]}\n" DOM_WEB, LK_EPARSE, 8, 25,
      "\"statuses\": expected an integer 0..65535, found \"0x+1\"" },
    { HEAD SVC_WEB "    health: {statuses: ['200']}\n" DOM_WEB, LK_EPARSE, 8, 25,
      "\"statuses\": expected an integer 0..65535, found \"200\"" },
    { HEAD SVC_WEB "    health: {statuses: 200}\n" DOM_WEB, LK_EPARSE, 8, 24,
      "\"statuses\": expected a list, found \"200\"" },
    { HEAD SVC_WEB "    directory: {a: b}\n" DOM_WEB, LK_EPARSE, 8, 16,
      "\"directory\": expected a string, found a mapping" },
    { HEAD SVC_WEB "    rewrites: /a\n" DOM_WEB, LK_EPARSE, 8, 15,
      "\"rewrites\": expected a list, found \"/a\"" },
    { HEAD "  cache_routes: .*\n" SVC_WEB DOM_WEB, LK_EPARSE, 4, 17,
      "\"cache_routes\": expected a list, found \".*\"" },
    { HEAD SVC_WEB "    name: again\n" DOM_WEB, LK_EPARSE, 8, 5, "duplicate key \"name\"" },
    { HEAD SVC_WEB "    name: \"a\\0b\"\n" DOM_WEB, LK_EPARSE, 8, 5, "duplicate key \"name\"" },
    { HEAD "services:\n  - name: \"a\\0b\"\n    remote: http://r.test\n    local: http://l.test\n"
           "domains: []\n",
      LK_EPARSE, 5, 11, "\"name\": string contains a NUL byte" },
    /* URLs. */
    { "linkup:\n  worker_url: not a url\n  worker_token: t\n" SVC_WEB DOM_WEB, LK_EPARSE, 2, 15,
      "\"worker_url\": invalid URL \"not a url\": relative URL without a base" },
    { HEAD "services:\n  - name: web\n    remote: http://r.test:99999\n    local: "
           "http://l.test\n" DOM_WEB,
      LK_EPARSE, 6, 13, "\"remote\": invalid URL \"http://r.test:99999\": invalid port number" },
    { HEAD "services:\n  - name: web\n    remote: http://r.test\n    local: 'http://'\n" DOM_WEB,
      LK_EPARSE, 7, 12, "\"local\": invalid URL \"http://\": empty host" },
    /* Regexes, including syntax the Rust dialect rejects. */
    { HEAD "  cache_routes: ['(']\n" SVC_WEB DOM_WEB, LK_EPARSE, 4, 18,
      "\"cache_routes\": invalid regex \"(\": missing closing parenthesis at offset 1" },
    { HEAD SVC_WEB "    rewrites: [{source: '(?=x)', target: y}]\n" DOM_WEB, LK_EPARSE, 8, 25,
      "\"source\": invalid regex \"(?=x)\": look-around is not supported" },
    { HEAD SVC_WEB DOM_WEB "    routes: [{path: '(a)\\1', service: web}]\n", LK_EPARSE, 11, 21,
      "\"path\": invalid regex \"(a)\\\\1\": back-references are not supported" },
    /* Cross-references (DESIGN §2.2), located at the key that names the
     * service (DESIGN §2.2's example: "line 12, column 5"). */
    { HEAD SVC_WEB "domains:\n  - domain: d\n    default_service: api\n", LK_EPARSE, 10, 5,
      "unknown service \"api\"" },
    { HEAD SVC_WEB DOM_WEB "    routes:\n      - path: /a\n        service: nope\n", LK_EPARSE, 13,
      9, "unknown service \"nope\"" },
    { HEAD SVC_WEB "  - name: api\n    remote: http://r.test\n    local: http://l.test\n"
                   "  - name: web\n    remote: http://r.test\n    local: http://l.test\n" DOM_WEB,
      LK_EPARSE, 11, 5, "duplicate service \"web\"" },
    { HEAD "services: []\ndomains:\n  - domain: d\n    default_service: web\n", LK_EPARSE, 7, 5,
      "unknown service \"web\"" },
    { HEAD "services: []\ndomains:\n  - domain: ''\n    default_service: web\n", LK_EPARSE, 6, 13,
      "\"domain\": must not be empty" },
};

static void test_errors(void)
{
    for (size_t i = 0; i < LK_ARRAY_LEN(bad_cases); i++) {
        const struct bad_case *t = &bad_cases[i];
        struct lk_config *cfg = NULL;
        struct lk_diag d;
        int rc = lk_config_parse(t->text, strlen(t->text), "x.yaml", &cfg, &d);
        int before = h_failed_checks;
        CHECK_INT_EQ(rc, t->rc);
        CHECK(cfg == NULL);
        CHECK_STR_EQ(d.msg, t->msg);
        CHECK_INT_EQ(d.line, t->line);
        CHECK_INT_EQ(d.col, t->col);
        if (h_failed_checks != before)
            fprintf(stderr, "  in case %zu\n", i);
        lk_config_free(cfg);
    }
}

/* The parser must survive hostile input with a clear message. */
static void test_hostile_inputs(void)
{
    struct lk_config *cfg = NULL;
    struct lk_diag d;
    /* 1 MiB of pseudo-random bytes. */
    size_t n = 1u << 20;
    char *junk = malloc(n);
    unsigned x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (char)(x >> 16);
    }
    CHECK_INT_EQ(lk_config_parse(junk, n, "j", &cfg, &d), LK_EPARSE);
    CHECK(strncmp(d.msg, "invalid YAML: ", 14) == 0);
    CHECK(d.line >= 1);
    /* 200k levels of nesting (libyaml alone would take minutes). */
    size_t depth = 200000;
    char *deep = malloc(2 * depth + 8);
    memcpy(deep, "linkup: ", 8);
    memset(deep + 8, '[', depth);
    memset(deep + 8 + depth, ']', depth);
    CHECK_INT_EQ(lk_config_parse(deep + 8, 2 * depth, "j", &cfg, &d), LK_ELIMIT);
    CHECK_STR_EQ(d.msg, "YAML nested deeper than 64 levels");
    CHECK_INT_EQ(d.line, 1);
    CHECK_INT_EQ(d.col, 65);
    CHECK_INT_EQ(lk_config_parse(deep, 2 * depth + 8, "j", &cfg, &d), LK_ELIMIT);
    CHECK_INT_EQ(d.col, 8 + 64);
    /* Exactly at the limit (a mapping holding 63 lists) is fine. */
    struct lk_buf nested = LK_BUF_INIT;
    lk_buf_adds(&nested, "a: ");
    for (int i = 0; i < 63; i++)
        lk_buf_addch(&nested, '[');
    for (int i = 0; i < 63; i++)
        lk_buf_addch(&nested, ']');
    CHECK_INT_EQ(lk_config_parse(nested.data, nested.len, "j", &cfg, &d), LK_EPARSE);
    lk_buf_release(&nested);
    CHECK_STR_EQ(d.msg, "missing key \"linkup\"");
    /* Too large. */
    CHECK_INT_EQ(lk_config_parse(junk, LK_CONFIG_MAX_BYTES + 1, "j", &cfg, &d), LK_ELIMIT);
    CHECK_INT_EQ(d.line, 0);
    CHECK(strstr(d.msg, "larger than") != NULL);
    CHECK(cfg == NULL);
    free(deep);
    free(junk);
}

/* Billion laughs: lists of ten aliases nested nine deep (10^9 leaves). */
static void add_laughs(struct lk_buf *t)
{
    lk_buf_adds(t, "l0: &l0 {name: web, remote: http://r.test, local: http://l.test}\n");
    for (int i = 1; i <= 9; i++) {
        lk_buf_addf(t, "l%d: &l%d [", i, i);
        for (int j = 0; j < 10; j++)
            lk_buf_addf(t, "%s*l%d", j ? ", " : "", i - 1);
        lk_buf_adds(t, "]\n");
    }
}

static void test_alias_bomb(void)
{
    static const struct {
        const char *tail;
        int rc;
        const char *msg;
    } cases[] = {
        /* Under an unknown key the bomb is never walked. */
        { "services: [*l0]\ndomains: []\n", 0, "" },
        /* Where a service is expected, the first list is a type error. */
        { "services: *l9\ndomains: []\n", LK_EPARSE,
          "\"services\": expected a mapping, found a list" },
        /* Ten copies of one service: a duplicate. */
        { "services: *l1\ndomains: []\n", LK_EPARSE, "duplicate service \"web\"" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_buf t = LK_BUF_INIT;
        lk_buf_adds(&t, HEAD);
        add_laughs(&t);
        lk_buf_adds(&t, cases[i].tail);
        struct lk_config *cfg = NULL;
        struct lk_diag d = { 0, 0, "" };
        CHECK_INT_EQ(lk_config_parse(t.data, t.len, "b", &cfg, &d), cases[i].rc);
        CHECK_STR_EQ(d.msg, cases[i].msg);
        lk_config_free(cfg);
        lk_buf_release(&t);
    }
    /* 200 aliases of a domain with 1000 routes: 200k regexes to compile,
     * stopped by the node limit. */
    struct lk_buf t = LK_BUF_INIT;
    lk_buf_adds(&t, HEAD SVC_WEB "x: &d {domain: d, default_service: web, routes: [");
    for (int i = 0; i < 1000; i++)
        lk_buf_addf(&t, "%s{path: a, service: web}", i ? ", " : "");
    lk_buf_adds(&t, "]}\ndomains: [");
    for (int i = 0; i < 200; i++)
        lk_buf_addf(&t, "%s*d", i ? ", " : "");
    lk_buf_adds(&t, "]\n");
    struct lk_config *cfg = NULL;
    struct lk_diag d;
    CHECK_INT_EQ(lk_config_parse(t.data, t.len, "b", &cfg, &d), LK_ELIMIT);
    CHECK_STR_EQ(d.msg, "too many YAML nodes (over 100000, counting alias expansion)");
    CHECK_INT_EQ(d.line, 8);
    CHECK(cfg == NULL);
    lk_buf_release(&t);
}

static void test_format_error(void)
{
    static const struct {
        const char *path;
        int line, col;
        const char *msg, *want;
    } cases[] = {
        { "/p/linkup.yaml", 12, 5, "unknown service \"web\"",
          "Failed to deserialize config file \"/p/linkup.yaml\": line 12, column 5: unknown "
          "service \"web\"" },
        { "/a \"b\"\\c\n", 1, 1, "x",
          "Failed to deserialize config file \"/a \\\"b\\\"\\\\c\\n\": line 1, column 1: x" },
        { "/p\x01.yaml", 0, 0, "too large",
          "Failed to deserialize config file \"/p\\u{1}.yaml\": too large" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_diag d = { cases[i].line, cases[i].col, "" };
        snprintf(d.msg, sizeof(d.msg), "%s", cases[i].msg);
        struct lk_buf out = LK_BUF_INIT;
        lk_config_format_error(cases[i].path, &d, &out);
        CHECK_STR_EQ(out.data, cases[i].want);
        lk_buf_release(&out);
    }
}

static void test_mask_secret(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        { "tok_abcdef3f", "tok\xE2\x80\xA6"
                          "3f" },
        { "12345678", "123\xE2\x80\xA6"
                      "78" },
        { "1234567", "\xE2\x80\xA6" },
        { "", "\xE2\x80\xA6" },
        /* Characters, not bytes: a multi-byte one is kept whole. */
        { "\xC3\xA9\xC3\xA9-secret-token-\xE2\x82\xAC", "\xC3\xA9\xC3\xA9-\xE2\x80\xA6"
                                                        "-\xE2\x82\xAC" },
        { "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", "\xE2\x80\xA6" },
        { "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9",
          "\xC3\xA9\xC3\xA9\xC3\xA9\xE2\x80\xA6\xC3\xA9\xC3\xA9" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_buf out = LK_BUF_INIT;
        lk_config_mask_secret(cases[i].in, &out);
        CHECK_STR_EQ(out.data, cases[i].want);
        lk_buf_release(&out);
    }
}

static void test_accessors(void)
{
    static const char text[] = HEAD SVC_WEB "  - name: api\n    remote: http://a.test\n"
                                            "    local: http://l.test\n"
                                            "domains:\n"
                                            "  - {domain: example.com, default_service: web}\n"
                                            "  - {domain: api.example.com, default_service: api}\n"
                                            "  - {domain: other.org, default_service: api}\n"
                                            "  - {domain: example.com, default_service: api}\n"
                                            "  - {domain: xample.com.evil, default_service: api}\n";
    struct lk_config *c = parse_ok(text);
    if (c == NULL)
        return;
    CHECK(lk_config_find_service(c, "api") == &c->services[1]);
    CHECK(lk_config_find_service(c, "web") == &c->services[0]);
    CHECK(lk_config_find_service(c, "nope") == NULL);
    CHECK(lk_config_find_domain(c, "example.com") == &c->domains[0]);
    CHECK(lk_config_find_domain(c, "EXAMPLE.com") == NULL);
    const struct lk_config_domain *top[5];
    size_t n = lk_config_top_level_domains(c, top);
    CHECK_INT_EQ(n, 4);
    if (n == 4) {
        CHECK_STR_EQ(top[0]->domain, "example.com");
        CHECK_STR_EQ(top[1]->domain, "other.org");
        CHECK_STR_EQ(top[2]->domain, "example.com");
        CHECK_STR_EQ(top[3]->domain, "xample.com.evil");
    }
    lk_config_free(c);
}

int main(void)
{
    RUN(test_spec_example);
    RUN(test_state_example);
    RUN(test_null_absent_empty);
    RUN(test_valid_variants);
    RUN(test_errors);
    RUN(test_hostile_inputs);
    RUN(test_alias_bomb);
    RUN(test_format_error);
    RUN(test_mask_secret);
    RUN(test_accessors);
    return DONE();
}
