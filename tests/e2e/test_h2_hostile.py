"""HTTP/2 (h2c, prior knowledge) under hostile clients, against both public
servers (the local server with a fake worker, and the worker), each proxying
session `smug` to a recording upstream (raw_fronts): malformed requests are
stream or connection errors that never reach the upstream (RFC 9113 §8.1.1,
§8.2, §8.3), resource abuse stays bounded (§5.1.2, §6.5.2, §6.9, §10.5),
and odd-but-legal input still works. Raw frames; the answers' header blocks
are decoded with libnghttp2's inflater (test_h2_websocket_edges.H2D)."""
import socket
import time

import pytest

import lk
import raw_fronts
from raw_fronts import fronts, upstream  # noqa: F401 (fixtures)
from test_h2_websocket import (ACK, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PREFACE, RST,
                               SETTINGS, WINDOW_UPDATE, frame, hpack)
from test_h2_websocket_edges import H2D, HpackDecoder

PRIORITY, PING, CONTINUATION = 2, 6, 9
PADDED, PRIORITY_FLAG = 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, REFUSED_STREAM = 0, 1, 3, 7


@pytest.fixture(params=("server", "worker"))
def front(request, fronts):
    return fronts(request.param)


def rss_growth_limit_kib(front):
    """How much a flood may grow the server's RSS: 64 MiB, or 400 MiB under
    ASan, whose quarantine keeps freed chunks (up to 256 MiB) resident."""
    return 400 * 1024 if lk.is_sanitized(front.proc.popen.args[0]) else 64 * 1024


def dial(front, timeout=10):
    return H2D(socket.create_connection(front.addr, timeout=timeout))


def req_fields(front, path, method="GET"):
    return [(":method", method), (":scheme", "http"), (":path", path),
            (":authority", front.host)]


def outcome(c, sid):
    """Frames until stream sid ends: ("end", status), ("rst", code),
    ("goaway", code) or ("closed", None)."""
    for _ in range(100000):
        if sid in c.ended:
            return "end", dict(c.fields.get(sid, ())).get(":status")
        try:
            ftype, _, got, payload = c.next_frame()
        except (EOFError, ConnectionResetError, BrokenPipeError):
            return "closed", None
        if ftype == RST and got == sid:
            return "rst", int.from_bytes(payload[:4], "big")
        if ftype == GOAWAY:
            return "goaway", int.from_bytes(payload[4:8], "big")
    raise AssertionError("stream did not end")


def good_get(front, c, sid, path):
    """A good GET on stream sid of c: 200 with the upstream's answer."""
    c.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid, hpack(req_fields(front, path))))
    assert outcome(c, sid) == ("end", "200")
    assert c.data[sid].startswith(b"ok ")


def reached(upstream, before):
    return [r["target"] for r in upstream.requests[before:]]


def bad_stream(front, upstream, fields, data=(), kind="stream"):
    """Sends a malformed request (fields, then DATA frames (payload, flags))
    on stream 1: it must be reset with PROTOCOL_ERROR (kind "stream"; the
    connection then still serves stream 3) or end the connection (kind
    "conn"), and nothing reaches the upstream."""
    before = len(upstream.requests)
    c = dial(front)
    flags = END_HEADERS | (0 if data else END_STREAM)
    c.sock.sendall(frame(HEADERS, flags, 1, hpack(fields)) +
                   b"".join(frame(DATA, fl, 1, p) for p, fl in data))
    got = outcome(c, 1)
    if kind == "stream":
        assert got == ("rst", PROTOCOL_ERROR)
        good_get(front, c, 3, "/good")
        assert reached(upstream, before) == ["/good"]
    else:
        assert got in (("goaway", PROTOCOL_ERROR), ("closed", None)), got
        c.sock.close()
        c = dial(front)
        good_get(front, c, 1, "/good")
        assert reached(upstream, before) == ["/good"]
    c.sock.close()


# ---- 1. malformed requests (RFC 9113 §8.1.1, §8.2, §8.3) -----------------

BAD_FIELDS = {
    "uppercase-name": [("X-Upper", "1")],
    "connection": [("connection", "close")],
    "keep-alive": [("keep-alive", "timeout=5")],
    "proxy-connection": [("proxy-connection", "keep-alive")],
    "transfer-encoding": [("transfer-encoding", "chunked")],
    "upgrade": [("upgrade", "websocket")],
    "te-gzip": [("te", "gzip")],
    "value-cr": [("x-a", "a\rb")],
    "value-lf": [("x-a", "a\nb")],
    "value-nul": [("x-a", "a\0b")],
    "value-leading-space": [("x-a", " a")],
    "value-trailing-space": [("x-a", "a ")],
    "value-trailing-tab": [("x-a", "a\t")],
    "name-space": [("x a", "1")],
    "name-colon-inside": [("x:a", "1")],
    "name-empty": [("", "1")],
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_malformed_field_is_a_stream_error(front, upstream, case):
    bad_stream(front, upstream, req_fields(front, f"/bad/{case}") + BAD_FIELDS[case])


def _pseudo_cases(host):
    m, s, a = (":method", "GET"), (":scheme", "http"), (":authority", host)
    p = (":path", "/bad/pseudo")
    return {
        "after-regular": [m, s, a, ("x-a", "1"), p],
        "duplicate-path": [m, s, p, p, a],
        "duplicate-method": [m, m, s, p, a],
        "unknown": [m, s, p, a, (":foo", "1")],
        "status": [m, s, p, a, (":status", "200")],
        "no-method": [s, p, a],
        "no-scheme": [m, p, a],
        "no-path": [m, s, a],
        "empty-path": [m, s, (":path", ""), a],
        "relative-path": [m, s, (":path", "bad/pseudo"), a],
        "asterisk-get": [m, s, (":path", "*"), a],
        "protocol-on-get": [m, s, p, a, (":protocol", "websocket")],
    }


@pytest.mark.parametrize("case", sorted(_pseudo_cases("x")))
def test_malformed_pseudo_headers_are_a_stream_error(front, upstream, case):
    bad_stream(front, upstream, _pseudo_cases(front.host)[case])


def test_connect_is_405_with_allow_as_over_http1(front, upstream):
    """docs/reliability.md: CONNECT gets 405 with Allow from both servers,
    the same answer as on HTTP/1.1; it never reaches the upstream."""
    before = len(upstream.requests)
    c = dial(front)
    c.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                         hpack([(":method", "CONNECT"), (":authority", "example.com:443")])))
    assert outcome(c, 1) == ("end", "405")
    fields = dict(c.fields[1])
    assert fields["allow"] == "GET, POST, PUT, PATCH, DELETE, HEAD, TRACE, OPTIONS"
    assert c.data[1] == b"CONNECT is not supported by this server"
    good_get(front, c, 3, "/after-connect")
    assert reached(upstream, before) == ["/after-connect"]
    c.sock.close()


CL_XFAIL = pytest.mark.xfail(
    strict=True, reason="the head (and the DATA up to the error) is streamed to the engine "
                        "before the body is complete: the upstream sees a truncated request "
                        "and a closed connection, as for an HTTP/1.1 client gone mid-body")


@CL_XFAIL
def test_content_length_above_the_data_is_a_stream_error(front, upstream):
    bad_stream(front, upstream, req_fields(front, "/bad/cl-more", "POST") +
               [("content-length", "10")], [(b"x" * 20, END_STREAM)])


@CL_XFAIL
def test_content_length_below_the_data_is_a_stream_error(front, upstream):
    bad_stream(front, upstream, req_fields(front, "/bad/cl-less", "POST") +
               [("content-length", "10")], [(b"x" * 5, END_STREAM)])


def test_authority_wins_over_host(front, upstream):
    """RFC 9113 §8.3.1: a host field that disagrees with :authority is
    ignored; the session is the one :authority names."""
    before = len(upstream.requests)
    c = dial(front)
    fields = req_fields(front, "/authority") + [("host", "nosuch.example.com")]
    c.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack(fields)))
    assert outcome(c, 1) == ("end", "200")
    assert reached(upstream, before) == ["/authority"]
    # and the other way round: :authority names no session, host does
    fields = [(":method", "GET"), (":scheme", "http"), (":path", "/authority2"),
              (":authority", "nosuch.example.com"), ("host", front.host)]
    c.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 3, hpack(fields)))
    kind, status = outcome(c, 3)
    assert kind == "end" and status != "200"
    assert reached(upstream, before) == ["/authority"]
    c.sock.close()


def test_get_with_a_body_is_forwarded_as_over_http1(front, upstream):
    """A GET may carry content (RFC 9110 §9.3.1: no defined semantics, not
    malformed); it streams with its body, as over HTTP/1.1."""
    before = len(upstream.requests)
    c = dial(front)
    c.sock.sendall(frame(HEADERS, END_HEADERS, 1, hpack(req_fields(front, "/getbody"))) +
                   frame(DATA, END_STREAM, 1, b"hello"))
    assert outcome(c, 1) == ("end", "200")
    reqs = upstream.requests[before:]
    assert [(r["method"], r["target"], r["body"]) for r in reqs] == [("GET", "/getbody", b"hello")]
    c.sock.close()


# ---- 3. odd but legal -----------------------------------------------------

def post(front, c, sid, path, frames, extra=()):
    c.sock.sendall(frame(HEADERS, END_HEADERS, sid, hpack(req_fields(front, path, "POST") +
                                                          list(extra))) + b"".join(frames))
    return outcome(c, sid)


def test_request_trailers_end_the_request(front, upstream):
    before = len(upstream.requests)
    c = dial(front)
    got = post(front, c, 1, "/trailers", [frame(DATA, 0, 1, b"body!"),
                                          frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                                hpack([("x-checksum", "abc")]))],
               [("te", "trailers")])
    assert got == ("end", "200")
    reqs = upstream.requests[before:]
    assert [(r["target"], r["body"]) for r in reqs] == [("/trailers", b"body!")]
    c.sock.close()


def test_padded_data_and_empty_end_stream(front, upstream):
    before = len(upstream.requests)
    c = dial(front)
    pad = bytes([200]) + b"abc" + b"\0" * 200
    got = post(front, c, 1, "/padded", [frame(DATA, PADDED, 1, pad), frame(DATA, 0, 1, b"def"),
                                        frame(DATA, END_STREAM, 1, b"")],
               [("content-length", "6")])
    assert got == ("end", "200")
    reqs = upstream.requests[before:]
    assert [(r["target"], r["body"]) for r in reqs] == [("/padded", b"abcdef")]
    c.sock.close()


def test_priority_unknown_frames_and_no_header_table(front, upstream):
    """PRIORITY frames (also on idle streams) and a HEADERS with priority,
    a frame of unknown type (ignored, RFC 9113 §4.1, §5.5), and
    SETTINGS_HEADER_TABLE_SIZE 0 (our answers then use no dynamic table)."""
    before = len(upstream.requests)
    c = dial(front)
    c.sock.sendall(frame(SETTINGS, 0, 0, (1).to_bytes(2, "big") + (0).to_bytes(4, "big")) +
                   frame(PRIORITY, 0, 7, (0).to_bytes(4, "big") + b"\x10") +
                   frame(0xfa, 0x5, 0, b"whatever") + frame(0xfa, 0, 1, b"x" * 100))
    prio = (0).to_bytes(4, "big") + b"\x20"
    for sid in (1, 3, 5):
        c.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, sid,
                             prio + hpack(req_fields(front, f"/prio{sid}"))) +
                       frame(PRIORITY, 0, sid, (0).to_bytes(4, "big") + b"\x01") +
                       frame(0xfb, 0, sid, b"?"))
        assert outcome(c, sid) == ("end", "200")
    assert reached(upstream, before) == ["/prio1", "/prio3", "/prio5"]
    c.sock.close()


# ---- 2. resource abuse (RFC 9113 §5.1.2, §6.5.2, §6.9, §10.5) -------------

def ends(c, limit=1000000):
    """Reads frames (writing nothing) until the server ends the connection;
    returns the last GOAWAY's error code, or None for a bare close. A socket
    timeout (the connection kept) fails the test."""
    code = None
    for _ in range(limit):
        while len(c.buf) >= 9 and len(c.buf) >= 9 + int.from_bytes(c.buf[:3], "big"):
            n = int.from_bytes(c.buf[:3], "big")
            if c.buf[3] == GOAWAY:
                code = int.from_bytes(c.buf[13:17], "big")
            c.buf = c.buf[9 + n:]
        try:
            chunk = c.sock.recv(65536)
        except ConnectionResetError:
            return code
        if not chunk:
            return code
        c.buf += chunk
    raise AssertionError("too many frames")


def alive(front, upstream):
    c = dial(front)
    good_get(front, c, 1, "/alive")
    c.sock.close()


def blast(c, chunk, total):
    """Sends chunk repeatedly (total bytes at most) until the server stops
    taking them or closes; returns the bytes sent."""
    sent = 0
    c.sock.settimeout(3)
    try:
        while sent < total:
            c.sock.sendall(chunk)
            sent += len(chunk)
    except (socket.timeout, BrokenPipeError, ConnectionResetError):
        pass
    c.sock.settimeout(10)
    return sent


def test_rapid_reset_ends_the_connection(front, upstream):
    """CVE-2023-44487: streams opened and reset at once, thousands."""
    rss0 = lk.rss_kib(front.proc.popen.pid)
    c = dial(front)
    batch = b""
    for i in range(5000):
        sid = 1 + 2 * i
        batch += (frame(HEADERS, END_HEADERS | END_STREAM, sid,
                        hpack(req_fields(front, "/rr"))) +
                  frame(RST, 0, sid, (8).to_bytes(4, "big")))
    blast(c, batch, len(batch))
    assert ends(c) is not None
    c.sock.close()
    alive(front, upstream)
    assert lk.rss_kib(front.proc.popen.pid) < rss0 + rss_growth_limit_kib(front)


@pytest.mark.parametrize("payload", ("fields", "empty"))
def test_continuation_flood_ends_the_connection(front, upstream, payload):
    """CVE-2024-27316 class: a header block that never ends."""
    rss0 = lk.rss_kib(front.proc.popen.pid)
    c = dial(front)
    c.sock.sendall(frame(HEADERS, 0, 1, hpack(req_fields(front, "/cont"))))
    cont = hpack([("x-a", "a" * 1000)] * 10) if payload == "fields" else b""
    blast(c, frame(CONTINUATION, 0, 1, cont) * 100, 200 * 1024 * 1024)
    ends(c)
    c.sock.close()
    alive(front, upstream)
    assert lk.rss_kib(front.proc.popen.pid) < rss0 + rss_growth_limit_kib(front)


def test_header_block_over_the_limits(front, upstream):
    """A single header block far over the head limits: 431 or a reset,
    and the connection still serves."""
    before = len(upstream.requests)
    c = dial(front)
    big = [(f"x-{i}", "v" * 4000) for i in range(100)]
    block = hpack(req_fields(front, "/huge") + big)
    parts = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    c.sock.sendall(frame(HEADERS, END_STREAM, 1, parts[0]) +
                   b"".join(frame(CONTINUATION, END_HEADERS if i == len(parts) - 1 else 0, 1, p)
                            for i, p in enumerate(parts[1:], 1)))
    got = outcome(c, 1)
    assert got in (("end", "431"), ("rst", PROTOCOL_ERROR)) or got[0] in ("goaway", "closed"), got
    if got[0] not in ("goaway", "closed"):
        good_get(front, c, 3, "/good")
    c.sock.close()
    assert "/huge" not in reached(upstream, before)


@pytest.mark.parametrize("kind", ("settings", "ping"))
def test_control_frame_flood_without_reading(quick, upstream, kind):
    """SETTINGS or PING frames by the hundred thousand, the ACKs never read
    (RFC 9113 §10.5): the server stops reading once 1 MiB of ACKs waits,
    the send timeout ends the connection, memory stays bounded."""
    front = quick
    rss0 = lk.rss_kib(front.proc.popen.pid)
    c = dial(front)
    one = frame(SETTINGS, 0, 0, (4).to_bytes(2, "big") + (65535).to_bytes(4, "big")) \
        if kind == "settings" else frame(PING, 0, 0, b"12345678")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    blast(c, one * 1000, 100 * 1024 * 1024)
    ends(c)
    c.sock.close()
    alive(front, upstream)
    assert lk.rss_kib(front.proc.popen.pid) < rss0 + rss_growth_limit_kib(front)


def test_window_update_overflow(front, upstream):
    """RFC 9113 §6.9.1: a window above 2^31-1 is a FLOW_CONTROL_ERROR, of
    the stream (RST_STREAM) or of the connection (GOAWAY)."""
    c = dial(front)
    c.sock.sendall(frame(HEADERS, END_HEADERS, 1, hpack(req_fields(front, "/wu", "POST"))) +
                   frame(WINDOW_UPDATE, 0, 1, (0x7fffffff).to_bytes(4, "big")))
    assert outcome(c, 1) == ("rst", FLOW_CONTROL_ERROR)
    good_get(front, c, 3, "/good")
    c.sock.sendall(frame(WINDOW_UPDATE, 0, 0, (0x7fffffff).to_bytes(4, "big")))
    assert ends(c) == FLOW_CONTROL_ERROR
    c.sock.close()


@pytest.mark.parametrize("acked", (
    False, pytest.param(True, marks=pytest.mark.xfail(
        strict=True, reason="nghttp2 1.52 makes a stream over an acknowledged limit a "
                            "connection error (GOAWAY PROTOCOL_ERROR), not REFUSED_STREAM"))))
def test_streams_over_the_advertised_limit_are_refused(front, upstream, acked):
    """RFC 9113 §5.1.2: a stream over SETTINGS_MAX_CONCURRENT_STREAMS (100)
    is refused (REFUSED_STREAM); the others go on."""
    c = dial(front)
    if acked:
        good_get(front, c, 1, "/good")  # our SETTINGS acknowledged by now
    first = 3 if acked else 1
    out = b""
    for i in range(101):
        out += frame(HEADERS, END_HEADERS, first + 2 * i,
                     hpack(req_fields(front, f"/open{i}", "POST") + [("content-length", "1")]))
    c.sock.sendall(out)
    last = first + 200
    assert outcome(c, last) == ("rst", REFUSED_STREAM)
    c.sock.sendall(frame(DATA, END_STREAM, first, b"x"))
    assert outcome(c, first) == ("end", "200")
    c.sock.close()


@pytest.fixture(scope="module")
def quick_fronts(linkup_bin, tmp_path_factory, upstream):
    """As raw_fronts.fronts, with LINKUP_SEND_TIMEOUT_MS=1500."""
    yield from raw_fronts.front_factory(linkup_bin, tmp_path_factory.mktemp("quick"),
                                        upstream.url, LINKUP_SEND_TIMEOUT_MS="1500")


@pytest.fixture(params=("server", "worker"))
def quick(request, quick_fronts):
    return quick_fronts(request.param)


class Stingy(H2D):
    """H2D over a socket that already sent its preface and SETTINGS, which
    gives no window back."""

    def __init__(self, sock):
        self.hd, self.fields = HpackDecoder(), {}
        self.sock, self.buf, self.data, self.ended, self.server_settings = \
            sock, b"", {}, set(), {}

    def _note(self, ftype, flags, sid, payload):
        if ftype == HEADERS:
            self.fields[sid] = self.hd.decode(payload)
        if ftype == SETTINGS and not flags & ACK:
            self.sock.sendall(frame(SETTINGS, ACK, 0))
        if ftype == DATA:
            self.data[sid] = self.data.get(sid, b"") + payload
        if ftype in (DATA, HEADERS) and flags & END_STREAM:
            self.ended.add(sid)


@pytest.mark.parametrize("closed", ("stream", "connection"))
def test_window_never_opened_ends_the_stream(quick, upstream, closed):
    """A client that never opens its receive window (the stream's: initial
    window 0; or the connection's: never a WINDOW_UPDATE) while 1 MiB comes:
    the send timeout resets the stream (CANCEL) and the connection goes on."""
    s = socket.create_connection(quick.addr, timeout=10)
    window = 0 if closed == "stream" else 1 << 20
    s.sendall(PREFACE + frame(SETTINGS, 0, 0, (4).to_bytes(2, "big") + window.to_bytes(4, "big")) +
              frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack(req_fields(quick, "/big/1"))))
    c = Stingy(s)
    got = outcome(c, 1)
    assert got == ("rst", 8), got  # CANCEL
    assert len(c.data.get(1, b"")) < 1 << 20
    # the connection still serves (a window for the answer this time)
    s.sendall(frame(SETTINGS, 0, 0, (4).to_bytes(2, "big") + (1 << 20).to_bytes(4, "big")) +
              frame(WINDOW_UPDATE, 0, 0, (1 << 24).to_bytes(4, "big")))
    good_get(quick, c, 3, "/good")
    s.close()


# ---- an answer that leaves before the request's end ---------------------------

@pytest.fixture(scope="module")
def json_fronts(linkup_bin, tmp_path_factory, upstream):
    yield from raw_fronts.front_factory(linkup_bin, tmp_path_factory.mktemp("json_fronts"),
                                        upstream.url, LINKUP_MAX_JSON_BODY="1000")


def _json_post_start(front):
    """A session upload over LINKUP_MAX_JSON_BODY on a new connection: the
    head and its first 1500 bytes, the stream left open. Returns the client."""
    if front.kind == "worker":
        path, extra = "/linkup/v2/sessions/preview", [("authorization", "Bearer token123")]
    else:
        path, extra = "/linkup/sessions/preview", []
    c = dial(front)
    fields = req_fields(front, path, "POST") + [("content-type", "application/json")] + extra
    c.sock.sendall(frame(HEADERS, END_HEADERS, 1, hpack(fields)) +
                   frame(DATA, 0, 1, b"{" + b" " * 1499))
    for _ in range(1000):
        if 1 in c.ended:
            break
        c.next_frame()
    assert dict(c.fields[1]).get(":status") == "413"
    return c


def _frames_for(c, seconds):
    """Frame types read for about `seconds` (RST frames as ("rst", sid, code))."""
    got, end = [], time.monotonic() + seconds
    c.sock.settimeout(0.1)
    while time.monotonic() < end:
        try:
            ftype, _, sid, payload = c.next_frame()
        except socket.timeout:
            continue
        if ftype == RST:
            got.append(("rst", sid, int.from_bytes(payload[:4], "big")))
    c.sock.settimeout(10)
    return got


@pytest.mark.parametrize("kind", ("server", "worker"))
def test_early_answer_lets_the_client_finish_its_request(json_fronts, upstream, kind):
    """RFC 9113 §8.1: an answer may leave before the request's end (413 here).
    The rest of the request is read and dropped for a while, as the engine
    does for an HTTP/1.1 client, so a client that finishes sending sees no
    reset (curl before 8.x fails on one) and the connection goes on."""
    front = json_fronts(kind)
    c = _json_post_start(front)
    c.sock.sendall(b"".join(frame(DATA, 0, 1, b" " * 16000) for _ in range(8)) +
                   frame(DATA, END_STREAM, 1, b"}"))
    assert _frames_for(c, 0.5) == []
    good_get(front, c, 3, "/after-early")
    c.sock.close()


@pytest.mark.parametrize("kind", ("server", "worker"))
def test_early_answer_then_a_silent_client_is_reset_with_no_error(json_fronts, kind):
    """A client that neither sends nor ends its request after the answer is
    asked to stop with RST_STREAM NO_ERROR once the drain time (2 s) is over."""
    c = _json_post_start(json_fronts(kind))
    t0 = time.monotonic()
    got = _frames_for(c, 4)
    assert got == [("rst", 1, NO_ERROR)]
    assert time.monotonic() - t0 > 1.5
    c.sock.close()
