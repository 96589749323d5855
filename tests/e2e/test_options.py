"""Options and environment of `linkup server` and `linkup worker` (DESIGN §3,
docs/server.md, docs/worker.md): malformed values are usage errors (exit 2,
one line naming the option), flags win over the environment."""
import pytest

import lk

BAD_ADDRS = [":80", "[::1]", "localhost:x", "0.0.0.0:70000", "", "127.0.0.1:-1", "off"]


@pytest.mark.parametrize("value", BAD_ADDRS)
@pytest.mark.parametrize("how", ["flag", "env"])
def test_worker_malformed_listen_is_a_usage_error(linkup_bin, env, value, how):
    """DESIGN §3 `--listen A:P`: a value that is no address is a usage error
    naming the option (exit 2), as `linkup server --http` does; a worker has
    one listener, so `off` is no value for it."""
    args = ["worker", "--token", "t", "--store", "memory"]
    if how == "flag":
        args += ["--listen", value]
    elif value == "":
        pytest.skip("an empty LINKUP_WORKER_LISTEN counts as unset")
    else:
        env = dict(env, LINKUP_WORKER_LISTEN=value)
    r = lk.run(linkup_bin, *args, env=env, timeout=20)
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert (f"linkup: worker: invalid value '{value}' for '--listen <A:P>': expected ADDR:PORT"
            in r.stderr.splitlines()), r.stderr


@pytest.mark.parametrize("value", BAD_ADDRS[:-1])
@pytest.mark.parametrize("flag", ["--http", "--https", "--dns", "--dns-upstream"])
def test_server_malformed_address_is_a_usage_error(linkup_bin, env, flag, value):
    r = lk.run(linkup_bin, "server", flag, value, "--worker-url", "http://127.0.0.1:9",
               "--worker-token", "t", env=env, timeout=20)
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert (f"linkup: server: invalid value '{value}' for '{flag} <A:P|off>': expected "
            "ADDR:PORT or off" in r.stderr.splitlines()), r.stderr


def test_worker_listen_that_cannot_bind_is_exit_1(linkup_bin, env):
    with lk.occupied_port() as addr:
        r = lk.run(linkup_bin, "worker", "--token", "t", "--store", "memory", "--listen", addr,
                   env=env, timeout=20)
    assert r.returncode == 1, r
    assert f"Exited with error: cannot listen on {addr}" in r.stderr, r.stderr
