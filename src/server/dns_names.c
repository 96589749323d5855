/*
 * dns_names.c - registry of "{session}.{domain}" names (dns_names.h).
 *
 * A sorted array: sessions are few (tens), so linear inserts and removals are
 * cheaper to reason about than a tree. After every change the two views for
 * the DNS responder are rebuilt, so a query never sees a half-updated state.
 */
#include "server/dns_names.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/session.h"

void local_dns_names_init(struct local_dns_names *r)
{
    memset(r, 0, sizeof(*r));
}

static void entry_release(struct local_dns_entry *e)
{
    free(e->fqdn);
    free(e->session);
    free(e->domain);
}

void local_dns_names_release(struct local_dns_names *r)
{
    for (size_t i = 0; i < r->n; i++)
        entry_release(&r->entries[i]);
    free(r->entries);
    free(r->name_view);
    free(r->domain_view);
    memset(r, 0, sizeof(*r));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Rebuilds name_view (sorted fqdns) and domain_view (distinct domains,
 * sorted: O(n log n), so a session with tens of thousands of domains does
 * not stall the loop on every later upsert or delete). */
static void rebuild_views(struct local_dns_names *r)
{
    free(r->name_view);
    free(r->domain_view);
    r->name_view = lk_xcalloc(r->n + 1, sizeof(*r->name_view));
    r->domain_view = lk_xcalloc(r->n + 1, sizeof(*r->domain_view));
    for (size_t i = 0; i < r->n; i++) {
        r->name_view[i] = r->entries[i].fqdn;
        r->domain_view[i] = r->entries[i].domain;
    }
    qsort(r->domain_view, r->n, sizeof(*r->domain_view), cmp_str);
    r->n_domains = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->n_domains == 0 || strcmp(r->domain_view[r->n_domains - 1], r->domain_view[i]) != 0)
            r->domain_view[r->n_domains++] = r->domain_view[i];
    }
    r->domain_view[r->n_domains] = NULL;
}

/* Index of fqdn, or of where it would be inserted; *found tells which. */
static size_t find(const struct local_dns_names *r, const char *fqdn, bool *found)
{
    size_t lo = 0;
    size_t hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->entries[mid].fqdn, fqdn);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void remove_session(struct local_dns_names *r, const char *session)
{
    size_t out = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->entries[i].session, session) == 0)
            entry_release(&r->entries[i]);
        else
            r->entries[out++] = r->entries[i];
    }
    r->n = out;
}

static void add_one(struct local_dns_names *r, const char *session, const char *domain)
{
    struct lk_buf fqdn = LK_BUF_INIT;
    bool found;
    lk_buf_addf(&fqdn, "%s.%s", session, domain);
    size_t at = find(r, fqdn.data, &found);
    if (found) {
        struct local_dns_entry *e = &r->entries[at];
        free(e->session);
        free(e->domain);
        e->session = lk_xstrdup(session);
        e->domain = lk_xstrdup(domain);
        lk_buf_release(&fqdn);
        return;
    }
    LK_GROW(r->entries, r->cap, r->n + 1);
    memmove(&r->entries[at + 1], &r->entries[at], (r->n - at) * sizeof(r->entries[0]));
    r->entries[at] = (struct local_dns_entry){
        .fqdn = lk_buf_detach(&fqdn, NULL),
        .session = lk_xstrdup(session),
        .domain = lk_xstrdup(domain),
    };
    r->n++;
}

void local_dns_names_set(struct local_dns_names *r, const char *session, const char *const *domains,
                         size_t n)
{
    remove_session(r, session);
    for (size_t i = 0; i < n; i++)
        add_one(r, session, domains[i]);
    rebuild_views(r);
}

void local_dns_names_drop(struct local_dns_names *r, const char *session)
{
    remove_session(r, session);
    rebuild_views(r);
}

size_t local_dns_names_count(const struct local_dns_names *r)
{
    return r->n;
}

void local_dns_names_to_json(const struct local_dns_names *r, struct lk_buf *out)
{
    lk_buf_adds(out, "{\"domains\":[");
    for (size_t i = 0; i < r->n; i++) {
        if (i > 0)
            lk_buf_addch(out, ',');
        lk_json_add_string(out, r->entries[i].fqdn, strlen(r->entries[i].fqdn));
    }
    lk_buf_adds(out, "]}");
}

void local_dns_names_zones(const struct local_dns_names *r, struct lk_dns_zones *zones)
{
    static const char *const none[1] = { NULL };
    zones->names = r->name_view ? r->name_view : none;
    zones->n_names = r->n;
    zones->domains = r->domain_view ? r->domain_view : none;
    zones->n_domains = r->n_domains;
}
