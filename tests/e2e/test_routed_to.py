"""DESIGN §7: every proxied response says where Linkup routed the request, in
`linkup-routed-to: {service}; session={name}; via={hop}` (hop: local-server,
worker, or tunnel when the worker sent it through a tunnel whose far end said
nothing). Linkup's own answers (422, 404, 502) carry none."""
import json
import socket

import pytest

import lk

# HTTP only: the default :443 listener would bind beyond loopback and collide.
pytestmark = pytest.mark.usefixtures("http_only")

TOKEN = "tok"


@pytest.fixture
def worker(linkup_bin, env, tmp_path):
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"), token=TOKEN)
    yield w
    assert w.stop() == 0, open(w.log_path).read()[-3000:]


@pytest.fixture
def server(linkup_bin, env, tmp_path, fake_worker):
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              TOKEN, log_path=str(tmp_path / "server.log"))
    yield s
    code, _ = lk.stop_gracefully(s)
    assert code == 0, open(s.log_path).read()


class SaysItself:
    """An upstream that sends its own linkup-routed-to (and caching headers
    for /static/)."""

    def __init__(self):
        self.hits = 0

        def handle(c):
            head = lk.read_http_head(c)
            self.hits += 1
            cache = b"Cache-Control: public, max-age=60\r\n" if b"/static/" in \
                head[0].encode() else b""
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + cache +
                      b"linkup-routed-to: forged\r\n\r\nok")
        self.up = lk.RawUpstream(handle, threaded=True)
        self.url = self.up.url

    def close(self):
        self.up.close()


@pytest.fixture
def says_itself():
    u = SaysItself()
    yield u
    u.close()


def test_local_server_names_service_session_and_hop(server, upstream):
    body = lk.session_body("rt-cow", {"web": upstream.url, "api": upstream.url},
                           [("example.com", "web", [("^/api/", "api")])])
    assert lk.post_json(server.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
    addr = server.addrs["HTTP"]
    r = lk.request(addr, "GET", "/x", [("Host", "rt-cow.example.com")])
    assert r.status == 200
    assert r.all("linkup-routed-to") == ["web; session=rt-cow; via=local-server"]
    r = lk.request(addr, "GET", "/api/v1", [("Host", "example.com"),
                                            ("Referer", "http://rt-cow.example.com/")])
    assert r.all("linkup-routed-to") == ["api; session=rt-cow; via=local-server"]
    # Linkup's own answers were not routed anywhere.
    r = lk.request(addr, "GET", "/x", [("Host", "nobody.example.com")])
    assert r.status == 422 and r.header("linkup-routed-to") is None


def test_upstream_cannot_forge_it(server, says_itself):
    body = lk.session_body("rt-cow", {"web": says_itself.url}, [("example.com", "web", None)])
    assert lk.post_json(server.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
    r = lk.request(server.addrs["HTTP"], "GET", "/", [("Host", "rt-cow.example.com")])
    assert r.all("linkup-routed-to") == ["web; session=rt-cow; via=local-server"]


def wsession(worker, name, services, cache_routes=None):
    b = lk.session_body(name, services, [("example.com", next(iter(services)), None)])
    b["cache_routes"] = cache_routes
    r = lk.request(worker.addrs["Worker"], "POST", "/linkup/v2/sessions/preview",
                   [("Authorization", f"Bearer {TOKEN}"), ("Content-Type", "application/json"),
                    ("x-linkup-version", "99.0.0")], json.dumps(b))
    assert r.status == 200, r.body
    return r.json()["session_name"]


def test_worker_names_itself_on_proxied_and_cached_answers(worker, says_itself):
    name = wsession(worker, "rt-cow", {"front end": says_itself.url}, ["/static/.*"])
    want = [f"front%20end; session={name}; via=worker"]  # names percent-encoded
    host = [("Host", f"{name}.example.com")]
    r = lk.request(worker.addrs["Worker"], "GET", "/page", host)
    assert (r.status, r.all("linkup-routed-to")) == (200, want)
    for _ in range(2):  # a miss that fills the cache, then a hit
        r = lk.request(worker.addrs["Worker"], "GET", "/static/app.js", host)
        assert (r.status, r.text, r.all("linkup-routed-to")) == (200, "ok", want)
    assert says_itself.hits == 2
    r = lk.request(worker.addrs["Worker"], "GET", "/x", [("Host", "nobody.example.com")])
    assert r.status == 422 and r.header("linkup-routed-to") is None


def test_websocket_switch_says_it_too(server):
    ws = lk.WsEchoUpstream("127.0.0.2")
    try:
        body = lk.session_body("rt-cow", {"web": ws.url}, [("example.com", "web", None)])
        assert lk.post_json(server.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
        with socket.create_connection(server.addrs["HTTP"], timeout=10) as c:
            c.sendall(b"GET /ws HTTP/1.1\r\nHost: rt-cow.example.com\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\n\r\n")
            status, headers, _ = lk.read_http_head(c)
            assert status.startswith("HTTP/1.1 101"), status
            h = {k.lower(): v for k, v in headers}
            assert h["linkup-routed-to"] == "web; session=rt-cow; via=local-server"
    finally:
        ws.close()
