/*
 * cmd_local_dns.c - `linkup local-dns install|uninstall` (SPEC §6.5.7 with
 * DESIGN §2.11): point the OS resolver at the local DNS responder for the
 * top-level managed domains and make the OS and browsers trust the local CA.
 *
 *   Linux: /etc/systemd/resolved.conf.d/linkup.conf ([Resolve] DNS= and
 *          Domains=~D ...), then systemd-resolved restart + cache flush; the
 *          CA copied to /usr/local/share/ca-certificates/linkup_ca.crt, then
 *          update-ca-certificates; NSS databases (Firefox profiles, Chrome's
 *          ~/.pki/nssdb) through certutil when it is on PATH.
 *   macOS: /etc/resolver/<domain> per top-level domain, the System keychain,
 *          Firefox NSS databases, dscacheutil + mDNSResponder flush.
 *
 * Every change install makes is recorded in $LINKUP_HOME/local-dns.manifest
 * (files and directories it created, NSS databases and keychain it touched,
 * after the --root and platform it ran with, which `linkup uninstall` reuses);
 * uninstall undoes exactly those, in reverse order, and falls back to the
 * well-known paths when the manifest is missing. Install is idempotent: files
 * with the right content are left alone and no command runs for them.
 *
 * Options: --root DIR prefixes every system path with DIR and prints system
 * commands as "would run: ..." instead of running them (tests use it);
 * --platform linux|macos picks the layout (default: the build platform);
 * --dns A:P is the responder address (default $LINKUP_DNS_ADDR or
 * 127.0.0.1:8053); --domain D adds a managed domain to those of the config
 * and the state. Without --root and when not root, commands run under sudo
 * after the plan has been printed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/config_load.h"
#include "cli/home.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/state.h"
#include "net/certs.h"
#include "proto/dns.h"

#define MANIFEST_FILE  "local-dns.manifest"
#define SAVED_SUFFIX   ".linkup-saved"
#define RESOLVED_DIR   "/etc/systemd/resolved.conf.d"
#define RESOLVED_FILE  RESOLVED_DIR "/linkup.conf"
#define CA_STORE_DIR   "/usr/local/share/ca-certificates"
#define CA_STORE_FILE  CA_STORE_DIR "/linkup_ca.crt"
#define MAC_RESOLVER   "/etc/resolver"
#define MAC_KEYCHAIN   "/Library/Keychains/System.keychain"
#define MAX_LIST       64
#define MAX_FILE_BYTES (1024 * 1024)

struct strlist {
    char *items[MAX_LIST];
    size_t n;
};

struct ldns {
    const char *cmd;  /* "local-dns install" or "local-dns uninstall" (usage errors) */
    const char *root; /* "" without --root */
    bool dry;         /* --root: print commands instead of running them */
    bool macos;
    bool sudo;
    char dns_host[64];
    char dns_port[8];
    struct strlist domains; /* every managed domain */
    struct strlist tops;    /* top-level managed domains */
    struct strlist done;    /* manifest lines */
    char *certs_dir;
    bool dns_changed;
    bool ca_changed;
};

/* ---- small helpers ------------------------------------------------------ */

static void list_add(struct strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i], s) == 0)
            return;
    }
    if (l->n < MAX_LIST)
        l->items[l->n++] = lk_xstrdup(s);
}

static void list_free(struct strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    l->n = 0;
}

static char *rooted(const struct ldns *d, const char *path)
{
    struct lk_buf b = LK_BUF_INIT;
    lk_buf_addf(&b, "%s%s", d->root, path);
    return lk_buf_detach(&b, NULL);
}

static void record_into(struct strlist *l, const char *kind, const char *what)
{
    struct lk_buf b = LK_BUF_INIT;
    lk_buf_addf(&b, "%s %s", kind, what);
    list_add(l, b.data);
    lk_buf_release(&b);
}

static void record(struct ldns *d, const char *kind, const char *what)
{
    record_into(&d->done, kind, what);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static bool on_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        return false;
    struct lk_buf b = LK_BUF_INIT;
    bool found = false;
    while (!found && *path) {
        size_t n = strcspn(path, ":");
        lk_buf_reset(&b);
        lk_buf_addf(&b, "%.*s/%s", (int)n, path, prog);
        found = access(b.data, X_OK) == 0;
        path += n + (path[n] == ':');
    }
    lk_buf_release(&b);
    return found;
}

/* Runs argv (NULL-terminated), under sudo when needed; with --root only
 * prints it. Returns the exit status (0 when only printed). */
static int run(const struct ldns *d, bool privileged, const char *const *argv)
{
    if (d->dry) {
        printf("would run:");
        for (size_t i = 0; argv[i] != NULL; i++)
            printf(" %s", argv[i]);
        printf("\n");
        return 0;
    }
    const char *full[16];
    size_t n = 0;
    if (privileged && d->sudo)
        full[n++] = "sudo";
    for (size_t i = 0; argv[i] != NULL && n < 15; i++)
        full[n++] = argv[i];
    full[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == -1)
        return -1;
    if (pid == 0) {
        execvp(full[0], (char *const *)(uintptr_t)full);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
        continue;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool same_content(const char *path, const char *content)
{
    struct lk_buf b = LK_BUF_INIT;
    bool same = cli_read_file(path, &b, MAX_FILE_BYTES) == 0 && strcmp(b.data, content) == 0;
    lk_buf_release(&b);
    return same;
}

static int write_plain(const char *path, const char *content, mode_t mode)
{
    struct lk_buf tmp = LK_BUF_INIT;
    lk_buf_addf(&tmp, "%s.linkup-tmp", path);
    FILE *f = fopen(tmp.data, "w");
    int rc = -1;
    if (f != NULL) {
        bool ok = fputs(content, f) >= 0;
        ok = fclose(f) == 0 && ok;
        if (ok && chmod(tmp.data, mode) == 0 && rename(tmp.data, path) == 0)
            rc = 0;
        else
            unlink(tmp.data);
    }
    lk_buf_release(&tmp);
    return rc;
}

/* Writes a system file (via sudo install when not root). */
static int priv_write(const struct ldns *d, const char *path, const char *content)
{
    if (!d->sudo)
        return write_plain(path, content, 0644);
    char tmp[] = "/tmp/linkup-local-dns-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd == -1)
        return -1;
    close(fd);
    int rc = write_plain(tmp, content, 0644);
    if (rc == 0) {
        const char *argv[] = { "install", "-m", "0644", tmp, path, NULL };
        rc = run(d, true, argv);
    }
    unlink(tmp);
    return rc;
}

static int priv_mkdir(const struct ldns *d, const char *path)
{
    if (!d->sudo)
        return mkdir(path, 0755) == 0 ? 0 : -1;
    const char *argv[] = { "mkdir", path, NULL };
    return run(d, true, argv);
}

static void priv_remove(const struct ldns *d, const char *path, bool is_dir)
{
    if (!d->sudo) {
        if ((is_dir ? rmdir(path) : unlink(path)) == 0)
            printf("  removed %s\n", path);
        return;
    }
    const char *argv[] = { is_dir ? "rmdir" : "rm", is_dir ? "--" : "-f", path, NULL };
    if (run(d, true, argv) == 0)
        printf("  removed %s\n", path);
}

/* Creates every missing directory of path (a rooted absolute path), the
 * --root directory itself included, recording the ones it created. */
static int make_dirs(struct ldns *d, const char *path)
{
    char *p = lk_xstrdup(path);
    int rc = 0;
    for (char *s = p + 1; rc == 0; s++) {
        bool end = *s == '\0';
        if (*s != '/' && !end)
            continue;
        *s = '\0';
        if (!exists(p)) {
            rc = priv_mkdir(d, p);
            if (rc == 0)
                record(d, "dir", p);
        }
        if (end)
            break;
        *s = '/';
    }
    free(p);
    return rc;
}

/* Issue 6: uninstall removes exactly what install added, so a file that was
 * there before (the user's own /etc/resolver/<domain>, say) is kept as
 * PATH.linkup-saved and put back by uninstall ("saved PATH" in the
 * manifest, before the "file PATH" line that removes ours). A saved copy
 * left by an earlier install is the original and is never overwritten. */
static int save_original(struct ldns *d, const char *path)
{
    /* Only resolver files can be someone else's: the other paths carry
     * Linkup's name, and an older Linkup CA must not come back. */
    if (!d->macos || !exists(path))
        return 0;
    struct lk_buf saved = LK_BUF_INIT;
    struct lk_buf old = LK_BUF_INIT;
    int rc = cli_read_file(path, &old, MAX_FILE_BYTES) == 0 ? 0 : -1;
    lk_buf_addf(&saved, "%s" SAVED_SUFFIX, path);
    /* A file of Linkup's own two lines (an install with another --dns) is
     * ours to replace. */
    char host[64], port[16];
    int end = 0;
    bool ours = rc == 0 && sscanf(old.data, "nameserver %63s port %15s%n", host, port, &end) == 2 &&
                (size_t)end + 1 == old.len && old.data[end] == '\n';
    if (rc == 0 && !ours && !exists(saved.data)) {
        rc = priv_write(d, saved.data, old.data);
        if (rc == 0)
            printf("  saved %s as %s\n", path, saved.data);
    }
    if (rc == 0 && !ours)
        record(d, "saved", path);
    lk_buf_release(&old);
    lk_buf_release(&saved);
    return rc;
}

/* Puts back what save_original() kept. */
static void restore_original(struct ldns *d, const char *path)
{
    struct lk_buf saved = LK_BUF_INIT;
    struct lk_buf old = LK_BUF_INIT;
    lk_buf_addf(&saved, "%s" SAVED_SUFFIX, path);
    if (cli_read_file(saved.data, &old, MAX_FILE_BYTES) == 0 &&
        priv_write(d, path, old.data) == 0) {
        printf("  restored %s\n", path);
        priv_remove(d, saved.data, false);
    }
    lk_buf_release(&old);
    lk_buf_release(&saved);
}

/* Installs one system file; records it when install created it. */
static int install_file(struct ldns *d, const char *sys_path, const char *content, bool *changed)
{
    char *path = rooted(d, sys_path);
    char *dir = lk_xstrdup(path);
    *strrchr(dir, '/') = '\0';
    int rc = 0;
    if (same_content(path, content)) {
        printf("  unchanged %s\n", path);
        record(d, "file", path);
        goto out;
    }
    rc = make_dirs(d, dir);
    if (rc == 0)
        rc = save_original(d, path);
    if (rc == 0)
        rc = priv_write(d, path, content);
    if (rc != 0) {
        cli_fail("Failed to write %s", path);
        goto out;
    }
    printf("  wrote %s\n", path);
    record(d, "file", path);
    *changed = true;
out:
    free(dir);
    free(path);
    return rc;
}

/* ---- managed domains ---------------------------------------------------- */

/* Best effort (SPEC §1.1): a missing or invalid config adds nothing. */
static void domains_from_config(struct ldns *d, const struct cli_ctx *ctx)
{
    struct lk_config *cfg = NULL;
    struct lk_buf err = LK_BUF_INIT;
    if (cli_config_read(ctx, &cfg, NULL, &err) == 0) {
        for (size_t i = 0; i < cfg->n_domains; i++)
            list_add(&d->domains, cfg->domains[i].domain);
    }
    lk_config_free(cfg);
    lk_buf_release(&err);
}

static void domains_from_state(struct ldns *d)
{
    struct lk_state *st = NULL;
    if (cli_state_load(&st, NULL) != 0)
        return;
    for (size_t i = 0; i < st->n_domains; i++)
        list_add(&d->domains, st->domains[i].domain);
    lk_state_free(st);
}

/* Top-level: not at or below another, different managed domain. */
static void compute_tops(struct ldns *d)
{
    for (size_t i = 0; i < d->domains.n; i++) {
        bool top = true;
        for (size_t j = 0; j < d->domains.n && top; j++) {
            top = i == j || strcmp(d->domains.items[i], d->domains.items[j]) == 0 ||
                  !lk_dns_name_at_or_under(d->domains.items[i], d->domains.items[j]);
        }
        if (top)
            list_add(&d->tops, d->domains.items[i]);
    }
}

/* ---- DNS ---------------------------------------------------------------- */

static void dns_flush(const struct ldns *d)
{
    if (d->macos) {
        const char *a[] = { "dscacheutil", "-flushcache", NULL };
        const char *b[] = { "killall", "-HUP", "mDNSResponder", NULL };
        if (run(d, true, a) != 0)
            cli_log(LK_LOG_WARN, "Flushing DNS cache was unsuccessful");
        if (run(d, true, b) != 0)
            cli_log(LK_LOG_WARN, "Killing DNS responder was unsuccessful");
        return;
    }
    const char *a[] = { "systemctl", "restart", "systemd-resolved", NULL };
    const char *b[] = { "resolvectl", "flush-caches", NULL };
    if (run(d, true, a) != 0)
        cli_log(LK_LOG_WARN, "warning: could not restart systemd-resolved");
    if (run(d, true, b) != 0)
        cli_log(LK_LOG_WARN, "warning: could not flush the systemd-resolved cache");
}

static int install_dns(struct ldns *d)
{
    struct lk_buf content = LK_BUF_INIT;
    int rc = 0;
    if (d->macos) {
        lk_buf_addf(&content, "nameserver %s\nport %s\n", d->dns_host, d->dns_port);
        for (size_t i = 0; i < d->tops.n && rc == 0; i++) {
            struct lk_buf path = LK_BUF_INIT;
            lk_buf_addf(&path, MAC_RESOLVER "/%s", d->tops.items[i]);
            rc = install_file(d, path.data, content.data, &d->dns_changed);
            if (rc != 0)
                rc = cli_fail("Failed to install resolver for domain %s to %s", d->tops.items[i],
                              path.data);
            lk_buf_release(&path);
        }
    } else {
        lk_buf_addf(&content, "[Resolve]\nDNS=%s:%s\nDomains=", d->dns_host, d->dns_port);
        for (size_t i = 0; i < d->tops.n; i++)
            lk_buf_addf(&content, "%s~%s", i ? " " : "", d->tops.items[i]);
        lk_buf_addch(&content, '\n');
        rc = install_file(d, RESOLVED_FILE, content.data, &d->dns_changed);
    }
    lk_buf_release(&content);
    if (rc == 0 && d->dns_changed)
        dns_flush(d);
    return rc;
}

/* ---- CA trust ----------------------------------------------------------- */

/* NSS databases: Firefox profiles (and Chrome's shared db on Linux). */
static void find_nss_dbs(const struct ldns *d, struct strlist *dbs, bool *firefox)
{
    static const char *const linux_dirs[] = { ".mozilla/firefox",
                                              "snap/firefox/common/.mozilla/firefox",
                                              ".var/app/org.mozilla.firefox/.mozilla/firefox" };
    static const char *const mac_dirs[] = { "Library/Application Support/Firefox/Profiles" };
    const char *home = getenv("HOME");
    const char *const *dirs = d->macos ? mac_dirs : linux_dirs;
    size_t n_dirs = d->macos ? 1 : 3;
    struct lk_buf b = LK_BUF_INIT;
    *firefox = false;
    for (size_t i = 0; home != NULL && i < n_dirs; i++) {
        lk_buf_reset(&b);
        lk_buf_addf(&b, "%s/%s", home, dirs[i]);
        DIR *dir = opendir(b.data);
        struct dirent *e;
        while (dir != NULL && (e = readdir(dir)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            struct lk_buf p = LK_BUF_INIT;
            lk_buf_addf(&p, "%s/%s/cert9.db", b.data, e->d_name);
            bool sql = exists(p.data);
            lk_buf_truncate(&p, p.len - strlen("cert9.db"));
            lk_buf_adds(&p, "cert8.db");
            bool dbm = !sql && exists(p.data);
            if (sql || dbm) {
                struct lk_buf spec = LK_BUF_INIT;
                lk_buf_addf(&spec, "%s:%s/%s", sql ? "sql" : "dbm", b.data, e->d_name);
                list_add(dbs, spec.data);
                lk_buf_release(&spec);
                *firefox = true;
            }
            lk_buf_release(&p);
        }
        if (dir != NULL)
            closedir(dir);
    }
    if (!d->macos && home != NULL) {
        lk_buf_reset(&b);
        lk_buf_addf(&b, "%s/.pki/nssdb/cert9.db", home);
        if (exists(b.data)) {
            lk_buf_reset(&b);
            lk_buf_addf(&b, "sql:%s/.pki/nssdb", home);
            list_add(dbs, b.data);
        }
    }
    lk_buf_release(&b);
}

static int install_nss(struct ldns *d, const char *ca_path)
{
    struct strlist dbs = { .n = 0 };
    bool firefox = false;
    find_nss_dbs(d, &dbs, &firefox);
    int rc = 0;
    if (dbs.n > 0 && !on_path("certutil")) {
        if (firefox) {
            printf("It seems like you have Firefox installed.\n"
                   "For self-signed certificates to work with Firefox, you need to have nss "
                   "installed.\n"
                   "You can install it with `%s`.\n"
                   "Please install it and then try to install local-dns again.\n",
                   d->macos ? "brew install nss" : "sudo apt install libnss3-tools");
            rc = cli_fail("Failed to setup self-signed certificates");
        } else {
            printf("  note: install certutil (libnss3-tools) to make Chrome trust the CA\n");
        }
        list_free(&dbs);
        return rc;
    }
    for (size_t i = 0; i < dbs.n; i++) {
        const char *argv[] = { "certutil", "-A",           "-d", dbs.items[i], "-t", "C,,",
                               "-n",       LK_CERTS_CA_CN, "-i", ca_path,      NULL };
        if (run(d, false, argv) == 0) {
            printf("  trusted the CA in %s\n", dbs.items[i]);
            record(d, "nss", dbs.items[i]);
        } else {
            cli_log(LK_LOG_WARN, "warning: certutil failed for %s", dbs.items[i]);
        }
    }
    list_free(&dbs);
    return 0;
}

static int install_ca(struct ldns *d)
{
    bool dir_existed = exists(d->certs_dir);
    bool created = false;
    int err = lk_certs_ensure_ca(d->certs_dir, &created);
    if (err == LK_EPARSE)
        return cli_fail("Failed to load the Linkup CA in '%s': the certificate or key does not "
                        "load or they do not match",
                        d->certs_dir);
    if (err != 0)
        return cli_fail("Failed to create certificates directory '%s': %s", d->certs_dir,
                        strerror(errno));
    struct lk_buf ca_path = LK_BUF_INIT, key_path = LK_BUF_INIT, pem = LK_BUF_INIT;
    lk_buf_addf(&ca_path, "%s/" LK_CERTS_CA_CERT_FILE, d->certs_dir);
    lk_buf_addf(&key_path, "%s/" LK_CERTS_CA_KEY_FILE, d->certs_dir);
    if (!dir_existed)
        record(d, "dir", d->certs_dir);
    if (created) {
        record(d, "file", ca_path.data);
        record(d, "file", key_path.data);
        printf("  created the Linkup CA in %s\n", d->certs_dir);
    }
    int rc = cli_read_file(ca_path.data, &pem, MAX_FILE_BYTES);
    if (rc != 0) {
        rc = cli_fail("Failed to read %s", ca_path.data);
    } else if (d->macos) {
        const char *argv[] = { "security", "add-trusted-cert", "-d",         "-r", "trustRoot",
                               "-k",       MAC_KEYCHAIN,       ca_path.data, NULL };
        if (run(d, true, argv) != 0)
            rc = cli_fail("Failed to setup self-signed certificates");
        else
            record(d, "keychain", MAC_KEYCHAIN);
    } else {
        rc = install_file(d, CA_STORE_FILE, pem.data, &d->ca_changed);
        const char *argv[] = { "update-ca-certificates", NULL };
        if (rc == 0 && d->ca_changed && run(d, true, argv) != 0)
            cli_log(LK_LOG_WARN, "warning: update-ca-certificates failed");
    }
    if (rc == 0)
        rc = install_nss(d, ca_path.data);
    lk_buf_release(&ca_path);
    lk_buf_release(&key_path);
    lk_buf_release(&pem);
    return rc;
}

/* ---- manifest ----------------------------------------------------------- */

static char *manifest_path(void)
{
    struct lk_buf b = LK_BUF_INIT;
    cli_home_file(MANIFEST_FILE, &b);
    return lk_buf_detach(&b, NULL);
}

static void load_manifest(struct strlist *l)
{
    char *path = manifest_path();
    struct lk_buf b = LK_BUF_INIT;
    if (cli_read_file(path, &b, MAX_FILE_BYTES) == 0) {
        char *save = b.data;
        for (char *line = save; *line;) {
            char *nl = strchr(line, '\n');
            if (nl != NULL)
                *nl = '\0';
            if (*line)
                list_add(l, line);
            if (nl == NULL)
                break;
            line = nl + 1;
        }
    }
    lk_buf_release(&b);
    free(path);
}

static int save_manifest(const struct strlist *l)
{
    struct lk_buf b = LK_BUF_INIT;
    for (size_t i = 0; i < l->n; i++)
        lk_buf_addf(&b, "%s\n", l->items[i]);
    char *path = manifest_path();
    int rc = write_plain(path, b.data, 0600);
    free(path);
    lk_buf_release(&b);
    return rc;
}

/* The install's --root and platform lead the manifest ("root DIR",
 * "platform NAME"), so `linkup uninstall` can undo it as it was made; undo()
 * skips these lines. A later install replaces them. */
static void record_context(struct ldns *d)
{
    struct strlist ctx = { .n = 0 };
    if (*d->root)
        record_into(&ctx, "root", d->root);
    record_into(&ctx, "platform", d->macos ? "macos" : "linux");
    for (size_t i = 0; i < d->done.n; i++) {
        char *line = d->done.items[i];
        if (strncmp(line, "root ", 5) == 0 || strncmp(line, "platform ", 9) == 0 ||
            ctx.n == MAX_LIST)
            free(line);
        else
            ctx.items[ctx.n++] = line; /* moved, not copied */
    }
    d->done = ctx;
}

/* ---- install / uninstall ------------------------------------------------ */

static void print_plan(const struct ldns *d, bool install)
{
    printf("Linkup needs sudo access to:\n");
    if (d->macos) {
        printf(install ? "  - Ensure there is a folder /etc/resolvers\n"
                         "  - Create file(s) for /etc/resolver/<domain>\n"
                         "  - Add Linkup CA certificate to keychain\n"
                       : "  - Delete file(s) on /etc/resolver\n"
                         "  - Remove Linkup CA certificate from keychain\n");
    } else if (install) {
        printf("  - Create %s%s sending", d->root, RESOLVED_FILE);
        for (size_t i = 0; i < d->tops.n; i++)
            printf(" %s", d->tops.items[i]);
        printf(" to %s:%s\n  - Add Linkup CA certificate to %s%s\n", d->dns_host, d->dns_port,
               d->root, CA_STORE_DIR);
    } else {
        printf("  - Delete %s%s\n  - Remove Linkup CA certificate from %s%s\n", d->root,
               RESOLVED_FILE, d->root, CA_STORE_DIR);
    }
    printf("  - Flush DNS cache\n");
    fflush(stdout);
}

static int get_sudo(struct ldns *d)
{
    if (!d->sudo)
        return 0;
    const char *argv[] = { "-v", NULL };
    if (run(d, true, argv) != 0)
        return cli_fail("Failed to sudo");
    return 0;
}

static int do_install(struct ldns *d)
{
    if (d->tops.n == 0)
        return cli_fail("No managed domains: add domains to the config or start a session first");
    print_plan(d, true);
    if (get_sudo(d) != 0)
        return LK_EXIT_FAIL;
    load_manifest(&d->done);
    record_context(d);
    int rc = install_dns(d);
    if (rc == 0)
        rc = install_ca(d);
    if (save_manifest(&d->done) != 0 && rc == 0)
        rc = cli_fail("Failed to save %s", MANIFEST_FILE);
    if (rc != 0)
        return LK_EXIT_FAIL;
    printf("Local DNS installed!\n");
    return LK_EXIT_OK;
}

/* Without a manifest: the well-known files, wherever they exist. */
static void fallback_manifest(struct ldns *d)
{
    struct lk_buf b = LK_BUF_INIT;
    for (size_t i = 0; d->macos && i < d->tops.n; i++) {
        lk_buf_reset(&b);
        lk_buf_addf(&b, "%s" MAC_RESOLVER "/%s", d->root, d->tops.items[i]);
        if (exists(b.data))
            record(d, "file", b.data);
    }
    static const char *const linux_files[] = { RESOLVED_FILE, CA_STORE_FILE };
    for (size_t i = 0; !d->macos && i < 2; i++) {
        lk_buf_reset(&b);
        lk_buf_addf(&b, "%s%s", d->root, linux_files[i]);
        if (exists(b.data))
            record(d, "file", b.data);
    }
    if (d->macos)
        record(d, "keychain", MAC_KEYCHAIN);
    lk_buf_release(&b);
}

/* A resolver file: removing or restoring it calls for a DNS cache flush. */
static bool is_dns_file(const char *path)
{
    return strstr(path, RESOLVED_FILE) != NULL || strstr(path, MAC_RESOLVER "/") != NULL;
}

static void undo(struct ldns *d, const char *line)
{
    const char *arg = strchr(line, ' ');
    if (arg == NULL)
        return;
    arg++;
    if (strncmp(line, "file ", 5) == 0 && exists(arg)) {
        priv_remove(d, arg, false);
        d->dns_changed |= is_dns_file(arg);
        d->ca_changed |= strstr(arg, CA_STORE_FILE) != NULL;
    } else if (strncmp(line, "saved ", 6) == 0) {
        restore_original(d, arg);
        d->dns_changed |= is_dns_file(arg);
    } else if (strncmp(line, "dir ", 4) == 0 && exists(arg)) {
        priv_remove(d, arg, true); /* only when empty: rmdir refuses otherwise */
    } else if (strncmp(line, "nss ", 4) == 0) {
        const char *argv[] = { "certutil", "-D", "-d", arg, "-n", LK_CERTS_CA_CN, NULL };
        run(d, false, argv);
    } else if (strncmp(line, "keychain ", 9) == 0) {
        const char *argv[] = { "security", "delete-certificate", "-t", "-c", LK_CERTS_CA_CN, NULL };
        run(d, true, argv);
    }
}

static int do_uninstall(struct ldns *d)
{
    print_plan(d, false);
    if (get_sudo(d) != 0)
        return LK_EXIT_FAIL;
    load_manifest(&d->done);
    if (d->done.n == 0)
        fallback_manifest(d);
    for (size_t i = d->done.n; i > 0; i--)
        undo(d, d->done.items[i - 1]);
    if (d->dns_changed)
        dns_flush(d);
    const char *argv[] = { "update-ca-certificates", "--fresh", NULL };
    if (d->ca_changed && run(d, true, argv) != 0)
        return cli_fail("Failed to uninstall self-signed certificates");
    char *path = manifest_path();
    unlink(path);
    free(path);
    printf("Local DNS uninstalled!\n");
    return LK_EXIT_OK;
}

/* ---- arguments ---------------------------------------------------------- */

static int set_dns(struct ldns *d, const char *spec)
{
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec || strlen(colon + 1) == 0 ||
        strlen(colon + 1) >= sizeof(d->dns_port) || (size_t)(colon - spec) >= sizeof(d->dns_host))
        return -1;
    snprintf(d->dns_host, sizeof(d->dns_host), "%.*s", (int)(colon - spec), spec);
    snprintf(d->dns_port, sizeof(d->dns_port), "%s", colon + 1);
    if (strcmp(d->dns_host, "0.0.0.0") == 0)
        snprintf(d->dns_host, sizeof(d->dns_host), "127.0.0.1");
    return 0;
}

enum ldns_opt {
    LDNS_ROOT = 0,
    LDNS_PLATFORM,
    LDNS_DNS,
    LDNS_DOMAIN,
    LDNS_N_OPTS,
};

static const struct cli_opt ldns_opts[LDNS_N_OPTS] = {
    [LDNS_ROOT] = { NULL, "--root", "DIR" },
    [LDNS_PLATFORM] = { NULL, "--platform", "NAME" },
    [LDNS_DNS] = { NULL, "--dns", "ADDR:PORT" },
    [LDNS_DOMAIN] = { NULL, "--domain", "DOMAIN" },
};

static int apply_option(enum ldns_opt k, const char *v, struct ldns *d, struct strlist *extra)
{
    switch (k) {
    case LDNS_ROOT:
        d->root = v;
        d->dry = true;
        break;
    case LDNS_PLATFORM:
        if (strcmp(v, "linux") != 0 && strcmp(v, "macos") != 0)
            return cli_usage_error(d->cmd,
                                   "invalid value '%s' for '--platform <NAME>' [possible values: "
                                   "linux, macos]",
                                   v);
        d->macos = strcmp(v, "macos") == 0;
        break;
    case LDNS_DNS:
        if (set_dns(d, v) != 0)
            return cli_usage_error(d->cmd, "invalid address '%s' for --dns", v);
        break;
    case LDNS_DOMAIN:
        list_add(extra, v);
        break;
    case LDNS_N_OPTS:
        LK_BUG("no such local-dns option");
    }
    return 0;
}

static int take_option(int argc, char **argv, int *i, struct ldns *d, struct strlist *extra)
{
    const char *v = NULL;
    int k = cli_opt_take(d->cmd, ldns_opts, LDNS_N_OPTS, argc, argv, i, &v);
    if (k == CLI_OPT_FAILED)
        return LK_EXIT_USAGE;
    if (k < 0)
        return cli_usage_error(d->cmd, "unexpected argument '%s'", argv[*i]);
    return apply_option((enum ldns_opt)k, v, d, extra);
}

/* The options after the subcommand (argv[1]). */
static int parse_args(int argc, char **argv, struct ldns *d, struct strlist *extra)
{
    for (int i = 2; i < argc; i++) {
        int rc = take_option(argc, argv, &i, d, extra);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static const char ldns_options_help[] =
    "Options:\n"
    "      --root <DIR>       Prefix system paths with DIR; print commands instead of "
    "running them\n"
    "      --platform <NAME>  Resolver layout [possible values: linux, macos]\n"
    "      --dns <ADDR:PORT>  DNS responder address (default: $LINKUP_DNS_ADDR or "
    "127.0.0.1:8053)\n"
    "      --domain <DOMAIN>  Also manage DOMAIN (repeatable)\n"
    "  -c, --config <CONFIG>  Path to config file\n"
    "  -h, --help             Print help\n";

static const char ldns_install_about[] =
    "Send the managed domains to the local DNS responder and trust the Linkup CA";
static const char ldns_uninstall_about[] = "Undo what install did";

/* The help of `linkup local-dns`, or of its subcommand sub ("install",
 * "uninstall"; NULL: the command itself). */
static void usage(FILE *out, const char *sub)
{
    if (sub != NULL) {
        fprintf(out, "%s\n\nUsage: linkup local-dns %s [OPTIONS]\n\n%s",
                strcmp(sub, "install") == 0 ? ldns_install_about : ldns_uninstall_about, sub,
                ldns_options_help);
        return;
    }
    fprintf(out,
            "Speed up your local environment by routing traffic locally when possible\n\n"
            "Usage: linkup local-dns [OPTIONS] <COMMAND>\n\n"
            "Commands:\n"
            "  install    %s\n"
            "  uninstall  %s\n"
            "  help       Print this message or the help of the given subcommand(s)\n\n%s",
            ldns_install_about, ldns_uninstall_about, ldns_options_help);
}

static bool is_ldns_command(const char *arg)
{
    return strcmp(arg, "install") == 0 || strcmp(arg, "uninstall") == 0;
}

/* The options may also come before the subcommand, as the help's
 * `linkup local-dns [OPTIONS] <COMMAND>` says: when they do, the first word
 * after them is moved to argv[1], ahead of them, where cmd_local_dns()
 * checks it is a subcommand. Returns 0, or a usage error's exit status (an
 * option not of local-dns or one missing its value, or no word after the
 * options). */
static int hoist_command(int argc, char **argv)
{
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        const char *v = NULL;
        int k = cli_opt_take("local-dns", ldns_opts, LDNS_N_OPTS, argc, argv, &i, &v);
        if (k == CLI_OPT_FAILED)
            return LK_EXIT_USAGE;
        if (k < 0)
            return cli_usage_error("local-dns", "unexpected argument '%s'", argv[i]);
        i++;
    }
    if (i == argc) {
        usage(stderr, NULL);
        return LK_EXIT_USAGE;
    }
    char *sub = argv[i];
    memmove(argv + 2, argv + 1, (size_t)(i - 1) * sizeof(*argv));
    argv[1] = sub;
    return 0;
}

static int run_command(int argc, char **argv, struct cli_ctx *ctx, struct ldns *d)
{
    struct strlist extra = { .n = 0 };
    d->cmd = strcmp(argv[1], "install") == 0 ? "local-dns install" : "local-dns uninstall";
    int rc = parse_args(argc, argv, d, &extra);
    if (rc != 0) {
        list_free(&extra);
        return rc;
    }
    cli_args_done(ctx);
    rc = cli_home_ensure();
    if (rc != 0) {
        list_free(&extra);
        return rc;
    }
    d->sudo = !d->dry && geteuid() != 0;
    for (size_t i = 0; i < extra.n; i++)
        list_add(&d->domains, extra.items[i]);
    list_free(&extra);
    domains_from_config(d, ctx);
    domains_from_state(d);
    compute_tops(d);
    struct lk_buf certs = LK_BUF_INIT;
    cli_home_file("certs", &certs);
    d->certs_dir = lk_buf_detach(&certs, NULL);
    return strcmp(argv[1], "install") == 0 ? do_install(d) : do_uninstall(d);
}

void cli_local_dns_resolved_domains(void (*add)(const char *domain, void *data), void *data)
{
    struct strlist lines = { .n = 0 };
    load_manifest(&lines);
    const char *path = RESOLVED_FILE;
    size_t tail = strlen(RESOLVED_FILE);
    for (size_t i = 0; i < lines.n; i++) {
        const char *l = lines.items[i];
        size_t n = strlen(l);
        if (strncmp(l, "file ", 5) == 0 && n >= 5 + tail &&
            strcmp(l + n - tail, RESOLVED_FILE) == 0)
            path = l + 5; /* where install wrote it (under its --root) */
    }
    struct lk_buf text = LK_BUF_INIT;
    if (cli_read_file(path, &text, MAX_FILE_BYTES) == 0) {
        for (char *line = text.data, *next; line != NULL; line = next) {
            next = strchr(line, '\n');
            if (next != NULL)
                *next++ = '\0';
            if (strncmp(line, "Domains=", 8) != 0)
                continue;
            for (char *tok = line + 8; *(tok += strspn(tok, " \t")) != '\0';) {
                size_t len = strcspn(tok, " \t");
                char end = tok[len];
                tok[len] = '\0';
                const char *domain = tok[0] == '~' ? tok + 1 : tok;
                if (*domain != '\0')
                    add(domain, data);
                tok += len + (end != '\0');
            }
        }
    }
    lk_buf_release(&text);
    list_free(&lines);
}

int cli_local_dns_uninstall_recorded(struct cli_ctx *ctx)
{
    struct strlist lines = { .n = 0 };
    char *path = manifest_path();
    bool installed = exists(path);
    free(path);
    if (!installed)
        return -1;
    load_manifest(&lines);
    char name[] = "local-dns", sub[] = "uninstall", root_opt[] = "--root",
         platform_opt[] = "--platform";
    char *args[6] = { name, sub };
    int n = 2;
    for (size_t i = 0; i < lines.n; i++) {
        if (strncmp(lines.items[i], "root ", 5) == 0 && n == 2) {
            args[n++] = root_opt;
            args[n++] = lines.items[i] + 5;
        }
    }
    for (size_t i = 0; i < lines.n && n < 6; i++) {
        if (strncmp(lines.items[i], "platform ", 9) == 0) {
            args[n++] = platform_opt;
            args[n++] = lines.items[i] + 9;
            break;
        }
    }
    int rc = cmd_local_dns(n, args, ctx);
    list_free(&lines);
    return rc;
}

int cmd_local_dns(int argc, char **argv, struct cli_ctx *ctx)
{
    struct ldns d = { .root = "" };
#ifdef __APPLE__
    d.macos = true;
#endif
    const char *env_dns = getenv("LINKUP_DNS_ADDR");
    if (env_dns == NULL || set_dns(&d, env_dns) != 0)
        set_dns(&d, "127.0.0.1:8053");
    const char *sub = argc > 1 && is_ldns_command(argv[1]) ? argv[1] : NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout, sub);
            return LK_EXIT_OK;
        }
    }
    if (argc < 2) {
        usage(stderr, NULL);
        return LK_EXIT_USAGE;
    }
    /* clap's `help` subcommand: `linkup local-dns help [install|uninstall]`. */
    if (strcmp(argv[1], "help") == 0) {
        if (argc > 2 && !is_ldns_command(argv[2]))
            return cli_usage_error("local-dns", "unrecognized subcommand '%s'", argv[2]);
        usage(stdout, argc > 2 ? argv[2] : NULL);
        return LK_EXIT_OK;
    }
    if (argv[1][0] == '-') {
        int hrc = hoist_command(argc, argv);
        if (hrc != 0)
            return hrc;
    }
    /* clap's words, like `linkup bogus` and `linkup sessions bogus`. */
    if (!is_ldns_command(argv[1]))
        return cli_usage_error("local-dns", "unrecognized subcommand '%s'", argv[1]);
    int rc = run_command(argc, argv, ctx, &d);
    list_free(&d.domains);
    list_free(&d.tops);
    list_free(&d.done);
    free(d.certs_dir);
    return rc;
}
