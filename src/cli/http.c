/*
 * http.c - libcurl glue: one blocking easy handle per request, a multi
 * handle for parallel probes, and the local-server address rules of
 * DESIGN §3. libcurl is loaded (lk_curl) by the first request, not at
 * start-up; without it every request fails with "libcurl.so.4 not found:
 * install libcurl4".
 */
#include "cli/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/home.h"
#include "core/err.h"
#include "net/curl_dl.h"

/* Responses the CLI reads are small JSON documents or short texts. */
#define CLI_HTTP_MAX_BODY (16u * 1024u * 1024u)

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *data)
{
    struct lk_buf *b = data;
    size_t n = size * nmemb;
    return lk_buf_add(b, ptr, n) == 0 ? n : 0;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *data)
{
    (void)ptr;
    (void)data;
    return size * nmemb;
}

void cli_http_resp_release(struct cli_http_resp *resp)
{
    lk_buf_release(&resp->body);
}

static struct curl_slist *header_list(const struct lk_curl *lc, const char *const *headers,
                                      bool json)
{
    struct curl_slist *list = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        list = lc->slist_append(list, headers[i]);
    if (json)
        list = lc->slist_append(list, "Content-Type: application/json");
    /* No "Expect: 100-continue" round trip for small bodies. */
    list = lc->slist_append(list, "Expect:");
    return list;
}

int cli_http_request(const char *method, const char *url, const char *const *headers,
                     const char *body, long timeout_ms, struct cli_http_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    lk_buf_init(&resp->body, CLI_HTTP_MAX_BODY);
    const char *why = NULL;
    const struct lk_curl *lc = lk_curl(&why);
    if (lc == NULL) {
        snprintf(resp->error, sizeof(resp->error), "%s", why);
        return LK_EIO;
    }
    CURL *c = lc->easy_init();
    if (c == NULL) {
        snprintf(resp->error, sizeof(resp->error), "cannot initialise libcurl");
        return LK_EIO;
    }
    struct curl_slist *list = header_list(lc, headers, body != NULL);
    lc->easy_setopt(c, CURLOPT_URL, url);
    lc->easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    lc->easy_setopt(c, CURLOPT_HTTPHEADER, list);
    lc->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    lc->easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    lc->easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    lc->easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    lc->easy_setopt(c, CURLOPT_WRITEDATA, &resp->body);
    lc->easy_setopt(c, CURLOPT_USERAGENT, "linkup-cli/" LK_VERSION);
    if (body)
        lc->easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode cc = lc->easy_perform(c);
    int rc = 0;
    if (cc == CURLE_OK) {
        lc->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    } else {
        snprintf(resp->error, sizeof(resp->error), "%s", lc->easy_strerror(cc));
        rc = cc == CURLE_OPERATION_TIMEDOUT ? LK_ETIMEDOUT : LK_EIO;
    }
    lc->slist_free_all(list);
    lc->easy_cleanup(c);
    return rc;
}

const char *cli_local_listen_addr(void)
{
    const char *env = getenv("LINKUP_HTTP_ADDR");
    return env && *env ? env : "0.0.0.0:80";
}

/* Maps a listen address to one a client can connect to. */
static void client_addr(const char *listen, struct lk_buf *out)
{
    if (strncmp(listen, "0.0.0.0:", 8) == 0)
        lk_buf_addf(out, "127.0.0.1:%s", listen + 8);
    else if (strncmp(listen, "[::]:", 5) == 0)
        lk_buf_addf(out, "[::1]:%s", listen + 5);
    else
        lk_buf_adds(out, listen);
}

bool cli_addr_is_ephemeral(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon[1] == '\0')
        return false;
    for (const char *p = colon + 1; *p; p++) {
        if (*p != '0')
            return false;
    }
    return true;
}

/* The cached answer of cli_local_addr(); empty until computed. */
static struct lk_buf local_addr = LK_BUF_INIT;

void cli_local_addr_reset(void)
{
    lk_buf_release(&local_addr);
}

/* Reads the address `start` recorded into out (trimmed); false when there is
 * none, or only an unusable port 0 (nothing listens there). */
static bool recorded_addr(struct lk_buf *out)
{
    struct lk_buf text = LK_BUF_INIT;
    bool ok = false;
    if (cli_home_read(CLI_SERVER_ADDR_FILE, &text, 256) == 0) {
        struct lk_str t = lk_str_trim(lk_buf_str(&text));
        lk_buf_add(out, t.ptr, t.len);
        ok = out->len > 0 && !cli_addr_is_ephemeral(out->data);
    }
    lk_buf_release(&text);
    return ok;
}

const char *cli_local_addr(void)
{
    if (local_addr.len > 0)
        return local_addr.data;
    const char *env = getenv("LINKUP_HTTP_ADDR");
    struct lk_buf recorded = LK_BUF_INIT;
    /* An env port 0 says how `start` spawned the server, not where it
     * listens: the address it recorded (the bound one) wins then. */
    if (env && *env && !cli_addr_is_ephemeral(env))
        client_addr(env, &local_addr);
    else if (recorded_addr(&recorded))
        client_addr(recorded.data, &local_addr);
    else
        client_addr(cli_local_listen_addr(), &local_addr);
    lk_buf_release(&recorded);
    return local_addr.data;
}

void cli_local_url(const char *path, struct lk_buf *out)
{
    lk_buf_addf(out, "http://%s%s", cli_local_addr(), path);
}

void cli_add_query_value(struct lk_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            lk_buf_addch(b, (char)*p);
        } else {
            lk_buf_addch(b, '%');
            lk_buf_addch(b, hex[*p >> 4]);
            lk_buf_addch(b, hex[*p & 15]);
        }
    }
}

bool cli_local_check(long timeout_ms)
{
    struct lk_buf url = LK_BUF_INIT;
    struct cli_http_resp resp;
    cli_local_url("/linkup/check", &url);
    int rc = cli_http_request("GET", url.data, NULL, NULL, timeout_ms, &resp);
    bool ok = rc == 0 && resp.status == 200;
    cli_http_resp_release(&resp);
    lk_buf_release(&url);
    return ok;
}

void cli_http_probe_all(struct cli_probe *probes, size_t n, long timeout_ms)
{
    const struct lk_curl *lc = lk_curl(NULL);
    for (size_t i = 0; i < n; i++)
        probes[i].status = 0;
    if (lc == NULL)
        return;
    CURLM *m = lc->multi_init();
    CURL **easy = calloc(n ? n : 1, sizeof(*easy));
    struct curl_slist **lists = calloc(n ? n : 1, sizeof(*lists));
    for (size_t i = 0; m && easy && lists && i < n; i++) {
        easy[i] = lc->easy_init();
        if (easy[i] == NULL)
            continue;
        lists[i] = header_list(lc, probes[i].headers, false);
        lc->easy_setopt(easy[i], CURLOPT_URL, probes[i].url);
        lc->easy_setopt(easy[i], CURLOPT_HTTPHEADER, lists[i]);
        lc->easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        lc->easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, timeout_ms);
        lc->easy_setopt(easy[i], CURLOPT_FOLLOWLOCATION, 1L);
        lc->easy_setopt(easy[i], CURLOPT_MAXREDIRS, 10L);
        lc->easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
        lc->easy_setopt(easy[i], CURLOPT_PRIVATE, (char *)&probes[i]);
        lc->multi_add_handle(m, easy[i]);
    }
    int running = 1;
    while (m && running > 0) {
        if (lc->multi_perform(m, &running) != CURLM_OK)
            break;
        if (running > 0)
            lc->multi_poll(m, NULL, 0, 100, NULL);
    }
    /* Only transfers that completed without a transport error count. */
    CURLMsg *msg;
    int left;
    while (m && (msg = lc->multi_info_read(m, &left)) != NULL) {
        struct cli_probe *p = NULL;
        lc->easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&p);
        if (msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OK && p)
            lc->easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &p->status);
    }
    for (size_t i = 0; easy && i < n; i++) {
        if (easy[i] == NULL)
            continue;
        lc->multi_remove_handle(m, easy[i]);
        lc->easy_cleanup(easy[i]);
        lc->slist_free_all(lists[i]);
    }
    free(easy);
    free(lists);
    lc->multi_cleanup(m);
}
