/*
 * dns_names.h - the local server's registry of DNS names (SPEC §5.2 step 4,
 * §5.6; DESIGN §2.9).
 *
 * Registering a tunneled session records one name "{session}.{domain}" per
 * domain of the session; deleting the session removes them again. The
 * registry answers GET /linkup/dns (the names sorted ascending, byte order)
 * and gives the DNS responder its zones: the registered names and the
 * managed domains (the distinct domains of the registered sessions).
 *
 * Names are kept as given (no case folding); an entry remembers the session
 * it belongs to, so re-registering a session replaces its old names.
 * Every string is owned by the registry. Loop thread only.
 */
#ifndef LK_SERVER_DNS_NAMES_H
#define LK_SERVER_DNS_NAMES_H

#include <stddef.h>

#include "core/buf.h"
#include "proto/dns.h"

struct local_dns_entry {
    char *fqdn;    /* owned: "{session}.{domain}" */
    char *session; /* owned */
    char *domain;  /* owned */
};

struct local_dns_names {
    /* private: entries sorted by fqdn (byte order), fqdn unique */
    struct local_dns_entry *entries;
    size_t n, cap;
    /* private: views handed to the DNS responder, rebuilt on every change */
    const char **name_view;
    const char **domain_view;
    size_t n_domains;
};

/* Initialises an empty registry. */
void local_dns_names_init(struct local_dns_names *r);
/* Frees everything; r may be initialised again. */
void local_dns_names_release(struct local_dns_names *r);

/*
 * Replaces the names of session by "{session}.{domains[i]}" for each of the
 * n domains (borrowed during the call; duplicates collapse). A name already
 * registered for another session is taken over by this one.
 */
void local_dns_names_set(struct local_dns_names *r, const char *session, const char *const *domains,
                         size_t n);

/* Removes every name registered for session (none is fine). */
void local_dns_names_drop(struct local_dns_names *r, const char *session);

/* Number of registered names. */
size_t local_dns_names_count(const struct local_dns_names *r);

/* Appends the DnsListResponse of SPEC §2.4: {"domains":[...]} with the
 * names sorted ascending. */
void local_dns_names_to_json(const struct local_dns_names *r, struct lk_buf *out);

/* Fills *zones with borrowed views of the names and managed domains, valid
 * until the next change of r. */
void local_dns_names_zones(const struct local_dns_names *r, struct lk_dns_zones *zones);

#endif
