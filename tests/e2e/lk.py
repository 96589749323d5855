"""Helpers for black-box tests of the real `linkup` binary: spawn the worker
and the local server on port 0 and read their "... listening on A:P" line,
run fake upstreams, and run CLI commands."""
import http.server
import os
import pathlib
import re
import select
import socket
import subprocess
import threading
import time

LISTEN_RE = re.compile(r"^(HTTP|HTTPS|DNS|Worker) listening on (\S+):(\d+)$")


def run(bin_, *args, env=None, input=None, timeout=60, cwd=None):
    """`bin_ ARGS...` with text output captured; a CompletedProcess."""
    return subprocess.run([bin_, *args], capture_output=True, text=True, env=env,
                          input=input, timeout=timeout, cwd=cwd)


def has_command(bin_, name, env=None):
    """True when `linkup <name> --help` exits 0 (the command exists)."""
    return run(bin_, name, "--help", env=env, timeout=20).returncode == 0


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(n, host="127.0.0.1"):
    """n free ports, all different: each is held while the next is picked
    (two free_port() calls in a row may get the same port back)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class occupied_port:
    """A listening socket on a free 127.0.0.1 port (`with occupied_port() as
    addr:` gives "127.0.0.1:P"), so a server told to bind it fails."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc):
        self.sock.close()


class Proc:
    """A spawned server with the addresses it printed."""

    def __init__(self, popen, addrs):
        self.popen = popen
        self.addrs = addrs  # {"HTTP": ("127.0.0.1", 1234), ...}

    def url(self, kind):
        host, port = self.addrs[kind]
        return f"http://{host}:{port}"

    def stop(self, timeout=10):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode


def _spawn(argv, env, wanted, timeout=20):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    addrs = {}
    deadline = time.time() + timeout
    while set(wanted) - set(addrs):
        if time.time() > deadline or p.poll() is not None:
            p.kill()
            raise RuntimeError(f"{argv} did not print its listening lines: {p.stderr.read()}")
        line = p.stdout.readline().strip()
        m = LISTEN_RE.match(line)
        if m:
            addrs[m.group(1)] = (m.group(2), int(m.group(3)))
    return Proc(p, addrs)


def write_web_config(dir_, worker_url="http://127.0.0.1:9", remote="http://127.0.0.1:9001",
                     local="http://127.0.0.1:9002", name="linkup.yaml"):
    """dir_/name: a config with one service `web` (remote, local) as the default
    of example.com, worker token `token123`. Returns the path."""
    cfg = pathlib.Path(dir_) / name
    cfg.write_text(f"""linkup:
  worker_url: {worker_url}
  worker_token: token123
services:
  - name: web
    remote: {remote}
    local: {local}
domains:
  - domain: example.com
    default_service: web
""")
    return cfg


def spawn_worker(bin_, env, store, token="token123"):
    """`linkup worker` on 127.0.0.1:0. Its stderr goes to a temporary file
    (proc.log_path), never to an unread pipe that could fill and block a busy
    worker."""
    import tempfile
    home = os.path.dirname((env or {}).get("LINKUP_HOME", "")) or None
    fd, log_path = tempfile.mkstemp(prefix="linkup-worker-", suffix=".log",
                                    dir=home if home and os.path.isdir(home) else None)
    os.close(fd)
    return spawn_worker_logged(bin_, env, log_path, store=store, token=token)


def spawn_server(bin_, env, config):
    return _spawn([bin_, "server", "--config", str(config), "--http", "127.0.0.1:0",
                   "--https", "off", "--dns", "off"], env, ["HTTP"])


class Server(http.server.ThreadingHTTPServer):
    """http.server's threaded server with a listen backlog for loads (its
    default of 5 drops connection attempts under concurrency, and the
    client's SYN retries then stall a run for seconds)."""
    request_queue_size = 256
    daemon_threads = True


def fake_upstream(handler_text, host="127.0.0.1"):
    """An HTTP server answering every GET with handler_text (str or callable
    taking the request handler). Returns (server, url); call server.shutdown()."""

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = handler_text(self) if callable(handler_text) else handler_text
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = Server((host, 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://{host}:{srv.server_address[1]}"


# ---- local server helpers (tests/e2e/test_server*.py) ----------------------

import base64 as _base64
import hashlib as _hashlib
import http.client as _http_client
import json as _json
import signal as _signal
import struct as _struct


def spawn_local_server(bin_, env, *args, log_path=None, http="127.0.0.1:0", timeout=20,
                       wanted=("HTTP",), preexec_fn=None):
    """`linkup server --http HTTP ARGS...`; waits for the "KIND listening on
    A:P" line of every KIND in wanted. stderr goes to log_path (a file, so the
    pipe never fills). Returns Proc."""
    err = open(log_path, "w") if log_path else subprocess.DEVNULL
    p = subprocess.Popen([bin_, "server", "--http", http, *args], stdout=subprocess.PIPE,
                         stderr=err, text=True, env=env, preexec_fn=preexec_fn)
    if log_path:
        err.close()
    addrs = {}
    deadline = time.time() + timeout
    while set(wanted) - set(addrs):
        if time.time() > deadline or p.poll() is not None:
            p.kill()
            p.wait(5)
            log = open(log_path).read() if log_path else ""
            raise RuntimeError(f"linkup server did not start: {log}")
        line = p.stdout.readline().strip()
        m = LISTEN_RE.match(line)
        if m:
            addrs[m.group(1)] = (m.group(2), int(m.group(3)))
    proc = Proc(p, addrs)
    proc.log_path = log_path
    return proc


def stop_gracefully(proc, timeout=15):
    """SIGTERM, wait, return (exit code, rest of stdout)."""
    proc.popen.send_signal(_signal.SIGTERM)
    out, _ = proc.popen.communicate(timeout=timeout)
    return proc.popen.returncode, out


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value) in order
        self.body = body

    def header(self, name):
        vals = self.all(name)
        return vals[-1] if vals else None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self):
        return self.body.decode()

    def json(self):
        return _json.loads(self.body)


def request(addr, method, path, headers=None, body=None, timeout=10):
    """One HTTP/1.1 request to addr (host, port); redirects are never followed.
    headers is a list of (name, value) pairs (duplicates allowed)."""
    c = _http_client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        c.putrequest(method, path, skip_host=any(k.lower() == "host" for k, _ in headers or []),
                     skip_accept_encoding=True)
        for k, v in headers or []:
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


def post_json(addr, path, obj, timeout=15):
    body = obj if isinstance(obj, (str, bytes)) else _json.dumps(obj)
    return request(addr, "POST", path, [("Content-Type", "application/json")], body, timeout)


class RecordingUpstream:
    """A threaded HTTP server on host:0 recording every request. Paths:
    /redirect -> 307 Location: /somethingelse; /cookies -> two Set-Cookie;
    anything else -> 200 `body`. self.requests: list of (method, path, headers)."""

    def __init__(self, host="127.0.0.2", body="under_fe"):
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                outer.requests.append((self.command, self.path, list(self.headers.items())))
                if self.path == "/redirect":
                    self._send(307, [("Location", "/somethingelse")], b"")
                elif self.path == "/cookies":
                    self._send(200, [("Set-Cookie", "cookie1=value1; Path=/"),
                                     ("Set-Cookie", "cookie2=value2; Path=/")], b"cookies")
                else:
                    self._send(200, [], body.encode())

            def _send(self, status, headers, data):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _any

            def log_message(self, *a):
                pass

        self.server = Server((host, 0), H)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.addr = (host, self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def last_headers(self):
        return self.requests[-1][2]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeWorker:
    """Stands in for `linkup worker` (SPEC §4.3.6/§4.3.7) on host:0. mode:
    "ok" answers like a worker; an int answers that status with body `body`.
    self.calls: list of (path, headers dict lower-cased, parsed JSON body)."""

    def __init__(self, host="127.0.0.3", mode="ok", body="boom"):
        self.calls = []
        self.mode = mode
        self.body = body
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    doc = _json.loads(raw)
                except ValueError:
                    doc = None
                outer.calls.append((self.path, {k.lower(): v for k, v in self.headers.items()},
                                    doc))
                if outer.mode != "ok":
                    self._send(int(outer.mode), "text/plain", outer.body.encode())
                    return
                name = (doc or {}).get("desired_name") or "fake-name"
                if self.path.endswith("/tunneled"):
                    out = {"session_name": name, "tunnel_data": {
                        "account_id": "", "name": "linkup-tunnel-" + name,
                        "url": "http://linkup-tunnel-" + name + ".localhost", "id": "x",
                        "secret": "s", "last_started": 1}}
                else:
                    out = {"session_name": name}
                self._send(200, "application/json", _json.dumps(out).encode())

            def _send(self, status, ctype, data):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = Server((host, 0), H)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def session_body(name, services, domains, token="token"):
    """A Named upsert request (SPEC §2.3). services: {name: url};
    domains: list of (domain, default_service, routes or None)."""
    return {
        "desired_name": name,
        "session_token": token,
        "services": [{"name": n, "location": u, "rewrites": None} for n, u in services.items()],
        "domains": [{"domain": d, "default_service": s,
                     "routes": None if r is None else [{"path": p, "service": v} for p, v in r]}
                    for d, s, r in domains],
        "cache_routes": None,
    }


# ---- a minimal WebSocket (RFC 6455) client and echo upstream ---------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return _base64.b64encode(_hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_switch(c, extra=""):
    """An upstream's side of a WebSocket opening on socket c: reads the
    request head and answers 101 with the key's accept value (plus extra
    header lines, each ending in CRLF). Returns (request line, headers)."""
    line, headers, _ = read_http_head(c)
    key = dict((k.lower(), v) for k, v in headers)["sec-websocket-key"]
    c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n"
               % (ws_accept(key), extra)).encode())
    return line, headers


def check_ws101_has_no_hop_by_hop(headers, accept):
    """A relayed 101's fields (list of (name, value)): none of SPEC §3.10's
    hop-by-hop ones (nor x-hop, which the tests' upstreams list in
    Connection), exactly one `Connection: upgrade`, `Upgrade: websocket` and
    the upstream's Sec-WebSocket-Accept. Returns the fields as a dict."""
    names = [k.lower() for k, _ in headers]
    h = {k.lower(): v for k, v in headers}
    for hop in ("keep-alive", "x-hop", "proxy-connection", "te", "trailer", "transfer-encoding"):
        assert hop not in names, headers
    assert names.count("connection") == 1 and names.count("upgrade") == 1, headers
    assert [t.strip().lower() for t in h["connection"].split(",")] == ["upgrade"], headers
    assert h["upgrade"].lower() == "websocket"
    assert h["sec-websocket-accept"] == accept
    return h


def ws_frame(opcode, payload, mask=True):
    head = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + _struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + _struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def ws_read_frame(sock, with_mask=False):
    """Returns (opcode, payload), and whether the frame was masked when
    with_mask; raises EOFError at end of stream."""
    b0, b1 = _recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = _struct.unpack("!H", _recv_exact(sock, 2))[0]
    elif n == 127:
        n = _struct.unpack("!Q", _recv_exact(sock, 8))[0]
    key = _recv_exact(sock, 4) if b1 & 0x80 else None
    payload = _recv_exact(sock, n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return (b0 & 0x0F, payload, key is not None) if with_mask else (b0 & 0x0F, payload)


def read_http_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("closed before the end of the head")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
    return lines[0], headers, rest


class WsEchoUpstream:
    """A raw WebSocket echo server on host:0. Upgrades on any path except
    /reject (403 "no websocket here"); its 101 carries
    `my-special-header: special-value`. Echoes text/binary frames; answers a
    close with a close and ends the connection. self.heads: request heads."""

    def __init__(self, host="127.0.0.2"):
        self.heads = []
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.5)
        self.addr = self.sock.getsockname()
        self.url = f"http://{host}:{self.addr[1]}"
        self.running = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        c.settimeout(10)
        try:
            line, headers, _ = read_http_head(c)
            self.heads.append((line, headers))
            if line.split(" ")[1] == "/reject":
                body = b"no websocket here"
                c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                return
            key = dict((k.lower(), v) for k, v in headers)["sec-websocket-key"]
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                       "my-special-header: special-value\r\n\r\n" % ws_accept(key)).encode())
            while True:
                op, payload = ws_read_frame(c)
                if op == 8:
                    c.sendall(ws_frame(8, payload, mask=False))
                    return
                if op in (1, 2):
                    c.sendall(ws_frame(op, payload, mask=False))
        except (EOFError, OSError, KeyError, IndexError):
            pass
        finally:
            c.close()

    def close(self):
        self.running = False
        self.sock.close()


def dns_query(addr, name, qtype=1, timeout=5):
    """One UDP DNS query; returns (rcode, [rdata of each answer])."""
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"
    packet = _struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + qname + _struct.pack(
        "!HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, addr)
        data, _ = s.recvfrom(4096)
    qid, flags, _, ancount, _, _ = _struct.unpack("!HHHHHH", data[:12])
    assert qid == 0x4242
    off = 12 + len(qname) + 4
    answers = []
    for _ in range(ancount):
        if data[off] & 0xC0 == 0xC0:
            off += 2
        else:
            while data[off]:
                off += data[off] + 1
            off += 1
        _, _, _, rdlen = _struct.unpack("!HHIH", data[off:off + 10])
        answers.append(data[off + 10:off + 10 + rdlen])
        off += 10 + rdlen
    return flags & 0xF, answers


# ---- reliability helpers (tests/e2e/test_{smuggling,limits,faults,security}.py)

MIB = 1024 * 1024


def _read_line(f, limit=70000):
    line = f.readline(limit)
    if not line:
        raise EOFError("closed")
    return line


def read_raw_request(f, on_head=None):
    """Reads one HTTP/1.1 request from a binary file object (CL or chunked
    body). on_head(headers) is called between head and body. Returns
    dict(method, target, headers [(k, v)], body) or None at a clean end of
    stream."""
    line = f.readline(70000)
    while line in (b"\r\n", b"\n"):
        line = f.readline(70000)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers = []
    while True:
        h = _read_line(f).decode("latin-1").rstrip("\r\n")
        if not h:
            break
        k, _, v = h.partition(":")
        headers.append((k, v.strip()))
    low = {k.lower(): v for k, v in headers}
    if on_head:
        on_head(low)
    body = b""
    if low.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int(_read_line(f).split(b";")[0].strip(), 16)
            if size == 0:
                while _read_line(f) not in (b"\r\n", b"\n"):
                    pass
                break
            body += f.read(size)
            _read_line(f)
    elif "content-length" in low:
        n = int(low["content-length"])
        body = f.read(n)
    return {"method": method, "target": target, "headers": headers, "body": body}


class RawRecordingUpstream:
    """A raw-socket HTTP/1.1 upstream on host:0 that records every request it
    parses, per connection, so a test can prove that no smuggled second
    request reached it. Answers each request `200` with body `ok N` (N = its
    index in self.requests) and keeps the connection alive.

    Paths with a behaviour (the faults tests):
      /reset      send the head and half the body, then RST the connection;
      /halfclose  send the head and half the body, then shutdown(SHUT_WR);
      /stall      send the head and half the body, then stay silent;
      /nocl       answer without Content-Length and close (read-until-close);
      /slow/MS    wait MS milliseconds, then answer normally;
      /hold       never answer; set self.hold_ended when the proxy closes the
                  connection (within 30 s);
      /big/N      answer N MiB of b"x".
    A request with `Expect: 100-continue` gets `100 Continue` before its body
    is read.
    """

    def __init__(self, host="127.0.0.2"):
        self.requests = []
        self.conns = 0
        self.hold_ended = threading.Event()
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(256)
        self.sock.settimeout(0.2)
        self.addr = self.sock.getsockname()
        self.url = f"http://{host}:{self.addr[1]}"
        self.running = True
        self.open_socks = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with self.lock:
                self.conns += 1
                self.open_socks.append(c)
            threading.Thread(target=self._conn, args=(c, self.conns), daemon=True).start()

    def _answer(self, c, req):
        path = req["target"].split("?")[0]
        half = b"h" * 50000
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
        if path == "/reset":
            c.sendall(head + half)
            time.sleep(0.2)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _struct.pack("ii", 1, 0))
            c.close()
            return False
        if path == "/halfclose":
            c.sendall(head + half)
            c.shutdown(socket.SHUT_WR)
            time.sleep(5)
            return False
        if path == "/stall":
            c.sendall(head + half)
            time.sleep(30)
            return False
        if path == "/hold":
            try:
                if c.recv(1) == b"":
                    self.hold_ended.set()
            except OSError:
                self.hold_ended.set()
            return False
        if path == "/nocl":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close")
            return False
        if path.startswith("/slow/"):
            time.sleep(int(path.split("/")[2]) / 1000)
        if path.startswith("/big/"):
            n = int(path.split("/")[2]) * MIB
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
            block = b"x" * MIB
            for _ in range(n // MIB):
                c.sendall(block)
            return True
        body = b"ok %d" % (len(self.requests) - 1)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        return True

    def _conn(self, c, conn_no):
        c.settimeout(30)
        f = c.makefile("rb")
        try:
            while True:
                req = read_raw_request(f, lambda h: self._expect(c, h))
                if req is None:
                    return
                req["conn"] = conn_no
                with self.lock:
                    self.requests.append(req)
                if not self._answer(c, req):
                    return
        except (EOFError, OSError, ValueError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    @staticmethod
    def _expect(c, low):
        if low.get("expect", "").lower() == "100-continue":
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def targets(self):
        return [r["target"] for r in self.requests]

    def close(self):
        self.running = False
        self.sock.close()
        with self.lock:
            for c in self.open_socks:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def parse_responses(data):
    """Splits the bytes a client received into responses (Content-Length or
    chunked framed; a response without either takes the rest). Returns a list
    of Resp; a truncated last response is dropped."""
    out = []
    while data:
        if b"\r\n\r\n" not in data:
            break
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [tuple(x.strip() for x in ln.split(":", 1)) for ln in lines[1:]]
        r = Resp(status, headers, b"")
        if 100 <= status < 200 and status != 101:
            out.append(r)
            data = rest
            continue
        cl = r.header("content-length")
        if (r.header("transfer-encoding") or "").lower() == "chunked":
            body = b""
            while True:
                if b"\r\n" not in rest:
                    return out
                size_line, rest = rest.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    rest = rest.split(b"\r\n", 1)[1] if b"\r\n" in rest else b""
                    break
                body += rest[:size]
                rest = rest[size + 2:]
            r.body, data = body, rest
        elif cl is not None:
            if len(rest) < int(cl):
                break
            r.body, data = rest[:int(cl)], rest[int(cl):]
        else:
            r.body, data = rest, b""
        out.append(r)
    return out


def raw_exchange(addr, data, timeout=5, half_close=False, pause=0.0, nodelay=False):
    """Sends data (bytes, or a list of bytes sent with pause seconds between
    them; nodelay: TCP_NODELAY, so each part leaves in its own segment) on a
    new connection and reads until the server closes or timeout passes
    without data. Returns (bytes received, closed_by_server)."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, part in enumerate(data if isinstance(data, list) else [data]):
            if i and pause:
                time.sleep(pause)
            s.sendall(part)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return got, False
            except ConnectionResetError:
                return got, True
            if not chunk:
                return got, True
            got += chunk
    finally:
        s.close()


def is_sanitized(bin_):
    """True when bin_ was built with ASan/UBSan (-DLK_SANITIZE=ON)."""
    with open(bin_, "rb") as f:
        return b"AddressSanitizer" in f.read()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def spawn_worker_logged(bin_, env, log_path, store="memory", token="token123", extra=(),
                        timeout=20, preexec_fn=None):
    """`linkup worker --listen 127.0.0.1:0` with stderr to log_path; waits for
    "Worker listening on A:P". Returns Proc (addrs["Worker"], log_path)."""
    err = open(log_path, "w")
    p = subprocess.Popen([bin_, "worker", "--listen", "127.0.0.1:0", "--token", token,
                          "--store", store, *extra], stdout=subprocess.PIPE, stderr=err,
                         text=True, env=env, preexec_fn=preexec_fn)
    err.close()
    deadline = time.time() + timeout
    addrs = {}
    while "Worker" not in addrs:
        if time.time() > deadline or p.poll() is not None:
            p.kill()
            p.wait(5)
            raise RuntimeError("linkup worker did not start: " + open(log_path).read())
        m = LISTEN_RE.match(p.stdout.readline().strip())
        if m:
            addrs[m.group(1)] = (m.group(2), int(m.group(3)))
    proc = Proc(p, addrs)
    proc.log_path = log_path
    return proc


class Front:
    """One of the two public servers set up to proxy session `name`
    (domain example.com, service frontend -> upstream_url), reached with
    `Host: {name}.example.com`. kind is "server" (linkup server with a
    FakeWorker) or "worker" (linkup worker, memory store unless given).
    self.addr, self.host, self.proc, self.kind; stop() returns the exit code."""

    def __init__(self, kind, bin_, env, tmp_path, upstream_url, name="smug", store="memory",
                 token="token123", session_token="sesstoken", preexec_fn=None):
        self.kind, self.name, self.token = kind, name, token
        self.host = f"{name}.example.com"
        self.fake_worker = None
        log = str(tmp_path / f"{kind}-{time.monotonic_ns()}.log")
        body = session_body(name, {"frontend": upstream_url},
                            [("example.com", "frontend", None)], session_token)
        if kind == "server":
            env = dict(env)
            env.setdefault("LINKUP_HTTPS_ADDR", "off")
            env.setdefault("LINKUP_DNS_ADDR", "off")
            self.fake_worker = FakeWorker("127.0.0.3")
            self.proc = spawn_local_server(bin_, env, "--worker-url", self.fake_worker.url,
                                           "--worker-token", token, log_path=log,
                                           preexec_fn=preexec_fn)
            self.addr = self.proc.addrs["HTTP"]
            r = post_json(self.addr, "/linkup/sessions/tunneled", body)
        else:
            self.proc = spawn_worker_logged(bin_, env, log, store=store, token=token,
                                            preexec_fn=preexec_fn)
            self.addr = self.proc.addrs["Worker"]
            r = request(self.addr, "POST", "/linkup/v2/sessions/preview",
                        [("Authorization", f"Bearer {token}"),
                         ("Content-Type", "application/json"), ("x-linkup-version", "99.0.0")],
                        _json.dumps(body))
        if r.status != 200:
            self.stop()
            raise RuntimeError(f"session setup failed: {r.status} {r.body!r}")
        self.log_path = log

    def log(self):
        return open(self.log_path, errors="replace").read()

    def check(self, timeout=10):
        """Status of GET /linkup/check (with the worker token)."""
        return request(self.addr, "GET", "/linkup/check",
                       [("Authorization", f"Bearer {self.token}")], timeout=timeout).status

    def stop(self, timeout=15):
        p = self.proc.popen
        if p.poll() is None:
            p.send_signal(_signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if self.fake_worker:
            self.fake_worker.close()
        return p.returncode


class TcpRelay:
    """Forwards every connection on 127.0.0.1:0 to self.target (read at each
    accept, so a test can point new connections elsewhere). self.accepted
    counts connections.
    - reset_all() cuts the connections open now: both sides see them end at
      once.
    - orphan_all() resets only the local (accepted) side of the connections
      open now and leaves their far side open and silent, as a network that
      lost a connection on one side only: the far end notices nothing until
      its own keepalive gives up.
    - While self.flowing (an Event) is clear, bytes from target are held
      back (self.held counts them, self.held_data keeps them) and forwarded,
      in order, once it is set again."""

    def __init__(self, target):
        self.target = target
        self.accepted = 0
        self.pairs = []  # {"c": accepted side, "u": target side, "dead": orphaned}
        self.lock = threading.Lock()
        self.flowing = threading.Event()
        self.flowing.set()
        self.held = 0
        self.held_data = bytearray()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            pair = {"c": c, "u": u, "dead": False}
            with self.lock:
                self.accepted += 1
                self.pairs.append(pair)
            for a, b, gate in ((c, u, None), (u, c, self.flowing)):
                threading.Thread(target=self._pipe, args=(a, b, gate, pair), daemon=True).start()

    def _pipe(self, a, b, gate, pair):
        """Copies a to b. With a gate, bytes read while it is clear are kept
        (in order, in self.held_data) and the reading goes on, so a test sees
        everything the far side sent during the hold; they go out once the
        gate is set again."""
        pending = bytearray()
        try:
            while True:
                if gate is not None and pending and gate.is_set():
                    b.sendall(pending)
                    pending.clear()
                if gate is not None and not select.select([a], [], [], 0.05)[0]:
                    continue
                data = a.recv(65536)
                if pair["dead"]:
                    return  # orphaned: the far side hears nothing more
                if gate is not None and (pending or not gate.is_set()):
                    with self.lock:
                        self.held += len(data)
                        self.held_data += data
                    pending += data
                    if data:
                        continue
                    gate.wait(30)
                    b.sendall(pending)
                if not data:
                    b.shutdown(socket.SHUT_WR)
                    return
                b.sendall(data)
        except (OSError, ValueError):
            pass

    @staticmethod
    def _reset(s):
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            # shutdown wakes the pipe thread blocked in recv(); a bare
            # close() would leave the connection open.
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def reset_all(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in (pair["c"], pair["u"]):
                self._reset(s)

    def orphan_all(self):
        with self.lock:
            pairs = [p for p in self.pairs if not p["dead"]]
        for pair in pairs:
            pair["dead"] = True
            self._reset(pair["c"])

    def close(self):
        self.running = False
        self.reset_all()
        self.sock.close()


class ScriptedUpstream:
    """On host:0, answers every request (read up to its blank line) with the
    fixed bytes `reply`, then closes the connection. self.count: requests."""

    def __init__(self, reply, host="127.0.0.2"):
        self.reply = reply
        self.count = 0
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.running = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            try:
                c.settimeout(5)
                read_http_head(c)
                self.count += 1
                c.sendall(self.reply)
            except (EOFError, OSError):
                pass
            finally:
                c.close()

    def close(self):
        self.running = False
        self.sock.close()


class OneShotServer:
    """A TCP server on host:0 for one connection, served by handle(conn) in
    a thread (subclasses define it). self.stop is set by close(), which
    handle() may wait on to keep the connection open; close() also closes
    the listening socket and the connection."""

    def __init__(self, host="127.0.0.1"):
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        self.conns.append(c)
        c.settimeout(10)
        try:
            self.handle(c)
        except (OSError, EOFError, KeyError):
            pass

    def handle(self, conn):
        raise NotImplementedError

    def close(self):
        self.stop.set()
        self.sock.close()
        for c in self.conns:
            c.close()


class RawUpstream:
    """A TCP listener on 127.0.0.2:0 that handles each connection with
    handler(conn) (5 s socket timeout) and then closes it: one connection at
    a time in the listener's thread, or each in its own with threaded=True."""

    def __init__(self, handler, wrap=None, threaded=False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.2", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.2:{self.port}/"
        self.handler, self.wrap, self.threaded = handler, wrap, threaded
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.threaded:
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
            else:
                self._handle(conn)

    def _handle(self, conn):
        conn.settimeout(5)
        try:
            self.handler(self.wrap(conn) if self.wrap else conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


# ---- release channel (tests/e2e/test_install.py, test_update.py) -----------

import io as _io
import platform as _platform
import tarfile as _tarfile


def release_arch():
    """This machine's architecture as release asset keys spell it."""
    m = _platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def release_key():
    """This platform's asset key ("x86_64-unknown-linux-gnu")."""
    os_part = {"Linux": "unknown-linux", "Darwin": "apple-darwin"}[_platform.system()]
    return f"{release_arch()}-{os_part}-gnu"


def sha256_hex(data):
    return _hashlib.sha256(data).hexdigest()


def tar_gz(entries):
    """A .tar.gz of entries [(name, bytes or None for a directory)], mode 0755."""
    buf = _io.BytesIO()
    with _tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries:
            info = _tarfile.TarInfo(name)
            info.mode = 0o755
            if data is None:
                info.type = _tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, _io.BytesIO(data))
    return buf.getvalue()


class ReleaseServer:
    """A release channel on 127.0.0.1:0: serves files[path] = bytes (404 for
    anything else), counts GETs per path (hits_of) and keeps the headers of
    the last request (httpd.last_headers). close() when done."""

    def __init__(self):
        self.files = {}
        self.hits = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with outer.lock:
                    outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                    body = outer.files.get(self.path)
                    self.server.last_headers = dict(self.headers)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.last_headers = {}
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def hits_of(self, path):
        with self.lock:
            return self.hits.get(path, 0)

    def add(self, name, data):
        """Serves data at /name; returns its SHA-256 (hex)."""
        self.files["/" + name] = data
        return sha256_hex(data)

    def manifest(self, releases, name="manifest.json"):
        """Serves {"releases": releases} at /name; returns its URL."""
        self.files["/" + name] = _json.dumps({"releases": releases}).encode()
        return f"{self.base}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
