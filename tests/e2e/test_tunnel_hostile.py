"""The built-in tunnel (DESIGN §8, issue 7) against hostile or broken peers
(issue 9: hostile input crashes nothing), both ways:

* a fake local server (raw frames, this file) upgrades at a real
  `linkup worker`'s GET /linkup/v2/tunnel with a valid secret and then
  misbehaves: the worker drops that tunnel (or that stream), answers its
  documented 502s, keeps its memory bounded and serves the next tunnel;
* a fake worker (HostileWorker, this file) that a real `linkup server`
  dials answers the upgrade oddly: the local server retries with backoff,
  reports why in GET /linkup/tunnel, and keeps serving direct requests.

Frames are crafted by hand (test_h2_websocket's helpers). Every socket and
wait is bounded."""
import json
import socket
import struct
import threading
import time

import pytest

import lk
from test_h2_websocket import PREFACE, frame, hpack

TOKEN = "token123"
DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED = 1, 1, 4, 8
NOT_CONNECTED = ("Failed to fetch from target service: tunnel for session '{}' "
                 "is not connected")
STATUS_200 = hpack([(":status", "200")])
OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# ---- helpers ---------------------------------------------------------------

def settings(*pairs):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def add_tunneled(worker, name):
    """A tunneled session on the worker (SPEC §4.3.7); its tunnel secret."""
    body = lk.session_body(name, {"web": "http://localhost:9"}, [("example.com", "web", None)])
    r = lk.request(worker.addrs["Worker"], "POST", "/linkup/v2/sessions/tunneled",
                   [("Authorization", "Bearer " + TOKEN), ("Content-Type", "application/json"),
                    ("x-linkup-version", "99.0.0")], json.dumps(body))
    assert r.status == 200, r.body
    return r.json()["tunnel_data"]["secret"]


def upgrade_request(session, secret, extra=()):
    lines = ["GET /linkup/v2/tunnel HTTP/1.1", "Host: worker", "Connection: Upgrade",
             "Upgrade: linkup-tunnel", "Authorization: Bearer " + secret,
             "x-linkup-session: " + session, *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Peer:
    """A fake local server on an upgraded tunnel connection: reads the
    worker's frames (the worker is the HTTP/2 client)."""

    def __init__(self, worker, session, secret):
        self.sock = socket.create_connection(worker.addrs["Worker"], timeout=10)
        self.sock.sendall(upgrade_request(session, secret))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            assert chunk, buf
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head

    def send(self, *frames):
        self.sock.sendall(b"".join(frames))

    def next_frame(self):
        while True:
            if self.buf.startswith(PREFACE):
                self.buf = self.buf[len(PREFACE):]
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + n:
                    f = (self.buf[3], self.buf[4],
                         int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF, self.buf[9:9 + n])
                    self.buf = self.buf[9 + n:]
                    if f[0] == SETTINGS and not f[1] & ACK:
                        self.send(frame(SETTINGS, ACK, 0))
                    return f
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("tunnel closed")
            self.buf += chunk

    def request_stream(self):
        """The ID of the next stream the worker opens with request bytes."""
        while True:
            ftype, _, sid, payload = self.next_frame()
            if ftype == DATA and payload:
                return sid

    def serve_one(self):
        sid = self.request_stream()
        self.send(frame(HEADERS, END_HEADERS, sid, STATUS_200), frame(DATA, 0, sid, OK_RESPONSE))

    def closed(self):
        """Reads until the worker closes the connection (EOF or reset);
        False on the 10 s socket timeout."""
        try:
            while self.sock.recv(65536):
                pass
        except socket.timeout:
            return False
        except OSError:
            pass
        return True

    def close(self):
        self.sock.close()


def get_in_background(worker, host, timeout=10):
    out = {}

    def run():
        try:
            out["r"] = lk.request(worker.addrs["Worker"], "GET", "/", [("Host", host)],
                                  timeout=timeout)
        except OSError as e:
            out["r"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, out


def assert_peer_still_serves(worker, p):
    """A request through the worker is answered by the fake local end p."""
    t, out = get_in_background(worker, "tiny.example.com")
    p.serve_one()
    t.join(15)
    assert (out["r"].status, out["r"].body) == (200, b"ok")


def served_by_a_good_peer(worker, session, secret):
    """A well-behaved tunnel for session answers a request: 200 "ok"."""
    p = Peer(worker, session, secret)
    try:
        p.send(settings())
        t, out = get_in_background(worker, f"{session}.example.com")
        p.serve_one()
        t.join(15)
        r = out.get("r")
        return r is not None and not isinstance(r, Exception) and (r.status, r.body) == (200, b"ok")
    finally:
        p.close()


@pytest.fixture
def worker(linkup_bin, env, tmp_path):
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"), token=TOKEN)
    yield w
    assert w.stop() == 0, open(w.log_path).read()[-3000:]


# ---- a hostile local server against the worker -----------------------------

def _window_update_overflow(p):
    p.send(settings(), frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)))


def _ping_flood_never_reading(p):
    p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    p.send(settings())
    p.sock.settimeout(5)
    try:
        for _ in range(100000):
            p.send(frame(PING, 0, 0, b"12345678"))
    except OSError:
        pass  # the worker closed it (or stopped reading): both fine


def _continuation_flood(p):
    p.send(settings())
    sid = p.request_stream()
    p.send(frame(HEADERS, 0, sid, STATUS_200))
    try:
        for _ in range(20000):
            p.send(frame(CONTINUATION, 0, sid, b""))
    except OSError:
        pass


def _huge_header_block(p):
    p.send(settings())
    sid = p.request_stream()
    block = STATUS_200 + hpack([("x-%d" % i, "v" * 4000) for i in range(300)])
    p.send(frame(HEADERS, 0, sid, block[:16384]))
    try:
        for i in range(16384, len(block), 16384):
            last = i + 16384 >= len(block)
            p.send(frame(CONTINUATION, END_HEADERS if last else 0, sid, block[i:i + 16384]))
    except OSError:
        pass


def _push_promise(p):
    p.send(settings())
    sid = p.request_stream()
    p.send(frame(PUSH, END_HEADERS, sid, struct.pack(">I", 2) + hpack([
        (":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")])))


CONNECTION_ERRORS = {
    "settings-bad-length": lambda p: p.send(frame(SETTINGS, 0, 0, b"\x00\x04\x00")),
    "settings-window-too-big": lambda p: p.send(settings((4, 0x80000000))),
    "settings-enable-push-from-server": lambda p: p.send(settings((2, 1))),
    "data-on-stream-0": lambda p: p.send(settings(), frame(DATA, 0, 0, b"xx")),
    "headers-on-stream-0": lambda p: p.send(settings(), frame(HEADERS, END_HEADERS, 0,
                                                              STATUS_200)),
    "window-update-overflow": _window_update_overflow,
    "window-update-zero": lambda p: p.send(settings(), frame(WINDOW_UPDATE, 0, 0, bytes(4))),
    "server-opens-a-stream": lambda p: p.send(settings(), frame(HEADERS, END_HEADERS | END_STREAM,
                                                                2, STATUS_200)),
    "frame-past-max-size": lambda p: p.send(settings(), (1 << 20).to_bytes(3, "big") +
                                            bytes([DATA, 0]) + (1).to_bytes(4, "big")),
    "garbage": lambda p: p.send(b"\x00\x00\x03\xff" + b"\xff" * 200),
    "goaway-storm": lambda p: p.send(*[frame(GOAWAY, 0, 0, bytes(8))] * 2000),
    "ping-flood-never-reading": _ping_flood_never_reading,
    "continuation-flood": _continuation_flood,
    "huge-header-block": _huge_header_block,
    "push-promise": _push_promise,
    "half-close": lambda p: (p.send(settings()), p.sock.shutdown(socket.SHUT_WR)),
}


@pytest.mark.parametrize("misbehave", list(CONNECTION_ERRORS.values()),
                         ids=list(CONNECTION_ERRORS))
def test_a_hostile_tunnel_is_dropped_and_the_worker_serves_on(worker, misbehave):
    """A local server that breaks HTTP/2 loses its tunnel (the worker
    closes the connection); the request in flight, if any, gets a 502, the
    next ones the "not connected" 502 (DESIGN §8), and a well-behaved tunnel
    for the same session is served right after."""
    secret = add_tunneled(worker, "tiny")
    p = Peer(worker, "tiny", secret)
    t, out = get_in_background(worker, "tiny.example.com")
    try:
        misbehave(p)
        assert p.closed()
    finally:
        p.close()
    t.join(15)
    r = out.get("r")
    assert r is not None and not isinstance(r, Exception), r
    assert r.status == 502 and r.text.startswith("Failed to fetch from target service: "), r.text
    r = lk.request(worker.addrs["Worker"], "GET", "/", [("Host", "tiny.example.com")])
    assert (r.status, r.text) == (502, NOT_CONNECTED.format("tiny"))
    assert worker.popen.poll() is None
    assert served_by_a_good_peer(worker, "tiny", secret)
    assert "tunnel for session 'tiny' disconnected: " in open(worker.log_path).read()


STREAM_ERRORS = {
    "status-500": [(":status", "500")],
    "status-100": [(":status", "100")],
    "status-not-a-number": [(":status", "2000")],
    "no-status": [("x-other", "1")],
}


@pytest.mark.parametrize("fields", list(STREAM_ERRORS.values()), ids=list(STREAM_ERRORS))
def test_a_stream_answered_other_than_200_is_a_502_and_the_tunnel_stays(worker, fields):
    """The stream envelope's answer is `:status 200` (docs/internals/tunnel.md
    §3): anything else aborts that stream (RST_STREAM), its request gets a
    502, and the tunnel serves the next request."""
    secret = add_tunneled(worker, "tiny")
    p = Peer(worker, "tiny", secret)
    try:
        p.send(settings())
        t, out = get_in_background(worker, "tiny.example.com")
        sid = p.request_stream()
        p.send(frame(HEADERS, END_HEADERS, sid, hpack(fields)), frame(DATA, 0, sid, OK_RESPONSE))
        while True:
            ftype, _, got, _ = p.next_frame()
            if ftype == RST and got == sid:
                break
        t.join(15)
        r = out["r"]
        assert r.status == 502 and r.text.startswith("Failed to fetch from target service: ")
        assert_peer_still_serves(worker, p)
    finally:
        p.close()


def test_a_complete_answer_then_rst_no_error_reaches_the_client(worker):
    """RFC 9113 §8.1: a server may answer early and then reset the request
    stream with NO_ERROR; the client still gets the whole answer."""
    secret = add_tunneled(worker, "tiny")
    p = Peer(worker, "tiny", secret)
    try:
        p.send(settings())
        got = {}

        def upload():
            c = socket.create_connection(worker.addrs["Worker"], timeout=10)
            c.sendall(b"POST /up HTTP/1.1\r\nHost: tiny.example.com\r\n"
                      b"Content-Length: 4194304\r\n\r\n")
            try:
                for _ in range(64):
                    c.sendall(b"x" * 65536)
            except OSError:
                pass
            got["data"] = lk.parse_responses(_read_until_eof(c))
            c.close()
        t = threading.Thread(target=upload)
        t.start()
        sid = p.request_stream()
        p.send(frame(HEADERS, END_HEADERS, sid, STATUS_200),
               frame(DATA, END_STREAM, sid, b"HTTP/1.1 413 Payload Too Large\r\n"
                     b"Content-Length: 7\r\nConnection: close\r\n\r\ntoo big"),
               frame(RST, 0, sid, bytes(4)))
        t.join(20)
        [r] = got["data"]
        assert (r.status, r.body) == (413, b"too big")
    finally:
        p.close()


def exchange_one(addr, data):
    """Sends data on a new connection; the first whole response."""
    with socket.create_connection(addr, timeout=10) as sock:
        sock.sendall(data)
        got = b""
        while not lk.parse_responses(got):
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
        return lk.parse_responses(got)[0]


def _read_until_eof(sock):
    sock.settimeout(10)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def test_a_tunnel_that_never_reads_holds_the_workers_memory_bounded(worker):
    """Uploads through a tunnel whose local end reads nothing: the worker
    buffers a bounded amount per stream (flow control, docs/internals/
    tunnel.md), not the bodies; it answers the clients when the tunnel
    goes, and serves the next tunnel."""
    secret = add_tunneled(worker, "tiny")
    p = Peer(worker, "tiny", secret)
    p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # Huge windows: only the worker's own bounds hold it back.
    p.send(settings((4, 0x7FFFFFFF)), frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFF0000)))
    before = lk.rss_kib(worker.popen.pid)
    clients = []

    def upload():
        c = socket.create_connection(worker.addrs["Worker"], timeout=5)
        clients.append(c)
        c.sendall(b"POST /up HTTP/1.1\r\nHost: tiny.example.com\r\n"
                  b"Content-Length: 33554432\r\n\r\n")
        try:
            for _ in range(32):
                c.sendall(b"u" * (1 << 20))
        except OSError:
            pass  # stalled: the send timeout of this client
    threads = [threading.Thread(target=upload) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    grown = lk.rss_kib(worker.popen.pid) - before
    # 24 x 32 MiB offered; what the worker holds is per stream (~1 MiB).
    limit = 96 * 1024 if not lk.is_sanitized(worker.popen.args[0]) else 400 * 1024
    assert grown < limit, grown
    p.close()
    for c in clients:
        c.close()
    assert worker.popen.poll() is None
    assert served_by_a_good_peer(worker, "tiny", secret)


UPGRADES = [
    ("no-upgrade-token", lambda s: upgrade_request("tiny", s).replace(
        b"Upgrade: linkup-tunnel\r\n", b""), 400, "Expected Upgrade: linkup-tunnel"),
    ("other-upgrade-token", lambda s: upgrade_request("tiny", s).replace(
        b"Upgrade: linkup-tunnel", b"Upgrade: websocket"), 400, "Expected Upgrade: linkup-tunnel"),
    # RFC 9110 §7.8: the Upgrade field of an HTTP/1.0 request is ignored.
    ("http-1.0", lambda s: upgrade_request("tiny", s).replace(b"HTTP/1.1", b"HTTP/1.0"),
     400, "Expected Upgrade: linkup-tunnel"),
    ("no-session", lambda s: upgrade_request("tiny", s).replace(b"x-linkup-session: tiny\r\n", b""),
     400, "Missing x-linkup-session header"),
    ("a-body", lambda s: upgrade_request("tiny", s, ["Content-Length: 3"]) + b"abc",
     400, "A tunnel request has no body"),
    ("no-authorization", lambda s: upgrade_request("tiny", s).replace(
        b"Authorization: Bearer " + s.encode() + b"\r\n", b""), 401, "Invalid tunnel secret"),
    ("basic-scheme", lambda s: upgrade_request("tiny", s).replace(b"Bearer", b"Basic"),
     401, "Invalid tunnel secret"),
    ("wrong-secret", lambda s: upgrade_request("tiny", "A" * 43 + "="),
     401, "Invalid tunnel secret"),
    ("unknown-session", lambda s: upgrade_request("nobody", s), 401, "Invalid tunnel secret"),
    ("post", lambda s: upgrade_request("tiny", s).replace(b"GET ", b"POST ", 1), 405, ""),
]


def test_invalid_upgrades_get_their_statuses_and_leave_the_live_tunnel(worker):
    """docs/internals/tunnel.md §1: each refusal with its status and text,
    repeated; none replaces the live tunnel, the secret is never logged."""
    secret = add_tunneled(worker, "tiny")
    p = Peer(worker, "tiny", secret)
    try:
        p.send(settings())
        for _round in range(3):
            for name, build, status, text in UPGRADES:
                r = exchange_one(worker.addrs["Worker"], build(secret))
                assert (r.status, r.body.decode("latin-1")) == (status, text), name
        assert_peer_still_serves(worker, p)
    finally:
        p.close()
    log = open(worker.log_path).read()
    assert "tunnel for session 'nobody' rejected from 127.0.0.1:" in log
    assert secret not in log and "A" * 43 not in log


def test_upgrade_with_content_length_0_is_accepted(worker):
    """Content-Length: 0 is no body (RFC 9110 §8.6): the upgrade is taken."""
    secret = add_tunneled(worker, "tiny")
    with socket.create_connection(worker.addrs["Worker"], timeout=10) as sock:
        sock.sendall(upgrade_request("tiny", secret, ["Content-Length: 0"]))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 "), head


def test_upgrade_pipelined_with_the_peers_first_frames(worker):
    """Frames the local end sends right behind its upgrade request (before
    the 101) are the tunnel's, not lost: the worker acknowledges them."""
    secret = add_tunneled(worker, "tiny")
    sock = socket.create_connection(worker.addrs["Worker"], timeout=10)
    try:
        sock.sendall(upgrade_request("tiny", secret) + settings() +
                     frame(PING, 0, 0, b"abcdefgh"))
        data = b""
        while b"abcdefgh" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 101 ")
        assert frame(PING, ACK, 0, b"abcdefgh") in data
    finally:
        sock.close()


# ---- a hostile worker against the local server -----------------------------

UPGRADED = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: linkup-tunnel\r\n\r\n"
STREAM_FIELDS = [(":method", "POST"), (":scheme", "http"), (":authority", "linkup-tunnel")]


class HostileWorker:
    """Answers the tunneled upsert (SPEC §4.3.7) with built-in tunnel data
    pointing back here, and every GET /linkup/v2/tunnel with behave(sock);
    counts the upgrade attempts."""

    def __init__(self, behave, host="127.0.0.3"):
        self.behave = behave
        self.attempts = 0
        self.frames = []  # frames read back by behaviours that read
        self.stop = threading.Event()
        self.lsock = socket.socket()
        self.lsock.bind((host, 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.5)
        self.port = self.lsock.getsockname()[1]
        self.url = "http://%s:%d" % (host, self.port)
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        c.settimeout(10)
        try:
            f = c.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                headers = {}
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                method, path, _ = line.decode().split(" ", 2)
                if method == "POST":
                    doc = json.loads(f.read(int(headers.get("content-length", 0))) or b"{}")
                    name = doc.get("desired_name") or "fake"
                    out = {"session_name": name, "tunnel_data": {
                        "account_id": "", "name": "linkup-tunnel-" + name,
                        "url": "http://linkup-tunnel-%s.localhost:%d" % (name, self.port),
                        "id": "x", "secret": "s3cret", "last_started": 1,
                        "provider": "linkup"}}
                    body = json.dumps(out).encode()
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                assert path == "/linkup/v2/tunnel" and headers["x-linkup-session"] == "tiny"
                self.attempts += 1
                self.behave(self, c)
                return
        except (OSError, ValueError, AssertionError):
            pass
        finally:
            c.close()

    def read_frames(self, c, until):
        """Reads the local server's frames into self.frames until one
        matches until(frame) or the connection ends (10 s at most)."""
        buf = b""
        c.settimeout(10)
        try:
            while True:
                while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                    n = int.from_bytes(buf[:3], "big")
                    f = (buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF,
                         buf[9:9 + n])
                    buf = buf[9 + n:]
                    self.frames.append(f)
                    if until(f):
                        return
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
        except OSError:
            return

    def close(self):
        self.stop.set()
        self.lsock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def _linger(hw, c):
    hw.stop.wait(1)


def _ping_flood(hw, c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sendall(UPGRADED + PREFACE + settings())
    c.settimeout(5)
    try:
        for _ in range(100000):
            c.sendall(frame(PING, 0, 0, b"12345678"))
    except OSError:
        pass


def _huge_header_block(hw, c):
    c.sendall(UPGRADED + PREFACE + settings())
    block = hpack(STREAM_FIELDS + [(":path", "/linkup/stream")] +
                  [("x-%d" % i, "v" * 4000) for i in range(300)])
    try:
        c.sendall(frame(HEADERS, 0, 1, block[:16384]))
        for i in range(16384, len(block), 16384):
            last = i + 16384 >= len(block)
            c.sendall(frame(CONTINUATION, END_HEADERS if last else 0, 1, block[i:i + 16384]))
    except OSError:
        pass
    _linger(hw, c)


HOSTILE_WORKERS = {
    "500": (lambda hw, c: c.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"),
            "worker answered 500 to the tunnel upgrade"),
    "200": (lambda hw, c: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            "worker answered 200 to the tunnel upgrade"),
    "101-without-upgrade": (lambda hw, c: (c.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
                                                     b"Connection: Upgrade\r\n\r\n"),
                                           _linger(hw, c)),
                            "worker answered 101 to the tunnel upgrade"),
    "101-websocket": (lambda hw, c: (c.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
                                               b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
                                     _linger(hw, c)),
                      "worker answered 101 to the tunnel upgrade"),
    "not-http": (lambda hw, c: c.sendall(b"SSH-2.0-OpenSSH\r\n\r\n"),
                 "invalid answer to the tunnel upgrade"),
    "huge-head": (lambda hw, c: (c.sendall(b"HTTP/1.1 101 Switching\r\nX-A: " + b"a" * 100000 +
                                           b"\r\n\r\n"), _linger(hw, c)),
                  "invalid answer to the tunnel upgrade"),
    "closes-at-once": (lambda hw, c: None, "connection closed during the tunnel upgrade"),
    "garbage-after-101": (lambda hw, c: (c.sendall(UPGRADED + b"garbage\r\n\r\n" * 10),
                                         _linger(hw, c)),
                          "http/2 protocol error"),
    "no-preface": (lambda hw, c: (c.sendall(UPGRADED + settings()), _linger(hw, c)),
                   "http/2 protocol error"),
    "goaway-at-once": (lambda hw, c: (c.sendall(UPGRADED + PREFACE + settings() +
                                                frame(GOAWAY, 0, 0, bytes(8))), _linger(hw, c)),
                       "the worker is going away"),
    "ping-flood": (_ping_flood, "http/2 protocol error"),
    "huge-header-block": (_huge_header_block, "http/2 protocol error"),
    # Our nghttp2 ends the connection with its own GOAWAY: said as such, not
    # as a GOAWAY of the worker's.
    "settings-window-too-big": (lambda hw, c: (c.sendall(UPGRADED + PREFACE +
                                                         settings((4, 0x80000000))),
                                               _linger(hw, c)),
                                "http/2 protocol error: sent GOAWAY FLOW_CONTROL_ERROR"),
}


@pytest.fixture
def local_server(linkup_bin, env, tmp_path):
    started = []

    def make(worker_url):
        s = lk.spawn_local_server(linkup_bin, env, "--https", "off", "--dns", "off",
                                  "--worker-url", worker_url, "--worker-token", TOKEN,
                                  log_path=str(tmp_path / "server.log"))
        started.append(s)
        body = lk.session_body("tiny", {"web": "http://localhost:9"},
                               [("example.com", "web", None)])
        r = lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body)
        assert r.status == 200, r.body
        return s
    yield make
    for s in started:
        code, _ = lk.stop_gracefully(s, timeout=20)
        assert code == 0, open(s.log_path).read()[-3000:]


def tunnel_state(server):
    r = lk.request(server.addrs["HTTP"], "GET", "/linkup/tunnel")
    assert r.status == 200, r.body
    return r.json()


@pytest.mark.parametrize("behave,error", list(HOSTILE_WORKERS.values()),
                         ids=list(HOSTILE_WORKERS))
def test_the_local_server_retries_a_hostile_worker_and_says_why(local_server, behave, error):
    """The local server tries again with backoff (100 ms doubling to 2 s,
    docs/internals/tunnel.md §4: a handful of attempts in 3 s, not hundreds),
    GET /linkup/tunnel says why the last one failed, and direct requests
    are served meanwhile."""
    hw = HostileWorker(behave)
    try:
        server = local_server(hw.url)
        # Between attempts (an attempt that got a 101 is connected a moment).
        deadline = time.time() + 15
        while True:
            state = tunnel_state(server)
            if hw.attempts >= 3 and not state["connected"] and error in (state["last_error"] or ""):
                break
            assert time.time() < deadline, (hw.attempts, state)
            time.sleep(0.05)
        assert lk.request(server.addrs["HTTP"], "GET", "/linkup/check").status == 200
        time.sleep(3)
        assert hw.attempts < 20
        assert server.popen.poll() is None
    finally:
        hw.close()


def test_streams_with_another_path_are_refused_and_the_tunnel_stays(local_server):
    """docs/internals/tunnel.md §3: a worker stream whose :path is not
    /linkup/stream is refused (RST_STREAM REFUSED_STREAM); the tunnel stays
    connected."""
    refused = []

    def behave(hw, c):
        c.sendall(UPGRADED + PREFACE + settings())
        for sid in range(1, 200, 2):
            c.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                            hpack(STREAM_FIELDS + [(":path", "/evil")])))
        hw.read_frames(c, lambda f: f[0] == RST and f[2] == 199)
        refused.extend((f[2], f[3]) for f in hw.frames if f[0] == RST)
        hw.stop.wait(5)

    hw = HostileWorker(behave)
    try:
        server = local_server(hw.url)
        deadline = time.time() + 10
        while len(refused) < 100 and time.time() < deadline:
            time.sleep(0.05)
        assert refused == [(sid, struct.pack(">I", 7)) for sid in range(1, 200, 2)]
        assert tunnel_state(server)["connected"] is True
        assert hw.attempts == 1
    finally:
        hw.close()
