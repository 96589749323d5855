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


def ws_server(linkup_bin, env, tmp_path, worker, url):
    """A local server with session ws-session: example.com -> frontend at url."""
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", worker.url, "--worker-token",
                              "token123", log_path=str(tmp_path / "server.log"))
    body = lk.session_body("ws-session", {"frontend": url}, [("example.com", "frontend", None)])
    assert lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
    return s


@pytest.fixture
def server(linkup_bin, env, tmp_path, worker, ws_upstream):
    s = ws_server(linkup_bin, env, tmp_path, worker, ws_upstream.url)
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
        # CORS defaults added (those are for proxied 101s and HTTP, §3.9);
        # only the Date a forwarded response without one gets (RFC 9110
        # §6.6.1, as the original's hyper adds it).
        assert sorted(h) == ["content-length", "content-type", "date"], headers
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
    same order (Connection is hop-by-hop), same body, nothing added but the
    Date it lacked (RFC 9110 §6.6.1)."""
    up = lk.ScriptedUpstream(REFUSAL, host="127.0.0.2")
    srv = ws_server(linkup_bin, env, tmp_path, worker, up.url)
    try:
        sock, status, headers, rest = handshake(srv.addrs["HTTP"])
        with sock:
            while len(rest) < 20:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                rest += chunk
        assert status == "HTTP/1.1 401 Unauthorized", status
        assert up.count == 1
        got = [(k.lower(), v) for k, v in headers if k.lower() not in ("connection", "date")]
        assert [k.lower() for k, _ in headers].count("date") == 1, headers
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
    srv = ws_server(linkup_bin, env, tmp_path, worker, f"http://127.0.0.2:{dead}")
    try:
        sock, status, headers, rest = handshake(srv.addrs["HTTP"])
        sock.close()
        assert status.startswith("HTTP/1.1 502"), status
    finally:
        assert lk.stop_gracefully(srv)[0] == 0


@pytest.mark.parametrize("reply,why", [
    ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
     "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n",
     "upstream answered 101 with a wrong Sec-WebSocket-Accept"),
    ("Upgrade: websocket\r\nConnection: Upgrade\r\n",
     "upstream answered 101 with a wrong Sec-WebSocket-Accept"),
    ("Upgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
     + lk.ws_accept("dGhlIHNhbXBsZSBub25jZQ==") + "\r\n",
     "upstream answered 101 without Upgrade: websocket"),
], ids=["wrong-accept", "no-accept", "h2c"])
def test_websocket_101_a_client_handshake_rejects_is_502(linkup_bin, env, tmp_path, worker,
                                                          reply, why):
    """SPEC §5.4 step 3: a handshake that fails other than with an HTTP
    response is a 502 with the error text; a client's handshake (RFC 6455
    §4.2.2) fails on a 101 without Upgrade: websocket or with a
    Sec-WebSocket-Accept that is not the one of the key sent."""
    up = lk.ScriptedUpstream(("HTTP/1.1 101 Switching Protocols\r\n" + reply + "\r\n").encode())
    srv = ws_server(linkup_bin, env, tmp_path, worker, up.url)
    try:
        sock, status, headers, rest = handshake(srv.addrs["HTTP"])
        with sock:
            assert status.startswith("HTTP/1.1 502"), status
            n = int(dict((k.lower(), v) for k, v in headers)["content-length"])
            while len(rest) < n:
                rest += sock.recv(4096)
            assert why.encode() in rest, rest
        assert up.count == 1
    finally:
        up.close()
        assert lk.stop_gracefully(srv)[0] == 0


def test_websocket_101_hop_by_hop_headers_are_not_relayed(linkup_bin, env, tmp_path, worker):
    """SPEC §3.10 (RFC 9110 §7.6.1): the upstream's 101 reaches the client
    without its hop-by-hop fields (Keep-Alive, the other names its Connection
    lists, Proxy-Connection, TE, Trailer, Transfer-Encoding); Connection:
    upgrade, Upgrade: websocket, Sec-WebSocket-* and end-to-end fields stay."""
    accept = lk.ws_accept("dGhlIHNhbXBsZSBub25jZQ==")
    up = lk.ScriptedUpstream(("HTTP/1.1 101 Switching Protocols\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade, Keep-Alive, X-Hop\r\n"
                              "Keep-Alive: timeout=5\r\n"
                              "X-Hop: 1\r\n"
                              "Proxy-Connection: keep-alive\r\n"
                              "TE: trailers\r\n"
                              "Trailer: X-T\r\n"
                              "Transfer-Encoding: chunked\r\n"
                              f"Sec-WebSocket-Accept: {accept}\r\n"
                              "Sec-WebSocket-Protocol: chat\r\n"
                              "my-special-header: special-value\r\n\r\n").encode())
    srv = ws_server(linkup_bin, env, tmp_path, worker, up.url)
    try:
        sock, status, headers, rest = handshake(srv.addrs["HTTP"])
        sock.close()
        assert status.startswith("HTTP/1.1 101"), status
        h = lk.check_ws101_has_no_hop_by_hop(headers, accept)
        assert h["sec-websocket-protocol"] == "chat"
        assert h["my-special-header"] == "special-value"
        assert h["access-control-allow-origin"] == "*"
    finally:
        up.close()
        assert lk.stop_gracefully(srv)[0] == 0


def read_frame_rest(sock, b0):
    """(opcode, payload) of a frame whose first byte b0 was read; unmasks."""
    b1 = lk._recv_exact(sock, 1)[0]
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(lk._recv_exact(sock, 2), "big")
    elif n == 127:
        n = int.from_bytes(lk._recv_exact(sock, 8), "big")
    key = lk._recv_exact(sock, 4) if b1 & 0x80 else None
    payload = lk._recv_exact(sock, n) if n else b""
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, payload


class ScriptedWsUpstream:
    """A WebSocket upstream on 127.0.0.2:0 for one connection: after the 101
    it records every frame it reads as (fin, opcode, payload) and answers:
    a text "script" with a fragmented text message, an unmasked ping and a
    binary frame of 300 KiB; a ping with a pong of the same payload; a close
    with close 4001 "bye now"."""

    def __init__(self):
        import threading
        self.frames = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.2", 0))
        self.sock.listen(4)
        self.sock.settimeout(10)
        self.url = f"http://127.0.0.2:{self.sock.getsockname()[1]}"
        self.big = bytes(range(256)) * 1200
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _frame(fin, opcode, payload):
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            return head + bytes([n]) + payload
        if n < 65536:
            return head + bytes([126]) + n.to_bytes(2, "big") + payload
        return head + bytes([127]) + n.to_bytes(8, "big") + payload

    def _serve(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        c.settimeout(10)
        try:
            lk.ws_switch(c)
            while True:
                b0 = lk._recv_exact(c, 1)[0]
                op, payload = read_frame_rest(c, b0)
                self.frames.append((bool(b0 & 0x80), op, payload))
                if op == 1 and payload == b"script":
                    c.sendall(self._frame(False, 1, b"part1-") + self._frame(False, 0, b"part2-")
                              + self._frame(True, 0, b"part3") + self._frame(True, 9, b"up-ping")
                              + self._frame(True, 2, self.big))
                elif op == 9:
                    c.sendall(self._frame(True, 10, payload))
                elif op == 8:
                    c.sendall(self._frame(True, 8, (4001).to_bytes(2, "big") + b"bye now"))
                    return
        except (EOFError, OSError, KeyError):
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


def read_frame_fin(sock):
    """(fin, opcode, payload) of the next frame from the server (unmasked)."""
    b0 = lk._recv_exact(sock, 1)[0]
    op, payload = read_frame_rest(sock, b0)
    return bool(b0 & 0x80), op, payload


def test_frames_pass_untouched_both_ways(linkup_bin, env, tmp_path, worker):
    """SPEC §5.4 step 5: text, binary, continuation, ping, pong and close
    frames are forwarded as they are, fragmentation, a 300 KiB binary frame
    and the close code and reason included, in both directions."""
    up = ScriptedWsUpstream()
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", worker.url, "--worker-token",
                              "token123", log_path=str(tmp_path / "server.log"))
    try:
        body = lk.session_body("ws-session", {"frontend": up.url},
                               [("example.com", "frontend", None)])
        assert lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
        sock, status, _, rest = handshake(s.addrs["HTTP"])
        assert status.startswith("HTTP/1.1 101") and rest == b""
        # Client -> upstream: a fragmented text message, a ping, then "script".
        first = lk.ws_frame(1, b"hello ")
        sock.sendall(bytes([first[0] & 0x7F]) + first[1:] + lk.ws_frame(0, b"world")
                     + lk.ws_frame(9, b"cl-ping"))
        fin, op, payload = read_frame_fin(sock)
        assert (fin, op, payload) == (True, 10, b"cl-ping")  # the upstream's pong
        sock.sendall(lk.ws_frame(1, b"script"))
        assert read_frame_fin(sock) == (False, 1, b"part1-")
        assert read_frame_fin(sock) == (False, 0, b"part2-")
        assert read_frame_fin(sock) == (True, 0, b"part3")
        assert read_frame_fin(sock) == (True, 9, b"up-ping")
        assert read_frame_fin(sock) == (True, 2, up.big)
        sock.sendall(lk.ws_frame(10, b"up-ping") + lk.ws_frame(8, (1000).to_bytes(2, "big")
                                                               + b"done"))
        assert read_frame_fin(sock) == (True, 8, (4001).to_bytes(2, "big") + b"bye now")
        assert sock.recv(1) == b""  # then the end of the stream
        sock.close()
        assert up.frames == [(False, 1, b"hello "), (True, 0, b"world"), (True, 9, b"cl-ping"),
                             (True, 1, b"script"), (True, 10, b"up-ping"),
                             (True, 8, (1000).to_bytes(2, "big") + b"done")]
    finally:
        up.close()
        code, _ = lk.stop_gracefully(s)
    assert code == 0, open(s.log_path).read()
