"""Black-box tests of `linkup worker` (SPEC §4, §8.5, §9; DESIGN §2.1, §3, §8).

Every test drives the real binary over loopback: the worker listens on
127.0.0.1:0, upstreams are Python servers on 127.0.0.2/127.0.0.3 port 0, a
Redis is started on a free loopback port when redis-server exists. Each
worker is stopped with SIGTERM and must exit 0 (sanitizer reports make it
non-zero)."""
import base64
import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import lk

TOKEN = "tok"
LISTEN_RE = re.compile(r"^Worker listening on (\S+):(\d+)$")
MIB = 1024 * 1024

NO_SESSION = ("Linkup was unable to determine the session origin of the request.\n"
              "Make sure your request includes a valid session ID in the referer or "
              "tracestate headers. - Worker")
NO_TARGET = ("The request belonged to a session, but there was no target for the request.\n"
             "Check your routing rules in the linkup config for a match. - Worker")
CORS = {
    "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, HEAD, CONNECT, TRACE, OPTIONS",
    "access-control-allow-origin": "*",
    "access-control-allow-headers": "*",
    "access-control-max-age": "86400",
}


# ---- worker process ----------------------------------------------------------

class Worker:
    def __init__(self, bin_, env, tmp_path, store="memory", token=TOKEN, extra=(), env_extra=None):
        env = dict(env, **(env_extra or {}))
        self.log_path = tmp_path / f"worker-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen([bin_, "worker", "--listen", "127.0.0.1:0", "--token", token,
                                   "--store", store, *extra], stdout=subprocess.PIPE,
                                  stderr=self.log, text=True, env=env)
        deadline = time.time() + 20
        while True:
            line = self.p.stdout.readline()
            m = LISTEN_RE.match(line.strip())
            if m:
                self.addr = (m.group(1), int(m.group(2)))
                break
            if not line or time.time() > deadline:
                self.p.kill()
                self.p.wait(5)
                raise RuntimeError("worker did not start: " + self.log_path.read_text())

    @property
    def port(self):
        return self.addr[1]

    def rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()
        return self.p.returncode


@pytest.fixture
def start_worker(linkup_bin, env, tmp_path):
    started = []

    def start(**kw):
        w = Worker(linkup_bin, env, tmp_path, **kw)
        started.append(w)
        return w

    yield start
    for w in started:
        rc = w.stop()
        assert rc == 0, f"worker exited {rc}: {w.log_path.read_text()[-3000:]}"


@pytest.fixture
def worker(start_worker):
    return start_worker()


# ---- HTTP client -------------------------------------------------------------

class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # [(name, value)] in order
        self.body = body

    def header(self, name):
        vals = self.all(name)
        return vals[-1] if vals else None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self):
        return self.body.decode()


def request(addr, method, path, headers=(), body=None, timeout=15):
    """One request; headers is a list of pairs (duplicates allowed; a Host pair
    replaces the default one). Redirects are never followed."""
    c = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        has_host = any(k.lower() == "host" for k, _ in headers)
        c.putrequest(method, path, skip_host=has_host, skip_accept_encoding=True)
        for k, v in headers:
            c.putheader(k, v)
        if body is not None:
            data = body if isinstance(body, bytes) else body.encode()
            c.putheader("Content-Length", str(len(data)))
            c.endheaders(data)
        else:
            c.endheaders()
        r = c.getresponse()
        return Resp(r.status, r.getheaders(), r.read())
    finally:
        c.close()


AUTH = [("Authorization", f"Bearer {TOKEN}")]
JSON = [("Content-Type", "application/json")]
V = [("x-linkup-version", "99.99.99")]


def post(addr, path, obj, headers=AUTH + JSON + V):
    body = obj if isinstance(obj, (str, bytes)) else json.dumps(obj)
    return request(addr, "POST", path, headers, body)


def named(name, services, domains, token="token", cache_routes=None):
    return {"desired_name": name, "session_token": token,
            "services": [{"name": n, "location": u, "rewrites": rw} for n, u, rw in services],
            "domains": [{"domain": d, "default_service": s, "routes": r} for d, s, r in domains],
            "cache_routes": cache_routes}


def unnamed(services, domains, kind="six_char", token=None):
    body = named("", services, domains, token="")
    del body["desired_name"]
    body["name_kind"] = kind
    body["session_token"] = token
    return body


POTATO = named("potatoname", [("frontend", "http://example.com", None)],
               [("example.com", "frontend", None)])
PREVIEW_2551B2 = unnamed([("frontend", "http://example.com", None)],
                         [("example.com", "frontend", None)])


# ---- upstreams ---------------------------------------------------------------

def pattern_block():
    return bytes(range(256)) * 4096  # 1 MiB


class Upstream:
    """Threaded HTTP/1.1 server recording requests: (method, path, headers,
    body sha256, body length, body bytes when small)."""

    def __init__(self, host="127.0.0.2"):
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def read_body(self):
                h = hashlib.sha256()
                n = 0
                small = b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = self._chunks()
                else:
                    left = int(self.headers.get("Content-Length") or 0)
                    chunks = self._sized(left)
                for c in chunks:
                    h.update(c)
                    n += len(c)
                    if len(small) < 65536:
                        small += c
                return h.hexdigest(), n, small

            def _sized(self, left):
                while left > 0:
                    c = self.rfile.read(min(left, MIB))
                    if not c:
                        return
                    left -= len(c)
                    yield c

            def _chunks(self):
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return
                    yield self.rfile.read(size)
                    self.rfile.readline()

            def _any(self):
                digest, n, small = self.read_body()
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": list(self.headers.items()),
                                       "sha256": digest, "len": n, "body": small})
                if self.path == "/redirect":
                    self.send(307, [("Location", "/somethingelse")], b"")
                elif self.path == "/cookies":
                    self.send(200, [("Set-Cookie", "cookie1=value1; Path=/"),
                                    ("Set-Cookie", "cookie2=value2; Path=/")], b"cookies")
                elif self.path.startswith("/big/"):
                    self.big(int(self.path.split("/")[2]))
                elif self.path.startswith("/static/"):
                    self.static()
                elif self.path == "/slow":
                    time.sleep(1)
                    self.send(200, [], b"slow done")
                elif self.path == "/upload":
                    self.send(200, [], f"{n} {digest}".encode())
                elif self.path == "/cors":
                    self.send(200, [("Access-Control-Allow-Origin", "https://x.example")], b"c")
                else:
                    self.send(200, [("Content-Type", "text/plain")],
                              f"{outer.name} {self.command} {self.path}".encode())

            def static(self):
                n = sum(1 for r in outer.requests if r["path"] == self.path)
                kind = self.path.split("/")[2].split("?")[0]
                headers = {
                    "nostore": [("Cache-Control", "no-store")],
                    "private": [("Cache-Control", "private, max-age=60")],
                    "nocache": [("Cache-Control", "no-cache")],
                    "zero": [("Cache-Control", "max-age=0")],
                    "short": [("Cache-Control", "max-age=1")],
                    "cookie": [("Set-Cookie", "a=b")],
                }.get(kind, [("Content-Type", "text/javascript"), ("X-Kind", kind)])
                status = {"error": 500, "partial": 206, "missing": 404}.get(kind, 200)
                self.send(status, headers, f"{kind} {n}".encode())

            def big(self, mib):
                self.send_response(200)
                self.send_header("Content-Length", str(mib * MIB))
                self.end_headers()
                block = pattern_block()
                for _ in range(mib):
                    self.wfile.write(block)

            def send(self, status, headers, data):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _any

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), H)
        self.server.daemon_threads = True
        self.name = f"{host}"
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def last(self):
        return self.requests[-1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstreams():
    a, b = Upstream("127.0.0.2"), Upstream("127.0.0.3")
    yield a, b
    a.close()
    b.close()


def hdr(req, name):
    vals = [v for k, v in req["headers"] if k.lower() == name.lower()]
    return vals[-1] if vals else None


def hdr_all(req, name):
    return [v for k, v in req["headers"] if k.lower() == name.lower()]


def make_session(worker, name, fe, be=None, token="token", cache_routes=None):
    """A preview session: frontend (rewrite /foo/(.*) -> /bar/$1) on fe,
    backend on be; example.com routes /api/v1/.* to backend, api.example.com
    defaults to backend."""
    be = be or fe
    body = named(name, [("frontend", fe, [{"source": "/foo/(.*)", "target": "/bar/$1"}]),
                        ("backend", be, None)],
                 [("example.com", "frontend", [{"path": "/api/v1/.*", "service": "backend"}]),
                  ("api.example.com", "backend", None)], token=token,
                 cache_routes=cache_routes)
    r = post(worker.addr, "/linkup/v2/sessions/preview", body)
    assert r.status == 200, r.text
    assert json.loads(r.body) == {"session_name": name}


# ---- SPEC §8.5 and the session API --------------------------------------------

def test_health_check_and_help(worker, linkup_bin, env):
    r = request(worker.addr, "GET", "/linkup/check", AUTH)
    assert (r.status, r.text, r.header("content-type")) == (200, "OK", "text/plain; charset=utf-8")
    assert r.header("cache-control") is None
    r = request(worker.addr, "HEAD", "/linkup/check", AUTH)
    assert (r.status, r.body) == (200, b"")
    h = subprocess.run([linkup_bin, "worker", "--help"], capture_output=True, text=True, env=env,
                       timeout=10)
    assert h.returncode == 0 and "--store" in h.stdout


def test_token_is_required(linkup_bin, env):
    e = dict(env)
    e.pop("LINKUP_WORKER_TOKEN", None)
    r = subprocess.run([linkup_bin, "worker", "--listen", "127.0.0.1:0", "--store", "memory"],
                       capture_output=True, text=True, env=e, timeout=10)
    assert r.returncode == 1
    assert "token" in r.stderr


def test_missing_option_value_is_a_usage_error(linkup_bin, env):
    """An option without its value is a usage error (exit 2) naming the option as --help
    shows it, as for `linkup server` and the CLI (clap): a following `--option` is not
    taken as the value, so `--token --listen A:P` does not make `--listen` the token
    and `--listen --store memory` does not try to listen on `--store`."""
    e = dict(env)
    e.pop("LINKUP_WORKER_TOKEN", None)
    for args, opt in ((["--store", "memory", "--token"], "--token <T>"),
                      (["--store", "memory", "--token", "--listen", "127.0.0.1:0"], "--token <T>"),
                      (["--token", "t", "--listen", "--store", "memory"], "--listen <A:P>"),
                      (["--token", "t", "--store", "--listen", "127.0.0.1:0"], "--store <STORE>"),
                      (["--token", "t", "--tunnel-prefix", "--store", "memory"],
                       "--tunnel-prefix <P>")):
        r = subprocess.run([linkup_bin, "worker", *args], capture_output=True, text=True,
                           env=e, timeout=20)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.splitlines() == [
            f"linkup: worker: a value is required for '{opt}' but none was supplied",
            "Run 'linkup worker --help' for usage."], (args, r.stderr)


@pytest.mark.parametrize("store_args", [(), ("--store", "sqlite:")])
def test_env_options_and_default_sqlite_store(linkup_bin, env, tmp_path, store_args):
    """Issue 3: the default store is the `sqlite:` file $LINKUP_HOME/worker.db,
    with no --store or with a bare `sqlite:`."""
    e = dict(env, LINKUP_WORKER_LISTEN="127.0.0.1:0", LINKUP_WORKER_TOKEN="envtok")
    p = subprocess.Popen([linkup_bin, "worker", *store_args], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, env=e)
    try:
        m = LISTEN_RE.match(p.stdout.readline().strip())
        assert m
        addr = (m.group(1), int(m.group(2)))
        assert request(addr, "GET", "/linkup/check", [("Authorization", "envtok")]).status == 200
        assert os.path.exists(os.path.join(e["LINKUP_HOME"], "worker.db"))
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(20) == 0


def test_worker_no_such_session(worker):
    r = request(worker.addr, "GET", "/anypath")
    assert (r.status, r.text) == (422, NO_SESSION)
    assert r.header("content-type") == "text/plain"
    assert r.header("cache-control") == "no-store"


def test_worker_can_create_session(worker):
    r = post(worker.addr, "/linkup/local-session", POTATO)
    assert (r.status, r.text) == (200, "potatoname")
    assert r.header("content-type") == "text/plain; charset=utf-8"


def test_worker_can_create_preview(worker):
    r = post(worker.addr, "/linkup/preview-session", PREVIEW_2551B2)
    assert (r.status, r.text) == (200, "2551b2")


@pytest.mark.parametrize("value,status", [
    (f"Bearer {TOKEN}", 200), (TOKEN, 200), (f"Bearer Bearer {TOKEN}", 200),
    (f"bearer {TOKEN}", 401), ("Bearer nope", 401), (f"Bearer {TOKEN}x", 401), ("", 401),
])
def test_auth_variants(worker, value, status):
    r = request(worker.addr, "GET", "/linkup/check", [("Authorization", value)])
    assert r.status == status
    if status == 401:
        assert r.body == b""
        assert r.header("content-type") is None


def test_repeated_authorization_is_one_joined_value(worker):
    """SPEC §4.2 on the original's runtime: Headers.get() joins repeated values with ", ",
    so a second Authorization, right or wrong, makes a value that matches no token."""
    for values in ([f"Bearer {TOKEN}", "Bearer WRONG"], ["Bearer WRONG", f"Bearer {TOKEN}"],
                   [f"Bearer {TOKEN}", f"Bearer {TOKEN}"]):
        r = request(worker.addr, "GET", "/linkup/check", [("Authorization", v) for v in values])
        assert (r.status, r.body) == (401, b""), values
    r = request(worker.addr, "GET", "/linkup/check", [("Authorization", f"Bearer {TOKEN}")])
    assert r.status == 200


def test_repeated_json_key_is_422(worker):
    """SPEC §2.3/§4.3: a body whose object names a field twice fits neither upsert shape."""
    body = ('{"desired_name":"dup","session_token":"t","session_token":"u",'
            '"services":[{"name":"a","location":"http://a.com"}],'
            '"domains":[{"domain":"e.com","default_service":"a"}]}')
    r = post(worker.addr, "/linkup/v2/sessions/preview", body, AUTH + JSON)
    assert r.status == 422
    assert r.text.startswith("Failed to deserialize the JSON body into the target type: ")
    r = post(worker.addr, "/linkup/v2/sessions/preview", body.replace(',"session_token":"u"', ""),
             AUTH + JSON)
    assert (r.status, r.text) == (200, '{"session_name":"dup"}')


def test_missing_authorization(worker):
    for path in ("/linkup/check", "/linkup/no-tunnel", "/linkup/tunnel?session_name=a",
                 "/linkup/v2/sessions/preview"):
        r = request(worker.addr, "GET", path)
        assert (r.status, r.text) == (401, "Missing authorization header."), path
        assert r.header("content-type") == "text/plain; charset=utf-8"


@pytest.mark.parametrize("version,status,text", [
    (None, 401, "No x-linkup-version header, please upgrade your Linkup CLI."),
    ("1.2", 401, "Invalid x-linkup-version header."),
    ("2.0.9", 401, "Your Linkup CLI is outdated, please upgrade to the latest version."),
    ("2.1.0", 200, "potatoname"),
    ("0.0.0-next-x", 200, "potatoname"),
    ("99.99.99", 200, "potatoname"),
])
def test_version_rules(worker, version, status, text):
    headers = AUTH + JSON + ([("x-linkup-version", version)] if version else [])
    r = post(worker.addr, "/linkup/local-session", POTATO, headers)
    assert (r.status, r.text) == (status, text)


def test_version_checked_before_auth_and_only_on_local_session(worker):
    r = post(worker.addr, "/linkup/local-session", POTATO, JSON)
    assert r.text == "No x-linkup-version header, please upgrade your Linkup CLI."
    r = post(worker.addr, "/linkup/v2/sessions/preview", PREVIEW_2551B2, AUTH + JSON)
    assert r.status == 200


def test_methods_and_405(worker):
    r = request(worker.addr, "GET", "/linkup/local-session", AUTH + V)
    assert r.status == 405 and r.header("allow") == "POST"
    r = request(worker.addr, "POST", "/linkup/check", AUTH, body="")
    assert r.status == 405 and "GET" in r.header("allow")
    r = request(worker.addr, "DELETE", "/linkup/v2/sessions/tunneled", AUTH)
    assert r.status == 405
    # Authentication runs first.
    assert request(worker.addr, "GET", "/linkup/local-session", V).status == 401


def test_no_tunnel(worker):
    r = request(worker.addr, "GET", "/linkup/no-tunnel", AUTH)
    assert r.status == 422
    assert r.text == "This linkup session has no associated tunnel / was started with --no-tunnel"
    assert r.header("content-type") == "text/plain; charset=utf-8"


@pytest.mark.parametrize("path", ["/linkup/local-session", "/linkup/preview-session",
                                  "/linkup/v2/sessions/preview", "/linkup/v2/sessions/tunneled"])
def test_body_rejections(worker, path):
    body = json.dumps(POTATO)
    assert post(worker.addr, path, body, AUTH + V).status == 415
    assert post(worker.addr, path, body, AUTH + V + [("Content-Type", "text/plain")]).status == 415
    assert post(worker.addr, path, "{not json", AUTH + V + JSON).status == 400
    r = post(worker.addr, path, {"services": 3}, AUTH + V + JSON)
    assert r.status == 422
    assert r.text.startswith("Failed to deserialize the JSON body into the target type:")
    empty = named("x", [], [])
    r = post(worker.addr, path, empty)
    assert (r.status, r.text) == (400, "Failed to parse server config: empty config - Worker")
    assert r.header("cache-control") == "no-store"
    ok = post(worker.addr, path, json.dumps(POTATO),
              AUTH + V + [("Content-Type", "application/json; charset=utf-8")])
    assert ok.status == 200


def test_body_over_100_mib_is_413(worker):
    s = socket.create_connection(worker.addr, timeout=15)
    try:
        s.sendall(("POST /linkup/v2/sessions/preview HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: {TOKEN}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {100 * MIB + 1}\r\n\r\n{{").encode())
        head = s.recv(4096).decode(errors="replace")
        assert head.startswith("HTTP/1.1 413"), head
    finally:
        s.close()


def test_international_host_is_punycoded(worker):
    """SPEC §2: URLs are WHATWG-normalised, so a non-ASCII host is its
    punycode form: the same session (same hash name) either way."""
    doms = [("example.com", "frontend", None)]
    a = post(worker.addr, "/linkup/v2/sessions/preview",
             unnamed([("frontend", "http://B\u00fccher.example:8080", None)], doms))
    b = post(worker.addr, "/linkup/v2/sessions/preview",
             unnamed([("frontend", "http://xn--bcher-kva.example:8080/", None)], doms))
    assert a.status == b.status == 200, a.text
    assert json.loads(a.body) == json.loads(b.body)
    bad = post(worker.addr, "/linkup/v2/sessions/preview",
               unnamed([("frontend", "http://a\u200db.example/", None)], doms))
    assert bad.status == 422, bad.text
    assert "invalid international domain name" in bad.text


def test_v2_preview_names_and_conflicts(worker):
    fwd = [("frontend", "https://frontend.example.com", None),
           ("backend", "https://backend.example.com", None)]
    doms = [("example.com", "frontend", [{"path": "^/api(?:/|$)", "service": "backend"}])]
    a = post(worker.addr, "/linkup/v2/sessions/preview", unnamed(fwd, doms))
    b = post(worker.addr, "/linkup/v2/sessions/preview", unnamed(fwd[::-1], doms))
    assert a.status == b.status == 200
    assert a.header("content-type") == "application/json"
    assert json.loads(a.body) == json.loads(b.body) == {"session_name": "45201d"}
    animal = post(worker.addr, "/linkup/v2/sessions/preview", unnamed(fwd, doms, kind="animal"))
    assert re.fullmatch(r"[a-z]+-[a-z]+", json.loads(animal.body)["session_name"])

    first = named("mine", fwd, doms, token="A")
    assert post(worker.addr, "/linkup/v2/sessions/preview", first).status == 200
    assert post(worker.addr, "/linkup/v2/sessions/preview", first).status == 200
    r = post(worker.addr, "/linkup/v2/sessions/preview", named("mine", fwd, doms, token="B"))
    assert (r.status, r.text) == (409, "Conflict")
    assert r.header("cache-control") == "no-store"


def test_v2_preview_rejects_localhost(worker):
    body = named("lh", [("frontend", "http://localhost:3000", None)],
                 [("example.com", "frontend", None)])
    r = post(worker.addr, "/linkup/v2/sessions/preview", body)
    assert (r.status, r.text) == (400, "Preview session cannot contain services pointing to "
                                       "localhost")
    ok = named("lh", [("frontend", "http://127.0.0.1:3000", None)],
               [("example.com", "frontend", None)])
    assert post(worker.addr, "/linkup/v2/sessions/preview", ok).status == 200


def test_v1_preview_reuses_desired_name_with_same_token(worker):
    body = named("wanted", [("frontend", "http://example.com", None)],
                 [("example.com", "frontend", None)])
    r = post(worker.addr, "/linkup/preview-session", body)
    assert r.status == 200 and len(r.text) == 6
    # Stored under the hash name; "wanted" does not exist, so the hash wins.
    assert r.text != "wanted"
    local = post(worker.addr, "/linkup/local-session", body)
    assert local.text == "wanted"
    again = post(worker.addr, "/linkup/local-session", body)
    assert again.text == "wanted"
    other = post(worker.addr, "/linkup/local-session", dict(body, session_token="other"))
    assert other.status == 200 and other.text != "wanted"


# ---- tunnels -------------------------------------------------------------------

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def check_tunnel_data(td, worker, session):
    assert list(td) == ["account_id", "name", "url", "id", "secret", "last_started", "provider"]
    assert td["account_id"] == ""
    assert td["name"] == f"linkup-tunnel-{session}"
    assert td["url"] == f"http://linkup-tunnel-{session}.localhost:{worker.port}"
    assert UUID4.fullmatch(td["id"])
    assert len(td["secret"]) == 44 and len(base64.b64decode(td["secret"])) == 32
    assert abs(td["last_started"] - time.time() * 1000) < 60000
    assert td["provider"] == "linkup"


def test_v2_tunneled_returns_tunnel_data_and_repoints_localhost(worker, upstreams):
    up, _ = upstreams
    body = named("tiny-cow", [("frontend", "http://localhost:3000/app", None),
                              ("backend", up.url, None)],
                 [("example.com", "frontend", [{"path": "/api/.*", "service": "backend"}])])
    r = post(worker.addr, "/linkup/v2/sessions/tunneled", body)
    assert r.status == 200, r.text
    assert r.header("content-type") == "application/json"
    doc = json.loads(r.body)
    assert list(doc) == ["session_name", "tunnel_data"]
    assert doc["session_name"] == "tiny-cow"
    td = doc["tunnel_data"]
    check_tunnel_data(td, worker, "tiny-cow")

    # The localhost service now points at the tunnel, which is not connected.
    r = request(worker.addr, "GET", "/page", [("Host", "tiny-cow.example.com")])
    assert r.status == 502
    assert r.text == ("Failed to fetch from target service: tunnel for session 'tiny-cow' is "
                      "not connected")
    assert r.header("cache-control") == "no-store"
    # The other service is untouched.
    r = request(worker.addr, "GET", "/api/x", [("Host", "tiny-cow.example.com")])
    assert (r.status, r.text) == (200, "127.0.0.2 GET /api/x")

    # A second upsert keeps id and secret and refreshes last_started.
    time.sleep(0.01)
    again = json.loads(post(worker.addr, "/linkup/v2/sessions/tunneled", body).body)
    assert again["tunnel_data"]["id"] == td["id"]
    assert again["tunnel_data"]["secret"] == td["secret"]
    assert again["tunnel_data"]["last_started"] > td["last_started"]

    # A conflicting token is 409 (DESIGN §2.1).
    r = post(worker.addr, "/linkup/v2/sessions/tunneled", dict(body, session_token="other"))
    assert (r.status, r.text) == (409, "Conflict")


@pytest.mark.parametrize("name", ["a/b", "a?b", "a#b", "a@b", "a%41", "\u00e9"])
def test_v2_tunneled_name_that_is_no_tunnel_hostname_is_500(worker, name):
    """SPEC §4.3.7 step 4 re-points localhost services at the tunnel URL.
    Names have no syntax rules (SPEC §2.5), but a tunnel URL whose host is not
    that session's tunnel hostname would send them elsewhere: `a/b` to host
    `linkup-tunnel-a`, `a%41` to the tunnel of session `aa`, `a@b` to
    `b.localhost`, `é` to a punycode host no tunnel answers. Such an upsert is
    `500 Failed to upsert tunnel: invalid tunnel url {url}`, as a name with a
    space already was; nothing is stored. Without localhost services nothing
    is re-pointed and the name is fine."""
    body = named(name, [("frontend", "http://localhost:3000", None)], [("example.com", "frontend", None)])
    r = post(worker.addr, "/linkup/v2/sessions/tunneled", body)
    url = f"http://linkup-tunnel-{name}.localhost:{worker.port}"
    assert (r.status, r.text) == (500, f"Failed to upsert tunnel: invalid tunnel url {url}")
    r = request(worker.addr, "GET", "/", [("Host", "example.com"),
                                          ("tracestate", f"linkup-session={name}")])
    assert r.status == 422  # not stored
    body = named(name, [("frontend", "http://127.0.0.1:3000", None)], [("example.com", "frontend", None)])
    r = post(worker.addr, "/linkup/v2/sessions/tunneled", body)
    assert r.status == 200 and json.loads(r.body)["session_name"] == name


def test_v2_tunneled_empty_name_with_localhost_is_the_store_error(worker):
    """The empty name keeps the error of strict_store_session (SPEC §2.5,
    DESIGN §2.1) even when a localhost service is re-pointed first."""
    body = named("", [("frontend", "http://localhost:3000", None)],
                 [("example.com", "frontend", None)])
    r = post(worker.addr, "/linkup/v2/sessions/tunneled", body)
    assert (r.status, r.text) == (500, "Failed to store server config: Session name is empty")


def test_v2_tunneled_dotted_upper_case_name_is_re_pointed(worker):
    """A name with dots and capitals still spells its tunnel hostname (the host
    matches case-insensitively), so its localhost services are re-pointed."""
    body = named("Big.Cow", [("frontend", "http://localhost:3000", None)],
                 [("example.com", "frontend", None)])
    r = post(worker.addr, "/linkup/v2/sessions/tunneled", body)
    assert r.status == 200, r.text
    r = request(worker.addr, "GET", "/", [("Host", "example.com"),
                                          ("tracestate", "linkup-session=Big.Cow")])
    assert (r.status, r.text) == (502, "Failed to fetch from target service: tunnel for session "
                                       "'Big.Cow' is not connected")


def test_v2_tunneled_unnamed_animal(worker):
    body = unnamed([("frontend", "http://localhost:3000", None)],
                   [("example.com", "frontend", None)], kind="animal", token="t")
    doc = json.loads(post(worker.addr, "/linkup/v2/sessions/tunneled", body).body)
    assert re.fullmatch(r"[a-z]+-[a-z]+", doc["session_name"])
    check_tunnel_data(doc["tunnel_data"], worker, doc["session_name"])


def test_v1_tunnel_endpoint(worker):
    r = request(worker.addr, "GET", "/linkup/tunnel?session_name=my%20cow", AUTH)
    assert r.status == 200 and r.header("content-type") == "application/json"
    check_tunnel_data(json.loads(r.body), worker, "my cow")
    # A percent-encoded NUL does not cut the name short (it gave the tunnel of `a`).
    r = request(worker.addr, "GET", "/linkup/tunnel?session_name=a%00b", AUTH)
    assert r.status == 200 and json.loads(r.body)["name"] != "linkup-tunnel-a"
    r = request(worker.addr, "GET", "/linkup/tunnel", AUTH)
    assert r.status == 400
    assert r.text.startswith("Failed to deserialize query string:")


@pytest.mark.parametrize("query, name", [
    ("%FF", "\ufffd"),                  # a lone byte that starts nothing
    ("a%C3", "a\ufffd"),                # a sequence cut short
    ("%E2%82x", "\ufffdx"),             # one U+FFFD for the maximal valid prefix
    ("%F0%9F%90%AE", "\U0001f42e"),     # valid UTF-8 is kept
    ("%ED%A0%80", "\ufffd" * 3),        # a surrogate is not UTF-8
    ("%C0%AF", "\ufffd\ufffd"),          # nor is an overlong form
])
def test_v1_tunnel_query_is_decoded_as_lossy_utf8(worker, query, name):
    """SPEC §4.3.5: the query goes through serde_urlencoded, which decodes
    percent-escapes and then UTF-8 lossily (String::from_utf8_lossy): the
    TunnelData answered is valid UTF-8 JSON whatever bytes the query spells."""
    r = request(worker.addr, "GET", f"/linkup/tunnel?session_name={query}", AUTH)
    assert r.status == 200
    td = json.loads(r.body.decode("utf-8"))
    assert td["name"] == "linkup-tunnel-" + name


def test_tunnel_hostname_answers_not_connected(worker):
    for host in (f"linkup-tunnel-abc.localhost:{worker.port}", "LINKUP-TUNNEL-abc.LocalHost"):
        for path in ("/", "/linkup/check"):
            r = request(worker.addr, "GET", path, [("Host", host)] + AUTH)
            assert r.status == 502, (host, path)
            assert r.text == ("Failed to fetch from target service: tunnel for session 'abc' "
                              "is not connected")


def test_tunnel_options(start_worker):
    w = start_worker(extra=("--tunnel-domain", "tunnels.example.net", "--tunnel-prefix", "t-"))
    td = json.loads(request(w.addr, "GET", "/linkup/tunnel?session_name=s1", AUTH).body)
    assert td["name"] == "t-s1"
    assert td["url"] == f"http://t-s1.tunnels.example.net:{w.port}"
    r = request(w.addr, "GET", "/", [("Host", "t-s1.tunnels.example.net")])
    assert r.status == 502 and "'s1'" in r.text


def test_own_responses_carry_a_date(worker):
    """RFC 9110 §6.6.1: the worker's own answers (API, errors) have a Date
    in IMF-fixdate, the current second."""
    import email.utils
    import time
    for path, headers in (("/linkup/check", AUTH), ("/x", [("Host", "nosuch.example.com")])):
        r = request(worker.addr, "GET", path, headers)
        d = r.header("Date")
        assert d is not None and d.endswith(" GMT"), (path, d)
        when = email.utils.parsedate_to_datetime(d).timestamp()
        assert abs(when - time.time()) < 5


def test_tunnel_url_scheme_and_port(start_worker):
    """Behind a TLS proxy: --tunnel-scheme https publishes https:// URLs, and
    --tunnel-port the proxy's port (left out when it is the scheme's default);
    the same from the environment. Requests for the host still reach the
    tunnel (not connected here)."""
    w = start_worker(extra=("--tunnel-domain", "dev.test", "--tunnel-scheme", "https",
                            "--tunnel-port", "443"))
    td = json.loads(request(w.addr, "GET", "/linkup/tunnel?session_name=s1", AUTH).body)
    assert td["url"] == "https://linkup-tunnel-s1.dev.test"
    r = request(w.addr, "GET", "/", [("Host", "linkup-tunnel-s1.dev.test")])
    assert r.status == 502 and "'s1'" in r.text
    w = start_worker(env_extra={"LINKUP_WORKER_TUNNEL_SCHEME": "https",
                                "LINKUP_WORKER_TUNNEL_PORT": "8443"})
    td = json.loads(request(w.addr, "GET", "/linkup/tunnel?session_name=s2", AUTH).body)
    assert td["url"] == "https://linkup-tunnel-s2.localhost:8443"


@pytest.mark.parametrize("args, why", [
    (("--tunnel-scheme", "ftp"), "invalid value 'ftp' for '--tunnel-scheme'"),
    (("--tunnel-port", "0"), "invalid value '0' for '--tunnel-port'"),
    (("--tunnel-port", "70000"), "invalid value '70000' for '--tunnel-port'"),
])
def test_tunnel_url_options_are_checked(linkup_bin, env, args, why):
    r = subprocess.run([linkup_bin, "worker", "--listen", "127.0.0.1:0", "--token", "t",
                        "--store", "memory", *args], capture_output=True, text=True, env=env,
                       timeout=10)
    assert r.returncode == 2 and why in r.stderr


# ---- proxy path ------------------------------------------------------------------

def test_routing_by_subdomain_and_headers(worker, upstreams):
    fe, be = upstreams
    make_session(worker, "potato", fe.url, be.url)
    cases = [
        [("Host", "potato.example.com")],
        [("Host", "example.com"), ("x-forwarded-host", "potato.example.com")],
        [("Host", "example.com"), ("Referer", "http://potato.example.com/page")],
        [("Host", "example.com"), ("Origin", "http://potato.example.com")],
        [("Host", "example.com"), ("tracestate", "other=1,linkup-session=potato")],
        [("Host", f"127.0.0.1:{worker.port}"), ("tracestate", "linkup-session=potato"),
         ("Referer", "example.com")],
    ]
    for headers in cases:
        r = request(worker.addr, "GET", "/a/b?q=1", headers)
        assert (r.status, r.text) == (200, "127.0.0.2 GET /a/b?q=1"), headers
        for k, v in CORS.items():
            assert r.header(k) == v
    r = request(worker.addr, "GET", "/x", [("Host", "nosuch.example.com")])
    assert (r.status, r.text) == (422, NO_SESSION)
    r = request(worker.addr, "GET", "/x", [("Host", "potato.other.com")])
    assert (r.status, r.text) == (404, NO_TARGET)
    assert r.header("cache-control") == "no-store"


def test_routing_headers_listed_in_connection_are_replaced(worker, upstreams):
    """SPEC §3.10 drops the fields a Connection field lists; SPEC §3.7 adds
    x-forwarded-host, tracestate and linkup-destination where the forwarded
    request lacks them, so the next hop (a local server behind a tunnel)
    can still route. Several baggage fields are one list (W3C Baggage)."""
    fe, _ = upstreams
    make_session(worker, "potato", fe.url)
    r = request(worker.addr, "GET", "/x", [
        ("Host", "example.com"), ("x-forwarded-host", "potato.example.com"),
        ("tracestate", "a=1,linkup-session=potato"), ("linkup-destination", "frontend"),
        ("Connection", "x-forwarded-host, tracestate, linkup-destination"),
        ("baggage", "k=1"), ("baggage", "j=2")])
    assert r.status == 200, r.text
    got = fe.last()
    assert hdr_all(got, "x-forwarded-host") == ["potato.example.com"]
    assert hdr_all(got, "tracestate") == ["linkup-session=potato"]
    assert hdr_all(got, "linkup-destination") == ["frontend"]
    assert hdr_all(got, "baggage") == ["k=1,j=2,linkup-session=potato"]


def test_routes_and_rewrites(worker, upstreams):
    fe, be = upstreams
    make_session(worker, "potato", fe.url, be.url)
    cases = [
        ("potato.example.com", "/foo/b/c/?a=b", "127.0.0.2 GET /bar/b/c/?a=b"),
        ("potato.example.com", "/api/v1/?a=b", "127.0.0.3 GET /api/v1/?a=b"),
        ("potato.api.example.com", "/api/v1/?a=b", "127.0.0.3 GET /api/v1/?a=b"),
        ("potato.api.example.com", "/foo/x", "127.0.0.3 GET /foo/x"),
    ]
    for host, path, want in cases:
        r = request(worker.addr, "GET", path, [("Host", host)])
        assert (r.status, r.text) == (200, want), (host, path)
    # linkup-destination short-cut: no routes, no rewrites.
    r = request(worker.addr, "GET", "/foo/x", [("Host", "potato.example.com"),
                                                ("linkup-destination", "backend")])
    assert r.text == "127.0.0.3 GET /foo/x"


def test_routes_with_rust_class_syntax(worker, upstreams):
    """SPEC §1.3: route paths are Rust regexes, nested classes, class set operations and
    general categories by long name included (translated for PCRE2, not refused)."""
    fe, be = upstreams
    routes = [{"path": "^/[a-z--[aeiou]]{3}$", "service": "backend"},
              {"path": "^/v[\\d&&[^0]]/", "service": "backend"},
              {"path": "^/[[x-z]~~y]/", "service": "backend"},
              {"path": "^/\\p{Uppercase_Letter}+$", "service": "backend"}]
    body = named("potato", [("frontend", fe.url, None), ("backend", be.url, None)],
                 [("example.com", "frontend", routes)])
    r = post(worker.addr, "/linkup/v2/sessions/preview", body)
    assert r.status == 200, r.text
    cases = [("/bcd", "127.0.0.3"), ("/bad", "127.0.0.2"), ("/v1/x", "127.0.0.3"),
             ("/v0/x", "127.0.0.2"), ("/x/", "127.0.0.3"), ("/y/", "127.0.0.2"),
             ("/ABC", "127.0.0.3"), ("/AbC", "127.0.0.2")]
    for path, want in cases:
        r = request(worker.addr, "GET", path, [("Host", "potato.example.com")])
        assert (r.status, r.text) == (200, f"{want} GET {path}"), path


def test_what_the_upstream_receives(worker, upstreams):
    fe, _ = upstreams
    make_session(worker, "potato", fe.url)
    r = request(worker.addr, "GET", "/echo", [("Host", "potato.example.com"),
                                               ("Cookie", "a=b"), ("Cookie", "c=d"),
                                               ("Authorization", "Basic xyz"),
                                               ("X-Custom", "kept")])
    assert r.status == 200
    got = fe.last()
    assert len(hdr(got, "traceparent")) == 55
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00", hdr(got, "traceparent"))
    assert hdr(got, "tracestate") == "linkup-session=potato"
    assert hdr(got, "linkup-destination") == "frontend"
    assert hdr(got, "x-forwarded-host") == "potato.example.com"
    assert hdr_all(got, "host") == [fe.url[len("http://"):]]
    assert hdr_all(got, "cookie") == ["a=b; c=d"]
    assert hdr(got, "authorization") == "Basic xyz"
    assert hdr(got, "x-custom") == "kept"

    request(worker.addr, "GET", "/echo", [("Host", "example.com"), ("traceparent", "keep"),
                                          ("tracestate", "other-service=32"),
                                          ("x-forwarded-host", "potato.example.com"),
                                          ("Cookie", "a=b, c=d")])
    got = fe.last()
    assert hdr(got, "traceparent") == "keep"
    assert hdr(got, "tracestate") == "other-service=32,linkup-session=potato"
    assert hdr(got, "x-forwarded-host") == "potato.example.com"
    assert hdr_all(got, "cookie") == ["a=b; c=d"]

    request(worker.addr, "GET", "/echo", [("Host", "potato.example.com"),
                                          ("Cookie", "a=b; c=d")])
    assert hdr_all(fe.last(), "cookie") == ["a=b; c=d"]


@pytest.mark.parametrize("service", [
    "fe\r\nX-Injected: 1",
    "fe\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n",
    "fe\nX-Injected: 1",
    "fe\x01x",
])
def test_service_name_never_splits_the_upstream_request(start_worker, upstreams, service):
    """Service names have no syntax rules (SPEC §2.5), but the name goes out
    as the value of linkup-destination (§3.7): a name that is no valid field
    value (RFC 9110 §5.5: CR, LF, other controls) fails the request
    conversion, 400 `Failed to parse request: {e}` (SPEC §4.4 step 5), and
    nothing reaches the upstream: no injected header, no smuggled request;
    the access log keeps one line per request."""
    fe, _ = upstreams
    w = start_worker()
    body = named("inj", [(service, fe.url, None), ("ok", fe.url, None)],
                 [("example.com", service, [{"path": "^/ok", "service": "ok"}])])
    assert post(w.addr, "/linkup/v2/sessions/preview", body, AUTH + JSON).status == 200
    r = request(w.addr, "GET", "/x", [("Host", "inj.example.com")])
    assert r.status == 400, r.body
    assert r.text.startswith("Failed to parse request: ")
    assert r.header("content-type") == "text/plain"
    assert r.header("cache-control") == "no-store"
    assert "access-control-allow-origin" not in [k.lower() for k, _ in r.headers]
    assert fe.requests == []
    # A client's own linkup-destination naming a valid service still routes.
    r = request(w.addr, "GET", "/ok", [("Host", "inj.example.com")])
    assert r.status == 200
    assert [q["path"] for q in fe.requests] == ["/ok"]
    assert hdr(fe.last(), "linkup-destination") == "ok"
    assert w.stop() == 0
    log = w.log_path.read_text()
    assert all(line.startswith("[") for line in log.splitlines()), log
    assert "service=fe\\x" in log

def test_refused_request_heads_get_an_access_line(start_worker):
    """Issue 3: an access-log line per request, a head the engine refuses (400, 431)
    included; its method, host and path did not parse, so they read "-"."""
    w = start_worker()
    heads = [b"GET /x HTTP/1.1\r\nHost: s.example.com\r\nX Y: z\r\n\r\n",
             b"GET /y HTTP/1.1\r\nHost: s.example.com\r\nX: " + b"a" * 70000 + b"\r\n\r\n"]
    for head in heads:
        with socket.create_connection(w.addr, timeout=5) as s:
            s.sendall(head)
            status = s.recv(64).split(b"\r\n")[0]
            assert status in (b"HTTP/1.1 400 Bad Request",
                              b"HTTP/1.1 431 Request Header Fields Too Large"), status
    assert w.stop() == 0
    log = w.log_path.read_text()
    assert "access - - - session=- service=- status=400 bytes=" in log, log
    assert "access - - - session=- service=- status=431 bytes=" in log, log


def test_service_pointing_back_at_the_worker_is_one_502(start_worker):
    """A session whose service is the worker itself would send each request
    round again until the connection limit. The worker recognises its own
    upstream connection when it arrives and answers the 502 there, once; the
    outer request passes that answer on. It keeps serving, and says so in
    its log."""
    w = start_worker()
    own = "http://127.0.0.1:%d" % w.addr[1]
    body = named("loopy", [("fe", own, None)], [("example.com", "fe", None)])
    assert post(w.addr, "/linkup/v2/sessions/preview", body, AUTH + JSON).status == 200
    for path in ("/x", "/again"):  # the second one on the pooled connection
        r = request(w.addr, "GET", path, [("Host", "loopy.example.com")])
        assert (r.status, r.text) == (502, "Failed to fetch from target service: request loop: "
                                           "the request came back from this server's own proxy")
    r = request(w.addr, "GET", "/linkup/check", AUTH)
    assert r.status == 200
    assert w.stop() == 0
    log = w.log_path.read_text()
    assert "request loop: " in log and "is this server's own upstream connection" in log
    # Two hops per request (outer, inner), not thousands.
    assert log.count(" access GET ") <= 5, log


def test_response_passthrough(worker, upstreams):
    fe, _ = upstreams
    make_session(worker, "potato", fe.url)
    h = [("Host", "potato.example.com")]
    r = request(worker.addr, "GET", "/cookies", h)
    assert r.status == 200
    assert r.all("set-cookie") == ["cookie1=value1; Path=/", "cookie2=value2; Path=/"]
    r = request(worker.addr, "GET", "/redirect", h)
    assert (r.status, r.header("location")) == (307, "/somethingelse")
    # DESIGN §2.7: the upstream's own CORS header wins, the others are added.
    r = request(worker.addr, "GET", "/cors", h)
    assert r.all("access-control-allow-origin") == ["https://x.example"]
    assert r.header("access-control-max-age") == "86400"
    r = request(worker.addr, "HEAD", "/x", h)
    assert (r.status, r.body) == (200, b"")


def test_delete_with_body_and_methods(worker, upstreams):
    fe, _ = upstreams
    make_session(worker, "potato", fe.url)
    for method in ("DELETE", "PUT", "PATCH", "POST", "OPTIONS"):
        r = request(worker.addr, method, "/thing", [("Host", "potato.example.com")],
                    body=b"payload-" + method.encode())
        assert (r.status, r.text) == (200, f"127.0.0.2 {method} /thing")
        assert fe.last()["body"] == b"payload-" + method.encode()


def test_chunked_request_body(worker, upstreams):
    fe, _ = upstreams
    make_session(worker, "potato", fe.url)
    data = os.urandom(300000)
    s = socket.create_connection(worker.addr, timeout=15)
    try:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: potato.example.com\r\n"
                  b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        off = 0
        for size in (1, 7, 4096, 65536, 100000, len(data)):
            part = data[off:off + size]
            if not part:
                break
            s.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            off += len(part)
        s.sendall(b"0\r\n\r\n")
        resp = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            resp += c
    finally:
        s.close()
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body.decode() == f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def is_asan(bin_):
    with open(bin_, "rb") as f:
        return b"AddressSanitizer" in f.read()


class RssSampler:
    def __init__(self, worker):
        self.worker = worker
        self.peak = 0
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_ev.is_set():
            self.peak = max(self.peak, self.worker.rss_kib())
            time.sleep(0.02)

    def stop(self):
        self.stop_ev.set()
        self.t.join()
        return self.peak


RSS_LIMIT_KIB = 64 * 1024


def test_100_mib_upload_and_download(worker, upstreams, linkup_bin):
    fe, _ = upstreams
    make_session(worker, "potato", fe.url)
    sampler = RssSampler(worker)
    try:
        # Download.
        c = http.client.HTTPConnection(*worker.addr, timeout=60)
        c.putrequest("GET", "/big/100", skip_host=True)
        c.putheader("Host", "potato.example.com")
        c.endheaders()
        r = c.getresponse()
        assert r.status == 200
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = r.read(MIB)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        c.close()
        want = hashlib.sha256()
        block = pattern_block()
        for _ in range(100):
            want.update(block)
        assert n == 100 * MIB
        assert h.hexdigest() == want.hexdigest()

        # Upload.
        c = http.client.HTTPConnection(*worker.addr, timeout=60)
        c.putrequest("POST", "/upload", skip_host=True)
        c.putheader("Host", "potato.example.com")
        c.putheader("Content-Length", str(100 * MIB))
        c.endheaders()
        for _ in range(100):
            c.send(block)
        r = c.getresponse()
        assert (r.status, r.read().decode()) == (200, f"{100 * MIB} {want.hexdigest()}")
        c.close()
    finally:
        peak = sampler.stop()
    # ASan's quarantine keeps freed buffers (256 MiB by default), so RSS says
    # nothing about the worker there; the byte-exact checks above still ran.
    if not is_asan(linkup_bin):
        assert 0 < peak < RSS_LIMIT_KIB, f"worker RSS peaked at {peak} KiB"


def test_upstream_down_is_502(worker):
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    port = s.getsockname()[1]
    s.close()
    make_session(worker, "potato", f"http://127.0.0.2:{port}")
    r = request(worker.addr, "GET", "/x", [("Host", "potato.example.com")])
    assert r.status == 502
    assert r.text.startswith("Failed to fetch from target service: ")
    assert r.header("cache-control") == "no-store"


# ---- WebSocket -------------------------------------------------------------------



# WebSocket framing comes from the shared helpers (lk.ws_frame, lk.ws_read_frame,
# lk.ws_accept).
ws_accept = lk.ws_accept
ws_frame = lk.ws_frame
ws_read = lk.ws_read_frame


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        c = sock.recv(1)
        if not c:
            raise EOFError(data)
        data += c
    return data.decode()


class WsEcho:
    """A raw WebSocket echo server on 127.0.0.2:0 (text and binary frames)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.2", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.2:{self.sock.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def conn(self, c):
        try:
            head = read_head(c)
            key = re.search(r"(?im)^sec-websocket-key:\s*(\S+)", head).group(1)
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nmy-special-header: special-value\r\n"
                       f"Sec-WebSocket-Accept: {ws_accept(key)}\r\n\r\n").encode())
            while True:
                op, data = ws_read(c)
                if op == 8:
                    c.sendall(ws_frame(8, data, False))
                    return
                c.sendall(ws_frame(op, data, False))
        except (EOFError, OSError):
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


def test_websocket_echo(worker):
    up = WsEcho()
    try:
        make_session(worker, "wscow", up.url)
        s = socket.create_connection(worker.addr, timeout=15)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /ws HTTP/1.1\r\nHost: wscow.example.com\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = read_head(s)
        assert head.startswith("HTTP/1.1 101"), head
        assert re.search(r"(?im)^my-special-header: special-value\r$", head)
        assert re.search(rf"(?im)^sec-websocket-accept: {re.escape(ws_accept(key))}\r$", head)
        assert re.search(r"(?im)^access-control-allow-origin: \*\r$", head)
        s.sendall(ws_frame(1, b"Hello, WebSocket!", True))
        assert ws_read(s) == (1, b"Hello, WebSocket!")
        blob = os.urandom(70000)
        s.sendall(ws_frame(2, blob, True))
        assert ws_read(s) == (2, blob)
        s.sendall(ws_frame(8, struct.pack("!H", 1000), True))
        assert ws_read(s)[0] == 8
        s.close()
    finally:
        up.close()


def test_websocket_refused_upgrade_is_502(worker, upstreams):
    fe, _ = upstreams
    make_session(worker, "potato", fe.url)
    r = request(worker.addr, "GET", "/ws", [("Host", "potato.example.com"),
                                             ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                             ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                             ("Sec-WebSocket-Version", "13")])
    assert r.status == 502
    assert r.text.startswith("Failed to connect to destination: ")


def test_websocket_refusal_is_502_not_passed_on(worker):
    """SPEC §4.7 differs from the local server (§5.4 step 3): an upstream that
    refuses the upgrade with its own response (403 + body) is not passed on;
    the worker answers its own 502, which carries no CORS headers (§3.9)."""
    up = lk.WsEchoUpstream("127.0.0.2")
    try:
        make_session(worker, "refused", up.url)
        r = request(worker.addr, "GET", "/reject",
                    [("Host", "refused.example.com"), ("Upgrade", "websocket"),
                     ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                     ("Sec-WebSocket-Version", "13")])
        assert r.status == 502
        assert r.text.startswith("Failed to connect to destination: "), r.text
        assert "no websocket here" not in r.text
        assert not [k for k, _ in r.headers if k.lower().startswith("access-control-")], r.headers
        assert up.heads and up.heads[-1][0] == "GET /reject HTTP/1.1"
    finally:
        up.close()


@pytest.mark.parametrize("upgrade,why", [
    ("Upgrade: h2c\r\nConnection: Upgrade\r\n", "without Upgrade: websocket"),
    ("", "without Upgrade: websocket"),
    ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n",
     "with a wrong Sec-WebSocket-Accept"),
], ids=["h2c", "no-upgrade", "wrong-accept"])
def test_websocket_101_that_is_no_websocket_switch_is_502(worker, upgrade, why):
    """SPEC §4.7: an upstream answer that does not carry a WebSocket is the
    502 `Failed to connect to destination: ...`, a 101 included when it
    switches to something else or with an accept value that is not the one
    of the key sent (RFC 6455 §4.2.2)."""
    up = lk.ScriptedUpstream(("HTTP/1.1 101 Switching Protocols\r\n" + upgrade + "\r\n").encode())
    try:
        make_session(worker, "notws", up.url)
        r = request(worker.addr, "GET", "/ws",
                    [("Host", "notws.example.com"), ("Upgrade", "websocket"),
                     ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                     ("Sec-WebSocket-Version", "13")])
        assert (r.status, r.text) == (
            502, "Failed to connect to destination: upstream answered 101 " + why)
        assert up.count == 1
    finally:
        up.close()


def test_websocket_101_hop_by_hop_headers_are_not_relayed(worker):
    """SPEC §3.10 (RFC 9110 §7.6.1) on the worker's 101 (the engine the local
    server uses): Keep-Alive, the names Connection lists, Proxy-Connection,
    TE, Trailer and Transfer-Encoding are dropped; Connection: upgrade,
    Upgrade, Sec-WebSocket-* and end-to-end fields stay."""
    accept = lk.ws_accept("dGhlIHNhbXBsZSBub25jZQ==")
    up = lk.ScriptedUpstream(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade, Keep-Alive, X-Hop\r\nKeep-Alive: timeout=5\r\n"
                              "X-Hop: 1\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
                              "Trailer: X-T\r\nTransfer-Encoding: chunked\r\n"
                              f"Sec-WebSocket-Accept: {accept}\r\n"
                              "my-special-header: special-value\r\n\r\n").encode())
    try:
        make_session(worker, "hopws", up.url)
        with socket.create_connection(worker.addr, timeout=10) as sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: hopws.example.com\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            status, headers, _ = lk.read_http_head(sock)
        assert status.startswith("HTTP/1.1 101"), status
        h = lk.check_ws101_has_no_hop_by_hop(headers, accept)
        assert h["my-special-header"] == "special-value"
    finally:
        up.close()


class WsScripted(WsEcho):
    """A WebSocket upstream on 127.0.0.2:0 whose path says how it ends:
    /close (and /deflate, which also accepts permessage-deflate) answers a
    close with close 4002 "later"; /raw echoes bytes, not frames; /drop echoes one frame,
    reads the next and closes the socket without a close frame; /reset does
    the same with an RST; /listen echoes until the end. self.frames: (opcode, payload, masked)
    of every frame received, per connection; self.ended: set at its end."""

    def __init__(self):
        self.frames = []
        self.ended = threading.Event()
        super().__init__()

    def read(self, c):
        op, payload, masked = lk.ws_read_frame(c, with_mask=True)
        self.frames.append((op, payload, masked))
        return op, payload

    def conn(self, c):
        c.settimeout(10)
        try:
            head = read_head(c)
            path = head.split(" ")[1]
            key = re.search(r"(?im)^sec-websocket-key:\s*(\S+)", head).group(1)
            ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if path == "/deflate" else ""
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Accept: {ws_accept(key)}\r\n"
                       f"{ext}\r\n").encode())
            if path == "/raw":  # bytes, not frames: echoed until the end
                while data := c.recv(65536):
                    c.sendall(data)
                return
            while True:
                op, data = self.read(c)
                if path in ("/close", "/deflate") and op == 8:
                    c.sendall(ws_frame(8, struct.pack("!H", 4002) + b"later", False))
                    return
                if path in ("/drop", "/reset") and op in (1, 2):
                    c.sendall(ws_frame(op, data, False))
                    self.read(c)  # the client has the echo: the worker relayed it
                    if path == "/reset":
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
                    return
                if op in (1, 2, 9):
                    c.sendall(ws_frame(10 if op == 9 else op, data, False))
        except (EOFError, OSError):
            pass
        finally:
            c.close()
            self.ended.set()

    def close(self):
        self.sock.close()


def ws_open(worker, host, path):
    s = socket.create_connection(worker.addr, timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = read_head(s)
    assert head.startswith("HTTP/1.1 101"), head
    return s


@pytest.fixture
def ws_scripted(worker):
    up = WsScripted()
    make_session(worker, "wsclose", up.url)
    yield up
    up.close()


def test_websocket_close_is_resent_with_1000_and_its_reason(worker, ws_scripted):
    """SPEC §4.7: a close from one side closes the other with code 1000 and
    the received reason, both ways; frames before it pass unchanged."""
    s = ws_open(worker, "wsclose.example.com", "/close")
    s.sendall(ws_frame(9, b"are you there", True))
    assert ws_read(s) == (10, b"are you there")
    blob = os.urandom(70000)
    s.sendall(ws_frame(2, blob, True))
    assert ws_read(s) == (2, blob)
    s.sendall(ws_frame(8, struct.pack("!H", 4001) + b"bye", True))
    assert ws_read(s) == (8, struct.pack("!H", 1000) + b"later")
    assert ws_scripted.ended.wait(10)
    assert ws_scripted.frames[-1] == (8, struct.pack("!H", 1000) + b"bye", True)
    s.settimeout(10)
    assert s.recv(1) == b""
    s.close()


def test_websocket_close_without_code_gets_1000(worker, ws_scripted):
    s = ws_open(worker, "wsclose.example.com", "/close")
    s.sendall(ws_frame(8, b"", True))
    assert ws_read(s) == (8, struct.pack("!H", 1000) + b"later")
    assert ws_scripted.ended.wait(10)
    assert ws_scripted.frames[-1] == (8, struct.pack("!H", 1000), True)
    s.close()


def test_websocket_frames_split_anywhere_pass_unchanged(worker, ws_scripted):
    """The worker reads frame heads (SPEC §4.7): heads and payloads cut at
    every byte, every length form (7, 16 and 64 bits) and several frames in
    one write come back exactly."""
    import random
    rnd = random.Random(8)
    s = ws_open(worker, "wsclose.example.com", "/close")
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 200000, 3, 0]
    for n in sizes:
        payload = os.urandom(n)
        frame = ws_frame(2, payload, True)
        cut = 0
        while cut < len(frame):  # the head a byte at a time, the rest in pieces
            step = 1 if cut < 14 else rnd.randint(1, 70000)
            s.sendall(frame[cut:cut + step])
            cut += step
            if cut < 14:
                time.sleep(0.002)
        assert ws_read(s) == (2, payload)
    batch = [os.urandom(rnd.randint(0, 300)) for _ in range(50)]
    s.sendall(b"".join(ws_frame(1 + i % 2, b, True) for i, b in enumerate(batch)))
    for i, b in enumerate(batch):
        assert ws_read(s) == (1 + i % 2, b)
    close = ws_frame(8, struct.pack("!H", 4000) + b"split", True)
    s.sendall(close[:3])
    time.sleep(0.05)
    s.sendall(close[3:])
    assert ws_read(s) == (8, struct.pack("!H", 1000) + b"later")
    assert ws_scripted.ended.wait(10)
    assert ws_scripted.frames[-1] == (8, struct.pack("!H", 1000) + b"split", True)
    s.close()


def test_websocket_raw_bytes_pass_untouched(worker, ws_scripted):
    """Bytes that break RFC 6455 §5.2 from the start (text: reserved bits
    set, no mask) are no frames to rewrite: what follows, close-looking
    bytes and random data included, passes byte-exact both ways, and the
    end adds no close of its own."""
    s = ws_open(worker, "wsclose.example.com", "/raw")
    data = (b"hello, raw bytes\n" + bytes([0x88, 0x02, 0x0f, 0xa1]) + os.urandom(200000)
            + bytes([0x88, 0x82, 1, 2, 3, 4, 0x0e, 0xa3]))
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = b""
    s.settimeout(10)
    while chunk := s.recv(65536):
        got += chunk
    assert got == data
    s.close()


@pytest.mark.parametrize("ext", [True, False])
def test_websocket_reserved_bits_need_an_extension(worker, ws_scripted, ext):
    """RSV1 (permessage-deflate) is fine once the 101 names an extension and
    the client's close is still re-sent with 1000; without one the client's
    stream is not read as frames any more and its close passes as it is (the
    upstream's own direction is still read: its close becomes 1000)."""
    s = ws_open(worker, "wsclose.example.com", "/deflate" if ext else "/close")
    key = os.urandom(4)
    payload = b"compressed?"
    s.sendall(bytes([0xC2, 0x80 | len(payload)]) + key
              + bytes(b ^ key[i % 4] for i, b in enumerate(payload)))
    assert ws_read(s) == (2, payload)
    s.sendall(ws_frame(8, struct.pack("!H", 4001) + b"bye", True))
    op, data = ws_read(s)
    assert op == 8
    assert ws_scripted.ended.wait(10)
    assert data == struct.pack("!H", 1000) + b"later"
    code = 1000 if ext else 4001
    assert ws_scripted.frames[-1] == (8, struct.pack("!H", code) + b"bye", True)
    s.close()


@pytest.mark.parametrize("path", ["/drop", "/reset"])
def test_websocket_upstream_gone_without_close_is_1011(worker, ws_scripted, path):
    """SPEC §4.7: an upstream that ends (FIN or RST) without a close frame
    closes the client with 1011 and a reason."""
    s = ws_open(worker, "wsclose.example.com", path)
    s.sendall(ws_frame(1, b"last words", True))
    assert ws_read(s) == (1, b"last words")
    s.sendall(ws_frame(1, b"go", True))
    op, data = ws_read(s)
    assert op == 8
    assert struct.unpack("!H", data[:2])[0] == 1011
    assert data[2:] == b"websocket upstream went away without a close frame"
    s.settimeout(10)
    assert s.recv(1) == b""
    s.close()
    # The worker is still fine.
    assert request(worker.addr, "GET", "/linkup/check", AUTH).status == 200


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_websocket_client_gone_without_close_is_1011(worker, ws_scripted, how):
    s = ws_open(worker, "wsclose.example.com", "/listen")
    s.sendall(ws_frame(1, b"hello", True))
    assert ws_read(s) == (1, b"hello")
    if how == "fin":
        s.shutdown(socket.SHUT_WR)
    else:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    assert ws_scripted.ended.wait(10)
    op, data, masked = ws_scripted.frames[-1]
    assert (op, masked) == (8, True)
    assert struct.unpack("!H", data[:2])[0] == 1011
    assert data[2:] == b"websocket client went away without a close frame"
    s.close()


@pytest.mark.parametrize("when", ["between-frames", "mid-frame"])
def test_websocket_drain_closes_both_sides_with_1001(worker, ws_scripted, when):
    """SIGTERM with a WebSocket open: the drain closes both sides with 1001
    "server shutting down" (RFC 6455 §7.4.1: going away) at a frame boundary
    (a frame the client is half-way through goes upstream whole, then the
    close), relays no data after it, and the worker exits as soon as both
    sides have closed, well within WORKER_DRAIN_MS (10 s)."""
    bye = struct.pack("!H", 1001) + b"server shutting down"
    s = ws_open(worker, "wsclose.example.com", "/close")
    s.sendall(ws_frame(1, b"hello", True))
    assert ws_read(s) == (1, b"hello")
    whole = ws_frame(1, b"m" * 1000, True)
    if when == "mid-frame":
        s.sendall(whole[:500])
        time.sleep(0.3)  # the worker has relayed the first half
    started = time.monotonic()
    worker.p.send_signal(signal.SIGTERM)
    assert ws_read(s) == (8, bye)
    if when == "mid-frame":
        time.sleep(0.3)
        assert ws_scripted.frames[-1][0] == 1  # no close inside the frame
        s.sendall(whole[500:])
    s.sendall(ws_frame(8, struct.pack("!H", 1001), True))  # the client's answer
    s.settimeout(10)
    assert s.recv(1) == b""  # the upstream's answer (4002) is not relayed: the end
    s.close()
    assert ws_scripted.ended.wait(10)
    got = ws_scripted.frames[-2:] if when == "mid-frame" else ws_scripted.frames[-1:]
    assert got == ([(1, b"m" * 1000, True)] if when == "mid-frame" else []) + [(8, bye, True)]
    assert worker.p.wait(10) == 0
    assert time.monotonic() - started < 5, "the worker waited for the drain deadline"


# ---- stores ----------------------------------------------------------------------

def test_sqlite_session_survives_restart(start_worker, upstreams, tmp_path):
    fe, _ = upstreams
    store = f"sqlite:{tmp_path / 'w.db'}"
    w1 = start_worker(store=store)
    make_session(w1, "potato", fe.url)
    tunnel = json.loads(request(w1.addr, "GET", "/linkup/tunnel?session_name=potato", AUTH).body)
    assert w1.stop() == 0
    w2 = start_worker(store=store)
    r = request(w2.addr, "GET", "/p", [("Host", "potato.example.com")])
    assert (r.status, r.text) == (200, "127.0.0.2 GET /p")
    again = json.loads(request(w2.addr, "GET", "/linkup/tunnel?session_name=potato", AUTH).body)
    assert again["id"] == tunnel["id"]
    # The token still owns the name.
    body = named("potato", [("frontend", fe.url, None)], [("example.com", "frontend", None)],
                 token="intruder")
    assert post(w2.addr, "/linkup/v2/sessions/preview", body).status == 409


def test_sqlite_expiry_and_tunnel_cleanup(start_worker, upstreams, tmp_path):
    """Issue 3 / SPEC §2.7, §4.9: a session past its 7 days is neither served
    nor owned (another token may take the name); the cleanup run at start-up
    deletes tunnel records unused for more than 7 days (a new upsert gets a new
    id) and keeps younger ones. The clock is moved by editing the SQLite rows."""
    import sqlite3
    fe, _ = upstreams
    db = tmp_path / "w.db"
    w1 = start_worker(store=f"sqlite:{db}")
    for name in ("old", "young", "expired"):
        make_session(w1, name, fe.url)
    ids = {n: json.loads(request(w1.addr, "GET", f"/linkup/tunnel?session_name={n}",
                                 AUTH).body)["id"] for n in ("old", "young")}
    assert w1.stop() == 0
    now = int(time.time() * 1000)
    day = 86400 * 1000
    with sqlite3.connect(db) as c:
        for key, age in (("linkup-tunnel-old", 7 * day + 60000),
                         ("linkup-tunnel-young", 7 * day - 60000)):
            (value,) = c.execute("SELECT value FROM tunnels WHERE key = ?", (key,)).fetchone()
            td = json.loads(value)
            td["last_started"] = now - age
            c.execute("UPDATE tunnels SET value = ? WHERE key = ?",
                      (json.dumps(td, separators=(",", ":")), key))
        c.execute("UPDATE sessions SET expires_at = ? WHERE key = 'expired'", (now - 1000,))
    w2 = start_worker(store=f"sqlite:{db}")
    assert request(w2.addr, "GET", "/p", [("Host", "young.example.com")]).status == 200
    r = request(w2.addr, "GET", "/p", [("Host", "expired.example.com")])
    assert (r.status, r.text) == (422, NO_SESSION)
    body = named("expired", [("frontend", fe.url, None)], [("example.com", "frontend", None)],
                 token="someone-else")
    assert post(w2.addr, "/linkup/v2/sessions/preview", body).status == 200
    again = {n: json.loads(request(w2.addr, "GET", f"/linkup/tunnel?session_name={n}",
                                   AUTH).body)["id"] for n in ("old", "young")}
    assert again["young"] == ids["young"]
    assert again["old"] != ids["old"]


def test_bad_store_spec_fails(linkup_bin, env):
    for spec in ("nosuch", "redis://nohostport", "sqlite:/nonexistent/dir/x.db"):
        r = subprocess.run([linkup_bin, "worker", "--token", "t", "--listen", "127.0.0.1:0",
                            "--store", spec], capture_output=True, text=True, env=env,
                           timeout=10)
        assert r.returncode == 1, spec
        assert "store" in r.stderr


@pytest.fixture
def redis():
    exe = shutil.which("redis-server")
    if not exe:
        pytest.skip("redis-server is not installed")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                p.kill()
                raise
            time.sleep(0.05)
    yield p, port
    if p.poll() is None:
        p.terminate()
        p.wait(10)


def test_redis_two_workers_share_sessions(start_worker, upstreams, redis):
    fe, be = upstreams
    _, port = redis
    w1 = start_worker(store=f"redis://127.0.0.1:{port}/2")
    w2 = start_worker(store=f"redis://127.0.0.1:{port}/2")
    make_session(w1, "potato", fe.url)
    r = request(w2.addr, "GET", "/p", [("Host", "potato.example.com")])
    assert (r.status, r.text) == (200, "127.0.0.2 GET /p")
    # An update through w2 is seen by w1 at once (stored bytes are compared).
    make_session(w2, "potato", be.url)
    r = request(w1.addr, "GET", "/p", [("Host", "potato.example.com")])
    assert (r.status, r.text) == (200, "127.0.0.3 GET /p")
    # Conflicts are detected across workers.
    body = named("potato", [("frontend", fe.url, None)], [("example.com", "frontend", None)],
                 token="intruder")
    assert post(w1.addr, "/linkup/v2/sessions/preview", body).status == 409
    t1 = json.loads(request(w1.addr, "GET", "/linkup/tunnel?session_name=s", AUTH).body)
    t2 = json.loads(request(w2.addr, "GET", "/linkup/tunnel?session_name=s", AUTH).body)
    assert t1["id"] == t2["id"]


def test_redis_down_is_a_store_error_not_a_crash(start_worker, upstreams, redis):
    fe, _ = upstreams
    p, port = redis
    w = start_worker(store=f"redis://127.0.0.1:{port}")
    make_session(w, "potato", fe.url)
    p.terminate()
    p.wait(10)
    r = post(w.addr, "/linkup/v2/sessions/preview",
             named("other", [("frontend", fe.url, None)], [("example.com", "frontend", None)]))
    assert r.status == 500
    assert r.text.startswith("Failed to store server config: ")
    r = request(w.addr, "GET", "/p", [("Host", "potato.example.com")])
    assert r.status == 503 and r.text.startswith("Linkup could not read its session store")
    assert request(w.addr, "GET", "/linkup/check", AUTH).status == 200


# ---- lifecycle -------------------------------------------------------------------

def test_sigterm_drains_in_flight_requests(start_worker, upstreams):
    fe, _ = upstreams
    w = start_worker()
    make_session(w, "potato", fe.url)
    result = {}

    def slow():
        result["r"] = request(w.addr, "GET", "/slow", [("Host", "potato.example.com")])

    t = threading.Thread(target=slow)
    t.start()
    deadline = time.time() + 5
    while not any(r["path"] == "/slow" for r in fe.requests) and time.time() < deadline:
        time.sleep(0.01)
    w.p.send_signal(signal.SIGTERM)
    t.join(15)
    assert (result["r"].status, result["r"].text) == (200, "slow done")
    assert w.p.wait(15) == 0
    with pytest.raises(OSError):
        socket.create_connection(w.addr, timeout=2).close()


def test_token_is_never_logged(start_worker, upstreams):
    fe, _ = upstreams
    secret = "s3cr3t-T0KEN-for-log-check"
    w = start_worker(token=secret, env_extra={"LINKUP_LOG": "debug"})
    auth = [("Authorization", f"Bearer {secret}")]
    assert request(w.addr, "GET", "/linkup/check", auth).status == 200
    assert request(w.addr, "GET", "/linkup/check", [("Authorization", "wrong")]).status == 401
    body = named("potato", [("frontend", fe.url, None)], [("example.com", "frontend", None)])
    assert post(w.addr, "/linkup/v2/sessions/preview", body, auth + JSON).status == 200
    assert request(w.addr, "GET", "/x", [("Host", "potato.example.com")] + auth).status == 200
    assert w.stop() == 0
    log = w.log_path.read_text()
    assert "access" in log
    assert secret not in log


# ---- cache (SPEC §4.6, DESIGN §2.7) ---------------------------------------------

def count(up, path):
    return sum(1 for r in up.requests if r["path"] == path)


def test_cache_serves_repeated_gets_from_memory(worker, upstreams):
    fe, _ = upstreams
    make_session(worker, "potato", fe.url, cache_routes=["/static/.*", "/big/.*"])
    make_session(worker, "tomato", fe.url, cache_routes=["/static/.*"])
    h = [("Host", "potato.example.com")]
    first = request(worker.addr, "GET", "/static/app.js", h)
    second = request(worker.addr, "GET", "/static/app.js", h)
    for r in (first, second):
        assert (r.status, r.text) == (200, "app.js 1")
        assert r.header("content-type") == "text/javascript"
        assert r.header("x-kind") == "app.js"
        for k, v in CORS.items():
            assert r.header(k) == v
    assert count(fe, "/static/app.js") == 1
    got = fe.last()
    assert hdr(got, "linkup-destination") == "frontend"
    assert hdr(got, "tracestate") == "linkup-session=potato"
    assert hdr_all(got, "host") == [fe.url[len("http://"):]]
    # Keys are scoped to the session and include the query.
    r = request(worker.addr, "GET", "/static/app.js", [("Host", "tomato.example.com")])
    assert r.text == "app.js 2"
    r = request(worker.addr, "GET", "/static/app.js?v=2", h)
    assert r.text == "app.js 1"
    assert request(worker.addr, "GET", "/static/app.js?v=2", h).text == "app.js 1"
    # Only GET, only cache routes.
    r = request(worker.addr, "POST", "/static/app.js", h, body=b"x")
    assert r.text == "app.js 3"
    assert fe.last()["method"] == "POST"
    request(worker.addr, "GET", "/other", h)
    request(worker.addr, "GET", "/other", h)
    assert count(fe, "/other") == 2
    # A cached entry survives its upstream going away.
    fe.close()
    assert request(worker.addr, "GET", "/static/app.js", h).text == "app.js 1"


@pytest.mark.parametrize("kind,status", [
    ("nostore", 200), ("private", 200), ("nocache", 200), ("zero", 200), ("cookie", 200),
    ("error", 500), ("partial", 206),
])
def test_cache_does_not_store(worker, upstreams, kind, status):
    fe, _ = upstreams
    make_session(worker, "potato", fe.url, cache_routes=["/static/.*"])
    for i in (1, 2):
        r = request(worker.addr, "GET", f"/static/{kind}", [("Host", "potato.example.com")])
        assert (r.status, r.text) == (status, f"{kind} {i}")
        assert r.header("access-control-allow-origin") == "*"


def test_cache_stores_404_and_expires(worker, upstreams):
    fe, _ = upstreams
    make_session(worker, "potato", fe.url, cache_routes=["/static/.*"])
    h = [("Host", "potato.example.com")]
    for _ in range(2):
        assert request(worker.addr, "GET", "/static/missing", h).text == "missing 1"
        assert request(worker.addr, "GET", "/static/short", h).text == "short 1"
    time.sleep(1.2)
    assert request(worker.addr, "GET", "/static/short", h).text == "short 2"


def test_cache_large_response_falls_back_to_streaming(worker, upstreams):
    fe, _ = upstreams
    make_session(worker, "potato", fe.url, cache_routes=["/big/.*"])
    want = hashlib.sha256(pattern_block() * 20).hexdigest()
    for _ in range(2):
        r = request(worker.addr, "GET", "/big/20", [("Host", "potato.example.com")], timeout=60)
        assert r.status == 200
        assert hashlib.sha256(r.body).hexdigest() == want


def test_cache_route_upstream_down_is_502(worker):
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    port = s.getsockname()[1]
    s.close()
    make_session(worker, "potato", f"http://127.0.0.2:{port}", cache_routes=["/static/.*"])
    r = request(worker.addr, "GET", "/static/x.js", [("Host", "potato.example.com")])
    assert r.status == 502
    assert r.text.startswith("Failed to fetch from target service: ")
