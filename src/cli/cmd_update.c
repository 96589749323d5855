/*
 * cmd_update.c - `linkup update [--channel stable|beta] [--skip-cache]`
 * (SPEC §6.5.9, DESIGN §2.15): find the release for the requested channel in
 * the release cache or manifest, and when it is an update stop Linkup, install
 * it over the running binary and re-apply the port capability.
 *
 * Everything that can be checked before stopping a running session (a
 * manifest, a release, a writable directory) is checked first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/home.h"
#include "cli/update.h"
#include "cli/update_install.h"
#include "core/err.h"
#include "core/version.h"

static const char update_usage[] =
    "Update linkup to the latest released version.\n\n"
    "Usage: linkup update [OPTIONS]\n\n"
    "Options:\n"
    "      --channel <CHANNEL>  Release channel to update to (default: the current one)\n"
    "                           [possible values: stable, beta]\n"
    "      --skip-cache         Ignore the cached release list and fetch the manifest again\n"
    "  -h, --help               Print help\n\n"
    "The release manifest is read from LINKUP_RELEASE_URL.\n";

struct update_opts {
    const char *channel; /* NULL: the current channel */
    bool skip_cache;
    bool help;
};

static int parse_args(int argc, char **argv, struct update_opts *o)
{
    static const struct cli_opt channel_opt = { NULL, "--channel", "CHANNEL" };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            o->help = true;
            continue;
        }
        if (strcmp(a, "--skip-cache") == 0) {
            o->skip_cache = true;
            continue;
        }
        enum cli_opt_result r = cli_opt_value("update", &channel_opt, argc, argv, &i, &o->channel);
        if (r == CLI_OPT_ERROR)
            return LK_EXIT_USAGE;
        if (r == CLI_OPT_NO_MATCH)
            return cli_usage_error("update", "unexpected argument '%s'", a);
    }
    if (o->channel && strcmp(o->channel, "stable") != 0 && strcmp(o->channel, "beta") != 0)
        return cli_usage_error("update",
                               "invalid value '%s' for '--channel <CHANNEL>' [possible values: "
                               "stable, beta]",
                               o->channel);
    return 0;
}

/* Applies the capability unless LINKUP_NO_SETCAP asks not to (Linux only). */
static void apply_capability(const char *exe)
{
#ifdef __linux__
    const char *skip = getenv("LINKUP_NO_SETCAP");
    if (skip == NULL || skip[0] == '\0' || strcmp(skip, "0") == 0)
        cli_update_setcap(exe);
#else
    (void)exe;
#endif
}

/* Stops Linkup, installs rel over exe and reports. */
static int install(const struct lk_version *cur, const struct lk_release *rel, const char *exe)
{
    struct lk_buf from = LK_BUF_INIT;
    struct lk_buf to = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    int rc = LK_EXIT_OK;

    lk_version_format(cur, &from);
    lk_version_format(&rel->version, &to);
    cli_home_lock(); /* no `start` between the stop and the new binary */
    cli_stop_all(false);
    printf("Updating from version '%s' (%s) to '%s' (%s)...\n", from.data,
           lk_channel_name(lk_version_channel(cur)), to.data, lk_channel_name(rel->channel));
    fflush(stdout);
    if (cli_update_install(rel, exe, &err) != 0) {
        rc = cli_fail("Failed to download new version: %s", err.data);
        goto out;
    }
    apply_capability(exe);
    printf("Updated linkup from %s to %s\n", from.data, to.data);
    printf("Finished update!\n");
out:
    lk_buf_release(&err);
    lk_buf_release(&to);
    lk_buf_release(&from);
    return rc;
}

static int run_update(const struct update_opts *o, const char *url)
{
    struct lk_release_cache cache = { 0 };
    struct lk_version cur = { 0 };
    struct lk_buf err = LK_BUF_INIT;
    struct lk_buf path = LK_BUF_INIT;
    struct lk_buf exe = LK_BUF_INIT;
    int rc = LK_EXIT_OK;

    if (lk_version_parse(lk_str_c(LK_VERSION), &cur, &err) != 0) {
        rc = cli_fail("%s", err.data);
        goto out;
    }
    enum lk_channel requested = lk_version_channel(&cur);
    if (o->channel)
        requested = strcmp(o->channel, "beta") == 0 ? LK_CHANNEL_BETA : LK_CHANNEL_STABLE;
    if (o->skip_cache) {
        cli_home_file(CLI_RELEASES_CACHE, &path);
        unlink(path.data);
    }
    if (cli_releases_get(url, true, &cache, &err) != 0) {
        rc = url == NULL ? cli_fail("%s", err.data)
                         : cli_fail("Failed to fetch release manifest: %s", err.data);
        goto out;
    }
    const struct lk_release *rel = lk_release_find(&cache.releases, requested);
    if (!lk_release_is_update(rel, requested, &cur)) {
        printf("No new version available.\n");
        goto out;
    }
    if (rel->sha256[0] == '\0') {
        /* Only a cache read without LINKUP_RELEASE_URL lacks digests. */
        struct lk_buf to = LK_BUF_INIT;
        lk_version_format(&rel->version, &to);
        rc = cli_fail("Cannot verify version '%s': the release cache has no SHA-256 for it; "
                      "set LINKUP_RELEASE_URL to fetch the release manifest",
                      to.data);
        lk_buf_release(&to);
        goto out;
    }
    if (cli_self_path(&exe) != 0) {
        rc = cli_fail("Failed to find the running linkup binary");
        goto out;
    }
    if (cli_update_check_writable(exe.data, &err) != 0) {
        rc = cli_fail("%s", err.data);
        goto out;
    }
    rc = install(&cur, rel, exe.data);
out:
    lk_buf_release(&exe);
    lk_buf_release(&path);
    lk_buf_release(&err);
    lk_version_release(&cur);
    lk_release_cache_release(&cache);
    return rc;
}

int cmd_update(int argc, char **argv, struct cli_ctx *ctx)
{
    struct update_opts o = { 0 };
    (void)ctx;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;
    if (o.help) {
        fputs(update_usage, stdout);
        return LK_EXIT_OK;
    }
    rc = cli_home_ensure();
    if (rc != 0)
        return rc;
    /* NULL: only a still-valid releases_cache.json can answer. */
    return run_update(&o, cli_release_url());
}
