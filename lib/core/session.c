/*
 * session.c - the session model: building, JSON in (jansson) and out (our own
 * writer, because the escaping must be serde_json's byte for byte), §2.2
 * validation, canonical form and hash.
 *
 * Invariants: a built session owns every string and compiled regex it points
 * to; has_* == false implies the matching array is empty.
 */
#include "core/session.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/sha256.h"

/* ---- kinds ---------------------------------------------------------------- */

const char *lk_session_kind_name(enum lk_session_kind kind)
{
    return kind == LK_SESSION_PREVIEW ? "preview" : "tunneled";
}

int lk_session_kind_parse(struct lk_str s, enum lk_session_kind *out)
{
    if (lk_str_eq(s, LK_STR("tunneled"))) {
        *out = LK_SESSION_TUNNELED;
        return 0;
    }
    if (lk_str_eq(s, LK_STR("preview"))) {
        *out = LK_SESSION_PREVIEW;
        return 0;
    }
    return LK_EPARSE;
}

/* ---- lifecycle and building ------------------------------------------------ */

struct lk_session *lk_session_new(enum lk_session_kind kind, const char *token)
{
    struct lk_session *s = lk_xcalloc(1, sizeof(*s));
    s->kind = kind;
    s->session_token = token ? lk_xstrdup(token) : NULL;
    s->refs = 1;
    return s;
}

void lk_session_set_token(struct lk_session *s, const char *token)
{
    free(s->session_token);
    s->session_token = token ? lk_xstrdup(token) : NULL;
}

static void append_error(struct lk_buf *err, const char *prefix, const char *msg)
{
    if (err == NULL)
        return;
    lk_buf_adds(err, prefix);
    lk_buf_adds(err, msg);
}

/* Compiles a regex, turning a failure into a session format error. */
static int compile(const char *src, struct lk_regex **out, struct lk_buf *err)
{
    struct lk_buf why = LK_BUF_INIT;
    int rc = lk_regex_compile(src, strlen(src), out, &why);
    if (rc != 0) {
        rc = LK_EPARSE;
        if (err) {
            lk_buf_addf(err, "%sinvalid regex \"%s\": %s", LK_SESSION_FORMAT_ERROR, src,
                        why.data ? why.data : "");
        }
    }
    lk_buf_release(&why);
    return rc;
}

int lk_session_add_service(struct lk_session *s, const char *name, const char *location,
                           size_t loc_len, struct lk_buf *err)
{
    struct lk_url url;
    const char *why = "invalid URL";
    if (lk_url_parse(location, loc_len, &url, &why) != 0) {
        if (err) {
            lk_buf_addf(err, "%sinvalid url \"%.*s\": %s", LK_SESSION_FORMAT_ERROR, (int)loc_len,
                        location, why);
        }
        return LK_EPARSE;
    }
    LK_GROW(s->services, s->cap_services, s->n_services + 1);
    struct lk_session_service *svc = &s->services[s->n_services++];
    struct lk_buf str = LK_BUF_INIT;
    memset(svc, 0, sizeof(*svc));
    svc->name = lk_xstrdup(name);
    svc->location = url;
    lk_url_serialize(&url, &str);
    svc->location_str = lk_buf_detach(&str, NULL);
    return 0;
}

int lk_session_add_rewrite(struct lk_session *s, size_t idx, const char *source, const char *target,
                           struct lk_buf *err)
{
    LK_ASSERT(idx < s->n_services);
    struct lk_session_service *svc = &s->services[idx];
    struct lk_regex *re = NULL;
    int rc = compile(source, &re, err);
    if (rc != 0)
        return rc;
    svc->rewrites = lk_xrealloc(svc->rewrites, (svc->n_rewrites + 1) * sizeof(*svc->rewrites));
    svc->rewrites[svc->n_rewrites].source = re;
    svc->rewrites[svc->n_rewrites].target = lk_xstrdup(target);
    svc->n_rewrites++;
    svc->has_rewrites = true;
    return 0;
}

void lk_session_add_domain(struct lk_session *s, const char *domain, const char *default_service)
{
    LK_GROW(s->domains, s->cap_domains, s->n_domains + 1);
    struct lk_domain *d = &s->domains[s->n_domains++];
    memset(d, 0, sizeof(*d));
    d->domain = lk_xstrdup(domain);
    d->default_service = lk_xstrdup(default_service);
}

int lk_session_add_route(struct lk_session *s, size_t idx, const char *path, const char *service,
                         struct lk_buf *err)
{
    LK_ASSERT(idx < s->n_domains);
    struct lk_domain *d = &s->domains[idx];
    struct lk_regex *re = NULL;
    int rc = compile(path, &re, err);
    if (rc != 0)
        return rc;
    d->routes = lk_xrealloc(d->routes, (d->n_routes + 1) * sizeof(*d->routes));
    d->routes[d->n_routes].path = re;
    d->routes[d->n_routes].service = lk_xstrdup(service);
    d->n_routes++;
    d->has_routes = true;
    return 0;
}

int lk_session_add_cache_route(struct lk_session *s, const char *source, struct lk_buf *err)
{
    struct lk_regex *re = NULL;
    int rc = compile(source, &re, err);
    if (rc != 0)
        return rc;
    LK_GROW(s->cache_routes, s->cap_cache_routes, s->n_cache_routes + 1);
    s->cache_routes[s->n_cache_routes++] = re;
    s->has_cache_routes = true;
    return 0;
}

/* Recompiling a source that compiled once cannot fail. */
static struct lk_regex *regex_clone(const struct lk_regex *re)
{
    struct lk_regex *copy = NULL;
    const char *src = lk_regex_source(re);
    if (lk_regex_compile(src, strlen(src), &copy, NULL) != 0)
        LK_BUG("a compiled regex failed to recompile");
    return copy;
}

static void clone_service(struct lk_session_service *dst, const struct lk_session_service *src)
{
    dst->name = lk_xstrdup(src->name);
    lk_url_copy(&dst->location, &src->location);
    dst->location_str = lk_xstrdup(src->location_str);
    dst->has_rewrites = src->has_rewrites;
    dst->n_rewrites = src->n_rewrites;
    dst->rewrites = lk_xcalloc(src->n_rewrites + 1, sizeof(*dst->rewrites));
    for (size_t i = 0; i < src->n_rewrites; i++) {
        dst->rewrites[i].source = regex_clone(src->rewrites[i].source);
        dst->rewrites[i].target = lk_xstrdup(src->rewrites[i].target);
    }
}

static void clone_domain(struct lk_domain *dst, const struct lk_domain *src)
{
    dst->domain = lk_xstrdup(src->domain);
    dst->default_service = lk_xstrdup(src->default_service);
    dst->has_routes = src->has_routes;
    dst->n_routes = src->n_routes;
    dst->routes = lk_xcalloc(src->n_routes + 1, sizeof(*dst->routes));
    for (size_t i = 0; i < src->n_routes; i++) {
        dst->routes[i].path = regex_clone(src->routes[i].path);
        dst->routes[i].service = lk_xstrdup(src->routes[i].service);
    }
}

struct lk_session *lk_session_clone(const struct lk_session *s)
{
    struct lk_session *c = lk_session_new(s->kind, s->session_token);
    c->services = lk_xcalloc(s->n_services + 1, sizeof(*c->services));
    c->cap_services = s->n_services + 1;
    c->n_services = s->n_services;
    for (size_t i = 0; i < s->n_services; i++)
        clone_service(&c->services[i], &s->services[i]);
    c->domains = lk_xcalloc(s->n_domains + 1, sizeof(*c->domains));
    c->cap_domains = s->n_domains + 1;
    c->n_domains = s->n_domains;
    for (size_t i = 0; i < s->n_domains; i++)
        clone_domain(&c->domains[i], &s->domains[i]);
    c->has_cache_routes = s->has_cache_routes;
    c->cache_routes = lk_xcalloc(s->n_cache_routes + 1, sizeof(*c->cache_routes));
    c->cap_cache_routes = s->n_cache_routes + 1;
    c->n_cache_routes = s->n_cache_routes;
    for (size_t i = 0; i < s->n_cache_routes; i++)
        c->cache_routes[i] = regex_clone(s->cache_routes[i]);
    return c;
}

struct lk_session *lk_session_ref(struct lk_session *s)
{
    if (s->refs == 0)
        s->refs = 1;
    s->refs++;
    return s;
}

static void release_service(struct lk_session_service *svc)
{
    free(svc->name);
    lk_url_release(&svc->location);
    free(svc->location_str);
    for (size_t i = 0; i < svc->n_rewrites; i++) {
        lk_regex_free(svc->rewrites[i].source);
        free(svc->rewrites[i].target);
    }
    free(svc->rewrites);
}

static void release_domain(struct lk_domain *d)
{
    free(d->domain);
    free(d->default_service);
    for (size_t i = 0; i < d->n_routes; i++) {
        lk_regex_free(d->routes[i].path);
        free(d->routes[i].service);
    }
    free(d->routes);
}

void lk_session_free(struct lk_session *s)
{
    if (s == NULL)
        return;
    if (s->refs > 1) {
        s->refs--;
        return;
    }
    for (size_t i = 0; i < s->n_services; i++)
        release_service(&s->services[i]);
    free(s->services);
    for (size_t i = 0; i < s->n_domains; i++)
        release_domain(&s->domains[i]);
    free(s->domains);
    for (size_t i = 0; i < s->n_cache_routes; i++)
        lk_regex_free(s->cache_routes[i]);
    free(s->cache_routes);
    free(s->session_token);
    free(s);
}

/* ---- lookups and validation ------------------------------------------------ */

const struct lk_session_service *lk_session_find_service(const struct lk_session *s,
                                                         struct lk_str name)
{
    for (size_t i = 0; i < s->n_services; i++) {
        if (lk_str_eq(lk_str_c(s->services[i].name), name))
            return &s->services[i];
    }
    return NULL;
}

const struct lk_domain *lk_session_find_domain(const struct lk_session *s, struct lk_str domain)
{
    for (size_t i = 0; i < s->n_domains; i++) {
        if (lk_str_eq(lk_str_c(s->domains[i].domain), domain))
            return &s->domains[i];
    }
    return NULL;
}

static int no_such_service(const struct lk_session *s, const char *name, struct lk_buf *err)
{
    if (lk_session_find_service(s, lk_str_c(name)) != NULL)
        return 0;
    append_error(err, "no such service: ", name);
    return LK_EINVAL;
}

int lk_session_validate(const struct lk_session *s, struct lk_buf *err)
{
    if (s->n_services == 0 || s->n_domains == 0) {
        append_error(err, "", "empty config");
        return LK_EINVAL;
    }
    for (size_t i = 0; i < s->n_services; i++) {
        if (!lk_url_is_http(&s->services[i].location)) {
            append_error(err, "invalid url: ", s->services[i].location_str);
            return LK_EINVAL;
        }
    }
    for (size_t i = 0; i < s->n_domains; i++) {
        const struct lk_domain *d = &s->domains[i];
        if (no_such_service(s, d->default_service, err) != 0)
            return LK_EINVAL;
        for (size_t j = 0; j < d->n_routes; j++) {
            if (no_such_service(s, d->routes[j].service, err) != 0)
                return LK_EINVAL;
        }
    }
    return 0;
}

/* ---- JSON out -------------------------------------------------------------- */

void lk_json_add_string(struct lk_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    lk_buf_addch(out, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            break;
        }
        if (esc != NULL) {
            lk_buf_adds(out, esc);
        } else if (c < 0x20) {
            char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            lk_buf_add(out, u, sizeof(u));
        } else {
            lk_buf_addch(out, (char)c);
        }
    }
    lk_buf_addch(out, '"');
}

static void add_cstr(struct lk_buf *out, const char *s)
{
    if (s == NULL)
        lk_buf_adds(out, "null");
    else
        lk_json_add_string(out, s, strlen(s));
}

static void add_regex(struct lk_buf *out, const struct lk_regex *re)
{
    add_cstr(out, lk_regex_source(re));
}

static void add_service(struct lk_buf *out, const struct lk_session_service *svc)
{
    lk_buf_adds(out, "{\"name\":");
    add_cstr(out, svc->name);
    lk_buf_adds(out, ",\"location\":");
    add_cstr(out, svc->location_str);
    lk_buf_adds(out, ",\"rewrites\":");
    if (!svc->has_rewrites) {
        lk_buf_adds(out, "null}");
        return;
    }
    lk_buf_addch(out, '[');
    for (size_t i = 0; i < svc->n_rewrites; i++) {
        lk_buf_adds(out, i ? ",{\"source\":" : "{\"source\":");
        add_regex(out, svc->rewrites[i].source);
        lk_buf_adds(out, ",\"target\":");
        add_cstr(out, svc->rewrites[i].target);
        lk_buf_addch(out, '}');
    }
    lk_buf_adds(out, "]}");
}

static void add_domain(struct lk_buf *out, const struct lk_domain *d)
{
    lk_buf_adds(out, "{\"domain\":");
    add_cstr(out, d->domain);
    lk_buf_adds(out, ",\"default_service\":");
    add_cstr(out, d->default_service);
    lk_buf_adds(out, ",\"routes\":");
    if (!d->has_routes) {
        lk_buf_adds(out, "null}");
        return;
    }
    lk_buf_addch(out, '[');
    for (size_t i = 0; i < d->n_routes; i++) {
        lk_buf_adds(out, i ? ",{\"path\":" : "{\"path\":");
        add_regex(out, d->routes[i].path);
        lk_buf_adds(out, ",\"service\":");
        add_cstr(out, d->routes[i].service);
        lk_buf_addch(out, '}');
    }
    lk_buf_adds(out, "]}");
}

/* The three lists of a session, possibly reordered (canonical form). */
struct order {
    const struct lk_session_service **services;
    const struct lk_domain **domains;
    const struct lk_regex **cache;
};

static void order_init(struct order *o, const struct lk_session *s)
{
    o->services = lk_xcalloc(s->n_services + 1, sizeof(*o->services));
    o->domains = lk_xcalloc(s->n_domains + 1, sizeof(*o->domains));
    o->cache = lk_xcalloc(s->n_cache_routes + 1, sizeof(*o->cache));
    for (size_t i = 0; i < s->n_services; i++)
        o->services[i] = &s->services[i];
    for (size_t i = 0; i < s->n_domains; i++)
        o->domains[i] = &s->domains[i];
    for (size_t i = 0; i < s->n_cache_routes; i++)
        o->cache[i] = s->cache_routes[i];
}

static void order_release(struct order *o)
{
    free(o->services);
    free(o->domains);
    free(o->cache);
}

/* Appends "services":[..],"domains":[..],"cache_routes":.. (no braces). */
static void add_lists(struct lk_buf *out, const struct lk_session *s, const struct order *o)
{
    lk_buf_adds(out, "\"services\":[");
    for (size_t i = 0; i < s->n_services; i++) {
        if (i)
            lk_buf_addch(out, ',');
        add_service(out, o->services[i]);
    }
    lk_buf_adds(out, "],\"domains\":[");
    for (size_t i = 0; i < s->n_domains; i++) {
        if (i)
            lk_buf_addch(out, ',');
        add_domain(out, o->domains[i]);
    }
    lk_buf_adds(out, "],\"cache_routes\":");
    if (!s->has_cache_routes) {
        lk_buf_adds(out, "null");
        return;
    }
    lk_buf_addch(out, '[');
    for (size_t i = 0; i < s->n_cache_routes; i++) {
        if (i)
            lk_buf_addch(out, ',');
        add_regex(out, o->cache[i]);
    }
    lk_buf_addch(out, ']');
}

static void emit(struct lk_buf *out, const struct lk_session *s, const struct order *o)
{
    lk_buf_adds(out, "{\"kind\":");
    add_cstr(out, lk_session_kind_name(s->kind));
    lk_buf_adds(out, ",\"session_token\":");
    add_cstr(out, s->session_token);
    lk_buf_addch(out, ',');
    add_lists(out, s, o);
    lk_buf_addch(out, '}');
}

void lk_session_to_json(const struct lk_session *s, struct lk_buf *out)
{
    struct order o;
    order_init(&o, s);
    emit(out, s, &o);
    order_release(&o);
}

void lk_session_lists_to_json(const struct lk_session *s, struct lk_buf *out)
{
    struct order o;
    order_init(&o, s);
    add_lists(out, s, &o);
    order_release(&o);
}

/* ---- canonical form and hash ------------------------------------------------ */

/* Comparators break ties on the element address, which follows the original
 * order, so qsort becomes a stable sort (SPEC §2.6 asks for stability). */
static int cmp_addr(const void *a, const void *b)
{
    return a < b ? -1 : a > b;
}

static int cmp_service(const void *a, const void *b)
{
    const struct lk_session_service *x = *(const struct lk_session_service *const *)a;
    const struct lk_session_service *y = *(const struct lk_session_service *const *)b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : cmp_addr(x, y);
}

static int cmp_domain(const void *a, const void *b)
{
    const struct lk_domain *x = *(const struct lk_domain *const *)a;
    const struct lk_domain *y = *(const struct lk_domain *const *)b;
    int c = strcmp(x->domain, y->domain);
    return c != 0 ? c : cmp_addr(x, y);
}

/* Cache routes with equal source text serialise identically, so their
 * relative order cannot show and needs no tie-break. */
static int cmp_cache(const void *a, const void *b)
{
    const struct lk_regex *x = *(const struct lk_regex *const *)a;
    const struct lk_regex *y = *(const struct lk_regex *const *)b;
    return strcmp(lk_regex_source(x), lk_regex_source(y));
}

void lk_session_canonical_json(const struct lk_session *s, struct lk_buf *out)
{
    struct order o;
    order_init(&o, s);
    qsort(o.services, s->n_services, sizeof(*o.services), cmp_service);
    qsort(o.domains, s->n_domains, sizeof(*o.domains), cmp_domain);
    qsort(o.cache, s->n_cache_routes, sizeof(*o.cache), cmp_cache);
    emit(out, s, &o);
    order_release(&o);
}

void lk_session_hash(const struct lk_session *s, char hex[65])
{
    struct lk_buf json = LK_BUF_INIT;
    lk_session_canonical_json(s, &json);
    lk_sha256_hex(json.data, json.len, hex);
    lk_buf_release(&json);
}

/* ---- JSON in ----------------------------------------------------------------- */

/* Appends a format-error detail (without the prefix) to why. */
static int bad(struct lk_buf *why, const char *what, const char *field)
{
    if (why)
        lk_buf_addf(why, "%s `%s`", what, field);
    return LK_EPARSE;
}

/* Fetches a required string member. */
static int get_string(const json_t *obj, const char *key, const char **out, struct lk_buf *why)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return bad(why, "missing field", key);
    if (!json_is_string(v))
        return bad(why, "invalid type, expected a string for field", key);
    *out = json_string_value(v);
    return 0;
}

/* A list member that may be null or absent (*arr = NULL then) or an array. */
static int get_opt_array(const json_t *obj, const char *key, const json_t **arr, struct lk_buf *why)
{
    const json_t *v = json_object_get(obj, key);
    *arr = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return bad(why, "invalid type, expected an array or null for field", key);
    *arr = v;
    return 0;
}

/* Errors of the adders already carry the prefix; they go to why without it
 * so the caller adds it once. */
static int forward(int rc, struct lk_buf *tmp, struct lk_buf *why)
{
    if (rc != 0 && why) {
        size_t skip = strlen(LK_SESSION_FORMAT_ERROR);
        const char *msg = tmp->len >= skip ? tmp->data + skip : "";
        lk_buf_adds(why, msg);
    }
    lk_buf_release(tmp);
    return rc;
}

static int parse_rewrites(const json_t *arr, struct lk_session *s, size_t idx, struct lk_buf *why)
{
    size_t i;
    const json_t *item;
    s->services[idx].has_rewrites = true;
    json_array_foreach(arr, i, item)
    {
        const char *source = NULL;
        const char *target = NULL;
        struct lk_buf tmp = LK_BUF_INIT;
        if (!json_is_object(item))
            return bad(why, "invalid type, expected an object in", "rewrites");
        if (get_string(item, "source", &source, why) != 0 ||
            get_string(item, "target", &target, why) != 0)
            return LK_EPARSE;
        if (forward(lk_session_add_rewrite(s, idx, source, target, &tmp), &tmp, why) != 0)
            return LK_EPARSE;
    }
    return 0;
}

static int parse_service(const json_t *item, struct lk_session *s, struct lk_buf *why)
{
    const char *name = NULL;
    const char *location = NULL;
    const json_t *rewrites = NULL;
    struct lk_buf tmp = LK_BUF_INIT;
    if (!json_is_object(item))
        return bad(why, "invalid type, expected an object in", "services");
    if (get_string(item, "name", &name, why) != 0 ||
        get_string(item, "location", &location, why) != 0 ||
        get_opt_array(item, "rewrites", &rewrites, why) != 0)
        return LK_EPARSE;
    size_t loc_len = json_string_length(json_object_get(item, "location"));
    if (forward(lk_session_add_service(s, name, location, loc_len, &tmp), &tmp, why) != 0)
        return LK_EPARSE;
    if (rewrites == NULL)
        return 0;
    return parse_rewrites(rewrites, s, s->n_services - 1, why);
}

static int parse_routes(const json_t *arr, struct lk_session *s, size_t idx, struct lk_buf *why)
{
    size_t i;
    const json_t *item;
    s->domains[idx].has_routes = true;
    json_array_foreach(arr, i, item)
    {
        const char *path = NULL;
        const char *service = NULL;
        struct lk_buf tmp = LK_BUF_INIT;
        if (!json_is_object(item))
            return bad(why, "invalid type, expected an object in", "routes");
        if (get_string(item, "path", &path, why) != 0 ||
            get_string(item, "service", &service, why) != 0)
            return LK_EPARSE;
        if (forward(lk_session_add_route(s, idx, path, service, &tmp), &tmp, why) != 0)
            return LK_EPARSE;
    }
    return 0;
}

static int parse_domain(const json_t *item, struct lk_session *s, struct lk_buf *why)
{
    const char *domain = NULL;
    const char *default_service = NULL;
    const json_t *routes = NULL;
    if (!json_is_object(item))
        return bad(why, "invalid type, expected an object in", "domains");
    if (get_string(item, "domain", &domain, why) != 0 ||
        get_string(item, "default_service", &default_service, why) != 0 ||
        get_opt_array(item, "routes", &routes, why) != 0)
        return LK_EPARSE;
    lk_session_add_domain(s, domain, default_service);
    if (routes == NULL)
        return 0;
    return parse_routes(routes, s, s->n_domains - 1, why);
}

static int parse_cache_routes(const json_t *arr, struct lk_session *s, struct lk_buf *why)
{
    size_t i;
    const json_t *item;
    s->has_cache_routes = true;
    json_array_foreach(arr, i, item)
    {
        struct lk_buf tmp = LK_BUF_INIT;
        if (!json_is_string(item))
            return bad(why, "invalid type, expected a string in", "cache_routes");
        if (forward(lk_session_add_cache_route(s, json_string_value(item), &tmp), &tmp, why) != 0)
            return LK_EPARSE;
    }
    return 0;
}

/* Fetches a required array member. */
static int get_array(const json_t *obj, const char *key, const json_t **arr, struct lk_buf *why)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return bad(why, "missing field", key);
    if (!json_is_array(v))
        return bad(why, "invalid type, expected an array for field", key);
    *arr = v;
    return 0;
}

int lk_session_parse_lists(const struct json_t *obj, struct lk_session *s, struct lk_buf *why)
{
    const json_t *services = NULL;
    const json_t *domains = NULL;
    const json_t *cache = NULL;
    const json_t *item;
    size_t i;
    if (get_array(obj, "services", &services, why) != 0 ||
        get_array(obj, "domains", &domains, why) != 0 ||
        get_opt_array(obj, "cache_routes", &cache, why) != 0)
        return LK_EPARSE;
    json_array_foreach(services, i, item)
    {
        if (parse_service(item, s, why) != 0)
            return LK_EPARSE;
    }
    json_array_foreach(domains, i, item)
    {
        if (parse_domain(item, s, why) != 0)
            return LK_EPARSE;
    }
    return cache ? parse_cache_routes(cache, s, why) : 0;
}

/* Parses the members of a Session object into s (kind and token first). */
static int parse_session(const json_t *root, struct lk_session *s, struct lk_buf *why)
{
    const json_t *kind = json_object_get(root, "kind");
    const char *token = NULL;
    if (!json_is_object(root)) {
        lk_buf_adds(why, "invalid type, expected a session object");
        return LK_EPARSE;
    }
    if (kind != NULL) {
        struct lk_str k = { json_string_value(kind), json_string_length(kind) };
        if (!json_is_string(kind) || lk_session_kind_parse(k, &s->kind) != 0) {
            lk_buf_adds(why, "unknown variant for field `kind`, expected `tunneled` or `preview`");
            return LK_EPARSE;
        }
    }
    if (get_string(root, "session_token", &token, why) != 0)
        return LK_EPARSE;
    lk_session_set_token(s, token);
    return lk_session_parse_lists(root, s, why);
}

int lk_json_load(const char *json, size_t len, struct json_t **out, struct lk_buf *why)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        lk_buf_addf(why, "%s at line %d column %d", jerr.text, jerr.line, jerr.column);
        return LK_EPARSE;
    }
    *out = root;
    return 0;
}

int lk_session_from_json(const char *json, size_t len, struct lk_session **out, struct lk_buf *err)
{
    struct lk_buf why = LK_BUF_INIT;
    struct lk_session *s = lk_session_new(LK_SESSION_TUNNELED, NULL);
    json_t *root = NULL;
    int rc = lk_json_load(json, len, &root, &why);
    if (rc == 0)
        rc = parse_session(root, s, &why);
    if (rc != 0) {
        append_error(err, LK_SESSION_FORMAT_ERROR, why.data);
        goto out;
    }
    rc = lk_session_validate(s, err);
    if (rc != 0)
        goto out;
    *out = s;
    s = NULL; /* ownership moved to the caller */
out:
    json_decref(root);
    lk_session_free(s);
    lk_buf_release(&why);
    return rc;
}
