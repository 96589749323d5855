"""HTTPS on the local server (issue 6, SPEC §5.5, DESIGN §2.10): the CA is
created at start-up, leaves are minted per SNI name, and real clients —
curl with --cacert/--resolve and a WebSocket over TLS — verify them."""
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time

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


# ---- the CA is parsed on the first TLS connection (issue 8, finding 10) ----------------

# A worker URL nothing listens on: the server needs a worker or a config.
NO_WORKER = ("--worker-url", "http://127.0.0.3:9/", "--worker-token", "token123")


def new_ca(certs):
    """A Linkup-like CA made with the openssl CLI, written into certs."""
    certs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    str(certs / "linkup_ca.key.pem"), "-out", str(certs / "linkup_ca.cert.pem"),
                    "-subj", "/CN=Linkup Local CA", "-days", "30",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True, timeout=20)


def tls_handshake(addr, cafile, name):
    """The TLS version negotiated with addr for SNI name; cafile None: no
    verification (the CA file itself may be broken)."""
    ctx = ssl.create_default_context(cafile=cafile)
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(addr, timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            return tls.version()


def refusals(log_path, n):
    """The "HTTPS connection refused" lines of the log, once there are n."""
    deadline = time.time() + 10
    while True:
        lines = [l for l in open(log_path).read().splitlines() if "HTTPS connection refused" in l]
        if len(lines) >= n or time.time() > deadline:
            return lines
        time.sleep(0.05)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_ca_is_read_on_first_tls_connection(tls_server):
    # Start-up created the CA; replacing it before the first TLS connection
    # shows that the server only parses it then.
    seed(tls_server, "lazy-cow", {"frontend": "http://127.0.0.2:9"}, ["example.com"])
    new_ca(tls_server.certs)
    ca = str(tls_server.certs / "linkup_ca.cert.pem")
    assert tls_handshake(tls_server.addrs["HTTPS"], ca, "lazy-cow.example.com")
    assert tls_handshake(tls_server.addrs["HTTPS"], ca, "api.lazy-cow.example.com")


@pytest.mark.parametrize("bad, reason", [
    ("linkup_ca.key.pem", "linkup_ca.key.pem: cannot read a PEM private key"),
    ("linkup_ca.cert.pem", "linkup_ca.cert.pem: cannot read a PEM certificate"),
])
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_corrupt_ca_fails_tls_connections_with_a_logged_error(linkup_bin, env, tmp_path,
                                                              bad, reason):
    # DESIGN §2.10 + docs/server.md: a CA file that is there but does not parse
    # is found on the first TLS connection: each TLS connection is closed
    # before the handshake with an ERROR line; HTTP keeps working.
    certs = tmp_path / "certs"
    new_ca(certs)
    (certs / bad).write_text("garbage\n")
    env["LINKUP_DNS_ADDR"] = "off"
    log = str(tmp_path / "server.log")
    s = lk.spawn_local_server(linkup_bin, env, *NO_WORKER, "--https", "127.0.0.1:0",
                              "--certs-dir", str(certs), log_path=log, wanted=("HTTP", "HTTPS"))
    try:
        for n in (1, 2):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                tls_handshake(s.addrs["HTTPS"], None, "x.example.com")
            assert len(refusals(log, n)) == n
        expected = (f'ERROR] HTTPS connection refused: Failed to load certificates from '
                    f'"{certs}": {reason} (fix or remove both CA files, then restart)')
        assert all(l.endswith(expected) for l in refusals(log, 2)), refusals(log, 2)
        assert lk.request(s.addrs["HTTP"], "GET", "/linkup/check").status == 200
    finally:
        assert lk.stop_gracefully(s)[0] == 0, open(log).read()
    assert (certs / bad).read_text() == "garbage\n"  # never replaced


@pytest.mark.parametrize("setup, reason", [
    ("empty", "linkup_ca.key.pem: empty file"),
    ("dir", "linkup_ca.cert.pem: not a regular file"),
    ("file", "cannot create the CA: Not a directory"),
])
def test_unusable_ca_file_stops_startup(linkup_bin, env, tmp_path, setup, reason):
    # What open+fstat can tell is reported at start-up, without OpenSSL, in
    # SPEC §5.1's words; a certs "directory" that is a file is one too.
    certs = tmp_path / "certs"
    if setup == "file":
        certs.write_text("")
    elif setup == "empty":
        certs.mkdir()
        (certs / "linkup_ca.cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
        (certs / "linkup_ca.key.pem").write_text("")
    else:
        certs.mkdir()
        (certs / "linkup_ca.cert.pem").mkdir()
        (certs / "linkup_ca.key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    env["LINKUP_DNS_ADDR"] = "off"
    r = subprocess.run([linkup_bin, "server", *NO_WORKER, "--http", "127.0.0.1:0", "--https",
                        "127.0.0.1:0", "--certs-dir", str(certs)], env=env, capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1, r.stderr
    assert "HTTPS listening" not in r.stdout
    assert (f'Exited with error: Failed to load certificates from "{certs}" into SNI: '
            f'{reason}\n' in r.stderr), r.stderr


# ---- a TLS client that says close_notify mid-response ----------------------------------

class SlowBigUpstream(lk.OneShotServer):
    """An origin on 127.0.0.2:0 whose answer is a 64 MiB body, written as fast as the proxy
    takes it. self.gone is set when the proxy closed the connection mid-body."""

    def __init__(self):
        self.gone = threading.Event()
        super().__init__("127.0.0.2")

    def handle(self, c):
        lk.read_raw_request(c.makefile("rb"))
        n = 64 << 20
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
        chunk = b"x" * 65536
        try:
            for _ in range(n // len(chunk)):
                c.sendall(chunk)
        except OSError:
            self.gone.set()


def test_close_notify_mid_response_cancels_the_upstream(tls_server):
    """A TLS client that sends close_notify and closes while a long body streams: the
    connection can take no more bytes (the TLS layer stops writing after close_notify), so
    the server ends it and the upstream exchange, instead of keeping both open for ever."""
    up = SlowBigUpstream()
    try:
        seed(tls_server, "cn-cow", {"frontend": up.url}, ["example.com"])
        fds = lambda: len(os.listdir(f"/proc/{tls_server.popen.pid}/fd"))
        before = fds()
        ctx = ssl.create_default_context(cafile=str(tls_server.certs / "linkup_ca.cert.pem"))
        raw = socket.create_connection(tls_server.addrs["HTTPS"], timeout=10)
        tls = ctx.wrap_socket(raw, server_hostname="cn-cow.example.com")
        tls.sendall(b"GET /big HTTP/1.1\r\nHost: cn-cow.example.com\r\n\r\n")
        got = 0
        while got < 200000:
            got += len(tls.recv(65536))
        try:
            tls.unwrap()  # close_notify
        except (OSError, ssl.SSLError):
            pass
        tls.close()
        assert up.gone.wait(10), "the upstream connection was kept open"
        deadline = time.time() + 10
        while fds() > before and time.time() < deadline:
            time.sleep(0.05)
        assert fds() <= before
        r = lk.request(tls_server.addrs["HTTP"], "GET", "/linkup/check")
        assert r.status == 200
    finally:
        up.close()


def _self_signed_pair(certs, stem, cn):
    """certs/{stem}.cert.pem + .key.pem: a self-signed P-256 certificate for
    DNS name cn, as `local-dns install` writes them (SPEC §5.5)."""
    certs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", f"/CN={cn}",
                    "-addext", f"subjectAltName=DNS:{cn}",
                    "-keyout", str(certs / f"{stem}.key.pem"),
                    "-out", str(certs / f"{stem}.cert.pem")],
                   check=True, capture_output=True, timeout=30)


def _served_subject(addr, sni):
    """The subject CN of the certificate served for sni (not verified), or
    None when the handshake fails."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(addr, timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                der = tls.getpeercert(binary_form=True)
        except (ssl.SSLError, ConnectionError):
            return None
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                         input=der, capture_output=True, timeout=10).stdout.decode()
    return out.strip().split("CN", 1)[1].lstrip(" =")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_wildcard_file_sni_selection(linkup_bin, env, tmp_path, fake_worker):
    """SPEC §5.5: a wildcard_.{D} pair of the certs directory is selected for
    an SNI name by entry name — exact, then *.{name}, then *.{parent}... — so
    *.other.test is served for x.other.test, for a.b.other.test and for
    other.test itself (the quirk: clients reject the last two), even though
    no session manages other.test; an unrelated name gets no certificate."""
    env["LINKUP_DNS_ADDR"] = "off"
    certs = tmp_path / "certs"
    _self_signed_pair(certs, "wildcard_.other.test", "*.other.test")
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "token123", "--https", "127.0.0.1:0", "--certs-dir", str(certs),
                              log_path=str(tmp_path / "server.log"), wanted=("HTTP", "HTTPS"))
    try:
        addr = s.addrs["HTTPS"]
        for sni in ("x.other.test", "a.b.other.test", "other.test"):
            assert _served_subject(addr, sni) == "*.other.test", sni
        assert _served_subject(addr, "other.example") is None
    finally:
        code, _ = lk.stop_gracefully(s)
    assert code == 0, open(s.log_path).read()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_managed_names_use_a_covering_file_else_a_minted_leaf(linkup_bin, env, tmp_path,
                                                              fake_worker):
    """SPEC §5.5 files with DESIGN §2.10 minting: for a managed name, a
    wildcard_.{D} file whose certificate is valid for it is served; where it
    is not (a.b.{D}, the bare {D}) a leaf is minted, so clients always get a
    certificate they accept rather than the §5.5 quirk."""
    env["LINKUP_DNS_ADDR"] = "off"
    certs = tmp_path / "certs"
    _self_signed_pair(certs, "wildcard_.example.com", "*.example.com")
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "token123", "--https", "127.0.0.1:0", "--certs-dir", str(certs),
                              log_path=str(tmp_path / "server.log"), wanted=("HTTP", "HTTPS"))
    try:
        seed(s, "tiny-cow", {"frontend": "http://127.0.0.1:9"}, ["example.com"])
        addr = s.addrs["HTTPS"]
        assert _served_subject(addr, "tiny-cow.example.com") == "*.example.com"
        assert _served_subject(addr, "a.tiny-cow.example.com") == "a.tiny-cow.example.com"
        assert _served_subject(addr, "example.com") == "example.com"
    finally:
        code, _ = lk.stop_gracefully(s)
    assert code == 0, open(s.log_path).read()

def test_bad_certificate_file_pair_is_reported_at_startup(linkup_bin, env, tmp_path,
                                                          fake_worker):
    """SPEC §5.5: certificate files are loaded when the server starts; a pair
    that does not load is reported on stderr as `Error loading cert/key for
    {domain}: {e}` and skipped, without waiting for a TLS client. HTTPS keeps
    working for the other names."""
    env["LINKUP_DNS_ADDR"] = "off"
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "wildcard_.bad.test.cert.pem").write_text("not a certificate\n")
    (certs / "wildcard_.bad.test.key.pem").write_text("not a key\n")
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "token123", "--https", "127.0.0.1:0", "--certs-dir", str(certs),
                              log_path=str(tmp_path / "server.log"), wanted=("HTTP", "HTTPS"))
    code, _ = lk.stop_gracefully(s)
    log = open(s.log_path).read()
    assert code == 0, log
    assert "Error loading cert/key for *.bad.test: " in log


def test_tls_listener_past_max_conns_closes_without_plaintext(linkup_bin, env, tmp_path,
                                                              fake_worker):
    """DESIGN §9: past LINKUP_MAX_CONNS a plain client reads a 503, but on the
    TLS listener those bytes would be a broken handshake, so it just closes."""
    env["LINKUP_DNS_ADDR"] = "off"
    env["LINKUP_MAX_CONNS"] = "4"
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "token123", "--https", "127.0.0.1:0", "--certs-dir",
                              str(tmp_path / "certs"), log_path=str(tmp_path / "server.log"),
                              wanted=("HTTP", "HTTPS"))
    held = [socket.create_connection(s.addrs["HTTP"], timeout=5) for _ in range(4)]
    try:
        deadline = time.time() + 10
        got = None
        while time.time() < deadline:
            with socket.create_connection(s.addrs["HTTPS"], timeout=1) as raw:
                try:
                    got = raw.recv(100)
                except socket.timeout:
                    continue  # accepted before the held ones counted
            break
        assert got == b"", got
        assert "closing a TLS connection" in open(s.log_path).read()
    finally:
        for h in held:
            h.close()
        code, _ = lk.stop_gracefully(s)
        assert code == 0


# ---- names longer than a commonName, resumption per name, AEAD only, one CA ----

def _verified_get(server, host, path="/"):
    """A request over TLS to host (SNI and Host), verified against the CA;
    returns (TLS version, status)."""
    ctx = ssl.create_default_context(cafile=str(server.certs / "linkup_ca.cert.pem"))
    with socket.create_connection(server.addrs["HTTPS"], timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                        % (path.encode(), host.encode()))
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
            return tls.version(), int(data.split(b" ", 2)[1])


def test_name_longer_than_a_common_name_gets_a_leaf(tls_server, upstream):
    """DESIGN §2.10: a leaf for any managed name. X.509 limits a commonName to
    64 characters, DNS names go to 253: a longer name is in the
    subjectAltName alone (critical, with an empty subject)."""
    domain = "preview-environments.engineering.internal-services.example.com"
    seed(tls_server, "long-cow", {"frontend": upstream.url}, [domain])
    host = "long-cow." + domain
    assert len(host) > 64
    assert _verified_get(tls_server, host)[1] == 200


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls12_session_is_not_resumed_for_another_name(tls_server, upstream, tmp_path):
    """RFC 6066 §3: a TLS 1.2 session made for one name is not resumed for
    another; the handshake is then a full one, which an unmanaged name fails.
    The same name resumes."""
    seed(tls_server, "tls-cow", {"frontend": upstream.url}, ["example.com"])
    port = tls_server.addrs["HTTPS"][1]
    sess = tmp_path / "tls12.sess"

    def s_client(name, *extra):
        return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                               "-servername", name, "-tls1_2", *extra],
                              input="", capture_output=True, text=True, timeout=20)

    first = s_client("tls-cow.example.com", "-sess_out", str(sess))
    assert "New, TLSv1.2" in first.stdout, first.stdout[-2000:]
    same = s_client("tls-cow.example.com", "-sess_in", str(sess))
    assert "Reused, TLSv1.2" in same.stdout, same.stdout[-2000:]
    other = s_client("nobody.org", "-sess_in", str(sess))
    assert "Reused" not in other.stdout
    assert other.returncode != 0, other.stdout[-2000:]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls12_offers_only_aead_suites(tls_server, upstream):
    """RFC 9113 §9.2.2: HTTP/2 over TLS 1.2 must not use CBC suites; the
    listener offers only ECDHE with AES-GCM or ChaCha20-Poly1305."""
    seed(tls_server, "tls-cow", {"frontend": upstream.url}, ["example.com"])
    port = tls_server.addrs["HTTPS"][1]

    def s_client(cipher):
        return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                               "-servername", "tls-cow.example.com", "-tls1_2", "-cipher", cipher,
                               "-alpn", "h2"], input="", capture_output=True, text=True,
                              timeout=20)

    cbc = s_client("ECDHE-ECDSA-AES128-SHA")
    assert cbc.returncode != 0 and "ALPN protocol: h2" not in cbc.stdout, cbc.stdout[-1500:]
    gcm = s_client("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert gcm.returncode == 0 and "ALPN protocol: h2" in gcm.stdout, gcm.stdout[-1500:]


def test_servers_starting_together_make_one_ca(linkup_bin, env, tmp_path):
    """Servers starting at the same moment on a new certs directory make one CA
    between them (the check and the creation hold a lock on the directory):
    the key matches the certificate, and every server serves TLS with it."""
    for round_ in range(3):
        certs = tmp_path / f"certs{round_}"
        env["LINKUP_DNS_ADDR"] = "off"
        procs = [subprocess.Popen([linkup_bin, "server", "--http", "127.0.0.1:0", "--https",
                                   "127.0.0.1:0", "--certs-dir", str(certs), "--worker-url",
                                   "http://127.0.0.1:9", "--worker-token", "t"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
                 for _ in range(3)]
        try:
            for p in procs:
                deadline = time.time() + 20
                line = b""
                while b"HTTPS listening on" not in line:
                    assert time.time() < deadline and p.poll() is None
                    line = p.stdout.readline()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(15)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(certs / "linkup_ca.cert.pem"), str(certs / "linkup_ca.key.pem"))
