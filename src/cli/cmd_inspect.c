/*
 * cmd_inspect.c - `linkup inspect`: the local server's request inspector
 * (DESIGN §7, GET /linkup/inspector/requests) in the terminal, once or
 * following new requests.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/http.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

static const char usage[] =
    "Show the latest requests the local server answered (its request inspector, also at\n"
    "http://localhost/linkup/inspector)\n\n"
    "Usage: linkup inspect [OPTIONS]\n\n"
    "Options:\n"
    "      --session <NAME>  Only this session's requests\n"
    "  -n, --limit <N>       At most N requests, newest last [default: 20]\n"
    "  -f, --follow          Keep printing requests as they come, until Ctrl-C\n"
    "      --json            Print the local server's JSON ({\"requests\":[...], newest first})\n"
    "  -h, --help            Print help\n";

struct inspect_opts {
    const char *session;
    unsigned long limit;
    bool follow, json;
};

static int parse(int argc, char **argv, struct inspect_opts *o, bool *help)
{
    /* The shared parser takes every form clap does: "--limit 5",
     * "--limit=5", "-n 5", "-n5", "-n=5". */
    static const struct cli_opt value_opts[] = {
        { NULL, "--session", "NAME" },
        { "-n", "--limit", "N" },
    };
    *o = (struct inspect_opts){ .limit = 20 };
    *help = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            *help = true;
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        if (strcmp(a, "-f") == 0 || strcmp(a, "--follow") == 0) {
            o->follow = true;
            continue;
        }
        const char *v = NULL;
        int k = cli_opt_take("inspect", value_opts, LK_ARRAY_LEN(value_opts), argc, argv, &i, &v);
        if (k == CLI_OPT_FAILED)
            return LK_EXIT_USAGE;
        if (k < 0)
            return cli_usage_error("inspect", "unexpected argument '%s'", a);
        if (k == 0) {
            o->session = v;
            continue;
        }
        uint64_t n = 0;
        if (lk_str_to_u64(lk_str_c(v), 256, &n) != 0 || n == 0)
            return cli_usage_error("inspect",
                                   "invalid value '%s' for '--limit <N>': a number from 1 "
                                   "to 256",
                                   v);
        o->limit = (unsigned long)n;
    }
    if (o->follow && o->json)
        return cli_usage_error("inspect", "the argument '--follow' cannot be used with '--json'");
    return 0;
}

/* GETs the requests; returns 0 with *out (decref) or an exit code after
 * printing why. */
static int fetch(const struct inspect_opts *o, unsigned long long after, json_t **out,
                 struct lk_buf *raw)
{
    struct lk_buf path = LK_BUF_INIT, url = LK_BUF_INIT;
    lk_buf_addf(&path, "/linkup/inspector/requests?limit=%lu", o->limit);
    if (after > 0)
        lk_buf_addf(&path, "&after=%llu", after);
    if (o->session != NULL) {
        lk_buf_adds(&path, "&session=");
        cli_add_query_value(&path, o->session);
    }
    cli_local_url(path.data, &url);
    struct cli_http_resp resp;
    int rc = LK_EXIT_OK;
    *out = NULL;
    if (cli_http_request("GET", url.data, NULL, NULL, 5000, &resp) != 0) {
        cli_print_not_running();
        rc = LK_EXIT_FAIL;
    } else if (resp.status != 200) {
        rc = cli_fail("request failed with status %ld: %s", resp.status,
                      resp.body.data ? resp.body.data : "");
    } else {
        json_error_t err;
        *out = json_loadb(resp.body.data, resp.body.len, 0, &err);
        if (*out == NULL || !json_is_array(json_object_get(*out, "requests"))) {
            json_decref(*out);
            *out = NULL;
            rc = cli_fail("the local server answered something else than requests");
        } else if (raw != NULL) {
            lk_buf_add(raw, resp.body.data, resp.body.len);
        }
    }
    cli_http_resp_release(&resp);
    lk_buf_release(&path);
    lk_buf_release(&url);
    return rc;
}

static const char *str_or_dash(json_t *x, const char *key)
{
    const char *s = json_string_value(json_object_get(x, key));
    return s != NULL && s[0] != '\0' ? s : "-";
}

static void print_header(void)
{
    printf("%-12s %-7s %6s %7s %-16s %-12s %s\n", "TIME", "METHOD", "STATUS", "MS", "SESSION",
           "SERVICE", "HOST PATH");
}

/* Prints the entries of reqs (newest first) oldest first; returns the
 * highest seq printed, or last when there was none. Entries not newer than
 * last mean the server restarted (its seq starts at 1 again, and it answers
 * a cursor past its newest entry with everything): they are printed, and
 * the cursor moves back to them. */
static unsigned long long print_rows(json_t *reqs, unsigned long long last)
{
    unsigned long long newest = 0;
    if (json_array_size(reqs) > 0 && last > 0 &&
        (unsigned long long)json_integer_value(json_object_get(json_array_get(reqs, 0), "seq")) <=
            last)
        fprintf(stderr, "linkup inspect: the local server restarted\n");
    for (size_t i = json_array_size(reqs); i-- > 0;) {
        json_t *x = json_array_get(reqs, i);
        const char *time = str_or_dash(x, "time");
        printf("%-12.12s %-7s %6lld %7lld %-16s %-12s %s%s\n",
               strlen(time) >= 23 ? time + 11 : time, str_or_dash(x, "method"),
               json_integer_value(json_object_get(x, "status")),
               json_integer_value(json_object_get(x, "ms")), str_or_dash(x, "session"),
               str_or_dash(x, "service"), str_or_dash(x, "host"), str_or_dash(x, "path"));
        unsigned long long seq = (unsigned long long)json_integer_value(json_object_get(x, "seq"));
        if (seq > newest)
            newest = seq;
    }
    fflush(stdout);
    return json_array_size(reqs) > 0 ? newest : last;
}

int cmd_inspect(int argc, char **argv, struct cli_ctx *ctx)
{
    struct inspect_opts o;
    bool help = false;
    int rc = parse(argc, argv, &o, &help);
    if (rc != 0)
        return rc;
    if (help) {
        fputs(usage, stdout);
        return LK_EXIT_OK;
    }
    cli_args_done(ctx);
    json_t *doc = NULL;
    struct lk_buf raw = LK_BUF_INIT;
    rc = fetch(&o, 0, &doc, o.json ? &raw : NULL);
    if (rc != LK_EXIT_OK) {
        lk_buf_release(&raw);
        return rc;
    }
    if (o.json) {
        printf("%s\n", raw.data);
        lk_buf_release(&raw);
        json_decref(doc);
        return LK_EXIT_OK;
    }
    print_header();
    unsigned long long last = print_rows(json_object_get(doc, "requests"), 0);
    json_decref(doc);
    o.limit = 256; /* following: everything newer than what was printed */
    while (o.follow) {
        struct timespec pause = { 0, 500 * 1000 * 1000 };
        nanosleep(&pause, NULL);
        rc = fetch(&o, last, &doc, NULL);
        if (rc != LK_EXIT_OK)
            return rc;
        last = print_rows(json_object_get(doc, "requests"), last);
        json_decref(doc);
    }
    return LK_EXIT_OK;
}
