/*
 * test_dns.c - unit tests of lib/proto/dns: the responder decision table,
 * EDNS, truncation, error answers and the parser's bounds checks.
 */
#include <stdint.h>
#include <string.h>

#include "core/err.h"
#include "harness.h"
#include "proto/dns.h"

static const char *const names[] = { "tiny-cow.example.com", "quiet-fox.other.com" };
static const char *const domains[] = { "example.com", "other.com" };
static const struct lk_dns_zones zones = { names, 2, domains, 2 };

#define FWD (-100) /* expected verdict: forward */

struct answer_case {
    const char *name;
    uint16_t qtype;
    int rcode; /* or FWD */
    int n_answers;
    bool aa;
};

static const struct answer_case answer_cases[] = {
    { "tiny-cow.example.com", LK_DNS_T_A, LK_DNS_NOERROR, 1, true },
    { "tiny-cow.example.com", LK_DNS_T_AAAA, LK_DNS_NOERROR, 1, true },
    { "tiny-cow.example.com", LK_DNS_T_ANY, LK_DNS_NOERROR, 2, true },
    { "tiny-cow.example.com", LK_DNS_T_MX, LK_DNS_NOERROR, 0, true },
    { "tiny-cow.example.com", LK_DNS_T_TXT, LK_DNS_NOERROR, 0, true },
    { "TINY-Cow.Example.COM.", LK_DNS_T_A, LK_DNS_NOERROR, 1, true },
    { "api.tiny-cow.example.com", LK_DNS_T_A, LK_DNS_NOERROR, 1, true },
    { "a.b.tiny-cow.example.com", LK_DNS_T_AAAA, LK_DNS_NOERROR, 1, true },
    { "quiet-fox.other.com", LK_DNS_T_A, LK_DNS_NOERROR, 1, true },
    { "other-cow.example.com", LK_DNS_T_A, LK_DNS_NXDOMAIN, 0, true },
    { "example.com", LK_DNS_T_A, FWD, 0, false }, /* SPEC §5.6: bare domains forwarded */
    { "EXAMPLE.com.", LK_DNS_T_MX, FWD, 0, false },
    { "other.com", LK_DNS_T_A, FWD, 0, false },
    { "xtiny-cow.example.com", LK_DNS_T_A, LK_DNS_NXDOMAIN, 0, true },
    { "tiny-cow.other.com", LK_DNS_T_A, LK_DNS_NXDOMAIN, 0, true },
    { "example.org", LK_DNS_T_A, FWD, 0, false },
    { "notexample.com", LK_DNS_T_A, FWD, 0, false },
    { "com", LK_DNS_T_A, FWD, 0, false },
    { "", LK_DNS_T_NS, FWD, 0, false },
    /* Zone transfers of our names are refused; others are forwarded. */
    { "tiny-cow.example.com", LK_DNS_T_AXFR, LK_DNS_REFUSED, 0, false },
    { "x.tiny-cow.example.com", LK_DNS_T_IXFR, LK_DNS_REFUSED, 0, false },
    { "nope.example.com", LK_DNS_T_AXFR, LK_DNS_REFUSED, 0, false },
    { "example.com", LK_DNS_T_AXFR, FWD, 0, false },
    { "example.org", LK_DNS_T_AXFR, FWD, 0, false },
};

static void test_answer_table(void)
{
    for (size_t i = 0; i < sizeof(answer_cases) / sizeof(answer_cases[0]); i++) {
        const struct answer_case *c = &answer_cases[i];
        uint8_t q[512], out[512];
        int qlen = lk_dns_build_query((uint16_t)(0x1000 + i), c->name, c->qtype, 0, q, sizeof(q));
        CHECK(qlen > 0);
        int n = lk_dns_answer(q, (size_t)qlen, &zones, out, sizeof(out));
        if (c->rcode == FWD) {
            CHECK_INT_EQ(n, LK_DNS_FORWARD);
            continue;
        }
        CHECK(n > 0);
        if (n <= 0)
            continue;
        struct lk_dns_msg m;
        CHECK_INT_EQ(lk_dns_parse(out, (size_t)n, &m), 0);
        CHECK_INT_EQ(m.id, 0x1000 + i);
        CHECK(m.flags & LK_DNS_FLAG_QR);
        CHECK(m.flags & LK_DNS_FLAG_RD);
        CHECK_INT_EQ(LK_DNS_RCODE(m.flags), c->rcode);
        CHECK_INT_EQ((m.flags & LK_DNS_FLAG_AA) != 0, c->aa);
        CHECK_INT_EQ(m.n_question, 1);
        CHECK_INT_EQ(m.qtype, c->qtype);
        CHECK_INT_EQ(m.n_answer, c->n_answers);
        /* RFC 2308 §3: NXDOMAIN and NODATA carry the zone's SOA. */
        CHECK_INT_EQ(m.n_authority, m.n_answer == 0 && c->rcode != LK_DNS_REFUSED ? 1 : 0);
        for (size_t k = 0; k < m.n_rrs; k++) {
            CHECK_STR_EQ(m.rrs[k].name, m.qname);
            CHECK_INT_EQ(m.rrs[k].ttl, 60);
        }
    }
}

static void test_address_records(void)
{
    uint8_t q[512], out[512];
    int qlen = lk_dns_build_query(7, "api.tiny-cow.example.com", LK_DNS_T_ANY, 0, q, sizeof(q));
    int n = lk_dns_answer(q, (size_t)qlen, &zones, out, sizeof(out));
    struct lk_dns_msg m;
    CHECK_INT_EQ(lk_dns_parse(out, (size_t)n, &m), 0);
    CHECK_INT_EQ(m.n_rrs, 2);
    CHECK_INT_EQ(m.rrs[0].type, LK_DNS_T_A);
    CHECK_MEM_EQ(out + m.rrs[0].rdata_off, m.rrs[0].rdata_len, "\x7f\0\0\x01", 4);
    CHECK_INT_EQ(m.rrs[1].type, LK_DNS_T_AAAA);
    CHECK_MEM_EQ(out + m.rrs[1].rdata_off, m.rrs[1].rdata_len, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01",
                 16);
    CHECK_STR_EQ(m.rrs[0].name, "api.tiny-cow.example.com");
}

static void test_question_case_is_echoed(void)
{
    uint8_t q[512], out[512];
    int qlen = lk_dns_build_query(9, "TiNy-CoW.example.com", LK_DNS_T_A, 0, q, sizeof(q));
    int n = lk_dns_answer(q, (size_t)qlen, &zones, out, sizeof(out));
    CHECK(n > qlen);
    /* The question bytes come back exactly (DNS 0x20 case randomisation). */
    CHECK_MEM_EQ(out + 12, (size_t)qlen - 12, q + 12, (size_t)qlen - 12);
}

static void test_edns(void)
{
    uint8_t q[512], out[512];
    int qlen = lk_dns_build_query(1, "tiny-cow.example.com", LK_DNS_T_A, 1400, q, sizeof(q));
    CHECK_INT_EQ(lk_dns_udp_limit(q, (size_t)qlen), 1400);
    int n = lk_dns_answer(q, (size_t)qlen, &zones, out, sizeof(out));
    struct lk_dns_msg m;
    CHECK_INT_EQ(lk_dns_parse(out, (size_t)n, &m), 0);
    CHECK(m.has_edns);
    CHECK_INT_EQ(m.edns_udp_size, LK_DNS_OUR_EDNS_SIZE);
    CHECK_INT_EQ(m.n_additional, 1);
    CHECK_INT_EQ(m.n_answer, 1);

    /* Sizes outside [512, 4096] are clamped; no EDNS means 512. */
    qlen = lk_dns_build_query(1, "x.org", LK_DNS_T_A, 100, q, sizeof(q));
    CHECK_INT_EQ(lk_dns_udp_limit(q, (size_t)qlen), 512);
    qlen = lk_dns_build_query(1, "x.org", LK_DNS_T_A, 65000, q, sizeof(q));
    CHECK_INT_EQ(lk_dns_udp_limit(q, (size_t)qlen), 4096);
    qlen = lk_dns_build_query(1, "x.org", LK_DNS_T_A, 0, q, sizeof(q));
    CHECK_INT_EQ(lk_dns_udp_limit(q, (size_t)qlen), 512);

    /* RFC 3225 §3: the query's DO bit is copied into the answer's OPT, on
     * answers and on errors alike; no DO, no DO. */
    CHECK(!m.edns_do);
    qlen = lk_dns_build_query(1, "nope.example.com", LK_DNS_T_A, 1232, q, sizeof(q));
    q[qlen - 4] = 0x80; /* OPT TTL byte 3: DO */
    n = lk_dns_answer(q, (size_t)qlen, &zones, out, sizeof(out));
    CHECK_INT_EQ(lk_dns_parse(out, (size_t)n, &m), 0);
    CHECK(m.edns_do);
    CHECK_INT_EQ(LK_DNS_RCODE(m.flags), LK_DNS_NXDOMAIN);
    n = lk_dns_build_error(q, (size_t)qlen, LK_DNS_SERVFAIL, out, sizeof(out));
    CHECK_INT_EQ(lk_dns_parse(out, (size_t)n, &m), 0);
    CHECK(m.edns_do);

    /* EDNS version 1 gets BADVERS (extended rcode 16 = ext 1, low bits 0). */
    qlen = lk_dns_build_query(2, "tiny-cow.example.com", LK_DNS_T_A, 1232, q, sizeof(q));
    q[qlen - 5] = 1; /* OPT TTL byte 2: version */
    n = lk_dns_answer(q, (size_t)qlen, &zones, out, sizeof(out));
    CHECK_INT_EQ(lk_dns_parse(out, (size_t)n, &m), 0);
    CHECK_INT_EQ(LK_DNS_RCODE(m.flags), 0);
    CHECK_INT_EQ(m.edns_ext_rcode, 1);
    CHECK_INT_EQ(m.n_answer, 0);
}

static void test_truncation(void)
{
    uint8_t q[512], out[512];
    int qlen = lk_dns_build_query(3, "tiny-cow.example.com", LK_DNS_T_ANY, 0, q, sizeof(q));
    int full = lk_dns_answer(q, (size_t)qlen, &zones, out, sizeof(out));
    CHECK(full > 0);
    /* One byte short of the full answer: header + question, TC, no records. */
    int n = lk_dns_answer(q, (size_t)qlen, &zones, out, (size_t)full - 1);
    CHECK_INT_EQ(n, qlen);
    struct lk_dns_msg m;
    CHECK_INT_EQ(lk_dns_parse(out, (size_t)n, &m), 0);
    CHECK(m.flags & LK_DNS_FLAG_TC);
    CHECK_INT_EQ(m.n_answer, 0);
    /* Room for a header only. */
    n = lk_dns_answer(q, (size_t)qlen, &zones, out, 12);
    CHECK_INT_EQ(n, 12);
    CHECK(out[2] & 0x02);
    CHECK_INT_EQ(lk_dns_answer(q, (size_t)qlen, &zones, out, 11), LK_EPARSE);
}

struct bad_case {
    const char *what;
    const char *bytes;
    size_t len;
    int expect; /* rcode, or LK_EPARSE for "drop" */
};

#define B(s) s, sizeof(s) - 1

static const struct bad_case bad_cases[] = {
    { "empty", B(""), LK_EPARSE },
    { "short header", B("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00"), LK_EPARSE },
    { "a response", B("\x12\x34\x81\x80\x00\x00\x00\x00\x00\x00\x00\x00"), LK_EPARSE },
    { "no question", B("\x12\x34\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"), LK_DNS_FORMERR },
    { "two questions",
      B("\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00"
        "\x01x\x03org\x00\x00\x01\x00\x01\x01y\x03org\x00\x00\x01\x00\x01"),
      LK_DNS_FORMERR },
    { "truncated question", B("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03"),
      LK_DNS_FORMERR },
    { "label past end",
      B("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3f"
        "abc"),
      LK_DNS_FORMERR },
    { "no qtype", B("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01x\x00\x00"),
      LK_DNS_FORMERR },
    { "self pointer", B("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"),
      LK_DNS_FORMERR },
    { "forward pointer",
      B("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0e\x00\x01\x00\x01"),
      LK_DNS_FORMERR },
    { "pointer loop",
      B("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01x\xc0\x0c\x00\x01\x00\x01"),
      LK_DNS_FORMERR },
    { "label type 0x40",
      B("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x41x\x00\x00\x01\x00\x01"),
      LK_DNS_FORMERR },
    { "opcode status",
      B("\x12\x34\x11\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01x\x00\x00\x01\x00\x01"),
      LK_DNS_NOTIMP },
    { "rdata past end",
      B("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x01x\x00\x00\x01\x00\x01"
        "\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x05\x00"),
      LK_DNS_FORMERR },
    { "two OPT",
      B("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x02\x01x\x00\x00\x01\x00\x01"
        "\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"
        "\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"),
      LK_DNS_FORMERR },
    { "OPT not at root",
      B("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x01x\x00\x00\x01\x00\x01"
        "\x01x\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"),
      LK_DNS_FORMERR },
    { "OPT in answers",
      B("\x12\x34\x01\x00\x00\x01\x00\x01\x00\x00\x00\x00\x01x\x00\x00\x01\x00\x01"
        "\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"),
      LK_DNS_FORMERR },
    { "huge counts", B("\x12\x34\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff"), LK_DNS_FORMERR },
};

static void test_malformed(void)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        uint8_t out[512];
        int n = lk_dns_answer((const uint8_t *)c->bytes, c->len, &zones, out, sizeof(out));
        if (c->expect == LK_EPARSE) {
            if (n != LK_EPARSE)
                fprintf(stderr, "  case %s\n", c->what);
            CHECK_INT_EQ(n, LK_EPARSE);
            continue;
        }
        CHECK(n >= 12);
        if (n < 12) {
            fprintf(stderr, "  case %s\n", c->what);
            continue;
        }
        CHECK_MEM_EQ(out, 2, c->bytes, 2);
        CHECK(out[2] & 0x80);
        if ((out[3] & 0x0F) != c->expect)
            fprintf(stderr, "  case %s\n", c->what);
        CHECK_INT_EQ(out[3] & 0x0F, c->expect);
        struct lk_dns_msg m;
        CHECK_INT_EQ(lk_dns_parse(out, (size_t)n, &m), 0);
    }
}

static size_t build_long_name_query(uint8_t *q, unsigned last_label)
{
    size_t n = 0;
    memcpy(q, "\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12);
    n = 12;
    for (int i = 0; i < 4; i++) {
        unsigned l = i == 3 ? last_label : 63;
        q[n++] = (uint8_t)l;
        memset(q + n, 'a', l);
        n += l;
    }
    q[n++] = 0;
    memcpy(q + n, "\x00\x01\x00\x01", 4);
    return n + 4;
}

static void test_name_limits(void)
{
    uint8_t q[600];
    struct lk_dns_msg m;
    /* 63.63.63.61: 255 wire bytes with the root byte, the maximum. */
    size_t qlen = build_long_name_query(q, 61);
    CHECK_INT_EQ(lk_dns_parse(q, qlen, &m), 0);
    CHECK_INT_EQ(strlen(m.qname), 253);
    /* 63.63.63.62: 256 wire bytes. */
    qlen = build_long_name_query(q, 62);
    CHECK_INT_EQ(lk_dns_parse(q, qlen, &m), LK_EPARSE);
    CHECK_INT_EQ(lk_dns_build_query(1, "a..b", LK_DNS_T_A, 0, q, sizeof(q)), LK_EINVAL);
    CHECK_INT_EQ(lk_dns_build_query(1, "a.b", LK_DNS_T_A, 0, q, 10), LK_ELIMIT);
}

static void test_escapes_and_pointers(void)
{
    /* A label holding a dot and a space, then a compressed second question
     * name in the answer section of a response. */
    static const uint8_t msg[] = { 0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 3, 'a', '.', ' ', 7,
                                   'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0,
                                   1,
                                   /* answer: name = pointer to "example.com" */
                                   0xc0, 16, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4 };
    struct lk_dns_msg m;
    CHECK_INT_EQ(lk_dns_parse(msg, sizeof(msg), &m), 0);
    CHECK_STR_EQ(m.qname, "a\\046\\032.example.com");
    CHECK_INT_EQ(m.n_rrs, 1);
    CHECK_STR_EQ(m.rrs[0].name, "example.com");
    CHECK_INT_EQ(m.rrs[0].ttl, 5);
    CHECK_INT_EQ(m.parsed_len, sizeof(msg));
    /* Truncating anywhere inside the message never parses. */
    for (size_t cut = 0; cut < sizeof(msg); cut++)
        CHECK_INT_EQ(lk_dns_parse(msg, cut, &m), LK_EPARSE);
}

static void test_error_builder(void)
{
    uint8_t q[512], out[512];
    int qlen = lk_dns_build_query(0xbeef, "example.org", LK_DNS_T_A, 1232, q, sizeof(q));
    int n = lk_dns_build_error(q, (size_t)qlen, LK_DNS_SERVFAIL, out, sizeof(out));
    struct lk_dns_msg m;
    CHECK_INT_EQ(lk_dns_parse(out, (size_t)n, &m), 0);
    CHECK_INT_EQ(m.id, 0xbeef);
    CHECK_INT_EQ(LK_DNS_RCODE(m.flags), LK_DNS_SERVFAIL);
    CHECK_STR_EQ(m.qname, "example.org");
    CHECK(m.has_edns);
    CHECK_INT_EQ(lk_dns_build_error(q, 5, LK_DNS_SERVFAIL, out, sizeof(out)), LK_EPARSE);
}

static void test_name_at_or_under(void)
{
    CHECK(lk_dns_name_at_or_under("a.example.com", "example.com"));
    CHECK(lk_dns_name_at_or_under("Example.COM", "example.com"));
    CHECK(lk_dns_name_at_or_under("x", ""));
    CHECK(lk_dns_name_at_or_under("a.Example.com.", "example.com"));
    CHECK(lk_dns_name_at_or_under("example.com.", "example.com"));
    CHECK(!lk_dns_name_at_or_under(".", "example.com"));
    CHECK(!lk_dns_name_at_or_under("aexample.com", "example.com"));
    CHECK(!lk_dns_name_at_or_under("com", "example.com"));
    CHECK(!lk_dns_name_at_or_under("example.co", "example.com"));
}

/* The authority section of a parsed answer: the single SOA record's owner,
 * TTL, MNAME, RNAME and the five numbers (RFC 1035 §3.3.13). Returns false
 * when there is none or it does not read. */
struct soa {
    char owner[LK_DNS_NAME_TEXT_MAX], mname[LK_DNS_NAME_TEXT_MAX], rname[LK_DNS_NAME_TEXT_MAX];
    uint32_t ttl, serial, refresh, retry, expire, minimum;
    size_t owner_off; /* where the owner's wire form starts */
};

static bool read_soa(const uint8_t *p, size_t len, const struct lk_dns_msg *m, struct soa *soa)
{
    size_t off = m->question_end, next;
    for (size_t i = 0; i < m->n_answer; i++) {
        if (lk_dns_read_name(p, len, off, soa->owner, &next) != 0 || len - next < 10)
            return false;
        off = next + 10 + (size_t)((p[next + 8] << 8) | p[next + 9]);
    }
    if (m->n_authority != 1 || lk_dns_read_name(p, len, off, soa->owner, &next) != 0 ||
        len - next < 10)
        return false;
    soa->owner_off = off;
    if (p[off] >= 0xC0)
        soa->owner_off = (size_t)(((p[off] & 0x3F) << 8) | p[off + 1]);
    if (((p[next] << 8) | p[next + 1]) != LK_DNS_T_SOA || ((p[next + 2] << 8) | p[next + 3]) != 1)
        return false;
    soa->ttl = (uint32_t)p[next + 4] << 24 | (uint32_t)p[next + 5] << 16 |
               (uint32_t)p[next + 6] << 8 | p[next + 7];
    size_t rdlen = (size_t)((p[next + 8] << 8) | p[next + 9]), rd = next + 10;
    if (rdlen > len - rd || lk_dns_read_name(p, rd + rdlen, rd, soa->mname, &next) != 0 ||
        lk_dns_read_name(p, rd + rdlen, next, soa->rname, &next) != 0 || rd + rdlen - next != 20)
        return false;
    uint32_t *v[5] = { &soa->serial, &soa->refresh, &soa->retry, &soa->expire, &soa->minimum };
    for (int i = 0; i < 5; i++, next += 4)
        *v[i] = (uint32_t)p[next] << 24 | (uint32_t)p[next + 1] << 16 | (uint32_t)p[next + 2] << 8 |
                p[next + 3];
    return true;
}

struct soa_case {
    const char *name;
    uint16_t qtype;
    int rcode;
    const char *owner; /* NULL: no SOA */
};

static const char *const nested_names[] = { "tiny-cow.api.example.com", "tiny-cow.example.com",
                                            "lonely.test" };
static const char *const nested_domains[] = { "example.com", "api.example.com" };
static const struct lk_dns_zones nested = { nested_names, 3, nested_domains, 2 };

static const struct soa_case soa_cases[] = {
    { "other-cow.example.com", LK_DNS_T_A, LK_DNS_NXDOMAIN, "example.com" },
    { "a.b.c.example.com", LK_DNS_T_AAAA, LK_DNS_NXDOMAIN, "example.com" },
    { "x.api.example.com", LK_DNS_T_A, LK_DNS_NXDOMAIN, "api.example.com" },
    { "tiny-cow.example.com", LK_DNS_T_MX, LK_DNS_NOERROR, "example.com" },
    { "a.tiny-cow.example.com", LK_DNS_T_TXT, LK_DNS_NOERROR, "example.com" },
    { "tiny-cow.api.example.com", LK_DNS_T_SOA, LK_DNS_NOERROR, "api.example.com" },
    { "b.tiny-cow.api.example.com", LK_DNS_T_CNAME, LK_DNS_NOERROR, "api.example.com" },
    { "tiny-cow.example.com", LK_DNS_T_A, LK_DNS_NOERROR, NULL },
    { "tiny-cow.example.com", LK_DNS_T_ANY, LK_DNS_NOERROR, NULL },
    /* A registered name below no managed domain: no zone to name. */
    { "lonely.test", LK_DNS_T_MX, LK_DNS_NOERROR, NULL },
};

/* RFC 2308 §3, §5: NXDOMAIN and NODATA answers for managed names carry one
 * SOA in the authority section, owned by the managed domain (the longest
 * that matches), TTL and MINIMUM 60 (DESIGN §2.9), so resolvers cache the
 * negative answer for as long as a positive one. */
static void test_negative_answers_carry_soa(void)
{
    for (size_t i = 0; i < sizeof(soa_cases) / sizeof(soa_cases[0]); i++) {
        const struct soa_case *c = &soa_cases[i];
        uint8_t q[512], out[512];
        int qlen = lk_dns_build_query(1, c->name, c->qtype, i & 1 ? 1232 : 0, q, sizeof(q));
        int n = lk_dns_answer(q, (size_t)qlen, &nested, out, sizeof(out));
        struct lk_dns_msg m;
        CHECK(n > 0 && lk_dns_parse(out, (size_t)n, &m) == 0);
        if (n <= 0)
            continue;
        if (LK_DNS_RCODE(m.flags) != c->rcode)
            fprintf(stderr, "  case %s\n", c->name);
        CHECK_INT_EQ(LK_DNS_RCODE(m.flags), c->rcode);
        CHECK_INT_EQ(m.has_edns, (i & 1) != 0);
        struct soa soa;
        if (c->owner == NULL) {
            CHECK_INT_EQ(m.n_authority, 0);
            continue;
        }
        CHECK(m.flags & LK_DNS_FLAG_AA);
        CHECK_INT_EQ(m.n_answer, 0);
        bool has_soa = read_soa(out, (size_t)n, &m, &soa);
        CHECK(has_soa);
        if (!has_soa) {
            fprintf(stderr, "  case %s\n", c->name);
            continue;
        }
        CHECK_STR_EQ(soa.owner, c->owner);
        CHECK_STR_EQ(soa.mname, "localhost");
        CHECK_STR_EQ(soa.rname, "hostmaster.localhost");
        CHECK_INT_EQ(soa.ttl, LK_DNS_TTL);
        CHECK_INT_EQ(soa.serial, 1);
        CHECK(soa.refresh > 0 && soa.retry > 0 && soa.expire > soa.refresh);
        CHECK_INT_EQ(soa.minimum, LK_DNS_TTL);
        /* The owner points into the echoed question. */
        CHECK(soa.owner_off > 12 && soa.owner_off < m.question_end);
    }

    /* The owner keeps the query's case (it is the question's own suffix). */
    uint8_t q[512], out[512];
    int qlen = lk_dns_build_query(2, "No-Cow.API.Example.COM", LK_DNS_T_A, 0, q, sizeof(q));
    int n = lk_dns_answer(q, (size_t)qlen, &nested, out, sizeof(out));
    struct lk_dns_msg m;
    struct soa soa;
    CHECK(n > 0 && lk_dns_parse(out, (size_t)n, &m) == 0);
    CHECK(read_soa(out, (size_t)n, &m, &soa));
    CHECK_STR_EQ(soa.owner, "api.example.com");
    CHECK_MEM_EQ(out + soa.owner_off, 17,
                 "\x03"
                 "API\x07"
                 "Example\x03"
                 "COM\x00",
                 17);

    /* Without room for the SOA: header and question with TC, nothing else. */
    qlen = lk_dns_build_query(3, "nope.example.com", LK_DNS_T_A, 0, q, sizeof(q));
    int full = lk_dns_answer(q, (size_t)qlen, &zones, out, sizeof(out));
    n = lk_dns_answer(q, (size_t)qlen, &zones, out, (size_t)full - 1);
    CHECK_INT_EQ(n, qlen);
    CHECK(n > 0 && lk_dns_parse(out, (size_t)n, &m) == 0);
    CHECK(m.flags & LK_DNS_FLAG_TC);
    CHECK_INT_EQ(m.n_authority, 0);

    /* Other answers carry none: forwarded errors, REFUSED, FORMERR. */
    qlen = lk_dns_build_query(4, "nope.example.com", LK_DNS_T_A, 0, q, sizeof(q));
    n = lk_dns_build_error(q, (size_t)qlen, LK_DNS_SERVFAIL, out, sizeof(out));
    CHECK(n > 0 && lk_dns_parse(out, (size_t)n, &m) == 0);
    CHECK_INT_EQ(m.n_authority, 0);
    /* Classes other than IN and ANY are REFUSED, below a registered name
     * or not. */
    for (int i = 0; i < 2; i++) {
        qlen = lk_dns_build_query(5, i ? "nope.example.com" : "tiny-cow.example.com", LK_DNS_T_MX,
                                  0, q, sizeof(q));
        q[qlen - 1] = 3; /* class CH */
        n = lk_dns_answer(q, (size_t)qlen, &zones, out, sizeof(out));
        CHECK(n > 0 && lk_dns_parse(out, (size_t)n, &m) == 0);
        CHECK_INT_EQ(LK_DNS_RCODE(m.flags), LK_DNS_REFUSED);
        CHECK_INT_EQ(m.n_authority, 0);
    }
}

/* RFC 6891 §7: a relayed answer cut for UDP keeps header, question and OPT. */
static void test_truncate_relayed_answer(void)
{
    uint8_t msg[1024];
    struct lk_dns_msg m;
    for (int edns = 0; edns < 2; edns++) {
        int qlen = lk_dns_build_query(0x77, "Big.Example.org", LK_DNS_T_A, 0, msg, sizeof(msg));
        size_t len = (size_t)qlen;
        msg[2] = 0x81; /* QR, RD; RA, NXDOMAIN-less rcode 0 */
        msg[3] = 0x80;
        msg[7] = 40;
        for (int i = 0; i < 40; i++) {
            static const uint8_t rr[] = { 0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 33, 0, 4, 192, 0, 2, 7 };
            memcpy(msg + len, rr, sizeof(rr));
            len += sizeof(rr);
        }
        if (edns) {
            /* OPT: size 4096, extended rcode 1, version 0, DO, one option. */
            static const uint8_t opt[] = { 0, 0, 41, 0x10, 0, 1, 0, 0x80, 0, 0, 4, 0, 10, 0, 0 };
            memcpy(msg + len, opt, sizeof(opt));
            len += sizeof(opt);
            msg[11] = 1;
        }
        CHECK_INT_EQ(lk_dns_parse(msg, len, &m), 0);
        size_t n = lk_dns_truncate(msg, len);
        CHECK_INT_EQ(n, (size_t)qlen + (edns ? 11 : 0));
        CHECK_INT_EQ(lk_dns_parse(msg, n, &m), 0);
        CHECK_INT_EQ(m.parsed_len, n);
        CHECK_INT_EQ(m.id, 0x77);
        CHECK(m.flags & LK_DNS_FLAG_TC);
        CHECK(m.flags & LK_DNS_FLAG_QR);
        CHECK_INT_EQ(m.n_question, 1);
        CHECK_STR_EQ(m.qname, "big.example.org");
        CHECK_INT_EQ(m.n_answer + m.n_authority, 0);
        CHECK_INT_EQ(m.has_edns, edns != 0);
        if (edns) {
            CHECK_INT_EQ(m.edns_udp_size, 4096);
            CHECK_INT_EQ(m.edns_ext_rcode, 1);
            CHECK(m.edns_do);
        }
    }
    /* Not parseable: the header alone. */
    uint8_t junk[20] = { 1, 2, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0x3F, 'a' };
    CHECK_INT_EQ(lk_dns_truncate(junk, sizeof(junk)), 12);
    CHECK_INT_EQ(lk_dns_parse(junk, 12, &m), 0);
    CHECK_INT_EQ(m.n_question + m.n_answer + m.n_additional, 0);
    CHECK(m.flags & LK_DNS_FLAG_TC);
    CHECK_INT_EQ(lk_dns_truncate(junk, 5), 5);
}

int main(void)
{
    RUN(test_answer_table);
    RUN(test_address_records);
    RUN(test_question_case_is_echoed);
    RUN(test_edns);
    RUN(test_truncation);
    RUN(test_malformed);
    RUN(test_name_limits);
    RUN(test_escapes_and_pointers);
    RUN(test_error_builder);
    RUN(test_name_at_or_under);
    RUN(test_negative_answers_carry_soa);
    RUN(test_truncate_relayed_answer);
    return DONE();
}
