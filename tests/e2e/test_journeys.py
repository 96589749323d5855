"""Whole-system user journeys, black-box (SPEC §0.2, §6.5.1-§6.5.5, §6.5.13,
§6.6, §7; DESIGN §3, §8): a real `linkup worker` (SQLite store in tmp), small
real HTTP services standing for the "remote" web and api and the "local" web
(which also speaks WebSocket), a linkup.yaml pointing at them, and the CLI in
a private LINKUP_HOME/HOME, driven as a developer would: start, requests
through the worker (and the built-in tunnel), route local/remote, status and
health at each step, stop, start again; and journeys that go wrong.

Everything listens on loopback; every wait is bounded."""
import base64
import http.server
import json
import os
import pathlib
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

import lk
from test_cloudflared import CloudflareWorker  # an original worker handing out Cloudflare credentials

DELIM = "##### Linkup environment - DO NOT EDIT #####"
NOT_RUNNING = ("Seems like your local Linkup server is not running. "
               "Please run 'linkup start' first.\n")


class Service:
    """A small real HTTP service on 127.0.0.1:0 answering every request with
    `{label} {METHOD} {path}` (and recording the request headers); with
    ws=True a WebSocket upgrade on any path is accepted and frames echoed."""

    def __init__(self, label, ws=False):
        self.label = label
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.requests.append((self.command, self.path,
                                       {k.lower(): v for k, v in self.headers.items()}, body))
                if ws and (self.headers.get("Upgrade") or "").lower() == "websocket":
                    return self._websocket()
                data = f"{outer.label} {self.command} {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _websocket(self):
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept",
                                 lk.ws_accept(self.headers["Sec-WebSocket-Key"]))
                self.end_headers()
                self.wfile.flush()
                c = self.connection
                c.settimeout(10)
                try:
                    while True:
                        op, payload = lk.ws_read_frame(c)
                        if op == 8:
                            c.sendall(lk.ws_frame(8, payload, mask=False))
                            break
                        if op in (1, 2):
                            c.sendall(lk.ws_frame(op, payload, mask=False))
                except (EOFError, OSError):
                    pass
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Journey:
    """One developer's machine: worker, services, config, env and helpers."""

    def __init__(self, bin_, env, tmp_path):
        self.bin, self.env, self.tmp = bin_, env, tmp_path
        self.home = pathlib.Path(env["LINKUP_HOME"])
        self.db = tmp_path / "worker.db"
        self.remote_web = Service("remote web")
        self.remote_api = Service("remote api")
        self.local_web = Service("local web", ws=True)
        # A local api that is not running: a port nobody listens on.
        self.local_api_port = lk.free_port()
        self.worker = self.spawn_worker()
        self.waddr = self.worker.addrs["Worker"]
        self.svc_dir = tmp_path / "web"
        self.svc_dir.mkdir()
        (self.svc_dir / ".env.development.linkup").write_text("API_URL=http://api\n")
        (self.svc_dir / ".env.development").write_text("USER_SETTING=1\n")
        self.cfg = self.write_config()

    def spawn_worker(self, listen="127.0.0.1:0"):
        log = str(self.tmp / f"worker-{time.monotonic_ns()}.log")
        if listen == "127.0.0.1:0":
            return lk.spawn_worker_logged(self.bin, self.env, log, store=f"sqlite:{self.db}")
        return lk.spawn_worker_logged(self.bin, self.env, log, store=f"sqlite:{self.db}",
                                      extra=("--listen", listen))

    def write_config(self, name="linkup.yaml", worker_url=None, token="token123",
                     web_default="web", web_path="", web_extra=""):
        cfg = self.tmp / name
        cfg.write_text(f"""linkup:
  worker_url: {worker_url or 'http://%s:%d' % self.waddr}
  worker_token: {token}
services:
  - name: web
    remote: http://127.0.0.1:{self.remote_web.port}{web_path}
    local: http://localhost:{self.local_web.port}{web_path}
    directory: web
{web_extra}  - name: api
    remote: http://127.0.0.1:{self.remote_api.port}
    local: http://localhost:{self.local_api_port}
domains:
  - domain: example.com
    default_service: {web_default}
    routes:
      - path: /api/.*
        service: api
  - domain: api.example.com
    default_service: api
""")
        return cfg

    def run(self, *args, timeout=60, **env):
        return lk.run(self.bin, *args, env=dict(self.env, **env), timeout=timeout)

    def start(self, cfg=None):
        r = self.run("start", "--config", str(cfg or self.cfg), timeout=90)
        assert r.returncode == 0, r.stderr
        return r

    def state(self):
        return (self.home / "state").read_text()

    def session(self):
        m = re.search(r"(?m)^  session_name: (.*)$", self.state())
        return m.group(1).strip("'")

    def server_pid(self):
        return int((self.home / "localserver-pid").read_text())

    def server_addr(self):
        host, port = (self.home / "localserver-http").read_text().strip().rsplit(":", 1)
        return host, int(port)

    def tunnel_url(self, name):
        return f"http://linkup-tunnel-{name}.localhost:{self.waddr[1]}/"

    def via_worker(self, host, path="/", headers=()):
        return lk.request(self.waddr, "GET", path, [("Host", host), *headers], timeout=15)

    def status_json(self):
        r = self.run("status", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def health_json(self):
        r = self.run("health", "--json")
        assert r.returncode == 0, r.stderr
        assert not r.stdout.endswith("\n")
        return json.loads(r.stdout)

    def our_processes(self):
        """Pids of live (non-zombie) processes that carry this journey's
        LINKUP_HOME in their environment: what start spawned."""
        want = f"LINKUP_HOME={self.env['LINKUP_HOME']}".encode()
        found = []
        for d in pathlib.Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            try:
                if want not in (d / "environ").read_bytes().split(b"\0"):
                    continue
                st = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if st != "Z" and int(d.name) != self.worker.popen.pid:
                found.append(int(d.name))
        return found

    def wait_no_processes(self, timeout=10):
        deadline = time.monotonic() + timeout
        while self.our_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.our_processes()

    def close(self):
        self.run("stop")
        self.worker.stop()
        for s in (self.remote_web, self.remote_api, self.local_web):
            s.close()


@pytest.fixture
def journey(linkup_bin, cenv, tmp_path):
    j = Journey(linkup_bin, cenv, tmp_path)
    yield j
    j.close()


def table(name, domains):
    """SPEC §6.7: the one-session table without the current marker."""
    w = max(len(name), len("SESSION NAME"))
    dw = max(max(len(d) for d in domains), 7)
    lines = ["┌" + "─" * (w + 2) + "┬" + "─" * 10 + "┬" + "─" * (dw + 2) + "┐",
             f"│ {'SESSION NAME':<{w}} │ TYPE     │ {'DOMAINS':<{dw}} │",
             "├" + "─" * (w + 2) + "┼" + "─" * 10 + "┼" + "─" * (dw + 2) + "┤"]
    for i, d in enumerate(domains):
        lines.append(f"│ {name if i == 0 else '':<{w}} │ {'tunneled' if i == 0 else '':<8} "
                     f"│ {d:<{dw}} │")
    lines.append("└" + "─" * (w + 2) + "┴" + "─" * 10 + "┴" + "─" * (dw + 2) + "┘")
    return "\n".join(lines) + "\n"


def ws_session(addr, host, path="/ws"):
    """A WebSocket handshake to addr with Host host; returns (socket, status
    line, headers dict lower-cased, bytes read past the head)."""
    s = socket.create_connection(addr, timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
    line, headers, rest = lk.read_http_head(s)
    h = {k.lower(): v for k, v in headers}
    if line.startswith("HTTP/1.1 101"):
        assert h["sec-websocket-accept"] == lk.ws_accept(key)
        assert rest == b""
    return s, line, h, rest


# ---- the happy path -------------------------------------------------------------------


def test_tunneled_session_journey(journey):
    j = journey
    r = j.start()
    name = j.session()
    assert re.fullmatch(r"[a-z]+-[a-z]+", name)
    # SPEC §6.5.1 step 8: an empty line and the table (top-level domains only).
    assert r.stdout == "\n" + table(name, [f"https://{name}.example.com"])
    assert "Uploading state to server...\n" in r.stderr
    assert "Updating local state file...\n" in r.stderr
    # §6.6: the block is injected; §6.5.1 step 7: the tunnel URL is saved.
    assert (j.svc_dir / ".env.development").read_text() == (
        f"USER_SETTING=1\n\n{DELIM}\nAPI_URL=http://api\n{DELIM}\n")
    assert f"\n  tunnel: {j.tunnel_url(name)}\n" in j.state()
    pid = j.server_pid()
    assert j.our_processes() == [pid]

    # Status: everything remote, tunnel connected.
    st = j.status_json()
    assert st == {
        "session_name": name,
        "sessions": [{"name": name, "kind": "tunneled",
                      "domains": [f"https://{name}.example.com"]}],
        "services": [
            {"name": "api", "status": "Ok", "component_kind": "remote",
             "url": f"http://127.0.0.1:{j.remote_api.port}/", "priority": 2},
            {"name": "web", "status": "Ok", "component_kind": "remote",
             "url": f"http://127.0.0.1:{j.remote_web.port}/", "priority": 2}],
        "tunnel": {"url": j.tunnel_url(name), "connected": True}}
    text = j.run("status")
    assert text.returncode == 0
    assert text.stdout.endswith(
        f"\n{'SERVICE NAME':<22} {'COMPONENT KIND':<16} {'STATUS':<8} LOCATION\n"
        f"{'api':<22} {'remote':<16} {'ok':<8} http://127.0.0.1:{j.remote_api.port}/\n"
        f"{'web':<22} {'remote':<16} {'ok':<8} http://127.0.0.1:{j.remote_web.port}/\n"
        f"\nTunnel: {j.tunnel_url(name)} (connected)\n")
    h = j.health_json()
    assert h["linkup_services"] == {
        "remote_server": {"url": "http://%s:%d/linkup/check" % j.waddr, "status": "Ok"},
        "tunnel": {"url": j.tunnel_url(name) + "linkup/check", "status": "Ok"}}
    running = h["local_server"]["Running"]
    assert running["pid"] == pid and running["healthy"] is True
    assert running["dns_records"] == [f"{name}.api.example.com", f"{name}.example.com"]
    assert list(running["sessions"]) == [name]
    assert h["cloudflared"] == "Stopped"
    assert h["tunnel"] == {"url": j.tunnel_url(name), "connected": True}
    assert pid not in [o["pid"] for o in h["orphans"]]

    # Requests through the worker reach the remote services.
    host = f"{name}.example.com"
    r = j.via_worker(host, "/page?q=1")
    assert (r.status, r.text) == (200, "remote web GET /page?q=1")
    assert r.header("Access-Control-Allow-Origin") == "*"
    hdrs = j.remote_web.requests[-1][2]
    assert hdrs["tracestate"] == f"linkup-session={name}"
    assert hdrs["linkup-destination"] == "web"
    assert hdrs["x-forwarded-host"] == host
    assert j.via_worker(host, "/api/users").text == "remote api GET /api/users"
    assert j.via_worker(f"{name}.api.example.com", "/v1").text == "remote api GET /v1"

    # Route web local: the same request now crosses the tunnel to the local web.
    r = j.run("route", "local", "web")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"\nSession: {name}\n  web  ->  http://localhost:{j.local_web.port}/\n"
    r = j.via_worker(host, "/page?q=1")
    assert (r.status, r.text) == (200, "local web GET /page?q=1")
    hdrs = j.local_web.requests[-1][2]
    assert hdrs["x-forwarded-host"] == host and hdrs["linkup-destination"] == "web"
    assert hdrs["tracestate"] == f"linkup-session={name}"
    # A body goes through the tunnel too.
    r = lk.request(j.waddr, "POST", "/form", [("Host", host)], body=b"a=1&b=2")
    assert (r.status, r.text) == (200, "local web POST /form")
    assert j.local_web.requests[-1][3] == b"a=1&b=2"
    # The remote api calls back (bare domain) carrying the session in tracestate.
    r = j.via_worker("example.com", "/callback",
                     [("tracestate", f"vendor=1,linkup-session={name}")])
    assert (r.status, r.text) == (200, "local web GET /callback")
    r = j.via_worker("api.example.com", "/v2", [("tracestate", f"linkup-session={name}")])
    assert (r.status, r.text) == (200, "remote api GET /v2")
    # The tunnel host itself reaches the local server (DESIGN §8).
    r = j.via_worker(f"linkup-tunnel-{name}.localhost:{j.waddr[1]}", "/linkup/check")
    assert r.status == 200

    # A WebSocket through worker, tunnel and local server.
    s, line, _, _ = ws_session(j.waddr, host)
    try:
        assert line.startswith("HTTP/1.1 101"), line
        s.sendall(lk.ws_frame(1, b"hello local"))
        assert lk.ws_read_frame(s) == (1, b"hello local")
        s.sendall(lk.ws_frame(2, bytes(range(256)) * 300))
        assert lk.ws_read_frame(s) == (2, bytes(range(256)) * 300)
        s.sendall(lk.ws_frame(8, b"\x03\xe8done"))
        op, payload = lk.ws_read_frame(s)
        assert op == 8 and payload[:2] == b"\x03\xe8"
    finally:
        s.close()

    st = j.status_json()
    assert [(x["name"], x["component_kind"], x["status"], x["url"]) for x in st["services"]] == [
        ("web", "local", "Ok", f"http://localhost:{j.local_web.port}/"),
        ("api", "remote", "Ok", f"http://127.0.0.1:{j.remote_api.port}/")]
    assert "- current: Local\n  name: web\n" in j.state()

    # Back to remote.
    r = j.run("route", "remote", "web")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"\nSession: {name}\n  web  ->  http://127.0.0.1:{j.remote_web.port}/\n"
    assert j.via_worker(host, "/x").text == "remote web GET /x"

    # Stop: everything start spawned is gone, env blocks removed, state kept.
    r = j.run("stop")
    assert (r.returncode, r.stdout) == (0, "Stopped linkup\n")
    assert j.wait_no_processes() == []
    assert (j.svc_dir / ".env.development").read_text() == "USER_SETTING=1\n"
    assert (j.svc_dir / ".env.development.linkup").read_text() == "API_URL=http://api\n"
    assert j.session() == name
    for args in (["status"], ["status", "--json"], ["route", "local", "web"]):
        r = j.run(*args)
        assert (r.returncode, r.stdout) == (0, NOT_RUNNING), args
    h = j.health_json()
    assert h["local_server"] == "Stopped"
    assert h["linkup_services"]["tunnel"] == {"url": j.tunnel_url(name) + "linkup/check",
                                              "status": "Error"}
    assert h["tunnel"] == {"url": j.tunnel_url(name), "connected": False}
    # Remote services stay reachable through the worker without the developer.
    assert j.via_worker(host, "/y").text == "remote web GET /y"

    # Start again: same session name, all services remote, tunnel back.
    r = j.start()
    assert j.session() == name
    assert r.stdout == "\n" + table(name, [f"https://{name}.example.com"])
    assert j.status_json()["tunnel"] == {"url": j.tunnel_url(name), "connected": True}
    assert j.via_worker(host, "/z").text == "remote web GET /z"
    assert j.run("route", "local", "web").returncode == 0
    assert j.via_worker(host, "/z").text == "local web GET /z"
    assert j.run("stop").stdout == "Stopped linkup\n"
    assert j.wait_no_processes() == []


def test_browser_referer_origin_and_rewrites_across_the_tunnel(journey):
    """SPEC §3.4-§3.7 over the whole path: a page of NAME.example.com calls
    api.example.com (session from Referer / Origin); a rewrite is applied
    once by the worker, not again by the local server behind the tunnel
    (`linkup-destination` + `x-forwarded-host`), and the path of a service
    location is ignored (SPEC §3.6)."""
    j = journey
    cfg = j.write_config("rw.yaml", web_path="/prefix/", web_extra=(
        "    rewrites:\n      - source: /v1/(.*)\n        target: /v1/v1/$1\n"))
    j.start(cfg)
    name = j.session()
    page = f"https://{name}.example.com/page"
    for hdr in (("Referer", page), ("Origin", f"https://{name}.example.com")):
        r = j.via_worker("api.example.com", "/r", [hdr])
        assert (r.status, r.text) == (200, "remote api GET /r"), hdr
        assert j.remote_api.requests[-1][2]["x-forwarded-host"] == f"{name}.api.example.com"
        r = j.via_worker("example.com", "/api/r", [hdr])
        assert (r.status, r.text) == (200, "remote api GET /api/r"), hdr
    host = f"{name}.example.com"
    assert j.via_worker(host, "/v1/x?k=v").text == "remote web GET /v1/v1/x?k=v"
    assert j.run("route", "local", "web").returncode == 0
    assert j.via_worker(host, "/v1/x?k=v").text == "local web GET /v1/v1/x?k=v"
    r = j.via_worker("example.com", "/v1/y", [("Origin", f"https://{name}.example.com")])
    assert (r.status, r.text) == (200, "local web GET /v1/v1/y")
    # Straight to the local server, the rewrite applies there (once).
    r = lk.request(j.server_addr(), "GET", "/v1/z", [("Host", host)])
    assert (r.status, r.text) == (200, "local web GET /v1/v1/z")


def test_local_https_and_dns_path(linkup_bin, cenv, tmp_path):
    """SPEC §0.2 step 5 (DESIGN §2.9, §2.10): with the DNS responder and the
    TLS listener on, NAME.example.com resolves to loopback and a TLS request
    with that SNI, verified against the Linkup CA, is routed by the local
    server without the worker."""
    cenv = dict(cenv, LINKUP_HTTP_ADDR="127.0.0.1:0", LINKUP_HTTPS_ADDR="127.0.0.1:0",
                LINKUP_DNS_ADDR="127.0.0.1:0", LINKUP_DNS_UPSTREAM="off")
    j = Journey(linkup_bin, cenv, tmp_path)
    try:
        j.start()
        name = j.session()
        out = (j.home / "localserver-stdout").read_text()
        ports = dict(re.findall(r"(?m)^(HTTPS|DNS) listening on 127\.0\.0\.1:(\d+)$", out))
        assert set(ports) == {"HTTPS", "DNS"}, out
        dns = ("127.0.0.1", int(ports["DNS"]))
        assert lk.dns_query(dns, f"{name}.example.com") == (0, [bytes([127, 0, 0, 1])])
        assert lk.dns_query(dns, f"{name}.api.example.com")[1] == [bytes([127, 0, 0, 1])]
        assert lk.dns_query(dns, f"nobody-{name}.example.com")[0] == 3  # NXDOMAIN
        ctx = ssl.create_default_context(cafile=str(j.home / "certs" / "linkup_ca.cert.pem"))
        for sni, want in ((f"{name}.example.com", "remote web GET /tls"),
                          (f"{name}.api.example.com", "remote api GET /tls")):
            with socket.create_connection(("127.0.0.1", int(ports["HTTPS"])), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=sni) as s:
                    s.sendall(f"GET /tls HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
                              .encode())
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data[:200]
            assert data.endswith(want.encode()), data[-200:]
        assert j.run("route", "local", "web").returncode == 0
        r = lk.request(j.server_addr(), "GET", "/direct", [("Host", f"{name}.example.com")])
        assert (r.status, r.text) == (200, "local web GET /direct")
        assert j.run("stop").stdout == "Stopped linkup\n"
        assert j.wait_no_processes() == []
    finally:
        j.close()


# ---- journeys that go wrong ---------------------------------------------------------


def test_local_service_down_is_a_502_with_the_spec_message(journey):
    """SPEC §5.3 step 6 / §5.7: a service routed local whose server is down
    answers 502 `Failed to proxy request - are all your servers started? {e}`,
    through the worker and tunnel as well as on the local server; status
    says error for it."""
    j = journey
    j.start()
    name = j.session()
    assert j.run("route", "local", "api").returncode == 0
    prefix = "Failed to proxy request - are all your servers started? "
    for r in (j.via_worker(f"{name}.example.com", "/api/x"),
              lk.request(j.server_addr(), "GET", "/api/x", [("Host", f"{name}.example.com")])):
        assert r.status == 502
        assert r.text.startswith(prefix) and len(r.text) > len(prefix), r.text
    # A WebSocket to it: the local server's 502 with the error text (SPEC
    # §5.4 step 3); the worker says it got no 101 (SPEC §4.7).
    s, line, _, _ = ws_session(j.server_addr(), f"{name}.example.com", "/api/ws")
    s.close()
    assert line.startswith("HTTP/1.1 502"), line
    s, line, h, body = ws_session(j.waddr, f"{name}.example.com", "/api/ws")
    while len(body) < int(h["content-length"]):
        body += s.recv(4096)
    s.close()
    assert line.startswith("HTTP/1.1 502"), line
    assert body.startswith(b"Failed to connect to destination: "), body
    st = j.status_json()
    assert st["services"][0] == {"name": "api", "status": "Error", "component_kind": "local",
                                 "url": f"http://localhost:{j.local_api_port}/",
                                 "priority": 2}
    line = f"{'api':<22} {'local':<16} {'error':<8} http://localhost:{j.local_api_port}/\n"
    assert line in j.run("status").stdout


def test_server_killed_behind_the_clis_back(journey):
    """The local server dies (SIGKILL): status/route say it is not running,
    traffic for a local service gets DESIGN §8's 502, remote services still
    answer; stop clears the env blocks and says `Stopped linkup`; start
    brings the same session back."""
    j = journey
    j.start()
    name = j.session()
    host = f"{name}.example.com"
    assert j.run("route", "local", "web").returncode == 0
    assert j.via_worker(host).text == "local web GET /"
    os.kill(j.server_pid(), signal.SIGKILL)
    assert j.wait_no_processes() == []
    for args in (["status"], ["status", "--json"], ["route", "remote", "web"]):
        r = j.run(*args)
        assert (r.returncode, r.stdout) == (0, NOT_RUNNING), args
    h = j.health_json()
    assert h["local_server"] == "Stopped"
    assert h["tunnel"]["connected"] is False
    deadline = time.monotonic() + 10
    while True:
        r = j.via_worker(host)
        if r.status == 502 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (r.status, r.text) == (
        502, f"Failed to fetch from target service: tunnel for session '{name}' is not connected")
    assert j.via_worker(host, "/api/a").text == "remote api GET /api/a"
    r = j.run("stop")
    assert (r.returncode, r.stdout) == (0, "Stopped linkup\n")
    assert (j.svc_dir / ".env.development").read_text() == "USER_SETTING=1\n"
    # Killed again without stop, then start: a new server, the same session.
    j.start()
    os.kill(j.server_pid(), signal.SIGKILL)
    assert j.wait_no_processes() == []
    r = j.start()
    assert j.session() == name
    assert (j.svc_dir / ".env.development").read_text().count(DELIM) == 2
    assert j.via_worker(host).text == "remote web GET /"
    assert j.status_json()["tunnel"]["connected"] is True


@pytest.mark.parametrize("case", ["unreachable", "wrong_token"])
def test_start_with_a_bad_worker(journey, case):
    """SPEC §6.5.1 step 6 / §6.5.13 / §5.2: the upload fails, start logs
    `Failed to upload state: {e}` and exits 1; {e} carries the local server's
    500 `Failed to request to Worker: ...`. The state and the env files are
    already written; stop undoes the env files."""
    j = journey
    if case == "unreachable":
        cfg = j.write_config("bad.yaml", worker_url=f"http://127.0.0.1:{lk.free_port()}")
        detail = "Failed to request to Worker: "
    else:
        cfg = j.write_config("bad.yaml", token="not-the-token")
        detail = "Failed to request to Worker: request failed with status 401 Unauthorized"
    r = j.run("start", "--config", str(cfg), timeout=90)
    assert r.returncode == 1
    assert r.stdout == ""
    err = "request failed with status 500 Internal Server Error: " + detail
    assert f"Failed to upload state: {err}" in r.stderr, r.stderr
    assert f"Exited with error: {err}" in r.stderr, r.stderr
    assert "  session_name: ''\n" in j.state()
    assert DELIM in (j.svc_dir / ".env.development").read_text()
    r = j.run("stop")
    assert (r.returncode, r.stdout) == (0, "Stopped linkup\n")
    assert j.wait_no_processes() == []
    assert (j.svc_dir / ".env.development").read_text() == "USER_SETTING=1\n"


def test_start_with_a_config_error_starts_nothing(journey):
    """DESIGN §2.2: the config error names the file, line and column; start
    writes no state, touches no env file, spawns nothing."""
    j = journey
    cfg = j.write_config("broken.yaml", web_default="webb")
    r = j.run("start", "--config", str(cfg))
    assert r.returncode == 1 and r.stdout == ""
    line = cfg.read_text().splitlines().index("    default_service: webb") + 1
    assert (f'Exited with error: Failed to deserialize config file "{cfg}": line {line}, '
            f'column 5: unknown service "webb"\n') in r.stderr, r.stderr
    assert not (j.home / "state").exists()
    assert (j.svc_dir / ".env.development").read_text() == "USER_SETTING=1\n"
    assert j.our_processes() == []


def test_worker_restart_tunnel_comes_back(journey):
    """The worker goes away and comes back on the same address with its
    SQLite store: the local server reconnects the tunnel by itself and local
    traffic flows again, without a new `linkup start`."""
    j = journey
    j.start()
    name = j.session()
    host = f"{name}.example.com"
    assert j.run("route", "local", "web").returncode == 0
    listen = "%s:%d" % j.waddr
    j.worker.stop()
    h = j.health_json()
    assert h["linkup_services"]["remote_server"]["status"] == "Error"
    j.worker = j.spawn_worker(listen)
    deadline = time.monotonic() + 30
    while not j.status_json()["tunnel"]["connected"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert j.status_json()["tunnel"]["connected"] is True
    r = j.via_worker(host, "/again")
    assert (r.status, r.text) == (200, "local web GET /again")


def test_server_whose_pid_file_is_gone_is_still_stopped(journey):
    """SPEC §6.4: the local server is identified by LINKUP_SERVICE_ID in its
    environment. Its pid file gone (deleted by hand, or a server started by
    a version that wrote none), `stop` must still stop it: otherwise `start`
    keeps answering `Linkup is already running. Run 'linkup stop' first to
    restart.` and `stop` can never make it true. Only a server spawned for
    this Linkup directory is taken (`--certs-dir $LINKUP_HOME/certs`)."""
    j = journey
    j.start()
    pid = j.server_pid()
    (j.home / "localserver-pid").unlink()
    h = j.health_json()
    assert h["local_server"]["Running"]["pid"] == pid
    assert pid not in [o["pid"] for o in h["orphans"]]
    r = j.run("start", "--config", str(j.cfg))
    assert r.stdout == "Linkup is already running. Run 'linkup stop' first to restart.\n"
    r = j.run("stop")
    assert (r.returncode, r.stdout) == (0, "Stopped linkup\n")
    assert j.wait_no_processes() == []
    r = j.start()
    assert j.status_json()["tunnel"]["connected"] is True


def test_a_server_of_another_linkup_home_is_not_ours(journey, linkup_bin, tmp_path):
    """DESIGN §2.12: a local server that another Linkup directory started
    (another user, another LINKUP_HOME) is never taken for ours, pid file or
    not: stop leaves it alone and health lists it among the orphans."""
    j = journey
    other = dict(j.env, LINKUP_HOME=str(tmp_path / "other-home"))
    r = lk.run(linkup_bin, "start", "--config", str(j.cfg), env=other, timeout=90)
    assert r.returncode == 0, r.stderr
    other_pid = int((tmp_path / "other-home" / "localserver-pid").read_text())
    try:
        (tmp_path / "other-home" / "localserver-pid").unlink()
        h = j.health_json()
        assert h["local_server"] == "Stopped"
        assert other_pid in [o["pid"] for o in h["orphans"]]
        assert j.run("stop").stdout == "Stopped linkup\n"
        assert lk.run(linkup_bin, "health", "--json", env=other).returncode == 0
        assert pathlib.Path(f"/proc/{other_pid}").exists()
        st = pathlib.Path(f"/proc/{other_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert st != "Z"
    finally:
        lk.run(linkup_bin, "stop", env=other)
        if pathlib.Path(f"/proc/{other_pid}").exists():
            os.kill(other_pid, signal.SIGKILL)


CLOUDFLARED_STAND_IN = """#!{python}
import os, signal, sys, time
signal.signal(signal.SIGINT, lambda *a: sys.exit(0))
args = sys.argv[1:]
with open(args[args.index("--pidfile") + 1], "w") as f:
    f.write("%d\\n" % os.getpid())
time.sleep(120)
"""


def test_cloudflared_whose_pid_file_is_gone_is_still_ours(linkup_bin, cenv, tmp_path):
    """SPEC §7 / §6.4 with an original worker's Cloudflare credentials: the
    cloudflared `start` ran is identified by LINKUP_SERVICE_ID even when its
    pid file is gone (its `--pidfile $LINKUP_HOME/cloudflared-pid` argument
    pins it to this Linkup directory): health shows it running, a new start
    reuses it (`Already running. Skipping starting tunnel.`), stop stops it."""
    import sys
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "cloudflared").write_text(CLOUDFLARED_STAND_IN.format(python=sys.executable))
    (bindir / "cloudflared").chmod(0o755)
    env = dict(cenv, PATH=f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               LINKUP_TUNNEL_PID_INTERVAL_MS="200", LINKUP_TUNNEL_DNS_INTERVAL_MS="100")
    home = pathlib.Path(env["LINKUP_HOME"])
    worker = CloudflareWorker("https://localhost")
    cf_pid = None
    try:
        cfg = lk.write_web_config(tmp_path, worker.url)
        r = lk.run(linkup_bin, "start", "--config", str(cfg), env=env, timeout=90)
        assert r.returncode == 0, r.stderr
        assert "Started!" in r.stderr
        cf_pid = int((home / "cloudflared-pid").read_text())
        (home / "cloudflared-pid").unlink()
        h = json.loads(lk.run(linkup_bin, "health", "--json", env=env).stdout)
        assert h["cloudflared"] == {"Running": {"pid": cf_pid}}
        assert cf_pid not in [o["pid"] for o in h["orphans"]]
        os.kill(int((home / "localserver-pid").read_text()), signal.SIGKILL)
        r = lk.run(linkup_bin, "start", "--config", str(cfg), env=env, timeout=90)
        assert r.returncode == 0, r.stderr
        assert "Already running. Skipping starting tunnel." in r.stderr
        r = lk.run(linkup_bin, "stop", env=env)
        assert (r.returncode, r.stdout) == (0, "Stopped linkup\n")
        deadline = time.monotonic() + 10
        while pathlib.Path(f"/proc/{cf_pid}").exists() and time.monotonic() < deadline:
            st = pathlib.Path(f"/proc/{cf_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if st == "Z":
                break
            time.sleep(0.05)
        alive = pathlib.Path(f"/proc/{cf_pid}").exists() and pathlib.Path(
            f"/proc/{cf_pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        assert not alive, "stop must stop cloudflared"
    finally:
        lk.run(linkup_bin, "stop", env=env)
        if cf_pid and pathlib.Path(f"/proc/{cf_pid}").exists():
            try:
                os.kill(cf_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.close()


def test_uninstall_while_running_stops_everything(journey):
    """SPEC §6.5.10: uninstall stops with env clearing (prints
    `Stopped linkup`), then removes the Linkup directory: nothing is left
    running and the env files are as before start."""
    j = journey
    j.start()
    r = j.run("uninstall", "--yes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Stopped linkup\n") and r.stdout.endswith("linkup uninstalled!\n")
    assert j.wait_no_processes() == []
    assert not j.home.exists()
    assert (j.svc_dir / ".env.development").read_text() == "USER_SETTING=1\n"
