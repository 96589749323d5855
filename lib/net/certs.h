/*
 * certs.h - the local CA and on-the-fly leaf certificates (DESIGN §2.10).
 *
 * The certs directory (normally $LINKUP_HOME/certs) holds the CA as
 * linkup_ca.cert.pem + linkup_ca.key.pem (ECDSA P-256, CN "Linkup Local CA",
 * basicConstraints CA:TRUE critical, keyUsage keyCertSign + cRLSign, SHA-256;
 * the key as PKCS#8 PEM with mode 0600). lk_certs_ensure_ca() creates both
 * when either is missing, exactly as SPEC §5.5 does.
 *
 * A struct lk_certs holds the loaded CA, the certificate files of SPEC §5.5
 * found in the directory (wildcard_.{D}.cert.pem + .key.pem and any other
 * NAME.cert.pem with its key), and a bounded in-memory cache of minted
 * leaves. For an SNI name, lk_certs_get() returns, in order: a loaded file
 * certificate that really matches the name (RFC 6125 matching, so *.D serves
 * x.D but not a.b.D, which gets a valid leaf), else a cached leaf, else a new
 * leaf (ECDSA P-256, SAN DNS = the name, CN = the name, serverAuth, valid
 * from LK_CERTS_NOT_BEFORE to LK_CERTS_NOT_AFTER, signed by the CA). A name
 * for which nothing may be minted gets only SPEC §5.5's lookup of the
 * files by entry name (exact, then "*.{name}", then "*." + each shorter
 * parent), quirk included: *.D is served for a.b.D and for D.
 *
 * Lazy loading (docs/performance.md, finding 10): a server opens the
 * directory with lk_certs_open_lazy(), which touches OpenSSL only to create a
 * missing CA, and parses it with lk_certs_load() on its first TLS connection
 * (lk_certs_new_server_ctx() does it). Initialising OpenSSL for the CA and an
 * SSL_CTX costs ~3 MiB of RSS that an idle server without TLS clients never
 * needs.
 *
 * Threading: one loop thread per struct lk_certs (the cache is unlocked).
 * Files are read only by lk_certs_ensure_ca(), lk_certs_open_lazy() (a new CA
 * or an open+fstat of each existing CA file) and lk_certs_load().
 */
#ifndef LK_NET_CERTS_H
#define LK_NET_CERTS_H

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

#define LK_CERTS_CA_CERT_FILE "linkup_ca.cert.pem"
#define LK_CERTS_CA_KEY_FILE  "linkup_ca.key.pem"
#define LK_CERTS_CA_CN        "Linkup Local CA"
#define LK_CERTS_CACHE_MAX    256 /* minted leaves kept; the oldest is evicted */
#define LK_CERTS_FILES_MAX    256 /* certificate files loaded from the directory */
/* Validity of the CA and of minted leaves (SPEC §5.5, the original's
 * library defaults): a not-before before July 2019 keeps Apple's 825-day
 * rule for TLS server certificates from applying. */
#define LK_CERTS_NOT_BEFORE "19750101000000Z"
#define LK_CERTS_NOT_AFTER  "40960101000000Z"

struct lk_certs;

/* Decides whether the (lowercased) SNI name is equal to or below a managed
 * domain; only such names get a certificate. Loop thread. */
typedef bool lk_certs_managed_cb(const char *name, void *data);

/* Creates dir (mode 0700, one level) when missing and, when either CA file
 * is missing, a new CA in both files (written to temporary files and renamed,
 * key first). *created (may be NULL) tells whether a CA was made. An existing
 * pair is only checked to load and match. Returns 0, LK_EIO (errno kept:
 * directory or file error) or LK_EPARSE (existing files do not load or do
 * not match). */
int lk_certs_ensure_ca(const char *dir, bool *created);

/* Ensures the CA (as above), loads it and every other NAME.cert.pem with a
 * sibling NAME.key.pem in dir (a bad pair is reported on stderr as
 * "Error loading cert/key for NAME: REASON" and skipped). dir is copied.
 * Returns 0 and *out (owned; lk_certs_free), or the error of
 * lk_certs_ensure_ca() (LK_EIO also for a CA file that
 * lk_certs_open_lazy() rejects). Same as lk_certs_open_lazy() followed by
 * lk_certs_load(). */
int lk_certs_open(const char *dir, struct lk_certs **out);

/* The start-up half of lk_certs_open(), without parsing anything: creates dir
 * (mode 0700, one level) when missing and, when either CA file is missing, a
 * new CA as lk_certs_ensure_ca() does (the only case that uses OpenSSL; the
 * new CA is written and freed, not kept). When both CA files exist, each
 * must open for reading and be a non-empty regular file; their contents are
 * checked later by lk_certs_load(). *created (may be NULL) tells whether a CA
 * was made. dir is copied. Returns 0 and *out (owned; lk_certs_free), or
 * LK_EIO with a NUL-terminated reason in why (why_len bytes; 256 are enough),
 * e.g. "linkup_ca.key.pem: empty file", "linkup_ca.cert.pem: Permission
 * denied" or, for the directory itself, the errno text. */
int lk_certs_open_lazy(const char *dir, struct lk_certs **out, bool *created, char *why,
                       size_t why_len);

/* True when c's directory holds a certificate file pair other than the CA
 * (NAME.cert.pem with NAME.key.pem, SPEC §5.5). Reads the directory only; no
 * OpenSSL call. */
bool lk_certs_has_files(const struct lk_certs *c);

/* Parses the CA pair and loads the certificate files of the directory (as
 * lk_certs_open() does), the first time it is called; later calls return the
 * first result without reading anything again (fixing the files needs a new
 * struct, i.e. a restart). Returns 0, or LK_EPARSE when the CA does not load
 * or its key does not match, with the reason in lk_certs_error(). */
int lk_certs_load(struct lk_certs *c);

/* Why lk_certs_load() failed, e.g. "linkup_ca.key.pem: cannot read a PEM
 * private key" or "linkup_ca.key.pem: the key does not match
 * linkup_ca.cert.pem"; "" when it did not fail. Borrowed until
 * lk_certs_free(). */
const char *lk_certs_error(const struct lk_certs *c);

/* Frees the CA, the loaded files and the cache. NULL is a no-op. SSL_CTXs
 * configured with lk_certs_install_sni() must be freed first. */
void lk_certs_free(struct lk_certs *c);

/* The CA certificate, borrowed until lk_certs_free(); NULL until
 * lk_certs_load() succeeded. */
X509 *lk_certs_ca(const struct lk_certs *c);

/* The certs directory (borrowed until lk_certs_free()). */
const char *lk_certs_dir(const struct lk_certs *c);

/* Path of the CA certificate file (borrowed until lk_certs_free()). */
const char *lk_certs_ca_path(const struct lk_certs *c);

/* Returns a certificate and key for name (case-insensitive, no trailing
 * dot): a matching file, a cached leaf, or a new leaf that is then cached.
 * *cert and *key are new references (X509_free, EVP_PKEY_free). Does not
 * consult the managed-domain callback. Loads the CA first when needed
 * (lk_certs_load()). Returns 0, LK_EINVAL (not a valid host name) or LK_EIO
 * (OpenSSL failure, or the CA does not load). */
int lk_certs_get(struct lk_certs *c, const char *name, X509 **cert, EVP_PKEY **key);

/* Mints a new leaf for name (which may be a wildcard "*.D") without caching
 * it. Same results as lk_certs_get(), except that it does not load the CA:
 * LK_EIO before lk_certs_load() succeeded. */
int lk_certs_mint(const struct lk_certs *c, const char *name, X509 **cert, EVP_PKEY **key);

/* Number of cached minted leaves (for tests and the status page). */
size_t lk_certs_n_cached(const struct lk_certs *c);

/* Installs an SNI callback on ctx: a ClientHello with a server name for
 * which is_managed(name, data) is true gets lk_certs_get()'s certificate;
 * another name gets only the file SPEC §5.5's name lookup selects by entry
 * name (wildcard_.{D} files serve whether or not D is managed; what a file's
 * certificate covers does not widen that), and nothing is minted for it. No server
 * name, an unmanaged name no file is selected for or a failure ends the
 * handshake with a fatal alert (unrecognized_name or internal_error). c,
 * is_managed and data are borrowed for the life of ctx; a later call on the
 * same c replaces is_managed/data for every context using c. Returns 0. */
int lk_certs_install_sni(SSL_CTX *ctx, struct lk_certs *c, lk_certs_managed_cb *is_managed,
                         void *data);

/* Builds a server SSL_CTX (TLS 1.2+, ALPN "h2" then "http/1.1", SNI as
 * lk_certs_install_sni()), loading the CA first when needed
 * (lk_certs_load()). Returns the context (owned; SSL_CTX_free), or NULL when
 * the CA does not load (reason in lk_certs_error()) or on an OpenSSL failure
 * (lk_certs_error() is then ""). */
SSL_CTX *lk_certs_new_server_ctx(struct lk_certs *c, lk_certs_managed_cb *is_managed, void *data);

#endif
