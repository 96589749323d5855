/*
 * options.c - `linkup server` options (DESIGN §3): flags, then environment,
 * then defaults; the worker URL and token come from --worker-url/--worker-token
 * or from the config file (SPEC §1.1 messages, DESIGN §2.2 parse errors).
 *
 * Defaults (DESIGN §3): HTTP 0.0.0.0:80, HTTPS 0.0.0.0:443, DNS
 * 127.0.0.1:8053, certificates in $LINKUP_HOME/certs; "off" disables a
 * listener.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "core/url.h"
#include "net/addr.h"
#include "net/log.h"
#include "server/server.h"

#define DEFAULT_HTTP_ADDR  "0.0.0.0:80"
#define DEFAULT_HTTPS_ADDR "0.0.0.0:443"
#define DEFAULT_DNS_ADDR   "127.0.0.1:8053"

struct flag {
    const char *name;
    const char *value_name; /* as --help shows it */
    size_t offset;          /* of a char * in struct local_opts */
};

static const struct flag flags[] = {
    { "--http", "A:P|off", offsetof(struct local_opts, http_addr) },
    { "--https", "A:P|off", offsetof(struct local_opts, https_addr) },
    { "--dns", "A:P|off", offsetof(struct local_opts, dns_addr) },
    { "--dns-upstream", "A:P|off", offsetof(struct local_opts, dns_upstream) },
    { "--certs-dir", "DIR", offsetof(struct local_opts, certs_dir) },
    { "--worker-url", "URL", offsetof(struct local_opts, worker_url) },
    { "--worker-token", "TOKEN", offsetof(struct local_opts, worker_token) },
};

static void print_help(void)
{
    printf("Run the local server (HTTP proxy, admin API; used by `linkup start`)\n\n"
           "Usage: linkup server [OPTIONS]\n\n"
           "Options:\n"
           "      --http <A:P|off>          HTTP listener [env: LINKUP_HTTP_ADDR] "
           "[default: " DEFAULT_HTTP_ADDR "]\n"
           "      --https <A:P|off>         HTTPS listener [env: LINKUP_HTTPS_ADDR] "
           "[default: " DEFAULT_HTTPS_ADDR "]\n"
           "      --dns <A:P|off>           DNS responder [env: LINKUP_DNS_ADDR] "
           "[default: " DEFAULT_DNS_ADDR "]\n"
           "      --dns-upstream <A:P|off>  DNS forwarding target [env: LINKUP_DNS_UPSTREAM]\n"
           "                                [default: first nameserver of /etc/resolv.conf]\n"
           "      --certs-dir <DIR>         Certificates [default: $LINKUP_HOME/certs]\n"
           "      --worker-url <URL>        Worker to create sessions on (instead of the config)\n"
           "      --worker-token <TOKEN>    Token for --worker-url\n"
           "  -c, --config <CONFIG>         Path to config file [env: LINKUP_CONFIG]\n"
           "  -h, --help                    Print help\n");
}

static char **field(struct local_opts *o, const struct flag *f)
{
    return (char **)(void *)((char *)o + f->offset);
}

/* Matches "--name value" or "--name=value"; returns 1 when consumed (with *i
 * advanced), 0 when arg is not this flag, LK_EINVAL when the value is missing.
 * As for the CLI's own options (clap, docs/cli.md), a following argument that
 * starts with '-' (other than "-") is the next option, not a value. */
static int take_flag(const struct flag *f, int argc, char **argv, int *i, struct local_opts *o,
                     struct lk_buf *err)
{
    const char *a = argv[*i];
    size_t n = strlen(f->name);
    const char *value;
    if (strncmp(a, f->name, n) != 0 || (a[n] != '\0' && a[n] != '='))
        return 0;
    if (a[n] == '=') {
        value = a + n + 1;
    } else {
        const char *next = *i + 1 < argc ? argv[*i + 1] : NULL;
        if (next == NULL || (next[0] == '-' && strcmp(next, "-") != 0)) {
            lk_buf_addf(err, "a value is required for '%s <%s>' but none was supplied", f->name,
                        f->value_name);
            return LK_EINVAL;
        }
        value = argv[++*i];
    }
    char **dst = field(o, f);
    free(*dst);
    *dst = lk_xstrdup(value);
    return 1;
}

static int parse_args(int argc, char **argv, struct local_opts *o, struct lk_buf *err)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            print_help();
            return 1;
        }
        int rc = 0;
        for (size_t k = 0; k < LK_ARRAY_LEN(flags) && rc == 0; k++)
            rc = take_flag(&flags[k], argc, argv, &i, o, err);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            lk_buf_addf(err, "unexpected argument '%s'", argv[i]);
            return LK_EINVAL;
        }
    }
    return 0;
}

static void default_from_env(char **dst, const char *env, const char *def)
{
    const char *v = getenv(env);
    if (*dst)
        return;
    if (v && v[0] != '\0')
        *dst = lk_xstrdup(v);
    else if (def)
        *dst = lk_xstrdup(def);
}

static char *default_certs_dir(void)
{
    struct lk_buf b = LK_BUF_INIT;
    const char *home = getenv("LINKUP_HOME");
    if (home && home[0] != '\0') {
        lk_buf_addf(&b, "%s/certs", home);
    } else {
        const char *h = getenv("HOME");
        lk_buf_addf(&b, "%s/.linkup/certs", h && h[0] != '\0' ? h : "/var/tmp");
    }
    return lk_buf_detach(&b, NULL);
}

static int check_addr(const char *opt, const char *value, struct lk_buf *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (strcmp(value, LOCAL_ADDR_OFF) == 0 || lk_addr_parse(value, &ss, &len) == 0)
        return 0;
    lk_buf_addf(err, "invalid value '%s' for '%s': expected ADDR:PORT or off", value, opt);
    return LK_EINVAL;
}

static void apply_env(struct local_opts *o)
{
    default_from_env(&o->http_addr, "LINKUP_HTTP_ADDR", DEFAULT_HTTP_ADDR);
    default_from_env(&o->https_addr, "LINKUP_HTTPS_ADDR", DEFAULT_HTTPS_ADDR);
    default_from_env(&o->dns_addr, "LINKUP_DNS_ADDR", DEFAULT_DNS_ADDR);
    default_from_env(&o->dns_upstream, "LINKUP_DNS_UPSTREAM", NULL);
    if (!o->certs_dir)
        o->certs_dir = default_certs_dir();
    const char *remote = getenv("LINKUP_TEST_TREAT_PEERS_AS_REMOTE");
    o->peers_remote = remote && strcmp(remote, "1") == 0;
    enum lk_log_level level;
    const char *lv = getenv("LINKUP_LOG");
    if (lk_log_level_parse(lv, &level) != 0)
        LK_LOG(WARN,
               "ignoring LINKUP_LOG=%s: expected a level (off, error, warn, info, debug, "
               "trace) or linkup=LEVEL",
               lv);
    lk_log_set_level(level);
}

/* --worker-url: an http(s) URL with a host (a worker_url of the config is
 * checked when it is loaded, with the config's messages). */
static bool is_http_url(const char *s)
{
    struct lk_url u = { 0 };
    bool ok = lk_url_parse(s, strlen(s), &u, NULL) == 0 && lk_url_is_http(&u);
    lk_url_release(&u);
    return ok;
}

static int validate(const struct local_opts *o, struct lk_buf *err)
{
    int rc = check_addr("--http <A:P|off>", o->http_addr, err);
    if (rc == 0)
        rc = check_addr("--https <A:P|off>", o->https_addr, err);
    if (rc == 0)
        rc = check_addr("--dns <A:P|off>", o->dns_addr, err);
    if (rc == 0 && o->dns_upstream)
        rc = check_addr("--dns-upstream <A:P|off>", o->dns_upstream, err);
    if (rc == 0 && o->worker_url != NULL && !is_http_url(o->worker_url)) {
        lk_buf_addf(err,
                    "invalid value '%s' for '--worker-url <URL>': expected "
                    "http(s)://HOST[:PORT][/PATH]",
                    o->worker_url);
        rc = LK_EINVAL;
    }
    if (rc == 0 && (o->worker_url != NULL) != (o->worker_token != NULL)) {
        lk_buf_adds(err, "'--worker-url' and '--worker-token' must be given together");
        rc = LK_EINVAL;
    }
    return rc;
}

/* Reads and parses the config at path (SPEC §1.1 messages). */
static int load_config(const char *path, struct lk_config **cfg, struct lk_buf *err)
{
    char abs[PATH_MAX];
    if (!realpath(path, abs)) {
        lk_buf_adds(err, "Unable to resolve absolute path for ");
        lk_config_add_quoted(err, path);
        return LK_EIO;
    }
    FILE *f = fopen(abs, "rb");
    struct lk_buf text = LK_BUF_INIT;
    lk_buf_init(&text, LK_CONFIG_MAX_BYTES);
    char chunk[8192];
    size_t n = 0;
    int rc = f ? 0 : LK_EIO;
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = lk_buf_add(&text, chunk, n);
    if (rc == 0 && f && ferror(f))
        rc = LK_EIO;
    if (f)
        fclose(f);
    if (rc != 0) {
        lk_buf_adds(err, "Failed to read config file ");
        lk_config_add_quoted(err, abs);
    } else {
        struct lk_diag diag;
        rc = lk_config_parse(text.data, text.len, abs, cfg, &diag);
        if (rc != 0)
            lk_config_format_error(abs, &diag, err);
    }
    lk_buf_release(&text);
    return rc;
}

/* Fills the worker URL/token from the config unless given as flags. */
static int worker_from_config(struct local_opts *o, const char *config_path, struct lk_buf *err)
{
    const char *path = config_path ? config_path : getenv("LINKUP_CONFIG");
    if (o->worker_url && !config_path)
        return 0; /* flags win; an inherited LINKUP_CONFIG is not needed */
    /* SPEC §1.1, as the CLI's commands: only an unset LINKUP_CONFIG is "not
     * set"; an empty one (or --config "") is a path that does not resolve. */
    if (!path) {
        lk_buf_adds(err, "No config argument provided and LINKUP_CONFIG environment variable "
                         "not set");
        return LK_EIO;
    }
    struct lk_config *cfg = NULL;
    int rc = load_config(path, &cfg, err);
    if (rc != 0)
        return rc;
    if (!o->worker_url) {
        o->worker_url = lk_xstrdup(cfg->worker_url);
        o->worker_token = lk_xstrdup(cfg->worker_token);
    }
    lk_config_free(cfg);
    return 0;
}

int local_opts_parse(int argc, char **argv, const char *config_path, struct local_opts *o,
                     struct lk_buf *err)
{
    memset(o, 0, sizeof(*o));
    int rc = parse_args(argc, argv, o, err);
    if (rc != 0)
        return rc;
    apply_env(o);
    rc = validate(o, err);
    if (rc != 0)
        return rc;
    return worker_from_config(o, config_path, err);
}

void local_opts_release(struct local_opts *o)
{
    for (size_t k = 0; k < LK_ARRAY_LEN(flags); k++) {
        char **p = field(o, &flags[k]);
        free(*p);
        *p = NULL;
    }
}

const char *local_resolv_conf(const char *path)
{
    const char *etc = path ? path : "/etc/resolv.conf";
    const char *resolved = getenv("LINKUP_SYSTEMD_RESOLV_CONF");
    if (resolved == NULL || resolved[0] == '\0')
        resolved = "/run/systemd/resolve/resolv.conf";
    FILE *f = fopen(etc, "r");
    if (f == NULL)
        return path;
    char line[512], host[256];
    bool stub = false;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, " nameserver %255s", host) == 1) {
            stub = strcmp(host, "127.0.0.53") == 0 || strcmp(host, "127.0.0.54") == 0;
            break;
        }
    }
    fclose(f);
    return stub && access(resolved, R_OK) == 0 ? resolved : path;
}
