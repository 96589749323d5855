"""Black-box tests of the built-in tunnel (DESIGN §8, issue 7): a real
`linkup worker`, a real `linkup server` (--https off --dns off) whose tunnel
client dials the worker, and real upstreams, all on loopback.

The session `web` service points at http://localhost:<port>, so the worker
re-points it at the tunnel URL and everything for it crosses the tunnel:
client -> worker -> tunnel (HTTP/2 stream) -> local server -> local upstream.

Killing the tunnel connection mid-stream is done from outside the programs:
the local server reaches the worker through a TCP relay of the test
(lk.TcpRelay) whose connections the test resets. No hidden debug hook exists in
the binaries.
"""
import concurrent.futures
import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

import lk
from lk import TcpRelay

TOKEN = "token123"
MIB = 1024 * 1024
RSS_LIMIT_KIB = 96 * 1024
NOT_CONNECTED = ("Failed to fetch from target service: tunnel for session '{}' "
                 "is not connected")


def is_asan(bin_):
    with open(bin_, "rb") as f:
        return b"AddressSanitizer" in f.read()


def pattern_block():
    return bytes(range(256)) * (MIB // 256)


# ---- upstreams -------------------------------------------------------------

class BigBacklogServer(http.server.ThreadingHTTPServer):
    """Room for 200 concurrent connections; cut connections are expected."""
    request_queue_size = 256
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


class LocalWeb:
    """The developer's local web service (threaded, HTTP/1.1) on 127.0.0.1:
    GET /hello -> "local web <path> xfh=<x-forwarded-host> dest=<linkup-destination>";
    GET /big/N -> N MiB of pattern_block(); POST /upload -> "<len> <sha256>";
    GET /slow -> 10 MiB, the first 256 KiB at once, the rest after self.release;
    GET /stall -> nothing until self.release, then 200 "late"."""

    def __init__(self):
        self.release = threading.Event()
        self.n_requests = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.n_requests += 1
                if self.path.startswith("/big/"):
                    n = int(self.path.split("/")[2])
                    self._head(n * MIB)
                    block = pattern_block()
                    for _ in range(n):
                        self.wfile.write(block)
                elif self.path == "/slow":
                    self._head(10 * MIB)
                    self.wfile.write(b"a" * (256 * 1024))
                    self.wfile.flush()
                    outer.release.wait(20)
                    self.wfile.write(b"b" * (10 * MIB - 256 * 1024))
                elif self.path == "/stall":
                    outer.release.wait(20)
                    self._text("late")
                else:
                    self._text("local web %s xfh=%s dest=%s" % (
                        self.path, self.headers.get("x-forwarded-host"),
                        self.headers.get("linkup-destination")))

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                h = hashlib.sha256()
                left = n
                while left:
                    chunk = self.rfile.read(min(left, MIB))
                    if not chunk:
                        break
                    h.update(chunk)
                    left -= len(chunk)
                self._text("%d %s" % (n - left, h.hexdigest()))

            def _head(self, length):
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def _text(self, text):
                data = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = BigBacklogServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class RemoteService:
    """A "remote" service (127.0.0.2): GET /call calls the worker back with
    `Host: example.com` and `tracestate: linkup-session=<session>` (SPEC §0.2)
    and answers "remote got <status> <body>"."""

    def __init__(self):
        self.worker_addr = None
        self.session = None
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                r = lk.request(outer.worker_addr, "GET", "/hello",
                               [("Host", "example.com"),
                                ("tracestate", "linkup-session=" + outer.session)])
                data = ("remote got %d %s" % (r.status, r.text)).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), H)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.2:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---- the stack -------------------------------------------------------------

def tunnel_state(server, session=None):
    path = "/linkup/tunnel" + ("?session=" + session if session else "")
    r = lk.request(server.addrs["HTTP"], "GET", path)
    return r.status, r.json()


def wait_connected(server, timeout=5.0, since=None, session=None):
    """Waits until GET /linkup/tunnel (for session, or the latest) says
    connected (and, with since, until relay `since[0]` accepted more than
    since[1] connections)."""
    deadline = time.time() + timeout
    while True:
        status, state = tunnel_state(server, session)
        fresh = since is None or since[0].accepted > since[1]
        if status == 200 and state["connected"] and fresh:
            return state
        if time.time() > deadline:
            raise AssertionError("tunnel not connected after %.1f s: %s" % (timeout, state))
        time.sleep(0.05)


class Stack:
    """worker + local server (+ optional relay) + upstreams + one session."""

    def __init__(self, bin_, env, tmp_path, name="tiny", store="memory", relay=False,
                 worker_extra=()):
        self.name = name
        self.web = LocalWeb()
        self.ws = lk.WsEchoUpstream("127.0.0.1")
        self.remote = RemoteService()
        self.worker = lk.spawn_worker_logged(bin_, env, str(tmp_path / "worker.log"), store=store,
                                             token=TOKEN, extra=worker_extra)
        self.waddr = self.worker.addrs["Worker"]
        self.relay = TcpRelay(self.waddr) if relay else None
        wurl = "http://127.0.0.1:%d" % (self.relay.port if relay else self.waddr[1])
        self.server = lk.spawn_local_server(bin_, env, "--https", "off", "--dns", "off",
                                            "--worker-url", wurl, "--worker-token", TOKEN,
                                            log_path=str(tmp_path / "server.log"))
        self.saddr = self.server.addrs["HTTP"]
        self.remote.worker_addr = self.waddr
        self.remote.session = name
        body = lk.session_body(name, {"web": "http://localhost:%d" % self.web.port,
                                      "ws": "http://localhost:%d" % self.ws.addr[1],
                                      "remote": self.remote.url},
                               [("example.com", "web", [("^/ws.*", "ws")]),
                                ("api.example.com", "remote", None)])
        r = lk.post_json(self.saddr, "/linkup/sessions/tunneled", body)
        assert r.status == 200, r.body
        self.tunnel_data = r.json()["tunnel_data"]
        self.host = "%s.example.com" % name

    def get(self, path, host=None, addr=None, timeout=15):
        return lk.request(addr or self.waddr, "GET", path, [("Host", host or self.host)],
                          timeout=timeout)

    def close(self):
        for p in (self.server, self.worker):
            if p.popen.poll() is None:
                p.popen.terminate()
                try:
                    p.popen.wait(15)
                except subprocess.TimeoutExpired:
                    p.popen.kill()
                    p.popen.wait(5)
        if self.relay:
            self.relay.close()
        self.web.close()
        self.ws.close()
        self.remote.close()


    def assert_clean_exit(self):
        """Both programs exited 0 (a sanitizer report makes them exit non-zero)."""
        for p in (self.server, self.worker):
            assert p.popen.returncode == 0, open(p.log_path).read()[-3000:]


def open_get(s, path, timeout=15):
    """GET path through the worker of Stack s; returns the connection and
    the response (status 200) with its body unread."""
    c = http.client.HTTPConnection(*s.waddr, timeout=timeout)
    c.putrequest("GET", path, skip_host=True)
    c.putheader("Host", s.host)
    c.endheaders()
    r = c.getresponse()
    assert r.status == 200
    return c, r


def begin_slow_download(s):
    """GET /slow through the worker of Stack s, read up to where the local
    web service holds the rest (256 KiB). Returns the connection, the
    response and the bytes read."""
    c, r = open_get(s, "/slow")
    head = r.read(256 * 1024)
    assert len(head) == 256 * 1024
    return c, r, head


def stall_in_background(s, seen, timeout):
    """GET /stall through the worker of Stack s from a thread, and wait (5 s
    at most) until the local web service has it: more than `seen` requests.
    Returns the thread and a dict whose "r" is the response once it came."""
    out = {}

    def fetch():
        out["r"] = s.get("/stall", timeout=timeout)

    t = threading.Thread(target=fetch)
    t.start()
    deadline = time.time() + 5
    while s.web.n_requests <= seen and time.time() < deadline:
        time.sleep(0.02)
    return t, out


@pytest.fixture
def stack(linkup_bin, env, tmp_path):
    s = Stack(linkup_bin, env, tmp_path)
    yield s
    s.close()
    s.assert_clean_exit()


# ---- tests -----------------------------------------------------------------

def test_tunnel_state_and_request_through_the_tunnel(stack):
    assert stack.tunnel_data["provider"] == "linkup"
    assert stack.tunnel_data["account_id"] == ""
    state = wait_connected(stack.server)
    assert state == {"provider": "linkup", "session_name": "tiny",
                     "url": stack.tunnel_data["url"], "connected": True, "last_error": None}
    r = stack.get("/hello?x=1")
    assert (r.status, r.text) == (200, "local web /hello?x=1 xfh=tiny.example.com dest=web")
    # The worker's CORS defaults are added on the way back (DESIGN §2.7).
    assert r.header("access-control-allow-origin") == "*"
    # DESIGN §7: the local server says where it sent the request; the
    # worker keeps that more precise answer.
    assert r.all("linkup-routed-to") == ["web; session=tiny; via=local-server"]


def test_heads_at_the_workers_limits_pass_the_local_server_too(stack, monkeypatch):
    """DESIGN §9: a request the worker accepts (100 fields, a 16 KiB line) is not refused
    by the local server because of the fields the worker added on its way (SPEC §3.7)."""
    import http.client
    monkeypatch.setattr(http.client, "_MAXHEADERS", 1000)  # the in-process local web service
    wait_connected(stack.server)
    host = [("Host", stack.host)]
    fields = host + [(f"x-f{i}", "v") for i in range(99)]
    r = lk.request(stack.waddr, "GET", "/hello", fields, timeout=15)
    assert r.status == 200, r.text
    long_state = host + [("tracestate", "k=" + "v" * (16384 - len("tracestate: k=")))]
    r = lk.request(stack.waddr, "GET", "/hello", long_state, timeout=15)
    assert r.status == 200, r.text
    # Past the worker's own limit it is the worker's 431.
    r = lk.request(stack.waddr, "GET", "/hello", fields + [("x-f99", "v")], timeout=15)
    assert r.status == 431


def test_local_servers_own_error_through_the_tunnel_says_via_tunnel(stack):
    """DESIGN §7: through a tunnel the worker keeps the local server's
    routed-to. The local server's own answers (here its 502, the service being
    down) carry none, so the worker's `via=tunnel` is what the client sees:
    the worker did route the request to that service through the tunnel, as
    its CORS defaults on that answer say too (SPEC §3.9, DESIGN §2.7). The
    worker's own 502 for a tunnel that is not connected carries none."""
    wait_connected(stack.server)
    body = lk.session_body(stack.name, {"web": "http://localhost:9", "ws": "http://localhost:9",
                                        "remote": stack.remote.url},
                           [("example.com", "web", None)])
    assert lk.post_json(stack.saddr, "/linkup/sessions/tunneled", body).status == 200
    wait_connected(stack.server)
    r = stack.get("/down")
    assert r.status == 502
    assert r.text.startswith("Failed to proxy request - are all your servers started?")
    assert r.all("linkup-routed-to") == ["web; session=tiny; via=tunnel"]
    assert r.header("access-control-allow-origin") == "*"
    # On the local server itself the same answer carries none.
    r = lk.request(stack.saddr, "GET", "/down", [("Host", stack.host)])
    assert r.status == 502 and r.header("linkup-routed-to") is None


def test_tunnel_url_check_and_admin_closed_through_the_tunnel(stack):
    wait_connected(stack.server)
    tunnel_host = stack.tunnel_data["url"][len("http://"):]
    r = stack.get("/linkup/check", host=tunnel_host)
    assert (r.status, r.text) == (200, "OK")
    # Requests through the tunnel are not loopback: the admin API is closed.
    for path in ("/linkup/tunnel", "/linkup/sessions"):
        r = stack.get(path, host=tunnel_host)
        assert r.status == 403, path
    # Loopback admin requests still work.
    assert lk.request(stack.saddr, "GET", "/linkup/sessions").status == 200


def test_remote_service_calls_back_through_the_worker(stack):
    wait_connected(stack.server)
    r = stack.get("/call", host="tiny.api.example.com")
    assert (r.status, r.text) == (
        200, "remote got 200 local web /hello xfh=tiny.example.com dest=web")


def test_websocket_echo_through_the_tunnel(stack):
    wait_connected(stack.server)
    s = socket.create_connection(stack.waddr, timeout=10)
    try:
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        s.sendall(("GET /ws/chat HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % (stack.host, key)).encode())
        line, headers, rest = lk.read_http_head(s)
        assert line.startswith("HTTP/1.1 101"), line
        assert dict((k.lower(), v) for k, v in headers)["sec-websocket-accept"] == \
            lk.ws_accept(key)
        assert rest == b""
        for payload in (b"hello", os.urandom(70000), b"x" * 300000):
            s.sendall(lk.ws_frame(2, payload))
            op, got = lk.ws_read_frame(s)
            assert (op, got) == (2, payload)
        # The worker re-sends a close with code 1000 (SPEC §4.7), whatever
        # code the client gave; the local server's echo returns it.
        s.sendall(lk.ws_frame(8, b"\x0f\xa1bye"))
        assert lk.ws_read_frame(s) == (8, b"\x03\xe8bye")
    finally:
        s.close()


def test_local_server_sigterm_with_a_websocket_through_the_tunnel(stack):
    """A WebSocket open through the tunnel when the local server stops: it
    keeps working through the drain (the local server relays WebSocket bytes
    without frames, so it cannot close one cleanly), is cut at the drain
    deadline (5 s), and its stream with it (RST_STREAM CANCEL, RFC 8441 §5),
    so the worker, which lives on, tells its client 1011 and the local
    server exits 0 at once instead of waiting for the worker's side."""
    wait_connected(stack.server)
    s = socket.create_connection(stack.waddr, timeout=15)
    try:
        s.sendall(("GET /ws/chat HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % stack.host).encode())
        line, _, _ = lk.read_http_head(s)
        assert line.startswith("HTTP/1.1 101"), line
        t0 = time.time()
        stack.server.popen.terminate()
        time.sleep(0.3)
        s.sendall(lk.ws_frame(2, b"still here"))
        assert lk.ws_read_frame(s) == (2, b"still here")
        op, payload = lk.ws_read_frame(s)
        assert (op, payload[:2]) == (8, b"\x03\xf3")  # 1011
        assert stack.server.popen.wait(15) == 0
        assert time.time() - t0 < 6.5  # the 5 s drain deadline, not 2 s more
    finally:
        s.close()
    assert stack.worker.popen.poll() is None


class RssSampler:
    def __init__(self, pids):
        self.pids = pids
        self.peak = {p: 0 for p in pids}
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_ev.is_set():
            for p in self.pids:
                self.peak[p] = max(self.peak[p], lk.rss_kib(p))
            time.sleep(0.02)

    def stop(self):
        self.stop_ev.set()
        self.t.join()
        return self.peak


def test_100_mib_each_way_byte_exact_with_bounded_memory(stack, linkup_bin):
    wait_connected(stack.server)
    want = hashlib.sha256()
    block = pattern_block()
    for _ in range(100):
        want.update(block)
    sampler = RssSampler([stack.worker.popen.pid, stack.server.popen.pid])
    try:
        c, r = open_get(stack, "/big/100", timeout=60)
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = r.read(MIB)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        c.close()
        assert (n, h.hexdigest()) == (100 * MIB, want.hexdigest())

        c = http.client.HTTPConnection(*stack.waddr, timeout=60)
        c.putrequest("POST", "/upload", skip_host=True)
        c.putheader("Host", stack.host)
        c.putheader("Content-Length", str(100 * MIB))
        c.endheaders()
        for _ in range(100):
            c.send(block)
        r = c.getresponse()
        assert (r.status, r.read().decode()) == (200, "%d %s" % (100 * MIB, want.hexdigest()))
        c.close()
    finally:
        peak = sampler.stop()
    # ASan's quarantine keeps freed buffers, so RSS says nothing there; the
    # byte-exact checks above still ran.
    if not is_asan(linkup_bin):
        for pid, kib in peak.items():
            assert 0 < kib < RSS_LIMIT_KIB, "pid %d RSS peaked at %d KiB" % (pid, kib)


def test_200_concurrent_requests(stack):
    wait_connected(stack.server)

    def one(i):
        r = stack.get("/hello?i=%d" % i, timeout=30)
        return r.status, r.text

    with concurrent.futures.ThreadPoolExecutor(200) as pool:
        results = list(pool.map(one, range(200)))
    for i, (status, text) in enumerate(results):
        assert (status, text) == (200, "local web /hello?i=%d xfh=tiny.example.com dest=web" % i)


def test_clients_cut_near_the_end_of_downloads(stack):
    """Clients that reset their connection as the last bytes of a response
    arrive: the stream's close and the end of the local server's proxying
    then meet in one loop turn (a closed connection must stay closed: this
    was a use after free). Both programs keep serving and exit cleanly."""
    wait_connected(stack.server)
    head = ("GET /big/1 HTTP/1.1\r\nHost: %s\r\n\r\n" % stack.host).encode()

    def one(i):
        want = MIB - (i * 7919) % (64 * 1024)  # stop up to 64 KiB before the end
        with socket.create_connection(stack.waddr, timeout=20) as s:
            s.sendall(head)
            got = 0
            while got < want:
                b = s.recv(min(65536, want - got))
                if not b:
                    break
                got += len(b)
            # RST instead of FIN: the worker sees an error, not an EOF.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        return got

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        for _ in range(4):
            assert all(n > 0 for n in pool.map(one, range(64)))
    r = stack.get("/hello?after=1")
    assert (r.status, r.text) == (200, "local web /hello?after=1 xfh=tiny.example.com dest=web")
    assert stack.server.popen.poll() is None and stack.worker.popen.poll() is None
    # No stream connection of the local server outlives its reset stream
    # (with the rest of a response queued for it): a graceful stop finds
    # none to wait for.
    time.sleep(0.5)
    assert lk.stop_gracefully(stack.server)[0] == 0
    assert "drain deadline reached" not in open(stack.server.log_path).read()


def test_concurrent_big_downloads_byte_exact(stack):
    """24 downloads of 4 MiB at once through one tunnel, with small requests
    among them: the worker splices each body off the tunnel socket to its
    client (docs/performance.md, finding 31) while the frames of all the
    streams interleave; every body has the origin's bytes in order."""
    wait_connected(stack.server)
    want = hashlib.sha256()
    for _ in range(4):
        want.update(pattern_block())

    def big(i):
        c = http.client.HTTPConnection(*stack.waddr, timeout=60)
        c.putrequest("GET", "/big/4", skip_host=True)
        c.putheader("Host", stack.host)
        c.endheaders()
        r = c.getresponse()
        h, n = hashlib.sha256(), 0
        while True:
            chunk = r.read(256 * 1024 + i)  # reads of different sizes
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        c.close()
        return r.status, n, h.hexdigest()

    def small(i):
        r = stack.get("/hello?i=%d" % i, timeout=30)
        return r.status, r.text

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        bigs = [pool.submit(big, i) for i in range(24)]
        smalls = [pool.submit(small, i) for i in range(48)]
        for f in bigs:
            assert f.result() == (200, 4 * MIB, want.hexdigest())
        for i, f in enumerate(smalls):
            assert f.result() == (200, "local web /hello?i=%d xfh=tiny.example.com dest=web" % i)


def test_client_that_stops_reading_a_tunnelled_body_is_cut_at_the_send_timeout(
        linkup_bin, env, tmp_path):
    """A client that takes nothing of a long body coming through the tunnel
    (spliced off the tunnel socket by the worker) loses its connection at
    LINKUP_SEND_TIMEOUT_MS, and the tunnel serves the next request."""
    s = Stack(linkup_bin, dict(env, LINKUP_SEND_TIMEOUT_MS="700"), tmp_path)
    try:
        wait_connected(s.server)
        c = socket.create_connection(s.waddr, timeout=10)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.sendall(("GET /big/256 HTTP/1.1\r\nHost: %s\r\n\r\n" % s.host).encode())
        line, _, rest = lk.read_http_head(c)
        assert line.startswith("HTTP/1.1 200"), line
        got = len(rest)
        while got < MIB:
            b = c.recv(MIB - got)
            assert b, "closed after %d bytes" % got
            got += len(b)
        time.sleep(2.5)  # well past the send timeout
        try:
            while True:
                b = c.recv(1 << 20)
                if not b:
                    break
                got += len(b)
        except ConnectionResetError:
            pass
        assert got < 256 * MIB
        c.close()
        deadline = time.monotonic() + 5
        while "(send timeout)" not in open(s.worker.log_path).read():
            assert time.monotonic() < deadline, open(s.worker.log_path).read()[-2000:]
            time.sleep(0.05)
        r = s.get("/hello?after=1")
        assert (r.status, r.text) == (200, "local web /hello?after=1 xfh=tiny.example.com dest=web")
    finally:
        s.close()
    s.assert_clean_exit()


def test_no_tunnel_is_502_and_wrong_secret_is_401(stack):
    wait_connected(stack.server)
    secret = stack.tunnel_data["secret"]
    # A wrong secret: 401, logged with the session and peer, never the secret.
    wrong = "A" * 43 + "="
    r = lk.request(stack.waddr, "GET", "/linkup/v2/tunnel",
                   [("Upgrade", "linkup-tunnel"), ("Connection", "Upgrade"),
                    ("Authorization", "Bearer " + wrong), ("x-linkup-session", "tiny")])
    assert (r.status, r.text) == (401, "Invalid tunnel secret")
    r = lk.request(stack.waddr, "POST", "/linkup/v2/tunnel", [])
    assert (r.status, r.header("allow")) == (405, "GET")
    # The rejected attempt did not replace the live tunnel.
    assert stack.get("/hello").status == 200
    # No tunnel: the local server goes away, the worker answers the 502.
    assert lk.stop_gracefully(stack.server)[0] == 0
    deadline = time.time() + 5
    while True:
        r = stack.get("/hello")
        if r.status == 502 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert (r.status, r.text) == (502, NOT_CONNECTED.format("tiny"))
    stack.worker.popen.terminate()
    stack.worker.popen.wait(15)
    wlog = open(stack.worker.log_path).read()
    assert "tunnel for session 'tiny' rejected from 127.0.0.1:" in wlog
    assert "invalid tunnel secret" in wlog
    slog = open(stack.server.log_path).read()
    for text in (wlog, slog):
        assert wrong not in text and secret not in text


def test_wrong_secret_client_reports_401(linkup_bin, env, tmp_path):
    """The tunnel client, sent to a worker that has no record of its session
    (so its secret is wrong there), is turned away with 401 on every attempt,
    says so in GET /linkup/tunnel, and the worker logs it without the secret."""
    s = Stack(linkup_bin, env, tmp_path, name="cow", relay=True)
    other = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "other.log"), token=TOKEN)
    try:
        wait_connected(s.server)
        s.relay.target = other.addrs["Worker"]
        s.relay.reset_all()
        deadline = time.time() + 5
        while True:
            status, state = tunnel_state(s.server)
            if "401" in (state["last_error"] or "") or time.time() > deadline:
                break
            time.sleep(0.05)
        assert status == 200 and state["connected"] is False, state
        assert "401" in state["last_error"], state
        r = s.get("/hello")
        assert (r.status, r.text) == (502, NOT_CONNECTED.format("cow"))
    finally:
        other.stop()
        s.close()
    s.assert_clean_exit()
    olog = open(str(tmp_path / "other.log")).read()
    assert "tunnel for session 'cow' rejected from 127.0.0.1:" in olog
    assert s.tunnel_data["secret"] not in olog
    assert s.tunnel_data["secret"] not in open(s.server.log_path).read()


def test_tunnel_killed_mid_stream_reconnects(linkup_bin, env, tmp_path):
    s = Stack(linkup_bin, env, tmp_path, name="kill", relay=True)
    try:
        wait_connected(s.server)
        # A response in progress and a request still waiting for its head.
        c, r, _ = begin_slow_download(s)
        t, result = stall_in_background(s, 1, timeout=15)
        before = s.relay.accepted
        t0 = time.time()
        s.relay.reset_all()
        # The started response is cut (not hung, not completed).
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            r.read()
        c.close()
        t_cut = time.time() - t0
        t.join(15)
        t_502 = time.time() - t0
        assert (result["r"].status, result["r"].text.startswith(
            "Failed to fetch from target service:")) == (502, True), result["r"].text
        # Reconnected within 5 s; the next request succeeds.
        wait_connected(s.server, timeout=5, since=(s.relay, before))
        assert time.time() - t0 < 5, (t_cut, t_502)
        r2 = s.get("/hello")
        assert (r2.status, r2.text) == (200, "local web /hello xfh=kill.example.com dest=web")
        s.web.release.set()
    finally:
        s.close()
    s.assert_clean_exit()


def test_worker_sigterm_moves_the_tunnel_to_another_worker_at_once(linkup_bin, env, tmp_path):
    """A rolling restart of workers that share a store behind one address
    (here a TCP relay): at SIGTERM a worker sends GOAWAY on its tunnels, so
    the local server reconnects at once, to the other worker, which serves
    the session from then on, while the request in flight through the old
    tunnel still gets its answer there."""
    store = "sqlite:%s" % (tmp_path / "shared.db")
    s = Stack(linkup_bin, env, tmp_path, name="roll", store=store, relay=True)
    other = None
    try:
        wait_connected(s.server)
        other = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "other.log"), store=store,
                                       token=TOKEN)
        t, out = stall_in_background(s, 0, timeout=20)
        assert s.web.n_requests == 1
        before = s.relay.accepted
        s.relay.target = other.addrs["Worker"]
        s.worker.popen.terminate()
        wait_connected(s.server, timeout=5, since=(s.relay, before))
        r = s.get("/hello", addr=other.addrs["Worker"], timeout=5)
        assert (r.status, r.text) == (200, "local web /hello xfh=roll.example.com dest=web")
        assert s.worker.popen.poll() is None  # still draining: the request waits
        s.web.release.set()
        t.join(20)
        assert (out["r"].status, out["r"].text) == (200, "late")
        assert s.worker.popen.wait(15) == 0
        deadline = time.time() + 5
        while "the previous connection closed" not in open(s.server.log_path).read():
            assert time.time() < deadline, open(s.server.log_path).read()[-2000:]
            time.sleep(0.05)
        slog = open(s.server.log_path).read()
        assert "tunnel for session 'roll': the worker is going away; reconnecting" in slog
        assert ("tunnel for session 'roll' going away: the worker is shutting down"
                in open(s.worker.log_path).read())
        r = s.get("/hello", addr=other.addrs["Worker"], timeout=5)
        assert r.status == 200, r.text
    finally:
        s.close()
        if other is not None:
            other.popen.terminate()
            assert other.popen.wait(15) == 0, open(other.log_path).read()[-3000:]
    s.assert_clean_exit()


def test_local_server_sigterm_drains_requests_in_flight_through_the_tunnel(stack, linkup_bin,
                                                                          env, tmp_path):
    """Issue 9 "SIGTERM under load drains in-flight requests", on the local
    server's side of the tunnel (`linkup stop`, then `linkup start`): at
    SIGTERM its tunnel sends GOAWAY, so the worker routes no new request to
    it (the session answers "not connected" at once, nothing hangs) and a
    restarted local server's tunnel replaces nothing, while a request waiting
    on the developer's service and a download in the middle of its body both
    finish whole through the old tunnel. The old local server then exits 0
    without waiting for its drain deadline."""
    wait_connected(stack.server)
    c, big, head = begin_slow_download(stack)
    t, out = stall_in_background(stack, 1, timeout=20)
    assert stack.web.n_requests == 2
    t0 = time.time()
    stack.server.popen.terminate()
    deadline = time.time() + 5
    while "going away" not in open(stack.worker.log_path).read():
        assert time.time() < deadline, open(stack.worker.log_path).read()[-2000:]
        time.sleep(0.02)
    r = stack.get("/hello", timeout=5)
    assert (r.status, r.text) == (502, NOT_CONNECTED.format("tiny"))
    assert stack.web.n_requests == 2
    # The developer starts the local server again while the old one drains.
    wurl = "http://127.0.0.1:%d" % stack.waddr[1]
    again = lk.spawn_local_server(linkup_bin, env, "--https", "off", "--dns", "off",
                                  "--worker-url", wurl, "--worker-token", TOKEN,
                                  log_path=str(tmp_path / "server2.log"))
    try:
        body = lk.session_body("tiny", {"web": "http://localhost:%d" % stack.web.port},
                               [("example.com", "web", None)])
        r = lk.post_json(again.addrs["HTTP"], "/linkup/sessions/tunneled", body)
        assert r.status == 200, r.body
        wait_connected(again)
        r = stack.get("/hello", timeout=5)
        assert (r.status, r.text) == (200, "local web /hello xfh=tiny.example.com dest=web")
        stack.web.release.set()
        rest = big.read()
        c.close()
        assert head + rest == b"a" * (256 * 1024) + b"b" * (10 * MIB - 256 * 1024)
        t.join(20)
        assert (out["r"].status, out["r"].text) == (200, "late")
        assert stack.server.popen.wait(15) == 0
        assert time.time() - t0 < 5
        slog = open(stack.server.log_path).read()
        assert "tunnel for session 'tiny' closed: closed after GOAWAY" in slog
        assert "drain deadline reached" not in slog
        assert "replaced" not in open(stack.worker.log_path).read()
        # The new tunnel serves on.
        r = stack.get("/hello", timeout=5)
        assert (r.status, r.text) == (200, "local web /hello xfh=tiny.example.com dest=web")
    finally:
        again.popen.terminate()
        assert again.popen.wait(15) == 0, open(again.log_path).read()[-3000:]


@pytest.mark.parametrize("pooled", [False, True], ids=["new-stream", "pooled-stream"])
def test_a_request_crossing_the_local_servers_goaway_is_served(linkup_bin, env, tmp_path, pooled):
    """RFC 9113 §6.8 graceful shutdown on the local server's side of the
    tunnel: it first sends a GOAWAY notice and only a PING's round trip
    later the GOAWAY that refuses new streams, and keeps idle streams open
    until then. So a request the worker sent before it saw the notice, on a
    new stream or on an idle one it reused (pooled), is served instead of
    answered 502. The relay between them holds the worker's bytes back
    until the worker has seen the notice."""
    s = Stack(linkup_bin, env, tmp_path, name="cross", relay=True)
    try:
        wait_connected(s.server)
        if pooled:
            r = s.get("/hello", timeout=5)
            assert r.status == 200, r.text
        s.relay.flowing.clear()
        out = {}

        def fetch():
            out["r"] = s.get("/crossing", timeout=20)

        t = threading.Thread(target=fetch)
        t.start()
        deadline = time.time() + 5
        # The request itself is in the relay, not only, say, a late SETTINGS
        # ACK or WINDOW_UPDATE from the worker (the stream carries it as
        # HTTP/1.1 bytes in DATA frames).
        while b"GET /crossing " not in s.relay.held_data:
            assert time.time() < deadline, bytes(s.relay.held_data)
            time.sleep(0.02)
        s.server.popen.terminate()
        deadline = time.time() + 5
        while "going away: the local server closes it" not in open(s.worker.log_path).read():
            assert time.time() < deadline, open(s.worker.log_path).read()[-2000:]
            time.sleep(0.02)
        s.relay.flowing.set()
        t.join(20)
        assert (out["r"].status, out["r"].text) == (
            200, "local web /crossing xfh=cross.example.com dest=web")
        assert s.server.popen.wait(15) == 0
        slog = open(s.server.log_path).read()
        assert "tunnel for session 'cross' closed: closed after GOAWAY" in slog
        assert "drain deadline reached" not in slog
    finally:
        s.relay.flowing.set()
        s.close()


def test_local_server_stops_when_its_goaway_notice_is_never_answered(linkup_bin, env, tmp_path):
    """The round trip after the GOAWAY notice never ends (the worker's bytes
    are held back): the local server's drain waits for it only until its
    deadline, closes the tunnel LOCAL_TUNNEL_CLOSE_MS later and exits 0."""
    s = Stack(linkup_bin, env, tmp_path, name="mute", relay=True)
    try:
        wait_connected(s.server)
        s.relay.flowing.clear()
        s.server.popen.terminate()
        assert s.server.popen.wait(15) == 0
        slog = open(s.server.log_path).read()
        assert "drain deadline reached with 0 connections open" in slog
        assert "the tunnel did not close in time; closing it now" in slog
    finally:
        s.relay.flowing.set()
        s.close()


def test_each_tunneled_session_keeps_its_own_tunnel(stack):
    """Sessions registered through one local server each get their tunnel:
    a second tunneled session does not take the first one's away. GET
    /linkup/tunnel reports the latest, or the one named by ?session=;
    deleting a session stops its tunnel only."""
    wait_connected(stack.server)
    t, out = stall_in_background(stack, 0, timeout=20)
    body = lk.session_body("other", {"web": "http://localhost:%d" % stack.web.port},
                           [("example.com", "web", None)])
    r = lk.post_json(stack.saddr, "/linkup/sessions/tunneled", body)
    assert r.status == 200, r.body
    assert wait_connected(stack.server)["session_name"] == "other"
    assert wait_connected(stack.server, session="tiny")["session_name"] == "tiny"
    for name in ("tiny", "other"):
        r = stack.get("/hello", host=name + ".example.com", timeout=5)
        assert (r.status, r.text) == (200, "local web /hello xfh=%s.example.com dest=web" % name)
    assert tunnel_state(stack.server, "nope")[0] == 404
    stack.web.release.set()
    t.join(20)
    assert (out["r"].status, out["r"].text) == (200, "late")
    # The same upsert again keeps the tunnel (and makes it the latest).
    r = lk.post_json(stack.saddr, "/linkup/sessions/tunneled", lk.session_body(
        "tiny", {"web": "http://localhost:%d" % stack.web.port}, [("example.com", "web", None)]))
    assert r.status == 200, r.body
    assert tunnel_state(stack.server)[1]["session_name"] == "tiny"
    assert lk.request(stack.saddr, "DELETE", "/linkup/sessions/tiny").status == 204
    assert tunnel_state(stack.server, "tiny")[0] == 404
    assert tunnel_state(stack.server)[1]["session_name"] == "other"
    r = stack.get("/hello", timeout=5)
    assert (r.status, r.text) == (502, NOT_CONNECTED.format("tiny"))
    r = stack.get("/hello", host="other.example.com", timeout=5)
    assert r.status == 200, r.text
    slog = open(stack.server.log_path).read()
    assert "replaced" not in slog and "connecting to" in slog
    assert slog.count("tunnel for session 'tiny': connecting to") == 1


def test_tunnels_past_the_limit_close_the_least_recently_upserted(stack):
    """LOCAL_MAX_TUNNELS (16) tunnel clients at most: one more tunneled
    session closes the tunnel of the session least recently upserted."""
    wait_connected(stack.server)
    loc = {"web": "http://localhost:%d" % stack.web.port}
    for i in range(16):
        r = lk.post_json(stack.saddr, "/linkup/sessions/tunneled",
                         lk.session_body("s%02d" % i, loc, [("example.com", "web", None)]))
        assert r.status == 200, r.body
    assert tunnel_state(stack.server, "tiny")[0] == 404
    assert tunnel_state(stack.server, "s00")[0] == 200
    wait_connected(stack.server, session="s15")
    r = stack.get("/hello", host="s15.example.com", timeout=5)
    assert r.status == 200, r.text
    assert "tunnel for session 'tiny' closing: more than 16 tunnels" in open(
        stack.server.log_path).read()


def test_replaced_tunnel_client_finishes_its_requests(linkup_bin, env, tmp_path):
    """A tunneled upsert that brings the session other tunnel data (here the
    worker behind the same URL was replaced by one that issued a new secret)
    makes the local server start a new client for it; the one it replaces
    sends GOAWAY and closes only once the request waiting in it has its
    answer, instead of cutting it."""
    s = Stack(linkup_bin, env, tmp_path, name="swap", relay=True)
    other = None
    try:
        wait_connected(s.server)
        t, out = stall_in_background(s, 0, timeout=20)
        assert s.web.n_requests == 1
        other = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "other.log"), token=TOKEN)
        before = s.relay.accepted
        s.relay.target = other.addrs["Worker"]
        body = lk.session_body("swap", {"web": "http://localhost:%d" % s.web.port},
                               [("example.com", "web", None)])
        r = lk.post_json(s.saddr, "/linkup/sessions/tunneled", body)
        assert r.status == 200, r.body
        wait_connected(s.server, since=(s.relay, before))
        r = s.get("/hello", addr=other.addrs["Worker"], timeout=5)
        assert (r.status, r.text) == (200, "local web /hello xfh=swap.example.com dest=web")
        # Deleting the session stops the new client only.
        assert lk.request(s.saddr, "DELETE", "/linkup/sessions/swap").status == 204
        assert tunnel_state(s.server)[0] == 404
        s.web.release.set()
        t.join(20)
        assert (out["r"].status, out["r"].text) == (200, "late")
        deadline = time.time() + 5
        while "tunnel for session 'swap' closed: closed after GOAWAY" not in open(
                s.server.log_path).read():
            assert time.time() < deadline, open(s.server.log_path).read()[-2000:]
            time.sleep(0.05)
        assert ("tunnel for session 'swap' replaced: it closes once its requests have finished"
                in open(s.server.log_path).read())
    finally:
        s.close()
        if other is not None:
            other.popen.terminate()
            assert other.popen.wait(15) == 0, open(other.log_path).read()[-3000:]


def access_conns(log_path, marker):
    """Connection ids of the access lines whose target contains marker."""
    ids = []
    with open(log_path, errors="replace") as f:
        for line in f:
            if ": access " in line and marker in line:
                ids.append(line.split("conn ", 1)[1].split(":", 1)[0])
    return ids


def test_streams_kept_between_requests_and_replaced_after_idle(linkup_bin, env, tmp_path):
    """The worker keeps its tunnel streams open between requests, so requests
    of different clients reach the local server on one connection; when the
    local server closes an idle one (its keep-alive idle timeout, 300 ms
    here), the next requests, GET and POST, go on new streams instead of
    failing."""
    s = Stack(linkup_bin, dict(env, LINKUP_IDLE_TIMEOUT_MS="300"), tmp_path, name="keep")
    try:
        wait_connected(s.server)
        for i in range(3):
            r = s.get("/hello?quick=%d" % i)
            assert (r.status, r.text) == (
                200, "local web /hello?quick=%d xfh=keep.example.com dest=web" % i)
        deadline = time.time() + 5
        while len(access_conns(s.server.log_path, "/hello?quick=")) < 3 and time.time() < deadline:
            time.sleep(0.05)
        assert len(set(access_conns(s.server.log_path, "/hello?quick="))) == 1
        for i in range(3):
            time.sleep(0.6)
            r = s.get("/hello?idle=%d" % i)
            assert (r.status, r.text) == (
                200, "local web /hello?idle=%d xfh=keep.example.com dest=web" % i)
            body = b"p" * 1000
            r = lk.request(s.waddr, "POST", "/upload", [("Host", s.host)], body=body)
            assert (r.status, r.text) == (200, "1000 %s" % hashlib.sha256(body).hexdigest())
        deadline = time.time() + 5
        while len(access_conns(s.server.log_path, "/hello?idle=")) < 3 and time.time() < deadline:
            time.sleep(0.05)
        assert len(set(access_conns(s.server.log_path, "/hello?idle="))) == 3
    finally:
        s.close()
    s.assert_clean_exit()


def test_delete_session_stops_the_tunnel(stack):
    wait_connected(stack.server)
    r = lk.request(stack.saddr, "DELETE", "/linkup/sessions/tiny")
    assert r.status == 204
    status, state = tunnel_state(stack.server)
    assert (status, state) == (404, {"provider": None, "session_name": None, "url": None,
                                     "connected": False, "last_error": None})
    deadline = time.time() + 5
    while stack.get("/hello").status != 502 and time.time() < deadline:
        time.sleep(0.05)
    assert stack.get("/hello").text == NOT_CONNECTED.format("tiny")


# ---- several workers on one Redis ------------------------------------------

@pytest.fixture
def redis_url(tmp_path):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = lk.free_port()
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or p.poll() is not None:
                p.kill()
                pytest.skip("redis-server did not start")
            time.sleep(0.05)
    yield "redis://127.0.0.1:%d" % port
    p.terminate()
    p.wait(10)


def spawn_peer_worker(bin_, env, tmp_path, store, label, peer_secret="peer-secret-1"):
    port = lk.free_port()
    return lk.spawn_worker_logged(
        bin_, env, str(tmp_path / ("%s.log" % label)), store=store, token=TOKEN,
        extra=("--listen", "127.0.0.1:%d" % port, "--peer-url", "http://127.0.0.1:%d" % port,
               "--peer-secret", peer_secret))


def peer_stack(bin_, env, tmp_path, name, redis_url, b_env=None):
    """A Stack whose worker (A, on a known port) holds the tunnel on Redis,
    and a second worker B on the same store (with b_env, if given); returns
    (stack, A's port, B)."""
    a_port = lk.free_port()
    s = Stack(bin_, env, tmp_path, name=name, store=redis_url,
              worker_extra=("--listen", "127.0.0.1:%d" % a_port,
                            "--peer-url", "http://127.0.0.1:%d" % a_port,
                            "--peer-secret", "peer-secret-1"))
    return s, a_port, spawn_peer_worker(bin_, b_env or env, tmp_path, redis_url, "worker-b")


def test_two_workers_on_one_redis(linkup_bin, env, tmp_path, redis_url):
    s, _, b = peer_stack(linkup_bin, env, tmp_path, "duo", redis_url)
    try:
        wait_connected(s.server)
        baddr = b.addrs["Worker"]
        # B holds no tunnel: it forwards to A, which relays through its tunnel.
        r = s.get("/hello", addr=baddr)
        assert (r.status, r.text) == (200, "local web /hello xfh=duo.example.com dest=web")
        # DESIGN §7: one routed-to, the local server's, past both workers.
        assert r.all("linkup-routed-to") == ["web; session=duo; via=local-server"]
        tunnel_host = s.tunnel_data["url"][len("http://"):]
        r = s.get("/linkup/check", host=tunnel_host, addr=baddr)
        assert (r.status, r.text) == (200, "OK")
        # A forged peer header does not make B skip forwarding, and A does
        # not trust it.
        r = lk.request(baddr, "GET", "/hello", [("Host", s.host),
                                                ("x-linkup-peer-secret", "forged")])
        assert r.status == 200
        # The holder's entry goes when its tunnel goes: then B answers the 502
        # itself.
        assert lk.stop_gracefully(s.server)[0] == 0
        deadline = time.time() + 5
        while True:
            r = s.get("/hello", addr=baddr)
            if r.status == 502 or time.time() > deadline:
                break
            time.sleep(0.05)
        assert (r.status, r.text) == (502, NOT_CONNECTED.format("duo"))
        assert r.header("linkup-routed-to") is None
    finally:
        b.stop()
        s.close()
    s.assert_clean_exit()
    assert b.popen.returncode == 0
    assert "invalid x-linkup-peer-secret header" in open(s.worker.log_path).read() + \
        open(b.log_path).read()


def test_two_workers_on_one_redis_need_no_peer_options(linkup_bin, env, tmp_path, redis_url):
    """Issue 7: two workers on one Redis, started with nothing but the store
    and the token, forward to each other: each is reached at the address it
    listens on, and they authenticate with the worker token. A worker that
    listens on every address says it cannot be reached without --peer-url."""
    s = Stack(linkup_bin, env, tmp_path, name="bare", store=redis_url)
    b = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker-b.log"),
                               store=redis_url, token=TOKEN)
    c = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker-c.log"),
                               store=redis_url, token=TOKEN, extra=("--listen", "0.0.0.0:0"))
    try:
        wait_connected(s.server)
        r = s.get("/hello", addr=b.addrs["Worker"])
        assert (r.status, r.text) == (200, "local web /hello xfh=bare.example.com dest=web")
        assert r.all("linkup-routed-to") == ["web; session=bare; via=local-server"]
        # C cannot be reached by the others, but it can still reach A.
        r = s.get("/hello", addr=("127.0.0.1", c.addrs["Worker"][1]))
        assert (r.status, r.text) == (200, "local web /hello xfh=bare.example.com dest=web")
        # The default peer secret is not the token itself: a request that
        # carries the token as one is a client's (logged as invalid).
        r = lk.request(b.addrs["Worker"], "GET", "/hello",
                       [("Host", s.host), ("x-linkup-peer-secret", TOKEN)])
        assert r.status == 200
    finally:
        c.stop()
        b.stop()
        s.close()
    s.assert_clean_exit()
    assert "peer workers cannot forward to this worker: it listens on every address; " \
        "give its internal address with --peer-url" in open(c.log_path).read()
    assert "cannot forward" not in open(b.log_path).read()
    assert "invalid x-linkup-peer-secret header" in open(b.log_path).read()


def test_holder_worker_gone_is_the_not_connected_502_at_its_peer(linkup_bin, env, tmp_path,
                                                                 redis_url):
    """The worker holding the tunnel dies without clearing its registry entry
    (SIGKILL): until that entry expires, the other worker still reads it, but
    the tunnel is down, so its answer is the DESIGN §8 502 `tunnel for session
    '<name>' is not connected` (docs/worker.md: "With no tunnel (here or, with
    Redis, at a peer)"), not the connection error of the dead holder."""
    s, a_port, b = peer_stack(linkup_bin, env, tmp_path, "gone", redis_url)
    try:
        wait_connected(s.server)
        baddr = b.addrs["Worker"]
        assert s.get("/hello", addr=baddr).status == 200
        s.worker.popen.kill()
        s.worker.popen.wait(10)
        from test_tunnel_case import redis_get  # here: that module imports this one
        assert redis_get(redis_url, "tunnel-holder:gone") == "http://127.0.0.1:%d" % a_port
        r = s.get("/hello", addr=baddr)
        assert (r.status, r.text) == (502, NOT_CONNECTED.format("gone"))
        tunnel_host = s.tunnel_data["url"][len("http://"):]
        r = s.get("/linkup/check", host=tunnel_host, addr=baddr)
        assert (r.status, r.text) == (502, NOT_CONNECTED.format("gone"))
    finally:
        b.stop()
        s.close()
    assert b.popen.returncode == 0
    assert "error trying to connect to 127.0.0.1:%d" % a_port in open(b.log_path).read()


def test_holder_worker_slow_to_answer_is_the_timeout_502_at_its_peer(linkup_bin, env, tmp_path,
                                                                      redis_url):
    """A holder that took the request and does not answer in time is not a
    missing tunnel: the peer answers its own first-byte timeout 502
    (lk_exchange_upstream_no_answer()), not the "not connected" one."""
    s, _, b = peer_stack(linkup_bin, env, tmp_path, "slow", redis_url,
                              b_env=dict(env, LINKUP_FIRST_BYTE_TIMEOUT_MS="1000"))
    try:
        wait_connected(s.server)
        r = s.get("/stall", addr=b.addrs["Worker"], timeout=10)
        assert r.status == 502
        assert r.text == ("Failed to fetch from target service: upstream 127.0.0.1 did not "
                          "answer in time"), r.text
        s.web.release.set()
    finally:
        b.stop()
        s.close()
    assert b.popen.returncode == 0


def test_two_local_servers_of_one_session_swap_the_tunnel_slowly(linkup_bin, env, tmp_path):
    """One session connected from two local servers (one state used on two
    machines): each new tunnel connection replaces the other on the worker.
    The backoff is reset only by a tunnel that held for its maximum (2 s),
    so they swap it every couple of seconds, not ten times a second."""
    web = LocalWeb()
    worker = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"), token=TOKEN)
    waddr = worker.addrs["Worker"]
    servers = []
    try:
        body = lk.session_body("twin", {"web": "http://localhost:%d" % web.port},
                               [("example.com", "web", None)])
        for i in range(2):
            s = lk.spawn_local_server(linkup_bin, env, "--https", "off", "--dns", "off",
                                      "--worker-url", "http://127.0.0.1:%d" % waddr[1],
                                      "--worker-token", TOKEN,
                                      log_path=str(tmp_path / ("server%d.log" % i)))
            servers.append(s)
            r = lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body)
            assert r.status == 200, r.body
        time.sleep(4)
        replaced = open(worker.log_path).read().count("replaced by a new connection")
        # Ten a second would be ~40. Backing off (100 ms doubling to 2 s on
        # both sides) it is about 9 in the first 4 s, then one per 2 s.
        assert replaced <= 15, replaced
    finally:
        for p in servers + [worker]:
            p.popen.terminate()
            p.popen.wait(15)
        web.close()


def test_worker_sigterm_drains_requests_in_flight_through_the_tunnel(stack):
    """Issue 9 "SIGTERM under load drains in-flight requests", through the
    tunnel too: the worker keeps its tunnels until its engine has drained,
    so a request waiting on the developer's service still gets its answer,
    and the worker then exits 0 without waiting for the drain deadline."""
    wait_connected(stack.server)
    t, out = stall_in_background(stack, 0, timeout=20)
    assert stack.web.n_requests == 1
    t0 = time.time()
    stack.worker.popen.terminate()
    time.sleep(0.3)
    stack.web.release.set()
    t.join(20)
    assert (out["r"].status, out["r"].text) == (200, "late")
    assert stack.worker.popen.wait(15) == 0
    assert time.time() - t0 < 5


def test_slow_upload_through_the_tunnel_is_not_cut_by_the_first_byte_timeout(linkup_bin, env,
                                                                               tmp_path):
    """DESIGN §9: the first-byte timeout runs from the last request byte sent.
    Through the tunnel the worker's upstream is an in-memory stream, which
    passes the bytes on at once; a body that keeps arriving for four times
    the timeout still reaches the local web service."""
    s = Stack(linkup_bin, dict(env, LINKUP_FIRST_BYTE_TIMEOUT_MS="500"), tmp_path, name="drip")
    try:
        wait_connected(s.server)
        head = ("POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 20\r\n"
                "Connection: close\r\n\r\n" % s.host).encode()
        got, _ = lk.raw_exchange(s.waddr, [head] + [b"x"] * 20, timeout=10, pause=0.1,
                                 nodelay=True)
        rs = lk.parse_responses(got)
        assert [r.status for r in rs] == [200], got[:300]
        assert rs[0].body.decode() == "20 %s" % hashlib.sha256(b"x" * 20).hexdigest()
    finally:
        s.close()
    s.assert_clean_exit()
