/*
 * upsert.h - UpsertSessionRequest, the body of every "create/update session"
 * endpoint (SPEC §2.3).
 *
 * Two shapes, tried in order like serde's untagged enum:
 *   Named:   {"desired_name":"..","session_token":"..","services":[..],
 *             "domains":[..],"cache_routes":..}   (desired_name and
 *             session_token strings, services and domains present)
 *   Unnamed: {"name_kind":"animal"|"six_char","session_token":null|"..",
 *             "services":[..],"domains":[..],"cache_routes":..}
 * name_kind defaults to six_char; a null/absent token becomes the constant
 * "preview_session" when converted. Quirk kept: desired_name with a null
 * token does not fit Named, so the body is Unnamed and desired_name ignored.
 *
 * Error classes, so servers can map them to statuses (SPEC §4.3):
 *   LK_EPARSE     malformed JSON (syntax, not UTF-8)          -> 400
 *   LK_EINVAL     valid JSON that fits neither shape (missing
 *                 services, wrong types, bad URL or regex, a
 *                 known field given twice; unknown keys may
 *                 repeat, as serde ignores them)               -> 422
 *   LK_EVALIDATE  the §2.2 session validation failed in
 *                 lk_upsert_to_session                         -> 400
 *                 "Failed to parse server config: {e} - Worker"
 *
 * Pure; single-threaded use (compiled regexes).
 */
#ifndef LK_CORE_UPSERT_H
#define LK_CORE_UPSERT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/session.h"

/* The token given to sessions whose request carries none (SPEC §2.3). */
#define LK_PREVIEW_SESSION_TOKEN "preview_session"

enum lk_name_kind {
    LK_NAME_SIX_CHAR = 0,
    LK_NAME_ANIMAL,
};

struct lk_upsert {
    bool named;                  /* true: the Named shape */
    char *desired_name;          /* owned; Named only, else NULL */
    enum lk_name_kind name_kind; /* Unnamed only (six_char for Named) */
    /*
     * owned; holds services, domains and cache_routes (not validated) and
     * session_token (NULL when null/absent in an Unnamed body). Its kind is
     * meaningless until lk_upsert_to_session sets it.
     */
    struct lk_session *body;
};

/* "animal" or "six_char". */
const char *lk_name_kind_name(enum lk_name_kind kind);

/*
 * Parses json[0..len) into req (which the caller then releases with
 * lk_upsert_release, also on failure). Returns 0, LK_EPARSE (not JSON) or
 * LK_EINVAL (fits neither shape); on failure a one-line reason is appended to
 * err (when non-NULL), starting "Failed to deserialize the JSON body into the
 * target type: " for LK_EINVAL and "Failed to parse the request body as JSON: "
 * for LK_EPARSE.
 */
int lk_upsert_parse(const char *json, size_t len, struct lk_upsert *req, struct lk_buf *err);

/*
 * Builds the session an endpoint stores: a deep copy of req->body with the
 * given kind and the request's token (or "preview_session"), then runs
 * lk_session_validate. On success *out is a new session (lk_session_free)
 * and 0 is returned; on failure returns LK_EVALIDATE with the §2.2 message
 * ("empty config", ...) appended to err. req is not modified.
 */
int lk_upsert_to_session(const struct lk_upsert *req, enum lk_session_kind kind,
                         struct lk_session **out, struct lk_buf *err);

/*
 * Appends the compact JSON of req (the shapes above, fields in that order;
 * Unnamed emits "session_token":null when it has none). The local server
 * re-serialises and forwards requests with this; the CLI builds them.
 */
void lk_upsert_to_json(const struct lk_upsert *req, struct lk_buf *out);

/*
 * Initialises req as a Named (desired_name non-NULL) or Unnamed request over a
 * deep copy of session's services/domains/cache_routes and token (token may
 * be NULL for Unnamed). desired_name is copied. Release with
 * lk_upsert_release.
 */
void lk_upsert_init_from_session(struct lk_upsert *req, const char *desired_name,
                                 enum lk_name_kind name_kind, const struct lk_session *session);

/* Frees the owned fields and zeroes req. Safe on a zeroed struct. */
void lk_upsert_release(struct lk_upsert *req);

#endif
