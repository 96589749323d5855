"""HTTPS on the local server (issue 6, SPEC §5.5, DESIGN §2.10): the CA is
created at start-up, leaves are minted per SNI name, and real clients —
curl with --cacert/--resolve and a WebSocket over TLS — verify them."""
import os
import shutil
import socket
import ssl
import stat
import subprocess

import pytest

import lk


@pytest.fixture
def ws_upstream():
    u = lk.WsEchoUpstream("127.0.0.2")
    yield u
    u.close()


@pytest.fixture
def tls_server(linkup_bin, env, tmp_path, fake_worker):
    env["LINKUP_DNS_ADDR"] = "off"
    certs = tmp_path / "certs"
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "token123", "--https", "127.0.0.1:0", "--certs-dir", str(certs),
                              log_path=str(tmp_path / "server.log"), wanted=("HTTP", "HTTPS"))
    s.certs = certs
    yield s
    code, _ = lk.stop_gracefully(s)
    assert code == 0, open(s.log_path).read()


def seed(server, name, services, domains):
    body = lk.session_body(name, services, [(d, "frontend", None) for d in domains])
    r = lk.post_json(server.addrs["HTTP"], "/linkup/sessions/tunneled", body)
    assert r.status == 200, r.body


def test_ca_created_at_startup(tls_server):
    ca = tls_server.certs / "linkup_ca.cert.pem"
    key = tls_server.certs / "linkup_ca.key.pem"
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    out = subprocess.run(["openssl", "x509", "-in", str(ca), "-noout", "-subject", "-text"],
                         capture_output=True, text=True, timeout=10).stdout
    assert "Linkup Local CA" in out
    assert "CA:TRUE" in out
    assert "prime256v1" in out or "P-256" in out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("host", ["curl-cow.example.com", "api.curl-cow.example.com",
                                  "curl-cow.second.test"])
def test_curl_verifies_minted_certificates(tls_server, upstream, host):
    seed(tls_server, "curl-cow", {"frontend": upstream.url}, ["example.com", "second.test"])
    port = tls_server.addrs["HTTPS"][1]
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert",
                        str(tls_server.certs / "linkup_ca.cert.pem"),
                        "--resolve", f"{host}:{port}:127.0.0.1",
                        "-H", "Referer: https://curl-cow.example.com/",
                        f"https://{host}:{port}/through-tls?x=1"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "under_fe"
    method, path, headers = upstream.requests[-1]
    assert (method, path) == ("GET", "/through-tls?x=1")
    h = {k.lower(): v for k, v in headers}
    assert h["tracestate"] == "linkup-session=curl-cow"
    assert h["x-forwarded-host"].startswith("curl-cow.")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_rejects_unmanaged_name(tls_server, upstream):
    seed(tls_server, "curl-cow", {"frontend": upstream.url}, ["example.com"])
    port = tls_server.addrs["HTTPS"][1]
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert",
                        str(tls_server.certs / "linkup_ca.cert.pem"),
                        "--resolve", f"nobody.example.org:{port}:127.0.0.1",
                        f"https://nobody.example.org:{port}/"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    # The server keeps serving after the failed handshake.
    assert lk.request(tls_server.addrs["HTTP"], "GET", "/linkup/check").status == 200


def test_no_sni_handshake_fails_cleanly(tls_server):
    ctx = ssl.create_default_context(cafile=str(tls_server.certs / "linkup_ca.cert.pem"))
    ctx.check_hostname = False
    with socket.create_connection(tls_server.addrs["HTTPS"], timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with ctx.wrap_socket(raw) as tls:  # no server_hostname: no SNI
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                tls.recv(10)


def test_websocket_over_tls(tls_server, ws_upstream):
    seed(tls_server, "wss-cow", {"frontend": ws_upstream.url}, ["example.com"])
    ctx = ssl.create_default_context(cafile=str(tls_server.certs / "linkup_ca.cert.pem"))
    raw = socket.create_connection(tls_server.addrs["HTTPS"], timeout=10)
    with ctx.wrap_socket(raw, server_hostname="wss-cow.example.com") as tls:
        assert tls.selected_alpn_protocol() in (None, "http/1.1")
        tls.sendall(b"GET /ws HTTP/1.1\r\nHost: wss-cow.example.com\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n"
                    b"Upgrade: websocket\r\n\r\n")
        status, headers, rest = lk.read_http_head(tls)
        assert status.startswith("HTTP/1.1 101"), status
        h = {k.lower(): v for k, v in headers}
        assert h["my-special-header"] == "special-value"
        assert rest == b""
        tls.sendall(lk.ws_frame(1, b"Hello over TLS"))
        assert lk.ws_read_frame(tls) == (1, b"Hello over TLS")
        tls.sendall(lk.ws_frame(2, bytes(range(256)) * 64))
        assert lk.ws_read_frame(tls) == (2, bytes(range(256)) * 64)
    # The TLS listener builds https:// request URLs: the session came from the Host.
    line, up_headers = ws_upstream.heads[-1]
    uh = {k.lower(): v for k, v in up_headers}
    assert uh["tracestate"] == "linkup-session=wss-cow"
    assert uh["x-forwarded-host"] == "wss-cow.example.com"
