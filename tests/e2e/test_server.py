"""Black-box tests of `linkup server` (SPEC §5.2, §5.3, §5.7, §8.3, §8.5,
§9; DESIGN §2.4, §2.7, §2.8, §3): the real binary on 127.0.0.1:0, upstreams
on 127.0.0.2, a fake worker on 127.0.0.3 (and the real `linkup worker`
for the chain test when the build has it)."""
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

import lk

NO_SESSION = ("Linkup was unable to determine the session origin of the request. Ensure that "
              "your request includes a valid session identifier in the referer or tracestate "
              "headers. - Local Server")
NO_TARGET = ("The request belonged to a session, but there was no target for the request. "
             "Check that the routing rules in your linkup config have a match for this "
             "request. - Local Server")
CORS = {
    "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, HEAD, CONNECT, TRACE, OPTIONS",
    "access-control-allow-origin": "*",
    "access-control-allow-headers": "*",
    "access-control-max-age": "86400",
}


pytestmark = pytest.mark.usefixtures("http_only")


def start(linkup_bin, env, tmp_path, worker_url, *extra, name="server"):
    return lk.spawn_local_server(linkup_bin, env, "--worker-url", worker_url, "--worker-token",
                                 "token123", *extra, log_path=str(tmp_path / f"{name}.log"))


@pytest.fixture
def server(linkup_bin, env, tmp_path, fake_worker):
    s = start(linkup_bin, env, tmp_path, fake_worker.url)
    yield s
    code, _ = lk.stop_gracefully(s)
    assert code == 0, open(s.log_path).read()


def seed(addr, name, services, domains=(("example.com", "frontend", None),), token="token"):
    r = lk.post_json(addr, "/linkup/sessions/tunneled",
                     lk.session_body(name, services, list(domains), token))
    assert r.status == 200, r.body
    return r


def route_headers(name):
    return [("traceparent", "xzyabc"), ("tracestate", f"linkup-session={name}"),
            ("Referer", "example.com")]


# ---- SPEC §8.5 (local cases) -------------------------------------------------

def test_check(server):
    r = lk.request(server.addrs["HTTP"], "GET", "/linkup/check")
    assert (r.status, r.body) == (200, b"OK")


def test_no_session_is_422_with_exact_text(server):
    r = lk.request(server.addrs["HTTP"], "GET", "/anypath")
    assert r.status == 422
    assert r.text == NO_SESSION
    assert r.header("content-type") == "text/plain"
    assert r.header("access-control-allow-origin") is None


# ---- SPEC §8.3 ---------------------------------------------------------------

def test_http_router_cases(server, upstream):
    addr = server.addrs["HTTP"]
    seed(addr, "potatosession", {"frontend": upstream.url})
    r = lk.request(addr, "GET", "/anypath", route_headers("potatosession"))
    assert (r.status, r.text) == (200, "under_fe")
    for k, v in CORS.items():
        assert r.header(k) == v
    r = lk.request(addr, "GET", "/redirect", route_headers("potatosession"))
    assert r.status == 307
    assert r.header("location") == "/somethingelse"
    r = lk.request(addr, "GET", "/cookies", route_headers("potatosession"))
    assert r.status == 200
    assert r.all("set-cookie") == ["cookie1=value1; Path=/", "cookie2=value2; Path=/"]


# ---- SPEC §9 local-server vector, DESIGN §2.4 --------------------------------

def test_upstream_sees_linkup_headers(server, upstream):
    addr = server.addrs["HTTP"]
    seed(addr, "vec", {"frontend": upstream.url})
    r = lk.request(addr, "GET", "/x?q=1", [("tracestate", "linkup-session=vec"),
                                           ("Referer", "example.com")])
    assert r.status == 200
    method, path, headers = upstream.requests[-1]
    assert (method, path) == ("GET", "/x?q=1")
    h = {}
    for k, v in headers:
        h.setdefault(k.lower(), []).append(v)
    assert h["tracestate"] == ["linkup-session=vec"]
    assert h["linkup-destination"] == ["frontend"]
    assert h["x-forwarded-host"] == [f"vec.127.0.0.1:{addr[1]}"]
    assert len(h["traceparent"]) == 1 and len(h["traceparent"][0]) == 55
    assert h["host"] == [f"{upstream.addr[0]}:{upstream.addr[1]}"]
    assert h["referer"] == ["example.com"]
    for k, v in CORS.items():
        assert r.header(k) == v


@pytest.mark.parametrize("service", [
    "fe\r\nX-Injected: 1",
    "fe\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n",
    "fe\x01x",
])
def test_service_name_never_splits_the_upstream_request(server, upstream, service):
    """A service name goes out as linkup-destination (SPEC §3.7) but has no
    syntax rules (§2.5): one that is no field value (RFC 9110 §5.5) fails the
    request with the proxy error of SPEC §5.7, and nothing reaches the
    upstream; the access log keeps one line per request."""
    addr = server.addrs["HTTP"]
    seed(addr, "inj", {service: upstream.url, "ok": upstream.url},
         (("example.com", service, [("^/ok", "ok")]),))
    r = lk.request(addr, "GET", "/x", [("Host", "inj.example.com")])
    assert (r.status, r.text) == (
        502, "Failed to proxy request - are all your servers started? "
             "invalid header value for linkup-destination")
    assert upstream.requests == []
    r = lk.request(addr, "GET", "/ok", [("Host", "inj.example.com")])
    assert r.status == 200
    assert [p for _, p, _ in upstream.requests] == ["/ok"]
    code, _ = lk.stop_gracefully(server)
    assert code == 0
    log = open(server.log_path).read()
    assert all(line.startswith("[") for line in log.splitlines()), log
    assert "service=fe\\x" in log


def test_service_pointing_back_at_the_local_server_is_one_502(server):
    """The loop guard of the local server: a service located at the server's
    own address gets one 502 (from the inner hop, passed on by the outer),
    not a request round that fills the connection limit."""
    addr = server.addrs["HTTP"]
    seed(addr, "loopy", {"frontend": "http://%s:%d" % addr})
    for path in ("/x", "/again"):
        r = lk.request(addr, "GET", path, [("Host", "loopy.example.com")])
        assert (r.status, r.text) == (
            502, "Failed to proxy request - are all your servers started? request loop: the "
                 "request came back from this server's own proxy")
    assert lk.request(addr, "GET", "/linkup/check").status == 200
    code, _ = lk.stop_gracefully(server)
    assert code == 0
    log = open(server.log_path).read()
    assert "is this server's own upstream connection" in log
    assert log.count(" access GET ") <= 5, log


def test_routing_by_host_referer_tracestate_and_routes(server, upstream):
    addr = server.addrs["HTTP"]
    api = lk.RecordingUpstream("127.0.0.3", body="under_api")
    try:
        seed(addr, "tiny-cow", {"frontend": upstream.url, "backend": api.url},
             [("example.com", "frontend", [("^/api/.*", "backend")]),
              ("api.example.com", "backend", None)])
        cases = [
            ("/", [("Host", "tiny-cow.example.com")], "under_fe"),
            ("/api/v1", [("Host", "tiny-cow.example.com")], "under_api"),
            ("/", [("Host", "api.example.com"), ("Referer", "http://tiny-cow.example.com/")],
             "under_api"),
            ("/", [("Host", "example.com"), ("Origin", "http://tiny-cow.example.com")],
             "under_fe"),
            ("/", [("Host", "example.com"), ("tracestate", "a=1, linkup-session = tiny-cow")],
             "under_fe"),
            # linkup-destination wins over the routes (requests through a tunnel).
            ("/api/v1", [("Host", "tiny-cow.example.com"), ("linkup-destination", "frontend")],
             "under_fe"),
        ]
        for path, headers, want in cases:
            r = lk.request(addr, "GET", path, headers)
            assert (r.status, r.text) == (200, want), (path, headers)
        # Absolute-form target is used verbatim.
        r = lk.request(addr, "GET", "http://tiny-cow.example.com/api/x", [("Host", "ignored")])
        assert (r.status, r.text) == (200, "under_api")
        # A session without a matching domain: 404.
        r = lk.request(addr, "GET", "/", [("Host", "tiny-cow.other.com")])
        assert (r.status, r.text) == (404, NO_TARGET)
        assert r.header("content-type") == "text/plain"
    finally:
        api.close()


def test_cookies_are_normalised(server, upstream):
    addr = server.addrs["HTTP"]
    seed(addr, "cookie-cow", {"frontend": upstream.url})
    r = lk.request(addr, "GET", "/", [("Host", "cookie-cow.example.com"), ("Cookie", "a=b"),
                                      ("Cookie", "c=d")])
    assert r.status == 200
    cookies = [v for k, v in upstream.last_headers() if k.lower() == "cookie"]
    assert cookies == ["a=b; c=d"]


def test_upstream_down_is_502(server):
    addr = server.addrs["HTTP"]
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        dead = s.getsockname()[1]
    seed(addr, "dead-cow", {"frontend": f"http://127.0.0.2:{dead}"})
    r = lk.request(addr, "GET", "/", [("Host", "dead-cow.example.com")])
    assert r.status == 502
    assert r.text.startswith("Failed to proxy request - are all your servers started? ")
    assert lk.request(addr, "GET", "/linkup/check").status == 200


# ---- admin API (SPEC §5.2, §2.4) ---------------------------------------------

def test_tunneled_forwarding_and_session_lifecycle(server, fake_worker, upstream):
    addr = server.addrs["HTTP"]
    body = lk.session_body("tiny-cow", {"frontend": upstream.url},
                           [("example.com", "frontend", None),
                            ("api.example.com", "frontend", [("^/x", "frontend")])], "tok")
    r = lk.post_json(addr, "/linkup/sessions/tunneled", body)
    assert r.status == 200
    assert r.header("content-type") == "application/json"
    assert r.json()["session_name"] == "tiny-cow"
    assert "tunnel_data" in r.json()
    # SPEC §5.2, §2.4: the worker's TunneledSessionResponse comes back as
    # compact JSON in its field order (the fake worker adds spaces).
    assert r.text == ('{"session_name":"tiny-cow","tunnel_data":{"account_id":"",'
                      '"name":"linkup-tunnel-tiny-cow",'
                      '"url":"http://linkup-tunnel-tiny-cow.localhost","id":"x","secret":"s",'
                      '"last_started":1}}')
    path, headers, sent = fake_worker.calls[-1]
    assert path == "/linkup/v2/sessions/tunneled"
    assert headers["authorization"] == "Bearer token123"
    assert headers["x-linkup-version"] == "4.1.1"
    assert headers["content-type"] == "application/json"
    # Re-serialised: locations come back normalised (SPEC §2).
    body["services"][0]["location"] = upstream.url + "/"
    assert sent == body

    r = lk.request(addr, "GET", "/linkup/sessions")
    assert r.status == 200 and r.header("content-type") == "application/json"
    stored = r.json()["sessions"]["tiny-cow"]
    assert stored["kind"] == "tunneled" and stored["session_token"] == "tok"
    assert stored["services"] == [{"name": "frontend", "location": upstream.url + "/",
                                   "rewrites": None}]

    r = lk.request(addr, "GET", "/linkup/sessions/tiny-cow")
    assert r.status == 200
    assert r.text == ('{"session_kind":"tunneled","session_name":"tiny-cow","services":'
                      '[{"name":"frontend","location":"' + upstream.url + '/","rewrites":null}],'
                      '"domains":[{"domain":"example.com","default_service":"frontend",'
                      '"routes":null},{"domain":"api.example.com","default_service":"frontend",'
                      '"routes":[{"path":"^/x","service":"frontend"}]}]}')

    r = lk.request(addr, "GET", "/linkup/dns")
    assert r.status == 200
    assert r.text == '{"domains":["tiny-cow.api.example.com","tiny-cow.example.com"]}'

    # A percent-encoded NUL does not cut the name short (it named `tiny-cow`).
    for method in ("GET", "DELETE"):
        r = lk.request(addr, method, "/linkup/sessions/tiny-cow%00zzz")
        assert (r.status, r.text) == (404, "Session 'tiny-cow%00zzz' not found")
    r = lk.request(addr, "DELETE", "/linkup/sessions/tiny-cow")
    assert (r.status, r.body) == (204, b"")
    r = lk.request(addr, "GET", "/linkup/sessions/tiny-cow")
    assert (r.status, r.text) == (404, "Session 'tiny-cow' not found")
    assert r.header("content-type") == "text/plain"
    r = lk.request(addr, "DELETE", "/linkup/sessions/tiny-cow")
    assert (r.status, r.text) == (404, "Session 'tiny-cow' not found")
    assert lk.request(addr, "GET", "/linkup/dns").text == '{"domains":[]}'
    assert lk.request(addr, "GET", "/linkup/sessions").json() == {"sessions": {}}
    r = lk.request(addr, "GET", "/", [("Host", "tiny-cow.example.com")])
    assert r.status == 422


def test_same_name_other_token_gets_a_new_local_name(server, upstream):
    addr = server.addrs["HTTP"]
    seed(addr, "dup", {"frontend": upstream.url}, token="one")
    seed(addr, "dup", {"frontend": upstream.url}, token="two")
    names = sorted(lk.request(addr, "GET", "/linkup/sessions").json()["sessions"])
    assert len(names) == 2 and "dup" in names


def test_preview_is_forwarded_and_not_stored(server, fake_worker, upstream):
    addr = server.addrs["HTTP"]
    body = lk.session_body("prev", {"frontend": "https://example.com"},
                           [("example.com", "frontend", None)])
    r = lk.post_json(addr, "/linkup/sessions/preview", body)
    assert (r.status, r.json()) == (200, {"session_name": "prev"})
    # SPEC §5.2, §2.4: the worker's SessionResponse is answered as compact
    # JSON, whatever spacing the worker used (the fake worker adds spaces).
    assert r.text == '{"session_name":"prev"}'
    assert r.header("Content-Type") == "application/json"
    assert fake_worker.calls[-1][0] == "/linkup/v2/sessions/preview"
    assert fake_worker.calls[-1][1]["authorization"] == "Bearer token123"
    assert lk.request(addr, "GET", "/linkup/sessions").json() == {"sessions": {}}
    assert lk.request(addr, "GET", "/linkup/dns").json() == {"domains": []}
    fake_worker.mode = 400
    fake_worker.body = "Preview session cannot contain services pointing to localhost"
    r = lk.post_json(addr, "/linkup/sessions/preview", body)
    assert (r.status, r.text) == (400, fake_worker.body)
    # A 200 that is no SessionResponse (SPEC §2.4) is a 500, worded as serde does.
    fake_worker.mode = 200
    for answer, why in (('{"session_name":5}', "invalid type for `session_name`: expected a string"),
                        ('{"name":"x"}', "missing field `session_name`"),
                        ('["x"]', "invalid type: expected struct SessionResponse")):
        fake_worker.body = answer
        r = lk.post_json(addr, "/linkup/sessions/preview", body)
        assert (r.status, r.text) == (
            500, "Failed to request to Worker: error decoding response body: " + why)


def test_static_paths_win_over_names(server):
    addr = server.addrs["HTTP"]
    for path in ("/linkup/sessions/preview", "/linkup/sessions/tunneled"):
        assert lk.request(addr, "GET", path).status == 405
    assert lk.request(addr, "POST", "/linkup/check", body="").status == 405
    assert lk.request(addr, "PUT", "/linkup/sessions/x", body="").status == 405


# ---- bad input (SPEC §5.2, §5.7) ---------------------------------------------

def test_bad_bodies(server, fake_worker, upstream):
    addr = server.addrs["HTTP"]
    r = lk.post_json(addr, "/linkup/sessions/tunneled", "{not json")
    assert r.status == 400
    r = lk.post_json(addr, "/linkup/sessions/tunneled", {"hello": "world"})
    assert r.status == 422
    empty = lk.session_body("e", {}, [("example.com", "frontend", None)])
    r = lk.post_json(addr, "/linkup/sessions/tunneled", empty)
    assert (r.status, r.text) == (400, "Failed to parse server config: empty config - local server")
    bad_ref = lk.session_body("e", {"frontend": upstream.url}, [("example.com", "nope", None)])
    r = lk.post_json(addr, "/linkup/sessions/tunneled", bad_ref)
    assert (r.status, r.text) == (400,
                                  "Failed to parse server config: no such service: nope - local server")
    r = lk.request(addr, "POST", "/linkup/sessions/tunneled", [("Content-Type", "text/plain")],
                   json.dumps(empty))
    assert r.status == 415
    # SPEC §5.2: the session is validated after the worker accepted it; only
    # the two well-formed bodies reached the worker.
    assert [c[0] for c in fake_worker.calls] == ["/linkup/v2/sessions/tunneled"] * 2
    assert lk.request(addr, "GET", "/linkup/check").status == 200


def test_body_over_limit_is_413(server):
    host, port = server.addrs["HTTP"]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /linkup/sessions/tunneled HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 104857601\r\n\r\n{")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 413"), data


@pytest.mark.parametrize("value, info_lines, warned", [
    ("info", True, False), ("warn", False, False), ("off", False, False),
    ("linkup=debug", True, False), ("hyper=debug", True, True),
    # env_logger: the directive naming the module beats the bare level.
    ("info,linkup=warn", False, False), ("linkup=info,off", True, False),
])
def test_linkup_log_levels(linkup_bin, env, tmp_path, fake_worker, value, info_lines, warned):
    """SPEC §6.1: LINKUP_LOG in env_logger's syntax sets the server's stderr level, as the
    CLI's; a value with nothing for Linkup keeps info and says so."""
    s = start(linkup_bin, {**env, "LINKUP_LOG": value}, tmp_path, fake_worker.url)
    try:
        lk.request(s.addrs["HTTP"], "GET", "/linkup/check")
    finally:
        code, _ = lk.stop_gracefully(s)
    log = open(s.log_path).read()
    assert code == 0
    assert (" INFO] " in log) == info_lines, log
    assert ("ignoring LINKUP_LOG=" in log) == warned, log
    if value == "off":
        assert log == ""


def test_no_listening_line_when_a_later_listener_fails(linkup_bin, env, tmp_path):
    """DESIGN §3: the "listening" lines say the server is up, so none is printed when the
    DNS listener (bound after HTTP and HTTPS) cannot bind."""
    with lk.occupied_port() as taken:
        r = lk.run(linkup_bin, "server", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0",
                   "--dns", taken, "--certs-dir", str(tmp_path / "certs"), "--worker-url",
                   "http://127.0.0.1:9", "--worker-token", "t", env=env, timeout=20)
    assert r.returncode == 1 and r.stdout == ""
    assert f"Exited with error: Failed to listen for DNS on {taken}" in r.stderr


TUNNEL_DATA = {"account_id": "", "name": "linkup-tunnel-w", "url": "http://t.localhost",
               "id": "x", "secret": "s", "last_started": 1}


def tunneled_answer(**changes):
    """A 200 body of the worker whose tunnel_data has changes applied (a
    value of ... drops the field; tunnel_data=... replaces it whole)."""
    td = changes.pop("tunnel_data", dict(TUNNEL_DATA))
    for k, v in changes.items():
        if v is ...:
            td.pop(k)
        else:
            td[k] = v
    return json.dumps({"session_name": "w", "tunnel_data": td})


DECODE = "Failed to request to Worker: error decoding response body: "


# SPEC §5.2 step 1; the 200 rows: an answer that does not parse as a
# TunneledSessionResponse (SPEC §2.4: every TunnelData field, last_started a
# u64) is a 500 and nothing is stored (fields beyond SPEC's are fine, DESIGN §8).
@pytest.mark.parametrize("status,body,want_status,want_text", [
    (200, tunneled_answer(secret=...), 500, DECODE + "missing field `secret`"),
    (200, tunneled_answer(last_started=...), 500, DECODE + "missing field `last_started`"),
    (200, tunneled_answer(url=None), 500, DECODE + "invalid type for `url`: expected a string"),
    (200, tunneled_answer(last_started=-1), 500,
     DECODE + "invalid type for `last_started`: expected u64"),
    (200, tunneled_answer(last_started="1"), 500,
     DECODE + "invalid type for `last_started`: expected u64"),
    (200, tunneled_answer(tunnel_data="x"), 500,
     DECODE + "invalid type: expected struct TunnelData"),
    (200, tunneled_answer(tunnel_data=None), 500,
     DECODE + "invalid type: expected struct TunnelData"),
    (200, json.dumps({"session_name": 5, "tunnel_data": TUNNEL_DATA}), 500,
     DECODE + "invalid type for `session_name`: expected a string"),
    (200, json.dumps([TUNNEL_DATA]), 500,
     DECODE + "invalid type: expected struct TunneledSessionResponse"),
    (401, "", 500, "Failed to request to Worker: request failed with status 401 Unauthorized: "),
    (409, "Conflict", 409, "Conflict"),
    (500, "boom", 500,
     "Failed to request to Worker: request failed with status 500 Internal Server Error: boom"),
    (410, "b", 500, "Failed to request to Worker: request failed with status 410 Gone: b"),
    (418, "b", 500, "Failed to request to Worker: request failed with status 418 I'm a teapot: b"),
    (599, "b", 500,
     "Failed to request to Worker: request failed with status 599 <unknown status code>: b"),
])
def test_worker_errors_are_mapped(linkup_bin, env, tmp_path, upstream, status, body,
                                  want_status, want_text):
    w = lk.FakeWorker("127.0.0.3", mode=status, body=body)
    s = start(linkup_bin, env, tmp_path, w.url)
    try:
        addr = s.addrs["HTTP"]
        r = lk.post_json(addr, "/linkup/sessions/tunneled",
                         lk.session_body("w", {"frontend": upstream.url},
                                         [("example.com", "frontend", None)]))
        assert (r.status, r.text) == (want_status, want_text)
        assert r.header("content-type") == "text/plain"
        assert lk.request(addr, "GET", "/linkup/sessions").json() == {"sessions": {}}
        assert lk.request(addr, "GET", "/linkup/check").status == 200
    finally:
        assert lk.stop_gracefully(s)[0] == 0
        w.close()


def test_worker_unreachable_is_500(linkup_bin, env, tmp_path, upstream):
    with socket.socket() as sock:
        sock.bind(("127.0.0.3", 0))
        dead = sock.getsockname()[1]
    s = start(linkup_bin, env, tmp_path, f"http://127.0.0.3:{dead}")
    try:
        addr = s.addrs["HTTP"]
        body = lk.session_body("w", {"frontend": upstream.url},
                               [("example.com", "frontend", None)])
        for path in ("/linkup/sessions/tunneled", "/linkup/sessions/preview"):
            r = lk.post_json(addr, path, body)
            assert r.status == 500
            assert r.text.startswith("Failed to request to Worker: "), r.text
        assert lk.request(addr, "GET", "/linkup/check").status == 200
    finally:
        assert lk.stop_gracefully(s)[0] == 0


def test_worker_url_with_an_ipv6_literal(linkup_bin, env, tmp_path, upstream):
    """A worker URL such as http://[::1]:P (DESIGN §3 --worker-url) is dialled at ::1 with
    `Host: [::1]:P`: the tunneled upsert reaches the worker (SPEC §5.2) and the built-in
    tunnel connects to it (DESIGN §8)."""
    if not lk.has_command(linkup_bin, "worker", env=env):
        pytest.skip("this build has no `linkup worker`")
    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6")
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"),
                               extra=("--listen", "[::1]:0"))
    try:
        host, port = w.addrs["Worker"]
        assert host == "[::1]"
        s = start(linkup_bin, env, tmp_path, f"http://[::1]:{port}/")
        try:
            addr = s.addrs["HTTP"]
            body = lk.session_body("six-cow", {"frontend": upstream.url},
                                   [("example.com", "frontend", None)], "tok")
            r = lk.post_json(addr, "/linkup/sessions/preview", body)
            assert r.status == 200, r.text
            r = lk.post_json(addr, "/linkup/sessions/tunneled", body)
            assert r.status == 200, r.text
            assert r.json()["session_name"] == "six-cow"
            deadline = time.time() + 10
            while time.time() < deadline:
                t = lk.request(addr, "GET", "/linkup/tunnel").json()
                if t["connected"]:
                    break
                time.sleep(0.1)
            assert t["connected"], t
        finally:
            assert lk.stop_gracefully(s)[0] == 0
    finally:
        w.stop()


class _NameWorker(http.server.BaseHTTPRequestHandler):
    """A stand-in worker answering every POST with the Host it was sent as the session name."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = json.dumps({"session_name": self.headers.get("Host")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_worker_url_localhost_is_both_addresses_and_its_tls_name(linkup_bin, env, tmp_path):
    """A worker URL on `localhost` (DESIGN §4: every address of a name is tried): a worker
    listening on ::1 only is reached after 127.0.0.1 refuses, and an https://localhost worker
    is verified as `localhost` (its certificate names localhost, not 127.0.0.1)."""
    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6")

    class V6(lk.Server):
        address_family = socket.AF_INET6

    key, cert = tmp_path / "w.key", tmp_path / "w.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost"], check=True, capture_output=True, timeout=30)
    v6 = V6(("::1", 0), _NameWorker)
    tls = lk.Server(("127.0.0.1", 0), _NameWorker)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    for srv in (v6, tls):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = dict(env, SSL_CERT_FILE=str(cert))
    body = lk.session_body("x", {"frontend": "http://127.0.0.2:1"}, [("example.com", "frontend",
                                                                       None)])
    try:
        for url, host in ((f"http://localhost:{v6.server_address[1]}/", "v6"),
                          (f"https://localhost:{tls.server_address[1]}/", "tls")):
            s = start(linkup_bin, env, tmp_path, url, name=host)
            try:
                r = lk.post_json(s.addrs["HTTP"], "/linkup/sessions/preview", body)
                assert r.status == 200, (url, r.text)
                assert r.json() == {"session_name": url.split("//")[1].rstrip("/")}
            finally:
                assert lk.stop_gracefully(s)[0] == 0
    finally:
        for srv in (v6, tls):
            srv.shutdown()
            srv.server_close()


# ---- DESIGN §2.8: loopback only ----------------------------------------------

def test_admin_refuses_non_loopback_peers(linkup_bin, env, tmp_path, fake_worker):
    env = dict(env, LINKUP_TEST_TREAT_PEERS_AS_REMOTE="1")
    s = start(linkup_bin, env, tmp_path, fake_worker.url)
    try:
        addr = s.addrs["HTTP"]
        assert lk.request(addr, "GET", "/linkup/check").status == 200
        assert lk.request(addr, "GET", "/linkup/sessions").status == 403
        assert lk.request(addr, "GET", "/linkup/dns").status == 403
        assert lk.request(addr, "DELETE", "/linkup/sessions/x").status == 403
        r = lk.post_json(addr, "/linkup/sessions/tunneled",
                         lk.session_body("x", {"frontend": "http://127.0.0.2:1"},
                                         [("example.com", "frontend", None)]))
        assert r.status == 403
        assert fake_worker.calls == []
    finally:
        assert lk.stop_gracefully(s)[0] == 0


# ---- options and lifecycle (DESIGN §3) ---------------------------------------

def test_sigterm_exits_zero(linkup_bin, env, tmp_path, fake_worker):
    s = start(linkup_bin, env, tmp_path, fake_worker.url)
    code, out = lk.stop_gracefully(s)
    assert code == 0
    assert "Received SIGTERM signal" in out


def test_http_addr_from_env(linkup_bin, env, tmp_path, fake_worker):
    env = dict(env, LINKUP_HTTP_ADDR="127.0.0.1:0")
    p = subprocess.Popen([linkup_bin, "server", "--worker-url", fake_worker.url,
                          "--worker-token", "t"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = p.stdout.readline()
        assert lk.LISTEN_RE.match(line.strip()), line
        assert line.startswith("HTTP listening on 127.0.0.1:")
    finally:
        p.terminate()
        assert p.wait(10) == 0


def test_bind_failure_exits_one(linkup_bin, env, tmp_path, fake_worker):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        r = subprocess.run([linkup_bin, "server", "--http", f"127.0.0.1:{port}", "--worker-url",
                            fake_worker.url, "--worker-token", "t"], capture_output=True, text=True,
                           env=env, timeout=20)
    assert r.returncode == 1
    assert f"127.0.0.1:{port}" in r.stderr


def test_usage_errors(linkup_bin, env):
    for args in (["--bogus"], ["--http", "nonsense"], ["--worker-url", "http://x/"]):
        r = subprocess.run([linkup_bin, "server", *args], capture_output=True, text=True,
                           env=env, timeout=20)
        assert r.returncode == 2, (args, r.stderr)


def test_missing_option_value_is_a_usage_error(linkup_bin, env):
    """An option without its value is a usage error (exit 2) naming the option as --help
    shows it; as for the CLI's options (clap), a following `--option` is not taken as the
    value, so `--certs-dir --http A:P` does not make a certs directory named `--http`."""
    for args, opt in ((["--http"], "--http <A:P|off>"),
                      (["--certs-dir", "--http", "127.0.0.1:0"], "--certs-dir <DIR>"),
                      (["--worker-url", "http://127.0.0.1:9/", "--worker-token"],
                       "--worker-token <TOKEN>")):
        r = subprocess.run([linkup_bin, "server", *args], capture_output=True, text=True,
                           env=env, timeout=20)
        assert r.returncode == 2, (args, r.stderr)
        assert f"a value is required for '{opt}' but none was supplied" in r.stderr, r.stderr
    r = subprocess.run([linkup_bin, "server", "--http", "nonsense"], capture_output=True,
                       text=True, env=env, timeout=20)
    assert r.returncode == 2
    assert "invalid value 'nonsense' for '--http <A:P|off>'" in r.stderr, r.stderr


def test_config_is_required_without_worker_url(linkup_bin, env):
    r = subprocess.run([linkup_bin, "server", "--http", "127.0.0.1:0"], capture_output=True,
                       text=True, env=env, timeout=20)
    assert r.returncode == 1
    assert ("No config argument provided and LINKUP_CONFIG environment variable not set"
            in r.stderr)


def test_worker_from_config(linkup_bin, env, tmp_path, fake_worker, upstream):
    cfg = tmp_path / "linkup.yaml"
    cfg.write_text(f"""linkup:
  worker_url: {fake_worker.url}
  worker_token: from-config
services:
  - name: frontend
    remote: https://example.com
    local: {upstream.url}
domains:
  - domain: example.com
    default_service: frontend
""")
    p = subprocess.Popen([linkup_bin, "--config", str(cfg), "server", "--http", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        m = lk.LISTEN_RE.match(p.stdout.readline().strip())
        addr = (m.group(2), int(m.group(3)))
        seed(addr, "cfg-cow", {"frontend": upstream.url})
        assert fake_worker.calls[-1][1]["authorization"] == "Bearer from-config"
    finally:
        p.terminate()
        assert p.wait(10) == 0


# ---- the chain through a real `linkup worker` --------------------------------

def test_chain_through_real_worker(linkup_bin, env, tmp_path):
    if not lk.has_command(linkup_bin, "worker", env=env):
        pytest.skip("this build has no `linkup worker`")
    local = lk.RecordingUpstream("127.0.0.2", body="local")
    remote = lk.RecordingUpstream("127.0.0.3", body="remote")
    w = lk.spawn_worker(linkup_bin, env, "memory")
    s = start(linkup_bin, env, tmp_path, w.url("Worker"))
    try:
        addr = s.addrs["HTTP"]
        body = lk.session_body("chain-cow", {"frontend": local.url, "backend": remote.url},
                               [("example.com", "frontend", [("^/api/.*", "backend")])], "tok")
        r = lk.post_json(addr, "/linkup/sessions/tunneled", body)
        assert r.status == 200, r.body
        assert r.json()["session_name"] == "chain-cow"
        assert "tunnel_data" in r.json()
        # The session landed in the worker: the worker routes it too.
        wr = lk.request(w.addrs["Worker"], "GET", "/api/x", [("Host", "chain-cow.example.com")])
        assert (wr.status, wr.text) == (200, "remote")
        # The local server routes by Host, referer and tracestate.
        cases = [
            ("/", [("Host", "chain-cow.example.com")], "local"),
            ("/api/x", [("Host", "chain-cow.example.com")], "remote"),
            ("/", [("Host", "example.com"), ("Referer", "http://chain-cow.example.com/a")],
             "local"),
            ("/api/y", [("Host", "example.com"), ("tracestate", "linkup-session=chain-cow")],
             "remote"),
        ]
        for path, headers, want in cases:
            r = lk.request(addr, "GET", path, headers)
            assert (r.status, r.text) == (200, want), (path, headers)
        # Same name, other token: the worker refuses (DESIGN §2.1: 409).
        other = dict(body, session_token="other")
        r = lk.post_json(addr, "/linkup/sessions/tunneled", other)
        assert (r.status, r.text) == (409, "Conflict")
        assert list(lk.request(addr, "GET", "/linkup/sessions").json()["sessions"]) == [
            "chain-cow"]
        assert lk.request(addr, "GET", "/linkup/dns").json() == {
            "domains": ["chain-cow.example.com"]}
        assert lk.request(addr, "GET", "/linkup/sessions/chain-cow").json()[
            "session_name"] == "chain-cow"
        assert lk.request(addr, "DELETE", "/linkup/sessions/chain-cow").status == 204
        assert lk.request(addr, "GET", "/linkup/dns").json() == {"domains": []}
        # A bad token at the worker: its 401 becomes a 500 here.
        s2 = lk.spawn_local_server(linkup_bin, env, "--worker-url", w.url("Worker"),
                                   "--worker-token", "wrong",
                                   log_path=str(tmp_path / "server2.log"))
        try:
            r = lk.post_json(s2.addrs["HTTP"], "/linkup/sessions/tunneled", body)
            assert r.status == 500
            assert r.text.startswith(
                "Failed to request to Worker: request failed with status 401 Unauthorized")
        finally:
            assert lk.stop_gracefully(s2)[0] == 0
    finally:
        assert lk.stop_gracefully(s)[0] == 0
        w.stop()
        local.close()
        remote.close()


# ---- HTTPS and DNS listeners (issue 6 via lib/net/certs and dns_server) -------

def test_https_and_dns_listeners(linkup_bin, env, tmp_path, fake_worker, upstream):
    import os
    import ssl
    import stat
    certs = tmp_path / "certs"
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "token123", "--https", "127.0.0.1:0", "--dns", "127.0.0.1:0",
                              "--certs-dir", str(certs), log_path=str(tmp_path / "server.log"),
                              wanted=("HTTP", "HTTPS", "DNS"))
    try:
        ca = certs / "linkup_ca.cert.pem"
        assert ca.exists()
        assert stat.S_IMODE(os.stat(certs / "linkup_ca.key.pem").st_mode) == 0o600
        seed(s.addrs["HTTP"], "tls-cow", {"frontend": upstream.url},
             [("example.com", "frontend", None), ("second.test", "frontend", None)])
        ctx = ssl.create_default_context(cafile=str(ca))
        for sni in ("tls-cow.example.com", "api.tls-cow.example.com", "tls-cow.second.test"):
            with socket.create_connection(s.addrs["HTTPS"], timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                    tls.sendall(b"GET /over-tls HTTP/1.1\r\nHost: tls-cow.example.com\r\n"
                                b"Connection: close\r\n\r\n")
                    data = b""
                    while True:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        data += chunk
            assert data.startswith(b"HTTP/1.1 200"), (sni, data[:200])
            assert data.endswith(b"under_fe")
        # The proxied request saw x-forwarded-host built from the https URL.
        assert ("x-forwarded-host", "tls-cow.example.com") in [
            (k.lower(), v) for k, v in upstream.last_headers()]
        with socket.create_connection(s.addrs["HTTPS"], timeout=10) as raw:
            with pytest.raises(ssl.SSLError):
                ctx.wrap_socket(raw, server_hostname="unmanaged.example.org")

        dns = s.addrs["DNS"]
        assert lk.dns_query(dns, "tls-cow.example.com") == (0, [bytes([127, 0, 0, 1])])
        assert lk.dns_query(dns, "x.tls-cow.second.test", 28) == (0, [bytes(15) + b"\x01"])
        assert lk.dns_query(dns, "nobody.example.com")[0] == 3
        assert lk.request(s.addrs["HTTP"], "DELETE", "/linkup/sessions/tls-cow").status == 204
        assert lk.request(s.addrs["HTTP"], "GET", "/linkup/dns").json() == {"domains": []}
    finally:
        code, out = lk.stop_gracefully(s)
        assert code == 0, open(s.log_path).read()
