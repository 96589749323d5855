/*
 * config.h - the Linkup configuration file (SPEC §1.2-1.4, DESIGN §2.2).
 *
 * lk_config_parse() turns the YAML text of a config file into a plain, read-only
 * struct lk_config. It is pure: no file access, no environment, no clock; the
 * CLI reads and locates the file (src/cli/config_load.h). YAML is read with
 * libyaml, but no YAML type leaves config.c.
 *
 * What the parser enforces (docs/internals/config.md has the full schema):
 *   - the three top-level keys `linkup`, `services`, `domains` and every
 *     required key below them; unknown keys anywhere are ignored;
 *   - types: strings, lists, mappings, integers 0..65535 for health statuses;
 *   - URLs (`worker_url`, `remote`, `local`) parse and are stored normalised;
 *   - regexes (`cache_routes`, `rewrites[].source`, `routes[].path`) compile in
 *     the Rust dialect of regex.h, once, at load;
 *   - cross-references (DESIGN §2.2): every `default_service` and route
 *     `service` names a configured service, and service names are unique.
 * Each error fills a struct lk_diag with the 1-based line and column of the
 * offending YAML node and a lowercase message without a final period.
 *
 * null, absent and [] are kept apart where SPEC §1.2 does: a list field has a
 * has_x flag that is false for null/absent and true for a list (even empty).
 *
 * Limits: text above LK_CONFIG_MAX_BYTES and nesting deeper than
 * LK_CONFIG_MAX_DEPTH are refused; alias expansion is bounded by
 * LK_CONFIG_MAX_NODES node visits, so an alias "bomb" fails fast.
 *
 * A loaded config never changes; it is freed as a whole with lk_config_free.
 * Every string and array in it is owned by the config.
 */
#ifndef LK_CORE_CONFIG_H
#define LK_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/regex.h"
#include "core/url.h"

/* The largest config text lk_config_parse accepts (and the CLI reads). */
#define LK_CONFIG_MAX_BYTES (10u * 1024u * 1024u)
/* The deepest nesting of YAML lists and mappings accepted. */
#define LK_CONFIG_MAX_DEPTH 64u
/* The most YAML nodes the schema walk may visit, counting every alias use. */
#define LK_CONFIG_MAX_NODES 100000u

/* Where and why a config was rejected. line and col are 1-based; both are 0
 * when the error has no position (e.g. the text is too large). msg is always
 * NUL-terminated, lowercase, without a final period. */
struct lk_diag {
    int line, col;
    char msg[160];
};

/* `health` of a service (SPEC §6.5.4). */
struct lk_config_health {
    char *path;         /* owned; NULL when absent or null (probe the URL itself) */
    bool has_statuses;  /* false when `statuses` is absent or null (any non-5xx is ok) */
    uint16_t *statuses; /* owned; n_statuses entries (may be 0 with has_statuses) */
    size_t n_statuses;
};

/* One `rewrites` entry: the path is rewritten with lk_regex_replace_all. */
struct lk_config_rewrite {
    struct lk_regex *source; /* owned, compiled; lk_regex_source() gives the text */
    char *target;            /* owned replacement template ($1, ${name}, $$) */
};

struct lk_config_service {
    char *name;               /* owned, non-empty, unique within the config */
    char *remote;             /* owned, normalised URL text, e.g. "https://x.example.com/" */
    char *local;              /* owned, normalised URL text, e.g. "http://localhost:3000/" */
    struct lk_url remote_url; /* owned, the parsed form of remote */
    struct lk_url local_url;  /* owned, the parsed form of local */
    char *directory;          /* owned; NULL when absent or null; relative to the config file */
    bool has_rewrites;        /* false for null/absent, true for a list (even []) */
    struct lk_config_rewrite *rewrites; /* owned; n_rewrites entries */
    size_t n_rewrites;
    struct lk_config_health *health; /* owned; NULL when absent or null */
};

/* One `routes` entry of a domain: first match of path wins (SPEC §3.5). */
struct lk_config_route {
    struct lk_regex *path; /* owned, compiled */
    char *service;         /* owned; names a service of the config */
};

struct lk_config_domain {
    char *domain;                   /* owned, e.g. "api.example.com" (exact, case-sensitive) */
    char *default_service;          /* owned; names a service of the config */
    bool has_routes;                /* false for null/absent, true for a list (even []) */
    struct lk_config_route *routes; /* owned; n_routes entries */
    size_t n_routes;
};

struct lk_config {
    char *worker_url;   /* owned, normalised: "https://w.example.com" -> "https://w.example.com/" */
    char *worker_token; /* owned */
    bool has_cache_routes;          /* false for null/absent, true for a list (even []) */
    struct lk_regex **cache_routes; /* owned; n_cache_routes compiled regexes */
    size_t n_cache_routes;
    struct lk_config_service *services; /* owned, in file order; n_services entries */
    size_t n_services;
    struct lk_config_domain *domains; /* owned, in file order; n_domains entries */
    size_t n_domains;
};

/* Parses the config text[0..len) (need not be NUL-terminated).
 * path_for_messages (borrowed, may be NULL) names the file for callers'
 * messages; diag->msg never repeats it, since the full user message is built
 * by lk_config_format_error from the same path and *diag.
 * On success stores a new config in *out (owned by the caller, freed with
 * lk_config_free) and returns 0. On failure returns LK_EPARSE (bad YAML,
 * schema, URL, regex or reference) or LK_ELIMIT (too large, too many nodes),
 * fills *diag and leaves *out untouched. diag must not be NULL.
 * Pure; may be called from any thread on distinct inputs. */
int lk_config_parse(const char *text, size_t len, const char *path_for_messages,
                    struct lk_config **out, struct lk_diag *diag);

/* Frees a config and everything it owns. NULL is a no-op. */
void lk_config_free(struct lk_config *cfg);

/* Appends the message DESIGN §2.2 prescribes for a rejected config:
 *   Failed to deserialize config file "/p/linkup.yaml": line 12, column 5: unknown service "web"
 * The path is written in Rust debug form (lk_config_add_quoted); the
 * "line N, column M: " part is left out when diag->line is 0. */
void lk_config_format_error(const char *path, const struct lk_diag *diag, struct lk_buf *out);

/* Appends s in Rust debug form: in double quotes, with `\` and `"` escaped,
 * \n \r \t \0 as such and other control bytes as \u{hex}. Used for every path
 * and value quoted in config messages. */
void lk_config_add_quoted(struct lk_buf *out, const char *s);

/* Appends a masked secret for display (DESIGN §2.13): the first 3 and last 2
 * characters (UTF-8 code points, never a cut one) around "…" ("tok…3f");
 * secrets of fewer than 8 characters become "…" alone so that nothing of
 * them leaks. */
void lk_config_mask_secret(const char *secret, struct lk_buf *out);

/* The first service named name, or NULL. The result is borrowed from cfg. */
const struct lk_config_service *lk_config_find_service(const struct lk_config *cfg,
                                                       const char *name);

/* The first domain entry equal to domain (exact, case-sensitive), or NULL.
 * The result is borrowed from cfg. */
const struct lk_config_domain *lk_config_find_domain(const struct lk_config *cfg,
                                                     const char *domain);

/* The "top-level" domains of SPEC §6.5.4: every configured domain except those
 * that end with another, different configured domain (a plain string suffix
 * test, so "api.example.com" is dropped when "example.com" is configured).
 * Writes borrowed pointers into out, which must have room for cfg->n_domains
 * entries, in config order, and returns how many were written. */
size_t lk_config_top_level_domains(const struct lk_config *cfg,
                                   const struct lk_config_domain **out);

#endif
