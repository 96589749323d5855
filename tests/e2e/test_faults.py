"""Faults (issue 9) against `linkup server` and `linkup worker`: upstreams
that refuse, reset, half-close or stall mid-body; names that cannot resolve;
a locked or read-only SQLite store; Redis stopped and restarted; SIGTERM
under load. Each must give a clear 5xx (or a cut connection once the
response has started), never a crash, and recover without a restart."""
import json
import pathlib
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time

import pytest

import lk

KINDS = ["server", "worker"]
PROXY_502 = {"server": "Failed to proxy request - are all your servers started? ",
             "worker": "Failed to fetch from target service: "}
API_HEADERS = [("Authorization", "Bearer token123"), ("Content-Type", "application/json"),
               ("x-linkup-version", "99.0.0")]


def get(f, path, timeout=10):
    return lk.request(f.addr, "GET", path, [("Host", f.host)], timeout=timeout)


def still_serves(f):
    assert f.check() == 200
    r = get(f, "/after")
    assert r.status == 200 and r.body.startswith(b"ok ")


def read_response_raw(f, path, seconds):
    """GET path; returns (bytes received, how it ended: "eof", "reset" or
    "timeout")."""
    s = socket.create_connection(f.addr, timeout=seconds)
    try:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), f.host.encode()))
        data = b""
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            try:
                c = s.recv(65536)
            except socket.timeout:
                return data, "timeout"
            except ConnectionResetError:
                return data, "reset"
            if not c:
                return data, "eof"
            data += c
            if len(data) >= 100000 + 60 and b"\r\n\r\n" in data:
                head, body = data.split(b"\r\n\r\n", 1)
                if len(body) >= 100000:
                    return data, "complete"
        return data, "timeout"
    finally:
        s.close()


# ---- upstream faults -------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_upstream_refusing_is_502(front_factory, kind):
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        dead = s.getsockname()[1]
    f = front_factory(kind, url=f"http://127.0.0.2:{dead}")
    r = get(f, "/x")
    assert r.status == 502
    assert r.text.startswith(PROXY_502[kind]), r.text
    assert "refused" in r.text.lower()
    assert f.check() == 200


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["/reset", "/halfclose"])
def test_upstream_dies_mid_body_aborts_client_and_server_keeps_serving(front_factory, kind,
                                                                       path):
    """The 200 head has gone to the client: the only honest signal left is
    to cut the client connection before the declared length is complete."""
    f = front_factory(kind)
    data, how = read_response_raw(f, path, 8)
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
    assert how in ("eof", "reset"), how
    body = data.split(b"\r\n\r\n", 1)[1]
    assert len(body) < 100000
    still_serves(f)


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_without_length_is_reframed(front_factory, kind):
    """A read-until-close upstream body reaches the client re-framed as
    chunked, so the client connection stays reusable."""
    f = front_factory(kind)
    r = get(f, "/nocl")
    assert (r.status, r.body) == (200, b"until-close")
    assert (r.header("transfer-encoding") or "").lower() == "chunked"
    still_serves(f)


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_stalling_mid_body_does_not_block_others(front_factory, kind):
    f = front_factory(kind)
    holder = {}
    t = threading.Thread(target=lambda: holder.update(r=read_response_raw(f, "/stall", 3)))
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    still_serves(f)
    assert time.monotonic() - t0 < 2
    t.join(10)
    data, how = holder["r"]
    assert data.startswith(b"HTTP/1.1 200")
    assert how != "complete"


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_stalling_mid_body_is_cut_by_a_timeout(front_factory, kind):
    """LINKUP_UPSTREAM_IDLE_TIMEOUT_MS: the 200 head and half the body went
    out, then the upstream is silent: the client connection is cut (the only
    honest signal left), the server logs why and keeps serving."""
    f = front_factory(kind, env={"LINKUP_UPSTREAM_IDLE_TIMEOUT_MS": "700"})
    t0 = time.monotonic()
    data, how = read_response_raw(f, "/stall", 6)
    elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 200")
    assert how in ("eof", "reset"), how
    assert len(data.split(b"\r\n\r\n", 1)[1]) < 100000
    assert 0.6 < elapsed < 4, elapsed
    assert "upstream idle timeout" in f.log()
    still_serves(f)


@pytest.mark.parametrize("kind", KINDS)
def test_slow_client_of_a_large_body_is_not_cut_by_the_upstream_idle_timeout(front_factory,
                                                                           kind):
    """Backpressure is not a stall: while the client reads slowly the proxy
    stops reading the upstream, and the idle timer must not run then. A
    client with a small receive window reads 32 MiB with pauses of 1 s, far
    longer than the 300 ms timeout, and gets every byte."""
    f = front_factory(kind, env={"LINKUP_UPSTREAM_IDLE_TIMEOUT_MS": "300"})
    n = 32 * 1024 * 1024
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.settimeout(10)
    s.connect(f.addr)
    got = 0
    t0 = time.monotonic()
    try:
        s.sendall(b"GET /big/32 HTTP/1.1\r\nHost: %s\r\n\r\n" % f.host.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            c = s.recv(65536)
            assert c, data
            data += c
        head, rest = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"content-length: %d" % n in head.lower(), head
        got = len(rest)
        pauses = 0
        while got < n:
            if pauses < 3 and got >= pauses * 4 * 1024 * 1024:
                time.sleep(1.0)  # the proxy's buffers fill; it pauses the upstream
                pauses += 1
            c = s.recv(1 << 20)
            assert c, f"cut after {got} of {n} body bytes"
            got += len(c)
            assert time.monotonic() - t0 < 60
    finally:
        s.close()
    assert got == n
    assert time.monotonic() - t0 > 3
    assert "upstream idle timeout" not in f.log()
    still_serves(f)


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_silent_before_head_is_502_at_first_byte_timeout(front_factory, kind):
    f = front_factory(kind, env={"LINKUP_FIRST_BYTE_TIMEOUT_MS": "700"})
    t0 = time.monotonic()
    r = get(f, "/slow/4000", timeout=10)
    assert r.status == 502 and r.text.startswith(PROXY_502[kind]), r.text
    assert time.monotonic() - t0 < 3
    still_serves(f)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_gone_before_the_response_cancels_the_upstream(front_factory, raw_upstream,
                                                              kind, how):
    """Issue 3: the client going away cancels the upstream exchange, also when it closes
    (FIN) after a whole request and before any response byte, as nginx does: a slow
    upstream is not kept busy for nobody."""
    f = front_factory(kind)
    s = socket.create_connection(f.addr, timeout=10)
    s.sendall(b"GET /hold HTTP/1.1\r\nHost: %s\r\n\r\n" % f.host.encode())
    deadline = time.monotonic() + 10
    while "/hold" not in raw_upstream.targets() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "/hold" in raw_upstream.targets()
    if how == "reset":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    assert raw_upstream.hold_ended.wait(5), "the upstream request was not cancelled"
    still_serves(f)


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_connect_timeout_is_502(front_factory, blackhole, kind):
    f = front_factory(kind, url=blackhole, env={"LINKUP_CONNECT_TIMEOUT_MS": "700"})
    t0 = time.monotonic()
    r = get(f, "/", timeout=20)
    assert r.status == 502 and r.text.startswith(PROXY_502[kind]), r.text
    assert "timed out" in r.text
    assert time.monotonic() - t0 < 3
    assert f.check() == 200


@pytest.mark.parametrize("kind", KINDS)
def test_dns_failure_is_502(front_factory, kind):
    f = front_factory(kind, url="http://linkup-no-such-host.invalid:8080")
    t0 = time.monotonic()
    r = get(f, "/x", timeout=30)
    assert r.status == 502
    assert r.text.startswith(PROXY_502[kind]), r.text
    assert time.monotonic() - t0 < 15
    assert f.check() == 200


# ---- SQLite store (worker) -------------------------------------------------------

def _upsert(f, name, url, timeout=20):
    body = lk.session_body(name, {"frontend": url}, [("example.com", "frontend", None)])
    return lk.request(f.addr, "POST", "/linkup/v2/sessions/preview", API_HEADERS,
                      json.dumps(body), timeout=timeout)


def test_sqlite_locked_is_500_then_recovers(front_factory, raw_upstream, tmp_path):
    db = tmp_path / "locked.db"
    f = front_factory("worker", store=f"sqlite:{db}")
    con = sqlite3.connect(str(db), timeout=1, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        r = _upsert(f, "other", raw_upstream.url)
        assert r.status == 500
        assert r.text.startswith("Failed to store server config: "), r.text
        assert "locked" in r.text
        # Reads still work (WAL) while the writer lock is held.
        assert get(f, "/x").status == 200
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert _upsert(f, "other", raw_upstream.url).status == 200
    still_serves(f)


def test_sqlite_locked_does_not_stall_other_requests(front_factory, raw_upstream, tmp_path):
    """The locked upsert waits on a timer (retries with backoff), never on
    the loop: other requests are answered at once meanwhile."""
    db = tmp_path / "stall.db"
    f = front_factory("worker", store=f"sqlite:{db}")
    con = sqlite3.connect(str(db), timeout=1, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        t = threading.Thread(target=_upsert, args=(f, "other", raw_upstream.url))
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        assert f.check() == 200
        elapsed = time.monotonic() - t0
        t.join(20)
        assert elapsed < 1, elapsed
    finally:
        con.execute("ROLLBACK")
        con.close()


def test_sqlite_lock_released_during_the_retries_lets_the_upsert_succeed(
        front_factory, raw_upstream, tmp_path):
    """A write refused as busy is retried from a timer: when the other
    process lets go within WORKER_SQLITE_RETRY_MS (5 s) the upsert succeeds,
    soon after the lock is released."""
    db = tmp_path / "release.db"
    f = front_factory("worker", store=f"sqlite:{db}")
    con = sqlite3.connect(str(db), timeout=1, isolation_level=None)
    holder = {}
    try:
        con.execute("BEGIN EXCLUSIVE")
        t0 = time.monotonic()
        t = threading.Thread(target=lambda: holder.update(
            r=_upsert(f, "released", raw_upstream.url), at=time.monotonic() - t0))
        t.start()
        time.sleep(1.0)
        assert f.check() == 200
    finally:
        con.execute("ROLLBACK")
        con.close()
    t.join(20)
    r = holder["r"]
    assert r.status == 200, r.text
    assert json.loads(r.body)["session_name"] == "released"
    assert 1.0 <= holder["at"] < 2.5, holder["at"]
    assert "store busy" in f.log()
    still_serves(f)


def test_sqlite_row_changed_by_another_process_is_seen_at_once(front_factory, raw_upstream,
                                                               tmp_path):
    """The worker's session lookups skip the store while its stamp has not
    moved (inotify on the database and WAL files): a commit of another
    process must still be routed by on the very next request, whichever of
    a request stream it lands between."""
    db = tmp_path / "shared.db"
    f = front_factory("worker", store=f"sqlite:{db}")
    other = lk.RawRecordingUpstream("127.0.0.5")
    con = sqlite3.connect(str(db), timeout=5, isolation_level=None)
    try:
        for rnd in range(5):
            target, old = (other, raw_upstream) if rnd % 2 == 0 else (raw_upstream, other)
            assert get(f, f"/warm/{rnd}").status == 200
            before = (len(target.requests), len(old.requests))
            (value,) = con.execute("SELECT value FROM sessions WHERE key = ?",
                                   (f.name,)).fetchone()
            assert old.url in value
            con.execute("UPDATE sessions SET value = ? WHERE key = ?",
                        (value.replace(old.url, target.url), f.name))
            r = get(f, f"/moved/{rnd}")
            assert r.status == 200, r.text
            assert (len(target.requests), len(old.requests)) == (before[0] + 1, before[1]), rnd
        # A row deleted by another process is gone at once too.
        con.execute("DELETE FROM sessions WHERE key = ?", (f.name,))
        assert get(f, "/gone").status != 200
    finally:
        con.close()
        other.close()


def test_sqlite_read_only_store_is_a_clear_start_error(linkup_bin, env, raw_upstream):
    """A store the worker may not write (file mode 0444, worker run as
    nobody so root's DAC override does not apply) is refused at start with a
    message naming the store, exit 1; never a crash later."""
    setpriv = shutil.which("setpriv")
    if not setpriv or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run the worker as another user")
    # Not under tmp_path: another pytest process may reset the shared
    # pytest-of-root directory to 0700 at any moment, and nobody must be able
    # to reach the file for the error to be about writing, not opening.
    d = pathlib.Path(tempfile.mkdtemp(prefix="linkup-ro-", dir="/tmp"))
    try:
        db = d / "ro.db"
        sqlite3.connect(str(db)).execute("CREATE TABLE t(x)").connection.close()
        os.chmod(db, 0o444)
        os.chmod(d, 0o755)
        e = dict(env, HOME=str(d), LINKUP_HOME=str(d))
        r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                            linkup_bin, "worker", "--listen", "127.0.0.1:0", "--token", "token123",
                            "--store", f"sqlite:{db}"], capture_output=True, text=True, env=e,
                           timeout=20)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert r.returncode == 1, r.stderr
    assert "store" in r.stderr and "readonly" in r.stderr.replace("read-only", "readonly")


# ---- Redis stopped and restarted (worker) ---------------------------------------

STORE_DOWN = ("Linkup could not read its session store, so the session of the request is "
              "unknown.\nTry again in a moment. - Worker")

def _start_redis(port):
    exe = shutil.which("redis-server")
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            if time.time() > deadline or p.poll() is not None:
                p.kill()
                p.wait(5)
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)


def test_redis_stopped_and_restarted(front_factory, raw_upstream):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = lk.free_port()
    redis = _start_redis(port)
    try:
        f = front_factory("worker", store=f"redis://127.0.0.1:{port}/3")
        assert get(f, "/x").status == 200
        body = lk.session_body("tunfault", {"frontend": "http://localhost:9"},
                               [("example.com", "frontend", None)])
        r = lk.request(f.addr, "POST", "/linkup/v2/sessions/tunneled", API_HEADERS,
                       json.dumps(body), timeout=20)
        assert r.status == 200, r.text
        secret = json.loads(r.text)["tunnel_data"]["secret"]
        redis.terminate()
        redis.wait(10)
        r = _upsert(f, "other", raw_upstream.url)
        assert r.status == 500 and r.text.startswith("Failed to store server config: ")
        # Issue 9: a clear 5xx, not SPEC §3.4's 422 ("no session").
        r = get(f, "/x")
        assert (r.status, r.text) == (503, STORE_DOWN), r.text
        assert r.header("Content-Type") == "text/plain"
        assert r.header("Cache-Control") == "no-store"
        # A tunnel secret that cannot be looked up is not called wrong.
        r = lk.request(f.addr, "GET", "/linkup/v2/tunnel",
                       [("Connection", "Upgrade"), ("Upgrade", "linkup-tunnel"),
                        ("Authorization", f"Bearer {secret}"), ("x-linkup-session", "tunfault")],
                       timeout=20)
        assert (r.status, r.text) == (503, "Tunnel secret cannot be checked now")
        assert f.check() == 200
        redis = _start_redis(port)
        # Recovery without restarting the worker (the data did not persist).
        deadline = time.time() + 10
        while _upsert(f, "fault", raw_upstream.url).status != 200:
            assert time.time() < deadline, "the worker did not reconnect to Redis"
            time.sleep(0.2)
        still_serves(f)
    finally:
        if redis.poll() is None:
            redis.terminate()
            redis.wait(10)


# ---- SIGTERM under load -------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_sigterm_drains_in_flight_requests(front_factory, kind):
    f = front_factory(kind)
    results = []

    def one(i):
        try:
            r = get(f, f"/slow/1500?i={i}", timeout=15)
            results.append((r.status, r.body))
        except OSError as e:
            results.append(("error", str(e)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    f.proc.popen.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # New connections are no longer accepted once draining began.
    with pytest.raises(OSError):
        s = socket.create_connection(f.addr, timeout=2)
        s.sendall(b"GET /linkup/check HTTP/1.1\r\nHost: x\r\n\r\n")
        if s.recv(100) == b"":
            raise ConnectionResetError("closed")
        s.close()
    for t in threads:
        t.join(20)
    assert len(results) == 8
    assert all(s == 200 and b.startswith(b"ok ") for s, b in results), results
    assert f.proc.popen.wait(15) == 0
