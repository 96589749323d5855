/*
 * test_certs.c - unit tests of lib/net/certs: CA creation (files, mode,
 * extensions), leaf minting verified against the CA, the cache, SPEC §5.5
 * certificate files, and the SNI callback in an in-memory TLS handshake.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "harness.h"
#include "net/certs.h"

static char dir[256];

static void path_of(char *out, size_t n, const char *file)
{
    snprintf(out, n, "%s/%s", dir, file);
}

/* Returns the X509_V_* result of verifying leaf for host against ca alone. */
static int verify(X509 *ca, X509 *leaf, const char *host)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_add_cert(store, ca);
    X509_STORE_CTX_init(ctx, store, leaf, NULL);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set1_host(param, host, 0);
    X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
    int rc = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rc;
}

/* SPEC §5.5: 1975-01-01 to 4096-01-01, for the CA and every leaf. */
static void check_validity(const X509 *x)
{
    struct tm from, to;
    CHECK_INT_EQ(ASN1_TIME_to_tm(X509_get0_notBefore(x), &from), 1);
    CHECK_INT_EQ(ASN1_TIME_to_tm(X509_get0_notAfter(x), &to), 1);
    CHECK_INT_EQ(from.tm_year + 1900, 1975);
    CHECK_INT_EQ(from.tm_mon * 100 + from.tm_mday, 1);
    CHECK_INT_EQ(from.tm_hour * 10000 + from.tm_min * 100 + from.tm_sec, 0);
    CHECK_INT_EQ(to.tm_year + 1900, 4096);
    CHECK_INT_EQ(to.tm_mon * 100 + to.tm_mday, 1);
}

static void test_ca_creation(void)
{
    bool created = false;
    CHECK_INT_EQ(lk_certs_ensure_ca(dir, &created), 0);
    CHECK(created);
    char p[1024];
    struct stat st;
    path_of(p, sizeof(p), LK_CERTS_CA_KEY_FILE);
    CHECK_INT_EQ(stat(p, &st), 0);
    CHECK_INT_EQ(st.st_mode & 0777, 0600);
    FILE *f = fopen(p, "r");
    char line[64] = "";
    CHECK(f != NULL && fgets(line, sizeof(line), f) != NULL);
    CHECK_STR_EQ(line, "-----BEGIN PRIVATE KEY-----\n");
    if (f != NULL)
        fclose(f);

    path_of(p, sizeof(p), LK_CERTS_CA_CERT_FILE);
    f = fopen(p, "r");
    X509 *ca = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    CHECK(ca != NULL);
    if (ca == NULL)
        return;
    char cn[64] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn, sizeof(cn));
    CHECK_STR_EQ(cn, "Linkup Local CA");
    CHECK_INT_EQ(X509_check_ca(ca), 1);
    X509_EXTENSION *bc = X509_get_ext(ca, X509_get_ext_by_NID(ca, NID_basic_constraints, -1));
    CHECK(bc != NULL && X509_EXTENSION_get_critical(bc) == 1);
    CHECK_INT_EQ(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    CHECK_INT_EQ(X509_get_signature_nid(ca), NID_ecdsa_with_SHA256);
    CHECK(X509_cmp_current_time(X509_get0_notBefore(ca)) < 0);
    check_validity(ca);
    EVP_PKEY *pub = X509_get0_pubkey(ca);
    char group[32] = "";
    EVP_PKEY_get_utf8_string_param(pub, "group", group, sizeof(group), NULL);
    CHECK_STR_EQ(group, "prime256v1");
    X509_free(ca);

    /* A second call keeps the existing pair. */
    CHECK_INT_EQ(lk_certs_ensure_ca(dir, &created), 0);
    CHECK(!created);
}

static void test_leaf_minting_and_cache(void)
{
    struct lk_certs *c = NULL;
    CHECK_INT_EQ(lk_certs_open(dir, &c), 0);
    if (c == NULL)
        return;
    static const char *const hosts[] = { "tiny-cow.example.com", "api.tiny-cow.example.com",
                                         "a.b.example.com", "example.com" };
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        X509 *leaf = NULL;
        EVP_PKEY *key = NULL;
        CHECK_INT_EQ(lk_certs_get(c, hosts[i], &leaf, &key), 0);
        CHECK_INT_EQ(verify(lk_certs_ca(c), leaf, hosts[i]), X509_V_OK);
        CHECK_INT_EQ(verify(lk_certs_ca(c), leaf, "other.example.net"),
                     X509_V_ERR_HOSTNAME_MISMATCH);
        CHECK_INT_EQ(X509_check_private_key(leaf, key), 1);
        CHECK_INT_EQ(X509_check_ca(leaf), 0);
        check_validity(leaf);
        X509 *again = NULL;
        EVP_PKEY *key2 = NULL;
        CHECK_INT_EQ(lk_certs_get(c, hosts[i], &again, &key2), 0);
        CHECK(again == leaf); /* cached: the same certificate */
        X509_free(again);
        EVP_PKEY_free(key2);
        X509_free(leaf);
        EVP_PKEY_free(key);
    }
    CHECK_INT_EQ(lk_certs_n_cached(c), 4);
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    CHECK_INT_EQ(lk_certs_get(c, "TINY-COW.example.com.", &x, &k), 0);
    CHECK_INT_EQ(lk_certs_n_cached(c), 4);
    X509_free(x);
    EVP_PKEY_free(k);
    static const char *const bad[] = { "", "a..b", "a b.com", "*.example.com", "-\n.com" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_INT_EQ(lk_certs_get(c, bad[i], &x, &k), LK_EINVAL);
    /* The cache is bounded. */
    for (int i = 0; i < LK_CERTS_CACHE_MAX + 3; i++) {
        char h[64];
        snprintf(h, sizeof(h), "n%d.example.com", i);
        CHECK_INT_EQ(lk_certs_get(c, h, &x, &k), 0);
        X509_free(x);
        EVP_PKEY_free(k);
    }
    CHECK_INT_EQ(lk_certs_n_cached(c), LK_CERTS_CACHE_MAX);
    lk_certs_free(c);
}

static void write_pair(const struct lk_certs *c, const char *name, const char *stem, X509 **out)
{
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    CHECK_INT_EQ(lk_certs_mint(c, name, &x, &k), 0);
    char p[1024], f[300];
    snprintf(f, sizeof(f), "%s.cert.pem", stem);
    path_of(p, sizeof(p), f);
    FILE *fp = fopen(p, "w");
    PEM_write_X509(fp, x);
    fclose(fp);
    snprintf(f, sizeof(f), "%s.key.pem", stem);
    path_of(p, sizeof(p), f);
    fp = fopen(p, "w");
    PEM_write_PKCS8PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL);
    fclose(fp);
    EVP_PKEY_free(k);
    *out = x;
}

static void test_wildcard_files(void)
{
    struct lk_certs *c = NULL;
    CHECK_INT_EQ(lk_certs_open(dir, &c), 0);
    X509 *wild = NULL;
    write_pair(c, "*.other.com", "wildcard_.other.com", &wild);
    char p[1024];
    path_of(p, sizeof(p), "broken.cert.pem"); /* a pair that does not load */
    FILE *fp = fopen(p, "w");
    fputs("not a cert\n", fp);
    fclose(fp);
    path_of(p, sizeof(p), "broken.key.pem");
    fp = fopen(p, "w");
    fputs("not a key\n", fp);
    fclose(fp);
    lk_certs_free(c);

    CHECK_INT_EQ(lk_certs_open(dir, &c), 0);
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    CHECK_INT_EQ(lk_certs_get(c, "tiny-cow.other.com", &x, &k), 0);
    CHECK_INT_EQ(X509_cmp(x, wild), 0); /* the file is preferred */
    CHECK_INT_EQ(verify(lk_certs_ca(c), x, "tiny-cow.other.com"), X509_V_OK);
    X509_free(x);
    EVP_PKEY_free(k);
    CHECK_INT_EQ(lk_certs_n_cached(c), 0);
    /* *.other.com does not match a.b.other.com: a leaf is minted instead. */
    CHECK_INT_EQ(lk_certs_get(c, "a.b.other.com", &x, &k), 0);
    CHECK(X509_cmp(x, wild) != 0);
    CHECK_INT_EQ(verify(lk_certs_ca(c), x, "a.b.other.com"), X509_V_OK);
    X509_free(x);
    EVP_PKEY_free(k);
    X509_free(wild);
    lk_certs_free(c);
}

static bool managed(const char *name, void *data)
{
    (void)data;
    return strcmp(name, "example.com") == 0 ||
           (strlen(name) > 12 && strcmp(name + strlen(name) - 12, ".example.com") == 0);
}

/* Drives the handshake of client cl and server sv, joined by a BIO pair;
 * true when both ends completed it. */
static bool pump(SSL *cl, SSL *sv)
{
    SSL_set_connect_state(cl);
    SSL_set_accept_state(sv);
    int cdone = 0, sdone = 0, failed = 0;
    for (int i = 0; i < 20 && !(cdone && sdone) && !failed; i++) {
        if (!cdone) {
            int r = SSL_do_handshake(cl);
            cdone = r == 1;
            failed |= r <= 0 && SSL_get_error(cl, r) != SSL_ERROR_WANT_READ;
        }
        if (!sdone) {
            int r = SSL_do_handshake(sv);
            sdone = r == 1;
            failed |= r <= 0 && SSL_get_error(sv, r) != SSL_ERROR_WANT_READ;
        }
    }
    return cdone && sdone;
}

/* A client of cctx and a server of sctx joined by a BIO pair, the client
 * asking for sni (NULL: no SNI). */
static void join(SSL_CTX *cctx, SSL_CTX *sctx, const char *sni, SSL **cl, SSL **sv)
{
    *cl = SSL_new(cctx);
    *sv = SSL_new(sctx);
    BIO *a = NULL, *b = NULL;
    BIO_new_bio_pair(&a, 0, &b, 0);
    SSL_set_bio(*cl, a, a);
    SSL_set_bio(*sv, b, b);
    if (sni != NULL) {
        char host[256]; /* the macro casts away const */
        snprintf(host, sizeof(host), "%s", sni);
        SSL_set_tlsext_host_name(*cl, host);
    }
}

/* The subject CN of the certificate sctx serves for sni, unverified, in
 * out ("" when the handshake fails). */
static void served_cn(SSL_CTX *sctx, const char *sni, char *out, size_t out_len)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL *cl = NULL, *sv = NULL;
    join(cctx, sctx, sni, &cl, &sv);
    out[0] = '\0';
    X509 *peer = pump(cl, sv) ? SSL_get1_peer_certificate(cl) : NULL;
    if (peer != NULL)
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, out, (int)out_len);
    X509_free(peer);
    ERR_clear_error();
    SSL_free(cl);
    SSL_free(sv);
    SSL_CTX_free(cctx);
}

/* Runs a handshake over memory BIOs, the client offering the ALPN list
 * offer (wire format, NUL-terminated; "" offers nothing); returns 1 on
 * success and the chosen protocol in alpn_out ("" for none). */
static int handshake_alpn(SSL_CTX *sctx, X509 *ca, const char *sni, const char *offer,
                          char *alpn_out)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), ca);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    if (offer[0] != '\0')
        SSL_CTX_set_alpn_protos(cctx, (const unsigned char *)offer, (unsigned)strlen(offer));
    SSL *cl = NULL, *sv = NULL;
    join(cctx, sctx, sni, &cl, &sv);
    if (sni != NULL)
        SSL_set1_host(cl, sni);
    int ok = pump(cl, sv) && SSL_get_verify_result(cl) == X509_V_OK;
    if (ok && alpn_out != NULL) {
        const unsigned char *proto = NULL;
        unsigned int len = 0;
        SSL_get0_alpn_selected(cl, &proto, &len);
        snprintf(alpn_out, 32, "%.*s", (int)len, proto ? (const char *)proto : "");
    }
    ERR_clear_error();
    SSL_free(cl);
    SSL_free(sv);
    SSL_CTX_free(cctx);
    return ok;
}

static int handshake(SSL_CTX *sctx, X509 *ca, const char *sni, char *alpn_out)
{
    return handshake_alpn(sctx, ca, sni, "\x02h2\x08http/1.1", alpn_out);
}

static void test_sni_handshake(void)
{
    struct lk_certs *c = NULL;
    CHECK_INT_EQ(lk_certs_open(dir, &c), 0);
    SSL_CTX *sctx = lk_certs_new_server_ctx(c, managed, NULL);
    CHECK(sctx != NULL);
    char alpn[32] = "";
    /* SPEC §5.1: ALPN h2, http/1.1, the server's preference first. */
    CHECK_INT_EQ(handshake(sctx, lk_certs_ca(c), "tiny-cow.example.com", alpn), 1);
    CHECK_STR_EQ(alpn, "h2");
    const char *host = "tiny-cow.example.com";
    CHECK_INT_EQ(handshake_alpn(sctx, lk_certs_ca(c), host, "\x08http/1.1\x02h2", alpn), 1);
    CHECK_STR_EQ(alpn, "h2");
    CHECK_INT_EQ(handshake_alpn(sctx, lk_certs_ca(c), host, "\x08http/1.1", alpn), 1);
    CHECK_STR_EQ(alpn, "http/1.1");
    CHECK_INT_EQ(handshake_alpn(sctx, lk_certs_ca(c), host, "\x06spdy/3", alpn), 1);
    CHECK_STR_EQ(alpn, "");
    CHECK_INT_EQ(handshake_alpn(sctx, lk_certs_ca(c), host, "", alpn), 1);
    CHECK_STR_EQ(alpn, "");
    CHECK_INT_EQ(handshake(sctx, lk_certs_ca(c), "api.tiny-cow.example.com", NULL), 1);
    CHECK_INT_EQ(handshake(sctx, lk_certs_ca(c), "example.com", NULL), 1);
    CHECK_INT_EQ(handshake(sctx, lk_certs_ca(c), NULL, NULL), 0);
    CHECK_INT_EQ(handshake(sctx, lk_certs_ca(c), "www.example.org", NULL), 0);
    /* other.com is not managed, but test_wildcard_files left wildcard_.other.com in the
     * directory: the file serves the names it covers (SPEC §5.5); nothing is minted for
     * the others, which get the file SPEC §5.5's name lookup selects (*.other.com for
     * a.b.other.com: the handshake completes, verification fails). */
    size_t cached = lk_certs_n_cached(c);
    CHECK_INT_EQ(handshake(sctx, lk_certs_ca(c), "tiny-cow.other.com", NULL), 1);
    CHECK_INT_EQ(handshake(sctx, lk_certs_ca(c), "a.b.other.com", NULL), 0);
    CHECK_INT_EQ(lk_certs_n_cached(c), cached);
    SSL_CTX_free(sctx);
    lk_certs_free(c);
}

/* Unmanaged names get files by entry name only (SPEC §5.5): a file whose
 * certificate covers a name its file name does not select is not served for
 * it, and among wildcard files the longest suffix of the name wins. */
static void test_unmanaged_names_by_file_name(void)
{
    struct lk_certs *c = NULL;
    CHECK_INT_EQ(lk_certs_open(dir, &c), 0);
    X509 *x = NULL;
    write_pair(c, "*.foo.test", "wildcard_.misnamed.test", &x);
    X509_free(x);
    write_pair(c, "*.x.other.com", "wildcard_.x.other.com", &x);
    X509_free(x);
    lk_certs_free(c);
    CHECK_INT_EQ(lk_certs_open(dir, &c), 0);
    SSL_CTX *sctx = lk_certs_new_server_ctx(c, managed, NULL);
    char cn[256];
    served_cn(sctx, "a.foo.test", cn, sizeof(cn));
    CHECK_STR_EQ(cn, ""); /* the handshake fails */
    served_cn(sctx, "a.misnamed.test", cn, sizeof(cn));
    CHECK_STR_EQ(cn, "*.foo.test"); /* what the name selects, whatever it holds */
    served_cn(sctx, "x.other.com", cn, sizeof(cn));
    CHECK_STR_EQ(cn, "*.x.other.com"); /* "*.x.other.com" before "*.other.com" */
    served_cn(sctx, "y.other.com", cn, sizeof(cn));
    CHECK_STR_EQ(cn, "*.other.com");
    SSL_CTX_free(sctx);
    lk_certs_free(c);
}

static void test_bad_ca_files(void)
{
    char sub[300], p[400];
    snprintf(sub, sizeof(sub), "%s/bad", dir);
    CHECK_INT_EQ(lk_certs_ensure_ca(sub, NULL), 0);
    snprintf(p, sizeof(p), "%s/%s", sub, LK_CERTS_CA_KEY_FILE);
    FILE *fp = fopen(p, "w");
    fputs("garbage\n", fp);
    fclose(fp);
    CHECK_INT_EQ(lk_certs_ensure_ca(sub, NULL), LK_EPARSE);
    struct lk_certs *c = NULL;
    CHECK_INT_EQ(lk_certs_open(sub, &c), LK_EPARSE);
    CHECK_INT_EQ(lk_certs_ensure_ca("/proc/no/such/dir", NULL), LK_EIO);
}

/* Writes text to sub/file (mode 0600). */
static void put(const char *sub, const char *file, const char *text)
{
    char p[400];
    snprintf(p, sizeof(p), "%s/%s", sub, file);
    FILE *fp = fopen(p, "w");
    if (fp == NULL)
        return;
    fputs(text, fp);
    fclose(fp);
}

/* lk_certs_open_lazy(): a CA on disk is only checked with open+fstat; the
 * first lk_certs_new_server_ctx() parses it (DESIGN §2.10, finding 10). */
static void test_lazy_open(void)
{
    char sub[300], why[256] = "";
    snprintf(sub, sizeof(sub), "%s/lazy", dir);
    struct lk_certs *c = NULL;
    bool created = false;
    CHECK_INT_EQ(lk_certs_open_lazy(sub, &c, &created, why, sizeof(why)), 0);
    CHECK(created); /* a missing CA is still made at once */
    CHECK(lk_certs_ca(c) == NULL);
    lk_certs_free(c);

    c = NULL;
    CHECK_INT_EQ(lk_certs_open_lazy(sub, &c, &created, why, sizeof(why)), 0);
    CHECK(!created);
    CHECK_STR_EQ(lk_certs_dir(c), sub);
    CHECK(lk_certs_ca(c) == NULL); /* nothing parsed yet */
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    CHECK_INT_EQ(lk_certs_mint(c, "a.example.com", &x, &k), LK_EIO);
    SSL_CTX *sctx = lk_certs_new_server_ctx(c, managed, NULL);
    CHECK(sctx != NULL);
    CHECK(lk_certs_ca(c) != NULL);
    CHECK_STR_EQ(lk_certs_error(c), "");
    CHECK_INT_EQ(handshake(sctx, lk_certs_ca(c), "tiny-cow.example.com", NULL), 1);
    SSL_CTX_free(sctx);
    lk_certs_free(c);
}

/* What start-up can tell without OpenSSL (LK_EIO + reason) and what only the
 * first TLS use finds (LK_EPARSE + lk_certs_error()). */
static void test_lazy_bad_ca(void)
{
    char sub[300], other[300], why[256] = "";
    snprintf(sub, sizeof(sub), "%s/lazybad", dir);
    snprintf(other, sizeof(other), "%s/lazyother", dir);
    CHECK_INT_EQ(lk_certs_ensure_ca(sub, NULL), 0);
    CHECK_INT_EQ(lk_certs_ensure_ca(other, NULL), 0);
    struct lk_certs *c = NULL;

    put(sub, LK_CERTS_CA_KEY_FILE, "");
    CHECK_INT_EQ(lk_certs_open_lazy(sub, &c, NULL, why, sizeof(why)), LK_EIO);
    CHECK_STR_EQ(why, "linkup_ca.key.pem: empty file");
    CHECK_INT_EQ(lk_certs_open(sub, &c), LK_EIO);

    put(sub, LK_CERTS_CA_KEY_FILE, "garbage\n");
    CHECK_INT_EQ(lk_certs_open_lazy(sub, &c, NULL, why, sizeof(why)), 0);
    CHECK(lk_certs_new_server_ctx(c, managed, NULL) == NULL);
    CHECK_STR_EQ(lk_certs_error(c), "linkup_ca.key.pem: cannot read a PEM private key");
    CHECK_INT_EQ(lk_certs_load(c), LK_EPARSE); /* kept, not read again */
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    CHECK_INT_EQ(lk_certs_get(c, "a.example.com", &x, &k), LK_EIO);
    lk_certs_free(c);

    /* A well-formed key of another CA. */
    char from[400], to[400];
    snprintf(from, sizeof(from), "%s/%s", other, LK_CERTS_CA_KEY_FILE);
    snprintf(to, sizeof(to), "%s/%s", sub, LK_CERTS_CA_KEY_FILE);
    CHECK_INT_EQ(rename(from, to), 0);
    c = NULL;
    CHECK_INT_EQ(lk_certs_open_lazy(sub, &c, NULL, why, sizeof(why)), 0);
    CHECK_INT_EQ(lk_certs_load(c), LK_EPARSE);
    CHECK_STR_EQ(lk_certs_error(c), "linkup_ca.key.pem: the key does not match linkup_ca.cert.pem");
    lk_certs_free(c);

    put(sub, LK_CERTS_CA_CERT_FILE, "-----BEGIN CERTIFICATE-----\nAAAA\n");
    c = NULL;
    CHECK_INT_EQ(lk_certs_open_lazy(sub, &c, NULL, why, sizeof(why)), 0);
    CHECK_INT_EQ(lk_certs_load(c), LK_EPARSE);
    CHECK_STR_EQ(lk_certs_error(c), "linkup_ca.cert.pem: cannot read a PEM certificate");
    lk_certs_free(c);

    /* A directory where a CA file should be. */
    CHECK_INT_EQ(unlink(to), 0);
    CHECK_INT_EQ(mkdir(to, 0700), 0);
    CHECK_INT_EQ(lk_certs_open_lazy(sub, &c, NULL, why, sizeof(why)), LK_EIO);
    CHECK_STR_EQ(why, "linkup_ca.key.pem: not a regular file");
    CHECK_INT_EQ(rmdir(to), 0);

    CHECK_INT_EQ(lk_certs_open_lazy("/proc/no/such/dir", &c, NULL, why, sizeof(why)), LK_EIO);
    CHECK_STR_EQ(why, "No such file or directory");
}

static void cleanup(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/lk-certs-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL)
        return 1;
    strncat(dir, "/certs", sizeof(dir) - strlen(dir) - 1);
    RUN(test_ca_creation);
    RUN(test_leaf_minting_and_cache);
    RUN(test_wildcard_files);
    RUN(test_sni_handshake);
    RUN(test_unmanaged_names_by_file_name);
    RUN(test_bad_ca_files);
    RUN(test_lazy_open);
    RUN(test_lazy_bad_ca);
    dir[strlen(dir) - 6] = '\0';
    cleanup();
    return DONE();
}
