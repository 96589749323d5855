/*
 * state.c - the state file: YAML via libyaml's document API (parse) and its
 * event emitter (emit), and the upsert JSON via jansson.
 *
 * Invariant: a parsed state owns copies of every scalar; the libyaml document
 * is deleted before lk_state_parse returns.
 */
#include "core/state.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/url.h"

/* ---- building ------------------------------------------------------------ */

struct lk_state *lk_state_new(void)
{
    struct lk_state *st = lk_xcalloc(1, sizeof(*st));
    st->session_name = lk_xstrdup("");
    st->session_token = lk_xstrdup("");
    st->worker_url = lk_xstrdup("");
    st->worker_token = lk_xstrdup("");
    st->config_path = lk_xstrdup("");
    st->kind = lk_xstrdup("tunneled");
    return st;
}

void lk_state_set_str(char **field, const char *value)
{
    free(*field);
    *field = value ? lk_xstrdup(value) : NULL;
}

static void free_service(struct lk_state_service *sv)
{
    free(sv->name);
    free(sv->remote);
    free(sv->local);
    free(sv->directory);
    for (size_t i = 0; i < sv->n_rewrites; i++) {
        free(sv->rewrites[i].source);
        free(sv->rewrites[i].target);
    }
    free(sv->rewrites);
    free(sv->health.path);
    free(sv->health.statuses);
}

static void free_domain(struct lk_state_domain *d)
{
    free(d->domain);
    free(d->default_service);
    for (size_t i = 0; i < d->n_routes; i++) {
        free(d->routes[i].path);
        free(d->routes[i].service);
    }
    free(d->routes);
}

void lk_state_free(struct lk_state *st)
{
    if (st == NULL)
        return;
    free(st->session_name);
    free(st->session_token);
    free(st->worker_url);
    free(st->worker_token);
    free(st->config_path);
    free(st->tunnel);
    free(st->kind);
    for (size_t i = 0; i < st->n_cache_routes; i++)
        free(st->cache_routes[i]);
    free(st->cache_routes);
    for (size_t i = 0; i < st->n_domains; i++)
        free_domain(&st->domains[i]);
    free(st->domains);
    for (size_t i = 0; i < st->n_services; i++)
        free_service(&st->services[i]);
    free(st->services);
    free(st);
}

struct lk_state_service *lk_state_add_service(struct lk_state *st)
{
    st->services = lk_xrealloc(st->services, (st->n_services + 1) * sizeof(*st->services));
    struct lk_state_service *sv = &st->services[st->n_services++];
    memset(sv, 0, sizeof(*sv));
    return sv;
}

void lk_state_add_rewrite(struct lk_state_service *sv, const char *source, const char *target)
{
    sv->rewrites = lk_xrealloc(sv->rewrites, (sv->n_rewrites + 1) * sizeof(*sv->rewrites));
    sv->rewrites[sv->n_rewrites].source = lk_xstrdup(source);
    sv->rewrites[sv->n_rewrites].target = lk_xstrdup(target);
    sv->n_rewrites++;
    sv->has_rewrites = true;
}

void lk_state_add_status(struct lk_state_service *sv, uint16_t status)
{
    struct lk_state_health *h = &sv->health;
    h->statuses = lk_xrealloc(h->statuses, (h->n_statuses + 1) * sizeof(*h->statuses));
    h->statuses[h->n_statuses++] = status;
    h->has_statuses = true;
    sv->has_health = true;
}

struct lk_state_domain *lk_state_add_domain(struct lk_state *st, const char *domain,
                                            const char *default_service)
{
    st->domains = lk_xrealloc(st->domains, (st->n_domains + 1) * sizeof(*st->domains));
    struct lk_state_domain *d = &st->domains[st->n_domains++];
    memset(d, 0, sizeof(*d));
    d->domain = lk_xstrdup(domain);
    d->default_service = lk_xstrdup(default_service);
    return d;
}

void lk_state_add_route(struct lk_state_domain *d, const char *path, const char *service)
{
    d->routes = lk_xrealloc(d->routes, (d->n_routes + 1) * sizeof(*d->routes));
    d->routes[d->n_routes].path = lk_xstrdup(path);
    d->routes[d->n_routes].service = lk_xstrdup(service);
    d->n_routes++;
    d->has_routes = true;
}

void lk_state_add_cache_route(struct lk_state *st, const char *source)
{
    st->cache_routes =
        lk_xrealloc(st->cache_routes, (st->n_cache_routes + 1) * sizeof(*st->cache_routes));
    st->cache_routes[st->n_cache_routes++] = lk_xstrdup(source);
    st->has_cache_routes = true;
}

struct lk_state_service *lk_state_find_service(const struct lk_state *st, struct lk_str name)
{
    for (size_t i = 0; i < st->n_services; i++) {
        if (lk_str_eq(lk_str_c(st->services[i].name), name))
            return &st->services[i];
    }
    return NULL;
}

const char *lk_state_service_url(const struct lk_state_service *sv)
{
    return sv->current == LK_TARGET_LOCAL ? sv->local : sv->remote;
}

const char *lk_state_target_name(enum lk_state_target t)
{
    return t == LK_TARGET_LOCAL ? "Local" : "Remote";
}

static char *dup_or_null(const char *s)
{
    return s ? lk_xstrdup(s) : NULL;
}

static void clone_service(struct lk_state_service *dst, const struct lk_state_service *src)
{
    *dst = *src;
    dst->name = dup_or_null(src->name);
    dst->remote = dup_or_null(src->remote);
    dst->local = dup_or_null(src->local);
    dst->directory = dup_or_null(src->directory);
    dst->rewrites = NULL;
    dst->n_rewrites = 0;
    for (size_t i = 0; i < src->n_rewrites; i++)
        lk_state_add_rewrite(dst, src->rewrites[i].source, src->rewrites[i].target);
    dst->has_rewrites = src->has_rewrites;
    dst->health.path = dup_or_null(src->health.path);
    dst->health.statuses = NULL;
    if (src->health.n_statuses) {
        dst->health.statuses =
            lk_xmemdup(src->health.statuses, src->health.n_statuses * sizeof(uint16_t));
    }
}

struct lk_state *lk_state_clone(const struct lk_state *st)
{
    struct lk_state *c = lk_xcalloc(1, sizeof(*c));
    c->session_name = dup_or_null(st->session_name);
    c->session_token = dup_or_null(st->session_token);
    c->worker_url = dup_or_null(st->worker_url);
    c->worker_token = dup_or_null(st->worker_token);
    c->config_path = dup_or_null(st->config_path);
    c->tunnel = dup_or_null(st->tunnel);
    c->kind = dup_or_null(st->kind);
    for (size_t i = 0; i < st->n_cache_routes; i++)
        lk_state_add_cache_route(c, st->cache_routes[i]);
    c->has_cache_routes = st->has_cache_routes;
    for (size_t i = 0; i < st->n_domains; i++) {
        const struct lk_state_domain *d = &st->domains[i];
        struct lk_state_domain *nd = lk_state_add_domain(c, d->domain, d->default_service);
        for (size_t j = 0; j < d->n_routes; j++)
            lk_state_add_route(nd, d->routes[j].path, d->routes[j].service);
        nd->has_routes = d->has_routes;
    }
    for (size_t i = 0; i < st->n_services; i++)
        clone_service(lk_state_add_service(c), &st->services[i]);
    return c;
}

/* ---- parsing ------------------------------------------------------------- */

struct parser {
    yaml_document_t *doc;
    struct lk_buf *err;
    int rc;
};

static void fail(struct parser *p, const char *what, const char *key)
{
    if (p->rc == 0 && p->err)
        lk_buf_addf(p->err, "%s: %s", what, key);
    p->rc = LK_EPARSE;
}

static yaml_node_t *map_get(struct parser *p, yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
        if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(key) &&
            memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
            return yaml_document_get_node(p->doc, pair->value);
    }
    return NULL;
}

/* A plain scalar spelling YAML's null (or an absent node). */
static bool is_null(const yaml_node_t *n)
{
    if (n == NULL)
        return true;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
    for (size_t i = 0; i < LK_ARRAY_LEN(nulls); i++) {
        if (n->data.scalar.length == strlen(nulls[i]) &&
            memcmp(n->data.scalar.value, nulls[i], n->data.scalar.length) == 0)
            return true;
    }
    return false;
}

/* An owned copy of a string scalar; NULL (and a parse failure when
 * required) otherwise. NUL bytes inside the scalar are refused. */
static char *get_str(struct parser *p, yaml_node_t *map, const char *key, bool required)
{
    yaml_node_t *n = map_get(p, map, key);
    if (is_null(n)) {
        if (required)
            fail(p, "missing field", key);
        return NULL;
    }
    if (n->type != YAML_SCALAR_NODE ||
        memchr(n->data.scalar.value, 0, n->data.scalar.length) != NULL) {
        fail(p, "invalid type for field", key);
        return NULL;
    }
    return lk_xstrndup((const char *)n->data.scalar.value, n->data.scalar.length);
}

/* Like get_str, but an empty quoted or plain-empty required scalar is "". */
static char *get_req_str(struct parser *p, yaml_node_t *map, const char *key)
{
    yaml_node_t *n = map_get(p, map, key);
    if (n && n->type == YAML_SCALAR_NODE && n->data.scalar.length == 0)
        return lk_xstrdup("");
    return get_str(p, map, key, true);
}

/* The sequence at key: NULL (has = false) when null/absent; a parse failure
 * when it is something else. */
static yaml_node_t *get_seq(struct parser *p, yaml_node_t *map, const char *key, bool *has)
{
    yaml_node_t *n = map_get(p, map, key);
    *has = false;
    if (is_null(n))
        return NULL;
    if (n->type != YAML_SEQUENCE_NODE) {
        fail(p, "expected a sequence for field", key);
        return NULL;
    }
    *has = true;
    return n;
}

#define SEQ_FOR_EACH(p, seq, item)                                                   \
    for (yaml_node_item_t *item##_it = (seq)->data.sequence.items.start;             \
         item##_it < (seq)->data.sequence.items.top &&                               \
         ((item) = yaml_document_get_node((p)->doc, *item##_it), 1) && (p)->rc == 0; \
         item##_it++)

static void parse_health(struct parser *p, yaml_node_t *hn, struct lk_state_service *sv)
{
    if (is_null(hn))
        return;
    if (hn->type != YAML_MAPPING_NODE) {
        fail(p, "expected a mapping for field", "health");
        return;
    }
    sv->has_health = true;
    sv->health.path = get_str(p, hn, "path", false);
    bool has = false;
    yaml_node_t *seq = get_seq(p, hn, "statuses", &has);
    if (seq == NULL)
        return;
    yaml_node_t *item;
    SEQ_FOR_EACH(p, seq, item)
    {
        uint64_t v = 0;
        if (item == NULL || item->type != YAML_SCALAR_NODE ||
            lk_str_to_u64(
                (struct lk_str){ (const char *)item->data.scalar.value, item->data.scalar.length },
                65535, &v) != 0) {
            fail(p, "invalid status in", "health.statuses");
            return;
        }
        lk_state_add_status(sv, (uint16_t)v);
    }
    sv->health.has_statuses = true;
}

static void parse_rewrites(struct parser *p, yaml_node_t *svn, struct lk_state_service *sv)
{
    bool has = false;
    yaml_node_t *seq = get_seq(p, svn, "rewrites", &has);
    sv->has_rewrites = has;
    if (seq == NULL)
        return;
    yaml_node_t *item;
    SEQ_FOR_EACH(p, seq, item)
    {
        char *source = get_str(p, item, "source", true);
        char *target = get_req_str(p, item, "target");
        if (p->rc == 0)
            lk_state_add_rewrite(sv, source, target);
        free(source);
        free(target);
    }
}

/* A URL field as the original reads it (a `Url`, SPEC §6.3): normalised, or
 * the state fails to parse. NULL and "" (a state not yet filled in) stay. */
static void normalize_url(struct parser *p, char **field, const char *key)
{
    if (*field == NULL || (*field)[0] == '\0' || p->rc != 0)
        return;
    struct lk_buf out = LK_BUF_INIT;
    const char *why = NULL;
    if (lk_url_normalize(*field, strlen(*field), &out, &why) != 0) {
        fail(p, "invalid URL in field", key);
    } else {
        free(*field);
        *field = lk_xstrndup(out.data, out.len);
    }
    lk_buf_release(&out);
}

static void parse_service(struct parser *p, yaml_node_t *svn, struct lk_state *st)
{
    struct lk_state_service *sv = lk_state_add_service(st);
    char *current = get_str(p, svn, "current", true);
    if (current && strcmp(current, "Local") == 0)
        sv->current = LK_TARGET_LOCAL;
    else if (current && strcmp(current, "Remote") != 0)
        fail(p, "unknown variant for field", "current");
    free(current);
    sv->name = get_req_str(p, svn, "name");
    sv->remote = get_str(p, svn, "remote", true);
    sv->local = get_str(p, svn, "local", true);
    normalize_url(p, &sv->remote, "remote");
    normalize_url(p, &sv->local, "local");
    sv->directory = get_str(p, svn, "directory", false);
    parse_rewrites(p, svn, sv);
    parse_health(p, map_get(p, svn, "health"), sv);
}

static void parse_domain(struct parser *p, yaml_node_t *dn, struct lk_state *st)
{
    char *domain = get_req_str(p, dn, "domain");
    char *def = get_req_str(p, dn, "default_service");
    bool has = false;
    yaml_node_t *seq = get_seq(p, dn, "routes", &has);
    if (p->rc == 0) {
        struct lk_state_domain *d = lk_state_add_domain(st, domain, def);
        d->has_routes = has;
        yaml_node_t *item;
        if (seq) {
            SEQ_FOR_EACH(p, seq, item)
            {
                char *path = get_str(p, item, "path", true);
                char *service = get_req_str(p, item, "service");
                if (p->rc == 0)
                    lk_state_add_route(d, path, service);
                free(path);
                free(service);
            }
        }
    }
    free(domain);
    free(def);
}

static void parse_linkup(struct parser *p, yaml_node_t *ln, struct lk_state *st)
{
    if (ln == NULL || ln->type != YAML_MAPPING_NODE) {
        fail(p, "missing field", "linkup");
        return;
    }
    static const struct {
        const char *key;
        size_t off;
    } fields[] = {
        { "session_name", offsetof(struct lk_state, session_name) },
        { "session_token", offsetof(struct lk_state, session_token) },
        { "worker_url", offsetof(struct lk_state, worker_url) },
        { "worker_token", offsetof(struct lk_state, worker_token) },
        { "config_path", offsetof(struct lk_state, config_path) },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(fields); i++) {
        char **field = (char **)((char *)st + fields[i].off);
        free(*field);
        *field = get_req_str(p, ln, fields[i].key);
    }
    st->tunnel = get_str(p, ln, "tunnel", false);
    normalize_url(p, &st->worker_url, "worker_url");
    normalize_url(p, &st->tunnel, "tunnel");
    char *kind = get_str(p, ln, "kind", false);
    if (kind && strcmp(kind, "tunneled") != 0 && strcmp(kind, "preview") != 0)
        fail(p, "unknown variant for field", "kind");
    if (kind) {
        free(st->kind);
        st->kind = kind;
    }
    bool has = false;
    yaml_node_t *seq = get_seq(p, ln, "cache_routes", &has);
    yaml_node_t *item;
    if (seq) {
        SEQ_FOR_EACH(p, seq, item)
        {
            if (item == NULL || item->type != YAML_SCALAR_NODE) {
                fail(p, "invalid type in", "cache_routes");
                break;
            }
            char *s = lk_xstrndup((const char *)item->data.scalar.value, item->data.scalar.length);
            lk_state_add_cache_route(st, s);
            free(s);
        }
    }
    st->has_cache_routes = has;
}

static void parse_list(struct parser *p, yaml_node_t *root, const char *key, struct lk_state *st,
                       void (*each)(struct parser *, yaml_node_t *, struct lk_state *))
{
    yaml_node_t *seq = map_get(p, root, key);
    if (seq == NULL || seq->type != YAML_SEQUENCE_NODE) {
        fail(p, "missing or invalid field", key);
        return;
    }
    yaml_node_t *item;
    SEQ_FOR_EACH(p, seq, item)
    {
        if (item == NULL || item->type != YAML_MAPPING_NODE) {
            fail(p, "expected a mapping in", key);
            return;
        }
        each(p, item, st);
    }
}

int lk_state_parse(const char *yaml, size_t len, struct lk_state **out, struct lk_buf *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct parser p = { &doc, err, 0 };
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        if (err)
            lk_buf_addf(err, "invalid YAML: %s", parser.problem ? parser.problem : "error");
        yaml_parser_delete(&parser);
        return LK_EPARSE;
    }
    struct lk_state *st = lk_state_new();
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL || root->type != YAML_MAPPING_NODE)
        fail(&p, "expected a mapping at", "top level");
    if (p.rc == 0)
        parse_linkup(&p, map_get(&p, root, "linkup"), st);
    if (p.rc == 0)
        parse_list(&p, root, "domains", st, parse_domain);
    if (p.rc == 0)
        parse_list(&p, root, "services", st, parse_service);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (p.rc != 0) {
        lk_state_free(st);
        return p.rc;
    }
    *out = st;
    return 0;
}

/* ---- emitting ------------------------------------------------------------ */

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
    lk_buf_add(data, buffer, size);
    return 1;
}

static bool all_of(const char *s, const char *set)
{
    return *s != '\0' && strspn(s, set) == strlen(s);
}

/* True when s would read back as a number: an integer (decimal, 0x, 0o, 0b;
 * '_' separators), a float ("1.5", ".5", "5.", "1e3", "1.5E-3") or an
 * infinity/NaN spelling, with an optional sign. Strings that merely start
 * with a digit ("3zgtAVF848wWVlbB", a session token) stay plain, as
 * serde_yaml writes them in the original's state file (SPEC §6.3). */
static bool looks_numeric(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    static const char *const words[] = { "inf", "infinity", "nan", ".inf", ".nan" };
    for (size_t i = 0; i < LK_ARRAY_LEN(words); i++) {
        if (strcasecmp(s, words[i]) == 0)
            return true;
    }
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        return all_of(s + 2, "0123456789abcdefABCDEF_");
    if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
        return all_of(s + 2, "01234567_");
    if (s[0] == '0' && (s[1] == 'b' || s[1] == 'B'))
        return all_of(s + 2, "01_");
    /* Decimal: digits [. digits] or . digits, then an optional exponent. */
    size_t int_digits = strspn(s, "0123456789_");
    const char *p = s + int_digits;
    size_t frac_digits = 0;
    if (*p == '.') {
        frac_digits = strspn(p + 1, "0123456789_");
        p += 1 + frac_digits;
    }
    if (int_digits == 0 && frac_digits == 0)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        return all_of(p, "0123456789");
    }
    return *p == '\0';
}

/* True when a plain scalar s would not read back as the same string. */
static bool needs_quotes(const char *s)
{
    static const char *const special[] = {
        "~",     "null", "Null",  "NULL",  "true", "True", "TRUE", "false", "False",
        "FALSE", "yes",  "Yes",   "YES",   "no",   "No",   "NO",   "on",    "On",
        "ON",    "off",  "Off",   "OFF",   "y",    "Y",    "n",    "N",     ".inf",
        ".Inf",  ".INF", "-.inf", "-.Inf", ".nan", ".NaN", ".NAN", "+.inf",
    };
    if (*s == '\0')
        return true;
    for (size_t i = 0; i < LK_ARRAY_LEN(special); i++) {
        if (strcmp(s, special[i]) == 0)
            return true;
    }
    return looks_numeric(s);
}

static void emit(yaml_emitter_t *em, yaml_event_t *ev)
{
    /* Emitting into memory only fails on invalid UTF-8 in a scalar, which
     * libyaml then refuses; the output is cut short rather than aborting. */
    (void)yaml_emitter_emit(em, ev);
}

static void emit_scalar(yaml_emitter_t *em, const char *s)
{
    yaml_event_t ev;
    yaml_scalar_style_t style =
        needs_quotes(s) ? YAML_SINGLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)(uintptr_t)s, (int)strlen(s), 1, 1,
                                 style);
    emit(em, &ev);
}

static void emit_null(yaml_emitter_t *em)
{
    yaml_event_t ev;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)(uintptr_t) "null", 4, 1, 1,
                                 YAML_PLAIN_SCALAR_STYLE);
    emit(em, &ev);
}

static void emit_kv(yaml_emitter_t *em, const char *key, const char *value)
{
    emit_scalar(em, key);
    if (value)
        emit_scalar(em, value);
    else
        emit_null(em);
}

static void begin_map(yaml_emitter_t *em)
{
    yaml_event_t ev;
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    emit(em, &ev);
}

static void end_map(yaml_emitter_t *em)
{
    yaml_event_t ev;
    yaml_mapping_end_event_initialize(&ev);
    emit(em, &ev);
}

static void begin_seq(yaml_emitter_t *em)
{
    yaml_event_t ev;
    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
    emit(em, &ev);
}

static void end_seq(yaml_emitter_t *em)
{
    yaml_event_t ev;
    yaml_sequence_end_event_initialize(&ev);
    emit(em, &ev);
}

/* libyaml writes an empty block sequence as the flow form "[]". */
static void emit_str_list(yaml_emitter_t *em, const char *key, bool has, char **items, size_t n)
{
    emit_scalar(em, key);
    if (!has) {
        emit_null(em);
        return;
    }
    begin_seq(em);
    for (size_t i = 0; i < n; i++)
        emit_scalar(em, items[i]);
    end_seq(em);
}

static void emit_linkup(yaml_emitter_t *em, const struct lk_state *st)
{
    emit_scalar(em, "linkup");
    begin_map(em);
    emit_kv(em, "session_name", st->session_name);
    emit_kv(em, "session_token", st->session_token);
    emit_kv(em, "worker_url", st->worker_url);
    emit_kv(em, "worker_token", st->worker_token);
    emit_kv(em, "config_path", st->config_path);
    emit_kv(em, "tunnel", st->tunnel);
    emit_kv(em, "kind", st->kind);
    emit_str_list(em, "cache_routes", st->has_cache_routes, st->cache_routes, st->n_cache_routes);
    end_map(em);
}

static void emit_domain(yaml_emitter_t *em, const struct lk_state_domain *d)
{
    begin_map(em);
    emit_kv(em, "domain", d->domain);
    emit_kv(em, "default_service", d->default_service);
    emit_scalar(em, "routes");
    if (d->has_routes) {
        begin_seq(em);
        for (size_t i = 0; i < d->n_routes; i++) {
            begin_map(em);
            emit_kv(em, "path", d->routes[i].path);
            emit_kv(em, "service", d->routes[i].service);
            end_map(em);
        }
        end_seq(em);
    } else {
        emit_null(em);
    }
    end_map(em);
}

static void emit_health(yaml_emitter_t *em, const struct lk_state_health *h)
{
    emit_scalar(em, "health");
    begin_map(em);
    emit_kv(em, "path", h->path);
    emit_scalar(em, "statuses");
    if (h->has_statuses) {
        begin_seq(em);
        for (size_t i = 0; i < h->n_statuses; i++) {
            char num[8];
            snprintf(num, sizeof(num), "%u", (unsigned)h->statuses[i]);
            yaml_event_t ev;
            yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)num, (int)strlen(num), 1,
                                         1, YAML_PLAIN_SCALAR_STYLE);
            emit(em, &ev);
        }
        end_seq(em);
    } else {
        emit_null(em);
    }
    end_map(em);
}

static void emit_service(yaml_emitter_t *em, const struct lk_state_service *sv)
{
    begin_map(em);
    emit_kv(em, "current", lk_state_target_name(sv->current));
    emit_kv(em, "name", sv->name);
    emit_kv(em, "remote", sv->remote);
    emit_kv(em, "local", sv->local);
    if (sv->directory)
        emit_kv(em, "directory", sv->directory);
    emit_scalar(em, "rewrites");
    if (sv->has_rewrites) {
        begin_seq(em);
        for (size_t i = 0; i < sv->n_rewrites; i++) {
            begin_map(em);
            emit_kv(em, "source", sv->rewrites[i].source);
            emit_kv(em, "target", sv->rewrites[i].target);
            end_map(em);
        }
        end_seq(em);
    } else {
        emit_null(em);
    }
    if (sv->has_health)
        emit_health(em, &sv->health);
    end_map(em);
}

void lk_state_emit(const struct lk_state *st, struct lk_buf *out)
{
    yaml_emitter_t em;
    yaml_event_t ev;
    yaml_emitter_initialize(&em);
    yaml_emitter_set_output(&em, write_handler, out);
    yaml_emitter_set_indent(&em, 2);
    yaml_emitter_set_width(&em, -1);
    yaml_emitter_set_unicode(&em, 1);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    emit(&em, &ev);
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    emit(&em, &ev);
    begin_map(&em);
    emit_linkup(&em, st);
    emit_scalar(&em, "domains");
    begin_seq(&em);
    for (size_t i = 0; i < st->n_domains; i++)
        emit_domain(&em, &st->domains[i]);
    end_seq(&em);
    emit_scalar(&em, "services");
    begin_seq(&em);
    for (size_t i = 0; i < st->n_services; i++)
        emit_service(&em, &st->services[i]);
    end_seq(&em);
    end_map(&em);
    yaml_document_end_event_initialize(&ev, 1);
    emit(&em, &ev);
    yaml_stream_end_event_initialize(&ev);
    emit(&em, &ev);
    yaml_emitter_flush(&em);
    yaml_emitter_delete(&em);
}

/* ---- upsert JSON ----------------------------------------------------------- */

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *services_json(const struct lk_state *st, const struct lk_state_upsert_opts *o)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < st->n_services; i++) {
        const struct lk_state_service *sv = &st->services[i];
        const char *loc = o->override ? o->override(o->override_ctx, sv) : NULL;
        json_t *obj = json_object();
        json_object_set_new(obj, "name", json_string(sv->name));
        json_object_set_new(obj, "location", json_string(loc ? loc : lk_state_service_url(sv)));
        json_t *rw = json_null();
        if (sv->has_rewrites) {
            rw = json_array();
            for (size_t j = 0; j < sv->n_rewrites; j++) {
                json_array_append_new(rw, json_pack("{s:s,s:s}", "source", sv->rewrites[j].source,
                                                    "target", sv->rewrites[j].target));
            }
        }
        json_object_set_new(obj, "rewrites", rw);
        json_array_append_new(arr, obj);
    }
    return arr;
}

static json_t *domains_json(const struct lk_state *st)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < st->n_domains; i++) {
        const struct lk_state_domain *d = &st->domains[i];
        json_t *obj = json_object();
        json_object_set_new(obj, "domain", json_string(d->domain));
        json_object_set_new(obj, "default_service", json_string(d->default_service));
        json_t *routes = json_null();
        if (d->has_routes) {
            routes = json_array();
            for (size_t j = 0; j < d->n_routes; j++) {
                json_array_append_new(routes, json_pack("{s:s,s:s}", "path", d->routes[j].path,
                                                        "service", d->routes[j].service));
            }
        }
        json_object_set_new(obj, "routes", routes);
        json_array_append_new(arr, obj);
    }
    return arr;
}

void lk_state_upsert_json(const struct lk_state *st, const struct lk_state_upsert_opts *opts,
                          struct lk_buf *out)
{
    json_t *root = json_object();
    if (opts->named) {
        json_object_set_new(root, "desired_name", json_string(opts->desired_name));
    } else {
        json_object_set_new(root, "name_kind", json_string(opts->name_kind));
    }
    json_object_set_new(root, "session_token", str_or_null(opts->token));
    json_object_set_new(root, "services", services_json(st, opts));
    json_object_set_new(root, "domains", domains_json(st));
    json_t *cache = json_null();
    if (st->has_cache_routes) {
        cache = json_array();
        for (size_t i = 0; i < st->n_cache_routes; i++)
            json_array_append_new(cache, json_string(st->cache_routes[i]));
    }
    json_object_set_new(root, "cache_routes", cache);
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text)
        lk_buf_adds(out, text);
    free(text);
    json_decref(root);
}
