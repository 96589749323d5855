"""Several components and entities at once, and their lifecycles (SPEC §0.2,
DESIGN §8 "Several workers", issues 3, 4, 7 and 9): local servers of several
developers on one worker, several tunneled sessions on one local server,
workers sharing one Redis with the tunnel registry and peer forwarding, and
each of them stopped, killed or restarted under traffic. Every failure must
be the documented status and text, nothing may leak from one session to
another, and everything recovers without a restart.

Helpers come from test_tunnel.py (Stack, LocalWeb, TcpRelay, the redis_url
fixture) and lk.py. Everything listens on loopback; every wait is bounded."""
import os
import socket
import sqlite3
import subprocess
import time

import pytest

import lk
from test_tunnel import (NOT_CONNECTED, TOKEN, LocalWeb, Stack, TcpRelay, redis_url,  # noqa: F401
                         stall_in_background, tunnel_state, wait_connected)
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


def local_server(bin_, env, tmp_path, label, worker_url, *extra):
    e = dict(env)
    home = tmp_path / ("home-" + label)
    home.mkdir()
    e["HOME"] = str(home)
    e["LINKUP_HOME"] = str(home / ".linkup")
    return lk.spawn_local_server(bin_, e, "--https", "off", "--dns", "off", "--worker-url",
                                 worker_url, "--worker-token", TOKEN, *extra,
                                 log_path=str(tmp_path / ("server-%s.log" % label)))


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
