/*
 * dns.c - DNS wire codec and the responder decision.
 *
 * Invariants: every read goes through a length check against the message
 * end (rd16/rd32 are only called after one), and every write goes through
 * struct writer, which refuses to pass its capacity and remembers that it
 * overflowed. Names are decompressed on both read and write, so an answer
 * never carries a pointer into the query.
 */
#include "proto/dns.h"

#include <string.h>

#include "core/err.h"
#include "core/str.h"

struct writer {
    uint8_t *out;
    size_t cap;
    size_t len;
    bool overflow;
};

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put(struct writer *w, const void *p, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->out + w->len, p, n);
    w->len += n;
}

static void put8(struct writer *w, unsigned v)
{
    uint8_t b = (uint8_t)v;
    put(w, &b, 1);
}

static void put16(struct writer *w, unsigned v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    put(w, b, 2);
}

static void put32(struct writer *w, uint32_t v)
{
    put16(w, v >> 16);
    put16(w, v & 0xFFFF);
}

static bool is_plain(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '*';
}

/* Appends one label in presentation form; the caller sized out for the
 * worst case (255 wire bytes, every byte escaped as \DDD). */
static size_t append_label(char *out, size_t n, const uint8_t *label, size_t label_len)
{
    for (size_t i = 0; i < label_len; i++) {
        uint8_t c = label[i];
        if (is_plain(c)) {
            out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : (char)c;
            continue;
        }
        out[n++] = '\\';
        out[n++] = (char)('0' + c / 100);
        out[n++] = (char)('0' + (c / 10) % 10);
        out[n++] = (char)('0' + c % 10);
    }
    return n;
}

/* Walks the name at off, following pointers, and renders it as text
 * (out != NULL) and/or copies its labels uncompressed to w (w != NULL).
 * *next is the offset just past the name where it starts. */
static int walk_name(const uint8_t *p, size_t len, size_t off, char *out, struct writer *w,
                     size_t *next)
{
    size_t pos = off, text_len = 0, wire = 0, end_after = 0;
    int hops = 0;
    bool jumped = false;

    for (;;) {
        if (pos >= len)
            return LK_EPARSE;
        uint8_t c = p[pos];
        if ((c & 0xC0) == 0xC0) {
            if (pos + 1 >= len)
                return LK_EPARSE;
            size_t target = ((size_t)(c & 0x3F) << 8) | p[pos + 1];
            /* RFC 1035 §4.1.4: a pointer names a prior occurrence. */
            if (target >= pos || ++hops > LK_DNS_MAX_PTR_HOPS)
                return LK_EPARSE;
            if (!jumped)
                end_after = pos + 2;
            jumped = true;
            pos = target;
            continue;
        }
        if (c & 0xC0)
            return LK_EPARSE; /* 0x40 and 0x80 label types are obsolete or unused */
        if (c == 0)
            break;
        if (c > len - pos - 1)
            return LK_EPARSE;
        wire += 1u + c;
        if (wire + 1 > 255)
            return LK_EPARSE;
        if (out != NULL) {
            if (text_len > 0)
                out[text_len++] = '.';
            text_len = append_label(out, text_len, p + pos + 1, c);
        }
        if (w != NULL)
            put(w, p + pos, 1u + c);
        pos += 1u + c;
    }
    if (!jumped)
        end_after = pos + 1;
    if (out != NULL)
        out[text_len] = '\0';
    if (w != NULL)
        put8(w, 0);
    *next = end_after;
    return 0;
}

int lk_dns_read_name(const uint8_t *p, size_t len, size_t off, char *out, size_t *next)
{
    return walk_name(p, len, off, out, NULL, next);
}

static int parse_question(const uint8_t *p, size_t len, size_t *pos, struct lk_dns_msg *m,
                          bool keep)
{
    char scratch[LK_DNS_NAME_TEXT_MAX];
    size_t next;
    int rc = walk_name(p, len, *pos, keep ? m->qname : scratch, NULL, &next);
    if (rc != 0)
        return rc;
    if (len - next < 4)
        return LK_EPARSE;
    if (keep) {
        m->question_off = *pos;
        m->qtype = rd16(p + next);
        m->qclass = rd16(p + next + 2);
        m->question_end = next + 4;
    }
    *pos = next + 4;
    return 0;
}

static int take_opt(const struct lk_dns_rr *rr, struct lk_dns_msg *m)
{
    if (m->has_edns || rr->name[0] != '\0')
        return LK_EPARSE; /* RFC 6891 §6.1.1: one OPT, owned by the root */
    m->has_edns = true;
    m->edns_udp_size = rr->rclass;
    m->edns_ext_rcode = (uint8_t)(rr->ttl >> 24);
    m->edns_version = (uint8_t)(rr->ttl >> 16);
    m->edns_do = (rr->ttl & 0x8000) != 0;
    return 0;
}

/* Parses one record at *pos; section 0 = answer, 1 = authority, 2 = additional. */
static int parse_rr(const uint8_t *p, size_t len, size_t *pos, int section, struct lk_dns_msg *m)
{
    struct lk_dns_rr rr;
    size_t next;
    int rc = walk_name(p, len, *pos, rr.name, NULL, &next);
    if (rc != 0)
        return rc;
    if (len - next < 10)
        return LK_EPARSE;
    rr.type = rd16(p + next);
    rr.rclass = rd16(p + next + 2);
    rr.ttl = rd32(p + next + 4);
    rr.rdata_len = rd16(p + next + 8);
    rr.rdata_off = next + 10;
    if (rr.rdata_len > len - rr.rdata_off)
        return LK_EPARSE;
    *pos = rr.rdata_off + rr.rdata_len;
    if (rr.type == LK_DNS_T_OPT)
        return section == 2 ? take_opt(&rr, m) : LK_EPARSE;
    if (section == 0 && m->n_rrs < LK_DNS_MAX_RRS)
        m->rrs[m->n_rrs++] = rr;
    return 0;
}

int lk_dns_parse(const uint8_t *p, size_t len, struct lk_dns_msg *m)
{
    if (len < LK_DNS_HEADER_LEN)
        return LK_EPARSE;
    memset(m, 0, offsetof(struct lk_dns_msg, rrs));
    m->id = rd16(p);
    m->flags = rd16(p + 2);
    m->n_question = rd16(p + 4);
    m->n_answer = rd16(p + 6);
    m->n_authority = rd16(p + 8);
    m->n_additional = rd16(p + 10);

    size_t pos = LK_DNS_HEADER_LEN;
    for (unsigned i = 0; i < m->n_question; i++) {
        int rc = parse_question(p, len, &pos, m, i == 0);
        if (rc != 0)
            return rc;
    }
    const uint16_t counts[3] = { m->n_answer, m->n_authority, m->n_additional };
    for (int s = 0; s < 3; s++) {
        for (unsigned i = 0; i < counts[s]; i++) {
            int rc = parse_rr(p, len, &pos, s, m);
            if (rc != 0)
                return rc;
        }
    }
    m->parsed_len = pos;
    return 0;
}

bool lk_dns_name_at_or_under(const char *name, const char *zone)
{
    size_t n = strlen(name), z = strlen(zone);
    if (n > 0 && name[n - 1] == '.')
        n--; /* "a.example.com." is "a.example.com" */
    if (z == 0)
        return true;
    if (n < z || (n > z && name[n - z - 1] != '.'))
        return false;
    for (size_t i = 0; i < z; i++) {
        char a = name[n - z + i], b = zone[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a + 32);
        if (b >= 'A' && b <= 'Z')
            b = (char)(b + 32);
        if (a != b)
            return false;
    }
    return true;
}

/* What one answer carries besides the echoed question. */
struct reply {
    int rcode; /* may be an extended rcode (BADVERS) */
    bool aa;
    bool tc;
    bool with_question;
    bool want_a, want_aaaa;
    const char *soa_zone; /* owner of the SOA of a negative answer, or NULL */
};

static void put_address_rr(struct writer *w, uint16_t type, const uint8_t *addr, size_t addr_len)
{
    put16(w, 0xC000 | LK_DNS_HEADER_LEN); /* the echoed question name */
    put16(w, type);
    put16(w, LK_DNS_CLASS_IN);
    put32(w, LK_DNS_TTL);
    put16(w, (unsigned)addr_len);
    put(w, addr, addr_len);
}

/* The SOA of a negative answer (RFC 2308 §3): owned by the managed domain,
 * which is a suffix of the question name, so the owner is a pointer into the
 * echoed question (keeping its case). Fixed values: MNAME "localhost.",
 * RNAME "hostmaster.localhost.", serial 1, and TTL = MINIMUM = LK_DNS_TTL,
 * so a name registered later is not denied for longer than a stopped session
 * still resolves (RFC 2308 §5, DESIGN §2.9). */
static void put_soa_rr(struct writer *w, const struct lk_dns_msg *m, const char *zone)
{
    static const uint8_t mname[] = "\x09localhost";
    static const uint8_t rname[] = "\x0ahostmaster\x09localhost";
    size_t zone_labels = 0, skip = 1;
    for (const char *c = zone; *c != '\0'; c++)
        zone_labels += *c == '.';
    zone_labels += zone[0] != '\0';
    for (const char *c = m->qname; *c != '\0'; c++)
        skip += *c == '.';
    skip -= zone_labels; /* the caller checked that qname is below zone */
    size_t off = LK_DNS_HEADER_LEN;
    for (; skip > 0 && off < w->len; skip--)
        off += 1u + w->out[off];
    if (off >= w->len) {
        w->overflow = true; /* cannot happen; never point outside the question */
        return;
    }
    if (w->out[off] == 0)
        put8(w, 0); /* the root */
    else
        put16(w, 0xC000 | (unsigned)off);
    put16(w, LK_DNS_T_SOA);
    put16(w, LK_DNS_CLASS_IN);
    put32(w, LK_DNS_TTL);
    put16(w, (unsigned)(sizeof(mname) + sizeof(rname) + 20));
    put(w, mname, sizeof(mname)); /* the string's NUL is the root label */
    put(w, rname, sizeof(rname));
    put32(w, 1);          /* SERIAL */
    put32(w, 3600);       /* REFRESH */
    put32(w, 600);        /* RETRY */
    put32(w, 86400);      /* EXPIRE */
    put32(w, LK_DNS_TTL); /* MINIMUM: the negative TTL */
}

static void write_reply(const uint8_t *query, size_t qlen, const struct lk_dns_msg *m,
                        const struct reply *r, struct writer *w)
{
    static const uint8_t v4[4] = { 127, 0, 0, 1 };
    static const uint8_t v6[16] = { [15] = 1 };
    uint16_t qflags = rd16(query + 2);
    unsigned flags = LK_DNS_FLAG_QR | (qflags & 0x7800) | (qflags & LK_DNS_FLAG_RD) |
                     LK_DNS_FLAG_RA | (unsigned)(r->rcode & 0xF);
    if (r->aa)
        flags |= LK_DNS_FLAG_AA;
    if (r->tc)
        flags |= LK_DNS_FLAG_TC;
    bool edns = m != NULL && m->has_edns;
    unsigned n_an = r->tc ? 0 : (unsigned)r->want_a + (unsigned)r->want_aaaa;
    bool soa = !r->tc && r->with_question && r->soa_zone != NULL;

    put(w, query, 2);
    put16(w, flags);
    put16(w, r->with_question ? 1 : 0);
    put16(w, n_an);
    put16(w, soa ? 1 : 0);
    put16(w, edns ? 1 : 0);
    if (r->with_question) {
        /* The question parsed when m was built: its name is rewritten
         * uncompressed, then QTYPE and QCLASS (the last 4 bytes) copied. */
        size_t next;
        if (walk_name(query, qlen, m->question_off, NULL, w, &next) == 0)
            put(w, query + m->question_end - 4, 4);
    }
    if (n_an > 0 && r->want_a)
        put_address_rr(w, LK_DNS_T_A, v4, sizeof(v4));
    if (n_an > 0 && r->want_aaaa)
        put_address_rr(w, LK_DNS_T_AAAA, v6, sizeof(v6));
    if (soa && !w->overflow)
        put_soa_rr(w, m, r->soa_zone);
    if (edns) {
        put8(w, 0);
        put16(w, LK_DNS_T_OPT);
        put16(w, LK_DNS_OUR_EDNS_SIZE);
        /* Extended rcode; the query's DO bit copied (RFC 3225 §3). */
        put32(w, (uint32_t)((r->rcode >> 4) & 0xFF) << 24 | (m->edns_do ? 0x8000u : 0));
        put16(w, 0);
    }
}

/* Writes the reply; when it does not fit, retries without records and with
 * TC, then without the question. Returns the length or LK_EPARSE. */
static int emit(const uint8_t *query, size_t qlen, const struct lk_dns_msg *m, struct reply r,
                uint8_t *out, size_t outcap)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        struct writer w = { out, outcap, 0, false };
        write_reply(query, qlen, m, &r, &w);
        if (!w.overflow)
            return (int)w.len;
        r.tc = true;
        if (attempt == 1)
            r.with_question = false;
    }
    return LK_EPARSE;
}

/* The first entry of list that name is at or under, or NULL. */
static const char *find_in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (list[i] != NULL && lk_dns_name_at_or_under(name, list[i]))
            return list[i];
    }
    return NULL;
}

/* The longest managed domain that name lies strictly below, or NULL: the
 * zone whose SOA a negative answer carries. */
static const char *enclosing_domain(const char *name, const struct lk_dns_zones *z)
{
    const char *best = NULL;
    for (size_t i = 0; i < z->n_domains; i++) {
        const char *d = z->domains[i];
        if (d != NULL && lk_dns_name_at_or_under(name, d) &&
            !lk_str_ieq(lk_str_c(name), lk_str_c(d)) && (best == NULL || strlen(d) > strlen(best)))
            best = d;
    }
    return best;
}

/* True for a question about one of our names that we refuse: classes other
 * than IN and ANY (our zones are class IN) and zone transfers, which have no
 * zone to send (RFC 5936 §2.2.1: REFUSED when a transfer is not allowed). */
static bool refused_here(const struct lk_dns_msg *m)
{
    return (m->qclass != LK_DNS_CLASS_IN && m->qclass != LK_DNS_CLASS_ANY) ||
           m->qtype == LK_DNS_T_AXFR || m->qtype == LK_DNS_T_IXFR;
}

/* Fills r for a well-formed standard query; false means "forward". */
static bool decide(const struct lk_dns_msg *m, const struct lk_dns_zones *z, struct reply *r)
{
    const char *registered = find_in_list(m->qname, z->names, z->n_names);
    if (registered != NULL) {
        if (refused_here(m)) {
            r->rcode = LK_DNS_REFUSED;
            return true;
        }
        r->aa = true;
        r->want_a = m->qtype == LK_DNS_T_A || m->qtype == LK_DNS_T_ANY;
        r->want_aaaa = m->qtype == LK_DNS_T_AAAA || m->qtype == LK_DNS_T_ANY;
        /* NODATA: the SOA of the session's {domain} (RFC 2308 §2.2, §3). */
        if (!r->want_a && !r->want_aaaa)
            r->soa_zone = enclosing_domain(registered, z);
        return true;
    }
    /* A managed domain itself ("example.com", the shared deployment) is
     * forwarded (SPEC §5.6); only names below one are ours to deny. */
    for (size_t i = 0; i < z->n_domains; i++) {
        if (z->domains[i] != NULL && lk_str_ieq(lk_str_c(m->qname), lk_str_c(z->domains[i])))
            return false;
    }
    const char *zone = enclosing_domain(m->qname, z);
    if (zone != NULL) {
        if (refused_here(m)) {
            r->rcode = LK_DNS_REFUSED;
            return true;
        }
        r->aa = true;
        r->rcode = LK_DNS_NXDOMAIN;
        r->soa_zone = zone; /* RFC 2308 §3 */
        return true;
    }
    return false;
}

int lk_dns_answer(const uint8_t *query, size_t qlen, const struct lk_dns_zones *zones, uint8_t *out,
                  size_t outcap)
{
    struct lk_dns_msg m;
    struct reply r = { .rcode = LK_DNS_NOERROR };

    if (qlen < LK_DNS_HEADER_LEN || outcap < LK_DNS_HEADER_LEN)
        return LK_EPARSE;
    if (rd16(query + 2) & LK_DNS_FLAG_QR)
        return LK_EPARSE; /* never answer a response: that is how loops start */
    if (lk_dns_parse(query, qlen, &m) != 0) {
        r.rcode = LK_DNS_FORMERR;
        return emit(query, qlen, NULL, r, out, outcap);
    }
    r.with_question = m.n_question == 1;
    if (LK_DNS_OPCODE(m.flags) != 0)
        r.rcode = LK_DNS_NOTIMP;
    else if (m.n_question != 1)
        r.rcode = LK_DNS_FORMERR;
    else if (m.has_edns && m.edns_version > 0)
        r.rcode = LK_DNS_BADVERS;
    else if (!decide(&m, zones, &r))
        return LK_DNS_FORWARD;
    return emit(query, qlen, &m, r, out, outcap);
}

int lk_dns_build_error(const uint8_t *query, size_t qlen, int rcode, uint8_t *out, size_t outcap)
{
    struct lk_dns_msg m;
    struct reply r = { .rcode = rcode };

    if (qlen < LK_DNS_HEADER_LEN || outcap < LK_DNS_HEADER_LEN)
        return LK_EPARSE;
    if (lk_dns_parse(query, qlen, &m) != 0)
        return emit(query, qlen, NULL, r, out, outcap);
    r.with_question = m.n_question == 1;
    return emit(query, qlen, &m, r, out, outcap);
}

size_t lk_dns_truncate(uint8_t *msg, size_t len)
{
    struct lk_dns_msg m;
    if (len < LK_DNS_HEADER_LEN)
        return len;
    bool ok = lk_dns_parse(msg, len, &m) == 0 && m.n_question == 1;
    msg[2] |= LK_DNS_FLAG_TC >> 8;
    msg[4] = 0;
    msg[5] = ok ? 1 : 0;
    memset(msg + 6, 0, 6);
    if (!ok)
        return LK_DNS_HEADER_LEN;
    /* The question bytes stay where they were; the OPT, which followed
     * them, fits behind them. */
    struct writer w = { msg, len, m.question_end, false };
    if (m.has_edns && len - m.question_end >= 11) {
        put8(&w, 0);
        put16(&w, LK_DNS_T_OPT);
        put16(&w, m.edns_udp_size);
        put32(&w, (uint32_t)m.edns_ext_rcode << 24 | (uint32_t)m.edns_version << 16 |
                      (m.edns_do ? 0x8000u : 0));
        put16(&w, 0);
        msg[11] = 1;
    }
    /* A question name pointing into the header bytes just rewritten may no
     * longer read: then the header alone. */
    if (lk_dns_parse(msg, w.len, &m) != 0) {
        msg[5] = msg[11] = 0;
        return LK_DNS_HEADER_LEN;
    }
    return w.len;
}

size_t lk_dns_udp_limit(const uint8_t *query, size_t qlen)
{
    struct lk_dns_msg m;
    if (lk_dns_parse(query, qlen, &m) != 0 || !m.has_edns || m.edns_udp_size < LK_DNS_UDP_MAX)
        return LK_DNS_UDP_MAX;
    return m.edns_udp_size > LK_DNS_EDNS_MAX ? LK_DNS_EDNS_MAX : m.edns_udp_size;
}

/* Encodes a dotted name (no escapes) as wire labels. */
static int put_text_name(struct writer *w, const char *name)
{
    size_t n = strlen(name);
    if (n > 0 && name[n - 1] == '.')
        n--;
    if (n > 253)
        return LK_EINVAL;
    size_t start = 0;
    while (start < n) {
        const char *dot = memchr(name + start, '.', n - start);
        size_t end = dot ? (size_t)(dot - name) : n;
        size_t label_len = end - start;
        if (label_len == 0 || label_len > 63)
            return LK_EINVAL;
        put8(w, (unsigned)label_len);
        put(w, name + start, label_len);
        start = end + 1;
    }
    put8(w, 0);
    return 0;
}

int lk_dns_build_query(uint16_t id, const char *name, uint16_t qtype, uint16_t edns_size,
                       uint8_t *out, size_t outcap)
{
    struct writer w = { out, outcap, 0, false };
    put16(&w, id);
    put16(&w, LK_DNS_FLAG_RD);
    put16(&w, 1);
    put16(&w, 0);
    put16(&w, 0);
    put16(&w, edns_size > 0 ? 1 : 0);
    if (put_text_name(&w, name) != 0)
        return LK_EINVAL;
    put16(&w, qtype);
    put16(&w, LK_DNS_CLASS_IN);
    if (edns_size > 0) {
        put8(&w, 0);
        put16(&w, LK_DNS_T_OPT);
        put16(&w, edns_size);
        put32(&w, 0);
        put16(&w, 0);
    }
    return w.overflow ? LK_ELIMIT : (int)w.len;
}
