"""HTTP/2 over TLS on the local server's HTTPS listener (SPEC §5.1: "TLS with
SNI-selected certificates, ALPN `h2`, `http/1.1`"): the handshake prefers h2,
HTTP/1.1 clients keep working, and real HTTP/2 clients (curl) are proxied,
multiplexed, stream big bodies both ways and are sent a GOAWAY on stop."""
import hashlib
import http.server
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading

import pytest

import lk

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

NAME = "h2-cow"
HOST = f"{NAME}.example.com"
BIG = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4


class BodyUpstream:
    """HTTP/1.1 upstream on 127.0.0.2: GET /big answers BIG, POST answers
    the sha256 of the body it read, anything else `plain`. Records
    (method, path, headers, request line version)."""

    def __init__(self):
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, data):
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                outer.requests.append((self.command, self.path, dict(self.headers.items()),
                                       self.request_version))
                self._reply(BIG if self.path == "/big" else b"plain")

            def do_POST(self):
                outer.requests.append((self.command, self.path, dict(self.headers.items()),
                                       self.request_version))
                h = hashlib.sha256()
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        h.update(self.rfile.read(size))
                        self.rfile.readline()
                else:
                    left = int(self.headers.get("Content-Length") or 0)
                    while left > 0:
                        chunk = self.rfile.read(min(left, 65536))
                        if not chunk:
                            break
                        h.update(chunk)
                        left -= len(chunk)
                self._reply(h.hexdigest().encode())

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def body_upstream():
    u = BodyUpstream()
    yield u
    u.close()


@pytest.fixture
def h2_server(linkup_bin, env, tmp_path, fake_worker, body_upstream):
    env["LINKUP_DNS_ADDR"] = "off"
    certs = tmp_path / "certs"
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "token123", "--https", "127.0.0.1:0", "--certs-dir", str(certs),
                              log_path=str(tmp_path / "server.log"), wanted=("HTTP", "HTTPS"))
    s.certs = certs
    s.ca = str(certs / "linkup_ca.cert.pem")
    body = lk.session_body(NAME, {"frontend": body_upstream.url},
                           [("example.com", "frontend", None)])
    r = lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body)
    assert r.status == 200, r.body
    yield s
    if s.popen.poll() is None:
        code, _ = lk.stop_gracefully(s)
        assert code == 0, open(s.log_path).read()


def curl(server, *args, timeout=30):
    port = server.addrs["HTTPS"][1]
    argv = ["curl", "-sS", "--max-time", "20", "--cacert", server.ca,
            "--resolve", f"{HOST}:{port}:127.0.0.1", *args]
    argv = [a.replace("BASE", f"https://{HOST}:{port}") for a in argv]
    return subprocess.run(argv, capture_output=True, timeout=timeout)


def alpn(server, protocols, name=HOST):
    ctx = ssl.create_default_context(cafile=server.ca)
    if protocols is not None:
        ctx.set_alpn_protocols(protocols)
    with socket.create_connection(server.addrs["HTTPS"], timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            return tls.selected_alpn_protocol()


def test_alpn_offers_h2_then_http11(h2_server):
    assert alpn(h2_server, ["h2", "http/1.1"]) == "h2"
    assert alpn(h2_server, ["http/1.1", "h2"]) == "h2"  # the server's preference
    assert alpn(h2_server, ["h2"]) == "h2"
    assert alpn(h2_server, ["http/1.1"]) == "http/1.1"
    assert alpn(h2_server, None) is None
    assert alpn(h2_server, ["spdy/3"]) is None  # no common protocol: no ALPN, still TLS


def test_curl_speaks_http2_through_tls(h2_server, body_upstream):
    r = curl(h2_server, "-w", "\n%{http_version}", "BASE/through-h2?x=1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"plain\n2"
    method, path, headers, version = body_upstream.requests[-1]
    assert (method, path, version) == ("GET", "/through-h2?x=1", "HTTP/1.1")
    assert headers["tracestate"] == f"linkup-session={NAME}"
    assert headers["x-forwarded-host"] == f"{HOST}:{h2_server.addrs['HTTPS'][1]}"
    # The admin API answers over h2 as well (loopback client).
    r = curl(h2_server, "-w", "\n%{http_version}", "BASE/linkup/check")
    assert r.stdout == b"OK\n2", r.stderr


def test_http11_clients_are_unchanged(h2_server, body_upstream):
    r = curl(h2_server, "--http1.1", "-w", "\n%{http_version}", "BASE/old")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"plain\n1.1"
    assert body_upstream.requests[-1][1] == "/old"


def test_tls_client_without_alpn_is_not_http2(h2_server):
    """HTTP/2 over TLS needs ALPN (RFC 9113 §3.2): the preface from a client
    that negotiated nothing is an HTTP/1.1 request line, refused as such."""
    ctx = ssl.create_default_context(cafile=h2_server.ca)
    with socket.create_connection(h2_server.addrs["HTTPS"], timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            data = tls.recv(4096)
    assert data.startswith(b"HTTP/1.1 4") or data.startswith(b"HTTP/1.1 5"), data


def test_big_bodies_both_ways_over_h2(h2_server, tmp_path):
    r = curl(h2_server, "--http2", "-o", str(tmp_path / "big"), "-w", "%{http_version}",
             "BASE/big")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"2"
    assert (tmp_path / "big").read_bytes() == BIG
    upload = os.urandom(3 * 1024 * 1024 + 7)
    (tmp_path / "up").write_bytes(upload)
    for framing in ([], ["-H", "Content-Length:"]):  # known length, then DATA until END_STREAM
        r = curl(h2_server, "--http2", "--data-binary", f"@{tmp_path / 'up'}", *framing,
                 "-H", "Content-Type: application/octet-stream", "BASE/upload")
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode() == hashlib.sha256(upload).hexdigest()


def test_parallel_streams_on_one_connection(h2_server, body_upstream, tmp_path):
    n = 12
    args = ["--http2", "--parallel", "--parallel-immediate", "--parallel-max", str(n)]
    for i in range(n):
        args += ["-o", str(tmp_path / f"out{i}"), f"BASE/{'big' if i % 3 == 0 else f'p{i}'}"]
    r = curl(h2_server, *args, timeout=60)
    assert r.returncode == 0, r.stderr
    for i in range(n):
        got = (tmp_path / f"out{i}").read_bytes()
        assert got == (BIG if i % 3 == 0 else b"plain"), i
    paths = sorted(p for _, p, _, _ in body_upstream.requests)
    assert paths == sorted("/big" if i % 3 == 0 else f"/p{i}" for i in range(n))


def _frames(sock, want_type, limit=64):
    """Reads HTTP/2 frames until one of want_type; returns (type, flags, payload)."""
    buf = b""
    for _ in range(limit):
        while len(buf) < 9:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError(buf)
            buf += chunk
        length = int.from_bytes(buf[:3], "big")
        ftype, flags = buf[3], buf[4]
        while len(buf) < 9 + length:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError(buf)
            buf += chunk
        payload, buf = buf[9:9 + length], buf[9 + length:]
        if ftype == want_type:
            return ftype, flags, payload
    raise AssertionError(f"no frame of type {want_type}")


def test_stop_sends_goaway_to_an_idle_h2_connection(h2_server):
    ctx = ssl.create_default_context(cafile=h2_server.ca)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(h2_server.addrs["HTTPS"], timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as tls:
            assert tls.selected_alpn_protocol() == "h2"
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] +
                        b"\x04\x00" + b"\x00\x00\x00\x00")  # empty SETTINGS
            _, flags, _ = _frames(tls, 4)  # the server's SETTINGS
            assert flags & 1 == 0
            h2_server.popen.send_signal(15)
            _, _, payload = _frames(tls, 7)  # GOAWAY
            last_stream, code = struct.unpack(">II", payload[:8])
            assert (last_stream, code) == (0, 0)
    h2_server.popen.communicate(timeout=15)
    assert h2_server.popen.returncode == 0, open(h2_server.log_path).read()


def test_http11_bytes_after_alpn_h2_close_the_connection(h2_server):
    """A client that chose h2 and then speaks HTTP/1.1 sent no connection
    preface (RFC 9113 §3.4): the connection ends (after our SETTINGS, with
    no HTTP/1.1 answer), and the server keeps serving everyone else."""
    ctx = ssl.create_default_context(cafile=h2_server.ca)
    ctx.set_alpn_protocols(["h2"])
    data = b""
    with socket.create_connection(h2_server.addrs["HTTPS"], timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n")
            try:
                while True:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except (ssl.SSLError, ConnectionError):
                pass
    assert b"HTTP/1.1" not in data
    assert data[3:4] in (b"", b"\x04")  # nothing, or our SETTINGS first
    r = curl(h2_server, "-w", "\n%{http_version}", "BASE/linkup/check")
    assert r.stdout == b"OK\n2", r.stderr
