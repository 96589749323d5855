"""Security checks (issue 9, DESIGN §2.8, §2.10, §2.13): constant-time token
comparison, secrets never in logs or in `status`/`health`, admin API
loopback-only, hostile session names, CA key mode 0600."""
import json
import os
import pathlib
import re
import socket
import stat

import pytest

import lk

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKER_TOKEN = "wtokSECRET5c1d2e3f4a5b6c7d"
SESSION_TOKEN = "stokSECRET9a8b7c6d5e4f3a2b"
CLIENT_SECRET = "ctokSECRET0f1e2d3c4b5a6978"


# ---- constant-time comparison ------------------------------------------------

def test_worker_token_compared_in_constant_time_in_code():
    src = (ROOT / "src/worker/api.c").read_text()
    assert "CRYPTO_memcmp" in src
    # The token is kept only as a digest and compared digest to digest.
    assert re.search(r"CRYPTO_memcmp\([^;]*token_digest", src)
    for f in (ROOT / "src/worker").glob("*.c"):
        for line in f.read_text().splitlines():
            if re.search(r"\b(strcmp|strncmp|memcmp|strcasecmp)\s*\(.*\btoken\b", line):
                pytest.fail(f"{f.name}: variable-time comparison of a token: {line.strip()}")


def test_session_token_compared_in_constant_time_in_code():
    for f in (ROOT / "lib/core").glob("*.c"):
        text = f.read_text()
        for m in re.finditer(r"static bool same_token\([^)]*\)\s*\{(.*?)\n\}", text, re.S):
            assert not re.search(r"\b(strcmp|memcmp)\s*\(", m.group(1)), f.name


@pytest.mark.parametrize("value,status", [
    (f"Bearer {WORKER_TOKEN}", 200),
    (WORKER_TOKEN, 200),
    (f"Bearer {WORKER_TOKEN[:-1]}", 401),           # a prefix
    (f"Bearer {WORKER_TOKEN}x", 401),               # an extension
    (f"Bearer {WORKER_TOKEN[:-1]}X", 401),          # last byte differs
    (f"Bearer X{WORKER_TOKEN[1:]}", 401),           # first byte differs
    ("Bearer ", 401),
    (f"Bearer {WORKER_TOKEN}\x00", 401),
])
def test_worker_token_behaviour(linkup_bin, env, tmp_path, value, status):
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "w.log"), token=WORKER_TOKEN)
    try:
        if "\x00" in value:
            got, _ = lk.raw_exchange(w.addrs["Worker"], b"GET /linkup/check HTTP/1.1\r\nHost: x\r\n"
                                     b"Authorization: " + value.encode() + b"\r\n\r\n")
            # NUL is not a valid field-value byte: 400 before any comparison.
            assert lk.parse_responses(got)[0].status == 400
        else:
            r = lk.request(w.addrs["Worker"], "GET", "/linkup/check", [("Authorization", value)])
            assert r.status == status
    finally:
        assert w.stop() == 0


# ---- secrets never in logs or in status/health -------------------------------------

def _write_config(tmp_path, worker_url):
    cfg = tmp_path / "linkup.yaml"
    cfg.write_text(f"""linkup:
  worker_url: {worker_url}
  worker_token: {WORKER_TOKEN}
services:
  - name: web
    remote: http://127.0.0.2:9
    local: http://127.0.0.2:9
domains:
  - domain: example.com
    default_service: web
""")
    return cfg


def _assert_no_secret(where, text, secrets):
    for s in secrets:
        assert s not in text, f"{s[:8]}... appears in {where}"


def test_tokens_never_in_logs_status_or_health(linkup_bin, env, tmp_path):
    """A real worker and a `linkup start`ed local server, both at
    LINKUP_LOG=debug, a session created, proxied requests carrying a client
    Authorization, a rejected token: no log, no status/health output holds the
    worker token, the session token or the client's secret."""
    env = dict(env, LINKUP_LOG="debug", LINKUP_HTTPS_ADDR="off", LINKUP_DNS_ADDR="off",
               LINKUP_HTTP_ADDR=f"127.0.0.1:{lk.free_port()}")
    wlog = tmp_path / "worker.log"
    w = lk.spawn_worker_logged(linkup_bin, env, str(wlog), store=f"sqlite:{tmp_path}/w.db",
                               token=WORKER_TOKEN)
    outputs = {}
    try:
        waddr = w.addrs["Worker"]
        cfg = _write_config(tmp_path, f"http://{waddr[0]}:{waddr[1]}")
        r = lk.run(linkup_bin, "start", "--config", str(cfg), env=env, timeout=90)
        assert r.returncode == 0, r.stderr
        outputs["start"] = r.stdout + r.stderr
        home = pathlib.Path(env["LINKUP_HOME"])
        state = (home / "state").read_text()
        m = re.search(r"session_token: '?([^'\n]+)", state)
        secrets = [WORKER_TOKEN, CLIENT_SECRET] + ([m.group(1)] if m else [])
        name = json.loads(lk.run(linkup_bin, "status", "--json", env=env).stdout)["session_name"]
        # Traffic through the local server and the worker, with secrets in headers.
        server = ("127.0.0.1", int(env["LINKUP_HTTP_ADDR"].rsplit(":", 1)[1]))
        for addr in (server, waddr):
            lk.request(addr, "GET", "/p", [("Host", f"{name}.example.com"),
                                           ("Authorization", f"Bearer {CLIENT_SECRET}")])
        lk.request(waddr, "GET", "/linkup/check", [("Authorization", f"Bearer {WORKER_TOKEN}")])
        lk.request(waddr, "GET", "/linkup/check", [("Authorization", f"Bearer {CLIENT_SECRET}")])
        body = lk.session_body("sec", {"frontend": "http://127.0.0.2:9"},
                               [("example.com", "frontend", None)], SESSION_TOKEN)
        secrets.append(SESSION_TOKEN)
        lk.post_json(server, "/linkup/sessions/tunneled", body)
        lk.request(waddr, "POST", "/linkup/v2/sessions/preview",
                   [("Authorization", f"Bearer {WORKER_TOKEN}"),
                    ("Content-Type", "application/json"), ("x-linkup-version", "99.0.0")],
                   json.dumps(dict(body, desired_name="sec2")))
        for args in (("status",), ("status", "--json"), ("health",), ("health", "--json"),
                     ("sessions", "list"), ("sessions", "list", "--json")):
            r = lk.run(linkup_bin, *args, env=env)
            outputs[" ".join(args)] = r.stdout + r.stderr
        r = lk.run(linkup_bin, "stop", env=env)
        outputs["stop"] = r.stdout + r.stderr
    finally:
        lk.run(linkup_bin, "stop", env=env)
        assert w.stop() == 0
    for where, text in outputs.items():
        _assert_no_secret(f"`linkup {where}`", text, secrets)
    wtext = wlog.read_text(errors="replace")
    assert "conn" in wtext or "GET" in wtext, "the worker logged nothing at debug level"
    _assert_no_secret("the worker log", wtext, secrets)
    logs = [p for p in home.rglob("*") if p.is_file() and p.name != "state"]
    assert logs, f"no local server log under {home}: {list(home.rglob('*'))}"
    for p in logs:
        _assert_no_secret(str(p), p.read_text(errors="replace"), secrets)


@pytest.mark.parametrize("kind", ["server", "worker"])
def test_tokens_never_in_debug_logs_of_direct_runs(linkup_bin, env, tmp_path, kind):
    env = dict(env, LINKUP_LOG="debug")
    up = lk.RawRecordingUpstream("127.0.0.2")
    f = lk.Front(kind, linkup_bin, env, tmp_path, up.url, token=WORKER_TOKEN,
                 session_token=SESSION_TOKEN)
    try:
        lk.request(f.addr, "GET", "/x", [("Host", f.host), ("Authorization", CLIENT_SECRET),
                                         ("Cookie", f"s={CLIENT_SECRET}")])
        lk.request(f.addr, "GET", "/linkup/sessions")
        lk.request(f.addr, "GET", "/linkup/check", [("Authorization", f"Bearer {WORKER_TOKEN}")])
    finally:
        up.close()
        assert f.stop() == 0
    log = f.log()
    assert log.strip(), "nothing was logged at debug level"
    _assert_no_secret(f"the {kind} log", log, [WORKER_TOKEN, SESSION_TOKEN, CLIENT_SECRET])


# ---- admin API loopback-only ------------------------------------------------------

ADMIN = [("GET", "/linkup/sessions"), ("GET", "/linkup/sessions/x"),
         ("DELETE", "/linkup/sessions/x"), ("GET", "/linkup/dns"),
         ("POST", "/linkup/sessions/tunneled"), ("POST", "/linkup/sessions/preview"),
         ("PUT", "/linkup/sessions/x"), ("HEAD", "/linkup/sessions"),
         ("OPTIONS", "/linkup/sessions")]


def test_admin_api_is_loopback_only(linkup_bin, env, tmp_path):
    env = dict(env, LINKUP_TEST_TREAT_PEERS_AS_REMOTE="1", LINKUP_HTTPS_ADDR="off",
               LINKUP_DNS_ADDR="off")
    fw = lk.FakeWorker("127.0.0.3")
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fw.url, "--worker-token",
                              WORKER_TOKEN, log_path=str(tmp_path / "s.log"))
    try:
        addr = s.addrs["HTTP"]
        for method, path in ADMIN:
            body = "{}" if method in ("POST", "PUT") else None
            r = lk.request(addr, method, path, [("Content-Type", "application/json")], body)
            assert r.status == 403, (method, path, r.status)
        # Path tricks do not reach the admin API either.
        for path in ("/linkup/sessions/", "/linkup//sessions", "/linkup/sessions?x=1",
                     "/LINKUP/sessions", "/linkup/./sessions", "/linkup/sessions/%2e%2e"):
            r = lk.request(addr, "GET", path)
            assert r.status in (403, 404, 422), (path, r.status)
            assert not r.body.startswith(b"{"), (path, r.body[:100])
        assert lk.request(addr, "GET", "/linkup/check").status == 200
        assert fw.calls == []
    finally:
        assert lk.stop_gracefully(s)[0] == 0
        fw.close()


# ---- hostile session names ------------------------------------------------------------

HOSTILE = ["../../etc/passwd", "a/b", "..", "x\r\nX-Injected: 1", "x\nSet-Cookie: a=b",
           "x\x00y", "x y", "%2e%2e%2f", "A" * 300]


_registered = []


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("kind", ["server", "worker"])
def test_hostile_session_names(linkup_bin, env, tmp_path, kind):
    env = dict(env, LINKUP_HTTPS_ADDR="127.0.0.1:0") if kind == "server" else dict(env)
    up = lk.RawRecordingUpstream("127.0.0.2")
    f = lk.Front(kind, linkup_bin, env, tmp_path, up.url)
    home = pathlib.Path(env["LINKUP_HOME"])
    before = _files(tmp_path)
    try:
        for name in HOSTILE:
            body = lk.session_body(name, {"frontend": up.url}, [("example.com", "frontend", None)])
            if kind == "server":
                r = lk.post_json(f.addr, "/linkup/sessions/tunneled", body)
            else:
                r = lk.request(f.addr, "POST", "/linkup/v2/sessions/preview",
                               [("Authorization", "Bearer token123"),
                                ("Content-Type", "application/json"),
                                ("x-linkup-version", "99.0.0")], json.dumps(body))
            for k, v in r.headers:
                assert "\r" not in v and "\n" not in v and k.lower() != "x-injected"
            assert r.header("set-cookie") is None
            if kind == "server" and r.status == 200:
                # Only names the DNS responder and TLS can serve are registered.
                got = json.loads(r.body)["session_name"]
                assert re.fullmatch(r"[A-Za-z0-9_-]{1,63}", got), (name, got)
        # Names in admin paths: text bodies only, nothing reflected into headers.
        _registered.clear()
        if kind == "server":
            _registered.extend(lk.request(f.addr, "GET", "/linkup/dns").json()["domains"])
            for name in ("..%2F..%2Fetc", "a%0d%0aX-Injected:%201", "%00"):
                r = lk.request(f.addr, "GET", f"/linkup/sessions/{name}")
                assert r.status in (400, 404), (name, r.status)
                assert all(k.lower() != "x-injected" for k, _ in r.headers)
        # Hosts built from hostile names never reach the upstream as headers.
        for req in up.requests:
            for k, v in req["headers"]:
                assert k.lower() not in ("x-injected", "set-cookie"), req
    finally:
        up.close()
        assert f.stop() == 0, f.log()[-2000:]
    after = [p for p in _files(tmp_path) if p not in before]
    for p in after:
        assert ".." not in p and "passwd" not in p and "Injected" not in p, p
    assert not (home.parent.parent / "etc").exists()
    if kind == "server":
        dns = [d for d in _registered if "/" in d or "\n" in d or " " in d]
        assert dns == []
    # No forged log lines either (log injection through a name).
    for line in f.log().splitlines():
        assert not line.startswith(("X-Injected", "Set-Cookie")), line


# ---- CA key mode ----------------------------------------------------------------------

def test_ca_key_mode_0600_even_with_umask_0(linkup_bin, env, tmp_path):
    certs = tmp_path / "certs"
    env = dict(env, LINKUP_DNS_ADDR="off")
    old = os.umask(0)
    try:
        s = lk.spawn_local_server(linkup_bin, env, "--https", "127.0.0.1:0", "--certs-dir",
                                  str(certs), "--worker-url", "http://127.0.0.3:9/",
                                  "--worker-token", WORKER_TOKEN,
                                  log_path=str(tmp_path / "s.log"), wanted=("HTTP", "HTTPS"))
    finally:
        os.umask(old)
    try:
        key = certs / "linkup_ca.key.pem"
        assert key.exists()
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(certs.stat().st_mode) & 0o022 == 0, oct(certs.stat().st_mode)
        # A TLS handshake without SNI fails and the server keeps going.
        with socket.create_connection(s.addrs["HTTPS"], timeout=5) as c:
            c.sendall(b"\x16\x03\x01\x00\x05hello")
            c.settimeout(5)
            try:
                c.recv(100)
            except (ConnectionResetError, socket.timeout):
                pass
        assert lk.request(s.addrs["HTTP"], "GET", "/linkup/check").status == 200
    finally:
        assert lk.stop_gracefully(s)[0] == 0
