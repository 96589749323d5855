"""libcurl is loaded at run time, only where it is used (docs/performance.md,
finding 10): the local server never maps it, the worker maps it on its first
cache fetch, the CLI on its first request. The binary does not link it."""
import json
import subprocess

import lk

TOKEN = "token123"


def maps_libcurl(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "/libcurl" in f.read()


def test_binary_does_not_link_libcurl(linkup_bin):
    out = subprocess.run(["ldd", linkup_bin], capture_output=True, text=True, timeout=20).stdout
    assert "libcurl" not in out


def test_local_server_never_loads_libcurl(linkup_bin, env, tmp_path):
    srv, url = lk.fake_upstream("hello from upstream", host="127.0.0.2")
    front = lk.Front("server", linkup_bin, env, tmp_path, url)
    try:
        r = lk.request(front.addr, "GET", "/x", [("Host", front.host)])
        assert (r.status, r.text) == (200, "hello from upstream")
        assert not maps_libcurl(front.proc.popen.pid)
    finally:
        assert front.stop() == 0, front.log()
        srv.shutdown()
        srv.server_close()


def test_worker_loads_libcurl_on_first_cache_fetch(linkup_bin, env, tmp_path):
    srv, url = lk.fake_upstream(lambda h: "path " + h.path, host="127.0.0.2")
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"), token=TOKEN)
    try:
        body = lk.session_body("lazy", {"frontend": url}, [("example.com", "frontend", None)])
        body["cache_routes"] = ["/static/.*"]
        r = lk.request(w.addrs["Worker"], "POST", "/linkup/v2/sessions/preview",
                       [("Authorization", f"Bearer {TOKEN}"),
                        ("Content-Type", "application/json"), ("x-linkup-version", "99.0.0")],
                       json.dumps(body))
        assert r.status == 200, r.text
        h = [("Host", "lazy.example.com")]
        r = lk.request(w.addrs["Worker"], "GET", "/plain", h)
        assert (r.status, r.text) == (200, "path /plain")
        assert not maps_libcurl(w.popen.pid)
        r = lk.request(w.addrs["Worker"], "GET", "/static/a.js", h)
        assert (r.status, r.text) == (200, "path /static/a.js")
        assert maps_libcurl(w.popen.pid)
    finally:
        assert w.stop() == 0, open(w.log_path).read()
        srv.shutdown()
        srv.server_close()
