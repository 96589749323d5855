/*
 * session.h - the session model and its JSON shapes (SPEC §2.1-2.2, §2.6).
 *
 * A struct lk_session is immutable once built: routing reads it from many
 * requests, the stores cache it parsed (sessions are parsed once). Regexes are
 * compiled once when the session is built. Every string field is owned by the
 * session and freed by lk_session_free().
 *
 * "Absent/null" and "[]" are kept apart for rewrites, routes and cache_routes
 * (has_* flags), because they serialise differently (null vs []).
 *
 * Sessions are reference counted so that a parsed-session cache (store.h) can
 * hand out a session that stays valid while a request is in flight:
 * lk_session_ref() adds a reference, lk_session_free() drops one and frees on
 * the last. A session built with lk_session_new() or parsed holds one
 * reference. A zeroed struct obtained with lk_xcalloc also works (refs 0 is
 * treated as 1). Shared sessions must not be modified.
 *
 * Error convention of this module: JSON syntax/type errors and bad URLs or
 * regexes are LK_EPARSE with "linkup session json format error: {detail}";
 * §2.2 validation failures are LK_EINVAL with the exact SPEC text
 * ("empty config", "invalid url: {url}", "no such service: {name}"). Messages
 * are appended to the caller's struct lk_buf *err (may be NULL).
 *
 * Pure: no I/O, no clock, no randomness. Single-threaded use only (compiled
 * regexes keep match data).
 */
#ifndef LK_CORE_SESSION_H
#define LK_CORE_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/regex.h"
#include "core/str.h"
#include "core/url.h"

/* Prefix of every JSON format error (SPEC §2.2). */
#define LK_SESSION_FORMAT_ERROR "linkup session json format error: "

enum lk_session_kind {
    LK_SESSION_TUNNELED = 0,
    LK_SESSION_PREVIEW,
};

struct lk_rewrite {
    struct lk_regex *source; /* owned */
    char *target;            /* owned replacement template */
};

struct lk_session_service {
    char *name;                  /* owned */
    struct lk_url location;      /* owned, normalised */
    char *location_str;          /* owned, the normalised serialisation */
    bool has_rewrites;           /* false: "rewrites":null */
    struct lk_rewrite *rewrites; /* owned array of n_rewrites */
    size_t n_rewrites;
};

struct lk_route {
    struct lk_regex *path; /* owned */
    char *service;         /* owned */
};

struct lk_domain {
    char *domain;            /* owned */
    char *default_service;   /* owned */
    bool has_routes;         /* false: "routes":null */
    struct lk_route *routes; /* owned array of n_routes */
    size_t n_routes;
};

struct lk_session {
    enum lk_session_kind kind;
    char *session_token;                 /* owned; NULL only inside an upsert request (upsert.h) */
    struct lk_session_service *services; /* owned array of n_services */
    size_t n_services;
    struct lk_domain *domains; /* owned array of n_domains */
    size_t n_domains;
    bool has_cache_routes;          /* false: "cache_routes":null */
    struct lk_regex **cache_routes; /* owned array of n_cache_routes */
    size_t n_cache_routes;
    /* private: reference count, see the top of this file; use lk_session_ref */
    unsigned refs;
    /* private: capacities of the arrays above (for the adders) */
    size_t cap_services, cap_domains, cap_cache_routes;
};

/* ---- kinds ---------------------------------------------------------------- */

/* "tunneled" or "preview". */
const char *lk_session_kind_name(enum lk_session_kind kind);

/* Parses "tunneled"/"preview" (exact, case-sensitive); 0 or LK_EPARSE. */
int lk_session_kind_parse(struct lk_str s, enum lk_session_kind *out);

/* ---- JSON ----------------------------------------------------------------- */

/*
 * Parses and validates a Session JSON object (SPEC §2.1 then §2.2) from
 * json[0..len) (no NUL needed). `kind` absent means tunneled; any other value
 * than "tunneled"/"preview" is a format error. session_token, services and
 * domains are required; rewrites, routes and cache_routes may be null, absent
 * or arrays. Unknown fields are ignored. Locations are normalised with
 * lk_url_parse; regexes are compiled with lk_regex_compile.
 *
 * On success *out is a new session (one reference, freed by lk_session_free)
 * and 0 is returned. On failure *out is untouched, the message is appended to
 * err (when non-NULL) and LK_EPARSE (format error) or LK_EINVAL (validation
 * failure) is returned. Never crashes on garbage; any length is accepted.
 */
int lk_session_from_json(const char *json, size_t len, struct lk_session **out, struct lk_buf *err);

/*
 * Appends the compact JSON of s to out, in the exact field order of SPEC §2.1
 * ({"kind","session_token","services":[{"name","location","rewrites"}],
 * "domains":[{"domain","default_service","routes"}],"cache_routes"}), null for
 * the has_* == false lists, strings escaped as serde_json does (SPEC §2.6
 * step 2). A NULL session_token is emitted as null. Never fails (out must
 * have no cap, or enough room).
 */
void lk_session_to_json(const struct lk_session *s, struct lk_buf *out);

/*
 * Appends s[0..len) to out as a JSON string literal with serde_json escaping:
 * `"` and `\` escaped, \b \f \n \r \t, other bytes below 0x20 as \u00xx
 * (lower-case hex), `/`, DEL and non-ASCII bytes copied raw.
 */
void lk_json_add_string(struct lk_buf *out, const char *s, size_t len);

/*
 * Helpers shared with upsert.c (and any other JSON body that embeds the
 * session lists). struct json_t is jansson's value type.
 *
 * lk_json_load parses json[0..len) (any top-level value) into a new jansson
 * value (*out, the caller json_decref()s it); returns 0 or LK_EPARSE with
 * "{reason} at line L column C" appended to why.
 *
 * lk_session_parse_lists reads "services" and "domains" (required arrays) and
 * "cache_routes" (null/absent/array) of the object obj into s with the adders
 * below. Returns 0 or LK_EPARSE with a detail (without the
 * LK_SESSION_FORMAT_ERROR prefix) appended to why (non-NULL). No validation.
 *
 * lk_session_lists_to_json appends "services":[..],"domains":[..],
 * "cache_routes":.. (no braces) exactly as lk_session_to_json writes them.
 */
struct json_t;
int lk_json_load(const char *json, size_t len, struct json_t **out, struct lk_buf *why);
int lk_session_parse_lists(const struct json_t *obj, struct lk_session *s, struct lk_buf *why);
void lk_session_lists_to_json(const struct lk_session *s, struct lk_buf *out);

/* ---- validation ------------------------------------------------------------ */

/*
 * Runs the SPEC §2.2 checks in order (empty services, empty domains, each
 * location http(s) with a host, each domain's default_service then routes name
 * a service). Returns 0 or LK_EINVAL with the exact message appended to err.
 */
int lk_session_validate(const struct lk_session *s, struct lk_buf *err);

/* ---- lookups --------------------------------------------------------------- */

/* The first service whose name equals name exactly, or NULL. Borrowed from s. */
const struct lk_session_service *lk_session_find_service(const struct lk_session *s,
                                                         struct lk_str name);

/* The first domain equal to domain (exact, case-sensitive), or NULL. Borrowed. */
const struct lk_domain *lk_session_find_domain(const struct lk_session *s, struct lk_str domain);

/* ---- lifecycle and building ------------------------------------------------ */

/*
 * Returns a new empty session (one reference) of the given kind with an owned
 * copy of token (NULL allowed: the token is then NULL). Lists start as null
 * (has_* false); the adders below turn them into arrays. Build it completely,
 * then call lk_session_validate() before sharing it.
 */
struct lk_session *lk_session_new(enum lk_session_kind kind, const char *token);

/* Replaces the token with an owned copy of token (NULL allowed). */
void lk_session_set_token(struct lk_session *s, const char *token);

/*
 * Appends a service named name with location location[0..loc_len), which is
 * normalised with lk_url_parse. Returns 0, or LK_EPARSE with
 * "linkup session json format error: invalid url ..." appended to err when the
 * URL does not parse (nothing is added then). The new service has
 * "rewrites":null. Service pointers obtained earlier may move.
 */
int lk_session_add_service(struct lk_session *s, const char *name, const char *location,
                           size_t loc_len, struct lk_buf *err);

/*
 * Appends a rewrite (source regex compiled now, target template copied) to
 * service number idx (0-based, < n_services) and sets has_rewrites. Returns 0
 * or LK_EPARSE (bad regex; message appended to err, nothing added).
 */
int lk_session_add_rewrite(struct lk_session *s, size_t idx, const char *source, const char *target,
                           struct lk_buf *err);

/* Appends a domain with "routes":null. Domain pointers obtained earlier may move. */
void lk_session_add_domain(struct lk_session *s, const char *domain, const char *default_service);

/* Appends a route to domain number idx (< n_domains) and sets has_routes.
 * Returns 0 or LK_EPARSE (bad regex; message appended to err). */
int lk_session_add_route(struct lk_session *s, size_t idx, const char *path, const char *service,
                         struct lk_buf *err);

/* Appends a cache route regex and sets has_cache_routes. 0 or LK_EPARSE. */
int lk_session_add_cache_route(struct lk_session *s, const char *source, struct lk_buf *err);

/* Returns a deep copy (one reference; regexes recompiled from their source). */
struct lk_session *lk_session_clone(const struct lk_session *s);

/* Adds a reference and returns s (for caches; see the top of this file). */
struct lk_session *lk_session_ref(struct lk_session *s);

/* Drops a reference; frees everything on the last one. NULL is a no-op. */
void lk_session_free(struct lk_session *s);

/* ---- hashing (SPEC §2.6) ---------------------------------------------------- */

/*
 * Appends the canonical JSON of s to out: a copy with services sorted by name,
 * domains by domain and cache_routes by source text (byte-wise, stable;
 * routes and rewrites keep their order), serialised as lk_session_to_json.
 */
void lk_session_canonical_json(const struct lk_session *s, struct lk_buf *out);

/* Writes the lower-case hex SHA-256 of the canonical JSON into hex[0..64]
 * (NUL-terminated; hex must hold 65 bytes). */
void lk_session_hash(const struct lk_session *s, char hex[65]);

#endif
