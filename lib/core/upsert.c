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

int lk_upsert_parse(const char *json, size_t len, struct lk_upsert *req, struct lk_buf *err)
{
    struct lk_buf why = LK_BUF_INIT;
    json_t *root = NULL;
    memset(req, 0, sizeof(*req));
    int rc = lk_json_load(json, len, &root, &why);
    if (rc != 0) {
        if (err)
            lk_buf_addf(err, "%s%s", JSON_ERROR, why.data);
        goto out;
    }
    /* A second, strict parse rather than one: serde reads the whole body
     * before it tries the shapes, so bad syntax anywhere (400) wins over a
     * key given twice (422). Upserts are rare; the proxy path never gets here. */
    json_error_t jerr;
    json_t *strict = json_loadb(json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    bool duplicate_key = strict == NULL; /* the only error left after lk_json_load() */
    json_decref(strict);
    if (duplicate_key) {
        /* serde: a field given twice fits no shape (422), unlike bad syntax. */
        lk_buf_addf(&why, "%s at line %d column %d", jerr.text, jerr.line, jerr.column);
        rc = LK_EINVAL;
    } else if (!json_is_object(root)) {
        lk_buf_adds(&why, "invalid type, expected an object");
        rc = LK_EINVAL;
    } else if (try_named(root, req, &why) == 0) {
        rc = 0;
    } else {
        /* Report why the last shape (Unnamed) did not fit. */
        lk_buf_reset(&why);
        rc = try_unnamed(root, req, &why);
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
