"""The local server's request inspector (DESIGN §7): `GET /linkup/inspector`
(a page) and `GET /linkup/inspector/requests` (JSON) show the last 256
requests it answered, newest first; loopback only, like the admin API."""
import http.server
import json
import re
import socket
import subprocess
import threading
import time

import pytest

import lk

# HTTP only: the default :443 listener would bind beyond loopback and collide.
pytestmark = pytest.mark.usefixtures("http_only")


@pytest.fixture
def server(linkup_bin, env, tmp_path, fake_worker, upstream):
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "tok", log_path=str(tmp_path / "server.log"))
    body = lk.session_body("insp-cow", {"web": upstream.url}, [("example.com", "web", None)])
    assert lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
    yield s
    code, _ = lk.stop_gracefully(s)
    assert code == 0, open(s.log_path).read()


def requests(server, query=""):
    r = lk.request(server.addrs["HTTP"], "GET", "/linkup/inspector/requests" + query)
    assert r.status == 200, r.body
    assert r.header("content-type") == "application/json"
    return r.json()["requests"]


def test_requests_newest_first_with_their_routing(server):
    addr = server.addrs["HTTP"]
    assert lk.request(addr, "GET", "/a?x=1", [("Host", "insp-cow.example.com")]).status == 200
    assert lk.request(addr, "POST", "/b", [("Host", "insp-cow.example.com")], "hi").status == 200
    assert lk.request(addr, "GET", "/c", [("Host", "nobody.example.com")]).status == 422
    got = requests(server)
    assert [(x["method"], x["path"], x["status"]) for x in got[:3]] == [
        ("GET", "/c", 422), ("POST", "/b", 200), ("GET", "/a?x=1", 200)]
    a = got[2]
    assert (a["host"], a["session"], a["service"], a["bytes"]) == (
        "insp-cow.example.com", "insp-cow", "web", len("under_fe"))
    assert got[0]["session"] is None and got[0]["service"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", a["time"])
    assert isinstance(a["ms"], int) and a["seq"] < got[0]["seq"]
    # The session creation is there too; the inspector's own polls are not.
    assert got[-1]["path"] == "/linkup/sessions/tunneled"
    assert not any(x["path"].startswith("/linkup/inspector") for x in requests(server))


def test_absolute_form_is_shown_as_it_routed(server):
    """An absolute-form target is routed by its authority, not Host (RFC 9112
    §3.2.2): the entry shows that authority and the origin-form rest, as the
    same request over HTTP/2 would be shown."""
    addr = server.addrs["HTTP"]
    got, _ = lk.raw_exchange(addr, b"GET http://insp-cow.example.com/abs/x?z=1 HTTP/1.1\r\n"
                                   b"Host: ignored.invalid\r\nConnection: close\r\n\r\n")
    assert [r.status for r in lk.parse_responses(got)] == [200], got[:200]
    got, _ = lk.raw_exchange(addr, b"GET HTTP://user@insp-cow.example.com HTTP/1.1\r\n"
                                   b"Host: insp-cow.example.com\r\nConnection: close\r\n\r\n")
    assert [r.status for r in lk.parse_responses(got)] == [200], got[:200]
    new, old = requests(server)[:2]
    assert (old["host"], old["path"], old["session"]) == (
        "insp-cow.example.com", "/abs/x?z=1", "insp-cow")
    assert (new["host"], new["path"]) == ("insp-cow.example.com", "/")


def test_filters_and_paging(server):
    addr = server.addrs["HTTP"]
    for i in range(5):
        lk.request(addr, "GET", f"/p{i}", [("Host", "insp-cow.example.com")])
    lk.request(addr, "GET", "/other", [("Host", "nobody.example.com")])
    mine = requests(server, "?session=insp-cow")
    assert [x["path"] for x in mine] == [f"/p{i}" for i in range(4, -1, -1)]
    assert [x["path"] for x in requests(server, "?session=insp-cow&limit=2")] == ["/p4", "/p3"]
    newer = requests(server, f"?after={mine[2]['seq']}")
    assert [x["path"] for x in newer] == ["/other", "/p4", "/p3"]
    r = lk.request(addr, "GET", "/linkup/inspector/requests?limit=-1")
    assert (r.status, r.text) == (400, "limit and after must be whole numbers")


def test_query_edge_cases(server):
    addr = server.addrs["HTTP"]
    lk.request(addr, "GET", "/q", [("Host", "insp-cow.example.com")])
    lk.request(addr, "GET", "/other", [("Host", "nobody.example.com")])
    paths = lambda q: [x["path"] for x in requests(server, q)]
    assert paths("?limit=0") == []
    # Percent-encoded session; the first of a repeated key counts; an empty
    # or valueless session means every session.
    assert paths("?session=insp%2Dcow") == ["/q"]
    assert paths("?session=insp-cow&session=nobody&limit=5&limit=x") == ["/q"]
    assert paths("?session=&limit=2") == paths("?session&limit=2") == ["/other", "/q"]
    assert paths("?&&limit=1&#frag") == ["/other"]
    # limit and after are percent-decoded like session.
    assert paths("?limit=%31") == paths("?limit=1") == ["/other"]
    assert paths("?session=%") == paths("?session=no-such") == []
    # The largest u64 is a whole number; one more is not.
    assert len(paths("?limit=18446744073709551615")) >= 2
    # A cursor past the newest entry is from before a restart: everything.
    newest = requests(server)[0]["seq"]
    assert paths(f"?after={newest}") == []
    assert paths(f"?after={newest + 1}") == paths("?after=18446744073709551615") == paths("")
    for q in ("?limit=18446744073709551616", "?limit=", "?after=+1", "?limit=1.0"):
        r = lk.request(addr, "GET", "/linkup/inspector/requests" + q)
        assert (r.status, r.text) == (400, "limit and after must be whole numbers"), q


def test_only_the_inspectors_own_two_paths_are_left_out(server):
    """Proxied paths that merely start with /linkup/inspector are requests
    like any other; the inspector's own polls, absolute-form included, are
    not recorded."""
    addr = server.addrs["HTTP"]
    host = [("Host", "insp-cow.example.com")]
    for path in ("/linkup/inspectorx", "/linkup/inspector-x/y", "/linkup/inspector/requestsX"):
        assert lk.request(addr, "GET", path, host).status == 200, path
    lk.raw_exchange(addr, b"GET http://localhost/linkup/inspector/requests?limit=1 HTTP/1.1\r\n"
                          b"Host: localhost\r\nConnection: close\r\n\r\n")
    lk.request(addr, "GET", "/linkup/inspector?x=1")
    got = requests(server)
    assert [(x["path"], x["session"]) for x in got[:3]] == [
        ("/linkup/inspector/requestsX", "insp-cow"), ("/linkup/inspector-x/y", "insp-cow"),
        ("/linkup/inspectorx", "insp-cow")], got[:4]


def test_client_gone_before_the_answer_is_recorded_with_status_0(server):
    """A request whose client leaves before any answer (its upstream never
    answered) is recorded when the connection goes, with status 0."""
    addr = server.addrs["HTTP"]
    hang = socket.socket()
    hang.bind(("127.0.0.2", 0))
    hang.listen(4)
    hang.settimeout(10)
    try:
        url = "http://127.0.0.2:%d" % hang.getsockname()[1]
        body = lk.session_body("hang-cow", {"slow": url}, [("example.com", "slow", None)])
        assert lk.post_json(addr, "/linkup/sessions/tunneled", body).status == 200
        with socket.create_connection(addr, timeout=10) as c:
            c.sendall(b"GET /gone HTTP/1.1\r\nHost: hang-cow.example.com\r\n\r\n")
            up, _ = hang.accept()  # the request reached the upstream
        deadline = time.time() + 10
        while True:
            got = requests(server, "?session=hang-cow")
            if got or time.time() > deadline:
                break
            time.sleep(0.05)
        up.close()
    finally:
        hang.close()
    assert [(x["path"], x["service"], x["status"], x["bytes"]) for x in got] == [
        ("/gone", "slow", 0, 0)]
    # The access log says it too (written within 100 ms).
    line = "access GET hang-cow.example.com /gone session=hang-cow service=slow status=0 "
    while line not in open(server.log_path).read() and time.time() < deadline + 5:
        time.sleep(0.05)
    assert line in open(server.log_path).read()


def test_ring_is_bounded(server):
    addr = server.addrs["HTTP"]
    for i in range(300):
        lk.request(addr, "GET", f"/n{i}", [("Host", "insp-cow.example.com")])
    got = requests(server)
    assert len(got) == 256
    assert got[0]["path"] == "/n299" and got[-1]["path"] == "/n44"


def test_page_and_odd_bytes(server):
    addr = server.addrs["HTTP"]
    r = lk.request(addr, "GET", "/linkup/inspector")
    assert r.status == 200
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert "<title>Linkup inspector</title>" in r.text
    assert "/linkup/inspector/requests" in r.text
    # A service name past ASCII reads "?" there, so the JSON stays valid.
    body = lk.session_body("odd-cow", {"w\u00e9b": "http://127.0.0.2:9"},
                           [("example.com", "w\u00e9b", None)])
    assert lk.post_json(addr, "/linkup/sessions/tunneled", body).status == 200
    assert lk.request(addr, "GET", "/z", [("Host", "odd-cow.example.com")]).status == 502
    got = requests(server)[0]
    assert (got["path"], got["session"], got["service"]) == ("/z", "odd-cow", "w??b"), got
    r = lk.request(addr, "POST", "/linkup/inspector/requests", body="")
    assert r.status == 405


def test_remote_peers_are_refused(linkup_bin, env, tmp_path, fake_worker):
    env["LINKUP_TEST_TREAT_PEERS_AS_REMOTE"] = "1"
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "tok", log_path=str(tmp_path / "server.log"))
    try:
        for path in ("/linkup/inspector", "/linkup/inspector/requests"):
            r = lk.request(s.addrs["HTTP"], "GET", path)
            assert r.status == 403, path
    finally:
        lk.stop_gracefully(s)


# ---- linkup inspect ------------------------------------------------------------


def cli_env(env, server):
    e = dict(env)
    e["LINKUP_HTTP_ADDR"] = "%s:%d" % server.addrs["HTTP"]
    return e


def test_cli_inspect_table_json_and_filters(linkup_bin, env, server):
    addr = server.addrs["HTTP"]
    for i in range(3):
        lk.request(addr, "GET", f"/t{i}", [("Host", "insp-cow.example.com")])
    lk.request(addr, "GET", "/nobody", [("Host", "nobody.example.com")])
    e = cli_env(env, server)
    r = lk.run(linkup_bin, "inspect", "--limit", "3", env=e, timeout=20)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:6] == ["TIME", "METHOD", "STATUS", "MS", "SESSION", "SERVICE"]
    rows = [line.split() for line in lines[1:]]
    # Oldest first, like a log.
    assert [(x[1], x[2], x[4], x[5], x[6]) for x in rows] == [
        ("GET", "200", "insp-cow", "web", "insp-cow.example.com/t1"),
        ("GET", "200", "insp-cow", "web", "insp-cow.example.com/t2"),
        ("GET", "422", "-", "-", "nobody.example.com/nobody")]
    r = lk.run(linkup_bin, "inspect", "--session", "insp-cow", "--json", "-n", "2", env=e,
               timeout=20)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["requests"]
    assert [x["path"] for x in got] == ["/t2", "/t1"]


def test_cli_inspect_follow_prints_new_requests(linkup_bin, env, server):
    e = cli_env(env, server)
    p = subprocess.Popen([linkup_bin, "inspect", "--follow", "--session", "insp-cow"], env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, p.kill)  # readline() is not bounded
    watchdog.start()
    try:
        assert p.stdout.readline().startswith("TIME")
        for i in range(3):
            lk.request(server.addrs["HTTP"], "GET", f"/live{i}",
                       [("Host", "insp-cow.example.com")])
        seen = [p.stdout.readline().split()[-1] for _ in range(3)]
        assert seen == [f"insp-cow.example.com/live{i}" for i in range(3)]
    finally:
        watchdog.cancel()
        p.terminate()
        p.wait(10)


def test_cli_inspect_takes_every_option_form(linkup_bin, env, server):
    """Values attached as clap takes them: --limit=N, -nN, -n=N, --session=NAME;
    an option where a value should be is a missing value."""
    e = cli_env(env, server)
    for i in range(3):
        lk.request(server.addrs["HTTP"], "GET", f"/f{i}", [("Host", "insp-cow.example.com")])
    for args in (["--limit=2"], ["-n2"], ["-n=2"], ["--session=insp-cow", "-n", "2"]):
        r = lk.run(linkup_bin, "inspect", *args, env=e, timeout=20)
        assert r.returncode == 0, (args, r.stderr)
        assert [line.split()[-1] for line in r.stdout.splitlines()[1:]] == [
            "insp-cow.example.com/f1", "insp-cow.example.com/f2"], args
    for args, opt in ((["--session", "--json"], "--session <NAME>"), (["-n"], "--limit <N>")):
        r = lk.run(linkup_bin, "inspect", *args, env=e, timeout=20)
        assert r.returncode == 2, args
        assert f"a value is required for '{opt}' but none was supplied" in r.stderr, r.stderr


def test_cli_inspect_usage_and_server_down(linkup_bin, env):
    e = dict(env)
    e["LINKUP_HTTP_ADDR"] = f"127.0.0.1:{lk.free_port()}"
    r = lk.run(linkup_bin, "inspect", env=e, timeout=20)
    assert r.returncode == 1
    assert "Please run 'linkup start' first." in r.stdout
    for bad in (["--limit", "0"], ["--limit", "x"], ["--follow", "--json"], ["--bogus"],
                ["--session"]):
        r = lk.run(linkup_bin, "inspect", *bad, env=e, timeout=20)
        assert r.returncode == 2, bad
    r = lk.run(linkup_bin, "inspect", "--help", env=e, timeout=20)
    assert r.returncode == 0 and r.stdout.startswith("Show the latest requests")


def test_cli_inspect_follow_exits_when_the_server_goes_away(linkup_bin, env, tmp_path,
                                                           fake_worker):
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "tok", log_path=str(tmp_path / "server.log"))
    p = subprocess.Popen([linkup_bin, "inspect", "--follow"], env=cli_env(env, s),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, p.kill)  # readline() is not bounded
    watchdog.start()
    try:
        assert p.stdout.readline().startswith("TIME")
        assert lk.stop_gracefully(s)[0] == 0
        out, _ = p.communicate(timeout=20)
        assert p.returncode == 1
        assert "Please run 'linkup start' first." in out
    finally:
        watchdog.cancel()
        if p.poll() is None:
            p.kill()
            p.wait(5)


class RestartingInspector:
    """Answers /linkup/inspector/requests like a local server that restarts
    between two polls: seq 7 first; then, for the cursor 7 it has never
    reached, its two entries since the restart; then nothing new."""

    def __init__(self):
        self.queries = []
        outer = self

        def entry(seq, path):
            return {"seq": seq, "time": "2026-01-01T00:00:00.000Z", "method": "GET",
                    "host": "h", "path": path, "session": None, "service": None,
                    "status": 200, "bytes": 0, "ms": 0}

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                q = self.path.split("?", 1)[1] if "?" in self.path else ""
                outer.queries.append(q)
                after = [int(kv[6:]) for kv in q.split("&") if kv.startswith("after=")]
                if not after:
                    reqs = [entry(7, "/before")]
                elif after[0] == 7:
                    reqs = [entry(2, "/after2"), entry(1, "/after1")]
                else:
                    reqs = []
                data = json.dumps({"requests": reqs}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.addr = self.server.server_address
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_cli_inspect_follow_across_a_server_restart(linkup_bin, env):
    fake = RestartingInspector()
    e = dict(env)
    e["LINKUP_HTTP_ADDR"] = "%s:%d" % fake.addr
    p = subprocess.Popen([linkup_bin, "inspect", "--follow"], env=e, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, p.kill)  # readline() is not bounded
    watchdog.start()
    try:
        lines = [p.stdout.readline() for _ in range(4)]
        assert lines[0].startswith("TIME")
        assert [x.split()[-1] for x in lines[1:]] == ["h/before", "h/after1", "h/after2"]
        # The cursor moved back to the restarted server's entries.
        deadline = time.time() + 10
        while "after=2" not in "".join(fake.queries) and time.time() < deadline:
            time.sleep(0.05)
        assert any(q.endswith("after=2") or "after=2&" in q for q in fake.queries), fake.queries
    finally:
        watchdog.cancel()
        p.terminate()
        _, err = p.communicate(timeout=10)
        fake.close()
    assert "the local server restarted" in err
