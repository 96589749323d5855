"""Several components and entities at once, and their lifecycles (SPEC §0.2,
DESIGN §8 "Several workers", issues 3, 4, 7 and 9): local servers of several
developers on one worker, several tunneled sessions on one local server,
workers sharing one Redis with the tunnel registry and peer forwarding, and
each of them stopped, killed or restarted under traffic. Every failure must
be the documented status and text, nothing may leak from one session to
another, and everything recovers without a restart.

Helpers come from test_tunnel.py (Stack, LocalWeb, the redis_url fixture)
and lk.py (TcpRelay). Everything listens on loopback; every wait is bounded."""
import json
import socket
import sqlite3
import subprocess
import time

import pytest

import lk
from test_tunnel import (NOT_CONNECTED, TOKEN, LocalWeb, Stack, stall_in_background, tunnel_state,
                         wait_connected)
from test_tunnel_case import redis_get


def until(fn, want, timeout=5.0):
    """Calls fn() until it returns want (at most timeout s); returns the last value."""
    deadline = time.time() + timeout
    while True:
        got = fn()
        if got == want or time.time() > deadline:
            return got
        time.sleep(0.05)


def via(addr, host, path="/hello", timeout=10):
    r = lk.request(addr, "GET", path, [("Host", host)], timeout=timeout)
    return r.status, r.text


def local_server(bin_, env, tmp_path, label, worker_url, *extra, wanted=("HTTP",)):
    e = dict(env)
    home = tmp_path / ("home-" + label)
    home.mkdir()
    e["HOME"] = str(home)
    e["LINKUP_HOME"] = str(home / ".linkup")
    return lk.spawn_local_server(bin_, e, "--https", "off", "--dns", "off", "--worker-url",
                                 worker_url, "--worker-token", TOKEN, *extra,
                                 log_path=str(tmp_path / ("server-%s.log" % label)),
                                 wanted=wanted)


def upsert(server, name, services, domains=("example.com",), token="token"):
    body = lk.session_body(name, services, [(d, "web", None) for d in domains], token=token)
    return lk.post_json(server.addrs["HTTP"], "/linkup/sessions/tunneled", body)


def stop_all(*procs):
    for p in procs:
        if p is not None and p.popen.poll() is None:
            p.popen.terminate()
            try:
                p.popen.wait(15)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(5)


# ---- one local server, several sessions ---------------------------------------------

def test_deleting_a_session_lets_its_requests_in_flight_through_the_tunnel_finish(
        linkup_bin, env, tmp_path):
    """DELETE /linkup/sessions/{name} stops the session's tunnel the way a
    stopping local server does (GOAWAY): new requests get the DESIGN §8 502
    at once, a request already in the tunnel still gets its answer, and the
    same name registered again gets a working tunnel."""
    s = Stack(linkup_bin, env, tmp_path, name="gone")
    try:
        wait_connected(s.server)
        t, out = stall_in_background(s, 0, timeout=20)
        assert s.web.n_requests == 1
        assert lk.request(s.saddr, "DELETE", "/linkup/sessions/gone").status == 204
        assert tunnel_state(s.server, "gone")[0] == 404
        assert until(lambda: via(s.waddr, s.host), (502, NOT_CONNECTED.format("gone"))) == \
            (502, NOT_CONNECTED.format("gone"))
        s.web.release.set()
        t.join(20)
        assert (out["r"].status, out["r"].text) == (200, "late")
        r = upsert(s.server, "gone", {"web": "http://localhost:%d" % s.web.port})
        assert r.status == 200, r.body
        wait_connected(s.server, session="gone")
        assert via(s.waddr, s.host) == (200, "local web /hello xfh=gone.example.com dest=web")
    finally:
        s.close()
    s.assert_clean_exit()


def test_sessions_deleted_and_created_again_leak_nothing_to_each_other(linkup_bin, env,
                                                                       tmp_path):
    """Two sessions on one local server (DNS on): deleting one takes its
    names out of DNS and of routing, leaves the other alone, and the same
    name registered again with another service and another domain is routed
    by its new definition only, on the local server and on the worker."""
    one = lk.RecordingUpstream(body="one")
    two = lk.RecordingUpstream(body="two")
    worker = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"), token=TOKEN)
    waddr = worker.addrs["Worker"]
    server = local_server(linkup_bin, env, tmp_path, "dev", "http://127.0.0.1:%d" % waddr[1],
                          "--dns", "127.0.0.1:0", "--dns-upstream", "off",
                          wanted=("HTTP", "DNS"))
    saddr, daddr = server.addrs["HTTP"], server.addrs["DNS"]
    try:
        assert upsert(server, "aa", {"web": one.url}, ("example.com", "other.test")).status == 200
        assert upsert(server, "bb", {"web": one.url}).status == 200
        assert lk.request(saddr, "GET", "/linkup/dns").json() == {
            "domains": ["aa.example.com", "aa.other.test", "bb.example.com"]}
        assert lk.request(saddr, "DELETE", "/linkup/sessions/aa").status == 204
        assert lk.request(saddr, "GET", "/linkup/dns").json() == {"domains": ["bb.example.com"]}
        assert lk.dns_query(daddr, "aa.example.com")[0] == 3  # NXDOMAIN: example.com managed
        assert lk.dns_query(daddr, "bb.example.com") == (0, [b"\x7f\0\0\1"])
        r = lk.request(saddr, "GET", "/x", [("Host", "aa.example.com")])
        assert (r.status, r.text) == (422, (
            "Linkup was unable to determine the session origin of the request. Ensure that your "
            "request includes a valid session identifier in the referer or tracestate headers. "
            "- Local Server"))
        assert via(saddr, "bb.example.com", "/x") == (200, "one")

        assert upsert(server, "aa", {"web": two.url}, ("third.test",)).status == 200
        assert lk.request(saddr, "GET", "/linkup/dns").json() == {
            "domains": ["aa.third.test", "bb.example.com"]}
        assert lk.dns_query(daddr, "aa.third.test") == (0, [b"\x7f\0\0\1"])
        for addr, who in ((saddr, "Local Server"), (waddr, "Worker")):
            r = lk.request(addr, "GET", "/x", [("Host", "aa.third.test")])
            assert (r.status, r.text) == (200, "two"), who
            assert r.header("linkup-routed-to").startswith("web; session=aa; via=")
            r = lk.request(addr, "GET", "/x", [("Host", "aa.example.com")])
            assert r.status == 404, (who, r.text)
            assert r.text.endswith("- " + who)
            assert via(addr, "bb.example.com", "/x") == (200, "one")
        reqs = lk.request(saddr, "GET", "/linkup/inspector/requests?session=bb").json()["requests"]
        assert reqs and all(q["session"] == "bb" and q["host"] == "bb.example.com" for q in reqs)
    finally:
        stop_all(server, worker)
        one.close()
        two.close()


# ---- several local servers on one worker --------------------------------------------

def test_two_developers_on_one_worker_through_restarts(linkup_bin, env, tmp_path):
    """Two local servers (each its own LINKUP_HOME) with their own sessions
    on one worker (SQLite store): each session reaches its own developer's
    service; the other developer cannot take a name (409 `Conflict`, nothing
    stored, no tunnel); the worker killed and started again at its address
    gets both tunnels back by itself; a local server stopped makes only its
    own session answer the not-connected 502, until it is back."""
    webs = [LocalWeb(), LocalWeb()]
    port = lk.free_port()
    store = "sqlite:%s" % (tmp_path / "worker.db")
    wurl = "http://127.0.0.1:%d" % port

    def spawn_worker(label):
        return lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / ("worker-%s.log" % label)),
                                      store=store, token=TOKEN,
                                      extra=("--listen", "127.0.0.1:%d" % port))

    worker = spawn_worker("1")
    waddr = worker.addrs["Worker"]
    servers = [local_server(linkup_bin, env, tmp_path, "dev%d" % i, wurl) for i in range(2)]
    extra = None
    names = ("ann", "bob")

    def ok(i):
        return (200, "local web /hello xfh=%s.example.com dest=web" % names[i])

    try:
        for i in range(2):
            r = upsert(servers[i], names[i], {"web": "http://localhost:%d" % webs[i].port},
                       token="tok%d" % i)
            assert r.status == 200, r.body
            wait_connected(servers[i], session=names[i])
        for i in range(2):
            assert via(waddr, names[i] + ".example.com") == ok(i)
        assert [webs[0].n_requests, webs[1].n_requests] == [1, 1]

        r = upsert(servers[1], "ann", {"web": "http://localhost:%d" % webs[1].port}, token="tok1")
        assert (r.status, r.text) == (409, "Conflict")
        assert lk.request(servers[1].addrs["HTTP"], "GET", "/linkup/sessions/ann").status == 404
        assert tunnel_state(servers[1], "ann")[0] == 404
        assert via(waddr, "ann.example.com") == ok(0)

        worker.popen.kill()
        worker.popen.wait(10)
        worker = spawn_worker("2")
        for i in range(2):
            wait_connected(servers[i], timeout=10, session=names[i])
            assert via(waddr, names[i] + ".example.com") == ok(i)

        assert lk.stop_gracefully(servers[0])[0] == 0
        assert until(lambda: via(waddr, "ann.example.com"),
                     (502, NOT_CONNECTED.format("ann"))) == (502, NOT_CONNECTED.format("ann"))
        assert via(waddr, "bob.example.com") == ok(1)
        extra = local_server(linkup_bin, env, tmp_path, "dev0-again", wurl)
        r = upsert(extra, "ann", {"web": "http://localhost:%d" % webs[0].port}, token="tok0")
        assert r.status == 200, r.body
        wait_connected(extra, session="ann")
        assert via(waddr, "ann.example.com") == ok(0)
        assert via(waddr, "bob.example.com") == ok(1)
    finally:
        stop_all(extra, *servers, worker)
        for w in webs:
            w.close()


# ---- several workers on one Redis ---------------------------------------------------

class Redis:
    """redis-server on a fixed loopback port with an append-only file in dir_,
    so a restart keeps the data (stop() / start() again)."""

    def __init__(self, dir_):
        self.port = lk.free_port()
        self.dir = dir_
        self.url = "redis://127.0.0.1:%d" % self.port
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    pytest.skip("redis-server did not start")
                time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def pttl(self, key):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            k = key.encode()
            s.sendall(b"*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n" % (len(k), k))
            line = s.makefile("rb").readline()
        assert line.startswith(b":"), line
        return int(line[1:])


@pytest.fixture
def redis(tmp_path):
    if subprocess.run(["sh", "-c", "command -v redis-server"],
                      stdout=subprocess.DEVNULL).returncode != 0:
        pytest.skip("redis-server is not installed")
    d = tmp_path / "redis"
    d.mkdir()
    r = Redis(d)
    yield r
    r.stop()


def spawn_peer(bin_, env, tmp_path, store, label, port=None):
    port = port or lk.free_port()
    return lk.spawn_worker_logged(
        bin_, env, str(tmp_path / ("worker-%s.log" % label)), store=store, token=TOKEN,
        extra=("--listen", "127.0.0.1:%d" % port, "--peer-url", "http://127.0.0.1:%d" % port,
               "--peer-secret", "peer-secret-1"))


def test_holder_killed_then_the_tunnel_reconnects_at_another_worker(linkup_bin, env, tmp_path,
                                                                   redis):
    """Three workers on one Redis; the local server reaches them through one
    address (a relay). The holder is SIGKILLed: its registry entry is left
    with its short TTL, the others answer the not-connected 502 (not the
    dead holder's connection error); the local server reconnects at another
    worker, which every worker then forwards to, and the killed worker,
    started again at its address, forwards too."""
    web = LocalWeb()
    a_port = lk.free_port()
    a = spawn_peer(linkup_bin, env, tmp_path, redis.url, "a", a_port)
    b = spawn_peer(linkup_bin, env, tmp_path, redis.url, "b")
    c = spawn_peer(linkup_bin, env, tmp_path, redis.url, "c")
    relay = lk.TcpRelay(a.addrs["Worker"])
    server = local_server(linkup_bin, env, tmp_path, "dev", "http://127.0.0.1:%d" % relay.port)
    a2 = None
    ok = (200, "local web /hello xfh=trio.example.com dest=web")
    gone = (502, NOT_CONNECTED.format("trio"))
    try:
        r = upsert(server, "trio", {"web": "http://localhost:%d" % web.port})
        assert r.status == 200, r.body
        tunnel_host = r.json()["tunnel_data"]["url"][len("http://"):]
        wait_connected(server)
        for w in (a, b, c):
            assert via(w.addrs["Worker"], "trio.example.com") == ok
        assert redis_get(redis.url, "tunnel-holder:trio") == "http://127.0.0.1:%d" % a_port

        a.popen.kill()
        a.popen.wait(10)
        assert 0 < redis.pttl("tunnel-holder:trio") <= 15000
        for w in (b, c):
            assert via(w.addrs["Worker"], "trio.example.com") == gone
            assert via(w.addrs["Worker"], tunnel_host, "/linkup/check") == gone

        before = relay.accepted
        relay.target = b.addrs["Worker"]
        wait_connected(server, timeout=10, since=(relay, before))
        assert until(lambda: redis_get(redis.url, "tunnel-holder:trio"),
                     b.url("Worker")) == b.url("Worker")
        for w in (b, c):
            assert via(w.addrs["Worker"], "trio.example.com") == ok
            assert via(w.addrs["Worker"], tunnel_host, "/linkup/check") == (200, "OK")

        a2 = spawn_peer(linkup_bin, env, tmp_path, redis.url, "a2", a_port)
        assert via(a2.addrs["Worker"], "trio.example.com") == ok
        assert redis_get(redis.url, "tunnel-holder:trio") == b.url("Worker")
    finally:
        stop_all(server, a2, b, c)
        relay.close()
        web.close()
    assert "its holder http://127.0.0.1:%d failed" % a_port in (
        open(b.log_path).read() + open(c.log_path).read())


def test_redis_stopped_and_restarted_under_tunnel_traffic(linkup_bin, env, tmp_path, redis):
    """Issue 9 "Redis stopped and restarted": while Redis is down, a session
    lookup is a store error (a clear 503, not SPEC §3.4's 422), an upsert the 500 of SPEC
    §4.5 passed on by the local server, the holder still serves its tunnel
    hostname and its peer answers the not-connected 502; once Redis is back
    every request succeeds again, nothing restarted, and a tunnel that drops
    reconnects with the secret kept in Redis."""
    web = LocalWeb()
    a = spawn_peer(linkup_bin, env, tmp_path, redis.url, "a")
    b = spawn_peer(linkup_bin, env, tmp_path, redis.url, "b")
    relay = lk.TcpRelay(a.addrs["Worker"])
    server = local_server(linkup_bin, env, tmp_path, "dev", "http://127.0.0.1:%d" % relay.port)
    ok = (200, "local web /hello xfh=red.example.com dest=web")
    store_down = (503, "Linkup could not read its session store, so the session of the "
                  "request is unknown.\nTry again in a moment. - Worker")
    try:
        r = upsert(server, "red", {"web": "http://localhost:%d" % web.port})
        assert r.status == 200, r.body
        tunnel_host = r.json()["tunnel_data"]["url"][len("http://"):]
        wait_connected(server)
        assert via(b.addrs["Worker"], "red.example.com") == ok

        redis.stop()
        for w in (a, b):
            assert via(w.addrs["Worker"], "red.example.com") == store_down
        assert via(a.addrs["Worker"], tunnel_host, "/linkup/check") == (200, "OK")
        assert via(b.addrs["Worker"], tunnel_host, "/linkup/check") == \
            (502, NOT_CONNECTED.format("red"))
        r = upsert(server, "red", {"web": "http://localhost:%d" % web.port})
        assert r.status == 500
        assert r.text.startswith("Failed to request to Worker: request failed with status 500 "
                                 "Internal Server Error: Failed to upsert tunnel: "), r.text
        assert tunnel_state(server)[1]["connected"] is True

        redis.start()
        for w in (a, b):
            assert via(w.addrs["Worker"], "red.example.com") == ok
        before = relay.accepted
        relay.reset_all()
        wait_connected(server, timeout=10, since=(relay, before))
        for w in (a, b):
            assert via(w.addrs["Worker"], "red.example.com") == ok
        assert a.popen.poll() is None and b.popen.poll() is None
    finally:
        stop_all(server, a, b)
        relay.close()
        web.close()
    assert a.popen.returncode == 0 and b.popen.returncode == 0


# ---- sessions expiring --------------------------------------------------------------

def test_an_expired_session_is_gone_and_its_name_free(linkup_bin, env, tmp_path):
    """A session expires 7 days after its last upsert (SPEC §2.7): here its
    SQLite row is made to expire in a second. Then, with nothing written
    since, it is no longer served (422) and another session_token may take
    the name (200, not 409); the new session is served."""
    up1 = lk.RecordingUpstream(body="first")
    up2 = lk.RecordingUpstream(body="second")
    db = tmp_path / "worker.db"
    worker = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"),
                                    store="sqlite:%s" % db, token=TOKEN)
    waddr = worker.addrs["Worker"]

    def v2(token, url):
        body = lk.session_body("old", {"web": url}, [("example.com", "web", None)], token=token)
        return lk.request(waddr, "POST", "/linkup/v2/sessions/preview",
                          [("Content-Type", "application/json"),
                           ("Authorization", "Bearer " + TOKEN)],
                          json.dumps(body)).status

    try:
        assert v2("t1", up1.url) == 200
        assert via(waddr, "old.example.com", "/x") == (200, "first")
        assert v2("t2", up2.url) == 409
        with sqlite3.connect(str(db)) as con:
            con.execute("UPDATE sessions SET expires_at = ? WHERE key = 'old'",
                        (int(time.time() * 1000) + 1000,))
        assert via(waddr, "old.example.com", "/x") == (200, "first")
        time.sleep(1.2)
        r = lk.request(waddr, "GET", "/x", [("Host", "old.example.com")])
        assert r.status == 422, r.text
        assert v2("t2", up2.url) == 200
        assert via(waddr, "old.example.com", "/x") == (200, "second")
    finally:
        stop_all(worker)
        up1.close()
        up2.close()


def test_a_worker_left_with_a_dead_tunnel_does_not_take_the_registry_back(
        linkup_bin, env, tmp_path, redis):
    """The local server loses its tunnel connection to worker A in a way A
    does not notice yet (its keepalive needs up to 45 s) and reconnects at
    worker B, which records itself as the holder. A's periodic refresh of
    the registry must not write A back over B's newer entry: the other
    workers would send the session's requests into A's dead tunnel."""
    web = LocalWeb()
    a = spawn_peer(linkup_bin, env, tmp_path, redis.url, "a")
    b = spawn_peer(linkup_bin, env, tmp_path, redis.url, "b")
    c = spawn_peer(linkup_bin, env, tmp_path, redis.url, "c")
    relay = lk.TcpRelay(a.addrs["Worker"])
    server = local_server(linkup_bin, env, tmp_path, "dev", "http://127.0.0.1:%d" % relay.port)
    ok = (200, "local web /hello xfh=flap.example.com dest=web")
    try:
        assert upsert(server, "flap", {"web": "http://localhost:%d" % web.port}).status == 200
        wait_connected(server)
        assert via(c.addrs["Worker"], "flap.example.com") == ok
        assert redis_get(redis.url, "tunnel-holder:flap") == a.url("Worker")

        before = relay.accepted
        relay.target = b.addrs["Worker"]
        relay.orphan_all()
        wait_connected(server, timeout=10, since=(relay, before))
        assert until(lambda: redis_get(redis.url, "tunnel-holder:flap"),
                     b.url("Worker")) == b.url("Worker")
        # Through A's refresh interval (5 s) B stays the holder throughout,
        # and C reaches the session through B.
        seen = set()
        deadline = time.time() + 6
        while time.time() < deadline:
            seen.add(redis_get(redis.url, "tunnel-holder:flap"))
            time.sleep(0.01)
        assert seen == {b.url("Worker")}
        assert via(c.addrs["Worker"], "flap.example.com", timeout=5) == ok
    finally:
        stop_all(server, a, b, c)
        relay.close()
        web.close()
