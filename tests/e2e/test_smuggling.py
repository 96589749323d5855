"""Conformance and request-smuggling suite (issue 9, RFC 9110/9112) through
BOTH public servers: `linkup server` (with a fake worker) and `linkup
worker`. Raw bytes go to the server; a raw recording upstream on 127.0.0.2
(lk.RawRecordingUpstream) proves that no second, smuggled request ever
reaches it. Every socket has a timeout; every server must exit 0 on SIGTERM.

Decisions (docs/reliability.md): CONNECT gets 405 with an Allow header
without CONNECT (RFC 9110 §9.3.6, §15.5.6: these are reverse proxies, not
forward proxies); an HTTP/1.1 request without Host gets 400 (RFC 9112 §3.2).
"""
import socket
import time

import pytest

import lk
from raw_fronts import fronts, upstream  # noqa: F401 (pytest fixtures)

KINDS = ["server", "worker"]
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: HOST\r\n\r\n"

def send(front, data, timeout=3, **kw):
    """Raw bytes with HOST replaced by the session host; returns (responses,
    closed by server, raw bytes)."""
    host = front.host.encode()
    if isinstance(data, list):
        data = [d.replace(b"HOST", host) for d in data]
    else:
        data = data.replace(b"HOST", host)
    got, closed = lk.raw_exchange(front.addr, data, timeout=timeout, **kw)
    return lk.parse_responses(got), closed, got


def new_requests(upstream, n0):
    time.sleep(0.2)  # let the upstream thread record whatever it got
    return upstream.requests[n0:]


# ---- rejected heads: status, connection closed, nothing reaches upstream ----

def _post(*lines, body=b""):
    return b"POST / HTTP/1.1\r\nHost: HOST\r\n" + b"".join(x + b"\r\n" for x in lines) + \
        b"\r\n" + body


REJECTED = [
    # CL.TE / TE.CL: both framings in one request (RFC 9112 §6.1: MUST close).
    ("cl_te", _post(b"Content-Length: 6", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
     400),
    ("te_cl", _post(b"Transfer-Encoding: chunked", b"Content-Length: 4",
                    body=b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"), 400),
    ("dup_cl_differing", _post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"), 400),
    ("cl_list_differing", _post(b"Content-Length: 5, 6", body=b"hello!"), 400),
    ("cl_plus", _post(b"Content-Length: +5", body=b"hello"), 400),
    ("cl_hex", _post(b"Content-Length: 0x5", body=b"hello"), 400),
    ("cl_negative", _post(b"Content-Length: -1"), 400),
    ("cl_overflow", _post(b"Content-Length: 99999999999999999999999"), 400),
    ("cl_empty", _post(b"Content-Length: "), 400),
    # Obfuscated Transfer-Encoding (RFC 9112 §6.1: unknown coding -> 501 or 400+close).
    ("te_xchunked", _post(b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), 400),
    ("te_chunked_identity", _post(b"Transfer-Encoding: chunked, identity", body=b"0\r\n\r\n"),
     400),
    ("te_chunked_twice", _post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked",
                               body=b"0\r\n\r\n"), 400),
    ("te_space_before_colon", _post(b"Transfer-Encoding : chunked", body=b"0\r\n\r\n"), 400),
    ("te_folded_line", _post(b" Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    ("te_http10", b"POST / HTTP/1.0\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n", 400),
    # A coding we do not understand before the final chunked: "SHOULD respond with 501".
    ("te_gzip_chunked", _post(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), 501),
    ("te_identity_chunked", _post(b"Transfer-Encoding: identity, chunked", body=b"0\r\n\r\n"),
     501),
    # obs-fold, bare CR, bare LF (RFC 9112 §5.2, §2.2).
    ("obs_fold", b"GET / HTTP/1.1\r\nHost: HOST\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("bare_cr_in_value", b"GET / HTTP/1.1\r\nHost: HOST\r\nX-A: a\rb\r\n\r\n", 400),
    ("bare_cr_line_end", b"GET / HTTP/1.1\r\nHost: HOST\r\nX-A: a\r\r\nX-B: b\r\n\r\n", 400),
    ("bare_lf", b"GET / HTTP/1.1\nHost: HOST\n\n", 400),
    # Invalid characters in names and values, request line.
    ("nul_in_value", b"GET / HTTP/1.1\r\nHost: HOST\r\nX-A: a\x00b\r\n\r\n", 400),
    ("ctl_in_value", b"GET / HTTP/1.1\r\nHost: HOST\r\nX-A: a\x01b\r\n\r\n", 400),
    ("del_in_value", b"GET / HTTP/1.1\r\nHost: HOST\r\nX-A: a\x7fb\r\n\r\n", 400),
    ("nul_in_name", b"GET / HTTP/1.1\r\nHost: HOST\r\nX\x00A: b\r\n\r\n", 400),
    ("ctl_in_name", b"GET / HTTP/1.1\r\nHost: HOST\r\nX\x01A: b\r\n\r\n", 400),
    ("space_in_name", b"GET / HTTP/1.1\r\nHost: HOST\r\nX A: b\r\n\r\n", 400),
    ("empty_name", b"GET / HTTP/1.1\r\nHost: HOST\r\n: b\r\n\r\n", 400),
    ("nul_in_target", b"GET /a\x00b HTTP/1.1\r\nHost: HOST\r\n\r\n", 400),
    ("two_spaces", b"GET  / HTTP/1.1\r\nHost: HOST\r\n\r\n", 400),
    # HTTP-version (RFC 9112 §2.3): another major version is a 505 (RFC 9110 §15.6.6).
    ("http2_version", b"GET / HTTP/2.0\r\nHost: HOST\r\n\r\n", 505),
    ("http3_version", b"GET / HTTP/3.0\r\nHost: HOST\r\n\r\n", 505),
    ("lowercase_version", b"GET / http/1.1\r\nHost: HOST\r\n\r\n", 400),
    ("two_hosts", b"GET / HTTP/1.1\r\nHost: HOST\r\nHost: evil.example\r\n\r\n", 400),
    # Host = uri-host [":" port] (RFC 9110 §7.2; RFC 9112 §3.2: invalid -> 400).
    ("host_with_path", b"GET /x HTTP/1.1\r\nHost: HOST/evil\r\n\r\n", 400),
    ("host_with_query", b"GET /x HTTP/1.1\r\nHost: HOST?a=b\r\n\r\n", 400),
    ("host_with_userinfo", b"GET /x HTTP/1.1\r\nHost: evil@HOST\r\n\r\n", 400),
    ("host_with_space", b"GET /x HTTP/1.1\r\nHost: HOST x\r\n\r\n", 400),
    ("host_bad_port", b"GET /x HTTP/1.1\r\nHost: HOST:8x\r\n\r\n", 400),
    ("host_bad_ipv6", b"GET /x HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    # request-target forms (RFC 9112 §3.2).
    ("target_relative", b"GET abc HTTP/1.1\r\nHost: HOST\r\n\r\n", 400),
    ("target_query_only", b"GET ?x HTTP/1.1\r\nHost: HOST\r\n\r\n", 400),
    ("target_asterisk_get", b"GET * HTTP/1.1\r\nHost: HOST\r\n\r\n", 400),
    ("target_scheme_no_slashes", b"GET http:x HTTP/1.1\r\nHost: HOST\r\n\r\n", 400),
    # Sizes (DESIGN §9).
    ("target_414", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: HOST\r\n\r\n", 414),
    ("header_line_431", b"GET / HTTP/1.1\r\nHost: HOST\r\nX-A: " + b"a" * 17000 + b"\r\n\r\n",
     431),
    ("head_size_431", b"GET / HTTP/1.1\r\nHost: HOST\r\n" +
     b"".join(b"X-%d: %s\r\n" % (i, b"a" * 8000) for i in range(9)) + b"\r\n", 431),
    ("header_count_431", b"GET / HTTP/1.1\r\nHost: HOST\r\n" +
     b"".join(b"X-%d: a\r\n" % i for i in range(101)) + b"\r\n", 431),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case,data,status", REJECTED, ids=[c[0] for c in REJECTED])
def test_rejected_and_nothing_smuggled(fronts, upstream, kind, case, data, status):
    front = fronts(kind)
    n0 = len(upstream.requests)
    rs, closed, raw = send(front, data + SMUGGLED)
    assert [r.status for r in rs] == [status], (case, raw[:300])
    assert rs[0].header("connection") == "close"
    assert closed, "the connection must close after a framing/syntax error"
    assert new_requests(upstream, n0) == [], "the upstream saw a request"


# ---- accepted framings: exactly the requests the client sent ----------------

ACCEPTED = [
    ("identical_dup_cl", _post(b"Content-Length: 5", b"Content-Length: 5", body=b"hello")),
    ("identical_cl_list", _post(b"Content-Length: 5, 5", body=b"hello")),
    ("te_extra_ows", _post(b"Transfer-Encoding:   chunked", body=b"5\r\nhello\r\n0\r\n\r\n")),
    ("te_tab_ows", _post(b"Transfer-Encoding:\tchunked", body=b"5\r\nhello\r\n0\r\n\r\n")),
    ("te_upper_case", _post(b"Transfer-Encoding: CHUNKED", body=b"5\r\nhello\r\n0\r\n\r\n")),
    ("chunked_ext_trailer", _post(b"Transfer-Encoding: chunked",
                                  body=b"2;x=y\r\nhe\r\n3\r\nllo\r\n0\r\nX-T: 1\r\n\r\n")),
    ("leading_empty_lines", b"\r\n\r\n" + _post(b"Content-Length: 5", body=b"hello")),
    # RFC 9112 §2.3: a later HTTP/1 minor version is processed as HTTP/1.1.
    ("version_1_2", b"POST / HTTP/1.2\r\nHost: HOST\r\nContent-Length: 5\r\n\r\nhello"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case,data", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted_framing_then_pipelined(fronts, upstream, kind, case, data):
    """The body ends exactly where the framing says: the pipelined GET after
    it is the upstream's second request, not part of the first body."""
    front = fronts(kind)
    n0 = len(upstream.requests)
    nxt = b"GET /next HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n"
    rs, closed, raw = send(front, data + nxt)
    assert [r.status for r in rs] == [200, 200], raw[:500]
    got = new_requests(upstream, n0)
    assert [(r["method"], r["target"], r["body"]) for r in got] == [
        ("POST", "/", b"hello"), ("GET", "/next", b"")]
    # Re-framed upstream: never both Content-Length and Transfer-Encoding.
    names = [k.lower() for k, _ in got[0]["headers"]]
    assert not ("content-length" in names and "transfer-encoding" in names)
    assert names.count("host") == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("host", [b"HOST:80", b"HOST.", b"[::1]:8080", b"127.0.0.1"])
def test_valid_host_forms_are_not_400(fronts, kind, host):
    rs, _, raw = send(fronts(kind), b"GET /h HTTP/1.1\r\nHost: " + host +
                      b"\r\nConnection: close\r\n\r\n")
    assert rs and rs[0].status != 400, raw[:300]


@pytest.mark.parametrize("kind", KINDS)
def test_obs_text_value_is_forwarded(fronts, upstream, kind):
    front = fronts(kind)
    n0 = len(upstream.requests)
    rs, _, _ = send(front, b"GET /o HTTP/1.1\r\nHost: HOST\r\nX-A: caf\xe9\r\n"
                           b"Connection: close\r\n\r\n")
    assert [r.status for r in rs] == [200]
    got = new_requests(upstream, n0)
    assert len(got) == 1 and ("X-A", "caf\xe9") in got[0]["headers"]


MALFORMED_CHUNKS = [
    ("size_overflow", b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("size_negative", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("size_bare_lf", b"5\nhello\r\n0\r\n\r\n"),
    ("ext_bare_lf", b"5;a=b\nc\r\nhello\r\n0\r\n\r\n"),
    ("data_without_crlf", b"5\r\nhelloXX0\r\n\r\n"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case,body", MALFORMED_CHUNKS, ids=[c[0] for c in MALFORMED_CHUNKS])
def test_malformed_chunked_body_smuggles_nothing(fronts, upstream, kind, case, body):
    front = fronts(kind)
    n0 = len(upstream.requests)
    rs, closed, raw = send(front, _post(b"Transfer-Encoding: chunked", body=body) + SMUGGLED)
    assert closed
    assert all(r.status != 200 for r in rs), raw[:300]
    assert "/smuggled" not in [r["target"] for r in new_requests(upstream, n0)]


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_chunked_body_gets_400(fronts, upstream, kind):
    """No response byte went out yet: 400 with Connection: close, then the
    connection closes. The upstream connection saw a partial body, so it is
    closed, not pooled: the next requests are answered normally."""
    front = fronts(kind)
    rs, closed, raw = send(front, _post(b"Transfer-Encoding: chunked",
                                        body=b"zz\r\nhello\r\n0\r\n\r\n"))
    assert [r.status for r in rs] == [400], raw[:300]
    assert (rs[0].header("connection") or "").lower() == "close", raw[:300]
    assert closed
    # Valid chunks first, then a broken size line: same answer.
    rs, closed, raw = send(front, [_post(b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n"),
                                   b"5\r\nworld\r\nzz\r\n"])
    assert [r.status for r in rs] == [400] and closed, raw[:300]
    for _ in range(3):
        rs, _, raw = send(front, b"GET /after HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n")
        assert [r.status for r in rs] == [200] and rs[0].body.startswith(b"ok "), raw[:300]


# ---- absolute-form, CONNECT, Host ------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_absolute_form_uses_target_authority(fronts, upstream, kind):
    """RFC 9112 §3.2.2: with absolute-form the Host field is ignored."""
    front = fronts(kind)
    n0 = len(upstream.requests)
    rs, _, raw = send(front, b"GET http://HOST/abs?q=1 HTTP/1.1\r\nHost: nosuch.other.example\r\n"
                             b"Connection: close\r\n\r\n")
    assert [r.status for r in rs] == [200], raw[:300]
    got = new_requests(upstream, n0)
    assert [(r["method"], r["target"]) for r in got] == [("GET", "/abs?q=1")]
    hosts = [v for k, v in got[0]["headers"] if k.lower() == "host"]
    assert hosts == [f"{upstream.addr[0]}:{upstream.addr[1]}"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", [b"HOST:443", b"127.0.0.2:22"])
def test_connect_is_405(fronts, upstream, kind, target):
    front = fronts(kind)
    n0 = len(upstream.requests)
    rs, _, raw = send(front, b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target +
                      b"\r\n\r\n")
    assert [r.status for r in rs] == [405], raw[:300]
    allow = rs[0].header("allow")
    assert allow and "GET" in allow and "CONNECT" not in allow
    assert new_requests(upstream, n0) == []


@pytest.mark.parametrize("kind", KINDS)
def test_http11_without_host_is_400(fronts, upstream, kind):
    n0 = len(upstream.requests)
    rs, _, raw = send(fronts(kind), b"GET / HTTP/1.1\r\nX: y\r\n\r\n")
    assert [r.status for r in rs] == [400], raw[:300]
    assert new_requests(upstream, n0) == []


@pytest.mark.parametrize("kind", KINDS)
def test_http10_without_host_is_not_400(fronts, kind):
    rs, _, _ = send(fronts(kind), b"GET /linkup/check HTTP/1.0\r\n"
                                  b"Authorization: Bearer token123\r\n\r\n")
    assert [r.status for r in rs] == [200]


# ---- Expect: 100-continue ----------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_expect_100_continue_through_the_proxy(fronts, upstream, kind):
    """The expectation is forwarded; the upstream's 100 reaches the client
    before it sends the body, then the final response."""
    front = fronts(kind)
    n0 = len(upstream.requests)
    s = socket.create_connection(front.addr, timeout=5)
    try:
        s.sendall(b"POST /e HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n" % front.host.encode())
        line, _, rest = lk.read_http_head(s)
        assert line.startswith("HTTP/1.1 100"), line
        s.sendall(b"hello")
        data = rest
        while not lk.parse_responses(data):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        assert lk.parse_responses(data)[0].status == 200
    finally:
        s.close()
    got = new_requests(upstream, n0)
    assert [(r["target"], r["body"]) for r in got] == [("/e", b"hello")]


ADMIN_POST = {"server": b"/linkup/sessions/preview", "worker": b"/linkup/v2/sessions/preview"}


@pytest.mark.parametrize("kind", KINDS)
def test_expect_100_continue_on_admin_api(fronts, kind):
    front = fronts(kind)
    s = socket.create_connection(front.addr, timeout=3)
    try:
        s.sendall(b"POST " + ADMIN_POST[kind] + b" HTTP/1.1\r\nHost: localhost\r\n"
                  b"Authorization: Bearer token123\r\nx-linkup-version: 99.0.0\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        s.settimeout(1.5)
        try:
            line, _, _ = lk.read_http_head(s)
        except socket.timeout:
            line = "(nothing within 1.5 s)"
        assert line.startswith("HTTP/1.1 100") or line.startswith("HTTP/1.1 4"), line
    finally:
        s.close()


def test_expect_with_oversized_body_is_413_at_once(fronts):
    front = fronts("server")
    rs, closed, raw = send(front, b"POST /linkup/sessions/tunneled HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Type: application/json\r\n"
                                  b"Content-Length: 104857601\r\nExpect: 100-continue\r\n\r\n")
    assert [r.status for r in rs] == [413], raw[:300]
    assert closed


# ---- HTTP/1.0 keep-alive --------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_http10_keep_alive(fronts, upstream, kind):
    front = fronts(kind)
    n0 = len(upstream.requests)
    rs, closed, raw = send(front, b"GET /a HTTP/1.0\r\nHost: HOST\r\nConnection: keep-alive\r\n\r\n"
                                  b"GET /b HTTP/1.0\r\nHost: HOST\r\n\r\n"
                                  b"GET /c HTTP/1.0\r\nHost: HOST\r\n\r\n")
    assert [r.status for r in rs] == [200, 200], raw[:500]
    assert (rs[0].header("connection") or "").lower() == "keep-alive"
    assert closed, "HTTP/1.0 without keep-alive closes after its response"
    assert [r["target"] for r in new_requests(upstream, n0)] == ["/a", "/b"]


@pytest.mark.parametrize("kind", KINDS)
def test_http10_without_keep_alive_closes(fronts, upstream, kind):
    front = fronts(kind)
    n0 = len(upstream.requests)
    rs, closed, _ = send(front, b"GET /a HTTP/1.0\r\nHost: HOST\r\n\r\n" + SMUGGLED)
    assert [r.status for r in rs] == [200] and closed
    assert [r["target"] for r in new_requests(upstream, n0)] == ["/a"]


@pytest.mark.parametrize("kind", KINDS)
def test_http11_pipelining_in_order(fronts, upstream, kind):
    front = fronts(kind)
    n0 = len(upstream.requests)
    reqs = b"".join(b"GET /p%d HTTP/1.1\r\nHost: HOST\r\n\r\n" % i for i in range(5))
    rs, _, _ = send(front, reqs + b"GET /last HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n")
    assert [r.status for r in rs] == [200] * 6
    assert [r["target"] for r in new_requests(upstream, n0)] == \
        [f"/p{i}" for i in range(5)] + ["/last"]


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_body_split_at_awkward_offsets(fronts, upstream, kind):
    front = fronts(kind)
    n0 = len(upstream.requests)
    whole = _post(b"Transfer-Encoding: chunked", b"Connection: close",
                  body=b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n")
    whole = whole.replace(b"HOST", front.host.encode())
    parts = [whole[i:i + 7] for i in range(0, len(whole), 7)]
    rs, _, raw = send(front, parts, pause=0.01)
    assert [r.status for r in rs] == [200], raw[:300]
    got = new_requests(upstream, n0)
    assert [r["body"] for r in got] == [b"abc0123456789abcdef"]


# ---- response side: the upstream cannot smuggle either -------------------------

BAD_RESPONSES = [
    ("cl_and_te", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n"),
    ("differing_cl", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("bad_te", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"),
    ("obs_fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
    ("bare_cr", b"HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n"),
    ("bare_cr_in_field", b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n"),
    ("garbage", b"NOT HTTP AT ALL\r\n\r\n"),
    ("status_two_digits", b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"),
    ("status_letters", b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"),
    ("http2_version", b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ("cl_negative", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
    ("head_over_64k", b"HTTP/1.1 200 OK\r\n" +
     b"".join(b"X-%d: %s\r\n" % (i, b"a" * 8000) for i in range(9)) +
     b"Content-Length: 0\r\n\r\n"),
    ("line_over_16k", b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 17000 + b"\r\nContent-Length: 0\r\n\r\n"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case,reply", BAD_RESPONSES, ids=[c[0] for c in BAD_RESPONSES])
def test_malformed_upstream_response_is_502(linkup_bin, env, tmp_path, kind, case, reply):
    up = lk.ScriptedUpstream(reply)
    front = lk.Front(kind, linkup_bin, env, tmp_path, up.url)
    try:
        r = lk.request(front.addr, "GET", "/", [("Host", front.host)])
        assert r.status == 502, (case, r.status, r.body)
        assert front.check() == 200
    finally:
        up.close()
        assert front.stop() == 0, front.log()[-2000:]


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_response_with_bare_lf_lines_is_forwarded_with_crlf(linkup_bin, env, tmp_path,
                                                                      kind):
    # RFC 9112 §2.2 lets a recipient take a bare LF for a line end, as the
    # original's HTTP clients do; the head goes on rebuilt with CRLF.
    up = lk.ScriptedUpstream(b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\r\n\nhi")
    front = lk.Front(kind, linkup_bin, env, tmp_path, up.url)
    try:
        with socket.create_connection(front.addr, timeout=10) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                      % front.host.encode())
            got = b""
            while chunk := c.recv(65536):
                got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n"), got
        assert b"\r\nX-A: b" in head and b"\n" not in head.replace(b"\r\n", b""), got
        assert body == b"hi"
        assert front.check() == 200
    finally:
        up.close()
        assert front.stop() == 0, front.log()[-2000:]


# ---- hop-by-hop abuse ------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_connection_cannot_strip_routing_headers(fronts, upstream, kind):
    front = fronts(kind)
    n0 = len(upstream.requests)
    rs, _, _ = send(front, b"GET /hop HTTP/1.1\r\nHost: HOST\r\nConnection: close, tracestate, "
                           b"linkup-destination, x-forwarded-host, traceparent\r\n\r\n")
    assert [r.status for r in rs] == [200]
    names = {k.lower() for k, _ in new_requests(upstream, n0)[0]["headers"]}
    assert {"tracestate", "linkup-destination", "x-forwarded-host", "traceparent"} <= names


@pytest.mark.parametrize("kind", KINDS)
def test_connection_listed_client_fields_and_h2c_upgrade_are_not_forwarded(fronts, upstream,
                                                                          kind):
    front = fronts(kind)
    n0 = len(upstream.requests)
    rs, _, _ = send(front, b"GET /h2c HTTP/1.1\r\nHost: HOST\r\nUpgrade: h2c\r\n"
                           b"Connection: Upgrade, HTTP2-Settings, X-Private\r\n"
                           b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-Private: 1\r\n"
                           b"Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: x\r\n\r\n")
    assert [r.status for r in rs] == [200]
    names = {k.lower() for k, _ in new_requests(upstream, n0)[0]["headers"]}
    assert not names & {"upgrade", "connection", "http2-settings", "x-private", "keep-alive", "te",
                        "proxy-connection"}, names


# ---- a final response before the whole request body -----------------------------

class EarlyAnswer(lk.RawUpstream):
    """On 127.0.0.2:0: answers every request head at once with `401` and
    never reads a body (a connection is dropped after its first answer);
    records the request lines."""

    def __init__(self):
        self.lines = []
        super().__init__(self._conn, threaded=True)
        self.url = self.url.rstrip("/")

    def _conn(self, c):
        c.settimeout(5)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.lines.append(data.split(b"\r\n")[0])
            c.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope")
            time.sleep(1)
        except OSError:
            pass


def _read_until_closed(s, data=b"", timeout=3):
    s.settimeout(timeout)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except socket.timeout:
        return data, False
    except ConnectionResetError:
        return data, True


@pytest.mark.parametrize("expect", [False, True], ids=["streaming", "expect_100"])
@pytest.mark.parametrize("kind", KINDS)
def test_final_response_before_the_body_keeps_its_connection_promise(linkup_bin, env, tmp_path,
                                                                    kind, expect):
    """RFC 9110 §10.1.1, RFC 9112 §9.6: an upstream answering before the
    request body arrived (with or without Expect: 100-continue). A relayed
    final response without `Connection: close` promises that the connection
    stays: the rest of the body is then read and dropped and the next
    request on the connection is answered."""
    up = EarlyAnswer()
    front = lk.Front(kind, linkup_bin, env, tmp_path, up.url)
    try:
        host = front.host.encode()
        s = socket.create_connection(front.addr, timeout=5)
        try:
            s.sendall(b"POST /early HTTP/1.1\r\nHost: %s\r\nContent-Length: 20\r\n%s\r\n%s"
                      % (host, b"Expect: 100-continue\r\n" if expect else b"",
                         b"" if expect else b"0123456789"))
            data = b""
            while not lk.parse_responses(data):
                chunk = s.recv(65536)
                assert chunk, data
                data += chunk
            first = lk.parse_responses(data)[0]
            assert first.status == 401, data[:300]
            promised = (first.header("connection") or "").lower() != "close"
            try:
                s.sendall(b"0123456789" + (b"0123456789" if expect else b"") +
                          b"GET /next HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            data, closed = _read_until_closed(s, data)
        finally:
            s.close()
        statuses = [r.status for r in lk.parse_responses(data)]
        if promised:
            assert statuses == [401, 401] and closed, data[:600]
            assert up.lines == [b"POST /early HTTP/1.1", b"GET /next HTTP/1.1"]
        else:
            assert statuses == [401] and closed, data[:600]
    finally:
        up.close()
        assert front.stop() == 0, front.log()[-2000:]


@pytest.mark.parametrize("kind", KINDS)
def test_early_answer_to_a_long_upload_is_read_before_the_close(linkup_bin, env, tmp_path, kind):
    """RFC 9112 §9.6: past the 1 MiB a server skips for the next request, the
    connection is closed as after any response: writing shut down, the rest
    read and dropped for a while. A client that sends its whole body before it
    reads (as curl does) gets no reset while sending, then its response."""
    up = EarlyAnswer()
    front = lk.Front(kind, linkup_bin, env, tmp_path, up.url)
    try:
        s = socket.create_connection(front.addr, timeout=10)
        try:
            chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
            s.sendall(b"POST /early HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                      % front.host.encode() + chunk * 512 + b"0\r\n\r\n")  # 32 MiB: no reset
            data, closed = _read_until_closed(s, timeout=5)
        finally:
            s.close()
        assert [r.status for r in lk.parse_responses(data)] == [401] and closed, data[:300]
    finally:
        up.close()
        assert front.stop() == 0, front.log()[-2000:]


# ---- response framing: HEAD, 204, 304 have no body; a broken chunked body ------

class FramingUpstream(lk.RawUpstream):
    """On 127.0.0.2:0, keep-alive: answers `/head` (any method) with a
    Content-Length 100 head and no body, `/204` and `/304` with a declared
    length and no body, `/badchunk` with a chunked body broken after one
    chunk (then closes), anything else `200 ok`."""

    REPLIES = {
        "/head": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        "/head-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "/204": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        "/304": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"e\"\r\n\r\n",
        "/badchunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\nzz\r\nmore",
    }

    def __init__(self):
        super().__init__(self._conn, threaded=True)
        self.url = self.url.rstrip("/")

    def _conn(self, c):
        c.settimeout(10)
        f = c.makefile("rb")
        try:
            while True:
                req = lk.read_raw_request(f)
                if req is None:
                    return
                path = req["target"]
                c.sendall(self.REPLIES.get(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
                if path == "/badchunk":
                    return
        except (EOFError, OSError, ValueError):
            pass


@pytest.fixture(scope="module")
def framing_fronts(linkup_bin, tmp_path_factory):
    import os
    tmp = tmp_path_factory.mktemp("framing")
    env = dict(os.environ, HOME=str(tmp), LINKUP_HOME=str(tmp / ".linkup"),
               LINKUP_NO_UPDATE_CHECK="1")
    env.pop("LINKUP_CONFIG", None)
    up = FramingUpstream()
    fronts = {k: lk.Front(k, linkup_bin, env, tmp, up.url) for k in KINDS}
    yield fronts
    up.close()
    for f in fronts.values():
        assert f.stop() == 0, f.log()[-2000:]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method,path,status", [("HEAD", "/head", 200),
                                                ("HEAD", "/head-chunked", 200),
                                                ("GET", "/204", 204), ("GET", "/304", 304)])
def test_bodiless_responses_end_at_their_head(framing_fronts, kind, method, path, status):
    """RFC 9112 §6.3: the response to HEAD and any 204 or 304 ends at its
    blank line whatever Content-Length says; the next response on the same
    connection follows directly (and no chunked framing is invented)."""
    front = framing_fronts[kind]
    # Raw bytes: lk.parse_responses() does not know the request was HEAD.
    raw, closed = lk.raw_exchange(front.addr, (
        b"%s %s HTTP/1.1\r\nHost: HOST\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n"
        % (method.encode(), path.encode())).replace(b"HOST", front.host.encode()), timeout=3)
    parts = raw.split(b"\r\n\r\n")
    assert len(parts) == 3, raw[:600]
    first, second, body = parts
    assert first.startswith(b"HTTP/1.1 %d " % status), raw[:300]
    assert b"transfer-encoding" not in first.lower(), raw[:300]
    if path == "/head":
        assert b"\r\ncontent-length: 100" in first.lower(), raw[:300]
    assert second.startswith(b"HTTP/1.1 200 "), raw[:600]
    assert body == b"ok" and closed, raw[:600]


@pytest.mark.parametrize("kind", KINDS)
def test_broken_chunked_response_cuts_the_client(framing_fronts, kind):
    """A chunked body that breaks after the head went out: the client
    connection is cut before any last chunk, so the client cannot take the
    truncated body for a complete one; the front keeps serving."""
    front = framing_fronts[kind]
    rs, closed, raw = send(front, b"GET /badchunk HTTP/1.1\r\nHost: HOST\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]
    assert closed, raw[:300]
    assert rs == [], raw[:300]  # no complete response
    assert not raw.endswith(b"0\r\n\r\n"), raw[-100:]
    assert front.check() == 200
