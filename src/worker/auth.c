/*
 * auth.c - optional session auth in front of session URLs (DESIGN §7;
 * docs/worker.md "Session auth").
 *
 * With --session-auth SECRET, a request the worker would send to a session
 * (SPEC §4.4, or a tunnel hostname, DESIGN §8) goes on only with a
 * credential (core/session_auth.h): the LK_AUTH_HEADER header carrying the
 * secret, or the cookie the sign-in form at WORKER_AUTH_PATH sets. Without
 * one: a browser's GET gets the sign-in page with status 401, anything else
 * a text/plain 401. CORS preflights pass (browsers never send credentials
 * on them); the tunnel's /linkup/check passes (relay.c). Credentials are
 * removed before anything goes upstream. With --session-auth-scope urls only
 * requests whose own URL (or x-forwarded-host) names the session, and
 * tunnel hostnames, are gated: header-attributed calls between services go
 * through untouched.
 *
 * Nothing is stored: the cookie is an HMAC of its expiry, so every worker
 * sharing the secret accepts it.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/headers.h"
#include "core/route.h"
#include "net/log.h"
#include "worker/worker.h"

static const char required_text[] =
    "Linkup session authentication required: sign in at " WORKER_AUTH_PATH
    " or send the " LK_AUTH_HEADER " header.";

static const struct lk_http_header www_authenticate = { LK_STR("WWW-Authenticate"),
                                                        LK_STR("LinkupSession realm=\"linkup\"") };

static uint64_t now_s(void)
{
    return worker_now_ms() / 1000u;
}

static bool method_is(struct lk_exchange *ex, struct lk_str m)
{
    return lk_str_eq(lk_exchange_method(ex), m);
}

/* True when some field name of ex contains needle, ASCII case-insensitively. */
static bool header_contains(struct lk_exchange *ex, struct lk_str name, struct lk_str needle)
{
    struct lk_str v;
    if (!lk_exchange_header(ex, name, &v))
        return false;
    for (size_t i = 0; i + needle.len <= v.len; i++) {
        if (lk_str_ieq((struct lk_str){ v.ptr + i, needle.len }, needle))
            return true;
    }
    return false;
}

/* ---- the sign-in page ---------------------------------------------------- */

static void add_escaped(struct lk_buf *b, struct lk_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        switch (s.ptr[i]) {
        case '&':
            lk_buf_adds(b, "&amp;");
            break;
        case '<':
            lk_buf_adds(b, "&lt;");
            break;
        case '>':
            lk_buf_adds(b, "&gt;");
            break;
        case '"':
            lk_buf_adds(b, "&quot;");
            break;
        case '\'':
            lk_buf_adds(b, "&#39;");
            break;
        default:
            lk_buf_addch(b, s.ptr[i]);
            break;
        }
    }
}

/* Answers status with the sign-in page: a form posting the secret and next
 * (escaped) to WORKER_AUTH_PATH, the notice when non-NULL, a sign-out button
 * when signed_in. extra[0..n_extra) are added (Set-Cookie). */
static void respond_page(struct lk_exchange *ex, int status, struct lk_str next, const char *notice,
                         bool signed_in, const struct lk_http_header *extra, size_t n_extra)
{
    static const char head[] =
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex\"><title>Linkup: sign in</title><style>"
        "body{font:16px system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;"
        "color:#222}input,button{font:inherit;padding:.4rem;margin:.3rem 0}"
        "input[type=password]{width:100%;box-sizing:border-box}.notice{color:#b00}"
        "</style></head>\n<body><h1>Linkup session</h1>\n"
        "<p>This session is protected. Enter the secret your team's Linkup worker uses.</p>\n";
    struct lk_buf b = LK_BUF_INIT;
    lk_buf_adds(&b, head);
    if (notice != NULL) {
        lk_buf_adds(&b, "<p class=\"notice\">");
        add_escaped(&b, lk_str_c(notice));
        lk_buf_adds(&b, "</p>\n");
    }
    lk_buf_adds(&b, "<form method=\"post\" action=\"" WORKER_AUTH_PATH "\">"
                    "<input type=\"hidden\" name=\"next\" value=\"");
    add_escaped(&b, next);
    lk_buf_adds(&b, "\"><label>Secret <input type=\"password\" name=\"secret\" "
                    "autocomplete=\"current-password\" autofocus required></label>\n"
                    "<button type=\"submit\">Sign in</button></form>\n");
    if (signed_in)
        lk_buf_adds(&b, "<p>You are signed in.</p><form method=\"post\" action=\"" WORKER_AUTH_PATH
                        "\"><input type=\"hidden\" name=\"signout\" value=\"1\">"
                        "<button type=\"submit\">Sign out</button></form>\n");
    lk_buf_adds(&b, "</body></html>\n");

    enum {
        N_FIXED = 6,
        N_EXTRA_MAX = 2
    };
    struct lk_http_header h[N_FIXED + N_EXTRA_MAX] = {
        { LK_STR("Content-Type"), LK_STR("text/html; charset=utf-8") },
        { LK_STR("Cache-Control"), LK_STR("no-store") },
        { LK_STR("Content-Security-Policy"),
          LK_STR("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                 "frame-ancestors 'none'") },
        { LK_STR("X-Frame-Options"), LK_STR("DENY") },
        { LK_STR("Referrer-Policy"), LK_STR("no-referrer") },
        www_authenticate,
    };
    size_t n = status == 401 ? N_FIXED : N_FIXED - 1;
    for (size_t i = 0; i < n_extra && i < N_EXTRA_MAX; i++)
        h[n++] = extra[i];
    lk_exchange_respond(ex, status, h, n, b.data, b.len);
    lk_buf_release(&b);
}

/* The request target when it is a safe `next` (origin-form), else "/". */
static struct lk_str target_as_next(struct lk_exchange *ex)
{
    return lk_auth_safe_next(lk_exchange_target(ex));
}

static bool signed_in(struct worker *w, struct lk_exchange *ex)
{
    size_t n = 0;
    const struct lk_http_header *h = lk_exchange_headers(ex, &n);
    return lk_auth_request_ok(&w->auth_key, h, n, now_s());
}

/* ---- the cookie ------------------------------------------------------------ */

/* The host the browser sees: x-forwarded-host (a proxy in front), else Host. */
static struct lk_str browser_host(struct lk_exchange *ex)
{
    struct lk_str v = LK_STR_NULL;
    if (!lk_exchange_header(ex, LK_STR("x-forwarded-host"), &v) &&
        !lk_exchange_header(ex, LK_STR("host"), &v))
        return LK_STR_NULL;
    long comma = lk_str_index(v, ',');
    if (comma >= 0)
        v.len = (size_t)comma;
    return lk_route_host(lk_str_trim(v), NULL);
}

/* The cookie's Domain: the browser's host minus the session label, so one
 * sign-in covers every host of the zone ("tiny-cow.example.com" gives
 * "example.com"). None for a host of fewer than three labels, an IP address
 * or anything but letters, digits, '-' and '.'. */
static struct lk_str cookie_domain(struct lk_exchange *ex)
{
    struct lk_str host = browser_host(ex);
    size_t dots = 0;
    bool alpha = false;
    for (size_t i = 0; i < host.len; i++) {
        char c = host.ptr[i];
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!letter && !(c >= '0' && c <= '9') && c != '-' && c != '.')
            return LK_STR_NULL;
        alpha |= letter;
        dots += c == '.';
    }
    if (dots < 2 || !alpha || host.ptr[host.len - 1] == '.')
        return LK_STR_NULL;
    long first = lk_str_index(host, '.');
    return (struct lk_str){ host.ptr + first + 1, host.len - (size_t)first - 1 };
}

/* True when the browser talks HTTPS to whatever is in front of the worker. */
static bool browser_https(struct lk_exchange *ex)
{
    struct lk_str proto;
    if (lk_exchange_header(ex, LK_STR("x-forwarded-proto"), &proto)) {
        long comma = lk_str_index(proto, ',');
        if (comma >= 0)
            proto.len = (size_t)comma;
        return lk_str_ieq(lk_str_trim(proto), LK_STR("https"));
    }
    struct lk_str target = lk_exchange_target(ex);
    return target.len >= 8 && lk_str_ieq((struct lk_str){ target.ptr, 8 }, LK_STR("https://"));
}

/* The Set-Cookie value: value (NULL: clear the cookie) for max_age seconds. */
static struct lk_str set_cookie(struct lk_exchange *ex, const char *value, uint64_t max_age)
{
    struct lk_str domain = cookie_domain(ex);
    const char *v = lk_exchange_printf(
        ex, LK_AUTH_COOKIE "=%s; Path=/; Max-Age=%llu; HttpOnly; SameSite=Lax%s%s%.*s",
        value != NULL ? value : "", (unsigned long long)max_age,
        browser_https(ex) ? "; Secure" : "", domain.len > 0 ? "; Domain=" : "", (int)domain.len,
        domain.ptr != NULL ? domain.ptr : "");
    return lk_str_c(v);
}

static void redirect(struct lk_exchange *ex, struct lk_str location, struct lk_str cookie)
{
    const struct lk_http_header h[] = {
        { LK_STR("Location"), location },
        { LK_STR("Set-Cookie"), cookie },
        { LK_STR("Cache-Control"), LK_STR("no-store") },
    };
    lk_exchange_respond(ex, 303, h, LK_ARRAY_LEN(h), NULL, 0);
}

/* ---- the endpoint ------------------------------------------------------------ */

static void on_form(struct lk_exchange *ex, const char *body, size_t len, int err, void *data)
{
    struct worker *w = data;
    if (worker_body_failed(ex, err))
        return;
    struct lk_str form = { body != NULL ? body : "", len };
    size_t n_found = 0;
    const char *next_field = worker_query_field(ex, form, "next", &n_found);
    struct lk_str next = lk_auth_safe_next(lk_str_c(next_field));
    if (worker_query_field(ex, form, "signout", &n_found) != NULL) {
        redirect(ex, LK_STR(WORKER_AUTH_PATH), set_cookie(ex, NULL, 0));
        return;
    }
    const char *secret = worker_query_field(ex, form, "secret", &n_found);
    if (secret == NULL || !lk_auth_secret_ok(&w->auth_key, lk_str_c(secret))) {
        LK_CLOG(lk_exchange_conn_id(ex), WARN, "session auth: wrong secret from %s",
                lk_exchange_peer(ex));
        respond_page(ex, 401, next, "That secret is not the right one.", false, NULL, 0);
        return;
    }
    char value[LK_AUTH_COOKIE_MAX];
    lk_auth_cookie_mint(&w->auth_key, now_s() + WORKER_AUTH_TTL_S, value);
    redirect(ex, next, set_cookie(ex, value, WORKER_AUTH_TTL_S));
}

void worker_auth_endpoint(struct worker *w, struct lk_exchange *ex)
{
    if (method_is(ex, LK_STR("GET")) || method_is(ex, LK_STR("HEAD"))) {
        struct lk_str target = lk_exchange_target(ex);
        long q = lk_str_index(target, '?');
        size_t n_found = 0;
        const char *next =
            q < 0 ? NULL
                  : worker_query_field(
                        ex, (struct lk_str){ target.ptr + q + 1, target.len - (size_t)q - 1 },
                        "next", &n_found);
        respond_page(ex, 200, lk_auth_safe_next(lk_str_c(next)), NULL, signed_in(w, ex), NULL, 0);
        return;
    }
    if (!method_is(ex, LK_STR("POST"))) {
        const struct lk_http_header allow = { LK_STR("Allow"), LK_STR("GET, HEAD, POST") };
        lk_exchange_respond(ex, 405, &allow, 1, NULL, 0);
        return;
    }
    if (!header_contains(ex, LK_STR("content-type"), LK_STR("application/x-www-form-urlencoded"))) {
        worker_respond_text(ex, 415,
                            "Expected request with `Content-Type: "
                            "application/x-www-form-urlencoded`");
        return;
    }
    lk_exchange_read_body(ex, WORKER_AUTH_FORM_MAX, on_form, w);
}

/* ---- the gate ------------------------------------------------------------------ */

bool worker_auth_allow(struct worker *w, struct lk_exchange *ex, bool by_url)
{
    if (!w->auth_on || (w->auth_urls_only && !by_url))
        return true;
    struct lk_str v;
    /* A CORS preflight never carries credentials (Fetch §4.8). */
    if (method_is(ex, LK_STR("OPTIONS")) && lk_exchange_header(ex, LK_STR("origin"), &v) &&
        lk_exchange_header(ex, LK_STR("access-control-request-method"), &v))
        return true;
    if (signed_in(w, ex))
        return true;
    if ((method_is(ex, LK_STR("GET")) || method_is(ex, LK_STR("HEAD"))) &&
        header_contains(ex, LK_STR("accept"), LK_STR("text/html"))) {
        respond_page(ex, 401, target_as_next(ex), NULL, false, NULL, 0);
        return false;
    }
    /* With the CORS headers of SPEC §3.9, so a page's cross-origin fetch
     * can read this 401 (and send its user to the sign-in) instead of
     * failing as a CORS error. */
    struct lk_http_header h[3 + LK_HEADERS_N_CORS] = {
        { LK_STR("Content-Type"), LK_STR("text/plain") },
        { LK_STR("Cache-Control"), LK_STR("no-store") },
        www_authenticate,
    };
    memcpy(h + 3, lk_headers_cors, sizeof(lk_headers_cors));
    lk_exchange_respond(ex, 401, h, LK_ARRAY_LEN(h), required_text, sizeof(required_text) - 1);
    return false;
}

const struct lk_http_header *worker_auth_strip(struct worker *w, struct lk_exchange *ex,
                                               const struct lk_http_header *h, size_t *n)
{
    if (!w->auth_on)
        return h;
    struct lk_http_header *out = lk_exchange_alloc(ex, (*n + 1) * sizeof(*out));
    struct lk_buf cookie = LK_BUF_INIT;
    *n = lk_auth_strip(h, *n, out, &cookie);
    /* The rewritten Cookie value borrows from cookie: move it to the arena. */
    for (size_t i = 0; i < *n && cookie.len > 0; i++) {
        if (out[i].value.ptr == cookie.data)
            out[i].value.ptr = lk_exchange_strndup(ex, cookie.data, cookie.len);
    }
    lk_buf_release(&cookie);
    return out;
}
