"""Black-box tests of the 502 bodies for upstream connection failures
(SPEC §5.3 step 6 / §5.7 for `linkup server`, §4.4 / §4.5 for `linkup
worker`): when the connection itself fails (refused, reset), an https://
service gets the same socket text as an http:// one; the OpenSSL text is
reserved for real TLS failures. Both servers run on 127.0.0.1:0 through
lk.Front; upstreams live on 127.0.0.2."""
import shutil
import socket
import ssl
import struct
import subprocess
import threading

import pytest

import lk

PREFIX = {
    "server": "Failed to proxy request - are all your servers started? ",
    "worker": "Failed to fetch from target service: ",
}
KINDS = ["server", "worker"]


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


def reset_after_hello(conn):
    """Reads the ClientHello, then closes with RST (SO_LINGER 0)."""
    conn.recv(4096)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def plain_http(conn):
    conn.recv(4096)
    conn.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def body_of(kind, linkup_bin, env, tmp_path, url):
    """The 502 body (without its fixed prefix) for a request to a session
    whose only service is url."""
    front = lk.Front(kind, linkup_bin, env, tmp_path, url)
    try:
        r = lk.request(front.addr, "GET", "/", [("Host", front.host)])
        assert r.status == 502, (r.status, r.text)
        assert r.text.startswith(PREFIX[kind]), r.text
        return r.text[len(PREFIX[kind]):]
    finally:
        assert front.stop() == 0, front.log()


@pytest.mark.parametrize("kind", KINDS)
def test_refused_https_is_the_socket_error_like_http(kind, linkup_bin, env, tmp_path):
    port = closed_port()
    want = f"error trying to connect to 127.0.0.2:{port}: Connection refused"
    assert body_of(kind, linkup_bin, env, tmp_path, f"http://127.0.0.2:{port}") == want
    assert body_of(kind, linkup_bin, env, tmp_path, f"https://127.0.0.2:{port}") == want


@pytest.mark.parametrize("kind", KINDS)
def test_reset_during_handshake_is_the_socket_error(kind, linkup_bin, env, tmp_path):
    up = lk.RawUpstream(reset_after_hello)
    try:
        text = body_of(kind, linkup_bin, env, tmp_path, f"https://127.0.0.2:{up.port}")
    finally:
        up.close()
    assert text == f"error trying to connect to 127.0.0.2:{up.port}: Connection reset by peer"


@pytest.mark.parametrize("kind", KINDS)
def test_non_tls_peer_is_a_tls_error_with_openssl_reason(kind, linkup_bin, env, tmp_path):
    up = lk.RawUpstream(plain_http)
    try:
        text = body_of(kind, linkup_bin, env, tmp_path, f"https://127.0.0.2:{up.port}")
    finally:
        up.close()
    head = f"tls handshake with 127.0.0.2 (127.0.0.2:{up.port}) failed: error:"
    assert text.startswith(head), text
    # OpenSSL's own reason, not libevent's SSL_get_error() code.
    assert "lib(0)" not in text and "SSL routines" in text, text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("kind", KINDS)
def test_untrusted_certificate_is_a_tls_error(kind, linkup_bin, env, tmp_path):
    key, cert = tmp_path / "up.key", tmp_path / "up.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.2", "-addext",
                    "subjectAltName=IP:127.0.0.2"], check=True, capture_output=True, timeout=30)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))

    def wrap(conn):
        return ctx.wrap_socket(conn, server_side=True)

    up = lk.RawUpstream(lambda c: c.recv(4096), wrap=wrap)
    try:
        text = body_of(kind, linkup_bin, env, tmp_path, f"https://127.0.0.2:{up.port}")
    finally:
        up.close()
    assert text.startswith(f"tls handshake with 127.0.0.2 (127.0.0.2:{up.port}) failed: "), text
    assert "certificate verify failed" in text, text
