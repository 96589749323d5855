"""The built-in tunnel (DESIGN §8) for a session whose name has upper-case
letters. SPEC §2.5 puts no syntax rules on names, so "Big-Cow" is a valid
session; its tunnel hostname `linkup-tunnel-Big-Cow.localhost` is a hostname,
hence case-insensitive: the worker re-points localhost services at the
parsed (lower-cased) tunnel URL and every client lower-cases the host. The
worker must still find the tunnel the local server connected as "Big-Cow",
on one worker and through the registry of several workers on one Redis.

Two sessions differing only in case ("Big-Cow", "big-cow") share one tunnel
hostname: the first live tunnel keeps it, the other is refused with 409
until it goes (docs/internals/tunnel.md).

Real `linkup worker` and `linkup server` processes, real local upstreams,
all on loopback; the stack and helpers are those of test_tunnel.py.
"""
import socket
import time

import lk
from test_tunnel import (  # noqa: F401 (redis_url is a fixture)
    NOT_CONNECTED, TOKEN, LocalWeb, Stack, redis_url, spawn_peer_worker, tunnel_state,
    wait_connected)

NAME = "Big-Cow"


def tunnel_host(stack):
    """host:port of the tunnel URL, exactly as the worker announced it."""
    return stack.tunnel_data["url"][len("http://"):]


def wait_502(get, timeout=5.0):
    deadline = time.time() + timeout
    while True:
        r = get()
        if r.status == 502 or time.time() > deadline:
            return r
        time.sleep(0.05)


def redis_get(url, key):
    """GET key from the Redis at url (redis://H:P) over RESP; None when absent."""
    host, port = url[len("redis://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        k = key.encode()
        s.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k))
        f = s.makefile("rb")
        head = f.readline()
        if head.startswith(b"$-1"):
            return None
        assert head.startswith(b"$"), head
        return f.read(int(head[1:]) + 2)[:-2].decode()


def test_upper_case_session_through_its_domain_and_its_tunnel_url(linkup_bin, env, tmp_path):
    s = Stack(linkup_bin, env, tmp_path, name=NAME)
    try:
        # The tunnel data keep the name as given (SPEC §2.4 / §4.8).
        assert s.tunnel_data["name"] == "linkup-tunnel-Big-Cow"
        assert s.tunnel_data["url"] == "http://linkup-tunnel-Big-Cow.localhost:%d" % s.waddr[1]
        state = wait_connected(s.server)
        assert state["session_name"] == NAME
        # By Host of the session domain: the service points at the tunnel URL,
        # which the worker parsed (so lower-cased).
        r = s.get("/hello?via=host")
        assert (r.status, r.text) == (
            200, "local web /hello?via=host xfh=Big-Cow.example.com dest=web")
        # By Referer of the session domain (the repro of the bug report).
        r = lk.request(s.waddr, "GET", "/hello?via=referer",
                       [("Referer", "http://Big-Cow.example.com/")])
        assert r.status == 200, r.text
        assert r.text.startswith("local web /hello?via=referer ") and r.text.endswith(
            " dest=web"), r.text
        # Via the tunnel URL whatever the case of its host: the whole-path
        # probe, and a request the local server routes by its Referer.
        host = tunnel_host(s)
        for h in (host.lower(), host, host.upper()):
            r = s.get("/linkup/check", host=h)
            assert (r.status, r.text) == (200, "OK"), h
        n = s.web.n_requests
        r = lk.request(s.waddr, "GET", "/hello?via=tunnel-url",
                       [("Host", host.lower()), ("Referer", "http://Big-Cow.example.com/")])
        assert r.status == 200, r.text
        assert r.text.startswith("local web /hello?via=tunnel-url "), r.text
        assert s.web.n_requests == n + 1
        # Still one tunnel, authenticated as the exact name.
        wlog = open(s.worker.log_path).read()
        assert "tunnel for session 'Big-Cow' connected" in wlog
        assert "rejected" not in wlog
        # Its tunnel gone, the session's requests get the usual 502.
        assert lk.stop_gracefully(s.server)[0] == 0
        r = wait_502(lambda: s.get("/hello"))
        assert (r.status, r.text.lower()) == (502, NOT_CONNECTED.format("big-cow").lower())
    finally:
        s.close()
    s.assert_clean_exit()


def test_sessions_differing_only_in_case_share_the_hostname(linkup_bin, env, tmp_path):
    """"Big-Cow" connects first and keeps the hostname; "big-cow" (another
    local server, its own tunnel record and secret) is refused with 409 and
    retries; when "Big-Cow"'s tunnel goes, "big-cow"'s connects and serves."""
    s = Stack(linkup_bin, env, tmp_path, name=NAME)
    web2 = LocalWeb()
    server2 = None
    try:
        wait_connected(s.server)
        server2 = lk.spawn_local_server(linkup_bin, env, "--https", "off", "--dns", "off",
                                        "--worker-url", "http://127.0.0.1:%d" % s.waddr[1],
                                        "--worker-token", TOKEN,
                                        log_path=str(tmp_path / "server2.log"))
        body = lk.session_body("big-cow", {"web": "http://localhost:%d" % web2.port},
                               [("example.com", "web", None)], token="token-2")
        r = lk.post_json(server2.addrs["HTTP"], "/linkup/sessions/tunneled", body)
        assert r.status == 200, r.body
        data2 = r.json()["tunnel_data"]
        assert data2["name"] == "linkup-tunnel-big-cow"
        assert data2["secret"] != s.tunnel_data["secret"]
        deadline = time.time() + 5
        while True:
            status, state = tunnel_state(server2)
            if "409" in (state["last_error"] or "") or time.time() > deadline:
                break
            time.sleep(0.05)
        assert status == 200 and state["connected"] is False, state
        assert "409" in state["last_error"], state
        # The first tunnel was not replaced: both domains reach "Big-Cow"'s
        # local server, which holds the hostname.
        assert wait_connected(s.server)["session_name"] == NAME
        r = s.get("/hello")
        assert (r.status, r.text) == (200, "local web /hello xfh=Big-Cow.example.com dest=web")
        r = s.get("/linkup/check", host=tunnel_host(s).lower())
        assert (r.status, r.text) == (200, "OK")
        assert web2.n_requests == 0
        wlog = open(s.worker.log_path).read()
        assert ("tunnel for session 'big-cow' refused: its hostname is held by session "
                "'Big-Cow'") in wlog
        assert data2["secret"] not in wlog
        # "Big-Cow" goes: "big-cow" gets the hostname at its next attempt.
        assert lk.stop_gracefully(s.server)[0] == 0
        assert wait_connected(server2, timeout=10)["session_name"] == "big-cow"
        r = s.get("/hello?second=1", host="big-cow.example.com")
        assert (r.status, r.text) == (
            200, "local web /hello?second=1 xfh=big-cow.example.com dest=web")
        assert web2.n_requests == 1
    finally:
        if server2 is not None:
            server2.stop()
        web2.close()
        s.close()
    s.assert_clean_exit()
    assert server2.popen.returncode == 0


def test_two_workers_on_one_redis_upper_case_session(linkup_bin, env, tmp_path, redis_url):
    """The registry key is the lower-cased name: worker B, which reads
    "big-cow" from the lower-cased tunnel URL, finds A as the holder of the
    tunnel "Big-Cow" connected to A."""
    a_port = lk.free_port()
    a_url = "http://127.0.0.1:%d" % a_port
    s = Stack(linkup_bin, env, tmp_path, name=NAME, store=redis_url,
              worker_extra=("--listen", "127.0.0.1:%d" % a_port, "--peer-url", a_url,
                            "--peer-secret", "peer-secret-1"))
    b = spawn_peer_worker(linkup_bin, env, tmp_path, redis_url, "worker-b")
    try:
        wait_connected(s.server)
        assert redis_get(redis_url, "tunnel-holder:big-cow") == a_url
        assert redis_get(redis_url, "tunnel-holder:Big-Cow") is None
        baddr = b.addrs["Worker"]
        # B holds no tunnel: it forwards to A, which relays through its tunnel.
        r = s.get("/hello", addr=baddr)
        assert (r.status, r.text) == (200, "local web /hello xfh=Big-Cow.example.com dest=web")
        r = lk.request(baddr, "GET", "/hello?via=referer",
                       [("Referer", "http://Big-Cow.example.com/")])
        assert r.status == 200 and r.text.startswith("local web /hello?via=referer "), r.text
        for h in (tunnel_host(s).lower(), tunnel_host(s)):
            r = s.get("/linkup/check", host=h, addr=baddr)
            assert (r.status, r.text) == (200, "OK"), h
        # The holder's entry goes with its tunnel: then B answers the 502.
        assert lk.stop_gracefully(s.server)[0] == 0
        r = wait_502(lambda: s.get("/hello", addr=baddr))
        assert (r.status, r.text.lower()) == (502, NOT_CONNECTED.format("big-cow").lower())
        assert redis_get(redis_url, "tunnel-holder:big-cow") is None
    finally:
        b.stop()
        s.close()
    s.assert_clean_exit()
    assert b.popen.returncode == 0
