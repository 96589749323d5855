"""Limits and timeouts (DESIGN §9, issue 9) of `linkup server` and `linkup
worker`: slowloris head read, idle keep-alive, maximum connections (503),
JSON bodies (413), bounded WebSocket buffers, the send timeout for a client
that stops taking its response.

Both servers read their limits from environment variables
(LINKUP_HEAD_TIMEOUT_MS, LINKUP_IDLE_TIMEOUT_MS, LINKUP_MAX_CONNS,
LINKUP_MAX_JSON_BODY, LINKUP_MAX_HEADERS, ...; docs/reliability.md) so these
tests run in seconds."""
import re
import resource
import shutil
import socket
import subprocess
import threading
import time

import pytest

import lk

BOTH_KNOBS = ["server", "worker"]


def wait_closed(sock, seconds):
    """Reads until EOF/reset; returns the elapsed time, or None if the
    connection is still open after `seconds`."""
    t0 = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - t0 < seconds:
        try:
            if not sock.recv(4096):
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0
    return None


def _send_until_stalled(sock, block, limit=512 * lk.MIB):
    """Sends block after block until `limit` bytes or until a send makes no
    progress for 3 s (the peer stopped taking); returns the bytes sent."""
    sock.settimeout(3)
    sent = 0
    try:
        while sent < limit:
            sock.sendall(block)
            sent += len(block)
    except socket.timeout:
        pass
    return sent


# ---- head read (slowloris) and idle keep-alive -----------------------------

@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_slowloris_head_is_cut_at_the_head_timeout(front_factory, kind):
    f = front_factory(kind, env={"LINKUP_HEAD_TIMEOUT_MS": "700"})
    s = socket.create_connection(f.addr, timeout=5)
    try:
        s.sendall(b"GET / HTTP/1.1\r\n")
        t0 = time.monotonic()
        closed = False
        # One header byte every 100 ms: each byte arrives well within any
        # per-read timeout, only a whole-head deadline stops it.
        while time.monotonic() - t0 < 5:
            try:
                s.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            s.settimeout(0.1)
            try:
                if s.recv(4096) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed = True
                break
        elapsed = time.monotonic() - t0
        assert closed, "a slowloris head was still being read after 5 s"
        assert elapsed < 3, elapsed
    finally:
        s.close()
    # The server still serves.
    assert f.check() == 200


@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_silent_connection_is_closed_at_the_head_timeout(front_factory, kind):
    f = front_factory(kind, env={"LINKUP_HEAD_TIMEOUT_MS": "500"})
    with socket.create_connection(f.addr, timeout=5) as s:
        elapsed = wait_closed(s, 4)
        assert elapsed is not None and elapsed < 3


def test_slow_but_complete_head_within_the_timeout_is_served(front_factory, raw_upstream):
    f = front_factory("server", env={"LINKUP_HEAD_TIMEOUT_MS": "3000"})
    head = (b"GET /slow-ok HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
            % f.host.encode())
    got, _ = lk.raw_exchange(f.addr, [head[i:i + 10] for i in range(0, len(head), 10)],
                             timeout=5, pause=0.05)
    assert [r.status for r in lk.parse_responses(got)] == [200]


@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_idle_keep_alive_timeout(front_factory, kind):
    f = front_factory(kind, env={"LINKUP_IDLE_TIMEOUT_MS": "500"})
    with socket.create_connection(f.addr, timeout=5) as s:
        s.sendall(b"GET /k HTTP/1.1\r\nHost: %s\r\n\r\n" % f.host.encode())
        data = b""
        while not lk.parse_responses(data):
            data += s.recv(65536)
        assert lk.parse_responses(data)[0].status == 200
        elapsed = wait_closed(s, 4)
        assert elapsed is not None and elapsed < 3


# ---- request-head limits -------------------------------------------------------

def _status_of(f, head):
    got, _ = lk.raw_exchange(f.addr, head, timeout=5)
    rs = lk.parse_responses(got)
    return rs[0].status if rs else None


@pytest.mark.parametrize("kind", ["server", "worker"])
def test_unfinished_request_line_gets_414_once_its_target_is_too_long(front_factory, kind):
    """The 414 of DESIGN §9 comes as soon as the target passes 8 KiB, also
    while the request line has no CRLF yet: the client is not left waiting
    for the 30 s head timeout or the 16 KiB line limit."""
    f = front_factory(kind)
    for tail in (b"", b" HTTP/1.1"):
        with socket.create_connection(f.addr, timeout=5) as s:
            s.sendall(b"GET /" + b"a" * 8192 + tail)  # the target is 8193 bytes
            data = b""
            while not lk.parse_responses(data):
                chunk = s.recv(65536)  # times out (fails) if no answer comes
                assert chunk, data
                data += chunk
            assert lk.parse_responses(data)[0].status == 414, data[:200]


@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_request_head_limits_configured(front_factory, kind):
    """LINKUP_MAX_TARGET (414), LINKUP_MAX_HEADER_LINE, LINKUP_MAX_HEADERS and
    LINKUP_MAX_HEAD (431): each limit holds exactly at its configured value."""
    f = front_factory(kind, env={"LINKUP_MAX_TARGET": "64", "LINKUP_MAX_HEADER_LINE": "100",
                                 "LINKUP_MAX_HEADERS": "8", "LINKUP_MAX_HEAD": "600"})
    # Three fields of every request: Host, the worker's token, and a close
    # so that each answer ends its connection.
    base = (b"Host: %s\r\nAuthorization: Bearer token123\r\nConnection: close\r\n"
            % f.host.encode())

    def req(target=b"/linkup/check", fields=b""):
        return b"GET " + target + b" HTTP/1.1\r\n" + base + fields + b"\r\n"

    def line(n):  # one field line with n bytes of content
        return b"X-A: " + b"v" * (n - 5) + b"\r\n"

    def fields(n):
        return b"".join(b"X-%d: 1\r\n" % i for i in range(n))

    assert _status_of(f, req()) == 200
    # target: 64 bytes pass, 65 do not
    assert _status_of(f, req(b"/linkup/check?" + b"a" * (64 - 14))) == 200
    assert _status_of(f, req(b"/linkup/check?" + b"a" * (65 - 14))) == 414
    # one field line: 100 bytes of content pass, 101 do not
    assert _status_of(f, req(fields=line(100))) == 200
    assert _status_of(f, req(fields=line(101))) == 431
    # field count: 8 pass, 9 do not
    assert _status_of(f, req(fields=fields(5))) == 200
    assert _status_of(f, req(fields=fields(6))) == 431
    # whole head (8 fields or fewer): about 510 bytes pass, about 610 do not
    assert _status_of(f, req(fields=line(100) * 4)) == 200
    assert _status_of(f, req(fields=line(100) * 5)) == 431
    assert f.check() == 200


@pytest.mark.parametrize("knob,value", [("LINKUP_MAX_HEADERS", "8"), ("LINKUP_MAX_HEAD", "600"),
                                        ("LINKUP_MAX_HEADER_LINE", "100")])
@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_request_head_limits_do_not_shrink_upstream_responses(front_factory, kind, knob, value):
    """The LINKUP_MAX_* head knobs are request limits (DESIGN §9,
    docs/worker.md): an upstream response head with more fields, more bytes
    or longer lines than a small configured request limit (but within the
    defaults) is relayed, not a 502."""
    fields = b"".join(b"X-R%d: %s\r\n" % (i, b"v" * 150) for i in range(12))
    up = lk.ScriptedUpstream(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 2\r\n\r\nok")
    try:
        f = front_factory(kind, url=up.url, env={knob: value})
        r = lk.request(f.addr, "GET", "/", [("Host", f.host)])
        assert (r.status, r.body) == (200, b"ok"), r.body[:200]
        assert r.header("x-r11") == "v" * 150
        # The request limit itself still holds.
        big = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 150) for i in range(12))
        assert _status_of(f, b"GET / HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (f.host.encode(), big)) \
            == 431
    finally:
        up.close()


@pytest.mark.skipif(__import__("shutil").which("curl") is None, reason="curl is not installed")
def test_request_head_limits_do_not_shrink_responses_over_h2c(front_factory):
    """The same through the local server's HTTP/2 cleartext front (curl
    --http2-prior-knowledge): the engine's response head is re-parsed there."""
    import subprocess
    fields = b"".join(b"X-R%d: %s\r\n" % (i, b"v" * 150) for i in range(12))
    up = lk.ScriptedUpstream(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 2\r\n\r\nok")
    try:
        f = front_factory("server", url=up.url, env={"LINKUP_MAX_HEADERS": "8"})
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                            "--http2-prior-knowledge", "-H", f"Host: {f.host}",
                            f"http://{f.addr[0]}:{f.addr[1]}/"],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout == "200", (r.stdout, r.stderr)
    finally:
        up.close()


# ---- first response byte: counted from the request sent -----------------------

def _upload(f, pause, n=20, stall_after=None):
    """POSTs an n-byte body one byte per `pause` seconds (stopping after
    stall_after bytes); returns (raw response bytes, seconds from the head
    to the end of the answer)."""
    s = socket.create_connection(f.addr, timeout=10)
    try:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n" % (f.host.encode(), n))
        t0 = time.monotonic()
        for i in range(n if stall_after is None else stall_after):
            time.sleep(pause)
            try:
                s.sendall(b"x")
            except OSError:
                break
        data = b""
        s.settimeout(5)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return data, time.monotonic() - t0
    finally:
        s.close()


@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_slow_upload_is_not_cut_by_the_first_byte_timeout(front_factory, raw_upstream, kind):
    """LINKUP_FIRST_BYTE_TIMEOUT_MS runs from the request sent to the first
    response byte (DESIGN §9, docs/worker.md): a body that keeps arriving
    for 4 times the timeout reaches the upstream, whose answer is relayed."""
    f = front_factory(kind, env={"LINKUP_FIRST_BYTE_TIMEOUT_MS": "500"})
    n0 = len(raw_upstream.requests)
    data, _ = _upload(f, 0.1)
    rs = lk.parse_responses(data)
    assert [r.status for r in rs] == [200], data[:300]
    assert [r["body"] for r in raw_upstream.requests[n0:]] == [b"x" * 20]


@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_stalled_upload_is_502_at_the_first_byte_timeout(front_factory, kind):
    """The other side: a body that stops arriving leaves the upstream
    waiting; the wait is bounded by the same timeout (502)."""
    f = front_factory(kind, env={"LINKUP_FIRST_BYTE_TIMEOUT_MS": "500"})
    data, _ = _upload(f, 0.05, stall_after=3)
    rs = lk.parse_responses(data)
    assert [r.status for r in rs] == [502], data[:300]
    assert b"did not answer in time" in rs[0].body


# ---- maximum connections -----------------------------------------------------

def _busy_status(addr):
    got, _ = lk.raw_exchange(addr, b"GET /linkup/check HTTP/1.1\r\nHost: x\r\n"
                                   b"Authorization: Bearer token123\r\n\r\n", timeout=2)
    rs = lk.parse_responses(got)
    return rs[0].status if rs else None


def _fill(addr, n):
    socks = []
    for _ in range(n):
        socks.append(socket.create_connection(addr, timeout=5))
    return socks


def _expect_503_then_recovery(f, socks):
    deadline = time.time() + 10
    status = None
    while time.time() < deadline:
        status = _busy_status(f.addr)
        if status == 503:
            break
        time.sleep(0.1)
    assert status == 503
    for s in socks:
        s.close()
    deadline = time.time() + 10
    while time.time() < deadline and _busy_status(f.addr) != 200:
        time.sleep(0.1)
    assert f.check() == 200


@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_max_connections_configured_503(front_factory, kind):
    f = front_factory(kind, env={"LINKUP_MAX_CONNS": "8"})
    socks = _fill(f.addr, 8)
    _expect_503_then_recovery(f, socks)


@pytest.mark.parametrize("kind", ["server", "worker"])
def test_max_connections_503_is_a_complete_answer(front_factory, kind):
    """The 503 past the limit is one of Linkup's own answers: status, Date
    (RFC 9110 §6.6.1), type, length, Connection: close, the text."""
    f = front_factory(kind, env={"LINKUP_MAX_CONNS": "2"})
    socks = _fill(f.addr, 2)
    try:
        deadline = time.time() + 10
        rs = []
        while time.time() < deadline:
            got, _ = lk.raw_exchange(f.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2)
            rs = lk.parse_responses(got)
            if rs and rs[0].status == 503:
                break
            time.sleep(0.1)
        assert rs and rs[0].status == 503
        r = rs[0]
        assert r.body == b"too many connections"
        assert r.header("content-type") == "text/plain; charset=utf-8"
        assert r.header("connection") == "close"
        assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|"
                            r"Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT",
                            r.header("date") or ""), r.header("date")
    finally:
        for s in socks:
            s.close()


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) not installed")
@pytest.mark.parametrize("kind", ["server", "worker"])
def test_http2_streams_do_not_take_connection_slots(front_factory, kind):
    """DESIGN §9 bounds open client *connections*: the streams of one
    HTTP/2 connection are bounded by its SETTINGS_MAX_CONCURRENT_STREAMS
    (100), not by LINKUP_MAX_CONNS. With a limit of 3 and 2 idle
    connections held, one HTTP/2 connection still gets 50 requests in
    flight at once answered."""
    f = front_factory(kind, env={"LINKUP_MAX_CONNS": "3"})
    socks = _fill(f.addr, 2)
    try:
        host, port = f.addr
        p = subprocess.run(["h2load", "-n", "200", "-c", "1", "-m", "50",
                            "-H", "authorization: Bearer token123",
                            f"http://{host}:{port}/linkup/check"],
                           capture_output=True, text=True, timeout=60)
        assert "200 succeeded, 0 failed, 0 errored" in p.stdout, p.stdout + p.stderr
        assert "status codes: 200 2xx" in p.stdout, p.stdout
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("kind", ["server", "worker"])
def test_max_connections_default_4096_503(front_factory, kind):
    """The DESIGN §9 default itself: 4096 idle connections, the next one 503."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 9000:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for 4097 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 9000), hard))
    f = front_factory(kind)
    socks = _fill(f.addr, 4096)
    try:
        _expect_503_then_recovery(f, socks)
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_out_of_descriptors_pauses_accepting_instead_of_spinning(front_factory, kind):
    """accept(2) failing with EMFILE (RLIMIT_NOFILE 64, hard too, so the
    server cannot raise it): the listener pauses and logs a line now and
    then; before, libevent's listener fired again at once, spinning and
    logging "Error from accept() call" thousands of times a second. The
    connections left in the backlog are served once descriptors are free."""
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    f = front_factory(kind, preexec_fn=low_limit)
    socks = _fill(f.addr, 100)  # more than 64: the rest waits in the backlog
    try:
        deadline = time.time() + 10
        while time.time() < deadline and "accept failed" not in f.log():
            time.sleep(0.1)
        time.sleep(1)  # a spinning listener would write thousands of lines now
        log = f.log()
        assert "accept failed: Too many open files" in log, log[-2000:]
        assert log.count("accept failed") <= 3, log[-2000:]
        assert "Error from accept() call" not in log
        late = socks.pop()  # accepted only once descriptors are free
        late.settimeout(10)
        for s in socks:
            s.close()
        socks = [late]
        late.sendall(f"GET /linkup/check HTTP/1.1\r\nHost: localhost\r\n"
                     f"Authorization: Bearer {f.token}\r\nConnection: close\r\n\r\n"
                     .encode())
        assert late.recv(64).startswith(b"HTTP/1.1 200 ")
        assert f.check() == 200
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_soft_descriptor_limit_is_raised_to_the_hard_one(front_factory, kind):
    """Each proxied request holds two descriptors and the usual soft limit
    (1024) exists only for select(2): both servers raise it to the hard
    limit at start, so a soft limit of 64 does not cap them at ~60 clients."""
    def low_soft_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 4096))

    f = front_factory(kind, preexec_fn=low_soft_limit)
    limits = open(f"/proc/{f.proc.popen.pid}/limits").read()
    row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert row.split()[3:5] == ["4096", "4096"], row
    socks = _fill(f.addr, 100)
    try:
        assert f.check() == 200
        assert "accept failed" not in f.log()
    finally:
        for s in socks:
            s.close()


# ---- JSON bodies ---------------------------------------------------------------

def _chunked_post(addr, path, total, extra_headers=b"", timeout=30):
    """POSTs `total` bytes of JSON-ish filler as chunked (no declared length)
    quickly over loopback; returns the response status (None if none)."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        s.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: localhost\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n" +
                  extra_headers + b"\r\n")
        block = b"[" + b" " * (lk.MIB - 1)
        sent = 0
        try:
            while sent < total:
                n = min(lk.MIB, total - sent)
                s.sendall(b"%x\r\n" % n + block[:n] + b"\r\n")
                block = b" " * lk.MIB
                sent += n
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed
        data = b""
        s.settimeout(10)
        try:
            while not lk.parse_responses(data):
                c = s.recv(65536)
                if not c:
                    break
                data += c
        except (ConnectionResetError, socket.timeout):
            pass
        rs = lk.parse_responses(data)
        return rs[0].status if rs else None
    finally:
        s.close()


def test_admin_json_body_limit_configured(front_factory):
    f = front_factory("server", env={"LINKUP_MAX_JSON_BODY": str(lk.MIB)})
    assert _chunked_post(f.addr, b"/linkup/sessions/tunneled", lk.MIB + 1) == 413
    # Exactly the limit is read (then rejected as malformed JSON, not 413).
    assert _chunked_post(f.addr, b"/linkup/sessions/tunneled", lk.MIB) == 400
    assert f.check() == 200


ADMIN_PATH = {"server": b"/linkup/sessions/tunneled", "worker": b"/linkup/v2/sessions/preview"}


@pytest.mark.parametrize("kind", ["server", "worker"])
def test_json_body_100_mib_plus_one_streamed_is_413(front_factory, kind):
    """The real 100 MiB default with no declared length: the body is counted
    while it streams and the process stays small."""
    f = front_factory(kind)
    rss0 = lk.rss_kib(f.proc.popen.pid)
    status = _chunked_post(f.addr, ADMIN_PATH[kind], 100 * lk.MIB + 1,
                           b"Authorization: Bearer token123\r\n", timeout=60)
    assert status == 413
    assert f.check() == 200
    # The body is buffered up to the limit at most (not unbounded).
    assert lk.rss_kib(f.proc.popen.pid) - rss0 < 300 * 1024


# ---- WebSocket buffers ----------------------------------------------------------

class WsFlood(lk.OneShotServer):
    """WebSocket upstream on 127.0.0.2:0. mode "flood": after the 101 it
    sends 64 KiB binary frames until a send blocks for 3 s (the proxy stopped
    reading); mode "sink": it never reads. self.sent counts bytes sent;
    self.done is set when the upstream has finished."""

    def __init__(self, mode):
        self.mode, self.sent, self.done = mode, 0, threading.Event()
        super().__init__("127.0.0.2")

    def handle(self, c):
        try:
            lk.ws_switch(c)
            if self.mode == "flood":
                frame = lk.ws_frame(2, b"f" * 65536, mask=False)
                c.settimeout(3)
                while self.sent < 512 * lk.MIB:
                    c.sendall(frame)
                    self.sent += len(frame)
            else:
                self.stop.wait(30)
        finally:
            self.done.set()


def _ws_connect(f):
    s = socket.create_connection(f.addr, timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(("GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % f.host).encode())
    line, _, _ = lk.read_http_head(s)
    assert line.startswith("HTTP/1.1 101"), line
    return s


@pytest.mark.parametrize("kind", ["server", "worker"])
def test_websocket_upstream_flood_to_a_client_that_never_reads(linkup_bin, env, tmp_path, kind):
    up = WsFlood("flood")
    f = lk.Front(kind, linkup_bin, env, tmp_path, up.url, name="flood")
    try:
        rss0 = lk.rss_kib(f.proc.popen.pid)
        s = _ws_connect(f)
        up.done.wait(20)
        rss1 = lk.rss_kib(f.proc.popen.pid)
        # Reading paused at the 1 MiB WebSocket buffer: only socket buffers
        # and that buffer are in flight, not the 512 MiB the upstream wanted.
        assert up.sent < 48 * lk.MIB, up.sent
        assert rss1 - rss0 < 48 * 1024, (rss0, rss1)
        s.close()
        assert f.check() == 200
    finally:
        up.close()
        assert f.stop() == 0, f.log()[-2000:]


@pytest.mark.parametrize("kind", ["server", "worker"])
def test_websocket_client_flood_to_an_upstream_that_never_reads(linkup_bin, env, tmp_path,
                                                                kind):
    up = WsFlood("sink")
    f = lk.Front(kind, linkup_bin, env, tmp_path, up.url, name="sink")
    try:
        rss0 = lk.rss_kib(f.proc.popen.pid)
        s = _ws_connect(f)
        sent = _send_until_stalled(s, lk.ws_frame(2, b"c" * 65536, mask=True))
        rss1 = lk.rss_kib(f.proc.popen.pid)
        assert sent < 48 * lk.MIB, sent
        assert rss1 - rss0 < 48 * 1024, (rss0, rss1)
        s.close()
        assert f.check() == 200
    finally:
        up.close()
        assert f.stop() == 0, f.log()[-2000:]



# ---- request bodies -------------------------------------------------------------

class HttpSink(lk.OneShotServer):
    """HTTP upstream on 127.0.0.2:0 that reads a request head and then never
    reads again (its socket buffers fill and stay full)."""

    def __init__(self):
        super().__init__("127.0.0.2")

    def handle(self, c):
        lk.read_http_head(c)
        self.stop.wait(30)


@pytest.mark.parametrize("kind", ["server", "worker"])
def test_request_body_to_an_upstream_that_never_reads(linkup_bin, env, tmp_path, kind):
    """Reading the client pauses at the bounded input buffer (the engine's own
    reads of plain sockets keep libevent's read-watermark semantics): a 512 MiB
    upload stalls after a few MiB of socket buffers, memory stays flat, and
    the server keeps serving others."""
    up = HttpSink()
    f = lk.Front(kind, linkup_bin, env, tmp_path, up.url, name="sink")
    try:
        rss0 = lk.rss_kib(f.proc.popen.pid)
        s = socket.create_connection(f.addr, timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        s.sendall(("POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
                   % (f.host, 512 * lk.MIB)).encode())
        sent = _send_until_stalled(s, b"u" * 65536)
        rss1 = lk.rss_kib(f.proc.popen.pid)
        assert sent < 48 * lk.MIB, sent
        assert rss1 - rss0 < 48 * 1024, (rss0, rss1)
        assert f.check() == 200
        s.close()
    finally:
        up.close()
        assert f.stop() == 0, f.log()[-2000:]


# ---- send timeout: a client that stops taking its response --------------------

class BigBody(lk.OneShotServer):
    """HTTP upstream on 127.0.0.2:0 answering one request with n bytes, with
    a Content-Length (spliced by the proxy) or chunked (copied). self.cut is
    set when the proxy closes the connection before the body is sent."""

    def __init__(self, kind, n):
        self.kind, self.n, self.cut = kind, n, threading.Event()
        super().__init__("127.0.0.2")

    def handle(self, c):
        lk.read_http_head(c)
        c.settimeout(30)
        block = b"b" * 65536
        try:
            if self.kind == "length":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.n)
            else:
                c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(self.n // len(block)):
                c.sendall(block if self.kind == "length" else b"10000\r\n" + block + b"\r\n")
            if self.kind != "length":
                c.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.cut.set()
            return
        self.stop.wait(30)


def _get_big(f):
    s = socket.create_connection(f.addr, timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /big HTTP/1.1\r\nHost: %s\r\n\r\n" % f.host.encode())
    line, _, rest = lk.read_http_head(s)
    assert line.startswith("HTTP/1.1 200"), line
    return s, len(rest)


def _read_upto(s, got, upto):
    while got < upto:
        b = s.recv(min(1 << 20, upto - got))
        if not b:
            break
        got += len(b)
    return got


def _read_to_close(s):
    n = 0
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                return n
            n += len(b)
    except ConnectionResetError:
        return n


def _cut_and_serving(f, s):
    """After a client was cut: the log says why and the front still serves."""
    s.close()
    assert "(send timeout)" in f.log()
    assert f.check() == 200


@pytest.mark.parametrize("body", ["length", "chunked"])
@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_client_that_stops_reading_is_cut_at_the_send_timeout(linkup_bin, env, tmp_path,
                                                              kind, body):
    """LINKUP_SEND_TIMEOUT_MS: a client that takes nothing of a pending
    response for that long loses its connection, and the upstream
    connection is closed with it (nothing left waiting for ever)."""
    n = 256 * lk.MIB
    up = BigBody(body, n)
    f = lk.Front(kind, linkup_bin, dict(env, LINKUP_SEND_TIMEOUT_MS="700"), tmp_path, up.url,
                 name="slowreader")
    try:
        s, got = _get_big(f)
        got = _read_upto(s, got, lk.MIB)
        t0 = time.monotonic()
        assert up.cut.wait(10), "the upstream connection was not closed"
        # Not before the timeout: the last byte the client took (t0) starts it.
        assert time.monotonic() - t0 >= 0.6
        assert got + _read_to_close(s) < n
        _cut_and_serving(f, s)
    finally:
        up.close()
        assert f.stop() == 0, f.log()[-2000:]


@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_pauses_shorter_than_the_send_timeout_get_every_byte(linkup_bin, env, tmp_path, kind):
    """Three pauses of 500 ms under a 1 s send timeout, 8 MiB read after each
    (a socket is writable again only once a third of its send buffer is
    free): the whole 32 MiB body arrives."""
    n = 32 * lk.MIB
    up = BigBody("length", n)
    f = lk.Front(kind, linkup_bin, dict(env, LINKUP_SEND_TIMEOUT_MS="1000"), tmp_path, up.url,
                 name="pauser")
    try:
        s, got = _get_big(f)
        for i in range(1, 4):
            time.sleep(0.5)
            got = _read_upto(s, got, i * 8 * lk.MIB)
        assert _read_upto(s, got, n) == n
        assert not up.cut.is_set()
        assert "(send timeout)" not in f.log()
        s.close()
    finally:
        up.close()
        assert f.stop() == 0, f.log()[-2000:]


@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_websocket_client_that_stops_reading_is_cut_at_the_send_timeout(linkup_bin, env,
                                                                        tmp_path, kind):
    """The same for a WebSocket: an upstream flooding a client that reads
    nothing ends with both connections closed, not a paused tunnel held
    open for ever."""
    up = WsFlood("flood")
    f = lk.Front(kind, linkup_bin, dict(env, LINKUP_SEND_TIMEOUT_MS="700"), tmp_path, up.url,
                 name="wsslow")
    try:
        s = _ws_connect(f)
        assert up.done.wait(20)
        s.settimeout(10)
        _read_to_close(s)  # EOF or reset, not a read timeout
        _cut_and_serving(f, s)
    finally:
        up.close()
        assert f.stop() == 0, f.log()[-2000:]


def test_tls_client_that_stops_reading_is_cut_at_the_send_timeout(linkup_bin, env, tmp_path,
                                                                  fake_worker):
    """The same over the local server's HTTPS listener (OpenSSL bufferevent)."""
    import ssl
    up = BigBody("length", 256 * lk.MIB)
    certs = tmp_path / "certs"
    env = dict(env, LINKUP_DNS_ADDR="off", LINKUP_SEND_TIMEOUT_MS="700")
    srv = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url,
                                "--worker-token", "token123", "--https", "127.0.0.1:0",
                                "--certs-dir", str(certs), log_path=str(tmp_path / "server.log"),
                                wanted=("HTTP", "HTTPS"))
    try:
        body = lk.session_body("tlsslow", {"frontend": up.url},
                               [("example.com", "frontend", None)])
        assert lk.post_json(srv.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
        ctx = ssl.create_default_context(cafile=str(certs / "linkup_ca.cert.pem"))
        raw = socket.create_connection(srv.addrs["HTTPS"], timeout=10)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s = ctx.wrap_socket(raw, server_hostname="tlsslow.example.com")
        s.sendall(b"GET /big HTTP/1.1\r\nHost: tlsslow.example.com\r\n\r\n")
        line, _, rest = lk.read_http_head(s)
        assert line.startswith("HTTP/1.1 200"), line
        got = _read_upto(s, len(rest), lk.MIB)
        assert up.cut.wait(10), "the upstream connection was not closed"
        try:
            got += _read_to_close(s)
        except (ssl.SSLError, OSError):
            pass  # a close without close_notify is what a cut looks like
        assert got < 256 * lk.MIB
        s.close()
        assert "(send timeout)" in open(srv.log_path).read()
    finally:
        up.close()
        code, _ = lk.stop_gracefully(srv)
        assert code == 0, open(srv.log_path).read()[-2000:]


def test_worker_json_body_limit_configured(front_factory):
    """LINKUP_MAX_JSON_BODY on the worker (docs/worker.md): a declared body
    of exactly the limit is read, one byte more is 413."""
    f = front_factory("worker", env={"LINKUP_MAX_JSON_BODY": "1000"})

    def post(n):
        body = b"{" + b" " * (n - 2) + b"}"
        got, _ = lk.raw_exchange(f.addr, b"POST /linkup/v2/sessions/preview HTTP/1.1\r\n"
                                 b"Host: localhost\r\nAuthorization: Bearer token123\r\n"
                                 b"Content-Type: application/json\r\nConnection: close\r\n"
                                 b"Content-Length: %d\r\n\r\n" % n + body, timeout=5)
        return lk.parse_responses(got)[0]

    assert post(1000).status == 422
    r = post(1001)
    assert r.status == 413 and r.body == b"Failed to buffer the request body: length limit exceeded"


@pytest.mark.parametrize("kind", BOTH_KNOBS)
def test_json_body_limit_at_its_maximum_takes_bodies(front_factory, kind):
    """LINKUP_MAX_JSON_BODY=18446744073709551615, the top of its documented
    range: bodies are read (the one byte past the limit that tells a body
    over it must not wrap to no room at all)."""
    f = front_factory(kind, env={"LINKUP_MAX_JSON_BODY": "18446744073709551615",
                                 "LINKUP_HEAD_TIMEOUT_MS": "3000"})
    path, auth = ((b"/linkup/v2/sessions/preview", b"Authorization: Bearer token123\r\n")
                  if kind == "worker" else (b"/linkup/sessions/preview", b""))
    body = b"{" + b" " * 98 + b"}"
    got, _ = lk.raw_exchange(f.addr, b"POST %s HTTP/1.1\r\nHost: localhost\r\n%s"
                             b"Content-Type: application/json\r\nConnection: close\r\n"
                             b"Content-Length: 100\r\n\r\n" % (path, auth) + body, timeout=5)
    assert lk.parse_responses(got)[0].status == 422, got[:300]


@pytest.mark.parametrize("kind", BOTH_KNOBS)
@pytest.mark.parametrize("name,value,top", [
    ("LINKUP_HEAD_TIMEOUT_MS", "0", "4294967295"),
    ("LINKUP_IDLE_TIMEOUT_MS", "4294967296", "4294967295"),
    ("LINKUP_MAX_HEADERS", "10001", "10000"),
    ("LINKUP_MAX_TARGET", "-1", "4194304"),
    ("LINKUP_MAX_CONNS", "abc", "18446744073709551615"),
    ("LINKUP_MAX_JSON_BODY", "1e3", "18446744073709551615"),
])
def test_bad_limit_value_is_ignored_with_a_warning(front_factory, kind, name, value, top):
    """docs/worker.md "Limits and timeouts": a value that is no decimal from 1
    to N keeps the default, with one WARN line naming it."""
    f = front_factory(kind, env={name: value})
    assert f.check() == 200
    assert f"WARN] ignoring {name}={value}: expected a number from 1 to {top}" in f.log(), f.log()
