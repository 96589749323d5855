"""Black-box tests of the worker's response cache and proxy-path error
texts (SPEC §3.10, §4.4–§4.7; docs/worker.md "Cache"):

* only the statuses a shared cache may store by default are stored, never
  304 or 206, and conditional or range requests bypass the cache;
* the cache fetch uses the engine's connect and first-byte timeouts
  (LINKUP_CONNECT_TIMEOUT_MS, LINKUP_FIRST_BYTE_TIMEOUT_MS) and re-sends a
  request through the streaming engine only when it cannot have reached the
  upstream, so a slow or failing upstream sees each GET once;
* headers named by Connection (and the hop-by-hop ones) are not forwarded
  on the cache fetch path, in either direction;
* a WebSocket upgrade to an unreachable upstream is
  `502 Failed to fetch from target service: …`; only an upstream that
  answers without switching protocols is `Failed to connect to destination`.
* a GET with a body streams with its body; a stored response honours Vary,
  Authorization (RFC 9111 §3.5), Age, Expires and the request's max-age.

The worker listens on 127.0.0.1:0, upstreams are Python servers on
127.0.0.2 port 0. Every worker is stopped with SIGTERM and must exit 0."""
import http.server
import json
import socket
import threading
import time
import urllib.parse

import pytest

import lk

TOKEN = "tok"
API = [("Authorization", f"Bearer {TOKEN}"), ("Content-Type", "application/json"),
       ("x-linkup-version", "99.99.99")]
FETCH_502 = "Failed to fetch from target service: "
CONNECT_502 = "Failed to connect to destination: "
WS_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


# ---- worker and sessions ------------------------------------------------------------

@pytest.fixture
def start_worker(linkup_bin, env, tmp_path):
    """start(**env_extra) -> lk.Proc of a memory-store worker (addr in
    proc.addrs["Worker"]); each is stopped at teardown and must exit 0."""
    started = []

    def start(**env_extra):
        e = dict(env, **env_extra)
        log = str(tmp_path / f"worker-{time.monotonic_ns()}.log")
        w = lk.spawn_worker_logged(linkup_bin, e, log, store="memory", token=TOKEN)
        w.addr = w.addrs["Worker"]
        started.append(w)
        return w

    yield start
    for w in started:
        rc = lk.stop_gracefully(w, timeout=20)[0]
        assert rc == 0, f"worker exited {rc}: {open(w.log_path).read()[-3000:]}"


@pytest.fixture
def worker(start_worker):
    return start_worker()


def make_session(w, name, url, cache_routes=("^/static",)):
    """Preview session `name`: example.com -> url, with cache_routes."""
    body = lk.session_body(name, {"frontend": url}, [("example.com", "frontend", None)])
    body["cache_routes"] = list(cache_routes) if cache_routes is not None else None
    r = lk.request(w.addr, "POST", "/linkup/v2/sessions/preview", API, json.dumps(body))
    assert r.status == 200, r.body


def get(w, path, headers=(), name="potato", timeout=15):
    return lk.request(w.addr, "GET", path, [("Host", f"{name}.example.com"), *headers],
                      timeout=timeout)


# ---- upstream -------------------------------------------------------------------------

class Upstream:
    """Threaded HTTP/1.1 server on 127.0.0.2:0. self.requests: list of
    (path, [(name, value)]). Paths (query ignored):
      /static/etag         304 + ETag "v1" when If-None-Match is "v1", else
                           200 "full N" + ETag "v1"; Range -> 206 "fu";
                           Cache-Control max-age=60 on every answer
      /static/status/CODE  CODE with body "CODE N" (no body for 204/304)
      /static/slow/MS      200 "slow N" after MS milliseconds
      /static/drop         reads the request, closes without answering
      /static/echo         200, body = JSON of the request headers
      /static/connhdr      200 with "Connection: X-Secret" and X-Secret/X-Open
      /static/vary         200 "{Accept-Encoding or identity} N", max-age=60,
                           Vary: X-Other, accept-encoding
      /static/varystar     200 "varystar N", max-age=60, Vary: *
      /static/cc/VALUE     200 "cc N" with Cache-Control VALUE (percent-decoded,
                           then "_" for " ")
      /static/cc2/A/B      200 "cc2 N" with two Cache-Control lines, A then B
      /static/age/A        200 "age N", max-age=60 and Age: A
      /static/expires/K    200 "expires N" with an Expires of kind K: zero ("0"),
                           past, garbage, future (in an hour), maxage (past,
                           with Cache-Control: max-age=60), twice (past, then future)
    where N counts the requests for that path so far (1 for the first)."""

    def __init__(self, host="127.0.0.2", port=0):
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                path = self.path.split("?")[0]
                with outer.lock:
                    outer.requests.append((path, list(self.headers.items())))
                    n = sum(1 for p, _ in outer.requests if p == path)
                if path == "/static/etag":
                    cc = [("Cache-Control", "max-age=60"), ("ETag", '"v1"')]
                    if self.headers.get("If-None-Match") == '"v1"':
                        self.answer(304, cc, b"")
                    elif self.headers.get("Range"):
                        self.answer(206, cc + [("Content-Range", "bytes 0-1/6")], b"fu")
                    else:
                        self.answer(200, cc, f"full {n}".encode())
                elif path.startswith("/static/status/"):
                    code = int(path.rsplit("/", 1)[1])
                    self.answer(code, [], f"{code} {n}".encode())
                elif path.startswith("/static/slow/"):
                    time.sleep(int(path.rsplit("/", 1)[1]) / 1000)
                    self.answer(200, [], f"slow {n}".encode())
                elif path == "/static/drop":
                    self.close_connection = True
                elif path == "/static/echo":
                    self.answer(200, [("Cache-Control", "no-store")],
                                json.dumps(list(self.headers.items())).encode())
                elif path == "/static/vary":
                    enc = self.headers.get("Accept-Encoding") or "identity"
                    self.answer(200, [("Cache-Control", "max-age=60"),
                                      ("Vary", "X-Other, accept-encoding")],
                                f"{enc} {n}".encode())
                elif path.startswith("/static/age/"):
                    age = path.rsplit("/", 1)[1]
                    self.answer(200, [("Cache-Control", "max-age=60"), ("Age", age)],
                                f"age {n}".encode())
                elif path.startswith("/static/expires/"):
                    import email.utils
                    kind = path.rsplit("/", 1)[1]
                    value = {"zero": "0", "past": "Thu, 01 Jan 1970 00:00:00 GMT",
                             "garbage": "tomorrow",
                             "future": email.utils.formatdate(time.time() + 3600, usegmt=True),
                             "maxage": "Thu, 01 Jan 1970 00:00:00 GMT", "twice": None}[kind]
                    hdrs = [("Expires", value)]
                    if kind == "twice":  # the past first, then an hour ahead
                        hdrs = [("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
                                ("Expires", email.utils.formatdate(time.time() + 3600,
                                                                   usegmt=True))]
                    if kind == "maxage":
                        hdrs.append(("Cache-Control", "max-age=60"))
                    self.answer(200, hdrs, f"expires {n}".encode())
                elif path.startswith("/static/cc2/"):
                    first, second = path.split("/", 4)[3:5]
                    self.answer(200, [("Cache-Control", first.replace("_", " ")),
                                      ("Cache-Control", second.replace("_", " "))],
                                f"cc2 {n}".encode())
                elif path.startswith("/static/cc/"):
                    cc = urllib.parse.unquote(path.split("/", 3)[3]).replace("_", " ")
                    self.answer(200, [("Cache-Control", cc)], f"cc {n}".encode())
                elif path == "/static/varystar":
                    self.answer(200, [("Cache-Control", "max-age=60"), ("Vary", "*")],
                                f"varystar {n}".encode())
                elif path == "/static/connhdr":
                    self.answer(200, [("Connection", "X-Secret"), ("X-Secret", "1"),
                                      ("X-Open", "2")], f"connhdr {n}".encode())
                else:
                    self.answer(200, [], f"other {n}".encode())

            def answer(self, status, headers, data):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                if status not in (204, 304):
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if status not in (204, 304):
                    self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), H)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def count(self, path):
        with self.lock:
            return sum(1 for p, _ in self.requests if p == path)

    def headers_of(self, path):
        with self.lock:
            return [h for p, h in self.requests if p == path][-1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def up():
    u = Upstream()
    yield u
    u.close()


def closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.2:{port}"


# ---- 1. what is stored, and conditional requests ----------------------------------

def test_304_is_never_stored_nor_served_to_a_plain_get(worker, up):
    """A conditional GET gets the upstream's 304, then a
    plain GET must get the full 200, not a cached 304 with an empty body."""
    make_session(worker, "potato", up.url)
    r = get(worker, "/static/etag", [("If-None-Match", '"v1"')])
    assert (r.status, r.body) == (304, b"")
    r = get(worker, "/static/etag")
    assert (r.status, r.text) == (200, "full 2")
    assert r.header("etag") == '"v1"'
    # The 200 is stored and serves plain GETs ...
    assert get(worker, "/static/etag").text == "full 2"
    assert up.count("/static/etag") == 2
    # ... but never a conditional GET: it goes to the upstream, which decides.
    r = get(worker, "/static/etag", [("If-None-Match", '"v1"')])
    assert (r.status, r.body) == (304, b"")
    assert up.count("/static/etag") == 3
    assert get(worker, "/static/etag").text == "full 2"
    assert up.count("/static/etag") == 3


@pytest.mark.parametrize("name,value", [
    ("If-None-Match", '"other"'),
    ("If-Modified-Since", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ("If-Match", '"v1"'),
    ("If-Unmodified-Since", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ("If-Range", '"v1"'),
    ("Range", "bytes=0-1"),
])
def test_conditional_and_range_requests_bypass_the_cache(worker, up, name, value):
    make_session(worker, "potato", up.url)
    # Nothing stored: the conditional request is not stored either.
    first = get(worker, "/static/etag", [(name, value)])
    assert first.status in (200, 206)
    check_bypass(worker, up, name, value)


@pytest.mark.parametrize("value", ["no-store", "no-cache", "max-age=10, No-Cache"])
def test_request_cache_control_no_store_or_no_cache_bypasses_the_cache(worker, up, value):
    """RFC 9111 §5.2.1.4/§5.2.1.5 (issue 3: the cache honours no-store): such a request is
    neither answered from the cache nor stored."""
    make_session(worker, "potato", up.url)
    first = get(worker, "/static/etag", [("Cache-Control", value)])
    assert (first.status, first.text) == (200, "full 1")
    check_bypass(worker, up, "Cache-Control", value)


def check_bypass(worker, up, name, value):
    assert up.count("/static/etag") == 1
    r = get(worker, "/static/etag")
    assert (r.status, r.text) == (200, "full 2")
    assert up.count("/static/etag") == 2
    # With a stored 200, the conditional request still reaches the upstream.
    r = get(worker, "/static/etag", [(name, value)])
    assert up.count("/static/etag") == 3
    if name == "Range":
        assert (r.status, r.text) == (206, "fu")
    else:
        assert (r.status, r.text) == (200, "full 3")
    # ... and does not replace the stored entry.
    assert get(worker, "/static/etag").text == "full 2"
    assert up.count("/static/etag") == 3


STORED = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414]
NOT_STORED = [201, 202, 302, 303, 307, 400, 401, 403, 409, 500, 501, 503]


@pytest.mark.parametrize("code", STORED + NOT_STORED)
def test_only_default_cacheable_statuses_are_stored(worker, up, code):
    make_session(worker, "potato", up.url)
    path = f"/static/status/{code}"
    for i in (1, 2):
        r = get(worker, path)
        assert r.status == code
        n = 1 if code in STORED else i
        assert r.body == (b"" if code == 204 else f"{code} {n}".encode())
        assert r.header("access-control-allow-origin") == "*"
    assert up.count(path) == (1 if code in STORED else 2)


def test_upstream_304_to_a_plain_get_is_passed_on_not_stored(worker, up):
    make_session(worker, "potato", up.url)
    for _ in range(2):
        r = get(worker, "/static/status/304")
        assert (r.status, r.body) == (304, b"")
    assert up.count("/static/status/304") == 2


# ---- 2. timeouts and fallback --------------------------------------------------------

def test_first_byte_timeout_is_the_engines_and_gives_one_request(start_worker, up):
    w = start_worker(LINKUP_FIRST_BYTE_TIMEOUT_MS="700")
    make_session(w, "potato", up.url)
    t0 = time.monotonic()
    r = get(w, "/static/slow/2500")
    took = time.monotonic() - t0
    assert r.status == 502, r.text
    assert r.text.startswith(FETCH_502) and "did not answer in time" in r.text, r.text
    assert r.header("content-type") == "text/plain"
    assert took < 2.0, took
    time.sleep(3.0 - took)  # time enough for a second request to arrive
    assert up.count("/static/slow/2500") == 1
    # A slow answer within the timeout is served and stored.
    assert get(w, "/static/slow/300").text == "slow 1"
    assert get(w, "/static/slow/300").text == "slow 1"
    assert up.count("/static/slow/300") == 1


def test_slow_upstream_within_the_first_byte_timeout_is_served_once(start_worker, up):
    """LINKUP_FIRST_BYTE_TIMEOUT_MS=4000 serves a 2.5 s upstream, asked once."""
    w = start_worker(LINKUP_FIRST_BYTE_TIMEOUT_MS="4000")
    make_session(w, "potato", up.url)
    t0 = time.monotonic()
    r = get(w, "/static/slow/2500")
    assert (r.status, r.text) == (200, "slow 1")
    assert time.monotonic() - t0 < 4.0
    assert up.count("/static/slow/2500") == 1


def test_upstream_dropping_the_request_is_502_without_a_retry(worker, up):
    make_session(worker, "potato", up.url)
    r = get(worker, "/static/drop")
    assert r.status == 502
    assert r.text.startswith(FETCH_502), r.text
    time.sleep(0.3)
    assert up.count("/static/drop") == 1


def test_connection_refused_falls_back_to_the_engine(worker):
    """Nothing was sent: the streaming engine retries and gives its own text."""
    make_session(worker, "potato", closed_port_url())
    r = get(worker, "/static/x.js")
    assert r.status == 502
    assert r.text.startswith(FETCH_502), r.text
    assert "connect" in r.text.lower(), r.text


def test_connect_timeout_is_the_engines_and_not_retried(start_worker, blackhole):
    w = start_worker(LINKUP_CONNECT_TIMEOUT_MS="1500")
    make_session(w, "potato", blackhole)
    t0 = time.monotonic()
    r = get(w, "/static/x.js", timeout=30)
    took = time.monotonic() - t0
    assert r.status == 502
    assert r.text.startswith(FETCH_502) and "timed out" in r.text, r.text
    # One connect timeout, not one for the cache fetch and one for the engine.
    assert 1.4 < took < 2.8, took


# ---- 3. hop-by-hop headers on the cache fetch path --------------------------------

def test_connection_listed_request_headers_are_not_forwarded(worker, up):
    make_session(worker, "potato", up.url)
    r = get(worker, "/static/echo", [("Connection", "keep-alive, X-Foo, tracestate"),
                                     ("X-Foo", "1"), ("X-Bar", "2"), ("Keep-Alive", "timeout=5"),
                                     ("TE", "trailers"), ("Proxy-Connection", "keep-alive")])
    assert r.status == 200
    got = {k.lower(): v for k, v in json.loads(r.body)}
    for name in ("x-foo", "keep-alive", "te", "proxy-connection"):
        assert name not in got, got
    assert "x-foo" not in got.get("connection", "").lower(), got
    assert got["x-bar"] == "2"
    # The worker's own tracestate is not the client's to remove.
    assert got["tracestate"] == "linkup-session=potato"
    assert got["linkup-destination"] == "frontend"


def test_connection_listed_response_headers_are_not_passed_on(worker, up):
    make_session(worker, "potato", up.url)
    for _ in range(2):  # the miss and the hit
        r = get(worker, "/static/connhdr")
        assert (r.status, r.text) == (200, "connhdr 1")
        assert r.header("x-secret") is None
        assert r.header("x-open") == "2"
    assert up.count("/static/connhdr") == 1


# ---- 4. WebSocket error texts ------------------------------------------------------

def test_websocket_to_unreachable_upstream_is_fetch_failure(worker):
    make_session(worker, "potato", closed_port_url(), cache_routes=None)
    r = get(worker, "/ws", WS_HEADERS)
    assert r.status == 502
    assert r.text.startswith(FETCH_502), r.text


def test_websocket_non_101_answer_keeps_connect_text(worker, up):
    make_session(worker, "potato", up.url, cache_routes=None)
    r = get(worker, "/ws", WS_HEADERS)
    assert r.status == 502
    assert r.text == CONNECT_502 + "upstream answered 200 instead of 101", r.text


BAD_HEADS = {
    "bare-cr": b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: x=1\r\nContent-Length: 2\r\n\r\nok",
    "two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "many-fields": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200))
    + b"Content-Length: 2\r\n\r\nok",
}


def answer_bad_head(conn):
    """lk.RawUpstream handler: the raw head of BAD_HEADS[last path segment], then close."""
    req = lk.read_raw_request(conn.makefile("rb"))
    case = req["target"].rsplit("/", 1)[-1] if req else ""
    conn.sendall(BAD_HEADS.get(case, b"HTTP/1.1 404 Not Found\r\n\r\n"))


@pytest.mark.parametrize("case", sorted(BAD_HEADS))
def test_malformed_upstream_heads_are_502_on_the_cache_path_too(worker, case):
    """Issue 9 / RFC 9112 §2.2, §5.2, §6.3: a head the streaming engine refuses with a 502
    (bare CR, obs-fold, differing Content-Lengths, over 100 fields) gets the same 502 from
    the cache fetch, and is not stored: libcurl alone would relay it."""
    up = lk.RawUpstream(answer_bad_head)
    try:
        make_session(worker, "potato", up.url)
        streamed = get(worker, f"/plain/{case}")
        assert streamed.status == 502
        assert streamed.text.startswith(FETCH_502 + "invalid response from upstream: ")
        for _ in range(2):  # a miss, then what a hit would be
            cached = get(worker, f"/static/{case}")
            assert (cached.status, cached.text) == (502, streamed.text)
    finally:
        up.close()


# ---- 5. requests with a body ------------------------------------------------------

@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_get_with_a_body_bypasses_the_cache_and_keeps_its_body(worker, raw_upstream, framing):
    """SPEC §4.4 step 5: method and body stream are kept. A GET that carries a
    body is not a plain GET the cache may answer for: it streams to the
    upstream with its body, every time, and nothing is stored."""
    make_session(worker, "potato", raw_upstream.url)
    payload = b"query-in-the-body"
    if framing == "length":
        head = b"Content-Length: %d\r\n\r\n" % len(payload)
        data = payload
    else:
        head = b"Transfer-Encoding: chunked\r\n\r\n"
        data = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    req = (b"GET /static/q HTTP/1.1\r\nHost: potato.example.com\r\nConnection: close\r\n"
           + head + data)
    for i in range(2):
        got = lk.parse_responses(lk.raw_exchange(worker.addr, req, timeout=10)[0])
        assert [(r.status, r.body) for r in got] == [(200, b"ok %d" % i)]
    assert [(r["method"], r["target"], r["body"]) for r in raw_upstream.requests] == \
        [("GET", "/static/q", payload)] * 2


# ---- 6. Vary -------------------------------------------------------------------------

def test_stored_response_is_served_only_to_requests_matching_its_vary(worker, up):
    """RFC 9111 §4.1: a response stored with Vary answers only a request whose
    fields named by Vary match those of the request that fetched it (the
    Cloudflare cache of SPEC §4.6 honours Vary). A gzip answer never reaches
    a client that did not ask for gzip."""
    make_session(worker, "potato", up.url)
    gz = [("Accept-Encoding", "gzip")]
    assert get(worker, "/static/vary", gz).text == "gzip 1"
    assert get(worker, "/static/vary").text == "identity 2"
    assert get(worker, "/static/vary").text == "identity 2"  # a hit
    assert get(worker, "/static/vary", [("X-Other", "1")]).text == "identity 3"
    assert get(worker, "/static/vary", [("x-other", "1")]).text == "identity 3"  # a hit
    assert get(worker, "/static/vary", [("X-Other", "1")] + gz).text == "gzip 4"
    assert up.count("/static/vary") == 4


def test_vary_star_is_never_stored(worker, up):
    make_session(worker, "potato", up.url)
    assert [get(worker, "/static/varystar").text for _ in range(2)] == \
        ["varystar 1", "varystar 2"]


# ---- 7. Authorization ------------------------------------------------------------------

@pytest.mark.parametrize("cc, stored", [
    ("max-age=60", False),
    ("public,_max-age=60", True),
    ("s-maxage=60", True),
    ("max-age=60,_must-revalidate", True),
])
def test_answer_to_a_request_with_authorization(worker, up, cc, stored):
    """RFC 9111 §3.5: a shared cache stores the answer to a request with
    Authorization only when the response allows it (public, s-maxage or
    must-revalidate); otherwise the next client, whoever it is, is not
    served a response fetched with someone's credentials."""
    make_session(worker, "potato", up.url)
    path = f"/static/cc/{cc}"
    assert get(worker, path, [("Authorization", "Bearer secret")]).text == "cc 1"
    assert get(worker, path).text == ("cc 1" if stored else "cc 2")


# ---- 8. Age -----------------------------------------------------------------------------

def test_hits_carry_age_and_the_upstream_age_counts(worker, up):
    """RFC 9111 §4, §5.1: a response served from the cache carries Age (the
    upstream's Age plus the time it was stored here, one header), and a
    response whose Age already reaches its max-age is stale: not stored."""
    make_session(worker, "potato", up.url)
    first = get(worker, "/static/age/10")
    assert (first.text, first.all("age")) == ("age 1", ["10"])
    hit = get(worker, "/static/age/10")
    assert hit.text == "age 1"
    assert len(hit.all("age")) == 1 and 10 <= int(hit.header("age")) < 60
    assert [get(worker, "/static/age/60").text for _ in range(2)] == ["age 1", "age 2"]
    plain = [get(worker, "/static/x.js") for _ in range(2)]
    assert plain[0].header("age") is None and plain[1].header("age") is not None


# ---- 9. Expires -------------------------------------------------------------------------

@pytest.mark.parametrize("kind, stored", [
    ("zero", False), ("past", False), ("garbage", False), ("future", True), ("maxage", True),
    ("twice", False),  # RFC 9111 §4.2.1: the first Expires is used
])
def test_expires_gives_the_lifetime_without_max_age(worker, up, kind, stored):
    """RFC 9111 §4.2.1, §5.3: without max-age or s-maxage, Expires gives the
    lifetime; one in the past, or not a valid date (such as "0"), means
    already stale, so the answer is not stored. max-age wins over Expires."""
    make_session(worker, "potato", up.url)
    path = f"/static/expires/{kind}"
    assert [get(worker, path).text for _ in range(2)] == \
        ["expires 1", "expires 1" if stored else "expires 2"]


def test_request_max_age_refetches_an_older_entry(worker, up):
    """RFC 9111 §5.2.1.1: a request's max-age=N refuses a stored response
    older than N seconds (a browser's reload sends max-age=0): it is
    fetched again, and its answer replaces the entry."""
    make_session(worker, "potato", up.url)
    assert get(worker, "/static/x.js").text == "other 1"
    assert get(worker, "/static/x.js", [("Cache-Control", "max-age=0")]).text == "other 2"
    assert get(worker, "/static/x.js").text == "other 2"
    assert get(worker, "/static/x.js", [("Cache-Control", "max-age=3600")]).text == "other 2"
    assert up.count("/static/x.js") == 2


# ---- 10. Cache-Control directives of the response -------------------------------------

@pytest.mark.parametrize("cc, stored", [
    ("max-age=60", True),
    ("MAX-AGE=0", False),
    ("Max-Age=0,_public", False),
    ("S-MAXAGE=0,_max-age=60", False),
    ("NO-STORE", False),
    ("max-age=-1", False),
    ("max-age=abc", False),
    ("max-age=", False),
    ("s-maxage=x,_max-age=60", False),
    ("x-max-age=0", True),
    ("max-age=60,_max-age=0", True),
    # With field names (RFC 9111 §5.2.2.4, §5.2.2.7), quoted commas included.
    ("private=%22X-User%22", False),
    ("no-cache=%22X-User%22,_max-age=60", False),
    ("max-age=60,_PRIVATE=%22X-User,_X-Other%22", False),
    ("x-ext=%22private,_no-store%22,_max-age=60", True),
])
def test_response_cache_control_directives(worker, up, cc, stored):
    """RFC 9111 §5.2: directive names are case-insensitive, so MAX-AGE=0
    forbids serving a stored answer as max-age=0 does; a max-age or s-maxage
    whose argument is not delta-seconds (§1.2.2) makes the answer stale
    (§4.2.1: caches are encouraged to), so it is not stored rather than kept
    for the default lifetime. The first of two max-age is used (§4.2.1)."""
    make_session(worker, "potato", up.url)
    path = f"/static/cc/{cc}"
    assert [get(worker, path).text for _ in range(2)] == ["cc 1", "cc 1" if stored else "cc 2"]


@pytest.mark.parametrize("first, second, stored", [
    ("max-age=0", "max-age=60", False),
    ("max-age=60", "max-age=0", True),
    ("s-maxage=0", "s-maxage=60", False),
    ("public", "max-age=60", True),
])
def test_first_max_age_counts_across_cache_control_lines(worker, up, first, second, stored):
    """RFC 9111 §4.2.1: of several max-age (or s-maxage) directives the first
    is used, and two Cache-Control lines are one list (RFC 9110 §5.3), so a
    max-age=0 line followed by a max-age=60 line is not stored for 60 s, as
    `max-age=0, max-age=60` on one line is not."""
    make_session(worker, "potato", up.url)
    path = f"/static/cc2/{first}/{second}"
    assert [get(worker, path).text for _ in range(2)] == ["cc2 1", "cc2 1" if stored else "cc2 2"]


def test_request_max_age_directive_is_case_insensitive(worker, up):
    """RFC 9111 §5.2: a request's MAX-AGE=0 refuses a stored entry as
    max-age=0 does (§5.2.1.1)."""
    make_session(worker, "potato", up.url)
    assert get(worker, "/static/x.js").text == "other 1"
    assert get(worker, "/static/x.js", [("Cache-Control", "MAX-AGE=0")]).text == "other 2"
    assert get(worker, "/static/x.js").text == "other 2"


# ---- 4. entries never leak between sessions or services ---------------------------------

def test_services_on_two_addresses_with_one_port_have_their_own_entries(worker, up):
    """Issue 3: cache keys are scoped. The key of SPEC §4.6 writes every IP
    host as `example.com`, so two services of one session on 127.0.0.2:P and
    127.0.0.3:P would share `http://{name}.example.com:P/static/...`: the
    second service got the first one's answer. Each service has its own."""
    port = int(up.url.rsplit(":", 1)[1])
    try:
        other = Upstream("127.0.0.3", port)
    except OSError:
        pytest.skip("127.0.0.3 has no free port equal to the first upstream's")
    try:
        body = lk.session_body("potato", {"web": up.url, "api": other.url},
                               [("example.com", "web", None), ("api.example.com", "api", None)])
        body["cache_routes"] = ["^/static"]
        r = lk.request(worker.addr, "POST", "/linkup/v2/sessions/preview", API, json.dumps(body))
        assert r.status == 200, r.body
        assert get(worker, "/static/x.js").text == "other 1"
        r = lk.request(worker.addr, "GET", "/static/x.js", [("Host", "potato.api.example.com")])
        assert (r.status, r.text) == (200, "other 1")
        assert (up.count("/static/x.js"), other.count("/static/x.js")) == (1, 1)
        assert get(worker, "/static/x.js").text == "other 1"  # still each its own entry
    finally:
        other.close()


def test_a_dotted_session_name_does_not_share_entries_with_another_session(worker):
    """Issue 3: cache keys are scoped to the session. Names may hold dots
    (SPEC §2.5), so with the key of SPEC §4.6 session `r.s` on
    `http://localhost:P` and session `r` on `http://s.localhost:P` both
    became `http://r.s.localhost:P/static/x.js`, and `r` was served what `r.s`
    had stored. v1 /linkup/local-session stores localhost locations as given."""
    u = Upstream("127.0.0.1")
    port = int(u.url.rsplit(":", 1)[1])
    try:
        for name, token, loc in (("r.s", "t1", f"http://localhost:{port}"),
                                 ("r", "t2", f"http://s.localhost:{port}")):
            body = lk.session_body(name, {"web": loc}, [("example.com", "web", None)], token)
            body["cache_routes"] = ["^/static"]
            r = lk.request(worker.addr, "POST", "/linkup/local-session", API, json.dumps(body))
            assert (r.status, r.text) == (200, name)
        r = lk.request(worker.addr, "GET", "/static/x.js",
                       [("Host", "example.com"), ("tracestate", "linkup-session=r.s")])
        assert (r.status, r.text) == (200, "other 1")
        r = get(worker, "/static/x.js", name="r")
        # Not r.s's stored answer: fetched for r (s.localhost is loopback
        # where the resolver knows RFC 6761 names, else a 502).
        assert r.header("Age") is None and r.text != "other 1", (r.status, r.text)
    finally:
        u.close()
