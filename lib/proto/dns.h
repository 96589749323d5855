/*
 * dns.h - the DNS wire codec and the pure responder decision (DESIGN §2.9).
 *
 * This module reads DNS messages (RFC 1035 header, question, resource
 * records, EDNS0 OPT of RFC 6891) and builds the answers of the local
 * responder. It is pure: no sockets, no clock, no globals. Every read is
 * bounds-checked against the message length, compression pointers must point
 * strictly backwards and are followed at most LK_DNS_MAX_PTR_HOPS times, and no
 * builder ever writes past the capacity it is given.
 *
 * The responder decision, lk_dns_answer(), takes a raw query and a borrowed
 * view of the zones (registered names and managed domains) and either writes
 * an answer, asks the caller to forward the query upstream, or asks it to
 * drop the packet. Forwarding itself is I/O and lives in lib/net/dns_server.
 *
 * Names in presentation form are lowercase, have no trailing dot ("" is the
 * root), and escape every byte outside [A-Za-z0-9_*-] as \DDD (so a label
 * holding a dot can never be confused with two labels).
 *
 * All functions may be called from any thread; they keep no state.
 */
#ifndef LK_PROTO_DNS_H
#define LK_PROTO_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits (STYLE §3.5: peer-controlled sizes are named here). */
#define LK_DNS_HEADER_LEN    12
#define LK_DNS_UDP_MAX       512   /* answer size for a UDP query without EDNS */
#define LK_DNS_EDNS_MAX      4096  /* largest EDNS payload size honoured */
#define LK_DNS_OUR_EDNS_SIZE 1232  /* payload size we advertise in our OPT */
#define LK_DNS_TCP_MAX       65535 /* largest message on TCP (2-byte prefix) */
#define LK_DNS_MAX_PTR_HOPS  16    /* compression pointers followed per name */
#define LK_DNS_MAX_RRS       8     /* records kept by lk_dns_parse (all are checked) */
#define LK_DNS_NAME_TEXT_MAX 1024  /* presentation buffer: 255 wire bytes, \DDD escapes */
#define LK_DNS_TTL           60    /* TTL of our A/AAAA answers (DESIGN §2.9) */

/* Header flag bits (host order of the 16-bit flags word). */
#define LK_DNS_FLAG_QR       0x8000
#define LK_DNS_FLAG_AA       0x0400
#define LK_DNS_FLAG_TC       0x0200
#define LK_DNS_FLAG_RD       0x0100
#define LK_DNS_FLAG_RA       0x0080
#define LK_DNS_OPCODE(flags) (((flags) >> 11) & 0xF)
#define LK_DNS_RCODE(flags)  ((flags)&0xF)

enum lk_dns_rcode {
    LK_DNS_NOERROR = 0,
    LK_DNS_FORMERR = 1,
    LK_DNS_SERVFAIL = 2,
    LK_DNS_NXDOMAIN = 3,
    LK_DNS_NOTIMP = 4,
    LK_DNS_REFUSED = 5,
    LK_DNS_BADVERS = 16, /* extended rcode: needs an OPT record */
};

enum lk_dns_type {
    LK_DNS_T_A = 1,
    LK_DNS_T_NS = 2,
    LK_DNS_T_CNAME = 5,
    LK_DNS_T_SOA = 6,
    LK_DNS_T_MX = 15,
    LK_DNS_T_TXT = 16,
    LK_DNS_T_AAAA = 28,
    LK_DNS_T_OPT = 41,
    LK_DNS_T_IXFR = 251,
    LK_DNS_T_AXFR = 252,
    LK_DNS_T_ANY = 255,
};

#define LK_DNS_CLASS_IN  1
#define LK_DNS_CLASS_ANY 255

/* One resource record of the answer section, as parsed. rdata_off/rdata_len
 * locate the RDATA inside the parsed message (borrowed: valid as long as the
 * message bytes). */
struct lk_dns_rr {
    char name[LK_DNS_NAME_TEXT_MAX];
    uint16_t type;
    uint16_t rclass;
    uint32_t ttl;
    size_t rdata_off;
    uint16_t rdata_len;
};

/* A parsed message. Plain value type; holds no pointers into the input. */
struct lk_dns_msg {
    uint16_t id;
    uint16_t flags;
    uint16_t n_question, n_answer, n_authority, n_additional; /* header counts */
    /* First question (valid when n_question >= 1). */
    char qname[LK_DNS_NAME_TEXT_MAX];
    uint16_t qtype;
    uint16_t qclass;
    size_t question_off; /* first byte of the first question */
    size_t question_end; /* one past the first question */
    /* EDNS0 (an OPT record in the additional section). */
    bool has_edns;
    uint16_t edns_udp_size;
    uint8_t edns_ext_rcode; /* upper 8 bits of the 12-bit rcode */
    uint8_t edns_version;
    bool edns_do;
    /* Answer-section records, the first LK_DNS_MAX_RRS of them. */
    size_t n_rrs;
    struct lk_dns_rr rrs[LK_DNS_MAX_RRS];
    size_t parsed_len; /* bytes covered by header and all sections */
};

/* The zones the responder owns: a borrowed view, valid for one call.
 * names are registered "{session}.{domain}" names, domains the managed
 * domains; both lowercase or not (comparison is ASCII case-insensitive),
 * without a trailing dot. */
struct lk_dns_zones {
    const char *const *names;
    size_t n_names;
    const char *const *domains;
    size_t n_domains;
};

/* Parses a whole message (query or response): header, every question, every
 * record of the three record sections (only the first question and the first
 * LK_DNS_MAX_RRS answers are kept, the rest are checked and skipped), and the
 * EDNS OPT record. Trailing bytes after the last section are ignored.
 * Returns 0, or LK_EPARSE (truncated, bad label, pointer loop or forward
 * pointer, name over 255 bytes, RDATA past the end, two OPT records, OPT not
 * at the root). *m is fully written on success and unspecified on failure. */
int lk_dns_parse(const uint8_t *p, size_t len, struct lk_dns_msg *m);

/* Decodes the (possibly compressed) name at p[off] into presentation form.
 * On success stores in *next the offset just past the name as it appears at
 * off (a pointer counts 2 bytes) and returns 0; else LK_EPARSE. out must hold
 * LK_DNS_NAME_TEXT_MAX bytes. */
int lk_dns_read_name(const uint8_t *p, size_t len, size_t off, char *out, size_t *next);

/* True when name equals zone or lies below it (ends with "." + zone), ASCII
 * case-insensitive; a final dot of name (the root) is ignored. The empty
 * zone (root) contains every name. */
bool lk_dns_name_at_or_under(const char *name, const char *zone);

/* The responder decision for one raw query (DESIGN §2.9):
 *   - a name at or under a registered name: A 127.0.0.1 / AAAA ::1 (TTL
 *     LK_DNS_TTL; ANY gets both), NODATA (NOERROR, no records) for other
 *     types; authoritative;
 *   - other names below a managed domain: NXDOMAIN, authoritative;
 *   - in both cases REFUSED (not authoritative) for classes other than IN
 *     and ANY and for zone transfers (AXFR, IXFR);
 *   - every other name, the managed domains themselves included: return
 *     LK_DNS_FORWARD and write nothing.
 * NXDOMAIN and NODATA carry one SOA in the authority section (RFC 2308 §3):
 * owned by the longest managed domain above the name (for NODATA, above the
 * registered name; none when there is no such domain), MNAME "localhost.",
 * RNAME "hostmaster.localhost.", serial 1, TTL and MINIMUM LK_DNS_TTL.
 * Malformed queries with a readable header get FORMERR, opcodes other than
 * QUERY get NOTIMP, EDNS versions above 0 get BADVERS. The answer echoes the
 * question bytes as received (case kept) and carries an OPT record when the
 * query did. When the answer does not fit outcap, the header and question
 * are sent alone with TC set (the client retries over TCP): pass
 * lk_dns_udp_limit() as outcap for UDP and LK_DNS_TCP_MAX for TCP.
 * Returns the answer length (> 0), LK_DNS_FORWARD, or LK_EPARSE when the
 * packet must be dropped (shorter than a header, a response, or outcap too
 * small for even a header). */
#define LK_DNS_FORWARD 0
int lk_dns_answer(const uint8_t *query, size_t qlen, const struct lk_dns_zones *zones, uint8_t *out,
                  size_t outcap);

/* Builds an error answer with rcode (FORMERR, SERVFAIL, NOTIMP, REFUSED...)
 * for a raw query: same id, opcode and RD, QR and RA set, the question
 * echoed when it parses (and fits), an OPT record when the query had one.
 * Used by the server for SERVFAIL when no upstream answers. Returns the
 * length (> 0) or LK_EPARSE (qlen < 12 or outcap < 12). */
int lk_dns_build_error(const uint8_t *query, size_t qlen, int rcode, uint8_t *out, size_t outcap);

/* Cuts the response msg (len bytes) in place to what a UDP client gets when
 * the whole does not fit: the header with TC set and no records, the
 * question, and the OPT record when msg had one (RFC 6891 §7: header,
 * question and OPT; the OPT keeps the payload size, extended rcode, version
 * and DO bit, not its options). A msg that does not parse, or has other than
 * one question, keeps its header alone (QDCOUNT 0). Returns the new length
 * (never more than len; len itself when len < 12). */
size_t lk_dns_truncate(uint8_t *msg, size_t len);

/* The largest UDP answer the sender of this raw query accepts: its EDNS
 * payload size clamped to [512, LK_DNS_EDNS_MAX], or 512 without EDNS or when
 * the query does not parse. */
size_t lk_dns_udp_limit(const uint8_t *query, size_t qlen);

/* Builds a standard query (RD set) for name (presentation form, trailing dot
 * optional, no escapes) and qtype, with an OPT record advertising edns_size
 * when edns_size > 0. Returns the length or LK_EINVAL (bad name) / LK_ELIMIT
 * (outcap too small). For tests, fuzzing and tools. */
int lk_dns_build_query(uint16_t id, const char *name, uint16_t qtype, uint16_t edns_size,
                       uint8_t *out, size_t outcap);

#endif
