"""`linkup start` with the local server on ephemeral ports (DESIGN §3: "port
0 binds an ephemeral port"; the CLI reaches the server at LINKUP_HTTP_ADDR or
at the address `start` recorded). With LINKUP_HTTP_ADDR=127.0.0.1:0, `start`
learns the bound address from the server's "HTTP listening on A:P" line in
localserver-stdout, records it in localserver-http and polls /linkup/check
there; later commands run with the same environment (port still 0) use the
recorded address, while an env value with a real port still wins.

Real binaries only: `linkup worker` on 127.0.0.1:0 (SQLite store in a temp
dir), the local server spawned by `start`, fake upstreams on 127.0.0.1, a
private LINKUP_HOME. Every step is bounded by a timeout."""
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

import lk

STEP = 30  # seconds any one CLI command may take (start: 11 polls of 1 s + upload)
NOT_RUNNING = "Seems like your local Linkup server is not running. Please run 'linkup start' first."


@pytest.fixture
def eenv(env):
    """env with every listener of the local server on an ephemeral port."""
    env = dict(env)
    for var in ("LINKUP_HTTP_ADDR", "LINKUP_HTTPS_ADDR", "LINKUP_DNS_ADDR"):
        env[var] = "127.0.0.1:0"
    return env


@pytest.fixture
def worker(linkup_bin, env, tmp_path):
    w = lk.spawn_worker(linkup_bin, env, f"sqlite:{tmp_path}/worker.db")
    yield w
    w.stop()


@pytest.fixture
def upstreams():
    remote, remote_url = lk.fake_upstream("remote web")
    local, local_url = lk.fake_upstream("local web")
    yield remote_url, local_url
    remote.shutdown()
    local.shutdown()


def home(e):
    return pathlib.Path(e["LINKUP_HOME"])


def get(url, headers=None, timeout=5):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def is_gone(pid):
    """True when pid no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pid, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if is_gone(pid):
            return True
        time.sleep(0.1)
    return is_gone(pid)


def recorded_addr(e, host_re=r"127\.0\.0\.1"):
    """localserver-http: the address the server bound, with a real port,
    the same as its "HTTP listening on" line."""
    text = (home(e) / "localserver-http").read_text().strip()
    m = re.fullmatch(rf"({host_re}):(\d+)", text)
    assert m, f"localserver-http holds {text!r}"
    assert int(m.group(2)) != 0
    out = (home(e) / "localserver-stdout").read_text()
    assert f"HTTP listening on {text}\n" in out, out
    return text


def stop_leftover(linkup_bin, e):
    """Teardown: `linkup stop` with the test's own LINKUP_HOME, then check by
    pid that the server it recorded is gone."""
    pid_file = home(e) / "localserver-pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else 0
    lk.run(linkup_bin, "stop", env=e, timeout=STEP)
    if pid:
        assert wait_gone(pid), f"local server {pid} still runs after `linkup stop`"


def start(linkup_bin, e, cfg):
    """`linkup start --config cfg`: (CompletedProcess, seconds it took)."""
    t0 = time.time()
    r = lk.run(linkup_bin, "start", "--config", str(cfg), env=e, timeout=STEP)
    return r, time.time() - t0


def test_start_on_port_0_then_every_command_finds_the_server(linkup_bin, eenv, tmp_path,
                                                             worker, upstreams):
    remote_url, local_url = upstreams
    cfg = lk.write_web_config(tmp_path, worker.url("Worker"), remote_url, local_url)
    try:
        r, took = start(linkup_bin, eenv, cfg)
        assert r.returncode == 0, r.stderr
        assert "SESSION NAME" in r.stdout and "tunneled" in r.stdout
        assert "Failed to reach the local server" not in r.stderr
        # No 10 fruitless polls of port 0: ready at the first retry or two.
        assert "retry #3" not in r.stderr, r.stderr
        assert took < 10, (took, r.stderr)

        addr = recorded_addr(eenv)
        assert get(f"http://{addr}/linkup/check")[0] == 200
        pid = int((home(eenv) / "localserver-pid").read_text())
        assert not is_gone(pid)

        # status, route, health and sessions list with LINKUP_HTTP_ADDR still :0.
        st = lk.run(linkup_bin, "status", "--json", env=eenv, timeout=STEP)
        assert st.returncode == 0, st.stderr
        doc = json.loads(st.stdout)
        name = doc["session_name"]
        assert name and doc["sessions"][0]["name"] == name
        assert [s["name"] for s in doc["services"]] == ["web"]

        hdrs = {"Host": f"{name}.example.com"}
        assert get(f"http://{addr}/", hdrs) == (200, "remote web")
        r = lk.run(linkup_bin, "route", "local", "web", env=eenv, timeout=STEP)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"\nSession: {name}\n  web  ->  {local_url}/\n"
        assert get(f"http://{addr}/", hdrs) == (200, "local web")

        h = lk.run(linkup_bin, "health", "--json", env=eenv, timeout=STEP)
        assert h.returncode == 0, h.stderr
        running = json.loads(h.stdout)["local_server"]["Running"]
        assert running["pid"] == pid and running["healthy"] is True
        assert name in json.dumps(running["sessions"])
        assert "Health: OK" in lk.run(linkup_bin, "health", env=eenv, timeout=STEP).stdout

        r = lk.run(linkup_bin, "sessions", "list", "--json", env=eenv, timeout=STEP)
        assert r.returncode == 0 and name in r.stdout, r.stderr

        # An env value with a real port still wins over the recorded address.
        other = dict(eenv, LINKUP_HTTP_ADDR=f"127.0.0.1:{lk.free_port()}")
        r = lk.run(linkup_bin, "status", env=other, timeout=STEP)
        assert r.returncode == 0 and NOT_RUNNING in r.stdout, (r.stdout, r.stderr)

        r = lk.run(linkup_bin, "stop", env=eenv, timeout=STEP)
        assert r.returncode == 0 and r.stdout == "Stopped linkup\n", r.stderr
        assert wait_gone(pid), f"local server {pid} still runs after `linkup stop`"
        r = lk.run(linkup_bin, "status", env=eenv, timeout=STEP)
        assert NOT_RUNNING in r.stdout
        h = json.loads(lk.run(linkup_bin, "health", "--json", env=eenv, timeout=STEP).stdout)
        assert h["local_server"] == "Stopped"

        # A second start in the same environment ignores the stale address.
        r, _ = start(linkup_bin, eenv, cfg)
        assert r.returncode == 0, r.stderr
        addr2 = recorded_addr(eenv)
        assert get(f"http://{addr2}/linkup/check")[0] == 200
        again, _ = start(linkup_bin, eenv, cfg)
        assert again.returncode == 0
        assert "Linkup is already running. Run 'linkup stop' first to restart." in again.stdout
    finally:
        stop_leftover(linkup_bin, eenv)


def test_start_on_ipv6_port_0(linkup_bin, eenv, tmp_path, worker):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    eenv["LINKUP_HTTP_ADDR"] = "[::1]:0"
    cfg = lk.write_web_config(tmp_path, worker.url("Worker"), "http://127.0.0.1:9",
                              "http://127.0.0.1:9")
    try:
        r, _ = start(linkup_bin, eenv, cfg)
        assert r.returncode == 0, r.stderr
        addr = recorded_addr(eenv, host_re=r"\[::1\]")
        assert get(f"http://{addr}/linkup/check")[0] == 200
        st = lk.run(linkup_bin, "status", "--json", env=eenv, timeout=STEP)
        assert st.returncode == 0 and json.loads(st.stdout)["session_name"], st.stderr
        r = lk.run(linkup_bin, "route", "local", "web", env=eenv, timeout=STEP)
        assert r.returncode == 0, r.stderr
        pid = int((home(eenv) / "localserver-pid").read_text())
        r = lk.run(linkup_bin, "stop", env=eenv, timeout=STEP)
        assert r.returncode == 0, r.stderr
        assert wait_gone(pid)
    finally:
        stop_leftover(linkup_bin, eenv)


def test_server_exiting_before_it_listens_keeps_the_message(linkup_bin, eenv, tmp_path,
                                                            worker):
    # Port 0 but an address the server cannot use: it exits before it
    # prints "HTTP listening on", and start says so at once.
    eenv["LINKUP_HTTP_ADDR"] = "256.0.0.1:0"
    cfg = lk.write_web_config(tmp_path, worker.url("Worker"), "http://127.0.0.1:9",
                              "http://127.0.0.1:9")
    try:
        r, took = start(linkup_bin, eenv, cfg)
        assert r.returncode == 1
        assert ("Exited with error: Failed to reach the local server: the local server exited "
                "during start-up: ") in r.stderr, r.stderr
        assert f"(logs: {home(eenv) / 'localserver-stderr'})" in r.stderr
        assert took < 10, (took, r.stderr)
        assert not (home(eenv) / "localserver-pid").exists()
        assert not (home(eenv) / "localserver-http").exists()
    finally:
        stop_leftover(linkup_bin, eenv)


def test_stop_forgets_the_recorded_address(linkup_bin, eenv, tmp_path):
    """After `stop` no server of this directory listens at the address
    `start` recorded, and that ephemeral port may go to another Linkup
    directory's server: the next commands must not take it for this one's
    (`status` showing its sessions, `start` saying `Linkup is already
    running`)."""
    cfg = lk.write_web_config(tmp_path)  # worker 127.0.0.1:9: the upload fails, the server stays
    r = lk.run(linkup_bin, "start", "--config", str(cfg), env=eenv, timeout=90)
    assert r.returncode == 1, r.stderr
    addr = (home(eenv) / "localserver-http").read_text().strip()
    host, port = addr.rsplit(":", 1)
    r = lk.run(linkup_bin, "stop", env=eenv, timeout=STEP)
    assert (r.returncode, r.stdout) == (0, "Stopped linkup\n")
    assert not (home(eenv) / "localserver-http").exists()
    other_env = dict(eenv, LINKUP_HOME=str(tmp_path / "other-home"))
    other = lk._spawn([linkup_bin, "server", "--config", str(cfg), "--http", f"{host}:{port}",
                       "--https", "off", "--dns", "off"], other_env, ["HTTP"])
    try:
        r = lk.run(linkup_bin, "status", env=eenv, timeout=STEP)
        assert (r.returncode, r.stdout.strip()) == (0, NOT_RUNNING)
        r = lk.run(linkup_bin, "start", "--config", str(cfg), env=eenv, timeout=90)
        assert "Linkup is already running" not in r.stdout
        lk.run(linkup_bin, "stop", env=eenv, timeout=STEP)
    finally:
        assert other.stop() == 0


def servers_of(e):
    """Pids of the local servers running with this test's LINKUP_HOME."""
    want = f"LINKUP_HOME={e['LINKUP_HOME']}".encode()
    pids = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1] == b"server" and want in environ \
                and not is_gone(int(proc.name)):
            pids.append(int(proc.name))
    return pids


def test_two_starts_at_once_run_one_server(linkup_bin, eenv, tmp_path, worker, upstreams):
    """Two `linkup start` at the same moment with ephemeral ports: the second
    waits for the first (a lock on the Linkup directory) and then finds it
    running, so one server runs and both commands succeed."""
    remote_url, local_url = upstreams
    cfg = lk.write_web_config(tmp_path, worker.url("Worker"), remote_url, local_url)
    procs = []
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([linkup_bin, "start", "--config", str(cfg)], env=eenv,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        outs = [p.communicate(timeout=STEP) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, (out, err)
        assert len(servers_of(eenv)) == 1, outs
        stdout = "".join(out for out, _ in outs)
        assert stdout.count("SESSION NAME") == 1, stdout
        assert "Linkup is already running. Run 'linkup stop' first to restart." in stdout
        addr = recorded_addr(eenv)
        assert get(f"http://{addr}/linkup/check")[0] == 200
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        stop_leftover(linkup_bin, eenv)
        for pid in servers_of(eenv):  # a second server this test made start
            os.kill(pid, signal.SIGTERM)
            wait_gone(pid)
