/*
 * config.c - the config file: libyaml document -> struct lk_config (config.h).
 *
 * libyaml loads the whole text into a node graph (aliases become shared node
 * indices, so loading cannot explode). A schema walk then fills the plain
 * struct: each YAML mapping is described by a table of { key, required,
 * handler } (STYLE §3.9) and each handler fills one field. The walk only
 * descends into known keys, so its depth is bounded by the schema, and every
 * node it visits is counted against LK_CONFIG_MAX_NODES, which bounds alias
 * expansion. Arrays are zero-filled before their items are parsed, so a config
 * abandoned half-way is always safe to pass to lk_config_free.
 */
#include "core/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/alloc.h"
#include "core/err.h"

/* A service reference to check once every service is known. */
struct ref {
    const char *name; /* borrowed from the config being built */
    yaml_mark_t mark;
};

struct parser {
    yaml_document_t *doc;
    struct lk_diag *diag;
    struct lk_config *cfg;
    const char *key;      /* the key whose value is being parsed, for messages */
    yaml_mark_t key_mark; /* where that key is: service references are located there */
    size_t visits;
    yaml_mark_t *name_marks; /* where each service's name is, by service index */
    struct ref *refs;
    size_t n_refs, refs_cap;
};

typedef int field_fn(struct parser *p, yaml_node_t *value, void *obj);
typedef int item_fn(struct parser *p, yaml_node_t *item, void *elem);

struct field {
    const char *key;
    bool required;
    field_fn *parse;
};

/* ---- diagnostics ------------------------------------------------------- */

static void set_diag(struct lk_diag *d, size_t line, size_t col, const struct lk_buf *msg)
{
    d->line = line < (size_t)INT32_MAX ? (int)line : INT32_MAX;
    d->col = col < (size_t)INT32_MAX ? (int)col : INT32_MAX;
    size_t n = msg->len < sizeof(d->msg) - 1 ? msg->len : sizeof(d->msg) - 1;
    /* Do not cut a UTF-8 sequence in half when truncating. */
    if (n < msg->len) {
        while (n > 0 && ((unsigned char)msg->data[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(d->msg, msg->data, n);
    d->msg[n] = '\0';
}

static int fail_mark(struct parser *p, yaml_mark_t mark, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_mark(struct parser *p, yaml_mark_t mark, int rc, const char *fmt, ...)
{
    struct lk_buf msg = LK_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    lk_buf_vaddf(&msg, fmt, ap);
    va_end(ap);
    set_diag(p->diag, mark.line + 1, mark.column + 1, &msg);
    lk_buf_release(&msg);
    return rc;
}

/* Appends a YAML value for a message: quoted, and shortened when long. */
static void add_value(struct lk_buf *b, const char *s, size_t len)
{
    enum {
        MAX_SHOWN = 40
    };
    char *copy = lk_xstrndup(s, len < MAX_SHOWN ? len : MAX_SHOWN);
    lk_config_add_quoted(b, copy);
    if (len > MAX_SHOWN)
        lk_buf_adds(b, "...");
    free(copy);
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static bool is_null(const yaml_node_t *n)
{
    static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < LK_ARRAY_LEN(nulls); i++) {
        if (strcmp(scalar(n), nulls[i]) == 0)
            return true;
    }
    return false;
}

/* `"key": expected <what>, found <description of n>`. */
static int type_error(struct parser *p, const yaml_node_t *n, const char *what)
{
    struct lk_buf found = LK_BUF_INIT;
    if (is_null(n))
        lk_buf_adds(&found, "null");
    else if (n->type == YAML_SEQUENCE_NODE)
        lk_buf_adds(&found, "a list");
    else if (n->type == YAML_MAPPING_NODE)
        lk_buf_adds(&found, "a mapping");
    else
        add_value(&found, scalar(n), n->data.scalar.length);
    int rc;
    if (p->key)
        rc = fail_mark(p, n->start_mark, LK_EPARSE, "\"%s\": expected %s, found %s", p->key, what,
                       found.data);
    else
        rc = fail_mark(p, n->start_mark, LK_EPARSE, "the config must be %s, found %s", what,
                       found.data);
    lk_buf_release(&found);
    return rc;
}

/* ---- generic node handlers ---------------------------------------------- */

static yaml_node_t *node_at(struct parser *p, int index)
{
    yaml_node_t *n = yaml_document_get_node(p->doc, index);
    LK_ASSERT(n != NULL);
    return n;
}

/* Counts one visited node; fails once alias expansion passes the limit. */
static int visit(struct parser *p, const yaml_node_t *n)
{
    if (++p->visits <= LK_CONFIG_MAX_NODES)
        return 0;
    return fail_mark(p, n->start_mark, LK_ELIMIT,
                     "too many YAML nodes (over %u, counting alias expansion)",
                     LK_CONFIG_MAX_NODES);
}

static int parse_string(struct parser *p, const yaml_node_t *n, char **out)
{
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return type_error(p, n, "a string");
    if (memchr(scalar(n), '\0', n->data.scalar.length) != NULL)
        return fail_mark(p, n->start_mark, LK_EPARSE, "\"%s\": string contains a NUL byte", p->key);
    *out = lk_xstrndup(scalar(n), n->data.scalar.length);
    return 0;
}

static int parse_nonempty_string(struct parser *p, const yaml_node_t *n, char **out)
{
    int rc = parse_string(p, n, out);
    if (rc == 0 && (*out)[0] == '\0')
        return fail_mark(p, n->start_mark, LK_EPARSE, "\"%s\": must not be empty", p->key);
    return rc;
}

static int parse_opt_string(struct parser *p, const yaml_node_t *n, char **out)
{
    return is_null(n) ? 0 : parse_string(p, n, out);
}

/* Parses a URL; stores the normalised text and, when url is non-NULL, the
 * parsed form. */
static int parse_url(struct parser *p, const yaml_node_t *n, char **text, struct lk_url *url)
{
    char *raw = NULL;
    int rc = parse_string(p, n, &raw);
    if (rc != 0)
        return rc;
    struct lk_url u;
    const char *why = "invalid URL";
    if (lk_url_parse(raw, strlen(raw), &u, &why) != 0) {
        struct lk_buf v = LK_BUF_INIT;
        add_value(&v, raw, strlen(raw));
        rc = fail_mark(p, n->start_mark, LK_EPARSE, "\"%s\": invalid URL %s: %s", p->key, v.data,
                       why);
        lk_buf_release(&v);
        free(raw);
        return rc;
    }
    free(raw);
    struct lk_buf out = LK_BUF_INIT;
    lk_url_serialize(&u, &out);
    *text = lk_buf_detach(&out, NULL);
    if (url)
        *url = u;
    else
        lk_url_release(&u);
    return 0;
}

static int parse_regex(struct parser *p, const yaml_node_t *n, struct lk_regex **out)
{
    char *src = NULL;
    int rc = parse_string(p, n, &src);
    if (rc != 0)
        return rc;
    struct lk_buf why = LK_BUF_INIT;
    if (lk_regex_compile(src, strlen(src), out, &why) != 0) {
        struct lk_buf v = LK_BUF_INIT;
        add_value(&v, src, strlen(src));
        rc = fail_mark(p, n->start_mark, LK_EPARSE, "\"%s\": invalid regex %s: %s", p->key, v.data,
                       why.data);
        lk_buf_release(&v);
    }
    lk_buf_release(&why);
    free(src);
    return rc;
}

/* YAML 1.2 core integers as serde_yaml reads them: [+]digits, 0x, 0o, 0b;
 * plain scalars only (a quoted "200" is a string), and a leading zero before
 * more digits makes a string too ("0200"). A negative number fits no u16
 * except zero ("-0", "-0x0"). */
static int parse_u16(struct parser *p, const yaml_node_t *n, uint16_t *out)
{
    const char *expected = "an integer 0..65535";
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return type_error(p, n, expected);
    const char *s = scalar(n);
    bool negative = *s == '-';
    if (*s == '+' || *s == '-')
        s++;
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b')) {
        base = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 2;
        s += 2;
    } else if (s[0] == '0' && s[1] != '\0') {
        return type_error(p, n, expected);
    }
    unsigned long v = 0;
    size_t digits = 0;
    for (; *s; s++, digits++) {
        int d = (*s >= '0' && *s <= '9')   ? *s - '0'
                : (*s >= 'a' && *s <= 'f') ? *s - 'a' + 10
                : (*s >= 'A' && *s <= 'F') ? *s - 'A' + 10
                                           : 99;
        if (d >= base)
            return type_error(p, n, expected);
        v = v * (unsigned long)base + (unsigned long)d;
        if (v > 65535)
            return type_error(p, n, expected);
    }
    if (digits == 0 || (negative && v != 0))
        return type_error(p, n, expected);
    *out = (uint16_t)v;
    return 0;
}

/* Walks a mapping with a field table; unknown and non-scalar keys are skipped. */
static int parse_fields(struct parser *p, yaml_node_t *map, const struct field *fields,
                        size_t n_fields, void *obj)
{
    LK_ASSERT(n_fields <= 32);
    if (map->type != YAML_MAPPING_NODE)
        return type_error(p, map, "a mapping");
    uint32_t seen = 0;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *k = node_at(p, pair->key);
        yaml_node_t *v = node_at(p, pair->value);
        int rc = visit(p, v);
        if (rc != 0)
            return rc;
        if (k->type != YAML_SCALAR_NODE)
            continue;
        size_t i = 0;
        while (i < n_fields && strcmp(fields[i].key, scalar(k)) != 0)
            i++;
        if (i == n_fields)
            continue;
        if (seen & (1u << i))
            return fail_mark(p, k->start_mark, LK_EPARSE, "duplicate key \"%s\"", fields[i].key);
        seen |= 1u << i;
        const char *outer = p->key;
        yaml_mark_t outer_mark = p->key_mark;
        p->key = fields[i].key;
        p->key_mark = k->start_mark;
        rc = fields[i].parse(p, v, obj);
        p->key = outer;
        p->key_mark = outer_mark;
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < n_fields; i++) {
        if (fields[i].required && !(seen & (1u << i)))
            return fail_mark(p, map->start_mark, LK_EPARSE, "missing key \"%s\"", fields[i].key);
    }
    return 0;
}

/* Parses a list into a new zero-filled array of *n elements of elem bytes. */
static int parse_list(struct parser *p, yaml_node_t *seq, void **arr, size_t *n, size_t elem,
                      item_fn *fn)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return type_error(p, seq, "a list");
    size_t count = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    *arr = count ? lk_xcalloc(count, elem) : NULL;
    *n = count;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = node_at(p, seq->data.sequence.items.start[i]);
        int rc = visit(p, item);
        if (rc == 0)
            rc = fn(p, item, (char *)*arr + i * elem);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* A list that may also be null or absent (has stays false then). */
static int parse_opt_list(struct parser *p, yaml_node_t *seq, bool *has, void **arr, size_t *n,
                          size_t elem, item_fn *fn)
{
    if (is_null(seq))
        return 0;
    *has = true;
    return parse_list(p, seq, arr, n, elem, fn);
}

static void add_ref(struct parser *p, const char *name, yaml_mark_t mark)
{
    LK_GROW(p->refs, p->refs_cap, p->n_refs + 1);
    p->refs[p->n_refs++] = (struct ref){ name, mark };
}

/* ---- schema: linkup ------------------------------------------------------ */

static int regex_item(struct parser *p, yaml_node_t *item, void *elem)
{
    return parse_regex(p, item, elem);
}

static int linkup_worker_url(struct parser *p, yaml_node_t *v, void *obj)
{
    return parse_url(p, v, &((struct lk_config *)obj)->worker_url, NULL);
}

static int linkup_worker_token(struct parser *p, yaml_node_t *v, void *obj)
{
    return parse_string(p, v, &((struct lk_config *)obj)->worker_token);
}

static int linkup_cache_routes(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config *c = obj;
    return parse_opt_list(p, v, &c->has_cache_routes, (void **)&c->cache_routes, &c->n_cache_routes,
                          sizeof(*c->cache_routes), regex_item);
}

static const struct field linkup_fields[] = {
    { "worker_url", true, linkup_worker_url },
    { "worker_token", true, linkup_worker_token },
    { "cache_routes", false, linkup_cache_routes },
};

/* ---- schema: services ---------------------------------------------------- */

static int rewrite_source(struct parser *p, yaml_node_t *v, void *obj)
{
    return parse_regex(p, v, &((struct lk_config_rewrite *)obj)->source);
}

static int rewrite_target(struct parser *p, yaml_node_t *v, void *obj)
{
    return parse_string(p, v, &((struct lk_config_rewrite *)obj)->target);
}

static const struct field rewrite_fields[] = {
    { "source", true, rewrite_source },
    { "target", true, rewrite_target },
};

static int rewrite_item(struct parser *p, yaml_node_t *item, void *elem)
{
    return parse_fields(p, item, rewrite_fields, LK_ARRAY_LEN(rewrite_fields), elem);
}

static int status_item(struct parser *p, yaml_node_t *item, void *elem)
{
    return parse_u16(p, item, elem);
}

static int health_path(struct parser *p, yaml_node_t *v, void *obj)
{
    return parse_opt_string(p, v, &((struct lk_config_health *)obj)->path);
}

static int health_statuses(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config_health *h = obj;
    return parse_opt_list(p, v, &h->has_statuses, (void **)&h->statuses, &h->n_statuses,
                          sizeof(*h->statuses), status_item);
}

static const struct field health_fields[] = {
    { "path", false, health_path },
    { "statuses", false, health_statuses },
};

static int service_name(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config_service *s = obj;
    /* Services are parsed in order, so this one is the last started. */
    p->name_marks[s - p->cfg->services] = p->key_mark;
    return parse_nonempty_string(p, v, &s->name);
}

static int service_remote(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config_service *s = obj;
    return parse_url(p, v, &s->remote, &s->remote_url);
}

static int service_local(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config_service *s = obj;
    return parse_url(p, v, &s->local, &s->local_url);
}

static int service_directory(struct parser *p, yaml_node_t *v, void *obj)
{
    return parse_opt_string(p, v, &((struct lk_config_service *)obj)->directory);
}

static int service_rewrites(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config_service *s = obj;
    return parse_opt_list(p, v, &s->has_rewrites, (void **)&s->rewrites, &s->n_rewrites,
                          sizeof(*s->rewrites), rewrite_item);
}

static int service_health(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config_service *s = obj;
    if (is_null(v))
        return 0;
    s->health = lk_xcalloc(1, sizeof(*s->health));
    return parse_fields(p, v, health_fields, LK_ARRAY_LEN(health_fields), s->health);
}

static const struct field service_fields[] = {
    { "name", true, service_name },          { "remote", true, service_remote },
    { "local", true, service_local },        { "directory", false, service_directory },
    { "rewrites", false, service_rewrites }, { "health", false, service_health },
};

static int service_item(struct parser *p, yaml_node_t *item, void *elem)
{
    return parse_fields(p, item, service_fields, LK_ARRAY_LEN(service_fields), elem);
}

/* ---- schema: domains ----------------------------------------------------- */

static int route_path(struct parser *p, yaml_node_t *v, void *obj)
{
    return parse_regex(p, v, &((struct lk_config_route *)obj)->path);
}

static int route_service(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config_route *r = obj;
    int rc = parse_string(p, v, &r->service);
    if (rc == 0)
        add_ref(p, r->service, p->key_mark);
    return rc;
}

static const struct field route_fields[] = {
    { "path", true, route_path },
    { "service", true, route_service },
};

static int route_item(struct parser *p, yaml_node_t *item, void *elem)
{
    return parse_fields(p, item, route_fields, LK_ARRAY_LEN(route_fields), elem);
}

static int domain_domain(struct parser *p, yaml_node_t *v, void *obj)
{
    return parse_nonempty_string(p, v, &((struct lk_config_domain *)obj)->domain);
}

static int domain_default_service(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config_domain *d = obj;
    int rc = parse_string(p, v, &d->default_service);
    if (rc == 0)
        add_ref(p, d->default_service, p->key_mark);
    return rc;
}

static int domain_routes(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config_domain *d = obj;
    return parse_opt_list(p, v, &d->has_routes, (void **)&d->routes, &d->n_routes,
                          sizeof(*d->routes), route_item);
}

static const struct field domain_fields[] = {
    { "domain", true, domain_domain },
    { "default_service", true, domain_default_service },
    { "routes", false, domain_routes },
};

static int domain_item(struct parser *p, yaml_node_t *item, void *elem)
{
    return parse_fields(p, item, domain_fields, LK_ARRAY_LEN(domain_fields), elem);
}

/* ---- schema: top level --------------------------------------------------- */

static int root_linkup(struct parser *p, yaml_node_t *v, void *obj)
{
    return parse_fields(p, v, linkup_fields, LK_ARRAY_LEN(linkup_fields), obj);
}

static int root_services(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config *c = obj;
    if (v->type == YAML_SEQUENCE_NODE) {
        size_t count = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        p->name_marks = lk_xcalloc(count ? count : 1, sizeof(*p->name_marks));
    }
    return parse_list(p, v, (void **)&c->services, &c->n_services, sizeof(*c->services),
                      service_item);
}

static int root_domains(struct parser *p, yaml_node_t *v, void *obj)
{
    struct lk_config *c = obj;
    return parse_list(p, v, (void **)&c->domains, &c->n_domains, sizeof(*c->domains), domain_item);
}

static const struct field root_fields[] = {
    { "linkup", true, root_linkup },
    { "services", true, root_services },
    { "domains", true, root_domains },
};

/* ---- cross-references (DESIGN §2.2) -------------------------------------- */

struct name_index {
    const char *name;
    size_t index;
};

static int cmp_name_index(const void *a, const void *b)
{
    const struct name_index *x = a;
    const struct name_index *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_name_key(const void *key, const void *elem)
{
    return strcmp(key, ((const struct name_index *)elem)->name);
}

/* Sorting the names keeps the checks O(n log n) even for huge inputs. */
static int check_references(struct parser *p)
{
    const struct lk_config *c = p->cfg;
    struct name_index *sorted = lk_xcalloc(c->n_services + 1, sizeof(*sorted));
    for (size_t i = 0; i < c->n_services; i++)
        sorted[i] = (struct name_index){ c->services[i].name, i };
    qsort(sorted, c->n_services, sizeof(*sorted), cmp_name_index);
    size_t dup = SIZE_MAX; /* the first service, in file order, that repeats a name */
    for (size_t i = 1; i < c->n_services; i++) {
        if (strcmp(sorted[i].name, sorted[i - 1].name) == 0 && sorted[i].index < dup)
            dup = sorted[i].index;
    }
    int rc = 0;
    if (dup != SIZE_MAX) {
        rc = fail_mark(p, p->name_marks[dup], LK_EPARSE, "duplicate service \"%s\"",
                       c->services[dup].name);
    }
    for (size_t i = 0; rc == 0 && i < p->n_refs; i++) {
        if (bsearch(p->refs[i].name, sorted, c->n_services, sizeof(*sorted), cmp_name_key) == NULL)
            rc =
                fail_mark(p, p->refs[i].mark, LK_EPARSE, "unknown service \"%s\"", p->refs[i].name);
    }
    free(sorted);
    return rc;
}

/* ---- entry points -------------------------------------------------------- */

/* Reader errors carry a byte offset instead of a mark: derive line/column. */
static yaml_mark_t offset_mark(const char *text, size_t len, size_t offset)
{
    yaml_mark_t m = { 0, 0, 0 };
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            m.line++;
            m.column = 0;
        } else {
            m.column++;
        }
    }
    return m;
}

static int yaml_error(struct parser *p, const yaml_parser_t *yp, const char *text, size_t len)
{
    const char *problem = yp->problem ? yp->problem : "cannot parse";
    if (yp->error == YAML_READER_ERROR)
        return fail_mark(p, offset_mark(text, len, yp->problem_offset), LK_EPARSE,
                         "invalid YAML: %s", problem);
    if (yp->context)
        return fail_mark(p, yp->problem_mark, LK_EPARSE, "invalid YAML: %s %s", problem,
                         yp->context);
    return fail_mark(p, yp->problem_mark, LK_EPARSE, "invalid YAML: %s", problem);
}

/* libyaml's scanner does work proportional to the flow nesting depth for every
 * token, so deep nesting costs quadratic time. This event pass stops at
 * LK_CONFIG_MAX_DEPTH before that matters; syntax errors are left to the
 * document load, which reports them identically. */
static int check_depth(struct parser *p, const char *text, size_t len)
{
    yaml_parser_t yp;
    yaml_event_t ev;
    unsigned depth = 0;
    int rc = 0;
    if (!yaml_parser_initialize(&yp))
        LK_BUG("yaml_parser_initialize");
    yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
    while (rc == 0 && yaml_parser_parse(&yp, &ev)) {
        yaml_event_type_t type = ev.type;
        if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
            if (++depth > LK_CONFIG_MAX_DEPTH)
                rc = fail_mark(p, ev.start_mark, LK_ELIMIT, "YAML nested deeper than %u levels",
                               LK_CONFIG_MAX_DEPTH);
        } else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&yp);
    return rc;
}

/* Loads the one document of the stream; a second document is an error. */
static int load_document(struct parser *p, yaml_parser_t *yp, const char *text, size_t len,
                         bool *loaded)
{
    /* On failure libyaml deletes the document itself. */
    if (!yaml_parser_load(yp, p->doc))
        return yaml_error(p, yp, text, len);
    *loaded = true;
    yaml_document_t extra;
    if (!yaml_parser_load(yp, &extra))
        return yaml_error(p, yp, text, len);
    yaml_node_t *root = yaml_document_get_root_node(&extra);
    yaml_mark_t mark = root ? root->start_mark : extra.start_mark;
    yaml_document_delete(&extra);
    if (root != NULL)
        return fail_mark(p, mark, LK_EPARSE, "invalid YAML: more than one document");
    return 0;
}

static int parse_document(struct parser *p)
{
    yaml_node_t *root = yaml_document_get_root_node(p->doc);
    if (root == NULL || is_null(root)) {
        yaml_mark_t start = { 0, 0, 0 };
        return fail_mark(p, root ? root->start_mark : start, LK_EPARSE,
                         "the config is empty: expected the keys \"linkup\", \"services\" and "
                         "\"domains\"");
    }
    int rc = visit(p, root);
    if (rc == 0)
        rc = parse_fields(p, root, root_fields, LK_ARRAY_LEN(root_fields), p->cfg);
    if (rc == 0)
        rc = check_references(p);
    return rc;
}

int lk_config_parse(const char *text, size_t len, const char *path_for_messages,
                    struct lk_config **out, struct lk_diag *diag)
{
    (void)path_for_messages; /* messages are located by line/column only */
    struct lk_config *cfg = lk_xcalloc(1, sizeof(*cfg));
    yaml_document_t doc;
    yaml_parser_t yp;
    struct parser p = { .doc = &doc, .diag = diag, .cfg = cfg };
    bool have_doc = false;
    int rc;

    memset(diag, 0, sizeof(*diag));
    memset(&doc, 0, sizeof(doc));
    if (!yaml_parser_initialize(&yp))
        LK_BUG("yaml_parser_initialize");
    if (len > LK_CONFIG_MAX_BYTES) {
        struct lk_buf msg = LK_BUF_INIT;
        lk_buf_addf(&msg, "the config is larger than %u bytes", LK_CONFIG_MAX_BYTES);
        set_diag(diag, 0, 0, &msg);
        lk_buf_release(&msg);
        rc = LK_ELIMIT;
        goto out;
    }
    rc = check_depth(&p, text, len);
    if (rc != 0)
        goto out;
    yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
    rc = load_document(&p, &yp, text, len, &have_doc);
    if (rc == 0)
        rc = parse_document(&p);
    if (rc == 0) {
        *out = cfg;
        cfg = NULL; /* ownership moved to the caller */
    }
out:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&yp);
    free(p.name_marks);
    free(p.refs);
    lk_config_free(cfg);
    return rc;
}

static void release_service(struct lk_config_service *s)
{
    free(s->name);
    free(s->remote);
    free(s->local);
    lk_url_release(&s->remote_url);
    lk_url_release(&s->local_url);
    free(s->directory);
    for (size_t i = 0; i < s->n_rewrites; i++) {
        lk_regex_free(s->rewrites[i].source);
        free(s->rewrites[i].target);
    }
    free(s->rewrites);
    if (s->health) {
        free(s->health->path);
        free(s->health->statuses);
        free(s->health);
    }
}

static void release_domain(struct lk_config_domain *d)
{
    free(d->domain);
    free(d->default_service);
    for (size_t i = 0; i < d->n_routes; i++) {
        lk_regex_free(d->routes[i].path);
        free(d->routes[i].service);
    }
    free(d->routes);
}

void lk_config_free(struct lk_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->worker_url);
    free(cfg->worker_token);
    for (size_t i = 0; i < cfg->n_cache_routes; i++)
        lk_regex_free(cfg->cache_routes[i]);
    free(cfg->cache_routes);
    for (size_t i = 0; i < cfg->n_services; i++)
        release_service(&cfg->services[i]);
    free(cfg->services);
    for (size_t i = 0; i < cfg->n_domains; i++)
        release_domain(&cfg->domains[i]);
    free(cfg->domains);
    free(cfg);
}

/* ---- messages and accessors ---------------------------------------------- */

void lk_config_add_quoted(struct lk_buf *out, const char *s)
{
    lk_buf_addch(out, '"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"':
            lk_buf_adds(out, "\\\"");
            break;
        case '\\':
            lk_buf_adds(out, "\\\\");
            break;
        case '\n':
            lk_buf_adds(out, "\\n");
            break;
        case '\r':
            lk_buf_adds(out, "\\r");
            break;
        case '\t':
            lk_buf_adds(out, "\\t");
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                lk_buf_addf(out, "\\u{%x}", c);
            else
                lk_buf_addch(out, (char)c);
        }
    }
    lk_buf_addch(out, '"');
}

void lk_config_format_error(const char *path, const struct lk_diag *diag, struct lk_buf *out)
{
    lk_buf_adds(out, "Failed to deserialize config file ");
    lk_config_add_quoted(out, path);
    lk_buf_adds(out, ": ");
    if (diag->line > 0)
        lk_buf_addf(out, "line %d, column %d: ", diag->line, diag->col);
    lk_buf_adds(out, diag->msg);
}

/* True for a UTF-8 continuation byte (10xxxxxx). */
static bool utf8_cont(char c)
{
    return ((unsigned char)c & 0xC0) == 0x80;
}

void lk_config_mask_secret(const char *secret, struct lk_buf *out)
{
    size_t n = secret ? strlen(secret) : 0;
    size_t chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += !utf8_cont(secret[i]);
    if (chars < 8) {
        lk_buf_adds(out, "\xE2\x80\xA6");
        return;
    }
    /* Whole characters, so a multi-byte one is never cut (the result must
     * stay valid UTF-8 for JSON output). */
    size_t head = 0;
    for (int k = 0; k < 3; k++) {
        head++;
        while (head < n && utf8_cont(secret[head]))
            head++;
    }
    size_t tail = n;
    for (int k = 0; k < 2; k++) {
        while (tail > head && utf8_cont(secret[tail - 1]))
            tail--;
        tail--;
    }
    lk_buf_add(out, secret, head);
    lk_buf_adds(out, "\xE2\x80\xA6");
    lk_buf_add(out, secret + tail, n - tail);
}

const struct lk_config_service *lk_config_find_service(const struct lk_config *cfg,
                                                       const char *name)
{
    for (size_t i = 0; i < cfg->n_services; i++) {
        if (strcmp(cfg->services[i].name, name) == 0)
            return &cfg->services[i];
    }
    return NULL;
}

const struct lk_config_domain *lk_config_find_domain(const struct lk_config *cfg,
                                                     const char *domain)
{
    for (size_t i = 0; i < cfg->n_domains; i++) {
        if (strcmp(cfg->domains[i].domain, domain) == 0)
            return &cfg->domains[i];
    }
    return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return m <= n && memcmp(s + n - m, suffix, m) == 0;
}

size_t lk_config_top_level_domains(const struct lk_config *cfg, const struct lk_config_domain **out)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_domains; i++) {
        const char *d = cfg->domains[i].domain;
        bool dropped = false;
        for (size_t j = 0; j < cfg->n_domains && !dropped; j++) {
            const char *other = cfg->domains[j].domain;
            dropped = strcmp(d, other) != 0 && ends_with(d, other);
        }
        if (!dropped)
            out[n++] = &cfg->domains[i];
    }
    return n;
}
