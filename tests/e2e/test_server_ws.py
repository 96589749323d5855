"""WebSockets through `linkup server` (SPEC §5.4, §8.4): a raw RFC 6455
client and echo upstream (tests/e2e/lk.py), no third-party packages."""
import socket

import pytest

import lk


@pytest.fixture(autouse=True)
def no_tls_no_dns(env):
    """Servers here listen on HTTP only unless a test asks for more; the
    DESIGN §3 defaults (:443, :8053) would collide between servers."""
    env["LINKUP_HTTPS_ADDR"] = "off"
    env["LINKUP_DNS_ADDR"] = "off"


@pytest.fixture
def worker():
    w = lk.FakeWorker("127.0.0.3")
    yield w
    w.close()


@pytest.fixture
def ws_upstream():
    u = lk.WsEchoUpstream("127.0.0.2")
    yield u
    u.close()


@pytest.fixture
def server(linkup_bin, env, tmp_path, worker, ws_upstream):
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", worker.url, "--worker-token",
                              "token123", log_path=str(tmp_path / "server.log"))
    body = lk.session_body("ws-session", {"frontend": ws_upstream.url},
                           [("example.com", "frontend", None)])
    assert lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
    yield s
    code, _ = lk.stop_gracefully(s)
    assert code == 0, open(s.log_path).read()


def handshake(addr, path="/ws"):
    sock = socket.create_connection(addr, timeout=10)
    req = (f"GET {path} HTTP/1.1\r\n"
           f"host: {addr[0]}:{addr[1]}\r\n"
           "referer: example.com\r\n"
           "traceparent: xzyabc\r\n"
           "tracestate: linkup-session=ws-session\r\n"
           "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "sec-websocket-version: 13\r\n"
           "connection: upgrade\r\n"
           "upgrade: websocket\r\n\r\n")
    sock.sendall(req.encode())
    status, headers, rest = lk.read_http_head(sock)
    return sock, status, headers, rest


def test_websocket_echo_with_upstream_101_headers(server, ws_upstream):
    sock, status, headers, rest = handshake(server.addrs["HTTP"])
    with sock:
        assert status.startswith("HTTP/1.1 101"), status
        h = {k.lower(): v for k, v in headers}
        assert h["my-special-header"] == "special-value"
        assert h["sec-websocket-accept"] == lk.ws_accept("dGhlIHNhbXBsZSBub25jZQ==")
        assert h["access-control-allow-origin"] == "*"
        assert rest == b""
        sock.sendall(lk.ws_frame(1, b"Hello, WebSocket!"))
        assert lk.ws_read_frame(sock) == (1, b"Hello, WebSocket!")
        sock.sendall(lk.ws_frame(2, bytes(range(256)) * 300))
        assert lk.ws_read_frame(sock) == (2, bytes(range(256)) * 300)
        # SPEC §5.4 step 5: the local server keeps close codes (4001 here).
        sock.sendall(lk.ws_frame(8, b"\x0f\xa1bye"))
        try:
            op, payload = lk.ws_read_frame(sock)
            assert (op, payload) == (8, b"\x0f\xa1bye")
        except EOFError:
            pass
    # The upstream saw the Linkup headers and its own host without port.
    line, up_headers = ws_upstream.heads[-1]
    uh = {k.lower(): v for k, v in up_headers}
    assert line == "GET /ws HTTP/1.1"
    assert uh["tracestate"] == "linkup-session=ws-session"
    assert uh["linkup-destination"] == "frontend"
    assert uh["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    assert uh["host"] == "127.0.0.2"


def test_non_101_answer_is_passed_through(server):
    sock, status, headers, rest = handshake(server.addrs["HTTP"], "/reject")
    with sock:
        assert status.startswith("HTTP/1.1 403"), status
        h = {k.lower(): v for k, v in headers}
        body = rest
        while len(body) < int(h["content-length"]):
            body += sock.recv(4096)
        assert body == b"no websocket here"
        # Unchanged (SPEC §5.4 step 3): exactly the upstream's headers, no
        # CORS defaults added (those are for proxied 101s and HTTP, §3.9).
        assert sorted(h) == ["content-length", "content-type"], headers
        assert h["content-type"] == "text/plain"


REFUSAL = (b"HTTP/1.1 401 Unauthorized\r\n"
           b"Content-Type: application/json\r\n"
           b"Set-Cookie: a=1; Path=/\r\n"
           b"Set-Cookie: b=2; HttpOnly\r\n"
           b"Access-Control-Allow-Origin: https://app.example.com\r\n"
           b"WWW-Authenticate: Bearer realm=\"ws\"\r\n"
           b"X-Why: token expired\r\n"
           b"Content-Length: 20\r\n"
           b"Connection: close\r\n\r\n"
           b'{"error":"expired"}\n')


def test_refused_upgrade_keeps_every_upstream_header(linkup_bin, env, tmp_path, worker):
    """A refusal with repeated and CORS-like headers of its own reaches the
    client as the upstream sent it: same status line, same headers in the
    same order (Connection is hop-by-hop), same body, nothing added."""
    up = lk.ScriptedUpstream(REFUSAL, host="127.0.0.2")
    srv = lk.spawn_local_server(linkup_bin, env, "--worker-url", worker.url, "--worker-token",
                                "token123", log_path=str(tmp_path / "server.log"))
    try:
        body = lk.session_body("ws-session", {"frontend": up.url},
                               [("example.com", "frontend", None)])
        assert lk.post_json(srv.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
        sock, status, headers, rest = handshake(srv.addrs["HTTP"])
        with sock:
            while len(rest) < 20:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                rest += chunk
        assert status == "HTTP/1.1 401 Unauthorized", status
        assert up.count == 1
        got = [(k.lower(), v) for k, v in headers if k.lower() != "connection"]
        assert got == [("content-type", "application/json"),
                       ("set-cookie", "a=1; Path=/"),
                       ("set-cookie", "b=2; HttpOnly"),
                       ("access-control-allow-origin", "https://app.example.com"),
                       ("www-authenticate", 'Bearer realm="ws"'),
                       ("x-why", "token expired"),
                       ("content-length", "20")], headers
        assert rest == b'{"error":"expired"}\n'
    finally:
        up.close()
        assert lk.stop_gracefully(srv)[0] == 0, open(srv.log_path).read()


def test_websocket_to_dead_upstream_is_502(linkup_bin, env, tmp_path, worker):
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        dead = s.getsockname()[1]
    srv = lk.spawn_local_server(linkup_bin, env, "--worker-url", worker.url, "--worker-token",
                                "token123", log_path=str(tmp_path / "server.log"))
    try:
        body = lk.session_body("ws-session", {"frontend": f"http://127.0.0.2:{dead}"},
                               [("example.com", "frontend", None)])
        assert lk.post_json(srv.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
        sock, status, headers, rest = handshake(srv.addrs["HTTP"])
        sock.close()
        assert status.startswith("HTTP/1.1 502"), status
    finally:
        assert lk.stop_gracefully(srv)[0] == 0
