/*
 * route.c - session extraction, target resolution, additional headers and
 * cache keys (SPEC §3.2-§3.7, §4.6 with DESIGN §2.3, §2.4).
 *
 * Invariants: host-level helpers return slices of their input and never
 * allocate; the request URL is parsed once per lk_route_find_target; regexes
 * come compiled inside the session. Everything a caller keeps is either
 * borrowed from its own inputs or owned by the result structs of route.h.
 */
#include "core/route.h"

#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/headers.h"
#include "core/url.h"

/* ---- the request fields routing reads ----------------------------------------- */

/* Each field is looked up as lk_headers_get() does (SPEC §3.1: the last
 * occurrence with a visible value), all in one pass over the request's
 * fields instead of one pass per lookup. */
enum field_id {
    F_FORWARDED_HOST, /* x-forwarded-host */
    F_REFERER,
    F_ORIGIN,
    F_TRACESTATE,
    F_BAGGAGE,
    F_TRACEPARENT,
    F_DESTINATION, /* linkup-destination */
    F_N
};

static const struct lk_str FIELD_NAMES[F_N] = {
    LK_STR("x-forwarded-host"),   LK_STR("referer"), LK_STR("origin"),
    LK_STR("tracestate"),         LK_STR("baggage"), LK_STR("traceparent"),
    LK_STR("linkup-destination"),
};

struct fields {
    struct lk_str v[F_N];
    unsigned found;   /* bit 1 << id: v[id] is set */
    unsigned dropped; /* bit 1 << id: a Connection field lists it (hop-by-hop) */
    unsigned multi;   /* bit 1 << id: more than one field has a visible value */
    const struct lk_header *h;
    size_t n;
};

/* The field name's id by its length (and first byte where two share one),
 * F_N for every other name; lk_str_ieq() confirms. */
static enum field_id field_id(struct lk_str name)
{
    switch (name.len) {
    case 16:
        return F_FORWARDED_HOST;
    case 7:
        return lk_ascii_lower(name.ptr[0]) == 'r' ? F_REFERER : F_BAGGAGE;
    case 6:
        return F_ORIGIN;
    case 10:
        return F_TRACESTATE;
    case 11:
        return F_TRACEPARENT;
    case 18:
        return F_DESTINATION;
    default:
        return F_N;
    }
}

static bool has_field(const struct fields *f, enum field_id id)
{
    return f->found >> id & 1;
}

/* Marks the fields that Connection value v lists: the proxies drop them
 * (SPEC §3.10), so the next hop does not get them. */
static void mark_dropped(struct lk_str v, struct fields *f)
{
    for (unsigned id = 0; id < F_N; id++) {
        if (lk_str_has_token(v, FIELD_NAMES[id]))
            f->dropped |= 1u << id;
    }
}

static void gather_fields(const struct lk_header *h, size_t n, struct fields *f)
{
    f->found = 0;
    f->dropped = 0;
    f->multi = 0;
    f->h = h;
    f->n = n;
    for (size_t i = n; i-- > 0;) {
        if (h[i].name.len == 10 && lk_str_ieq(h[i].name, LK_STR("connection")))
            mark_dropped(h[i].value, f);
        enum field_id id = field_id(h[i].name);
        if (id == F_N || !lk_str_ieq(h[i].name, FIELD_NAMES[id]) ||
            !lk_headers_is_visible(h[i].value))
            continue;
        if (has_field(f, id)) {
            f->multi |= 1u << id;
            continue;
        }
        f->v[id] = h[i].value;
        f->found |= 1u << id;
    }
}

static bool field(const struct fields *f, enum field_id id, struct lk_str *v)
{
    if (!has_field(f, id))
        return false;
    *v = f->v[id];
    return true;
}

/* Every visible value of field id, in order, joined with ',' into out (RFC
 * 9110 §5.3: the combined field value). */
static void join_all(const struct fields *f, enum field_id id, struct lk_buf *out)
{
    for (size_t i = 0; i < f->n; i++) {
        if (!lk_str_ieq(f->h[i].name, FIELD_NAMES[id]) || !lk_headers_is_visible(f->h[i].value))
            continue;
        if (out->len > 0)
            lk_buf_addch(out, ',');
        lk_buf_addstr(out, f->h[i].value);
    }
}

/* The field as the next hop gets it: SPEC §3.7's "only if absent" and
 * "if present" are about the forwarded request, which lacks the fields a
 * Connection field lists. Routing at this hop still reads them. */
static bool forwarded(const struct fields *f, enum field_id id, struct lk_str *v)
{
    return !(f->dropped >> id & 1) && field(f, id, v);
}

/* ---- host helpers ------------------------------------------------------------ */

static bool strip_prefix_ci(struct lk_str *s, struct lk_str prefix)
{
    if (s->len < prefix.len || !lk_str_ieq((struct lk_str){ s->ptr, prefix.len }, prefix))
        return false;
    s->ptr += prefix.len;
    s->len -= prefix.len;
    return true;
}

/* Drops a leading http/https/ws/wss "://" prefix (DESIGN §2.4). */
static struct lk_str strip_scheme(struct lk_str s)
{
    static const struct lk_str schemes[] = { LK_STR("http://"), LK_STR("https://"), LK_STR("ws://"),
                                             LK_STR("wss://") };
    /* Most values are a bare Host ("name.example.com:8080"): no scheme to try. */
    char c0 = s.len > 0 ? lk_ascii_lower(s.ptr[0]) : '\0';
    if (c0 != 'h' && c0 != 'w')
        return s;
    for (size_t i = 0; i < LK_ARRAY_LEN(schemes); i++) {
        if (strip_prefix_ci(&s, schemes[i]))
            break;
    }
    return s;
}

/* Bytes that end a scan of the authority: '/', '?', '#' end it, '@' ends
 * the userinfo (the host starts after the last one). */
static const unsigned char AUTH_STOP[256] = { ['/'] = 1, ['?'] = 1, ['#'] = 1, ['@'] = 2 };

static struct lk_str authority_of(struct lk_str s)
{
    size_t end = 0, from = 0;
    for (; end < s.len; end++) {
        unsigned char stop = AUTH_STOP[(unsigned char)s.ptr[end]];
        if (stop == 1)
            break;
        if (stop == 2)
            from = end + 1;
    }
    return (struct lk_str){ s.ptr + from, end - from };
}

struct lk_str lk_route_host(struct lk_str s, struct lk_str *port)
{
    struct lk_str host = authority_of(strip_scheme(s));
    struct lk_str p = { host.ptr + host.len, 0 };
    size_t colon = host.len;
    if (host.len && host.ptr[0] == '[') {
        /* "[v6]:port": the colons inside the brackets are not the port's. */
        const char *rb = memchr(host.ptr, ']', host.len);
        colon = rb ? (size_t)(rb - host.ptr) + 1 : host.len;
        if (colon < host.len && host.ptr[colon] != ':')
            p = (struct lk_str){ host.ptr + host.len, 0 };
    } else {
        const char *c = host.len ? memchr(host.ptr, ':', host.len) : NULL;
        colon = c != NULL ? (size_t)(c - host.ptr) : host.len;
    }
    if (colon < host.len && host.ptr[colon] == ':')
        p = (struct lk_str){ host.ptr + colon + 1, host.len - colon - 1 };
    host.len = colon;
    if (port != NULL)
        *port = p;
    return host;
}

/* lk_route_first_subdomain of a host already split off by lk_route_host. */
static struct lk_str first_subdomain_of_host(struct lk_str host)
{
    long dot = lk_str_index(host, '.');
    if (dot < 0)
        return LK_STR(LK_ROUTE_NO_SUBDOMAIN);
    struct lk_str rest = { host.ptr + dot + 1, host.len - (size_t)dot - 1 };
    if (lk_str_index(rest, '.') < 0)
        return LK_STR(LK_ROUTE_NO_SUBDOMAIN);
    return (struct lk_str){ host.ptr, (size_t)dot };
}

struct lk_str lk_route_first_subdomain(struct lk_str s)
{
    return first_subdomain_of_host(lk_route_host(s, NULL));
}

/* lk_route_target_domain of a host already split off by lk_route_host. */
static struct lk_str target_domain_of_host(struct lk_str host, struct lk_str session_name)
{
    if (!lk_str_ieq(first_subdomain_of_host(host), session_name))
        return host;
    /* SPEC §3.3 step 2: drop "{name}." when present. */
    if (host.len > session_name.len && host.ptr[session_name.len] == '.' &&
        lk_str_ieq((struct lk_str){ host.ptr, session_name.len }, session_name)) {
        host.ptr += session_name.len + 1;
        host.len -= session_name.len + 1;
    }
    return host;
}

struct lk_str lk_route_target_domain(struct lk_str s, struct lk_str session_name)
{
    return target_domain_of_host(lk_route_host(s, NULL), session_name);
}

const struct lk_domain *lk_route_find_domain(const struct lk_session *s, struct lk_str domain)
{
    for (size_t i = 0; i < s->n_domains; i++) {
        if (lk_str_ieq(lk_str_c(s->domains[i].domain), domain))
            return &s->domains[i];
    }
    return NULL;
}

/* ---- session extraction (SPEC §3.4) ------------------------------------------ */

static bool has_upper(struct lk_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] >= 'A' && s.ptr[i] <= 'Z')
            return true;
    }
    return false;
}

static int lookup_one(struct lk_str name, lk_session_lookup_fn *lookup, void *ctx,
                      struct lk_route_session *out, struct lk_buf *err)
{
    const struct lk_session *found = NULL;
    int rc = lookup(ctx, name, &found, err);
    if (rc == 0) {
        out->name = name;
        out->session = found;
    }
    return rc;
}

/* A host-derived candidate: as written, then lower-cased (DESIGN §2.4: hosts
 * are case-insensitive, and names reached through DNS arrive lower-cased). */
static int try_host_name(struct lk_str name, lk_session_lookup_fn *lookup, void *ctx,
                         struct lk_route_session *out, struct lk_buf *err)
{
    int rc = lookup_one(name, lookup, ctx, out, err);
    if (rc != LK_ENOTFOUND || !has_upper(name) || name.len > LK_ROUTE_MAX_LABEL ||
        lk_str_eq(name, LK_STR(LK_ROUTE_NO_SUBDOMAIN)))
        return rc;
    for (size_t i = 0; i < name.len; i++)
        out->name_buf[i] = lk_ascii_lower(name.ptr[i]);
    out->name_buf[name.len] = '\0';
    return lookup_one((struct lk_str){ out->name_buf, name.len }, lookup, ctx, out, err);
}

/* lk_route_find_session with the URL's host already split off (url_host). */
static int find_session(struct lk_str url_host, const struct fields *f,
                        lk_session_lookup_fn *lookup, void *ctx, struct lk_route_session *out,
                        struct lk_buf *err)
{
    static const enum field_id host_fields[] = { F_FORWARDED_HOST, F_REFERER, F_ORIGIN };
    memset(out, 0, sizeof(*out));
    int rc = try_host_name(first_subdomain_of_host(url_host), lookup, ctx, out, err);
    for (size_t i = 0; rc == LK_ENOTFOUND && i < LK_ARRAY_LEN(host_fields); i++) {
        struct lk_str v;
        if (field(f, host_fields[i], &v))
            rc = try_host_name(lk_route_first_subdomain(v), lookup, ctx, out, err);
    }
    struct lk_str ts;
    if (rc == LK_ENOTFOUND && field(f, F_TRACESTATE, &ts))
        rc = lookup_one(lk_headers_tracestate_session(ts), lookup, ctx, out, err);
    /* DESIGN §7: then W3C baggage, only when it names a session. */
    struct lk_str bg;
    if (rc == LK_ENOTFOUND && field(f, F_BAGGAGE, &bg)) {
        long len = lk_headers_baggage_session(bg, out->name_buf, sizeof(out->name_buf));
        if (len >= 0)
            rc = lookup_one((struct lk_str){ out->name_buf, (size_t)len }, lookup, ctx, out, err);
    }
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int lk_route_find_session(struct lk_str url, const struct lk_header *h, size_t n,
                          lk_session_lookup_fn *lookup, void *ctx, struct lk_route_session *out,
                          struct lk_buf *err)
{
    struct fields f;
    gather_fields(h, n, &f);
    return find_session(lk_route_host(url, NULL), &f, lookup, ctx, out, err);
}

/* ---- target service and URL (SPEC §3.5, §3.6) --------------------------------- */

void lk_route_target_init(struct lk_route_target *t)
{
    t->service = NULL;
    lk_buf_init(&t->url, 0);
}

void lk_route_target_release(struct lk_route_target *t)
{
    lk_buf_release(&t->url);
    t->service = NULL;
}

static struct lk_str field_or_absent(const struct fields *f, enum field_id id)
{
    struct lk_str v;
    return field(f, id, &v) ? v : LK_STR(LK_ROUTE_ABSENT_DOMAIN);
}

/* SPEC §3.5 step 3: the first of url, x-forwarded-host, referer, origin whose
 * target domain is configured. */
static const struct lk_domain *pick_domain(const struct lk_session *s, struct lk_str name,
                                           struct lk_str url_host, const struct fields *f)
{
    static const enum field_id headers[] = { F_FORWARDED_HOST, F_REFERER, F_ORIGIN };
    /* The headers are looked up only when the URL's domain is not configured
     * (most requests stop at the URL). */
    const struct lk_domain *d = lk_route_find_domain(s, target_domain_of_host(url_host, name));
    for (size_t i = 0; d == NULL && i < LK_ARRAY_LEN(headers); i++)
        d = lk_route_find_domain(s, lk_route_target_domain(field_or_absent(f, headers[i]), name));
    return d;
}

/* SPEC §3.5 step 4: the first matching route, else the default service. */
static struct lk_str pick_service_name(const struct lk_domain *d, const char *path)
{
    size_t len = strlen(path);
    for (size_t i = 0; i < d->n_routes; i++) {
        if (lk_regex_search(d->routes[i].path, path, len))
            return lk_str_c(d->routes[i].service);
    }
    return lk_str_c(d->default_service);
}

/* SPEC §3.5 step 6: each rewrite replaces all matches in the previous output.
 * The result is left in *cur (one of the two buffers); returns true when any
 * rewrite changed something. */
static bool apply_rewrites(const struct lk_session_service *svc, struct lk_buf **cur,
                           struct lk_buf **next)
{
    bool changed = false;
    for (size_t i = 0; i < svc->n_rewrites; i++) {
        const struct lk_rewrite *rw = &svc->rewrites[i];
        lk_buf_reset(*next);
        if (lk_regex_replace_all(rw->source, (*cur)->data, (*cur)->len, rw->target,
                                 strlen(rw->target), *next) > 0) {
            struct lk_buf *t = *cur;
            *cur = *next;
            *next = t;
            changed = true;
        }
    }
    return changed;
}

/* A rewritten path is set the way Rust's Url::set_path does it: a missing
 * leading '/' is added and '?' / '#' are percent-encoded so they stay in the
 * path. Dot segments and other encoding are resolved by re-normalising. */
static void sanitize_path(struct lk_str p, struct lk_buf *out)
{
    if (p.len == 0 || p.ptr[0] != '/')
        lk_buf_addch(out, '/');
    for (size_t i = 0; i < p.len; i++) {
        if (p.ptr[i] == '?')
            lk_buf_adds(out, "%3F");
        else if (p.ptr[i] == '#')
            lk_buf_adds(out, "%23");
        else
            lk_buf_addch(out, p.ptr[i]);
    }
}

/* SPEC §3.6: the request URL re-pointed at the service location. A path that
 * did not come straight out of an http(s)/ws(s) URL parse (rewritten, or from
 * another scheme) is sanitised and the whole URL normalised once more. */
static int build_url(const struct lk_url *req, const struct lk_session_service *svc,
                     struct lk_str path, bool rewritten, struct lk_buf *out)
{
    struct lk_url t = *req; /* borrowed fields only: never released */
    t.scheme = svc->location.scheme;
    t.host = svc->location.host;
    t.port = svc->location.port; /* -1 unless explicit and non-default */
    if (!rewritten && lk_url_default_port(req->scheme) >= 0) {
        t.path = req->path;
        lk_url_serialize(&t, out);
        return 0;
    }
    struct lk_buf clean = LK_BUF_INIT, raw = LK_BUF_INIT;
    sanitize_path(path, &clean);
    t.path = clean.data;
    lk_url_serialize(&t, &raw);
    int rc = lk_url_normalize(raw.data, raw.len, out, NULL);
    lk_buf_release(&raw);
    lk_buf_release(&clean);
    return rc;
}

static int resolve(const struct lk_session *s, struct lk_str name, struct lk_str url_host,
                   const struct fields *f, const struct lk_url *u, struct lk_route_target *out)
{
    const struct lk_domain *d = pick_domain(s, name, url_host, f);
    if (d == NULL)
        return LK_ENOTFOUND;
    const struct lk_session_service *svc =
        lk_session_find_service(s, pick_service_name(d, u->path));
    if (svc == NULL)
        return LK_ENOTFOUND;
    struct lk_buf a = LK_BUF_INIT, b = LK_BUF_INIT;
    struct lk_buf *cur = &a, *next = &b;
    bool rewritten = false;
    if (svc->n_rewrites > 0) {
        lk_buf_adds(&a, u->path);
        rewritten = apply_rewrites(svc, &cur, &next);
    }
    int rc =
        build_url(u, svc, rewritten ? lk_buf_str(cur) : lk_str_c(u->path), rewritten, &out->url);
    if (rc == 0)
        out->service = svc;
    lk_buf_release(&b);
    lk_buf_release(&a);
    return rc;
}

/* lk_route_find_target with the URL's host already split off (url_host). */
static int find_target(const struct lk_session *s, struct lk_str session_name, struct lk_str url,
                       struct lk_str url_host, const struct fields *f, struct lk_route_target *out)
{
    struct lk_url u;
    char mem[1024];
    out->service = NULL;
    lk_buf_reset(&out->url);
    bool plain = lk_url_split_plain(url, mem, sizeof(mem), &u);
    if (!plain && lk_url_parse(url.ptr, url.len, &u, NULL) != 0)
        return LK_EPARSE;
    int rc;
    struct lk_str dest;
    const struct lk_session_service *svc = NULL;
    /* SPEC §3.5 step 2: an unknown destination falls through to the routes. */
    if (field(f, F_DESTINATION, &dest))
        svc = lk_session_find_service(s, dest);
    if (svc != NULL) {
        rc = build_url(&u, svc, lk_str_c(u.path), false, &out->url);
        if (rc == 0)
            out->service = svc;
    } else {
        rc = resolve(s, session_name, url_host, f, &u, out);
    }
    if (rc != 0)
        lk_buf_reset(&out->url);
    if (!plain)
        lk_url_release(&u);
    return rc;
}

int lk_route_find_target(const struct lk_session *s, struct lk_str session_name, struct lk_str url,
                         const struct lk_header *h, size_t n, struct lk_route_target *out)
{
    struct fields f;
    gather_fields(h, n, &f);
    return find_target(s, session_name, url, lk_route_host(url, NULL), &f, out);
}

/* ---- additional headers (SPEC §3.7) ------------------------------------------- */

void lk_route_extra_init(struct lk_route_extra *x)
{
    x->n = 0;
    lk_buf_init(&x->mem, 0);
}

void lk_route_extra_release(struct lk_route_extra *x)
{
    lk_buf_release(&x->mem);
    x->n = 0;
}

static char *put_hex(char *out, const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        *out++ = digits[p[i] >> 4];
        *out++ = digits[p[i] & 15];
    }
    return out;
}

/* "00-{32 hex}-{16 hex}-00", formatted on the stack and appended at once
 * (it is built for every request). */
static void add_traceparent(const struct lk_rng *rng, struct lk_buf *b)
{
    unsigned char id[24];
    char text[3 + 32 + 1 + 16 + 3];
    rng->fill(rng->ctx, id, sizeof(id));
    char *p = text;
    memcpy(p, "00-", 3);
    p = put_hex(p + 3, id, 16);
    *p++ = '-';
    p = put_hex(p, id + 16, 8);
    memcpy(p, "-00", 3);
    lk_buf_add(b, text, sizeof(text));
}

/* {name}.{target domain}[:port] (SPEC §3.7, DESIGN §2.4), with the host as
 * the original's URL parser leaves it: lower case, and no port when it is
 * the scheme's default. */
static void add_forwarded_host(struct lk_str url, struct lk_str host, struct lk_str port,
                               struct lk_str name, struct lk_buf *b)
{
    lk_buf_addstr(b, name);
    lk_buf_addch(b, '.');
    lk_buf_addstr_lower(b, target_domain_of_host(host, name));
    uint64_t num = 0;
    if (port.len == 0)
        return;
    if (lk_str_to_u64(port, 65535, &num) != 0) { /* not a number: as it came */
        lk_buf_addch(b, ':');
        lk_buf_addstr(b, port);
        return;
    }
    /* The port as a URL parser leaves it: a number ("080" is 80), none when
     * it is the scheme's default (the scheme compared case-insensitively). */
    struct lk_str scheme = { url.ptr, 0 };
    while (scheme.len < url.len && url.ptr[scheme.len] != ':')
        scheme.len++;
    if ((num == 80 && lk_str_ieq(scheme, LK_STR("http"))) ||
        (num == 443 && lk_str_ieq(scheme, LK_STR("https"))))
        return;
    lk_buf_addch(b, ':');
    lk_buf_add_u64(b, num);
}

/* lk_route_extra_headers with the URL's host and port already split off. */
static void extra_headers(struct lk_str url, struct lk_str url_host, struct lk_str url_port,
                          const struct fields *f, struct lk_str session_name,
                          struct lk_str service_name, const struct lk_rng *rng,
                          struct lk_route_extra *x)
{
    /* Values are appended to one buffer and located by offset, because the
     * buffer may move while it grows; pointers are fixed up at the end. */
    size_t off[LK_ROUTE_MAX_EXTRA];
    struct lk_str ts;
    x->n = 0;
    lk_buf_reset(&x->mem);
    struct lk_str v;
    if (!forwarded(f, F_TRACEPARENT, &v)) {
        LK_ASSERT(rng != NULL);
        off[x->n] = x->mem.len;
        x->items[x->n++].name = LK_STR("traceparent");
        add_traceparent(rng, &x->mem);
    }
    bool has_ts = forwarded(f, F_TRACESTATE, &ts);
    bool add_ts = !has_ts || !lk_headers_tracestate_has(ts, session_name);
    if (add_ts) {
        off[x->n] = x->mem.len;
        x->items[x->n++].name = LK_STR("tracestate");
        if (has_ts) {
            lk_buf_addstr(&x->mem, ts);
            lk_buf_addch(&x->mem, ',');
        }
        lk_buf_adds(&x->mem, LK_TRACESTATE_KEY "=");
        lk_buf_addstr(&x->mem, session_name);
    }
    /* DESIGN §7: baggage is emitted next to tracestate, i.e. whenever
     * tracestate is, so a request that already carries the session (SPEC
     * §8.1.2 (b)) still gets nothing added. W3C Baggage allows several
     * baggage fields, which make one list, so the one sent on keeps every
     * member (tracestate keeps SPEC §3.1's last-wins map). */
    struct lk_str bg;
    struct lk_buf joined = LK_BUF_INIT;
    bool has_bg = forwarded(f, F_BAGGAGE, &bg);
    if (add_ts && has_bg && (f->multi >> F_BAGGAGE & 1)) {
        join_all(f, F_BAGGAGE, &joined);
        bg = lk_buf_str(&joined);
    }
    if (add_ts && (!has_bg || !lk_headers_baggage_has(bg, session_name))) {
        off[x->n] = x->mem.len;
        x->items[x->n++].name = LK_STR("baggage");
        if (has_bg) {
            lk_buf_addstr(&x->mem, bg);
            lk_buf_addch(&x->mem, ',');
        }
        lk_buf_adds(&x->mem, LK_TRACESTATE_KEY "=");
        lk_headers_baggage_add_value(&x->mem, session_name);
    }
    lk_buf_release(&joined);
    if (!forwarded(f, F_DESTINATION, &v)) {
        off[x->n] = x->mem.len;
        x->items[x->n++].name = LK_STR("linkup-destination");
        lk_buf_addstr(&x->mem, service_name);
    }
    if (!forwarded(f, F_FORWARDED_HOST, &v)) {
        off[x->n] = x->mem.len;
        x->items[x->n++].name = LK_STR("x-forwarded-host");
        add_forwarded_host(url, url_host, url_port, session_name, &x->mem);
    }
    for (size_t i = 0; i < x->n; i++) {
        size_t end = i + 1 < x->n ? off[i + 1] : x->mem.len;
        x->items[i].value = (struct lk_str){ x->mem.data + off[i], end - off[i] };
    }
}

void lk_route_extra_headers(struct lk_str url, const struct lk_header *h, size_t n,
                            struct lk_str session_name, struct lk_str service_name,
                            const struct lk_rng *rng, struct lk_route_extra *x)
{
    struct lk_str port;
    struct lk_str host = lk_route_host(url, &port);
    struct fields f;
    gather_fields(h, n, &f);
    extra_headers(url, host, port, &f, session_name, service_name, rng, x);
}

struct lk_str lk_route_extra_invalid(const struct lk_route_extra *x)
{
    for (size_t i = 0; i < x->n; i++)
        if (!lk_headers_value_ok(x->items[i].value))
            return x->items[i].name;
    return LK_STR("");
}

/* ---- caching (SPEC §4.6) ------------------------------------------------------ */

bool lk_route_is_cacheable(struct lk_str method, const struct lk_session *s,
                           struct lk_str upstream_path)
{
    if (!lk_str_eq(method, LK_STR("GET")) || !s->has_cache_routes)
        return false;
    for (size_t i = 0; i < s->n_cache_routes; i++) {
        if (lk_regex_search(s->cache_routes[i], upstream_path.ptr ? upstream_path.ptr : "",
                            upstream_path.len))
            return true;
    }
    return false;
}

/* An IP-address host as the WHATWG parser sees it: "[v6]", or a last label
 * that is a number (decimal or 0x-hex), which makes the host IPv4. */
static bool is_ip_host(const char *host)
{
    if (host[0] == '[')
        return true;
    struct lk_str h = lk_str_c(host);
    if (h.len && h.ptr[h.len - 1] == '.')
        h.len--;
    const char *dot = h.len ? memrchr(h.ptr, '.', h.len) : NULL;
    struct lk_str last = dot ? (struct lk_str){ dot + 1, h.len - (size_t)(dot + 1 - h.ptr) } : h;
    bool hex = last.len >= 2 && last.ptr[0] == '0' && (last.ptr[1] == 'x' || last.ptr[1] == 'X');
    size_t i = hex ? 2 : 0;
    if (last.len == 0)
        return false;
    for (; i < last.len; i++) {
        char c = lk_ascii_lower(last.ptr[i]);
        if (!((c >= '0' && c <= '9') || (hex && c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

int lk_route_cache_key(struct lk_str upstream_url, struct lk_str session_name, struct lk_buf *out)
{
    struct lk_url u;
    if (lk_url_parse(upstream_url.ptr, upstream_url.len, &u, NULL) != 0)
        return LK_EPARSE;
    struct lk_buf host = LK_BUF_INIT;
    lk_buf_addstr(&host, session_name);
    lk_buf_addch(&host, '.');
    lk_buf_adds(&host, is_ip_host(u.host) ? "example.com" : u.host);
    struct lk_url t = u; /* borrowed fields only */
    t.host = host.data;
    lk_url_serialize(&t, out);
    lk_buf_release(&host);
    lk_url_release(&u);
    return 0;
}

/* ---- all in one --------------------------------------------------------------- */

void lk_route_result_init(struct lk_route_result *r)
{
    memset(&r->found, 0, sizeof(r->found));
    lk_route_target_init(&r->target);
    lk_route_extra_init(&r->extra);
    r->replace_cookie = false;
    lk_buf_init(&r->cookie, 0);
    lk_buf_init(&r->routed_to, 0);
}

void lk_route_result_release(struct lk_route_result *r)
{
    lk_route_target_release(&r->target);
    lk_route_extra_release(&r->extra);
    lk_buf_release(&r->cookie);
    lk_buf_release(&r->routed_to);
    r->replace_cookie = false;
    memset(&r->found, 0, sizeof(r->found));
}

struct lk_str lk_route_routed_to(struct lk_route_result *r, const char *via)
{
    LK_ASSERT(r->target.service != NULL);
    lk_buf_reset(&r->routed_to);
    lk_headers_baggage_add_value(&r->routed_to, lk_str_c(r->target.service->name));
    lk_buf_adds(&r->routed_to, "; session=");
    lk_headers_baggage_add_value(&r->routed_to, r->found.name);
    lk_buf_adds(&r->routed_to, "; via=");
    lk_buf_adds(&r->routed_to, via);
    return lk_buf_str(&r->routed_to);
}

void lk_route_slot_init(struct lk_route_slot *s)
{
    lk_route_result_init(&s->r);
    s->busy = false;
}

void lk_route_slot_release(struct lk_route_slot *s)
{
    lk_route_result_release(&s->r);
}

struct lk_route_result *lk_route_slot_take(struct lk_route_slot *s, struct lk_route_result *local)
{
    if (s->busy) {
        lk_route_result_init(local);
        return local;
    }
    s->busy = true;
    return &s->r;
}

void lk_route_slot_give(struct lk_route_slot *s, struct lk_route_result *r)
{
    if (r == &s->r)
        s->busy = false;
    else
        lk_route_result_release(r);
}

int lk_route_request(struct lk_str url, const struct lk_header *h, size_t n,
                     lk_session_lookup_fn *lookup, void *ctx, const struct lk_rng *rng,
                     struct lk_route_result *r, struct lk_buf *err)
{
    struct lk_str port; /* the URL's host, split off once for all three steps */
    struct lk_str host = lk_route_host(url, &port);
    struct fields f; /* and the fields routing reads, found once */
    gather_fields(h, n, &f);
    int rc = find_session(host, &f, lookup, ctx, &r->found, err);
    if (rc != 0)
        return rc;
    rc = find_target(r->found.session, r->found.name, url, host, &f, &r->target);
    if (rc != 0)
        return rc;
    extra_headers(url, host, port, &f, r->found.name, lk_str_c(r->target.service->name), rng,
                  &r->extra);
    lk_buf_reset(&r->cookie);
    r->replace_cookie = lk_headers_cookie_normalize(h, n, &r->cookie);
    return 0;
}

static bool is_replaced(const struct lk_route_result *r, struct lk_str name)
{
    if (lk_str_ieq(name, LK_STR("host")))
        return true;
    if (r->replace_cookie && lk_str_ieq(name, LK_STR("cookie")))
        return true;
    for (size_t i = 0; i < r->extra.n; i++) {
        if (lk_str_ieq(name, r->extra.items[i].name))
            return true;
    }
    return false;
}

size_t lk_route_outgoing_headers(const struct lk_header *in, size_t n_in,
                                 const struct lk_route_result *r, struct lk_header *out)
{
    size_t n = 0;
    for (size_t i = 0; i < n_in; i++) {
        if (!is_replaced(r, in[i].name))
            out[n++] = in[i];
    }
    for (size_t i = 0; i < r->extra.n; i++)
        out[n++] = r->extra.items[i];
    if (r->replace_cookie)
        out[n++] = (struct lk_header){ LK_STR("Cookie"), lk_buf_str(&r->cookie) };
    return n;
}
