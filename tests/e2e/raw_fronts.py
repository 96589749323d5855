"""Module-scoped fixtures for suites that send raw bytes through BOTH public
servers: `upstream` (an lk.RawRecordingUpstream on 127.0.0.2) and `fronts`
(get(kind) -> one lk.Front of kind "server" or "worker" proxying to it,
started on first use, stopped at the module's end and required to exit 0).
A test module imports both names: `from raw_fronts import fronts, upstream`."""
import os

import pytest

import lk


@pytest.fixture(scope="module")
def upstream():
    u = lk.RawRecordingUpstream("127.0.0.2")
    yield u
    u.close()


def front_factory(linkup_bin, tmp, upstream_url, **env_vars):
    """Generator for a module fixture: yields get(kind), which starts one
    lk.Front of that kind on first use (env_vars added to its environment);
    afterwards stops them all and requires exit 0."""
    env = dict(os.environ, HOME=str(tmp), LINKUP_HOME=str(tmp / ".linkup"),
               LINKUP_NO_UPDATE_CHECK="1", **env_vars)
    env.pop("LINKUP_CONFIG", None)
    started = {}

    def get(kind):
        if kind not in started:
            started[kind] = lk.Front(kind, linkup_bin, env, tmp, upstream_url)
        return started[kind]

    yield get
    for f in started.values():
        rc = f.stop()
        assert rc == 0, f"{f.kind} exited {rc}: {f.log()[-3000:]}"


@pytest.fixture(scope="module")
def fronts(linkup_bin, tmp_path_factory, upstream):
    yield from front_factory(linkup_bin, tmp_path_factory.mktemp("fronts"), upstream.url)
