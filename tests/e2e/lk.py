"""Helpers for black-box tests of the real `linkup` binary: spawn the worker
and the local server on port 0 and read their "... listening on A:P" line,
run fake upstreams, and run CLI commands."""
import http.server
import os
import re
import socket
import subprocess
import threading
import time

LISTEN_RE = re.compile(r"^(HTTP|HTTPS|DNS|Worker) listening on (\S+):(\d+)$")


def run(bin_, *args, env=None, input=None, timeout=60):
    return subprocess.run([bin_, *args], capture_output=True, text=True, env=env,
                          input=input, timeout=timeout)


def has_command(bin_, name, env=None):
    """True when `linkup <name> --help` exits 0 (the command exists)."""
    return run(bin_, name, "--help", env=env, timeout=20).returncode == 0


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Proc:
    """A spawned server with the addresses it printed."""

    def __init__(self, popen, addrs):
        self.popen = popen
        self.addrs = addrs  # {"HTTP": ("127.0.0.1", 1234), ...}

    def url(self, kind):
        host, port = self.addrs[kind]
        return f"http://{host}:{port}"

    def stop(self, timeout=10):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode


def _spawn(argv, env, wanted, timeout=20):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    addrs = {}
    deadline = time.time() + timeout
    while set(wanted) - set(addrs):
        if time.time() > deadline or p.poll() is not None:
            p.kill()
            raise RuntimeError(f"{argv} did not print its listening lines: {p.stderr.read()}")
        line = p.stdout.readline().strip()
        m = LISTEN_RE.match(line)
        if m:
            addrs[m.group(1)] = (m.group(2), int(m.group(3)))
    return Proc(p, addrs)


def spawn_worker(bin_, env, store, token="token123"):
    return _spawn([bin_, "worker", "--listen", "127.0.0.1:0", "--token", token,
                   "--store", store], env, ["Worker"])


def spawn_server(bin_, env, config):
    return _spawn([bin_, "server", "--config", str(config), "--http", "127.0.0.1:0",
                   "--https", "off", "--dns", "off"], env, ["HTTP"])


def fake_upstream(handler_text, host="127.0.0.1"):
    """An HTTP server answering every GET with handler_text (str or callable
    taking the request handler). Returns (server, url); call server.shutdown()."""

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = handler_text(self) if callable(handler_text) else handler_text
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer((host, 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://{host}:{srv.server_address[1]}"
