"""HTTP/2 clients that stall or vanish, on the local server's cleartext
(prior knowledge) and TLS (ALPN h2) listeners: the connection is bounded by
the head and idle timeouts (LINKUP_HEAD_TIMEOUT_MS, LINKUP_IDLE_TIMEOUT_MS,
both short here), a TLS client gone without close_notify mid-response frees
its streams, and h2load's many streams over TLS all succeed with memory
coming back down afterwards."""
import http.server
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading

import pytest

import lk
from test_h2_websocket import (END_HEADERS, END_STREAM, GOAWAY, H2, HEADERS, NAME, HOST, PREFACE,
                               SETTINGS, frame, hpack)

BIG = b"z" * (8 * 1024 * 1024)


@pytest.fixture
def big_upstream():
    """Answers every request with 8 MiB (Content-Length)."""
    u = lk.ScriptedUpstream(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BIG), BIG))
    yield u
    u.close()


@pytest.fixture
def server(linkup_bin, env, tmp_path, fake_worker, big_upstream, upstream):
    env["LINKUP_DNS_ADDR"] = "off"
    env["LINKUP_HEAD_TIMEOUT_MS"] = "1000"
    env["LINKUP_IDLE_TIMEOUT_MS"] = "1500"
    certs = tmp_path / "certs"
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "token123", "--https", "127.0.0.1:0", "--certs-dir", str(certs),
                              log_path=str(tmp_path / "server.log"), wanted=("HTTP", "HTTPS"))
    s.ca = str(certs / "linkup_ca.cert.pem")
    body = lk.session_body(NAME, {"frontend": upstream.url, "big": big_upstream.url},
                           [("example.com", "frontend", [("^/big", "big")])])
    r = lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body)
    assert r.status == 200, r.body
    yield s
    code, _ = lk.stop_gracefully(s)
    assert code == 0, open(s.log_path).read()[-3000:]


def tls(server, alpn=("h2",)):
    ctx = ssl.create_default_context(cafile=server.ca)
    ctx.set_alpn_protocols(list(alpn))
    raw = socket.create_connection(server.addrs["HTTPS"], timeout=20)
    s = ctx.wrap_socket(raw, server_hostname=HOST)
    assert s.selected_alpn_protocol() == alpn[0]
    return s


def closes(sock):
    """Reads until the server closes (EOF or reset); False on the 20 s
    socket timeout."""
    try:
        while sock.recv(65536):
            pass
    except socket.timeout:
        return False
    except (OSError, ssl.SSLError):
        pass
    return True


def served(server):
    r = lk.request(server.addrs["HTTP"], "GET", "/linkup/check")
    return r.status == 200


@pytest.mark.parametrize("dial", ["h2c", "tls"])
def test_stalled_header_block_is_closed(server, dial):
    """HEADERS without END_HEADERS and no CONTINUATION: nothing else may
    come on the connection (RFC 9113 §6.10), so it is stalled as a whole;
    it must not be held forever."""
    sock = (socket.create_connection(server.addrs["HTTP"], timeout=20) if dial == "h2c"
            else tls(server))
    try:
        block = hpack([(":method", "GET"), (":scheme", "http"), (":path", "/"),
                       (":authority", HOST)])
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, 0, 1, block[:10]))
        assert closes(sock)
        assert served(server)
    finally:
        sock.close()


def test_tls_h2_client_silent_before_the_preface(server):
    """ALPN chose h2, then nothing: the head timeout closes it."""
    sock = tls(server)
    try:
        assert closes(sock)
        assert served(server)
    finally:
        sock.close()


@pytest.mark.parametrize("dial", ["h2c", "tls"])
def test_partial_preface_then_silence(server, dial):
    sock = (socket.create_connection(server.addrs["HTTP"], timeout=20) if dial == "h2c"
            else tls(server))
    try:
        sock.sendall(PREFACE[:10])
        assert closes(sock)
    finally:
        sock.close()


def test_tls_client_gone_without_close_notify_mid_response(server, big_upstream):
    """The client vanishes (TCP FIN without close_notify) while an 8 MiB
    response is flowing: its streams are reset, the server serves on."""
    for _ in range(3):
        sock = tls(server)
        c = H2(sock)
        sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack([
            (":method", "GET"), (":scheme", "https"), (":path", "/big"), (":authority", HOST)])))
        c.until(HEADERS)
        while len(c.data.get(1, b"")) < 100000:
            c.next_frame()
        # No close_notify: shut the TCP socket under the TLS layer.
        raw = socket.socket(fileno=os.dup(sock.fileno()))
        raw.shutdown(socket.SHUT_RDWR)
        raw.close()
        sock.close()
    assert served(server)
    r = lk.request(server.addrs["HTTP"], "GET", "/linkup/check")
    assert r.status == 200


def test_idle_h2_tls_connection_gets_goaway(server):
    sock = tls(server)
    try:
        c = H2(sock)
        assert c.until(GOAWAY)
    finally:
        sock.close()


class FastUpstream:
    """8 bytes for every GET, with a listen backlog for h2load's 80 streams
    in flight (http.server's default of 5 drops SYNs, and the retransmit
    back-off makes the run last minutes)."""

    def __init__(self):
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "8")
                self.end_headers()
                self.wfile.write(b"under_fe")

            def log_message(self, *a):
                pass

        class S(http.server.ThreadingHTTPServer):
            request_queue_size = 256
            daemon_threads = True

        self.server = S(("127.0.0.2", 0), H)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load is not installed")
def test_h2load_over_tls(linkup_bin, env, tmp_path, fake_worker):
    """5000 requests, 4 connections, 20 streams each in flight, over TLS:
    all succeed, and the server's memory comes back down afterwards."""
    env["LINKUP_DNS_ADDR"] = "off"
    certs = tmp_path / "certs"
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "token123", "--https", "127.0.0.1:0", "--certs-dir", str(certs),
                              log_path=str(tmp_path / "server.log"), wanted=("HTTP", "HTTPS"))
    upstream = FastUpstream()
    try:
        body = lk.session_body(NAME, {"frontend": upstream.url},
                               [("example.com", "frontend", None)])
        assert lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
        port = s.addrs["HTTPS"][1]
        rss = []
        for _ in range(2):
            p = subprocess.run(["h2load", f"--connect-to=127.0.0.1:{port}", "-n", "5000", "-c",
                                "4", "-m", "20", f"https://{HOST}:{port}/"],
                               capture_output=True, text=True, timeout=300)
            m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                          r"(\d+) failed, (\d+) errored", p.stdout)
            assert m, p.stdout + p.stderr
            assert m.group(1) == m.group(2) == m.group(3) == "5000", p.stdout
            assert "status codes: 5000 2xx" in p.stdout, p.stdout
            assert "application protocol: h2" in p.stdout.lower(), p.stdout
            rss.append(lk.rss_kib(s.popen.pid))
        # A second identical run must not grow the process much (no leak per
        # request: 5000 requests with a leak of even 1 KiB each would). Under
        # ASan the quarantine holds freed memory; LeakSanitizer checks at exit.
        if not lk.is_sanitized(linkup_bin):
            assert rss[1] < rss[0] + 4096, rss
        assert served(s)
    finally:
        code, _ = lk.stop_gracefully(s)
        upstream.close()
        assert code == 0, open(s.log_path).read()[-3000:]
