/*
 * certs.c - local CA creation, certificate files and leaf minting (OpenSSL 3).
 *
 * Invariants: the CA key never leaves this module; a lazily opened struct
 * (lk_certs_open_lazy()) calls no OpenSSL function until lk_certs_load(),
 * which runs once and keeps its result; files are written whole
 * (temporary file, fsync, rename) so a crash never leaves half a key; the
 * cache holds at most LK_CERTS_CACHE_MAX leaves and hands out new references,
 * so evicting an entry never frees a certificate a connection still uses.
 */
#include "net/certs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "proto/hostname.h"

struct cert_entry {
    char *name; /* file entries: "*.example.com"; cache entries: the SNI name */
    X509 *cert;
    EVP_PKEY *key;
};

struct lk_certs {
    char *dir;
    char *ca_path;
    X509 *ca;
    EVP_PKEY *ca_key;
    struct cert_entry files[LK_CERTS_FILES_MAX];
    size_t n_files;
    struct cert_entry cache[LK_CERTS_CACHE_MAX];
    size_t n_cached;
    size_t next_evict;
    lk_certs_managed_cb *is_managed;
    void *managed_data;
    bool loaded; /* lk_certs_load() ran; load_rc is its result */
    int load_rc;
    char error[512]; /* why the CA did not load; "" otherwise */
};

/* SPEC §5.1: ALPN `h2`, `http/1.1`, in the server's order of preference
 * (the engine serves h2 over TLS through net/h2_front.h). */
static const unsigned char alpn_server[] = "\x02h2\x08http/1.1";

/* ---- files -------------------------------------------------------------- */

static char *join(const char *dir, const char *file)
{
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = lk_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

/* Writes the bytes of a memory BIO to path with mode, atomically. */
static int write_file(const char *path, BIO *mem, mode_t mode)
{
    char *data = NULL;
    long len = BIO_get_mem_data(mem, &data);
    size_t tmp_len = strlen(path) + 16;
    char *tmp = lk_xmalloc(tmp_len);
    snprintf(tmp, tmp_len, "%s.tmp%ld", path, (long)getpid());
    int rc = LK_EIO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd == -1)
        goto out;
    ssize_t w = write(fd, data, (size_t)len);
    bool ok = w == len && fchmod(fd, mode) == 0 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (ok && rename(tmp, path) == 0)
        rc = 0;
    else
        unlink(tmp);
out:
    free(tmp);
    return rc;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

/* ---- minting ------------------------------------------------------------ */

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return LK_EIO;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : LK_EIO;
}

static int set_serial(X509 *cert)
{
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof(bytes)) != 1)
        return LK_EIO;
    bytes[0] &= 0x7F; /* positive */
    bytes[0] |= 0x01; /* and never zero-led, so always 16 bytes */
    BIGNUM *bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
    bool ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok ? 0 : LK_EIO;
}

/* A certificate for key with subject CN cn (an empty subject when cn is
 * NULL), valid from LK_CERTS_NOT_BEFORE to LK_CERTS_NOT_AFTER (SPEC §5.5);
 * issuer NULL means self-signed. Extensions are added by the caller. */
static X509 *new_cert(const char *cn, EVP_PKEY *key, X509 *issuer)
{
    X509 *x = X509_new();
    X509_NAME *subject = X509_NAME_new();
    bool ok =
        x != NULL && subject != NULL && X509_set_version(x, 2) == 1 && set_serial(x) == 0 &&
        (cn == NULL || X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                                  (const unsigned char *)cn, -1, -1, 0) == 1) &&
        X509_set_subject_name(x, subject) == 1 &&
        X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subject) == 1 &&
        ASN1_TIME_set_string_X509(X509_getm_notBefore(x), LK_CERTS_NOT_BEFORE) == 1 &&
        ASN1_TIME_set_string_X509(X509_getm_notAfter(x), LK_CERTS_NOT_AFTER) == 1 &&
        X509_set_pubkey(x, key) == 1;
    X509_NAME_free(subject);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int make_ca(X509 **cert, EVP_PKEY **key)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = k ? new_cert(LK_CERTS_CA_CN, k, NULL) : NULL;
    bool ok = x != NULL && add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
              add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
              add_ext(x, x, NID_subject_key_identifier, "hash") == 0 &&
              X509_sign(x, k, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        EVP_PKEY_free(k);
        return LK_EIO;
    }
    *cert = x;
    *key = k;
    return 0;
}

/* The longest commonName X.509 allows (RFC 5280 ub-common-name). */
#define CN_MAX 64

static int mint(X509 *ca, EVP_PKEY *ca_key, const char *name, X509 **cert, EVP_PKEY **key)
{
    char san[320];
    /* A DNS name may be 253 characters, a CN only 64: a longer name is in
     * the subjectAltName alone, which is then critical (RFC 5280 §4.2.1.6:
     * the subject is empty). Clients match the SAN either way. */
    bool cn = strlen(name) <= CN_MAX;
    snprintf(san, sizeof(san), "%sDNS:%s", cn ? "" : "critical,", name);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = k ? new_cert(cn ? name : NULL, k, ca) : NULL;
    bool ok = x != NULL && add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
              add_ext(x, ca, NID_key_usage, "critical,digitalSignature") == 0 &&
              add_ext(x, ca, NID_ext_key_usage, "serverAuth") == 0 &&
              add_ext(x, ca, NID_subject_alt_name, san) == 0 &&
              add_ext(x, ca, NID_subject_key_identifier, "hash") == 0 &&
              add_ext(x, ca, NID_authority_key_identifier, "keyid:always") == 0 &&
              X509_sign(x, ca_key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        EVP_PKEY_free(k);
        return LK_EIO;
    }
    *cert = x;
    *key = k;
    return 0;
}

/* ---- CA ----------------------------------------------------------------- */

static int write_ca(const char *cert_path, const char *key_path, X509 *ca, EVP_PKEY *key)
{
    BIO *kb = BIO_new(BIO_s_mem());
    BIO *cb = BIO_new(BIO_s_mem());
    int rc = LK_EIO;
    if (kb == NULL || cb == NULL ||
        PEM_write_bio_PKCS8PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_X509(cb, ca) != 1)
        goto out;
    rc = write_file(key_path, kb, 0600);
    if (rc == 0)
        rc = write_file(cert_path, cb, 0644);
out:
    BIO_free(kb);
    BIO_free(cb);
    return rc;
}

/* Parses the CA pair; on failure says why in why (file names only). */
static int load_ca(const char *cert_path, const char *key_path, X509 **ca, EVP_PKEY **key,
                   char *why, size_t why_len)
{
    *ca = read_cert(cert_path);
    *key = read_key(key_path);
    const char *reason = NULL;
    if (*ca == NULL)
        reason = LK_CERTS_CA_CERT_FILE ": cannot read a PEM certificate";
    else if (*key == NULL)
        reason = LK_CERTS_CA_KEY_FILE ": cannot read a PEM private key";
    else if (X509_check_private_key(*ca, *key) != 1)
        reason = LK_CERTS_CA_KEY_FILE ": the key does not match " LK_CERTS_CA_CERT_FILE;
    if (reason == NULL)
        return 0;
    ERR_clear_error(); /* the queue would otherwise blame a later, unrelated call */
    snprintf(why, why_len, "%s", reason);
    X509_free(*ca);
    EVP_PKEY_free(*key);
    *ca = NULL;
    *key = NULL;
    return LK_EPARSE;
}

/* Makes a new CA and writes it; nothing is kept in memory (the first TLS
 * use reads it back, like a CA that was already on disk). */
static int create_ca(const char *cert_path, const char *key_path)
{
    X509 *ca = NULL;
    EVP_PKEY *key = NULL;
    int rc = make_ca(&ca, &key);
    if (rc == 0)
        rc = write_ca(cert_path, key_path, ca, key);
    X509_free(ca);
    EVP_PKEY_free(key);
    return rc;
}

/*
 * create_ca() in a child process: making a CA initialises OpenSSL (~3 MiB of
 * library pages that stay resident), and the server only needs the files. The
 * child reports errno through its exit status (0: written). Falls back to
 * doing it here when fork() fails.
 */
static int create_ca_detached(const char *cert_path, const char *key_path)
{
    pid_t pid = fork();
    if (pid == -1)
        return create_ca(cert_path, key_path);
    if (pid == 0) {
        errno = 0;
        int rc = create_ca(cert_path, key_path);
        _exit(rc == 0 ? 0 : (errno > 0 && errno < 255 ? errno : 255));
    }
    int status;
    while (waitpid(pid, &status, 0) == -1) {
        if (errno != EINTR)
            return LK_EIO;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    errno = WIFEXITED(status) && WEXITSTATUS(status) != 255 ? WEXITSTATUS(status) : 0;
    return LK_EIO;
}

static bool ca_missing(const char *cert_path, const char *key_path)
{
    return access(cert_path, F_OK) != 0 || access(key_path, F_OK) != 0;
}

/* The start-up check of an existing CA file without OpenSSL: it opens for
 * reading (root included), is a regular file and is not empty. */
static int check_file(const char *path, const char *file, char *why, size_t why_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1) {
        snprintf(why, why_len, "%s: %s", file, strerror(errno));
        return LK_EIO;
    }
    struct stat st;
    const char *reason = NULL;
    if (fstat(fd, &st) != 0)
        reason = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        reason = "not a regular file";
    else if (st.st_size == 0)
        reason = "empty file";
    close(fd);
    if (reason == NULL)
        return 0;
    snprintf(why, why_len, "%s: %s", file, reason);
    return LK_EIO;
}

static int ensure_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return 0;
    return LK_EIO;
}

/* Holds an exclusive flock(2) on the certs directory while the CA is checked
 * and created, so servers starting together on a new directory make one CA
 * (without it, each could write a key and a certificate of its own, leaving
 * a pair that does not match). Returns the descriptor to unlock_dir(), or -1
 * when the directory cannot be locked (then it goes on unlocked). */
static int lock_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return -1;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static void unlock_dir(int fd)
{
    if (fd != -1)
        close(fd); /* releases the lock */
}

int lk_certs_ensure_ca(const char *dir, bool *created)
{
    bool made = false;
    int rc = ensure_dir(dir);
    if (rc == 0) {
        char *cert_path = join(dir, LK_CERTS_CA_CERT_FILE);
        char *key_path = join(dir, LK_CERTS_CA_KEY_FILE);
        int lock = lock_dir(dir);
        if (ca_missing(cert_path, key_path)) {
            rc = create_ca(cert_path, key_path);
            made = rc == 0;
        } else {
            X509 *ca = NULL;
            EVP_PKEY *key = NULL;
            char why[128];
            rc = load_ca(cert_path, key_path, &ca, &key, why, sizeof(why));
            X509_free(ca);
            EVP_PKEY_free(key);
        }
        unlock_dir(lock);
        free(cert_path);
        free(key_path);
    }
    if (created != NULL)
        *created = made;
    return rc;
}

/* ---- loading the directory --------------------------------------------- */

/* "wildcard_.example.com" -> "*.example.com" (SPEC §5.5). */
static char *entry_name(const char *file, size_t stem_len)
{
    static const char prefix[] = "wildcard_";
    if (stem_len >= sizeof(prefix) - 1 && strncmp(file, prefix, sizeof(prefix) - 1) == 0) {
        char *n = lk_xstrndup(file + sizeof(prefix) - 2, stem_len - (sizeof(prefix) - 2));
        n[0] = '*';
        return n;
    }
    return lk_xstrndup(file, stem_len);
}

static void load_pair(struct lk_certs *c, const char *file, size_t stem_len)
{
    char *name = entry_name(file, stem_len);
    char *stem = lk_xstrndup(file, stem_len);
    char key_file[512];
    snprintf(key_file, sizeof(key_file), "%s.key.pem", stem);
    char *cert_path = join(c->dir, file);
    char *key_path = join(c->dir, key_file);
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    const char *why = NULL;

    if (access(key_path, F_OK) != 0)
        goto out; /* SPEC §5.5: only pairs count */
    x = read_cert(cert_path);
    k = read_key(key_path);
    if (x == NULL || k == NULL)
        why = "cannot read PEM";
    else if (X509_check_private_key(x, k) != 1)
        why = "key does not match certificate";
    else if (c->n_files >= LK_CERTS_FILES_MAX)
        why = "too many certificate files";
    if (why != NULL) {
        fprintf(stderr, "Error loading cert/key for %s: %s\n", name, why);
        goto out;
    }
    c->files[c->n_files++] = (struct cert_entry){ name, x, k };
    name = NULL;
    x = NULL;
    k = NULL;
out:
    X509_free(x);
    EVP_PKEY_free(k);
    free(name);
    free(stem);
    free(cert_path);
    free(key_path);
}

/* The stem length of a certificate file of SPEC §5.5 ("NAME.cert.pem", not
 * the CA), or -1. */
static long cert_file_stem(const char *file)
{
    const char *hit = strstr(file, ".cert.pem");
    if (hit == NULL || hit[9] != '\0' || strcmp(file, LK_CERTS_CA_CERT_FILE) == 0)
        return -1;
    return (long)(hit - file);
}

bool lk_certs_has_files(const struct lk_certs *c)
{
    DIR *d = opendir(c->dir);
    if (d == NULL)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        long stem = cert_file_stem(e->d_name);
        if (stem < 0)
            continue;
        char key_file[512];
        snprintf(key_file, sizeof(key_file), "%.*s.key.pem", (int)stem, e->d_name);
        char *key_path = join(c->dir, key_file);
        found = access(key_path, F_OK) == 0;
        free(key_path);
    }
    closedir(d);
    return found;
}

static void load_files(struct lk_certs *c)
{
    DIR *d = opendir(c->dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long stem = cert_file_stem(e->d_name);
        if (stem >= 0)
            load_pair(c, e->d_name, (size_t)stem);
    }
    closedir(d);
}

int lk_certs_open_lazy(const char *dir, struct lk_certs **out, bool *created, char *why,
                       size_t why_len)
{
    if (ensure_dir(dir) != 0) {
        snprintf(why, why_len, "%s", strerror(errno));
        return LK_EIO;
    }
    char *cert_path = join(dir, LK_CERTS_CA_CERT_FILE);
    char *key_path = join(dir, LK_CERTS_CA_KEY_FILE);
    bool made = false;
    int rc = 0;
    int lock = lock_dir(dir);
    if (ca_missing(cert_path, key_path)) {
        errno = 0;
        rc = create_ca_detached(cert_path, key_path);
        if (rc != 0)
            snprintf(why, why_len, "cannot create the CA%s%s", errno ? ": " : "",
                     errno ? strerror(errno) : "");
        made = rc == 0;
    } else {
        rc = check_file(cert_path, LK_CERTS_CA_CERT_FILE, why, why_len);
        if (rc == 0)
            rc = check_file(key_path, LK_CERTS_CA_KEY_FILE, why, why_len);
    }
    unlock_dir(lock);
    free(key_path);
    if (rc != 0) {
        free(cert_path);
        return rc;
    }
    struct lk_certs *c = lk_xcalloc(1, sizeof(*c));
    c->dir = lk_xstrdup(dir);
    c->ca_path = cert_path;
    if (created != NULL)
        *created = made;
    *out = c;
    return 0;
}

int lk_certs_load(struct lk_certs *c)
{
    if (c->loaded)
        return c->load_rc;
    c->loaded = true;
    char *key_path = join(c->dir, LK_CERTS_CA_KEY_FILE);
    c->load_rc = load_ca(c->ca_path, key_path, &c->ca, &c->ca_key, c->error, sizeof(c->error));
    free(key_path);
    if (c->load_rc == 0)
        load_files(c);
    return c->load_rc;
}

const char *lk_certs_error(const struct lk_certs *c)
{
    return c->error;
}

int lk_certs_open(const char *dir, struct lk_certs **out)
{
    struct lk_certs *c = NULL;
    char why[256];
    int rc = lk_certs_open_lazy(dir, &c, NULL, why, sizeof(why));
    if (rc == 0)
        rc = lk_certs_load(c);
    if (rc != 0) {
        lk_certs_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void release_entry(struct cert_entry *e)
{
    free(e->name);
    X509_free(e->cert);
    EVP_PKEY_free(e->key);
    *e = (struct cert_entry){ NULL, NULL, NULL };
}

void lk_certs_free(struct lk_certs *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_files; i++)
        release_entry(&c->files[i]);
    for (size_t i = 0; i < c->n_cached; i++)
        release_entry(&c->cache[i]);
    X509_free(c->ca);
    EVP_PKEY_free(c->ca_key);
    free(c->dir);
    free(c->ca_path);
    free(c);
}

X509 *lk_certs_ca(const struct lk_certs *c)
{
    return c->ca;
}

const char *lk_certs_dir(const struct lk_certs *c)
{
    return c->dir;
}

const char *lk_certs_ca_path(const struct lk_certs *c)
{
    return c->ca_path;
}

size_t lk_certs_n_cached(const struct lk_certs *c)
{
    return c->n_cached;
}

/* ---- lookup ------------------------------------------------------------- */

/* Lowercases a host name (one trailing dot dropped) into out and checks it:
 * a DNS name whose labels may hold '_' (lk_hostname_valid()), after a
 * leading "*." when wildcard. */
static bool normalise_name(const char *name, char *out, size_t out_len, bool wildcard)
{
    size_t n = strlen(name);
    if (n > 0 && name[n - 1] == '.')
        n--;
    size_t star = wildcard && n > 2 && name[0] == '*' && name[1] == '.' ? 2 : 0;
    if (n >= out_len || !lk_hostname_valid(name + star, n - star, LK_HOSTNAME_UNDERSCORE))
        return false;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)name[i]);
    out[n] = '\0';
    return true;
}

static bool usable_file(const struct cert_entry *e, const char *name)
{
    if (X509_cmp_current_time(X509_get0_notAfter(e->cert)) <= 0)
        return false;
    if (strcmp(e->name, name) == 0)
        return true;
    return X509_check_host(e->cert, name, strlen(name), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                           NULL) == 1;
}

static int hand_out(const struct cert_entry *e, X509 **cert, EVP_PKEY **key)
{
    X509_up_ref(e->cert);
    EVP_PKEY_up_ref(e->key);
    *cert = e->cert;
    *key = e->key;
    return 0;
}

/* SPEC §5.5 SNI selection over the directory's files by entry name: the
 * exact entry host, else "*." + the labels of host from the i-th on, for
 * i = 0 .. labels-1 ("*.a.b.example.com" first, then "*.b.example.com", ...).
 * Quirk kept: "*.example.com" is served for a.b.example.com (which clients
 * reject) and for example.com itself. NULL when no entry has such a name. */
static const struct cert_entry *file_by_name(const struct lk_certs *c, const char *host)
{
    for (const char *suffix = NULL;;) {
        for (size_t i = 0; i < c->n_files; i++) {
            const char *n = c->files[i].name;
            if (suffix == NULL ? strcmp(n, host) == 0
                               : n[0] == '*' && n[1] == '.' && strcmp(n + 2, suffix) == 0)
                return &c->files[i];
        }
        if (suffix == NULL) {
            suffix = host;
        } else {
            suffix = strchr(suffix, '.');
            if (suffix == NULL)
                return NULL;
            suffix++;
        }
    }
}

/* The certificate for normalised host. A name that may have a minted leaf
 * (a managed one, DESIGN §2.10) gets a file of the certs directory whose
 * certificate covers it, else a cached or newly minted leaf. Any other
 * name gets only the file SPEC §5.5's name lookup selects, else
 * LK_ENOTFOUND (the handshake fails): what a file holds never widens the
 * names it is served for. */
static int get_cert(struct lk_certs *c, const char *host, bool may_mint, X509 **cert,
                    EVP_PKEY **key)
{
    if (lk_certs_load(c) != 0)
        return LK_EIO;
    if (!may_mint) {
        const struct cert_entry *e = file_by_name(c, host);
        return e != NULL ? hand_out(e, cert, key) : LK_ENOTFOUND;
    }
    for (size_t i = 0; i < c->n_files; i++) {
        if (usable_file(&c->files[i], host))
            return hand_out(&c->files[i], cert, key);
    }
    for (size_t i = 0; i < c->n_cached; i++) {
        if (strcmp(c->cache[i].name, host) == 0)
            return hand_out(&c->cache[i], cert, key);
    }
    struct cert_entry e = { NULL, NULL, NULL };
    int rc = mint(c->ca, c->ca_key, host, &e.cert, &e.key);
    if (rc != 0)
        return rc;
    e.name = lk_xstrdup(host);
    size_t slot = c->n_cached;
    if (slot == LK_CERTS_CACHE_MAX) {
        slot = c->next_evict;
        c->next_evict = (c->next_evict + 1) % LK_CERTS_CACHE_MAX;
        release_entry(&c->cache[slot]);
    } else {
        c->n_cached++;
    }
    c->cache[slot] = e;
    return hand_out(&c->cache[slot], cert, key);
}

int lk_certs_get(struct lk_certs *c, const char *name, X509 **cert, EVP_PKEY **key)
{
    char host[256];
    if (!normalise_name(name, host, sizeof(host), false))
        return LK_EINVAL;
    return get_cert(c, host, true, cert, key);
}

int lk_certs_mint(const struct lk_certs *c, const char *name, X509 **cert, EVP_PKEY **key)
{
    char host[256];
    if (!normalise_name(name, host, sizeof(host), true))
        return LK_EINVAL;
    if (c->ca == NULL)
        return LK_EIO; /* not loaded (lk_certs_load()) */
    return mint(c->ca, c->ca_key, host, cert, key);
}

/* ---- TLS ---------------------------------------------------------------- */

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    struct lk_certs *c = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char host[256];
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;

    *alert = SSL_AD_UNRECOGNIZED_NAME;
    if (sni == NULL || !normalise_name(sni, host, sizeof(host), false))
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    /* Leaves are minted only for managed names (DESIGN §2.10); other names
     * get the directory's files by SPEC §5.5's name lookup only. */
    bool managed = c->is_managed != NULL && c->is_managed(host, c->managed_data);
    int rc = get_cert(c, host, managed, &cert, &key);
    if (rc != 0) {
        if (rc != LK_ENOTFOUND)
            *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    bool ok = SSL_use_certificate(ssl, cert) == 1 && SSL_use_PrivateKey(ssl, key) == 1;
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_len,
                   const unsigned char *in, unsigned int in_len, void *arg)
{
    unsigned char *selected = NULL;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&selected, out_len, alpn_server, sizeof(alpn_server) - 1, in,
                              in_len) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no common protocol: carry on without ALPN */
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

/*
 * Before OpenSSL looks up a session to resume: the session id context becomes
 * a digest of the name the client asks for, so a session is resumed only for
 * the name it was made for. TLS 1.2 would otherwise resume one name's session
 * for another, unmanaged one included (RFC 6066 §3: the server "MUST NOT
 * accept the request to resume the session" when the names differ); TLS 1.3
 * already refuses.
 */
static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    const unsigned char *p;
    size_t len;
    (void)alert;
    (void)arg;
    /* server_name extension: list length (2), type (1), name length (2), name */
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1 || len < 5 ||
        p[2] != TLSEXT_NAMETYPE_host_name)
        return SSL_CLIENT_HELLO_SUCCESS; /* no name: on_servername() refuses it */
    size_t n = ((size_t)p[3] << 8) | p[4];
    if (n > len - 5 || n > 255)
        return SSL_CLIENT_HELLO_SUCCESS;
    char host[256];
    for (size_t i = 0; i < n; i++)
        host[i] = (char)tolower(p[5 + i]);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    if (EVP_Digest(host, n, md, &md_len, EVP_sha256(), NULL) == 1 &&
        md_len >= SSL_MAX_SID_CTX_LENGTH)
        (void)SSL_set_session_id_context(ssl, md, SSL_MAX_SID_CTX_LENGTH);
    return SSL_CLIENT_HELLO_SUCCESS;
}

int lk_certs_install_sni(SSL_CTX *ctx, struct lk_certs *c, lk_certs_managed_cb *is_managed,
                         void *data)
{
    c->is_managed = is_managed;
    c->managed_data = data;
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, c);
    return 0;
}

SSL_CTX *lk_certs_new_server_ctx(struct lk_certs *c, lk_certs_managed_cb *is_managed, void *data)
{
    if (lk_certs_load(c) != 0)
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return NULL;
    /* TLS 1.2: forward-secret AEAD suites only, which is also what HTTP/2
     * requires of it (RFC 9113 §9.2.2: CBC suites are prohibited). */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    lk_certs_install_sni(ctx, c, is_managed, data);
    return ctx;
}
