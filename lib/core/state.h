/*
 * state.h - the CLI state file `$LINKUP_HOME/state` (SPEC §6.3), parsed from
 * and emitted to YAML with libyaml.
 *
 * The state is the config (worker, services, domains, cache routes) plus what
 * `linkup start` and `linkup route` decide: the session name and token, the
 * tunnel URL and, per service, whether traffic goes to its local or remote
 * copy. It also builds the upsert request the CLI uploads (SPEC §6.5.13).
 *
 * Emission is byte-stable: block style, two-space indent, sequences not
 * indented under their key, keys in the order of SPEC §6.3 (top level
 * linkup, domains, services; linkup: session_name, session_token,
 * worker_url, worker_token, config_path, tunnel, kind, cache_routes; service:
 * current, name, remote, local, directory, rewrites, health). `directory` and
 * `health` are omitted when absent; `tunnel`, `cache_routes`, `rewrites`,
 * `routes` and `health.statuses` are written as `null` when absent, so
 * null and [] survive a round trip. Strings that YAML would read as something
 * else (empty, null, true, numbers, leading indicators...) are single-quoted.
 *
 * Every string of the structs below is owned by the state and freed by
 * lk_state_free(). Pure: no I/O; single-threaded.
 */
#ifndef LK_CORE_STATE_H
#define LK_CORE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/str.h"

/* Where a service's traffic goes: its `remote` or its `local` URL. */
enum lk_state_target {
    LK_TARGET_REMOTE = 0,
    LK_TARGET_LOCAL,
};

struct lk_state_rewrite {
    char *source; /* owned regex source text */
    char *target; /* owned replacement template */
};

struct lk_state_route {
    char *path;    /* owned regex source text */
    char *service; /* owned */
};

struct lk_state_health {
    char *path;         /* owned, NULL when absent */
    bool has_statuses;  /* false: statuses null/absent (any non-5xx is healthy) */
    uint16_t *statuses; /* owned array of n_statuses */
    size_t n_statuses;
};

struct lk_state_service {
    enum lk_state_target current;
    char *name;                        /* owned */
    char *remote;                      /* owned URL text, normalised by whoever built it */
    char *local;                       /* owned URL text */
    char *directory;                   /* owned, NULL when absent */
    bool has_rewrites;                 /* false: rewrites null/absent */
    struct lk_state_rewrite *rewrites; /* owned array of n_rewrites */
    size_t n_rewrites;
    bool has_health;
    struct lk_state_health health;
};

struct lk_state_domain {
    char *domain;                  /* owned */
    char *default_service;         /* owned */
    bool has_routes;               /* false: routes null/absent */
    struct lk_state_route *routes; /* owned array of n_routes */
    size_t n_routes;
};

struct lk_state {
    char *session_name;  /* owned, "" before the first successful upload */
    char *session_token; /* owned, 16 [A-Za-z0-9] */
    char *worker_url;    /* owned */
    char *worker_token;  /* owned */
    char *config_path;   /* owned, canonical path of the config */
    char *tunnel;        /* owned, NULL for `tunnel: null` */
    char *kind;          /* owned, "tunneled" (default) or "preview" */
    bool has_cache_routes;
    char **cache_routes; /* owned array of n_cache_routes owned strings */
    size_t n_cache_routes;
    struct lk_state_domain *domains; /* owned array of n_domains */
    size_t n_domains;
    struct lk_state_service *services; /* owned array of n_services */
    size_t n_services;
};

/* Returns a new state with every string "" (tunnel NULL, kind "tunneled") and
 * no services, domains or cache routes. Freed with lk_state_free. */
struct lk_state *lk_state_new(void);

/* Frees the state and everything it owns. NULL is a no-op. */
void lk_state_free(struct lk_state *st);

/* Replaces *field (one of the owned strings of the structs above) with an
 * owned copy of value (NULL allowed). */
void lk_state_set_str(char **field, const char *value);

/* Appends a zeroed service (current Remote, lists null) and returns it; the
 * caller fills the strings with lk_state_set_str. Earlier pointers may move. */
struct lk_state_service *lk_state_add_service(struct lk_state *st);
/* Appends a rewrite to sv and sets has_rewrites. */
void lk_state_add_rewrite(struct lk_state_service *sv, const char *source, const char *target);
/* Appends a status to sv's health (sets has_health and has_statuses). */
void lk_state_add_status(struct lk_state_service *sv, uint16_t status);
/* Appends a domain with routes null and returns it. Earlier pointers may move. */
struct lk_state_domain *lk_state_add_domain(struct lk_state *st, const char *domain,
                                            const char *default_service);
/* Appends a route to d and sets has_routes. */
void lk_state_add_route(struct lk_state_domain *d, const char *path, const char *service);
/* Appends a cache route and sets has_cache_routes. */
void lk_state_add_cache_route(struct lk_state *st, const char *source);

/* The first service named name, or NULL. Borrowed from st. */
struct lk_state_service *lk_state_find_service(const struct lk_state *st, struct lk_str name);

/* The URL traffic of sv currently goes to (remote or local). Borrowed. */
const char *lk_state_service_url(const struct lk_state_service *sv);

/* "Remote" / "Local", as written in the state file. */
const char *lk_state_target_name(enum lk_state_target t);

/*
 * Parses the YAML state yaml[0..len). Required: linkup.{session_name,
 * session_token, worker_url, worker_token, config_path}, and per service
 * current/name/remote/local, per domain domain/default_service. tunnel and
 * cache_routes may be absent (null); kind defaults to "tunneled"; rewrites,
 * routes and statuses keep null/absent apart from []. Unknown keys are
 * ignored. On success *out is a new state (lk_state_free) and 0 is returned;
 * otherwise LK_EPARSE with a one-line reason appended to err (may be NULL).
 * Any input is safe.
 */
int lk_state_parse(const char *yaml, size_t len, struct lk_state **out, struct lk_buf *err);

/* Appends the YAML of st to out (see the top of this file). Never fails. */
void lk_state_emit(const struct lk_state *st, struct lk_buf *out);

/* Deep copy of st (freed with lk_state_free). */
struct lk_state *lk_state_clone(const struct lk_state *st);

/*
 * Appends the compact JSON upsert request built from st (SPEC §6.3 "Session
 * built from the state", §6.5.13): each service's location is its current URL.
 * named: {"desired_name":session_name,"session_token":token,"services",
 * "domains","cache_routes"}; otherwise {"name_kind":name_kind,
 * "session_token":token or null,...} where token is NULL when
 * unnamed_token is NULL. overrides (may be NULL) is called per service and
 * may return a replacement location (borrowed) or NULL.
 */
struct lk_state_upsert_opts {
    bool named;
    const char *desired_name; /* named only */
    const char *token;        /* NULL: null */
    const char *name_kind;    /* unnamed only: "animal" or "six_char" */
    const char *(*override)(void *ctx, const struct lk_state_service *sv);
    void *override_ctx;
};
void lk_state_upsert_json(const struct lk_state *st, const struct lk_state_upsert_opts *opts,
                          struct lk_buf *out);

#endif
