"""A body cut short never arrives as a whole one, on every path (the local
server, the worker, the worker through the built-in tunnel):

* a response body the upstream cuts, for every client framing (HTTP/1.0,
  where only the connection's end delimits the body; HTTP/1.1; HTTP/2 with
  prior knowledge). curl is the client and its exit code the verdict: 0 only
  for the body the upstream really finished;
* a request body the client cuts (sized or chunked, FIN or RST; an HTTP/2
  upload whose client dies): the upstream never reads a complete request."""
import json
import os
import socket
import struct
import subprocess
import threading
import time

import pytest

import lk
from test_tunnel import TOKEN, wait_connected

BODY = b"x" * 5000

# name -> (head, whether the upstream resets instead of closing cleanly)
CASES = {
    "until-close-fin": (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", False),
    "until-close-rst": (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", True),
    "sized-rst": (b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", True),
    "chunked-fin": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n", False),
    "chunked-rst": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n", True),
}
WHOLE = {"until-close-fin"}
PATHS = ["server", "worker", "tunnel"]
PROTOS = {"1.0": "--http1.0", "1.1": "--http1.1", "h2c": "--http2-prior-knowledge"}


def replier(case):
    head, reset = CASES[case]

    def handle(conn):
        f = conn.makefile("rb")
        while f.readline() not in (b"\r\n", b"\n", b""):
            pass
        conn.sendall(head + BODY + (b"\r\n" if b"chunked" in head else b""))
        time.sleep(0.1)  # the bytes reach Linkup before the cut
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return handle


class BodyRecorder:
    """An upstream that reads each request's body by its framing and records,
    by request path, whether the body was complete."""

    def __init__(self):
        self.seen = {}
        self.cond = threading.Condition()
        self.up = lk.RawUpstream(self.handle, threaded=True)

    def handle(self, conn):
        f = conn.makefile("rb")
        line = f.readline().split()
        headers = {}
        while (h := f.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = h.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        complete = False
        try:
            if "content-length" in headers:
                want = int(headers["content-length"])
                complete = len(f.read(want)) == want
            elif headers.get("transfer-encoding") == "chunked":
                while (size := f.readline()).endswith(b"\n"):
                    n = int(size.split(b";")[0], 16)
                    if n == 0:
                        complete = f.readline() == b"\r\n"
                        break
                    if len(f.read(n + 2)) < n + 2:
                        break
        except (OSError, ValueError):
            pass
        with self.cond:
            self.seen[line[1].decode()] = complete
            self.cond.notify_all()
        if complete:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def wait(self, path, timeout=10):
        with self.cond:
            assert self.cond.wait_for(lambda: path in self.seen, timeout), \
                "the upstream never saw " + path
            return self.seen[path]


def label(case):
    return case.replace("-", "")


@pytest.fixture(scope="module")
def fronts(linkup_bin, tmp_path_factory):
    """A worker, a local server tunnelled to it, session "tiny" (tunneled,
    through the local server) and "prev" (a preview session the worker
    serves itself), each with one service and domain per case."""
    tmp = tmp_path_factory.mktemp("trunc")
    env = dict(os.environ, HOME=str(tmp), LINKUP_HOME=str(tmp / ".linkup"),
               LINKUP_NO_UPDATE_CHECK="1", NO_COLOR="1")
    env.pop("LINKUP_CONFIG", None)
    ups = {c: lk.RawUpstream(replier(c), threaded=True) for c in CASES}
    rec = BodyRecorder()
    worker = lk.spawn_worker_logged(linkup_bin, env, str(tmp / "worker.log"), token=TOKEN)
    waddr = worker.addrs["Worker"]
    server = lk.spawn_local_server(linkup_bin, env, "--https", "off", "--dns", "off",
                                   "--worker-url", "http://127.0.0.1:%d" % waddr[1],
                                   "--worker-token", TOKEN, log_path=str(tmp / "server.log"))
    saddr = server.addrs["HTTP"]
    services = {label(c): ups[c].url.rstrip("/") for c in CASES}
    domains = [("%s.test" % label(c), label(c), None) for c in CASES]
    services["rec"] = rec.up.url.rstrip("/")
    domains.append(("rec.test", "rec", None))
    try:
        r = lk.post_json(saddr, "/linkup/sessions/tunneled",
                         lk.session_body("tiny", services, domains))
        assert r.status == 200, r.body
        r = lk.request(waddr, "POST", "/linkup/v2/sessions/preview",
                       [("Authorization", "Bearer " + TOKEN),
                        ("Content-Type", "application/json"), ("x-linkup-version", "99.0.0")],
                       json.dumps(lk.session_body("prev", services, domains)))
        assert r.status == 200, r.body
        wait_connected(server)
        yield {"server": (saddr, "tiny"), "worker": (waddr, "prev"), "tunnel": (waddr, "tiny"),
               "rec": rec}
    finally:
        for p in (server, worker):
            p.popen.terminate()
            p.popen.wait(15)
        for u in ups.values():
            u.close()
        rec.up.close()
    # A sanitizer report (or any crash) makes the exit code non-zero.
    assert (server.popen.returncode, worker.popen.returncode) == (0, 0)


@pytest.mark.parametrize("proto", list(PROTOS))
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", list(CASES))
def test_a_cut_body_is_never_whole(fronts, case, path, proto):
    addr, session = fronts[path]
    p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                        "-m", "10", PROTOS[proto], "-H",
                        "Host: %s.%s.test" % (session, label(case)),
                        "http://%s:%d/" % tuple(addr)], capture_output=True, text=True,
                       timeout=20)
    status = p.stdout.split()[0] if p.stdout else ""
    assert status == "200", (p.stdout, p.stderr)
    if case in WHOLE:
        assert (p.returncode, p.stdout) == (0, "200 %d" % len(BODY)), p.stderr
    else:
        # 18: short of the announced size or the last chunk; 56: reset
        # (HTTP/1.0); 92: RST_STREAM. Never 0, and never curl's timeout.
        assert p.returncode in (18, 56, 92), (p.returncode, p.stdout, p.stderr)


@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("framing", ["sized", "chunked"])
@pytest.mark.parametrize("path", PATHS)
def test_a_cut_upload_never_reaches_the_upstream_whole(fronts, path, framing, how):
    addr, session = fronts[path]
    target = "/upload-%s-%s-%s" % (path, framing, how)
    head = "POST %s HTTP/1.1\r\nHost: %s.rec.test\r\n" % (target, session)
    if framing == "sized":
        data = head.encode() + b"Content-Length: 100000\r\n\r\n" + BODY
    else:
        data = head.encode() + b"Transfer-Encoding: chunked\r\n\r\n1388\r\n" + BODY + b"\r\n"
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(data)
        time.sleep(0.2)  # the bytes reach the upstream before the cut
        if how == "rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert fronts["rec"].wait(target) is False


@pytest.mark.parametrize("path", PATHS)
def test_an_http2_upload_whose_client_dies_never_reaches_the_upstream_whole(fronts, path):
    addr, session = fronts[path]
    target = "/h2-upload-%s" % path
    curl = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "-T", "-", "-H",
                             "Host: %s.rec.test" % session, "http://%s:%d%s" % (*addr, target)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        curl.stdin.write(BODY)
        curl.stdin.flush()
        time.sleep(0.3)
    finally:
        curl.kill()
        curl.wait(10)
    assert fronts["rec"].wait(target) is False
