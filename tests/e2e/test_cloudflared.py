"""`linkup start` with Cloudflare tunnel data (SPEC §7, §6.5.1 step 7,
DESIGN §2.12, issue 7): a fake worker answers the tunneled upsert with
Cloudflare credentials (non-empty account_id, no "provider":"linkup"), and a
stand-in `cloudflared` placed first on PATH records its arguments,
environment and stdin, then writes the pid file it was given (or not)."""
import http.server
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

import lk

TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
SECRET = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="
ACCOUNT = "acc0123456789"

STAND_IN = """#!{python}
import json, os, signal, sys, time
def stopped(sig, frame):  # which signal `linkup stop` sends (SPEC §6.4: SIGINT)
    with open(os.environ["CF_RECORD"] + ".signals", "a") as f:
        f.write("%d\\n" % sig)
    sys.exit(0)
signal.signal(signal.SIGINT, stopped)
signal.signal(signal.SIGTERM, stopped)
mode = os.environ.get("CF_MODE", "ok")
args = sys.argv[1:]
with open(os.environ["CF_RECORD"], "a") as f:
    f.write(json.dumps({{"args": args, "pid": os.getpid(), "pgid": os.getpgid(0),
                        "service_id": os.environ.get("LINKUP_SERVICE_ID"),
                        "stdin": os.readlink("/proc/self/fd/0")}}) + "\\n")
print("stand-in cloudflared says hello", flush=True)
print("stand-in cloudflared mode " + mode, file=sys.stderr, flush=True)
if mode == "exit":
    sys.exit(1)
if mode in ("ok", "exec"):
    with open(args[args.index("--pidfile") + 1], "w") as f:
        f.write("%d\\n" % os.getpid())
if mode == "exec":  # a wrapper that execs: the arguments are gone, the environment stays
    os.execv("/bin/sleep", ["sleep", "120"])
time.sleep(120)
"""


class CloudflareWorker:
    """Answers the tunneled upsert like an original Cloudflare worker."""

    def __init__(self, tunnel_url, tunnel_id=TUNNEL_ID, extra_data=None):
        self.calls = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                doc = json.loads(raw or b"{}")
                outer.calls.append(self.path)
                name = doc.get("desired_name") or "tiny-cow"
                out = {"session_name": name, "tunnel_data": {
                    "account_id": ACCOUNT, "name": "linkup-tunnel-example-com-" + name,
                    "url": tunnel_url, "id": tunnel_id, "secret": SECRET,
                    "last_started": 1700000000000, **(extra_data or {})}}
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
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


def alive(pid):
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_gone(pid, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def stand_ins_running(ctx):
    """Pids of live stand-ins of this test (their environment: this test's
    CF_RECORD and the tunnel's service id; the local server has only the
    first), whether or not they got to record their call."""
    want = {f"CF_RECORD={ctx.record}".encode(), b"LINKUP_SERVICE_ID=cloudflare-tunnel"}
    out = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            environ = set((d / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if want <= environ and alive(int(d.name)):
            out.append(int(d.name))
    return out


@pytest.fixture
def setup(linkup_bin, env, tmp_path):
    """Returns start(tunnel_url, mode="ok", **extra_env) -> (CompletedProcess, ctx)."""
    if not lk.has_command(linkup_bin, "server", env):
        pytest.skip("`linkup server` does not exist yet")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stand_in = bindir / "cloudflared"
    stand_in.write_text(STAND_IN.format(python=sys.executable))
    stand_in.chmod(0o755)
    record = tmp_path / "cloudflared-calls.jsonl"
    env = dict(env)
    env.update({
        "LINKUP_HTTP_ADDR": f"127.0.0.1:{lk.free_port()}",
        "LINKUP_HTTPS_ADDR": "off",
        "LINKUP_DNS_ADDR": "off",
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "CF_RECORD": str(record),
        "LINKUP_TUNNEL_DNS_INTERVAL_MS": "100",
        "LINKUP_TUNNEL_PID_INTERVAL_MS": "200",
    })
    workers = []

    class Ctx:
        pass

    ctx = Ctx()
    ctx.env = env
    ctx.home = pathlib.Path(env["LINKUP_HOME"])
    ctx.user_home = pathlib.Path(env["HOME"])
    ctx.record = record
    ctx.calls = lambda: [json.loads(l) for l in record.read_text().splitlines()] \
        if record.exists() else []

    def start(tunnel_url, mode="ok", tunnel_id=TUNNEL_ID, extra_data=None, **extra):
        w = CloudflareWorker(tunnel_url, tunnel_id, extra_data)
        workers.append(w)
        ctx.cfg = lk.write_web_config(tmp_path, w.url)
        env["CF_MODE"] = mode
        env.update(extra)
        return lk.run(linkup_bin, "start", "--config", str(ctx.cfg), env=env, timeout=90), ctx

    ctx.run = lambda *args: lk.run(linkup_bin, *args, env=env, timeout=60)
    yield start
    lk.run(linkup_bin, "stop", env=env)
    for c in ctx.calls():  # never leave a stand-in behind
        if alive(c["pid"]):
            os.kill(c["pid"], signal.SIGKILL)
    for w in workers:
        w.close()


def test_start_runs_cloudflared_with_files_and_stop_stops_it(setup):
    r, ctx = setup("https://localhost")
    assert r.returncode == 0, r.stderr
    assert "Started!" in r.stderr
    assert "SESSION NAME" in r.stdout and "tiny-cow" in r.stdout
    [call] = ctx.calls()
    pid_file = ctx.home / "cloudflared-pid"
    assert call["args"] == ["tunnel", "--pidfile", str(pid_file), "run"]
    assert call["service_id"] == "cloudflare-tunnel"
    assert call["stdin"] == "/dev/null"
    assert call["pgid"] == call["pid"], "cloudflared must lead its own process group"
    assert pid_file.read_text().strip() == str(call["pid"]) and alive(call["pid"])
    assert stand_ins_running(ctx) == [call["pid"]]
    cf = ctx.user_home / ".cloudflared"
    cred = cf / f"{TUNNEL_ID}.json"
    assert cred.read_text() == (f'{{"AccountTag":"{ACCOUNT}","TunnelID":"{TUNNEL_ID}",'
                                f'"TunnelSecret":"{SECRET}"}}')
    assert (cred.stat().st_mode & 0o077) == 0, "credentials must not be world-readable"
    assert (cf / "config.yml").read_text() == (
        f"url: http://{ctx.env['LINKUP_HTTP_ADDR']}\n"
        f"tunnel: {TUNNEL_ID}\n"
        f"credentials-file: {cred}\n")
    assert (ctx.home / "cloudflared-stdout").read_text() == "stand-in cloudflared says hello\n"
    assert "mode ok" in (ctx.home / "cloudflared-stderr").read_text()
    assert "  tunnel: https://localhost/\n" in (ctx.home / "state").read_text()

    h = json.loads(ctx.run("health", "--json").stdout)
    assert h["cloudflared"] == {"Running": {"pid": call["pid"]}}
    assert h["tunnel"] == {"url": "https://localhost/", "connected": True}
    assert all(o["pid"] != call["pid"] for o in h["orphans"])
    text = ctx.run("health").stdout
    assert f"Cloudflared:\n  PID: {call['pid']}\n" in text
    assert "Tunnel:\n  URL: https://localhost/\n  Connected: YES\n" in text
    st = ctx.run("status", "--json")
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["tunnel"] == {"url": "https://localhost/", "connected": True}
    assert "\nTunnel: https://localhost/ (connected)\n" in ctx.run("status").stdout

    r = ctx.run("stop")
    assert r.returncode == 0 and r.stdout == "Stopped linkup\n"
    assert wait_gone(call["pid"]), "stop must stop cloudflared"
    signals = pathlib.Path(str(ctx.record) + ".signals").read_text()
    assert signals == "%d\n" % signal.SIGINT, "SPEC §6.4: stop sends SIGINT"
    assert not pid_file.exists()
    h = json.loads(ctx.run("health", "--json").stdout)
    assert h["cloudflared"] == "Stopped"


def test_stop_stops_a_cloudflared_that_replaced_its_arguments(setup):
    """DESIGN §2.12: the pid file and LINKUP_SERVICE_ID identify cloudflared; one
    that exec'd another program (no --pidfile left in its arguments) is still this
    Linkup directory's, by the LINKUP_HOME of its environment."""
    r, ctx = setup("https://localhost", mode="exec")
    assert r.returncode == 0, r.stderr
    [call] = ctx.calls()
    pid = call["pid"]
    deadline = time.monotonic() + 5
    while b"--pidfile" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the stand-in did not exec"
        time.sleep(0.05)
    assert json.loads(ctx.run("health", "--json").stdout)["cloudflared"] == {"Running": {"pid": pid}}
    r = ctx.run("stop")
    assert r.returncode == 0 and r.stdout == "Stopped linkup\n"
    assert wait_gone(pid), "stop must stop cloudflared"


def test_running_cloudflared_is_reused(setup):
    r, ctx = setup("https://localhost")
    assert r.returncode == 0, r.stderr
    [first] = ctx.calls()
    # Only the local server goes away; cloudflared keeps running.
    server_pid = int((ctx.home / "localserver-pid").read_text())
    os.kill(server_pid, signal.SIGTERM)
    assert wait_gone(server_pid, 10)
    r = ctx.run("start", "--config", str(ctx.cfg))
    assert r.returncode == 0, r.stderr
    assert "Already running. Skipping starting tunnel." in r.stderr
    assert len(ctx.calls()) == 1 and alive(first["pid"])


def test_localhost_tunnel_host_counts_as_propagated(setup):
    """SPEC §7 step 7 resolves the tunnel host with a resolver that follows
    RFC 6761 §6.3: names under `localhost` are the loopback address, never
    asked of a DNS server, so a tunnel URL such as
    https://linkup-tunnel-tiny-cow.localhost is propagated at the first
    check, whatever /etc/hosts or the system resolver say about it."""
    for url in ("https://linkup-tunnel-tiny-cow.localhost",
                "https://Linkup-Tunnel-Tiny-Cow.LOCALHOST."):
        r, ctx = setup(url, LINKUP_TUNNEL_DNS_RETRIES="1")
        assert r.returncode == 0, r.stderr
        assert "Waiting for tunnel DNS to propagate" not in r.stderr
        assert "Started!" in r.stderr
        if not url.endswith("."):
            assert f"  tunnel: {url}/\n" in (ctx.home / "state").read_text()
        assert ctx.run("stop").returncode == 0
        for c in ctx.calls():
            assert wait_gone(c["pid"])


def test_credentials_with_an_account_go_to_cloudflared_whatever_their_provider(setup):
    """DESIGN §8: built-in tunnel data carry "provider":"linkup" *and* an
    empty account_id; Cloudflare credentials (a non-empty account_id) go to
    cloudflared. The local server opens no tunnel for such data, so `start`
    must not wait for one."""
    r, ctx = setup("https://localhost", extra_data={"provider": "linkup"})
    assert r.returncode == 0, r.stderr
    assert "Started!" in r.stderr
    [call] = ctx.calls()
    assert call["args"][:2] == ["tunnel", "--pidfile"]


def test_dns_not_propagated(setup):
    # Few lookups: on a machine without a reachable resolver each one may
    # take the resolver's timeout.
    r, ctx = setup("https://linkup-tunnel-x.invalid", LINKUP_TUNNEL_DNS_RETRIES="1")
    assert r.returncode == 1
    # Exactly the one DNS retry asked for. Only the DNS lines are counted: the
    # pid-file wait before them logs "Waiting for tunnel... retry #N" as often
    # as the stand-in (a Python start-up: 0.2-0.6 s on a loaded machine) needs.
    dns_waits = [ln for ln in r.stderr.splitlines()
                 if ln.startswith("Waiting for tunnel DNS to propagate... retry #")]
    assert dns_waits == ["Waiting for tunnel DNS to propagate... retry #1"], r.stderr
    assert "Failed to propagate tunnel DNS" in r.stderr
    assert "Exited with error: Failed to verify that DNS got propagated" in r.stderr
    assert "Started!" not in r.stderr
    [call] = ctx.calls()
    assert alive(call["pid"]), "as in the original, cloudflared keeps running"
    ctx.run("stop")
    assert wait_gone(call["pid"])


def test_stand_in_exits_without_pid_file(setup):
    r, ctx = setup("https://localhost", mode="exit")
    assert r.returncode == 1
    log = ctx.home / "cloudflared-stderr"
    assert r.stderr.rstrip("\n").endswith("Exited with error: Failed to find pidfile")
    assert ("Failed to start tunnel\n"
            f"Failed to start: cloudflared wrote no pid file (cloudflared logs: {log})\n"
            "Exited with error: Failed to find pidfile\n") in r.stderr
    assert "mode exit" in log.read_text()
    assert not (ctx.home / "cloudflared-pid").exists()


def test_stand_in_never_writes_pid_file(setup):
    r, ctx = setup("https://localhost", mode="hang", LINKUP_TUNNEL_PID_RETRIES="2")
    assert r.returncode == 1
    assert "Waiting for tunnel... retry #1" in r.stderr
    assert "Waiting for tunnel... retry #2" in r.stderr
    assert "Exited with error: Failed to find pidfile\n" in r.stderr
    # The CLI gives up after ~0.4 s here; on a loaded machine the stand-in may
    # be stopped before it got to record its call, so look for it in /proc too.
    for call in ctx.calls():
        assert wait_gone(call["pid"]), "a cloudflared that never wrote its pid file is stopped"
    assert stand_ins_running(ctx) == [], "a cloudflared that never wrote its pid file is stopped"


def test_cloudflared_not_on_path(setup):
    r, ctx = setup("https://localhost", PATH="/nonexistent-linkup-bin")
    assert r.returncode == 1
    assert ("Failed to start: cloudflared was not found on PATH\n"
            "Exited with error: No such file or directory (os error 2)\n") in r.stderr
    assert ctx.calls() == []


def test_unsafe_tunnel_id_is_refused(setup):
    r, ctx = setup("https://localhost", tunnel_id="../../evil")
    assert r.returncode == 1
    assert "Exited with error: Failed while handing file: invalid tunnel id" in r.stderr
    assert not (ctx.user_home / "evil.json").exists()
    assert ctx.calls() == []


def test_stale_cloudflared_pid_file_never_signals_a_stranger(linkup_bin, env):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        env = dict(env, LINKUP_HTTP_ADDR=f"127.0.0.1:{lk.free_port()}")
        home = pathlib.Path(env["LINKUP_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "cloudflared-pid").write_text(f"{sleeper.pid}\n")
        h = json.loads(lk.run(linkup_bin, "health", "--json", env=env).stdout)
        assert h["cloudflared"] == "Stopped"
        assert h["tunnel"]["connected"] is False
        assert lk.run(linkup_bin, "stop", env=env).returncode == 0
        time.sleep(0.3)
        assert sleeper.poll() is None, "stop signalled an unrelated process"
        assert not (home / "cloudflared-pid").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
