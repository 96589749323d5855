/*
 * upsert.c - UpsertSessionRequest (SPEC §2.3): the Named shape is tried
 * first, then the Unnamed one, as serde's untagged enum does.
 *
 * Invariant: a parsed request owns a body session whose lists were parsed but
 * not validated; validation happens when an endpoint converts it.
 */
#include "core/upsert.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

#define SHAPE_ERROR "Failed to deserialize the JSON body into the target type: "
#define JSON_ERROR  "Failed to parse the request body as JSON: "

const char *lk_name_kind_name(enum lk_name_kind kind)
{
    return kind == LK_NAME_ANIMAL ? "animal" : "six_char";
}

/* Named: desired_name and session_token strings, then the lists. */
static int try_named(const json_t *root, struct lk_upsert *req, struct lk_buf *why)
{
    const json_t *desired = json_object_get(root, "desired_name");
    const json_t *token = json_object_get(root, "session_token");
    if (!json_is_string(desired) || !json_is_string(token)) {
        lk_buf_adds(why, "`desired_name` and `session_token` must be strings");
        return LK_EINVAL;
    }
    struct lk_session *body = lk_session_new(LK_SESSION_TUNNELED, json_string_value(token));
    if (lk_session_parse_lists(root, body, why) != 0) {
        lk_session_free(body);
        return LK_EINVAL;
    }
    req->named = true;
    req->desired_name = lk_xstrdup(json_string_value(desired));
    req->name_kind = LK_NAME_SIX_CHAR;
    req->body = body;
    return 0;
}

static int parse_name_kind(const json_t *v, enum lk_name_kind *out, struct lk_buf *why)
{
    *out = LK_NAME_SIX_CHAR;
    if (v == NULL)
        return 0;
    if (json_is_string(v) && strcmp(json_string_value(v), "animal") == 0)
        *out = LK_NAME_ANIMAL;
    else if (!json_is_string(v) || strcmp(json_string_value(v), "six_char") != 0) {
        lk_buf_adds(why, "unknown variant for field `name_kind`, expected `animal` "
                         "or `six_char`");
        return LK_EINVAL;
    }
    return 0;
}

/* Unnamed: optional name_kind, session_token string/null/absent, the lists. */
static int try_unnamed(const json_t *root, struct lk_upsert *req, struct lk_buf *why)
{
    const json_t *token = json_object_get(root, "session_token");
    enum lk_name_kind kind;
    if (parse_name_kind(json_object_get(root, "name_kind"), &kind, why) != 0)
        return LK_EINVAL;
    if (token != NULL && !json_is_null(token) && !json_is_string(token)) {
        lk_buf_adds(why, "invalid type, expected a string or null for field `session_token`");
        return LK_EINVAL;
    }
    struct lk_session *body = lk_session_new(LK_SESSION_TUNNELED, json_string_value(token));
    if (lk_session_parse_lists(root, body, why) != 0) {
        lk_session_free(body);
        return LK_EINVAL;
    }
    req->named = false;
    req->name_kind = kind;
    req->body = body;
    return 0;
}

/* ---- fields given twice ------------------------------------------------------ */

/*
 * serde rejects a struct field given twice ("duplicate field") but ignores
 * unknown keys, repeated or not; jansson can only reject every repeated key.
 * So the body (already valid JSON) is walked once and only the known fields
 * of each struct are checked. Named and Unnamed know different root fields,
 * so a repeated one rules out the shapes that know it. The same walk finds
 * nesting past serde_json's limit.
 */
enum obj_kind {
    OBJ_OTHER = 0,
    OBJ_ROOT,
    OBJ_SERVICE,
    OBJ_REWRITE,
    OBJ_DOMAIN,
    OBJ_ROUTE
};

static const char *const root_fields[] = { "desired_name", "session_token", "name_kind",
                                           "services",     "domains",       "cache_routes" };
#define ROOT_DESIRED   (1u << 0)
#define ROOT_NAME_KIND (1u << 2)
#define ROOT_ALL       ((1u << LK_ARRAY_LEN(root_fields)) - 1)
static const char *const service_fields[] = { "name", "location", "rewrites" };
static const char *const rewrite_fields[] = { "source", "target" };
static const char *const domain_fields[] = { "domain", "default_service", "routes" };
static const char *const route_fields[] = { "path", "service" };

/* serde_json's nesting limit: the 129th open array or object is a syntax
 * error (jansson's own limit is 2048). */
#define JSON_MAX_DEPTH 128

struct dup_scan {
    const char *p, *end;
    size_t depth;         /* arrays and objects open at p */
    const char *too_deep; /* the first '[' or '{' past JSON_MAX_DEPTH, or NULL */
    unsigned root_dups;   /* bits of root_fields given twice */
    const char *repeated; /* the first repeated known field, or NULL */
    bool nested_dup;      /* a field of a service/rewrite/domain/route twice */
};

static void skip_ws(struct dup_scan *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
        d->p++;
}

/* Consumes a string at d->p (at its '"'); its ASCII text goes to key (a
 * non-ASCII or too long key leaves an empty key: it names no field). */
static void scan_string(struct dup_scan *d, char *key, size_t cap)
{
    size_t n = 0;
    bool known = true;
    d->p++;
    while (d->p < d->end && *d->p != '"') {
        char c = *d->p++;
        if (c == '\\' && d->p < d->end) {
            char e = *d->p++;
            c = e == 'n'   ? '\n'
                : e == 't' ? '\t'
                : e == 'r' ? '\r'
                : e == 'b' ? '\b'
                : e == 'f' ? '\f'
                           : e;
            if (e == 'u') {
                int v = 0;
                for (int i = 0; i < 4 && d->p < d->end; i++)
                    v = v * 16 + lk_hex_digit(*d->p++);
                if (v <= 0 || v >= 0x80)
                    known = false;
                c = (char)v;
            }
        }
        if ((unsigned char)c >= 0x80 || n + 1 >= cap)
            known = false;
        else
            key[n++] = c;
    }
    d->p++; /* the closing '"' */
    key[known ? n : 0] = '\0';
}

static void scan_value(struct dup_scan *d, enum obj_kind kind);

static void scan_fields(const char *const *fields, size_t n, enum obj_kind kind, const char *key,
                        unsigned *seen, struct dup_scan *d)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(key, fields[i]) != 0)
            continue;
        if (*seen & (1u << i)) {
            if (kind == OBJ_ROOT)
                d->root_dups |= 1u << i;
            else
                d->nested_dup = true;
            if (d->repeated == NULL)
                d->repeated = fields[i];
        }
        *seen |= 1u << i;
    }
}

/* The kind of the elements of the array under key of an object of kind. */
static enum obj_kind child_kind(enum obj_kind kind, const char *key)
{
    if (kind == OBJ_ROOT && strcmp(key, "services") == 0)
        return OBJ_SERVICE;
    if (kind == OBJ_ROOT && strcmp(key, "domains") == 0)
        return OBJ_DOMAIN;
    if (kind == OBJ_SERVICE && strcmp(key, "rewrites") == 0)
        return OBJ_REWRITE;
    if (kind == OBJ_DOMAIN && strcmp(key, "routes") == 0)
        return OBJ_ROUTE;
    return OBJ_OTHER;
}

static void scan_object(struct dup_scan *d, enum obj_kind kind)
{
    static const struct {
        const char *const *fields;
        size_t n;
    } known[] = {
        [OBJ_OTHER] = { NULL, 0 },
        [OBJ_ROOT] = { root_fields, LK_ARRAY_LEN(root_fields) },
        [OBJ_SERVICE] = { service_fields, LK_ARRAY_LEN(service_fields) },
        [OBJ_REWRITE] = { rewrite_fields, LK_ARRAY_LEN(rewrite_fields) },
        [OBJ_DOMAIN] = { domain_fields, LK_ARRAY_LEN(domain_fields) },
        [OBJ_ROUTE] = { route_fields, LK_ARRAY_LEN(route_fields) },
    };
    unsigned seen = 0;
    d->p++; /* '{' */
    for (;;) {
        skip_ws(d);
        if (d->p >= d->end || *d->p == '}')
            break;
        if (*d->p == ',') {
            d->p++;
            continue;
        }
        char key[32];
        scan_string(d, key, sizeof(key));
        scan_fields(known[kind].fields, known[kind].n, kind, key, &seen, d);
        skip_ws(d);
        d->p++; /* ':' */
        scan_value(d, child_kind(kind, key));
    }
    d->p++;
}

/* kind: of the value if it is an object, of its elements if it is an array. */
static void scan_value(struct dup_scan *d, enum obj_kind kind)
{
    skip_ws(d);
    if (d->p >= d->end)
        return;
    if ((*d->p == '{' || *d->p == '[') && ++d->depth > JSON_MAX_DEPTH && d->too_deep == NULL)
        d->too_deep = d->p;
    if (*d->p == '{') {
        scan_object(d, kind);
        d->depth--;
    } else if (*d->p == '[') {
        d->p++;
        for (;;) {
            skip_ws(d);
            if (d->p >= d->end || *d->p == ']')
                break;
            if (*d->p == ',')
                d->p++;
            else
                scan_value(d, kind);
        }
        d->p++;
        d->depth--;
    } else if (*d->p == '"') {
        char unused[1];
        scan_string(d, unused, sizeof(unused));
    } else {
        /* A number or literal; at least one byte, so every loop advances. */
        do
            d->p++;
        while (d->p < d->end && memchr(",]} \t\n\r", *d->p, 7) == NULL);
    }
}

/* Loads the body as serde_json reads it: integers of any size are numbers
 * (jansson would refuse one past 64 bits); repeated keys keep the last value. */
static int load_body(const char *json, size_t len, json_t **out, struct lk_buf *why)
{
    json_error_t jerr;
    /* jansson ends a number at a NUL byte ("[1\0]" loads); JSON has no
     * place for a raw NUL, and serde_json refuses one anywhere. */
    const char *nul = len > 0 ? memchr(json, '\0', len) : NULL;
    if (nul != NULL) {
        *out = NULL;
        lk_buf_addf(why, "NUL byte at offset %zu", (size_t)(nul - json));
        return LK_EPARSE;
    }
    *out = json_loadb(json, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
    if (*out == NULL) {
        /* Names and tokens are C strings here, so a \u0000 in a string is
         * refused; say so instead of naming jansson's flag. */
        const char *text = json_error_code(&jerr) == json_error_null_character
                               ? "\\u0000 in a string is not supported"
                               : jerr.text;
        lk_buf_addf(why, "%s at line %d column %d", text, jerr.line, jerr.column);
        return LK_EPARSE;
    }
    return 0;
}

int lk_upsert_parse(const char *json, size_t len, struct lk_upsert *req, struct lk_buf *err)
{
    struct lk_buf why = LK_BUF_INIT;
    json_t *root = NULL;
    memset(req, 0, sizeof(*req));
    int rc = load_body(json, len, &root, &why);
    if (rc != 0) {
        if (err)
            lk_buf_addf(err, "%s%s", JSON_ERROR, why.data);
        goto out;
    }
    /* serde reads the whole body before it tries the shapes, so bad syntax
     * anywhere (400) wins over a field given twice (422). */
    struct dup_scan dups = { .p = json, .end = json + len };
    scan_value(&dups, OBJ_ROOT);
    if (dups.too_deep != NULL) {
        rc = LK_EPARSE;
        if (err)
            lk_buf_addf(err, "%srecursion limit exceeded at offset %zu", JSON_ERROR,
                        (size_t)(dups.too_deep - json));
        goto out;
    }
    bool named_fits = !dups.nested_dup && !(dups.root_dups & (ROOT_ALL & ~ROOT_NAME_KIND));
    bool unnamed_fits = !dups.nested_dup && !(dups.root_dups & (ROOT_ALL & ~ROOT_DESIRED));
    if (!json_is_object(root)) {
        lk_buf_adds(&why, "invalid type, expected an object");
        rc = LK_EINVAL;
    } else if (named_fits && try_named(root, req, &why) == 0) {
        rc = 0;
    } else if (unnamed_fits) {
        /* Report why the last shape (Unnamed) did not fit. */
        lk_buf_reset(&why);
        rc = try_unnamed(root, req, &why);
    } else {
        lk_buf_reset(&why);
        lk_buf_addf(&why, "duplicate field `%s`", dups.repeated);
        rc = LK_EINVAL;
    }
    if (rc != 0 && err)
        lk_buf_addf(err, "%s%s", SHAPE_ERROR, why.data);
out:
    json_decref(root);
    lk_buf_release(&why);
    return rc;
}

int lk_upsert_to_session(const struct lk_upsert *req, enum lk_session_kind kind,
                         struct lk_session **out, struct lk_buf *err)
{
    struct lk_session *s = lk_session_clone(req->body);
    s->kind = kind;
    if (s->session_token == NULL)
        lk_session_set_token(s, LK_PREVIEW_SESSION_TOKEN);
    if (lk_session_validate(s, err) != 0) {
        lk_session_free(s);
        return LK_EVALIDATE;
    }
    *out = s;
    return 0;
}

void lk_upsert_to_json(const struct lk_upsert *req, struct lk_buf *out)
{
    const char *token = req->body ? req->body->session_token : NULL;
    if (req->named) {
        lk_buf_adds(out, "{\"desired_name\":");
        lk_json_add_string(out, req->desired_name ? req->desired_name : "",
                           req->desired_name ? strlen(req->desired_name) : 0);
    } else {
        lk_buf_adds(out, "{\"name_kind\":");
        lk_json_add_string(out, lk_name_kind_name(req->name_kind),
                           strlen(lk_name_kind_name(req->name_kind)));
    }
    lk_buf_adds(out, ",\"session_token\":");
    if (token)
        lk_json_add_string(out, token, strlen(token));
    else
        lk_buf_adds(out, "null");
    lk_buf_addch(out, ',');
    if (req->body) {
        lk_session_lists_to_json(req->body, out);
    } else {
        lk_buf_adds(out, "\"services\":[],\"domains\":[],\"cache_routes\":null");
    }
    lk_buf_addch(out, '}');
}

void lk_upsert_init_from_session(struct lk_upsert *req, const char *desired_name,
                                 enum lk_name_kind name_kind, const struct lk_session *session)
{
    memset(req, 0, sizeof(*req));
    req->named = desired_name != NULL;
    req->desired_name = desired_name ? lk_xstrdup(desired_name) : NULL;
    req->name_kind = name_kind;
    req->body = lk_session_clone(session);
}

void lk_upsert_release(struct lk_upsert *req)
{
    free(req->desired_name);
    lk_session_free(req->body);
    memset(req, 0, sizeof(*req));
}
