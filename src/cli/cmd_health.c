/*
 * cmd_health.c - `linkup health [--json]` (SPEC §6.5.5 + DESIGN §2.13).
 *
 * Never fails on a component that is down. Secrets (worker and session
 * tokens) are masked everywhere in the output. On Linux it also says whether
 * the local server may bind its ports below 1024 (root, capabilities, the
 * binary's file capability, the unprivileged-port sysctl; issue 10).
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <jansson.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/cloudflared.h"
#include "cli/home.h"
#include "cli/http.h"
#include "cli/procs.h"
#include "cli/tunnel.h"
#include "core/alloc.h"
#include "net/addr.h"

#define MAX_ORPHANS 64

static const char health_usage[] = "Output the health of the CLI service\n\n"
                                   "Usage: linkup health [OPTIONS]\n\n"
                                   "Options:\n"
                                   "      --json  Print the health as JSON\n"
                                   "  -h, --help  Print help\n";

/* What decides whether the local server may bind its ports below 1024
 * (Linux; DESIGN §2.13, issue 10). */
struct priv_ports {
    int ports[2];       /* configured listener ports below 1024 */
    size_t n_ports;     /* entries of ports[] */
    bool is_root;       /* euid 0 */
    bool cap_effective; /* CAP_NET_BIND_SERVICE in this process's CapEff */
    bool cap_bounding;  /* ... in CapBnd: an exec'd server may gain it */
    bool file_cap;      /* the binary carries cap_net_bind_service=+ep */
    long unpriv_start;  /* net.ipv4.ip_unprivileged_port_start, -1 when unknown */
    bool can_bind;      /* the verdict */
};

/* The capability set named key ("CapEff") of /proc/self/status text. */
static uint64_t status_caps(const char *status, const char *key)
{
    const char *p = strstr(status, key);
    if (p == NULL)
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(p + strlen(key), &end, 16);
    return errno == 0 && end != p + strlen(key) ? (uint64_t)v : 0;
}

/* True when the file at path has CAP_NET_BIND_SERVICE in its permitted set
 * with the effective flag (setcap ...=+ep): struct vfs_cap_data, revision
 * 1 to 3, little-endian words. */
static bool file_has_cap(const char *path)
{
    uint32_t words[6] = { 0 };
    ssize_t n = getxattr(path, "security.capability", words, sizeof(words));
    if (n < 12)
        return false;
    uint32_t magic = le32toh(words[0]);
    return (magic & VFS_CAP_FLAGS_EFFECTIVE) != 0 &&
           (le32toh(words[1]) >> CAP_NET_BIND_SERVICE & 1u) != 0;
}

static long unprivileged_port_start(void)
{
    struct lk_buf text = LK_BUF_INIT;
    uint64_t v = 0;
    long start = -1;
    if (cli_read_file("/proc/sys/net/ipv4/ip_unprivileged_port_start", &text, 64) == 0 &&
        lk_str_to_u64(lk_str_trim(lk_buf_str(&text)), 65536, &v) == 0)
        start = (long)v;
    lk_buf_release(&text);
    return start;
}

/* Adds the port of a listener address (env value or default) when below 1024. */
static void add_port(struct priv_ports *pp, const char *env, const char *dflt)
{
    const char *addr = getenv(env);
    struct sockaddr_storage ss;
    socklen_t ss_len = 0;
    if (addr == NULL || *addr == '\0')
        addr = dflt;
    if (strcmp(addr, "off") == 0 || lk_addr_parse(addr, &ss, &ss_len) != 0)
        return;
    int port = lk_addr_port((struct sockaddr *)&ss);
    if (port > 0 && port < 1024 && pp->n_ports < 2)
        pp->ports[pp->n_ports++] = port;
}

/* Root with the capability in reach, the capability in this process, the
 * binary's file capability (the server is exec'd from it; the bounding set
 * must allow it), or a sysctl that makes the lowest such port unprivileged
 * (80, the default, when no configured port is below 1024). */
static void priv_ports_get(struct priv_ports *pp)
{
    struct lk_buf status = LK_BUF_INIT;
    char self[4096];
    memset(pp, 0, sizeof(*pp));
    add_port(pp, "LINKUP_HTTP_ADDR", "0.0.0.0:80");
    add_port(pp, "LINKUP_HTTPS_ADDR", "0.0.0.0:443");
    pp->is_root = geteuid() == 0;
    if (cli_read_file("/proc/self/status", &status, 1u << 20) == 0) {
        pp->cap_effective = status_caps(status.data, "\nCapEff:") >> CAP_NET_BIND_SERVICE & 1u;
        pp->cap_bounding = status_caps(status.data, "\nCapBnd:") >> CAP_NET_BIND_SERVICE & 1u;
    }
    lk_buf_release(&status);
    pp->file_cap = cli_procs_self_exe(self, sizeof(self)) == 0 && file_has_cap(self);
    pp->unpriv_start = unprivileged_port_start();
    int lowest = 80;
    for (size_t i = 0; i < pp->n_ports; i++)
        lowest = i == 0 || pp->ports[i] < lowest ? pp->ports[i] : lowest;
    pp->can_bind = pp->cap_effective || ((pp->is_root || pp->file_cap) && pp->cap_bounding) ||
                   (pp->unpriv_start >= 0 && pp->unpriv_start <= lowest);
}

/* The human line, only when a configured port is below 1024. */
static void print_priv_ports(const struct priv_ports *pp)
{
    if (pp->n_ports == 0)
        return;
    printf("  Can bind ports %d", pp->ports[0]);
    for (size_t i = 1; i < pp->n_ports; i++)
        printf("/%d", pp->ports[i]);
    if (!pp->can_bind)
        printf(": NO - run: sudo setcap cap_net_bind_service=+ep \"$(which linkup)\"\n");
    else if (pp->is_root && (pp->cap_effective || pp->cap_bounding))
        printf(": YES (root)\n");
    else if (pp->file_cap && pp->cap_bounding)
        printf(": YES (cap_net_bind_service)\n");
    else if (pp->cap_effective)
        printf(": YES (capability)\n");
    else
        printf(": YES (net.ipv4.ip_unprivileged_port_start=%ld)\n", pp->unpriv_start);
}

static char *os_name(void)
{
    struct lk_buf text = LK_BUF_INIT;
    char *name = NULL;
    if (cli_read_file("/etc/os-release", &text, 1u << 16) == 0) {
        const char *p = strstr(text.data, "\nNAME=");
        p = p ? p + 6 : (strncmp(text.data, "NAME=", 5) == 0 ? text.data + 5 : NULL);
        if (p) {
            size_t len = strcspn(p, "\n");
            if (len >= 2 && p[0] == '"' && p[len - 1] == '"')
                name = lk_xstrndup(p + 1, len - 2);
            else
                name = lk_xstrndup(p, len);
        }
    }
    lk_buf_release(&text);
    if (name == NULL) {
        struct utsname u;
        name = lk_xstrdup(uname(&u) == 0 ? u.sysname : "Linux");
    }
    return name;
}

static json_t *dir_list(const char *path)
{
    json_t *arr = json_array();
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            json_array_append_new(arr, json_string(e->d_name));
    }
    if (d)
        closedir(d);
    return arr;
}

static void add_domain(const char *domain, void *data)
{
    json_t *arr = data;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (strcmp(json_string_value(v), domain) == 0)
            return;
    }
    json_array_append_new(arr, json_string(domain));
}

/* SPEC §6.5.5: the files of /etc/resolver (macOS); DESIGN §2.11: on Linux
 * the domains Linkup's systemd-resolved drop-in routes, as resolver names. */
static json_t *dns_resolvers(void)
{
    json_t *arr = dir_list("/etc/resolver");
    cli_local_dns_resolved_domains(add_domain, arr);
    return arr;
}

static json_t *system_json(const struct priv_ports *pp)
{
    struct utsname u;
    char *os = os_name();
    json_t *sys = json_object();
    json_object_set_new(sys, "os", json_string(os));
    json_object_set_new(sys, "architecture", json_string(uname(&u) == 0 ? u.machine : "unknown"));
    json_object_set_new(sys, "dns_resolvers", dns_resolvers());
    json_object_set_new(sys, "can_bind_privileged_ports", json_boolean(pp->can_bind));
    free(os);
    return sys;
}

/* Masks every string value stored under a key named like a secret. */
static void mask_secrets(json_t *j)
{
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_array(j)) {
        json_array_foreach(j, i, v) mask_secrets(v);
        return;
    }
    json_object_foreach(j, key, v)
    {
        if (json_is_string(v) &&
            (strcmp(key, "worker_token") == 0 || strcmp(key, "session_token") == 0 ||
             strcmp(key, "secret") == 0)) {
            char *m = cli_mask(json_string_value(v));
            json_t *masked = json_string(m); /* NULL if not UTF-8: mask it all */
            json_object_set_new(j, key, masked ? masked : json_string("\xE2\x80\xA6"));
            free(m);
        } else {
            mask_secrets(v);
        }
    }
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *strings_or_null(bool has, char *const *items, size_t n)
{
    if (!has)
        return json_null();
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_string(items[i]));
    return arr;
}

static json_t *domain_json(const struct lk_state_domain *d)
{
    json_t *routes = json_null();
    if (d->has_routes) {
        routes = json_array();
        for (size_t j = 0; j < d->n_routes; j++)
            json_array_append_new(routes, json_pack("{s:s,s:s}", "path", d->routes[j].path,
                                                    "service", d->routes[j].service));
    }
    return json_pack("{s:s,s:s,s:o}", "domain", d->domain, "default_service", d->default_service,
                     "routes", routes);
}

/* One service as the state file has it: directory and health only when set. */
static json_t *service_json(const struct lk_state_service *sv)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "current", lk_state_target_name(sv->current), "name",
                          sv->name, "remote", sv->remote, "local", sv->local);
    if (sv->directory)
        json_object_set_new(o, "directory", json_string(sv->directory));
    json_t *rw = json_null();
    if (sv->has_rewrites) {
        rw = json_array();
        for (size_t j = 0; j < sv->n_rewrites; j++)
            json_array_append_new(rw, json_pack("{s:s,s:s}", "source", sv->rewrites[j].source,
                                                "target", sv->rewrites[j].target));
    }
    json_object_set_new(o, "rewrites", rw);
    if (sv->has_health) {
        json_t *statuses = json_null();
        if (sv->health.has_statuses) {
            statuses = json_array();
            for (size_t j = 0; j < sv->health.n_statuses; j++)
                json_array_append_new(statuses, json_integer(sv->health.statuses[j]));
        }
        json_object_set_new(
            o, "health",
            json_pack("{s:o,s:o}", "path", str_or_null(sv->health.path), "statuses", statuses));
    }
    return o;
}

/* The whole state with the keys and order of the state file (SPEC §6.3,
 * §6.5.5: `states.items.state` is the state object). */
static json_t *state_json(const struct lk_state *st)
{
    json_t *o = json_object();
    json_t *l = json_object();
    json_object_set_new(l, "session_name", json_string(st->session_name));
    json_object_set_new(l, "session_token", json_string(st->session_token));
    json_object_set_new(l, "worker_url", json_string(st->worker_url));
    json_object_set_new(l, "worker_token", json_string(st->worker_token));
    json_object_set_new(l, "config_path", json_string(st->config_path));
    json_object_set_new(l, "tunnel", str_or_null(st->tunnel));
    json_object_set_new(l, "kind", json_string(st->kind));
    json_object_set_new(
        l, "cache_routes",
        strings_or_null(st->has_cache_routes, st->cache_routes, st->n_cache_routes));
    json_object_set_new(o, "linkup", l);
    json_t *doms = json_array();
    for (size_t i = 0; i < st->n_domains; i++)
        json_array_append_new(doms, domain_json(&st->domains[i]));
    json_object_set_new(o, "domains", doms);
    json_t *svcs = json_array();
    for (size_t i = 0; i < st->n_services; i++)
        json_array_append_new(svcs, service_json(&st->services[i]));
    json_object_set_new(o, "services", svcs);
    return o;
}

static json_t *probe(const char *base, const char *path)
{
    struct lk_buf url = LK_BUF_INIT;
    size_t len = strlen(base);
    lk_buf_addf(&url, "%.*s%s", (int)(len && base[len - 1] == '/' ? len - 1 : len), base, path);
    struct cli_probe p = { url.data, NULL, 0 };
    cli_http_probe_all(&p, 1, 2000);
    bool ok = p.status != 0 && (p.status < 500 || p.status > 599);
    json_t *o = json_pack("{s:s,s:s}", "url", url.data, "status", ok ? "Ok" : "Error");
    lk_buf_release(&url);
    return o;
}

static json_t *admin_get(const char *path, const char *field)
{
    struct lk_buf url = LK_BUF_INIT;
    struct cli_http_resp resp;
    json_t *out = json_null();
    cli_local_url(path, &url);
    if (cli_http_request("GET", url.data, NULL, NULL, 2000, &resp) == 0 && resp.status == 200) {
        json_t *root = json_loadb(resp.body.data, resp.body.len, 0, NULL);
        json_t *v = json_object_get(root, field);
        if (v)
            out = json_incref(v);
        json_decref(root);
    }
    cli_http_resp_release(&resp);
    lk_buf_release(&url);
    return out;
}

static json_t *local_server_json(pid_t pid)
{
    if (pid <= 0)
        return json_string("Stopped");
    json_t *run = json_object();
    json_object_set_new(run, "pid", json_integer(pid));
    json_object_set_new(run, "healthy", json_boolean(cli_local_check(1000)));
    json_object_set_new(run, "dns_records", admin_get("/linkup/dns", "domains"));
    json_object_set_new(run, "sessions", admin_get("/linkup/sessions", "sessions"));
    return json_pack("{s:o}", "Running", run);
}

static json_t *orphans_json(pid_t server, pid_t tunnel)
{
    pid_t skip[2] = { server, tunnel };
    struct cli_proc_info *infos = lk_xcalloc(MAX_ORPHANS, sizeof(*infos));
    size_t n = cli_procs_scan(skip, 2, infos, MAX_ORPHANS);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            arr, json_pack("{s:i,s:s}", "pid", (int)infos[i].pid, "cmd", infos[i].cmd));
    free(infos);
    return arr;
}

/* DESIGN §2.13 `tunnel`: the URL and whether it is connected (built-in:
 * the local server's word; cloudflared: it runs). */
static json_t *tunnel_json(const struct lk_state *st)
{
    struct cli_tunnel_status t;
    cli_tunnel_status_get(st, &t);
    json_t *o = json_pack("{s:o,s:b}", "url", t.url ? json_string(t.url) : json_null(), "connected",
                          t.connected);
    cli_tunnel_status_release(&t);
    return o;
}

static json_t *gather(const struct priv_ports *pp)
{
    struct lk_state *st = NULL;
    bool has_state = cli_state_load(&st, NULL) == 0;
    pid_t server = cli_local_server_find();
    pid_t tunnel = cli_cloudflared_find();
    json_t *root = json_object();
    json_object_set_new(root, "cli", json_pack("{s:s}", "version", LK_VERSION));
    json_object_set_new(root, "system", system_json(pp));
    json_t *items = json_object();
    if (has_state)
        json_object_set_new(items, "state", state_json(st));
    json_object_set_new(root, "states", json_pack("{s:o}", "items", items));
    json_t *remote = has_state ? probe(st->worker_url, "/linkup/check") : json_null();
    json_t *tun = has_state && st->tunnel ? probe(st->tunnel, "/linkup/check") : json_null();
    json_object_set_new(root, "linkup_services",
                        json_pack("{s:O,s:O}", "remote_server", remote, "tunnel", tun));
    json_object_set_new(root, "local_server", local_server_json(server));
    json_object_set_new(root, "cloudflared",
                        tunnel > 0 ? json_pack("{s:{s:i}}", "Running", "pid", (int)tunnel)
                                   : json_string("Stopped"));
    json_object_set_new(root, "linkup_home",
                        json_pack("{s:s,s:o}", "path", cli_home(), "files", dir_list(cli_home())));
    json_object_set_new(root, "orphans", orphans_json(server, tunnel));
    json_object_set_new(root, "tunnel", tunnel_json(has_state ? st : NULL));
    json_decref(remote);
    json_decref(tun);
    lk_state_free(st);
    mask_secrets(root);
    return root;
}

static void print_list(const char *title, json_t *arr, const char *none, const char *indent)
{
    if (!json_is_array(arr)) {
        printf("%s%s: FAILED TO FETCH\n", indent, title);
        return;
    }
    if (json_array_size(arr) == 0) {
        printf("%s%s: %s\n", indent, title, none);
        return;
    }
    printf("%s%s:\n", indent, title);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) printf("%s  - %s\n", indent, json_string_value(v));
}

static void print_service(const char *title, json_t *svc)
{
    if (!json_is_object(svc))
        return;
    const char *status = json_string_value(json_object_get(svc, "status"));
    printf("  %s: %s (%s)\n", title, strcmp(status, "Ok") == 0 ? "OK" : "ERROR",
           json_string_value(json_object_get(svc, "url")));
}

static void print_local_server(json_t *ls)
{
    json_t *run = json_object_get(ls, "Running");
    if (run == NULL) {
        printf("Local Server: NOT RUNNING\n");
        return;
    }
    printf("Local Server:\n  Health: %s\n  PID: %lld\n",
           json_is_true(json_object_get(run, "healthy")) ? "OK" : "ERR",
           json_integer_value(json_object_get(run, "pid")));
    json_t *sessions = json_object_get(run, "sessions");
    if (!json_is_object(sessions)) {
        printf("  Sessions: FAILED TO FETCH\n");
    } else {
        printf("  Sessions:%s\n", json_object_size(sessions) ? "" : " NONE");
        const char *name;
        json_t *s;
        json_object_foreach(sessions, name, s)
        {
            const char *kind = json_string_value(json_object_get(s, "kind"));
            printf("    - %s (%s)\n", name, kind ? kind : "tunneled");
        }
    }
    print_list("DNS Records", json_object_get(run, "dns_records"), "NONE", "  ");
}

static void print_text(json_t *root, const struct priv_ports *pp)
{
    json_t *sys = json_object_get(root, "system");
    printf("System:\n  OS: %s\n  Architecture: %s\n", json_string_value(json_object_get(sys, "os")),
           json_string_value(json_object_get(sys, "architecture")));
    print_list("DNS Resolvers", json_object_get(sys, "dns_resolvers"), "NONE", "  ");
    print_priv_ports(pp);
    printf("CLI:\n  Version: %s\n", LK_VERSION);
    json_t *state =
        json_object_get(json_object_get(json_object_get(root, "states"), "items"), "state");
    if (state) {
        json_t *l = json_object_get(state, "linkup");
        printf("States:\n  - [state] %s (%s)\n",
               json_string_value(json_object_get(l, "session_name")),
               json_string_value(json_object_get(l, "kind")));
    } else {
        printf("States: NONE\n");
    }
    json_t *svcs = json_object_get(root, "linkup_services");
    printf("Linkup Services:\n");
    print_service("Remote Server", json_object_get(svcs, "remote_server"));
    print_service("Tunnel", json_object_get(svcs, "tunnel"));
    print_local_server(json_object_get(root, "local_server"));
    json_t *cf = json_object_get(json_object_get(root, "cloudflared"), "Running");
    if (cf)
        printf("Cloudflared:\n  PID: %lld\n", json_integer_value(json_object_get(cf, "pid")));
    else
        printf("Cloudflared: NOT RUNNING\n");
    json_t *tunnel = json_object_get(root, "tunnel");
    const char *url = json_string_value(json_object_get(tunnel, "url"));
    printf("Tunnel:\n  URL: %s\n  Connected: %s\n", url ? url : "NONE",
           json_is_true(json_object_get(tunnel, "connected")) ? "YES" : "NO");
    json_t *home = json_object_get(root, "linkup_home");
    printf("Linkup Home: %s\n", json_string_value(json_object_get(home, "path")));
    print_list("Files", json_object_get(home, "files"), "NONE", "  ");
    json_t *orphans = json_object_get(root, "orphans");
    size_t i;
    json_t *o;
    printf("Possible Orphan Processes:%s\n", json_array_size(orphans) ? "" : " NONE");
    json_array_foreach(orphans, i, o)
    {
        printf("  - (%lld): %s\n", json_integer_value(json_object_get(o, "pid")),
               json_string_value(json_object_get(o, "cmd")));
    }
}

int cmd_health(int argc, char **argv, struct cli_ctx *ctx)
{
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(health_usage, stdout);
            return LK_EXIT_OK;
        }
        if (strcmp(argv[i], "--json") != 0)
            return cli_usage_error("health", "unexpected argument '%s'", argv[i]);
        as_json = true;
    }
    cli_args_done(ctx);
    int rc = cli_home_ensure();
    if (rc != 0)
        return rc;
    struct priv_ports pp;
    priv_ports_get(&pp);
    json_t *root = gather(&pp);
    if (as_json) {
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputs(text ? text : "{}", stdout);
        free(text);
    } else {
        print_text(root, &pp);
    }
    json_decref(root);
    return LK_EXIT_OK;
}
