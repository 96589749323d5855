"""`linkup start`, `status` and `health` with the built-in tunnel (issue 7,
DESIGN §8, §2.13): the real `linkup worker` hands out built-in tunnel data
("provider":"linkup"), the local server spawned by `start` opens the tunnel,
and `start` waits until GET /linkup/tunnel on the local server says
connected. A fake worker that refuses the tunnel makes `start` fail with
`Failed to start: <last error>` and the log path."""
import http.server
import json
import pathlib
import threading

import pytest

import lk


def needs_builtin_tunnel(linkup_bin, env, tmp_path):
    """Skips unless `linkup server` exposes GET /linkup/tunnel (docs/server.md)."""
    for name in ("server", "worker"):
        if not lk.has_command(linkup_bin, name, env):
            pytest.skip(f"`linkup {name}` does not exist yet")
    cfg = lk.write_web_config(tmp_path, "http://127.0.0.1:9/", "http://127.0.0.1:9", "http://127.0.0.1:9")
    srv = lk.spawn_local_server(linkup_bin, env, "--config", str(cfg), "--https", "off",
                                "--dns", "off")
    try:
        r = lk.request(srv.addrs["HTTP"], "GET", "/linkup/tunnel")
        try:
            doc = r.json()
        except ValueError:
            doc = None
    finally:
        srv.stop()
    if not isinstance(doc, dict) or "connected" not in doc:
        pytest.skip("the local server has no GET /linkup/tunnel yet (built-in tunnel not landed)")


def worker_get(worker, host, path="/"):
    return lk.request(worker.addrs["Worker"], "GET", path, [("Host", host)], timeout=10)


def test_start_waits_for_builtin_tunnel_and_traffic_flows(linkup_bin, cenv, tmp_path):
    needs_builtin_tunnel(linkup_bin, cenv, tmp_path)
    remote, remote_url = lk.fake_upstream("remote web")
    local, local_url = lk.fake_upstream("local web")
    local_port = local.server_address[1]
    worker = lk.spawn_worker(linkup_bin, cenv, f"sqlite:{tmp_path}/worker.db")
    try:
        # "localhost" locations are re-pointed at the tunnel by the worker.
        cfg = lk.write_web_config(tmp_path, worker.url("Worker"), remote_url,
                           f"http://localhost:{local_port}")
        r = lk.run(linkup_bin, "start", "--config", str(cfg), env=cenv, timeout=90)
        assert r.returncode == 0, r.stderr
        assert "SESSION NAME" in r.stdout
        # SPEC §7 step 8: the tunnel is up, the last line before the table.
        assert r.stderr.splitlines()[-1] == "Started!", r.stderr
        wport = worker.addrs["Worker"][1]
        state = (pathlib.Path(cenv["LINKUP_HOME"]) / "state").read_text()
        name = state.split("session_name: ", 1)[1].split("\n", 1)[0].strip()
        tunnel_url = f"http://linkup-tunnel-{name}.localhost:{wport}/"
        assert f"  tunnel: {tunnel_url}\n" in state

        st = lk.run(linkup_bin, "status", "--json", env=cenv)
        assert st.returncode == 0, st.stderr
        assert json.loads(st.stdout)["tunnel"] == {"url": tunnel_url, "connected": True}
        assert f"\nTunnel: {tunnel_url} (connected)\n" in lk.run(
            linkup_bin, "status", env=cenv).stdout
        h = json.loads(lk.run(linkup_bin, "health", "--json", env=cenv).stdout)
        assert h["tunnel"] == {"url": tunnel_url, "connected": True}
        assert h["cloudflared"] == "Stopped"
        # SPEC §6.5.5: GET {tunnel}/linkup/check, through worker and tunnel.
        assert h["linkup_services"]["tunnel"] == {
            "url": f"{tunnel_url}linkup/check", "status": "Ok"}
        assert f"Tunnel:\n  URL: {tunnel_url}\n  Connected: YES\n" in lk.run(
            linkup_bin, "health", env=cenv).stdout

        # The whole path: worker -> tunnel -> local server.
        r = worker_get(worker, f"linkup-tunnel-{name}.localhost:{wport}", "/linkup/check")
        assert r.status == 200, r.body
        host = f"{name}.example.com"
        assert worker_get(worker, host).text == "remote web"
        r = lk.run(linkup_bin, "route", "local", "web", env=cenv)
        assert r.returncode == 0, r.stderr
        r = worker_get(worker, host)
        assert (r.status, r.text) == (200, "local web")
        r = lk.run(linkup_bin, "route", "remote", "web", env=cenv)
        assert r.returncode == 0 and worker_get(worker, host).text == "remote web"

        r = lk.run(linkup_bin, "stop", env=cenv)
        assert r.returncode == 0 and r.stdout == "Stopped linkup\n"
        h = json.loads(lk.run(linkup_bin, "health", "--json", env=cenv).stdout)
        assert h["tunnel"]["connected"] is False
    finally:
        lk.run(linkup_bin, "stop", env=cenv)
        worker.stop()
        remote.shutdown()
        local.shutdown()


class RefusingWorker:
    """Answers tunneled upserts with built-in tunnel data, then refuses the
    tunnel itself (401), so the tunnel never connects."""

    def __init__(self):
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                name = json.loads(raw or b"{}").get("desired_name") or "tiny-cow"
                self._send(200, json.dumps({"session_name": name, "tunnel_data": {
                    "account_id": "", "name": "linkup-tunnel-" + name,
                    "url": "http://linkup-tunnel-" + name + ".localhost:1", "id": "x" * 36,
                    "secret": "s" * 44, "last_started": 1, "provider": "linkup"}}))

            def do_GET(self):
                self._send(401, "Invalid tunnel secret", close=True)

            def _send(self, status, text, close=False):
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_start_fails_when_tunnel_never_connects(linkup_bin, cenv, tmp_path):
    needs_builtin_tunnel(linkup_bin, cenv, tmp_path)
    worker = RefusingWorker()
    try:
        cfg = lk.write_web_config(tmp_path, worker.url, "http://127.0.0.1:9", "http://127.0.0.1:9")
        cenv["LINKUP_TUNNEL_CONNECT_RETRIES"] = "3"
        cenv["LINKUP_TUNNEL_CONNECT_INTERVAL_MS"] = "300"
        r = lk.run(linkup_bin, "start", "--config", str(cfg), env=cenv, timeout=90)
        assert r.returncode == 1
        assert "Waiting for tunnel... retry #3" in r.stderr
        assert "Started!" not in r.stderr
        log = pathlib.Path(cenv["LINKUP_HOME"]) / "localserver-stderr"
        line = [l for l in r.stderr.splitlines() if l.startswith("Exited with error: ")][-1]
        assert line.startswith("Exited with error: Failed to start: ")
        assert "401" in line, line
        assert line.endswith(f" (logs: {log})")
        h = json.loads(lk.run(linkup_bin, "health", "--json", env=cenv).stdout)
        assert h["tunnel"]["connected"] is False
    finally:
        lk.run(linkup_bin, "stop", env=cenv)
        worker.close()
