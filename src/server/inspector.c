/*
 * inspector.c - the request inspector's ring and its JSON (inspector.h).
 */
#include "server/inspector.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/session.h"
#include "net/log.h"
#include "server/server.h"

void local_inspector_init(struct local_inspector *in)
{
    memset(in, 0, sizeof(*in));
}

void local_inspector_release(struct local_inspector *in)
{
    for (size_t i = 0; i < LOCAL_INSPECTOR_MAX; i++)
        free(in->ring[i].mem);
    memset(in, 0, sizeof(*in));
}

/* Copies (p, n) to *at as a NUL-terminated string, bytes outside printable
 * ASCII as '?' (the JSON stays valid UTF-8 whatever a client sent); returns
 * it, or NULL for an absent one. */
static const char *put(char **at, const char *p, size_t n)
{
    if (p == NULL)
        return NULL;
    char *s = *at;
    for (size_t i = 0; i < n; i++)
        s[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
    s[n] = '\0';
    *at += n + 1;
    return s;
}

static size_t len_or_0(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

/* True for a request to the inspector itself: the path of the target
 * (local_target_path()) is exactly one of its two admin paths. A proxied
 * `/linkup/inspectorfoo` is not one. */
static bool is_inspector_request(const struct lk_access_entry *e)
{
    if (e->path == NULL)
        return false;
    struct lk_str t = local_target_path((struct lk_str){ e->path, e->path_len });
    return lk_str_eq(t, LK_STR("/linkup/inspector")) ||
           lk_str_eq(t, LK_STR("/linkup/inspector/requests"));
}

void local_inspector_record(void *data, const struct lk_access_entry *e)
{
    struct local_inspector *in = data;
    /* The page's own polls would push everything else out. */
    if (is_inspector_request(e))
        return;
    struct local_inspector_entry *x = &in->ring[in->next];
    in->next = (in->next + 1) % LOCAL_INSPECTOR_MAX;
    size_t path_len =
        e->path_len < LOCAL_INSPECTOR_MAX_PATH ? e->path_len : LOCAL_INSPECTOR_MAX_PATH;
    size_t session_len = len_or_0(e->session), service_len = len_or_0(e->service);
    size_t need = e->method_len + e->host_len + path_len + session_len + service_len + 5;
    if (need > x->mem_cap) {
        free(x->mem);
        x->mem_cap = need < 256 ? 256 : need;
        x->mem = lk_xmalloc(x->mem_cap);
    }
    char *at = x->mem;
    x->method = put(&at, e->method, e->method_len);
    x->host = put(&at, e->host, e->host_len);
    x->path = put(&at, e->path, path_len);
    x->session = put(&at, e->session, session_len);
    x->service = put(&at, e->service, service_len);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    x->time_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    x->seq = ++in->seq;
    x->status = e->status;
    x->bytes = e->bytes;
    x->ms = e->ms;
}

static void add_field(struct lk_buf *out, const char *name, const char *value)
{
    lk_buf_addf(out, ",\"%s\":", name);
    if (value == NULL)
        lk_buf_adds(out, "null");
    else
        lk_json_add_string(out, value, strlen(value));
}

static void add_entry(struct lk_buf *out, const struct local_inspector_entry *x)
{
    time_t sec = (time_t)(x->time_ms / 1000);
    struct tm tm;
    char when[32];
    gmtime_r(&sec, &tm);
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%03dZ", (int)(x->time_ms % 1000));
    lk_buf_addf(out, "{\"seq\":%llu,\"time\":\"%s\"", (unsigned long long)x->seq, when);
    add_field(out, "method", x->method);
    add_field(out, "host", x->host);
    add_field(out, "path", x->path);
    add_field(out, "session", x->session);
    add_field(out, "service", x->service);
    lk_buf_addf(out, ",\"status\":%d,\"bytes\":%llu,\"ms\":%llu}", x->status,
                (unsigned long long)x->bytes, (unsigned long long)x->ms);
}

void local_inspector_json(const struct local_inspector *in, struct lk_str session, size_t limit,
                          uint64_t after_seq, struct lk_buf *out)
{
    /* A cursor past the newest entry comes from an earlier run of the server
     * (its seq restarted at 1): everything is newer than it. */
    if (after_seq > in->seq)
        after_seq = 0;
    lk_buf_adds(out, "{\"requests\":[");
    size_t n = 0;
    for (size_t k = 1; k <= LOCAL_INSPECTOR_MAX && n < limit; k++) {
        const struct local_inspector_entry *x =
            &in->ring[(in->next + LOCAL_INSPECTOR_MAX - k) % LOCAL_INSPECTOR_MAX];
        if (x->seq == 0 || x->seq <= after_seq)
            break; /* never used, or older from here on */
        if (session.len > 0 && (x->session == NULL || !lk_str_eq(lk_str_c(x->session), session)))
            continue;
        if (n++ > 0)
            lk_buf_addch(out, ',');
        add_entry(out, x);
    }
    lk_buf_adds(out, "]}");
}

const char local_inspector_page[] =
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Linkup inspector</title>\n"
    "<style>\n"
    "body{font:13px system-ui,sans-serif;margin:1em}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{text-align:left;padding:2px 8px;border-bottom:1px solid #ddd;white-space:nowrap}"
    "td.p{max-width:40em;overflow:hidden;text-overflow:ellipsis}"
    ".e{color:#b00}.n{text-align:right}\n"
    "</style></head><body>\n"
    "<h1>Linkup inspector</h1>\n"
    "<p>The local server's last requests, newest first. Session: "
    "<input id=\"s\" placeholder=\"all\" size=\"16\"> "
    "<label><input id=\"f\" type=\"checkbox\" checked> follow</label></p>\n"
    "<table><thead><tr><th>time</th><th>method</th><th>host</th><th>path</th>"
    "<th>session</th><th>service</th><th>status</th><th class=\"n\">bytes</th>"
    "<th class=\"n\">ms</th></tr></thead><tbody id=\"t\"></tbody></table>\n"
    "<script>\n"
    "const t=document.getElementById('t'),s=document.getElementById('s'),"
    "f=document.getElementById('f');\n"
    "function cell(tr,v,c){const td=tr.insertCell();td.textContent=v==null?'-':v;"
    "if(c)td.className=c;}\n"
    "async function load(){\n"
    " const q=s.value?'?session='+encodeURIComponent(s.value):'';\n"
    " const r=await fetch('/linkup/inspector/requests'+q);if(!r.ok)return;\n"
    " const j=await r.json();t.textContent='';\n"
    " for(const x of j.requests){const tr=t.insertRow();\n"
    "  cell(tr,x.time.slice(11,23));cell(tr,x.method);cell(tr,x.host);cell(tr,x.path,'p');\n"
    "  cell(tr,x.session);cell(tr,x.service);cell(tr,x.status,x.status>=400?'e':'');\n"
    "  cell(tr,x.bytes,'n');cell(tr,x.ms,'n');}\n"
    "}\n"
    "s.oninput=load;load();setInterval(()=>{if(f.checked)load();},1000);\n"
    "</script></body></html>\n";

const size_t local_inspector_page_len = sizeof(local_inspector_page) - 1;
