#!/usr/bin/env python3
"""Soak test (issue 9): mixed load against a real `linkup worker` and a real
`linkup server` (build them with ASan: -DCMAKE_C_COMPILER=clang
-DLK_SANITIZE=ON), for a fixed, bounded duration.

    tests/soak/soak.py --bin build-rel-asan/linkup --seconds 600 [--json out.json]

Load, per front: the local server and the worker, both routing session
`soak` on example.com to the same upstreams on 127.0.0.2, and the worker's
built-in tunnel (soak.lo.example.com: services on localhost, so the worker
sends them through the session's tunnel to the local server, which calls
upstreams on 127.0.0.1):
  * keep-alive GET loops (one persistent connection per thread),
  * 1 MiB uploads whose SHA-256 the upstream echoes back (checked),
  * WebSocket sessions (connect, 20 echoes of 1-64 KiB, close).
Every 10 s it samples both servers' RSS. At the end it stops both with
SIGTERM: each must exit 0 (under ASan a leak makes the exit code non-zero)
and their logs must hold no sanitizer report. It exits 0 only when there
were no proxy-made errors (any status but 200, any reset or short read),
no sanitizer report, and the RSS of each server after warm-up grew by less
than --rss-slack-mib.

Not part of `make test` (it runs for minutes); figures go to
docs/reliability.md.
"""
import argparse
import hashlib
import http.client
import http.server
import json
import os
import pathlib
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
import lk  # noqa: E402

BLOCK = os.urandom(lk.MIB)
DOWNLOAD_MAX = 2 * lk.MIB


class Upstream:
    """HTTP/1.1 upstream: GET -> small body, GET /d/I/N -> download(I, N);
    POST -> "LEN SHA256" of the body."""

    def __init__(self, host="127.0.0.2"):
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Head and body are separate writes: without NODELAY, Nagle and
                # the proxy's delayed ACK add 40 ms to every response.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self):
                if self.path.startswith("/d/"):
                    _, _, i, n = self.path.split("/")
                    self._send(download(int(i), int(n)))
                    return
                self._send(b"soak " + self.path.encode())

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                h = hashlib.sha256()
                left = n
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    n = 0
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        h.update(self.rfile.read(size))
                        n += size
                        self.rfile.readline()
                else:
                    while left > 0:
                        c = self.rfile.read(min(left, 65536))
                        if not c:
                            break
                        h.update(c)
                        left -= len(c)
                self._send(f"{n} {h.hexdigest()}".encode())

            def _send(self, data):
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), H)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.count = {}
        self.errors = {}
        self.lat = {}

    def ok(self, kind, seconds):
        with self.lock:
            self.count[kind] = self.count.get(kind, 0) + 1
            self.lat.setdefault(kind, []).append(seconds)

    def err(self, kind, what):
        with self.lock:
            key = f"{kind}: {what}"[:160]
            self.errors[key] = self.errors.get(key, 0) + 1


def gets(addr, host, stats, stop, tag):
    c = None
    i = 0
    while not stop.is_set():
        try:
            if c is None:
                c = http.client.HTTPConnection(*addr, timeout=30)
            t0 = time.monotonic()
            c.request("GET", f"/g/{i}", headers={"Host": host})
            r = c.getresponse()
            body = r.read()
            if r.status != 200 or body != f"soak /g/{i}".encode():
                stats.err(tag, f"GET {r.status} {body[:80]!r}")
            else:
                stats.ok(tag, time.monotonic() - t0)
            i += 1
        except (OSError, http.client.HTTPException) as e:
            stats.err(tag, f"GET {type(e).__name__} {e}")
            c.close()
            c = None
    if c:
        c.close()


PATTERN = bytes(range(256)) * (DOWNLOAD_MAX // 256 + 2)


def download(i, n):
    """The body of GET /d/I/N: N pattern bytes starting at I mod 256."""
    return PATTERN[i % 256:i % 256 + n]


def downloads(addr, host, stats, stop, tag):
    """Keep-alive GETs of 64 KiB to 2 MiB bodies, checked byte for byte
    (through the tunnel front the long ones are spliced past the local
    server and the worker: docs/performance.md, findings 27 and 31)."""
    c = None
    i = 0
    while not stop.is_set():
        n = 64 * 1024 + (i * 389 * 1024) % (DOWNLOAD_MAX - 64 * 1024)
        try:
            if c is None:
                c = http.client.HTTPConnection(*addr, timeout=60)
            t0 = time.monotonic()
            c.request("GET", f"/d/{i}/{n}", headers={"Host": host})
            r = c.getresponse()
            body = r.read()
            if r.status != 200 or body != download(i, n):
                stats.err(tag, f"GET /d {r.status} {len(body)} of {n} bytes")
            else:
                stats.ok(tag, time.monotonic() - t0)
            i += 1
        except (OSError, http.client.HTTPException) as e:
            stats.err(tag, f"GET /d {type(e).__name__} {e}")
            c.close()
            c = None
    if c:
        c.close()


def uploads(addr, host, stats, stop, tag):
    want = f"{len(BLOCK)} {hashlib.sha256(BLOCK).hexdigest()}".encode()
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection(*addr, timeout=60)
            t0 = time.monotonic()
            c.request("POST", "/upload", body=BLOCK, headers={"Host": host})
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status != 200 or body != want:
                stats.err(tag, f"POST {r.status} {body[:80]!r}")
            else:
                stats.ok(tag, time.monotonic() - t0)
        except (OSError, http.client.HTTPException) as e:
            stats.err(tag, f"POST {type(e).__name__} {e}")


def websockets(addr, host, stats, stop, tag):
    while not stop.is_set():
        try:
            t0 = time.monotonic()
            s = socket.create_connection(addr, timeout=30)
            s.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            line, _, rest = lk.read_http_head(s)
            if not line.startswith("HTTP/1.1 101") or rest:
                stats.err(tag, f"WS handshake {line}")
                s.close()
                continue
            for k in range(20):
                msg = os.urandom(1024 * (1 + (k * 7) % 64))
                s.sendall(lk.ws_frame(2, msg))
                if lk.ws_read_frame(s) != (2, msg):
                    raise EOFError("echo mismatch")
            s.sendall(lk.ws_frame(8, b"\x03\xe8"))
            lk.ws_read_frame(s)
            s.close()
            stats.ok(tag, time.monotonic() - t0)
        except (OSError, EOFError, ValueError) as e:
            stats.err(tag, f"WS {type(e).__name__} {e}")


def wait_tunnel(addr, timeout=15.0):
    """Until the local server's GET /linkup/tunnel says connected."""
    deadline = time.monotonic() + timeout
    while True:
        r = lk.request(addr, "GET", "/linkup/tunnel")
        if r.status == 200 and r.json().get("connected"):
            return
        if time.monotonic() > deadline:
            sys.exit(f"tunnel not connected after {timeout} s: {r.status} {r.body!r}")
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build-rel-asan/linkup")
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--get-threads", type=int, default=4)
    ap.add_argument("--upload-threads", type=int, default=1)
    ap.add_argument("--download-threads", type=int, default=1)
    ap.add_argument("--ws-threads", type=int, default=1)
    ap.add_argument("--rss-slack-mib", type=int, default=32)
    ap.add_argument("--json")
    a = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="linkup-soak-"))
    env = dict(os.environ, HOME=str(tmp), LINKUP_HOME=str(tmp / ".linkup"),
               LINKUP_NO_UPDATE_CHECK="1", LINKUP_LOG="warn", LINKUP_HTTPS_ADDR="off",
               LINKUP_DNS_ADDR="off",
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    env.pop("LINKUP_CONFIG", None)
    up, ws = Upstream(), lk.WsEchoUpstream("127.0.0.2")
    lup, lws = Upstream("127.0.0.1"), lk.WsEchoUpstream("127.0.0.1")
    # One HTTP upstream for GET/POST, the WebSocket one under the same session
    # through a route: /ws goes to service "ws". The same again on localhost
    # for the tunnel front.
    worker = lk.spawn_worker_logged(a.bin, env, str(tmp / "worker.log"),
                                    store=f"sqlite:{tmp}/worker.db", token="soaktoken")
    wurl = "http://%s:%d/" % worker.addrs["Worker"]
    server = lk.spawn_local_server(a.bin, env, "--worker-url", wurl, "--worker-token",
                                   "soaktoken", log_path=str(tmp / "server.log"))
    local = "http://localhost:%d"
    body = lk.session_body("soak", {"web": up.url, "ws": ws.url,
                                    "lweb": local % lup.server.server_address[1],
                                    "lws": local % lws.addr[1]},
                           [("example.com", "web", [("^/ws", "ws")]),
                            ("lo.example.com", "lweb", [("^/ws", "lws")])], "soaksession")
    r = lk.post_json(server.addrs["HTTP"], "/linkup/sessions/tunneled", body)
    if r.status != 200:
        sys.exit(f"session setup failed: {r.status} {r.body!r}")
    name = r.json()["session_name"]
    wait_tunnel(server.addrs["HTTP"])
    host = f"{name}.example.com"
    fronts = {"server": (server.addrs["HTTP"], host),
              "worker": (worker.addrs["Worker"], host),
              "tunnel": (worker.addrs["Worker"], f"{name}.lo.example.com")}
    procs = {"server": server.popen.pid, "worker": worker.popen.pid}
    stats, stop = Stats(), threading.Event()
    threads = []
    for tag, (addr, host) in fronts.items():
        for fn, n in ((gets, a.get_threads), (uploads, a.upload_threads),
                      (downloads, a.download_threads),
                      (websockets, a.ws_threads)):
            for _ in range(n):
                t = threading.Thread(target=fn, args=(addr, host, stats, stop,
                                                      f"{tag}/{fn.__name__}"), daemon=True)
                t.start()
                threads.append(t)
    rss = {tag: [] for tag in procs}
    t0 = time.monotonic()
    while time.monotonic() - t0 < a.seconds:
        time.sleep(min(10, max(0.1, a.seconds - (time.monotonic() - t0))))
        for tag, pid in procs.items():
            rss[tag].append((round(time.monotonic() - t0), lk.rss_kib(pid)))
        done = sum(stats.count.values())
        print(f"[{round(time.monotonic() - t0)} s] ok={done} errors={sum(stats.errors.values())} "
              f"rss={ {k: v[-1][1] for k, v in rss.items()} }", flush=True)
    stop.set()
    for t in threads:
        t.join(90)
    codes = {"server": lk.stop_gracefully(server, 30)[0], "worker": worker.stop(30)}
    for u in (up, ws, lup, lws):
        u.close()
    reports = {}
    for tag, log in (("server", tmp / "server.log"), ("worker", tmp / "worker.log")):
        text = log.read_text(errors="replace")
        reports[tag] = [ln for ln in text.splitlines()
                        if "Sanitizer" in ln or "runtime error" in ln][:20]
    growth = {}
    for tag, samples in rss.items():
        warm = [v for s, v in samples if s >= min(60, a.seconds // 3)] or [samples[-1][1]]
        growth[tag] = round((max(warm) - warm[0]) / 1024, 1)
    summary = {
        "seconds": a.seconds, "binary": a.bin,
        "ok": stats.count, "errors": stats.errors,
        "latency_ms_p50_p99": {k: [round(statistics.median(v) * 1000, 1),
                                   round(sorted(v)[int(len(v) * 0.99) - 1] * 1000, 1)]
                               for k, v in stats.lat.items() if v},
        "rss_kib": rss, "rss_growth_after_warmup_mib": growth,
        "exit_codes": codes, "sanitizer_reports": reports, "logs": str(tmp),
    }
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rss_kib"}, indent=1))
    bad = (stats.errors or any(codes.values()) or any(reports.values()) or
           any(g > a.rss_slack_mib for g in growth.values()))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
