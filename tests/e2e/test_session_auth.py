"""DESIGN §7: optional auth in front of session URLs (`linkup worker
--session-auth SECRET`, docs/worker.md "Session auth").

A request the worker would send to a session needs the secret in the
`linkup-session-auth` header or the cookie the sign-in form at
/linkup/session-auth sets; a browser without one gets the sign-in page (401),
anything else a text/plain 401. Credentials never reach an upstream. Off by
default: then /linkup/session-auth is proxied like any other path (SPEC §4.2).
Everything runs over loopback against the real binary."""
import json
import re
import socket
import subprocess
import urllib.parse

import pytest

import lk
from test_tunnel import Stack, redis_url, wait_connected  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("http_only")

TOKEN = "tok"
SECRET = "s3cret-of-the-team-0123456789"
REQUIRED = ("Linkup session authentication required: sign in at /linkup/session-auth "
            "or send the linkup-session-auth header.")
HOST = [("Host", "tiny.example.com")]
FORM = [("Content-Type", "application/x-www-form-urlencoded")]


def start(linkup_bin, env, tmp_path, *extra):
    return lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"), token=TOKEN,
                                  extra=extra)


@pytest.fixture
def make_worker(linkup_bin, env, tmp_path):
    started = []

    def make(*extra):
        w = start(linkup_bin, env, tmp_path, *extra)
        started.append(w)
        return w

    yield make
    for w in started:
        assert w.stop() == 0, open(w.log_path).read()[-3000:]


def add_session(worker, upstream_url, name="tiny"):
    body = lk.session_body(name, {"web": upstream_url, "api": upstream_url},
                           [("example.com", "web", None), ("api.example.com", "api", None)])
    r = lk.request(worker.addrs["Worker"], "POST", "/linkup/v2/sessions/tunneled",
                   [("Authorization", f"Bearer {TOKEN}"), ("Content-Type", "application/json"),
                    ("x-linkup-version", "99.0.0")], json.dumps(body))
    assert r.status == 200, r.body
    assert r.json()["session_name"] == name


def get(worker, path="/", headers=()):
    return lk.request(worker.addrs["Worker"], "GET", path, HOST + list(headers))


def sign_in(worker, secret=SECRET, next_="/", headers=()):
    form = urllib.parse.urlencode({"secret": secret, "next": next_})
    return lk.request(worker.addrs["Worker"], "POST", "/linkup/session-auth",
                      HOST + FORM + list(headers), form)


def cookie_of(resp):
    """The linkup_session_auth value of the response's Set-Cookie."""
    m = re.match(r"linkup_session_auth=([^;]*);", resp.header("Set-Cookie") or "")
    assert m, resp.headers
    return m.group(1)


@pytest.fixture
def guarded(make_worker, upstream):
    w = make_worker("--session-auth", SECRET)
    add_session(w, upstream.url)
    return w


def test_off_by_default_nothing_changes(make_worker, upstream):
    w = make_worker()
    add_session(w, upstream.url)
    r = get(w, "/linkup/session-auth", [("linkup-session-auth", "x")])
    assert r.status == 200 and r.text == "under_fe"
    method, path, headers = upstream.requests[-1]
    assert path == "/linkup/session-auth"
    assert ("linkup-session-auth", "x") in [(k.lower(), v) for k, v in headers]


def test_no_credential_is_401_and_nothing_reaches_the_upstream(guarded, upstream):
    r = get(guarded, "/app")
    assert r.status == 401
    assert r.text == REQUIRED
    assert r.header("WWW-Authenticate") == 'LinkupSession realm="linkup"'
    assert r.header("Cache-Control") == "no-store"
    assert r.header("Content-Type") == "text/plain"
    # SPEC §3.9's CORS headers: a page's cross-origin fetch can read the 401.
    assert r.header("Access-Control-Allow-Origin") == "*"
    assert r.header("Access-Control-Allow-Headers") == "*"
    r = lk.request(guarded.addrs["Worker"], "POST", "/api", HOST, "body")
    assert r.status == 401
    # A wrong header secret is no credential either.
    assert get(guarded, "/", [("linkup-session-auth", SECRET + "x")]).status == 401
    assert upstream.requests == []


def test_browser_gets_the_sign_in_page_with_next(guarded, upstream):
    r = get(guarded, "/app?tab=1&x=%22", [("Accept", "text/html,application/xhtml+xml")])
    assert r.status == 401
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert r.header("WWW-Authenticate") == 'LinkupSession realm="linkup"'
    assert "frame-ancestors 'none'" in r.header("Content-Security-Policy")
    assert '<form method="post" action="/linkup/session-auth">' in r.text
    assert 'name="next" value="/app?tab=1&amp;x=%22"' in r.text
    assert 'type="password" name="secret"' in r.text
    assert upstream.requests == []
    # The page itself, any time.
    r = get(guarded, "/linkup/session-auth?next=%2Fdocs")
    assert r.status == 200 and 'name="next" value="/docs"' in r.text
    assert r.header("WWW-Authenticate") is None
    assert "Sign out" not in r.text


def test_header_credential_passes_and_is_removed(guarded, upstream):
    r = get(guarded, "/x", [("Linkup-Session-Auth", SECRET), ("Cookie", "a=b")])
    assert r.status == 200 and r.text == "under_fe"
    headers = [(k.lower(), v) for k, v in upstream.last_headers()]
    assert not [k for k, _ in headers if k == "linkup-session-auth"]
    assert ("cookie", "a=b") in headers


def test_sign_in_sets_a_cookie_that_passes_and_is_removed(guarded, upstream):
    r = sign_in(guarded, next_="/app?x=1")
    assert r.status == 303
    assert r.header("Location") == "/app?x=1"
    set_cookie = r.header("Set-Cookie")
    attrs = [a.strip() for a in set_cookie.split(";")]
    assert attrs[0].startswith("linkup_session_auth=v1.")
    assert {"Path=/", "Max-Age=604800", "HttpOnly", "SameSite=Lax",
            "Domain=example.com"} <= set(attrs)
    assert "Secure" not in attrs  # plain HTTP, no x-forwarded-proto
    value = cookie_of(r)
    r = get(guarded, "/x", [("Cookie", f"theme=dark; linkup_session_auth={value}"),
                            ("Cookie", "lang=fr")])
    assert r.status == 200
    cookies = [v for k, v in upstream.last_headers() if k.lower() == "cookie"]
    assert cookies == ["theme=dark; lang=fr"]
    # The cookie alone: the upstream sees no Cookie at all.
    r = get(guarded, "/y", [("Cookie", f"linkup_session_auth={value}")])
    assert r.status == 200
    assert not [k for k, _ in upstream.last_headers() if k.lower() == "cookie"]
    # The page now offers to sign out; signing out clears the cookie.
    page = get(guarded, "/linkup/session-auth", [("Cookie", f"linkup_session_auth={value}")])
    assert "Sign out" in page.text
    r = lk.request(guarded.addrs["Worker"], "POST", "/linkup/session-auth", HOST + FORM,
                   "signout=1")
    assert r.status == 303 and r.header("Location") == "/linkup/session-auth"
    assert r.header("Set-Cookie").startswith("linkup_session_auth=; Path=/; Max-Age=0;")


def test_wrong_secret_and_unsafe_next(guarded):
    r = sign_in(guarded, secret="not-the-secret-at-all")
    assert r.status == 401
    assert r.header("Set-Cookie") is None
    assert "That secret is not the right one." in r.text
    assert "wrong secret from" in open(guarded.log_path).read()
    for bad in ("//evil.example/", "https://evil.example/", "/\\evil.example", "/a b"):
        assert sign_in(guarded, next_=bad).header("Location") == "/"


def test_forged_or_tampered_cookies_are_refused(guarded, upstream):
    value = cookie_of(sign_in(guarded))
    version, expiry, mac = value.split(".")
    later = f"{version}.{int(expiry) + 1}.{mac}"
    other = "0" * 64
    for v in (later, f"{version}.{expiry}.{other}", "v1.99999999999.x", "", value.upper()):
        assert get(guarded, "/", [("Cookie", f"linkup_session_auth={v}")]).status == 401
    assert upstream.requests == []


def test_another_worker_with_the_same_secret_accepts_the_cookie(make_worker, upstream):
    a = make_worker("--session-auth", SECRET)
    b = make_worker("--session-auth", SECRET)
    c = make_worker("--session-auth", SECRET + "-rotated")
    for w in (a, b, c):
        add_session(w, upstream.url)
    value = cookie_of(sign_in(a))
    assert get(b, "/", [("Cookie", f"linkup_session_auth={value}")]).status == 200
    assert get(c, "/", [("Cookie", f"linkup_session_auth={value}")]).status == 401


def test_secure_behind_https_and_domain_rules(guarded):
    r = sign_in(guarded, headers=[("X-Forwarded-Proto", "https")])
    assert "Secure" in [a.strip() for a in r.header("Set-Cookie").split(";")]
    # A host of two labels or an IP gets a host-only cookie.
    for host in ("tiny.localhost", "127.0.0.1"):
        r = lk.request(guarded.addrs["Worker"], "POST", "/linkup/session-auth",
                       [("Host", host)] + FORM, "secret=" + SECRET)
        assert r.status == 303
        assert "Domain=" not in r.header("Set-Cookie")


def test_endpoint_methods_and_body_rules(guarded):
    addr = guarded.addrs["Worker"]
    r = lk.request(addr, "PUT", "/linkup/session-auth", HOST)
    assert r.status == 405 and r.header("Allow") == "GET, HEAD, POST"
    r = lk.request(addr, "POST", "/linkup/session-auth",
                   HOST + [("Content-Type", "application/json")], '{"secret": "x"}')
    assert r.status == 415
    r = lk.request(addr, "POST", "/linkup/session-auth", HOST + FORM,
                   "secret=" + "a" * (70 * 1024))
    assert r.status == 413


def test_cors_preflight_passes_and_no_session_is_still_422(guarded, upstream):
    r = lk.request(guarded.addrs["Worker"], "OPTIONS", "/api",
                   HOST + [("Origin", "http://tiny.example.com"),
                           ("Access-Control-Request-Method", "POST")])
    assert r.status == 200
    assert upstream.requests[-1][0] == "OPTIONS"
    # OPTIONS without the preflight headers is an ordinary request.
    assert lk.request(guarded.addrs["Worker"], "OPTIONS", "/api", HOST).status == 401
    r = lk.request(guarded.addrs["Worker"], "GET", "/", [("Host", "nobody.example.com")])
    assert r.status == 422
    # The worker's own API keeps its own authentication (SPEC §4.2).
    r = lk.request(guarded.addrs["Worker"], "GET", "/linkup/check", HOST)
    assert (r.status, r.text) == (401, "Missing authorization header.")
    r = lk.request(guarded.addrs["Worker"], "GET", "/linkup/check",
                   HOST + [("Authorization", f"Bearer {TOKEN}")])
    assert r.status == 200


def test_scope_all_and_urls(make_worker, upstream):
    by_header = [("Host", "api.example.com"), ("Referer", "http://tiny.example.com/page")]
    strict = make_worker("--session-auth", SECRET)
    loose = make_worker("--session-auth", SECRET, "--session-auth-scope", "urls")
    for w in (strict, loose):
        add_session(w, upstream.url)
    assert lk.request(strict.addrs["Worker"], "GET", "/v1", by_header).status == 401
    assert lk.request(loose.addrs["Worker"], "GET", "/v1", by_header).status == 200
    # tracestate-attributed calls between services, too.
    ts = [("Host", "api.example.com"), ("tracestate", "linkup-session=tiny")]
    assert lk.request(strict.addrs["Worker"], "GET", "/v1", ts).status == 401
    assert lk.request(loose.addrs["Worker"], "GET", "/v1", ts).status == 200
    # The session URL itself, or through a proxy's x-forwarded-host, is gated.
    assert get(loose, "/").status == 401
    r = lk.request(loose.addrs["Worker"], "GET", "/",
                   [("Host", "10.0.0.1"), ("X-Forwarded-Host", "tiny.example.com")])
    assert r.status == 401


def test_tunnel_hostname_is_gated_but_its_check_is_not(guarded):
    """No tunnel is connected: a request that passes the gate gets the 502."""
    tunnel_host = [("Host", "linkup-tunnel-tiny.localhost")]
    addr = guarded.addrs["Worker"]
    r = lk.request(addr, "GET", "/", tunnel_host)
    assert r.status == 401 and r.text == REQUIRED
    r = lk.request(addr, "GET", "/", tunnel_host + [("linkup-session-auth", SECRET)])
    assert r.status == 502 and "is not connected" in r.text
    r = lk.request(addr, "GET", "/linkup/check?x", tunnel_host)
    assert r.status == 502


def test_websocket_needs_it_too(make_worker):
    ws = lk.WsEchoUpstream("127.0.0.2")
    w = make_worker("--session-auth", SECRET)
    try:
        add_session(w, ws.url)
        head = (b"GET /ws HTTP/1.1\r\nHost: tiny.example.com\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                b"Connection: Upgrade\r\nUpgrade: websocket\r\n")
        with socket.create_connection(w.addrs["Worker"], timeout=10) as c:
            c.sendall(head + b"\r\n")
            status, _, _ = lk.read_http_head(c)
            assert status.startswith("HTTP/1.1 401"), status
        with socket.create_connection(w.addrs["Worker"], timeout=10) as c:
            c.sendall(head + b"linkup-session-auth: " + SECRET.encode() + b"\r\n\r\n")
            status, _, _ = lk.read_http_head(c)
            assert status.startswith("HTTP/1.1 101"), status
            c.sendall(lk.ws_frame(1, b"hello"))
            assert lk.ws_read_frame(c)[:2] == (1, b"hello")
    finally:
        ws.close()


@pytest.mark.parametrize("args,message", [
    (["--session-auth", "short"], "expected at least 16 visible ASCII characters"),
    # An empty secret (a script's unset variable) is no way to turn the gate off.
    (["--session-auth", ""], "expected at least 16 visible ASCII characters"),
    (["--session-auth", "sixteen chars but spaces"], "expected at least 16 visible"),
    (["--session-auth", SECRET, "--session-auth-scope", "some"],
     "invalid value 'some' for '--session-auth-scope': expected all or urls"),
])
def test_bad_options_are_usage_errors(linkup_bin, env, args, message):
    p = subprocess.run([linkup_bin, "worker", "--listen", "127.0.0.1:0", "--token", TOKEN,
                        "--store", "memory", *args], env=env, capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 2
    assert message in p.stderr


def test_env_sets_it(linkup_bin, env, tmp_path, upstream):
    env = dict(env, LINKUP_WORKER_SESSION_AUTH=SECRET)
    w = start(linkup_bin, env, tmp_path)
    try:
        add_session(w, upstream.url)
        assert get(w).status == 401
        assert get(w, "/", [("linkup-session-auth", SECRET)]).status == 200
    finally:
        assert w.stop() == 0


def test_through_a_real_tunnel(linkup_bin, env, tmp_path):
    """The local server connects its tunnel and upserts as before; requests for
    the tunnelled session need the credential, which the laptop never sees."""
    s = Stack(linkup_bin, env, tmp_path, worker_extra=("--session-auth", SECRET))
    try:
        wait_connected(s.server)
        assert s.get("/").status == 401
        r = lk.request(s.waddr, "GET", "/hello", [("Host", s.host),
                                                  ("linkup-session-auth", SECRET)])
        assert r.status == 200, r.body
        assert r.text.startswith("local web /hello")
        assert r.header("linkup-routed-to") == "web; session=tiny; via=local-server"
        tunnel_host = s.tunnel_data["url"][len("http://"):]
        assert s.get("/linkup/check", host=tunnel_host).status == 200
    finally:
        s.close()
    s.assert_clean_exit()


def test_peer_workers_check_once(linkup_bin, env, tmp_path, redis_url):  # noqa: F811
    """DESIGN §8 with session auth: the worker a request reaches checks it and
    removes the credential; the tunnel's holder trusts the peer secret."""
    a_port, b_port = lk.free_ports(2)
    peer = ("--peer-secret", "peer-secret-1", "--session-auth", SECRET)
    s = Stack(linkup_bin, env, tmp_path, name="duo", store=redis_url,
              worker_extra=("--listen", "127.0.0.1:%d" % a_port,
                            "--peer-url", "http://127.0.0.1:%d" % a_port) + peer)
    b = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "b.log"), store=redis_url,
                               token=TOKEN, extra=("--listen", "127.0.0.1:%d" % b_port,
                                                   "--peer-url", "http://127.0.0.1:%d" % b_port)
                               + peer)
    try:
        wait_connected(s.server)
        baddr = b.addrs["Worker"]
        assert s.get("/hello", addr=baddr).status == 401
        r = lk.request(baddr, "GET", "/hello", [("Host", s.host), ("linkup-session-auth", SECRET)])
        assert (r.status, r.text) == (200, "local web /hello xfh=duo.example.com dest=web")
        # A forged peer header is no way around the gate of the holder.
        tunnel_host = s.tunnel_data["url"][len("http://"):]
        r = lk.request(s.waddr, "GET", "/hello", [("Host", tunnel_host),
                                                  ("x-linkup-peer-secret", "forged")])
        assert r.status == 401
    finally:
        b.stop()
        s.close()
    s.assert_clean_exit()
    assert b.popen.returncode == 0
