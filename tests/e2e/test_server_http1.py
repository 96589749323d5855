"""The HTTP/1 engine on a plain port, through BOTH public servers (`linkup
server` with a fake worker, and `linkup worker`; they share
lib/net/http_server.c): bytes that cannot start a request are answered at
once, valid requests are never refused early however they are split.

Every socket has a timeout well under the 30 s head timeout, so a server that
waits for a CRLF fails the test instead of hanging it."""
import email.utils
import os
import socket
import ssl
import time

import pytest

import lk
from raw_fronts import fronts, upstream  # noqa: F401 (pytest fixtures)

KINDS = ["server", "worker"]


def client_hello():
    """The first flight of a real TLS client (Python's ssl), made in memory."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="hone.example.com")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = out.read()
    assert hello[:2] == b"\x16\x03" and b"\r\n" not in hello[:5]
    return hello


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", ["client_hello", "short_record", "binary"])
def test_bytes_that_cannot_start_a_request_get_400_at_once(fronts, upstream, kind, case):
    """RFC 9110 §5.6.2: the method is a token; 0x16 (a TLS handshake record)
    cannot be part of one, so the answer does not wait for a CRLF."""
    front = fronts(kind)
    data = {"client_hello": client_hello(), "short_record": b"\x16\x03\x01\x00\x05hello",
            "binary": b"\x00\x01\x02\x03"}[case]
    n0 = len(upstream.requests)
    got, closed = lk.raw_exchange(front.addr, data, timeout=5)
    rs = lk.parse_responses(got)
    assert [r.status for r in rs] == [400], got[:300]
    assert rs[0].body == b"invalid request method"
    assert rs[0].header("connection") == "close"
    assert closed, "the connection must close after the 400"
    assert upstream.requests[n0:] == []
    assert front.check() == 200


@pytest.mark.parametrize("kind", KINDS)
def test_tls_client_on_plain_port_fails_its_handshake_at_once(fronts, kind):
    """A TLS client that dialled the plain port sees its handshake fail (the
    400 is not a TLS record) instead of waiting for the head timeout."""
    front = fronts(kind)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(front.addr, timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            with ctx.wrap_socket(raw, server_hostname="hone.example.com") as tls:
                tls.recv(1)


def send_byte_by_byte(addr, data, timeout=5):
    """Sends data one byte per segment, 2 ms apart, so the bytes arrive in
    separate reads; then reads until the server closes or timeout passes."""
    return lk.raw_exchange(addr, [data[i:i + 1] for i in range(len(data))], timeout=timeout,
                           pause=0.002, nodelay=True)


VALID = [
    ("origin_form", b"GET /a HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n", ["/a"]),
    ("leading_empty_lines", b"\r\n\r\nGET /b HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
     ["/b"]),
    ("absolute_form", b"GET http://HOST/c?q=1 HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
     ["/c?q=1"]),
    ("pipelined", b"GET /d1 HTTP/1.1\r\nHost: HOST\r\n\r\n"
                  b"GET /d2 HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n", ["/d1", "/d2"]),
    # SPEC §3.5/§3.6: the WHATWG path keeps its empty segments, a leading "//" too (as the
    # original's url crate and hyper send it); Python's http.server would fold it to "/".
    ("empty_segments", b"GET //e//f/ HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
     ["//e//f/"]),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case,data,targets", VALID, ids=[c[0] for c in VALID])
def test_valid_requests_split_byte_by_byte_are_served(fronts, upstream, kind, case, data,
                                                      targets):
    front = fronts(kind)
    n0 = len(upstream.requests)
    got, closed = send_byte_by_byte(front.addr, data.replace(b"HOST", front.host.encode()))
    rs = lk.parse_responses(got)
    assert [r.status for r in rs] == [200] * len(targets), got[:500]
    assert closed
    time.sleep(0.2)  # let the upstream thread record what it got
    assert [r["target"] for r in upstream.requests[n0:]] == targets


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: HOST\r\n\r\n"

# Heads test_smuggling.py does not cover: each is refused and closed, and
# neither it nor the request after it reaches the upstream (RFC 9112 §2.2,
# §3, §5.2, §11.2; DESIGN §9 for the 431).
REFUSED = [
    ("ws_before_first_field", b"GET / HTTP/1.1\r\n Host: HOST\r\n\r\n", 400),
    ("lf_only_empty_line", b"GET / HTTP/1.1\r\nHost: HOST\r\n\n", 400),
    ("bare_cr_in_target", b"GET /a\rb HTTP/1.1\r\nHost: HOST\r\n\r\n", 400),
    ("bare_lf_after_empty_lines", b"\n\nGET / HTTP/1.1\r\nHost: HOST\r\n\r\n", 400),
    ("nul_in_method", b"G\x00T / HTTP/1.1\r\nHost: HOST\r\n\r\n", 400),
    ("space_before_method", b" GET / HTTP/1.1\r\nHost: HOST\r\n\r\n", 400),
    ("trailing_space_after_version", b"GET / HTTP/1.1 \r\nHost: HOST\r\n\r\n", 400),
    ("tab_separator", b"GET\t/ HTTP/1.1\r\nHost: HOST\r\n\r\n", 400),
    ("nul_in_host", b"GET / HTTP/1.1\r\nHost: HO\x00ST\r\n\r\n", 400),
    ("cl_te_chunked_body_smuggle", b"POST / HTTP/1.1\r\nHost: HOST\r\nContent-Length: 45\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("long_method_431", b"A" * 20000 + b" / HTTP/1.1\r\nHost: HOST\r\n\r\n", 431),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case,data,status", REFUSED, ids=[c[0] for c in REFUSED])
def test_malformed_head_is_refused_and_closed(fronts, upstream, kind, case, data, status):
    front = fronts(kind)
    n0 = len(upstream.requests)
    got, closed = lk.raw_exchange(front.addr, (data + SMUGGLED).replace(
        b"HOST", front.host.encode()), timeout=5)
    rs = lk.parse_responses(got)
    assert [r.status for r in rs] == [status], (case, got[:300])
    assert rs[0].header("connection") == "close"
    assert closed, "the connection must close after a malformed head"
    time.sleep(0.2)  # let the upstream thread record whatever it got
    assert upstream.requests[n0:] == [], "the upstream saw a request"



def own_front(linkup_bin, tmp_path, kind, url):
    """A Front of its own (for an upstream made for one test)."""
    env = dict(os.environ, HOME=str(tmp_path), LINKUP_HOME=str(tmp_path / ".linkup"),
               LINKUP_NO_UPDATE_CHECK="1")
    env.pop("LINKUP_CONFIG", None)
    return lk.Front(kind, linkup_bin, env, tmp_path, url)

@pytest.mark.parametrize("kind", KINDS)
def test_interim_response_drops_fields_its_connection_lists(linkup_bin, tmp_path, kind):
    """RFC 9110 §7.6.1 (SPEC §3.10): a relayed 1xx (103 Early Hints here)
    loses the names its Connection field lists as well as the fixed
    hop-by-hop ones, as a final response does; Link stays."""
    up = lk.ScriptedUpstream(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n"
                             b"Connection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n"
                             b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Hop2\r\n"
                             b"X-Hop2: 1\r\n\r\nok")
    front = own_front(linkup_bin, tmp_path, kind, up.url)
    try:
        got, closed = lk.raw_exchange(front.addr, b"GET / HTTP/1.1\r\nHost: " + front.host.encode()
                                      + b"\r\nConnection: close\r\n\r\n", timeout=5)
        rs = lk.parse_responses(got)
        assert [r.status for r in rs] == [103, 200], got[:500]
        early, final = rs
        assert early.header("link") == "</a.css>; rel=preload"
        for r in (early, final):
            names = [k.lower() for k, _ in r.headers]
            assert not {"x-hop", "x-hop2", "keep-alive"} & set(names), r.headers
        assert final.body == b"ok"
    finally:
        up.close()
        assert front.stop() == 0, front.log()[-3000:]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("upstream_date", [None, "Tue, 01 Dec 2026 00:00:00 GMT"])
def test_forwarded_response_has_one_date(linkup_bin, tmp_path, kind, upstream_date):
    """RFC 9110 §6.6.1: a recipient with a clock appends Date to a response it
    forwards without one (nginx and the original's hyper do); an upstream's
    Date passes unchanged, never doubled."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
    if upstream_date:
        head += f"Date: {upstream_date}\r\n".encode()
    up = lk.ScriptedUpstream(head + b"\r\nok")
    front = own_front(linkup_bin, tmp_path, kind, up.url)
    try:
        got, _ = lk.raw_exchange(front.addr, b"GET / HTTP/1.1\r\nHost: " + front.host.encode()
                                 + b"\r\nConnection: close\r\n\r\n", timeout=5)
        (r,) = lk.parse_responses(got)
        assert r.status == 200 and r.body == b"ok", got[:500]
        dates = r.all("date")
        assert len(dates) == 1, r.headers
        if upstream_date:
            assert dates[0] == upstream_date
        else:
            parsed = email.utils.parsedate_to_datetime(dates[0])
            assert dates[0].endswith(" GMT") and parsed.tzinfo is not None, dates[0]
            assert abs(time.time() - parsed.timestamp()) < 300
    finally:
        up.close()
        assert front.stop() == 0, front.log()[-3000:]
