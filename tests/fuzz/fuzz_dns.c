/*
 * fuzz_dns.c - fuzz target for lib/proto/dns: parse the input as a message,
 * answer it as a query against fixed zones, and parse the answer back.
 *
 * Invariants checked: parsing stays inside the input; an answer never
 * exceeds the capacity it was given (tried at 12, 512 and 4096 bytes), always
 * parses, carries the query id, is a response, and never has more than two
 * answer records or more than one authority record (the SOA of a negative
 * answer, never beside answers); truncated answers have TC and no records.
 * lk_dns_truncate() of the input stays within it and parses, TC set, with at
 * most the question and an OPT record.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = { "tiny-cow.example.com", "a.other.com" };
static const char *const domains[] = { "example.com", "other.com" };
static const struct lk_dns_zones zones = { names, 2, domains, 2 };

static void check(int cond)
{
    if (!cond)
        abort();
}

static void answer_with_cap(const uint8_t *data, size_t size, size_t cap)
{
    uint8_t *out = malloc(cap); /* exact size so ASan sees any overrun */
    check(out != NULL);
    int n = lk_dns_answer(data, size, &zones, out, cap);
    if (n > 0) {
        struct lk_dns_msg *m = malloc(sizeof(*m));
        check(m != NULL);
        check((size_t)n <= cap);
        check(lk_dns_parse(out, (size_t)n, m) == 0);
        check(m->parsed_len == (size_t)n);
        check(memcmp(out, data, 2) == 0);
        check((m->flags & LK_DNS_FLAG_QR) != 0);
        check(m->n_answer <= 2);
        check(m->n_authority <= 1); /* the SOA of a negative answer */
        if (m->n_authority == 1)
            check(m->n_answer == 0 && m->n_question == 1);
        if (m->flags & LK_DNS_FLAG_TC)
            check(m->n_answer == 0 && m->n_authority == 0);
        free(m);
    }
    free(out);
}

/* A name read at every offset (bounded, the first 64) round-trips through
 * lk_dns_build_query(). Names with '.' inside a label cannot round-trip. */
static void check_names(const uint8_t *data, size_t size)
{
    char name[LK_DNS_NAME_TEXT_MAX];
    char back[LK_DNS_NAME_TEXT_MAX];
    uint8_t q[LK_DNS_UDP_MAX];
    for (size_t off = 0; off < size && off < 64; off++) {
        size_t next = 0;
        if (lk_dns_read_name(data, size, off, name, &next) != 0)
            continue;
        check(next > off && next <= size);
        size_t n = strlen(name);
        check(n < LK_DNS_NAME_TEXT_MAX && (n == 0 || name[n - 1] != '.'));
        uint16_t qtype = (uint16_t)(data[off] | 1u);
        uint16_t edns = (uint16_t)(off & 1 ? 1232 : 0);
        int qn = lk_dns_build_query(0x1234, name, qtype, edns, q, sizeof(q));
        if (qn <= 0)
            continue;
        struct lk_dns_msg *m = malloc(sizeof(*m));
        check(m != NULL);
        check(lk_dns_parse(q, (size_t)qn, m) == 0 && m->parsed_len == (size_t)qn);
        check(m->n_question == 1 && m->has_edns == (edns > 0));
        size_t end = 0;
        check(lk_dns_read_name(q, (size_t)qn, 12, back, &end) == 0);
        /* Read names are lower-case and escape other bytes as \DDD, which
         * lk_dns_build_query() takes literally; without escapes they are
         * their own wire form. */
        if (strchr(name, '\\') == NULL)
            check(strcmp(back, name) == 0);
        check(lk_dns_name_at_or_under(back, ""));
        check(lk_dns_name_at_or_under(back, back));
        free(m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_dns_msg *m = malloc(sizeof(*m));
    check(m != NULL);
    if (lk_dns_parse(data, size, m) == 0) {
        check(m->parsed_len <= size);
        check(m->n_rrs <= LK_DNS_MAX_RRS);
        for (size_t i = 0; i < m->n_rrs; i++)
            check(m->rrs[i].rdata_off + m->rrs[i].rdata_len <= size);
    }
    free(m);
    answer_with_cap(data, size, 12);
    answer_with_cap(data, size, LK_DNS_UDP_MAX);
    answer_with_cap(data, size, LK_DNS_EDNS_MAX);
    size_t limit = lk_dns_udp_limit(data, size);
    check(limit >= LK_DNS_UDP_MAX && limit <= LK_DNS_EDNS_MAX);
    uint8_t err[512];
    int n = lk_dns_build_error(data, size, LK_DNS_SERVFAIL, err, sizeof(err));
    check(n == -3 || (n >= 12 && (size_t)n <= sizeof(err)));
    check_names(data, size);
    if (size >= LK_DNS_HEADER_LEN && size <= LK_DNS_TCP_MAX) {
        uint8_t *copy = malloc(size);
        struct lk_dns_msg *t = malloc(sizeof(*t));
        check(copy != NULL && t != NULL);
        memcpy(copy, data, size);
        size_t tn = lk_dns_truncate(copy, size);
        check(tn >= LK_DNS_HEADER_LEN && tn <= size);
        check(lk_dns_parse(copy, tn, t) == 0 && t->parsed_len == tn);
        check((t->flags & LK_DNS_FLAG_TC) && t->n_answer == 0 && t->n_authority == 0);
        check(t->n_question <= 1 && t->n_additional <= 1);
        free(t);
        free(copy);
    }
    return 0;
}
