/*
 * session.h - the session model and its JSON shapes (SPEC §2.1-2.4).
 *
 * A struct lk_session is immutable once built: routing reads it from many
 * requests, the stores cache it parsed (issue: "sessions parsed once").
 * Regexes are compiled once when the session is built. Every string field is
 * owned by the session and freed by lk_session_free().
 *
 * "Absent/null" and "[]" are kept apart for rewrites, routes and cache_routes
 * (has_* flags), because they serialise differently (null vs []).
 */
#ifndef LK_CORE_SESSION_H
#define LK_CORE_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/regex.h"
#include "core/url.h"

enum lk_session_kind {
    LK_SESSION_TUNNELED = 0,
    LK_SESSION_PREVIEW,
};

struct lk_rewrite {
    struct lk_regex *source; /* owned */
    char *target;            /* owned replacement template */
};

struct lk_session_service {
    char *name;              /* owned */
    struct lk_url location;  /* owned, normalised */
    char *location_str;      /* owned, the normalised serialisation */
    bool has_rewrites;       /* false: "rewrites":null */
    struct lk_rewrite *rewrites; /* owned array of n_rewrites */
    size_t n_rewrites;
};

struct lk_route {
    struct lk_regex *path; /* owned */
    char *service;         /* owned */
};

struct lk_domain {
    char *domain;          /* owned */
    char *default_service; /* owned */
    bool has_routes;       /* false: "routes":null */
    struct lk_route *routes; /* owned array of n_routes */
    size_t n_routes;
};

struct lk_session {
    enum lk_session_kind kind;
    char *session_token; /* owned */
    struct lk_session_service *services;
    size_t n_services;
    struct lk_domain *domains;
    size_t n_domains;
    bool has_cache_routes; /* false: "cache_routes":null */
    struct lk_regex **cache_routes;
    size_t n_cache_routes;
};

#endif
