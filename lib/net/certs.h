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
 * x.D but not a.b.D, fixing the SPEC quirk), else a cached leaf, else a new
 * leaf (ECDSA P-256, SAN DNS = the name, CN = the name, serverAuth, valid
 * from one day ago for LK_CERTS_LEAF_DAYS days, signed by the CA).
 *
 * Threading: one loop thread per struct lk_certs (the cache is unlocked).
 * Files are read only by lk_certs_ensure_ca() and lk_certs_open().
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
#define LK_CERTS_CACHE_MAX    256  /* minted leaves kept; the oldest is evicted */
#define LK_CERTS_FILES_MAX    256  /* certificate files loaded from the directory */
#define LK_CERTS_LEAF_DAYS    397  /* leaf validity (under Apple's 398-day limit) */
#define LK_CERTS_CA_DAYS      7300 /* CA validity: 20 years */

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
 * lk_certs_ensure_ca(). */
int lk_certs_open(const char *dir, struct lk_certs **out);

/* Frees the CA, the loaded files and the cache. NULL is a no-op. SSL_CTXs
 * configured with lk_certs_install_sni() must be freed first. */
void lk_certs_free(struct lk_certs *c);

/* The CA certificate, borrowed until lk_certs_free(). */
X509 *lk_certs_ca(const struct lk_certs *c);

/* Path of the CA certificate file (borrowed until lk_certs_free()). */
const char *lk_certs_ca_path(const struct lk_certs *c);

/* Returns a certificate and key for name (case-insensitive, no trailing
 * dot): a matching file, a cached leaf, or a new leaf that is then cached.
 * *cert and *key are new references (X509_free, EVP_PKEY_free). Does not
 * consult the managed-domain callback. Returns 0, LK_EINVAL (not a valid
 * host name) or LK_EIO (OpenSSL failure). */
int lk_certs_get(struct lk_certs *c, const char *name, X509 **cert, EVP_PKEY **key);

/* Mints a new leaf for name (which may be a wildcard "*.D") without caching
 * it. Same results as lk_certs_get(). */
int lk_certs_mint(const struct lk_certs *c, const char *name, X509 **cert, EVP_PKEY **key);

/* Number of cached minted leaves (for tests and the status page). */
size_t lk_certs_n_cached(const struct lk_certs *c);

/* Installs an SNI callback on ctx: a ClientHello with a server name for
 * which is_managed(name, data) is true gets lk_certs_get()'s certificate;
 * no server name, an unmanaged name or a failure ends the handshake with a
 * fatal alert (unrecognized_name or internal_error). c, is_managed and data
 * are borrowed for the life of ctx; a later call on the same c replaces
 * is_managed/data for every context using c. Returns 0. */
int lk_certs_install_sni(SSL_CTX *ctx, struct lk_certs *c, lk_certs_managed_cb *is_managed,
                         void *data);

/* Builds a server SSL_CTX (TLS 1.2+, ALPN "http/1.1" only, SNI as
 * lk_certs_install_sni()). Returns the context (owned; SSL_CTX_free) or
 * NULL on an OpenSSL failure. */
SSL_CTX *lk_certs_new_server_ctx(struct lk_certs *c, lk_certs_managed_cb *is_managed, void *data);

#endif
