"""Shared fixtures for the black-box tests: the binary under test, a
private LINKUP_HOME/HOME per test, env variants for HTTP-only servers and CLI
commands, fake upstreams (127.0.0.2) and a fake worker (127.0.0.3),
lk.Front factories, and a black-holed address (a full accept queue). A test
module's own fixture of the same name wins."""
import os
import pathlib
import socket

import pytest

import lk

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def linkup_bin():
    path = os.environ.get("LINKUP_BIN", str(ROOT / "build" / "linkup"))
    assert os.access(path, os.X_OK), f"no linkup binary at {path}"
    return path


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    home = tmp_path / "home"
    home.mkdir()
    e["HOME"] = str(home)
    e["LINKUP_HOME"] = str(home / ".linkup")
    e["LINKUP_NO_UPDATE_CHECK"] = "1"
    # No test reaches a release server unless it sets one up itself.
    e.pop("LINKUP_RELEASE_URL", None)
    e.pop("LINKUP_CONFIG", None)
    e["NO_COLOR"] = "1"
    return e


@pytest.fixture
def http_only(env):
    """Local servers listen on HTTP only: the DESIGN §3 defaults (:443,
    :8053) would collide between tests. A module opts in with
    `pytestmark = pytest.mark.usefixtures("http_only")`."""
    env["LINKUP_HTTPS_ADDR"] = "off"
    env["LINKUP_DNS_ADDR"] = "off"


@pytest.fixture
def cenv(env):
    """A copy of env for CLI commands: the local server expected on a free
    (closed) port, HTTPS and DNS off."""
    env = dict(env)
    env["LINKUP_HTTP_ADDR"] = f"127.0.0.1:{lk.free_port()}"
    env["LINKUP_HTTPS_ADDR"] = "off"
    env["LINKUP_DNS_ADDR"] = "off"
    return env


@pytest.fixture
def upstream():
    """A RecordingUpstream on 127.0.0.2."""
    u = lk.RecordingUpstream("127.0.0.2")
    yield u
    u.close()


@pytest.fixture
def raw_upstream():
    """A RawRecordingUpstream (byte-exact requests) on 127.0.0.2."""
    u = lk.RawRecordingUpstream("127.0.0.2")
    yield u
    u.close()


@pytest.fixture
def fake_worker():
    """A FakeWorker on 127.0.0.3, for `linkup server --worker-url`."""
    w = lk.FakeWorker("127.0.0.3")
    yield w
    w.close()


@pytest.fixture
def front_factory(linkup_bin, env, tmp_path, raw_upstream):
    """make(kind, url=None, env=None, name="fault", **kw): an lk.Front of
    kind "server" or "worker" proxying session `name` to url (default: the
    raw_upstream), with env updated by the given variables; kw go to
    lk.Front. Each one is stopped at teardown and must exit 0."""
    started = []

    def make(kind, url=None, env=None, name="fault", **kw):
        f = lk.Front(kind, linkup_bin, dict(base_env, **(env or {})), tmp_path,
                     url or raw_upstream.url, name=name, **kw)
        started.append(f)
        return f

    base_env = env
    yield make
    for f in started:
        rc = f.stop()
        assert rc == 0, f"{f.kind} exited {rc}: {f.log()[-3000:]}"


@pytest.fixture
def blackhole():
    """A loopback address:port whose accept queue is full, so a connect to
    it hangs (SYNs are dropped) until the connector gives up."""
    bh = socket.socket()
    bh.bind(("127.0.0.2", 0))
    bh.listen(0)
    fill = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(bh.getsockname())
        except BlockingIOError:
            pass
        fill.append(c)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(bh.getsockname())
        pytest.skip("this kernel accepts past a full backlog")
    except socket.timeout:
        pass
    finally:
        probe.close()
    yield "http://%s:%d" % bh.getsockname()
    for c in fill:
        c.close()
    bh.close()
