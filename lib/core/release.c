/*
 * release.c - release manifest selection and the release cache (see
 * release.h, docs/releases.md).
 *
 * Invariant: every struct lk_release in a list has a parsed version, an
 * absolute http(s) URL and a 64-digit lower-case SHA-256, whether it came
 * from a manifest or from the cache, so callers never re-validate.
 */
#include "core/release.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/url.h"

#define SECONDS_PER_DAY 86400

static void release_free_fields(struct lk_release *r)
{
    lk_version_release(&r->version);
    free(r->name);
    free(r->url);
    memset(r, 0, sizeof(*r));
}

void lk_release_list_release(struct lk_release_list *list)
{
    for (size_t i = 0; i < list->n; i++)
        release_free_fields(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->n = 0;
    list->cap = 0;
}

void lk_release_cache_release(struct lk_release_cache *cache)
{
    lk_release_list_release(&cache->releases);
    cache->fetched_at = 0;
    cache->next_fetch_at = 0;
}

/* Appends r to list; ownership of r's fields moves to the list. */
static void list_push_take(struct lk_release_list *list, struct lk_release *r)
{
    LK_GROW(list->items, list->cap, list->n + 1);
    list->items[list->n++] = *r;
    memset(r, 0, sizeof(*r));
}

/* Copies a 64-digit hex digest into out in lower case; false when s is not one. */
static bool take_sha256(const char *s, size_t len, char out[LK_RELEASE_SHA256_HEX + 1])
{
    if (len != LK_RELEASE_SHA256_HEX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = lk_ascii_lower(s[i]);
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        out[i] = c;
    }
    out[len] = '\0';
    return true;
}

/* True when s starts with a URL scheme followed by ':'. */
static bool has_scheme(const char *s)
{
    size_t i = 0;
    char c = lk_ascii_lower(s[0]);
    if (!(c >= 'a' && c <= 'z'))
        return false;
    while (s[i] != '\0' && s[i] != ':' && s[i] != '/' && s[i] != '?' && s[i] != '#') {
        c = lk_ascii_lower(s[i]);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))
            return false;
        i++;
    }
    return s[i] == ':';
}

/* Appends "scheme://[userinfo@]host[:port]" of u. */
static void add_origin(const struct lk_url *u, struct lk_buf *b)
{
    lk_buf_addf(b, "%s://", u->scheme);
    if (u->userinfo)
        lk_buf_addf(b, "%s@", u->userinfo);
    lk_url_host_port(u, b);
}

int lk_release_resolve_url(const char *base, const char *ref, struct lk_buf *out)
{
    struct lk_url u = { 0 };
    struct lk_buf joined = LK_BUF_INIT;
    int rc = lk_url_parse(base, strlen(base), &u, NULL);
    if (rc != 0)
        return LK_EPARSE;
    if (has_scheme(ref)) {
        lk_buf_adds(&joined, ref);
    } else if (ref[0] == '/' && ref[1] == '/') {
        lk_buf_addf(&joined, "%s:%s", u.scheme, ref);
    } else {
        add_origin(&u, &joined);
        if (ref[0] == '/') {
            lk_buf_adds(&joined, ref);
        } else if (ref[0] == '?' || ref[0] == '#' || ref[0] == '\0') {
            lk_buf_adds(&joined, u.path);
            if (ref[0] == '#' && u.query)
                lk_buf_addf(&joined, "?%s", u.query);
            lk_buf_adds(&joined, ref);
        } else {
            /* Merge (RFC 3986 §5.2.3): the base path up to its last '/'. */
            const char *slash = strrchr(u.path, '/');
            size_t keep = slash ? (size_t)(slash - u.path) + 1 : 0;
            lk_buf_add(&joined, u.path, keep);
            if (keep == 0)
                lk_buf_addch(&joined, '/');
            lk_buf_adds(&joined, ref);
        }
    }
    rc = lk_url_normalize(joined.data, joined.len, out, NULL) == 0 ? 0 : LK_EPARSE;
    lk_buf_release(&joined);
    lk_url_release(&u);
    return rc;
}

/* The asset file name: the last segment of the URL path, "linkup" when empty. */
static char *asset_name(const char *url)
{
    struct lk_url u = { 0 };
    char *name;
    if (lk_url_parse(url, strlen(url), &u, NULL) != 0)
        return lk_xstrdup("linkup");
    const char *slash = strrchr(u.path, '/');
    const char *last = slash ? slash + 1 : u.path;
    name = lk_xstrdup(*last ? last : "linkup");
    lk_url_release(&u);
    return name;
}

/* Finds the platform's asset in the "assets" object (first matching key). */
static const json_t *find_asset(const json_t *assets, const char *os_part, const char *arch)
{
    const char *key;
    const json_t *val;
    if (!json_is_object(assets))
        return NULL;
    json_object_foreach((json_t *)(uintptr_t)assets, key, val)
    {
        if (strstr(key, os_part) != NULL && strstr(key, arch) != NULL)
            return val;
    }
    return NULL;
}

/* The release's channel: explicit "stable"/"beta", else derived from v. */
static int read_channel(const json_t *item, const struct lk_version *v, enum lk_channel *ch)
{
    const json_t *c = json_object_get(item, "channel");
    if (c == NULL || json_is_null(c)) {
        *ch = lk_version_channel(v);
        return 0;
    }
    if (!json_is_string(c))
        return LK_EPARSE;
    const char *s = json_string_value(c);
    if (strcmp(s, "stable") == 0)
        *ch = LK_CHANNEL_STABLE;
    else if (strcmp(s, "beta") == 0)
        *ch = LK_CHANNEL_BETA;
    else
        return LK_EPARSE;
    return 0;
}

/* Reads one manifest release for the platform into *r; LK_ENOTFOUND when it
 * is not usable (see lk_release_manifest_parse). */
static int read_manifest_release(const json_t *item, const char *base, const char *os_part,
                                 const char *arch, struct lk_release *r)
{
    struct lk_buf url = LK_BUF_INIT;
    struct lk_url parsed = { 0 };
    const json_t *ver = json_object_get(item, "version");
    int rc = LK_ENOTFOUND;

    memset(r, 0, sizeof(*r));
    if (!json_is_string(ver))
        return LK_ENOTFOUND;
    struct lk_str vs = { json_string_value(ver), json_string_length(ver) };
    if (lk_version_parse(vs, &r->version, NULL) != 0)
        return LK_ENOTFOUND;
    const json_t *asset = find_asset(json_object_get(item, "assets"), os_part, arch);
    const json_t *u = json_object_get(asset, "url");
    const json_t *sha = json_object_get(asset, "sha256");
    if (read_channel(item, &r->version, &r->channel) != 0 || !json_is_string(u) ||
        !json_is_string(sha))
        goto out;
    if (!take_sha256(json_string_value(sha), json_string_length(sha), r->sha256))
        goto out;
    if (strlen(json_string_value(u)) != json_string_length(u) ||
        lk_release_resolve_url(base, json_string_value(u), &url) != 0)
        goto out;
    if (lk_url_parse(url.data, url.len, &parsed, NULL) != 0 || !lk_url_is_http(&parsed))
        goto out;
    r->url = lk_buf_detach(&url, NULL);
    r->name = asset_name(r->url);
    rc = 0;
out:
    lk_url_release(&parsed);
    lk_buf_release(&url);
    if (rc != 0)
        release_free_fields(r);
    return rc;
}

static int fail(struct lk_buf *why, const char *msg)
{
    if (why)
        lk_buf_adds(why, msg);
    return LK_EPARSE;
}

/* Parses a JSON document; NULL with jansson's reason in why on failure. */
static json_t *load_json(const char *json, size_t len, struct lk_buf *why)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_DECODE_ANY, &jerr);
    if (root == NULL && why)
        lk_buf_addf(why, "%s at line %d column %d", jerr.text, jerr.line, jerr.column);
    return root;
}

int lk_release_manifest_parse(const char *json, size_t len, const char *manifest_url,
                              const char *os_part, const char *arch, struct lk_release_list *out,
                              struct lk_buf *why)
{
    struct lk_release best[2];
    size_t i;
    const json_t *item;

    json_t *root = load_json(json, len, why);
    if (root == NULL)
        return LK_EPARSE;
    const json_t *releases = json_object_get(root, "releases");
    if (!json_is_array(releases)) {
        json_decref(root);
        return fail(why, "no \"releases\" array");
    }
    memset(best, 0, sizeof(best));
    json_array_foreach(releases, i, item)
    {
        struct lk_release r;
        if (read_manifest_release(item, manifest_url, os_part, arch, &r) != 0)
            continue;
        struct lk_release *slot = &best[r.channel == LK_CHANNEL_BETA];
        if (slot->url == NULL || lk_version_cmp(&r.version, &slot->version) > 0) {
            release_free_fields(slot);
            *slot = r;
        } else {
            release_free_fields(&r);
        }
    }
    for (int c = 0; c < 2; c++) {
        if (best[c].url != NULL)
            list_push_take(out, &best[c]);
    }
    json_decref(root);
    return 0;
}

/* Reads an integer member in [min, max]. */
static int get_int(const json_t *obj, const char *key, json_int_t min, json_int_t max,
                   json_int_t *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return LK_EPARSE;
    json_int_t n = json_integer_value(v);
    if (n < min || n > max)
        return LK_EPARSE;
    *out = n;
    return 0;
}

static int read_cache_version(const json_t *obj, struct lk_version *v)
{
    json_int_t parts[3];
    static const char *const names[3] = { "major", "minor", "patch" };
    if (!json_is_object(obj))
        return LK_EPARSE;
    for (int i = 0; i < 3; i++) {
        if (get_int(obj, names[i], 0, UINT16_MAX, &parts[i]) != 0)
            return LK_EPARSE;
    }
    const json_t *pre = json_object_get(obj, "pre_release");
    if (pre != NULL && !json_is_null(pre) && !json_is_string(pre))
        return LK_EPARSE;
    memset(v, 0, sizeof(*v));
    v->major = (uint16_t)parts[0];
    v->minor = (uint16_t)parts[1];
    v->patch = (uint16_t)parts[2];
    if (json_is_string(pre)) {
        v->has_pre = true;
        v->pre = lk_xstrndup(json_string_value(pre), json_string_length(pre));
    }
    return 0;
}

static int read_cache_release(const json_t *item, struct lk_release *r)
{
    struct lk_url parsed = { 0 };
    int rc = LK_EPARSE;
    memset(r, 0, sizeof(*r));
    if (!json_is_object(item))
        return LK_EPARSE;
    const char *ch = json_string_value(json_object_get(item, "channel"));
    if (ch != NULL && strcmp(ch, "Stable") == 0)
        r->channel = LK_CHANNEL_STABLE;
    else if (ch != NULL && strcmp(ch, "Beta") == 0)
        r->channel = LK_CHANNEL_BETA;
    else
        return LK_EPARSE;
    if (read_cache_version(json_object_get(item, "version"), &r->version) != 0)
        return LK_EPARSE;
    const json_t *bin = json_object_get(item, "binary");
    const json_t *name = json_object_get(bin, "name");
    const json_t *url = json_object_get(bin, "browser_download_url");
    const json_t *sha = json_object_get(bin, "sha256");
    if (!json_is_string(name) || !json_is_string(url))
        goto out;
    /* SPEC §6.5.9's cache has no digest: such an entry reads with an empty
     * one (it can tell of an update, never install one); a digest that is
     * there must be valid. */
    if (sha != NULL && (!json_is_string(sha) ||
                        !take_sha256(json_string_value(sha), json_string_length(sha), r->sha256)))
        goto out;
    const char *u = json_string_value(url);
    if (strlen(u) != json_string_length(url) || lk_url_parse(u, strlen(u), &parsed, NULL) != 0 ||
        !lk_url_is_http(&parsed))
        goto out;
    r->name = lk_xstrndup(json_string_value(name), json_string_length(name));
    r->url = lk_xstrdup(u);
    rc = 0;
out:
    lk_url_release(&parsed);
    if (rc != 0)
        release_free_fields(r);
    return rc;
}

int lk_release_cache_parse(const char *json, size_t len, struct lk_release_cache *out,
                           struct lk_buf *why)
{
    json_int_t fetched;
    json_int_t next;
    size_t i;
    const json_t *item;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    json_t *root = load_json(json, len, why);
    if (root == NULL)
        return LK_EPARSE;
    const json_t *releases = json_object_get(root, "releases");
    if (get_int(root, "fetched_at", INT64_MIN, INT64_MAX, &fetched) != 0 ||
        get_int(root, "next_fetch_at", INT64_MIN, INT64_MAX, &next) != 0) {
        rc = fail(why, "missing or invalid \"fetched_at\"/\"next_fetch_at\"");
        goto out;
    }
    if (!json_is_array(releases)) {
        rc = fail(why, "no \"releases\" array");
        goto out;
    }
    json_array_foreach(releases, i, item)
    {
        struct lk_release r;
        if (read_cache_release(item, &r) != 0) {
            rc = fail(why, "invalid release entry");
            goto out;
        }
        list_push_take(&out->releases, &r);
    }
    out->fetched_at = (int64_t)fetched;
    out->next_fetch_at = (int64_t)next;
out:
    if (rc != 0)
        lk_release_cache_release(out);
    json_decref(root);
    return rc;
}

static json_t *version_to_json(const struct lk_version *v)
{
    json_t *o = json_object();
    json_object_set_new(o, "major", json_integer(v->major));
    json_object_set_new(o, "minor", json_integer(v->minor));
    json_object_set_new(o, "patch", json_integer(v->patch));
    json_object_set_new(o, "pre_release",
                        v->has_pre ? json_string(v->pre ? v->pre : "") : json_null());
    return o;
}

static json_t *release_to_json(const struct lk_release *r)
{
    json_t *o = json_object();
    json_t *bin = json_object();
    json_object_set_new(o, "channel",
                        json_string(r->channel == LK_CHANNEL_BETA ? "Beta" : "Stable"));
    json_object_set_new(o, "version", version_to_json(&r->version));
    json_object_set_new(bin, "name", json_string(r->name));
    json_object_set_new(bin, "browser_download_url", json_string(r->url));
    if (r->sha256[0] != '\0')
        json_object_set_new(bin, "sha256", json_string(r->sha256));
    json_object_set_new(o, "binary", bin);
    return o;
}

void lk_release_cache_to_json(const struct lk_release_cache *cache, struct lk_buf *out)
{
    json_t *root = json_object();
    json_t *arr = json_array();
    json_object_set_new(root, "fetched_at", json_integer((json_int_t)cache->fetched_at));
    json_object_set_new(root, "next_fetch_at", json_integer((json_int_t)cache->next_fetch_at));
    for (size_t i = 0; i < cache->releases.n; i++)
        json_array_append_new(arr, release_to_json(&cache->releases.items[i]));
    json_object_set_new(root, "releases", arr);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text == NULL)
        LK_BUG("json_dumps failed on the release cache");
    lk_buf_adds(out, text);
    lk_buf_addch(out, '\n');
    free(text);
    json_decref(root);
}

const struct lk_release *lk_release_find(const struct lk_release_list *list, enum lk_channel ch)
{
    for (size_t i = 0; i < list->n; i++) {
        if (list->items[i].channel == ch)
            return &list->items[i];
    }
    return NULL;
}

bool lk_release_is_update(const struct lk_release *rel, enum lk_channel requested,
                          const struct lk_version *current)
{
    if (rel == NULL)
        return false;
    if (requested != lk_version_channel(current))
        return true;
    return lk_version_cmp(&rel->version, current) > 0;
}

int64_t lk_release_next_midnight(int64_t now)
{
    int64_t day = now / SECONDS_PER_DAY;
    if (now < 0 && now % SECONDS_PER_DAY != 0)
        day--; /* floor division for times before 1970 */
    return (day + 1) * SECONDS_PER_DAY;
}

const char *lk_release_os_part(const char *sysname)
{
    if (strcmp(sysname, "Linux") == 0)
        return "unknown-linux";
    if (strcmp(sysname, "Darwin") == 0)
        return "apple-darwin";
    return NULL;
}

const char *lk_release_arch(const char *machine)
{
    if (strcmp(machine, "x86_64") == 0 || strcmp(machine, "amd64") == 0)
        return "x86_64";
    if (strcmp(machine, "aarch64") == 0 || strcmp(machine, "arm64") == 0)
        return "aarch64";
    return machine;
}
