"""WebSockets over HTTP/2 (RFC 8441 extended CONNECT; SPEC §5.4: "HTTP/2
extended CONNECT also accepted"), on the local server's cleartext listener
(prior knowledge) and its TLS listener (ALPN h2). The client here speaks raw
frames: HPACK literals out, and only the :status of the answer read back
(nghttp2 sends `:status: 200` as static-table index 8, byte 0x88)."""
import base64
import json
import socket
import ssl

import pytest

import lk

NAME = "h2ws-cow"
HOST = f"{NAME}.example.com"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST, SETTINGS, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 7, 8
END_STREAM, END_HEADERS, ACK = 1, 4, 1
ENABLE_CONNECT_PROTOCOL = 8


def hpack_int(n, prefix=7):
    top = (1 << prefix) - 1
    if n < top:
        return bytes([n])
    out, n = [top], n - top
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    return bytes(out + [n])


def hpack(headers):
    """Literal fields without indexing, new names, no Huffman (RFC 7541 §6.2.2)."""
    out = b""
    for name, value in headers:
        name, value = name.encode(), value.encode()
        out += b"\x00" + hpack_int(len(name)) + name + hpack_int(len(value)) + value
    return out


def connect_fields(path, authority, protocol="websocket"):
    """The header list of an RFC 8441 extended CONNECT for a WebSocket."""
    return [(":method", "CONNECT"), (":protocol", protocol), (":scheme", "http"),
            (":path", path), (":authority", authority), ("sec-websocket-version", "13")]


def assert_echo_stream(c, sid, path, authority, text):
    """Opens WebSocket stream sid of client c to an echo upstream: the 200
    (HPACK static entry 8, ":status 200") comes, then text comes back."""
    c.sock.sendall(frame(HEADERS, END_HEADERS, sid, hpack(connect_fields(path, authority))))
    assert c.until(HEADERS)[3][:1] == b"\x88"
    c.send(sid, lk.ws_frame(1, text))
    assert lk.ws_read_frame(c.reader(sid)) == (1, text)


def frame(ftype, flags, stream, payload=b""):
    return (len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big")
            + payload)


class H2:
    """A client connection: reads frames, keeps each stream's DATA."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.data = {}
        self.ended = set()
        self.server_settings = {}
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0) +
                     frame(WINDOW_UPDATE, 0, 0, (1 << 24).to_bytes(4, "big")))

    def next_frame(self):
        while True:
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + n:
                    ftype, flags = self.buf[3], self.buf[4]
                    sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                    payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
                    self._note(ftype, flags, sid, payload)
                    return ftype, flags, sid, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def _note(self, ftype, flags, sid, payload):
        if ftype == SETTINGS and not flags & ACK:
            for i in range(0, len(payload), 6):
                self.server_settings[int.from_bytes(payload[i:i + 2], "big")] = \
                    int.from_bytes(payload[i + 2:i + 6], "big")
            self.sock.sendall(frame(SETTINGS, ACK, 0))
        if ftype == DATA:
            self.data[sid] = self.data.get(sid, b"") + payload
            if payload:  # give the window back at once
                inc = len(payload).to_bytes(4, "big")
                self.sock.sendall(frame(WINDOW_UPDATE, 0, 0, inc) +
                                  frame(WINDOW_UPDATE, 0, sid, inc))
        if ftype in (DATA, HEADERS) and flags & END_STREAM:
            self.ended.add(sid)

    def until(self, want):
        """Frames until one of type want on any stream; returns it."""
        for _ in range(1000):
            f = self.next_frame()
            if f[0] == want:
                return f
            if f[0] == GOAWAY:
                raise AssertionError(f"GOAWAY {f[3]!r}")
        raise AssertionError("no such frame")

    def connect(self, sid, protocol="websocket", path="/ws", extra=()):
        fields = connect_fields(path, HOST, protocol) + list(extra)
        self.sock.sendall(frame(HEADERS, END_HEADERS, sid, hpack(fields)))
        while True:
            ftype, flags, got, payload = self.until(HEADERS)
            if got == sid:
                return payload

    def send(self, sid, data, end=False):
        """DATA frames of at most 16 KiB (the default SETTINGS_MAX_FRAME_SIZE)."""
        chunks = [data[i:i + 16384] for i in range(0, len(data), 16384)] or [b""]
        for i, chunk in enumerate(chunks):
            last = end and i == len(chunks) - 1
            self.sock.sendall(frame(DATA, END_STREAM if last else 0, sid, chunk))

    def reader(self, sid):
        conn = self

        class R:
            def recv(self, n):
                while not conn.data.get(sid):
                    if sid in conn.ended:
                        return b""
                    conn.next_frame()
                out, conn.data[sid] = conn.data[sid][:n], conn.data[sid][n:]
                return out
        return R()


@pytest.fixture
def ws_upstream():
    u = lk.WsEchoUpstream("127.0.0.2")
    yield u
    u.close()


@pytest.fixture
def server(linkup_bin, env, tmp_path, fake_worker, ws_upstream, upstream):
    env["LINKUP_DNS_ADDR"] = "off"
    certs = tmp_path / "certs"
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "token123", "--https", "127.0.0.1:0", "--certs-dir", str(certs),
                              log_path=str(tmp_path / "server.log"), wanted=("HTTP", "HTTPS"))
    s.ca = str(certs / "linkup_ca.cert.pem")
    body = lk.session_body(NAME, {"frontend": ws_upstream.url, "plain": upstream.url},
                           [("example.com", "frontend", [("^/plain", "plain")])])
    r = lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body)
    assert r.status == 200, r.body
    yield s
    code, _ = lk.stop_gracefully(s)
    assert code == 0, open(s.log_path).read()


def h2c(server):
    sock = socket.create_connection(server.addrs["HTTP"], timeout=10)
    return H2(sock)


def h2_tls(server):
    ctx = ssl.create_default_context(cafile=server.ca)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(server.addrs["HTTPS"], timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname=HOST)
    assert tls.selected_alpn_protocol() == "h2"
    return H2(tls)


@pytest.mark.parametrize("dial", [h2c, h2_tls], ids=["h2c", "h2-tls"])
def test_websocket_over_extended_connect(server, ws_upstream, dial):
    c = dial(server)
    try:
        block = c.connect(1, extra=[("sec-websocket-protocol", "chat"), ("origin", "http://x")])
        assert c.server_settings.get(ENABLE_CONNECT_PROTOCOL) == 1
        assert block[:1] == b"\x88"  # :status 200
        ws = c.reader(1)
        c.send(1, lk.ws_frame(1, b"hello over h2"))
        assert lk.ws_read_frame(ws) == (1, b"hello over h2")
        big = bytes(range(256)) * 300  # past one DATA frame and the initial windows
        c.send(1, lk.ws_frame(2, big))
        assert lk.ws_read_frame(ws) == (2, big)
        c.send(1, lk.ws_frame(8, b"\x03\xe8bye"))
        assert lk.ws_read_frame(ws) == (8, b"\x03\xe8bye")
        for _ in range(100):  # the upstream ended: so does the stream
            if 1 in c.ended:
                break
            c.next_frame()
        assert 1 in c.ended
    finally:
        c.sock.close()
    # The upstream saw an HTTP/1.1 upgrade with a key of the front's own,
    # the client's fields, and the routing headers.
    line, headers = ws_upstream.heads[-1]
    assert line == "GET /ws HTTP/1.1"
    h = {k.lower(): v for k, v in headers}
    assert h["upgrade"].lower() == "websocket"
    assert "upgrade" in h["connection"].lower()
    assert len(base64.b64decode(h["sec-websocket-key"], validate=True)) == 16
    assert h["sec-websocket-version"] == "13"
    assert h["sec-websocket-protocol"] == "chat"
    assert h["origin"] == "http://x"
    assert h["tracestate"] == f"linkup-session={NAME}"


def test_two_websockets_and_a_request_share_a_connection(server, ws_upstream):
    c = h2c(server)
    try:
        assert c.connect(1)[:1] == b"\x88"
        assert c.connect(3)[:1] == b"\x88"
        c.send(3, lk.ws_frame(1, b"three"))
        c.send(1, lk.ws_frame(1, b"one"))
        assert lk.ws_read_frame(c.reader(1)) == (1, b"one")
        assert lk.ws_read_frame(c.reader(3)) == (1, b"three")
        # An ordinary request on the same connection meanwhile.
        c.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 5, hpack([
            (":method", "GET"), (":scheme", "http"), (":path", "/plain/x"),
            (":authority", HOST)])))
        while 5 not in c.ended:
            c.next_frame()
        assert c.data[5] == b"under_fe"
        c.sock.sendall(frame(RST, 0, 1, (8).to_bytes(4, "big")))  # CANCEL
        c.send(3, lk.ws_frame(1, b"still here"))
        assert lk.ws_read_frame(c.reader(3)) == (1, b"still here")
    finally:
        c.sock.close()


def test_refusals_end_the_stream(server, ws_upstream, upstream):
    c = h2c(server)
    try:
        # Another protocol: 501 from the front, with its reason.
        block = c.connect(1, protocol="chat-v2")
        assert block[:1] != b"\x88"
        while 1 not in c.ended:
            c.next_frame()
        assert c.data[1] == b"extended CONNECT supports the websocket protocol only"
        # The upstream refuses the upgrade (403): passed on, not a 200 (SPEC §5.4 step 3).
        block = c.connect(3, path="/reject")
        assert block[:1] != b"\x88"
        while 3 not in c.ended:
            c.next_frame()
        assert c.data[3] == b"no websocket here"
        # An upstream that answers 200 without switching must not open it.
        block = c.connect(5, path="/plain/ws")
        assert block[:1] != b"\x88"
        while 5 not in c.ended:
            c.next_frame()
        assert c.data[5] == b"the upstream did not switch to the WebSocket protocol"
        # The connection serves on.
        assert c.connect(7)[:1] == b"\x88"
    finally:
        c.sock.close()


def test_worker_serves_websockets_over_h2c(linkup_bin, env, tmp_path, ws_upstream):
    """The worker shares the engine and its HTTP/2 front: an extended CONNECT
    takes the worker's WebSocket path (SPEC §4.7)."""
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"), token="tok")
    try:
        body = lk.session_body(NAME, {"frontend": ws_upstream.url},
                               [("example.com", "frontend", None)])
        r = lk.request(w.addrs["Worker"], "POST", "/linkup/v2/sessions/preview",
                       [("Authorization", "Bearer tok"), ("Content-Type", "application/json"),
                        ("x-linkup-version", "99.0.0")], json.dumps(body))
        assert r.status == 200, r.body
        name = r.json()["session_name"]
        c = H2(socket.create_connection(w.addrs["Worker"], timeout=10))
        try:
            assert_echo_stream(c, 1, "/w", f"{name}.example.com", b"via the worker")
        finally:
            c.sock.close()
        line, headers = ws_upstream.heads[-1]
        assert line == "GET /w HTTP/1.1"
        assert {k.lower(): v for k, v in headers}["tracestate"] == f"linkup-session={name}"
    finally:
        assert w.stop() == 0, open(w.log_path).read()[-3000:]
