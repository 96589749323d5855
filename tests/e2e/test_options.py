"""Options and environment of `linkup server` and `linkup worker` (DESIGN §3,
docs/server.md, docs/worker.md): malformed values are usage errors (exit 2,
one line naming the option), flags win over the environment."""
import re
import subprocess

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
    assert (f"Exited with error: cannot listen on {addr}: Address already in use"
            in r.stderr.splitlines()), r.stderr


SERVER_HELP = [  # option, env, default (docs/server.md "Options", DESIGN §3)
    ("--http <A:P|off>", "LINKUP_HTTP_ADDR", "0.0.0.0:80"),
    ("--https <A:P|off>", "LINKUP_HTTPS_ADDR", "0.0.0.0:443"),
    ("--dns <A:P|off>", "LINKUP_DNS_ADDR", "127.0.0.1:8053"),
    ("--dns-upstream <A:P|off>", "LINKUP_DNS_UPSTREAM", "first nameserver of /etc/resolv.conf"),
    ("--certs-dir <DIR>", None, "$LINKUP_HOME/certs"),
    ("--config <CONFIG>", "LINKUP_CONFIG", None),
]
WORKER_HELP = [  # docs/worker.md "Options"
    ("--listen <A:P>", "LINKUP_WORKER_LISTEN", "127.0.0.1:8787"),
    ("--token <T>", "LINKUP_WORKER_TOKEN", None),
    ("--store <STORE>", "LINKUP_WORKER_STORE", "sqlite:$LINKUP_HOME/worker.db"),
    ("--tunnel-domain <D>", "LINKUP_WORKER_TUNNEL_DOMAIN", "localhost"),
    ("--tunnel-prefix <P>", None, "linkup-tunnel-"),
    ("--tunnel-scheme <S>", "LINKUP_WORKER_TUNNEL_SCHEME", "http"),
    ("--tunnel-port <PORT>", "LINKUP_WORKER_TUNNEL_PORT", "the listening port"),
    ("--peer-url <U>", "LINKUP_WORKER_PEER_URL", "http:// and the listening address"),
    ("--peer-secret <S>", "LINKUP_WORKER_PEER_SECRET", "derived from the token"),
    ("--session-auth <SECRET>", "LINKUP_WORKER_SESSION_AUTH", "off"),
    ("--session-auth-scope <S>", "LINKUP_WORKER_SESSION_AUTH_SCOPE", "all"),
]


@pytest.mark.parametrize("cmd,rows", [("server", SERVER_HELP), ("worker", WORKER_HELP)])
def test_help_lists_every_option_with_its_env_and_default(linkup_bin, env, cmd, rows):
    r = lk.run(linkup_bin, cmd, "--help", env=env, timeout=20)
    assert r.returncode == 0 and r.stderr == "", r
    # An option's text runs until the next option line.
    blocks, last = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r"^\s+(?:-\w, )?(--[a-z-]+(?: <[^>]+>)?)", line)
        if m:
            last = m.group(1)
            blocks[last] = line
        elif last is not None and line.strip():
            blocks[last] += " " + line.strip()
    for opt, env_name, default in rows:
        text = blocks.get(opt)
        assert text is not None, (opt, r.stdout)
        if env_name:
            assert f"[env: {env_name}]" in text, text
        if default:
            assert f"[default: {default}]" in " ".join(text.split()), text


@pytest.mark.parametrize("flag,value", [
    ("--tunnel-domain", ""), ("--tunnel-domain", "exa mple"), ("--tunnel-domain", "a..b"),
    ("--tunnel-domain", ".localhost"), ("--tunnel-domain", "localhost:8787"),
    ("--tunnel-prefix", ""), ("--tunnel-prefix", "a b"), ("--tunnel-prefix", "t/"),
    ("--tunnel-prefix", ".t-"),
])
def test_worker_tunnel_names_that_make_no_hostname_are_usage_errors(linkup_bin, env, flag, value):
    """Tunnel hostnames are {prefix}{session}.{domain} (DESIGN §3): a domain
    or prefix that cannot make one is refused at start (exit 2, the option
    named) rather than handed out in tunnel URLs."""
    r = lk.run(linkup_bin, "worker", "--token", "t", "--store", "memory", "--listen",
               "127.0.0.1:0", f"{flag}={value}", env=env, timeout=20)
    assert r.returncode == 2, r
    assert r.stderr.startswith(f"linkup: worker: invalid value '{value}' for '{flag}': "), r.stderr


def test_worker_tunnel_domain_from_the_environment_is_checked_too(linkup_bin, env):
    r = lk.run(linkup_bin, "worker", "--token", "t", "--store", "memory", "--listen",
               "127.0.0.1:0", env=dict(env, LINKUP_WORKER_TUNNEL_DOMAIN="a b"), timeout=20)
    assert r.returncode == 2, r
    assert "invalid value 'a b' for '--tunnel-domain'" in r.stderr, r.stderr


@pytest.mark.parametrize("value", ["notaurl", "http://", "ftp://w1:8787", "http://w1:99999",
                                   "http://a b"])
@pytest.mark.parametrize("how", ["flag", "env"])
def test_worker_peer_url_that_is_no_http_url_is_a_usage_error(linkup_bin, env, value, how):
    """--peer-url is recorded as the holder of this worker's tunnels and
    dialled by the other workers (docs/worker.md): one that is no http(s)
    URL is refused at start, not found out on the first forwarded request."""
    args = ["worker", "--token", "t", "--store", "memory", "--listen", "127.0.0.1:0",
            "--peer-secret", "s"]
    if how == "flag":
        args.append(f"--peer-url={value}")
    else:
        env = dict(env, LINKUP_WORKER_PEER_URL=value)
    r = lk.run(linkup_bin, *args, env=env, timeout=20)
    assert r.returncode == 2, r
    assert (f"linkup: worker: invalid value '{value}' for '--peer-url': expected "
            "http(s)://HOST[:PORT][/PATH]" in r.stderr.splitlines()), r.stderr


def test_flags_win_over_malformed_environment(linkup_bin, env, tmp_path):
    """Flags win over the environment (docs/server.md, docs/worker.md): a
    malformed variable that a flag replaces is never read."""
    e = dict(env, LINKUP_HTTP_ADDR=":80", LINKUP_HTTPS_ADDR="x", LINKUP_DNS_ADDR="[::1]",
             LINKUP_DNS_UPSTREAM="localhost:x", LINKUP_WORKER_LISTEN=":1",
             LINKUP_WORKER_TUNNEL_DOMAIN="a b", LINKUP_WORKER_TUNNEL_PORT="0",
             LINKUP_WORKER_PEER_URL="nope", LINKUP_WORKER_STORE="nope")
    s = lk.spawn_local_server(linkup_bin, e, "--https", "off", "--dns", "off", "--dns-upstream",
                              "off", "--worker-url", "http://127.0.0.1:9", "--worker-token", "t",
                              log_path=str(tmp_path / "server.log"))
    try:
        assert s.addrs["HTTP"][0] == "127.0.0.1"
    finally:
        assert lk.stop_gracefully(s)[0] == 0
    w = lk.spawn_worker_logged(linkup_bin, e, str(tmp_path / "worker.log"),
                               extra=("--tunnel-domain", "localhost", "--tunnel-port", "8787",
                                      "--peer-url", "http://127.0.0.1:9"))
    try:
        assert w.addrs["Worker"][0] == "127.0.0.1"
    finally:
        assert lk.stop_gracefully(w)[0] == 0


def test_environment_is_used_without_flags(linkup_bin, env, tmp_path):
    e = dict(env, LINKUP_HTTP_ADDR="127.0.0.4:0", LINKUP_HTTPS_ADDR="off", LINKUP_DNS_ADDR="off",
             LINKUP_WORKER_LISTEN="127.0.0.5:0", LINKUP_WORKER_STORE="memory",
             LINKUP_WORKER_TOKEN="tok")
    p = lk._spawn([linkup_bin, "server", "--worker-url", "http://127.0.0.1:9", "--worker-token",
                   "t"], e, ["HTTP"])
    try:
        assert p.addrs["HTTP"][0] == "127.0.0.4" and "HTTPS" not in p.addrs
    finally:
        assert p.stop() == 0
    p = lk._spawn([linkup_bin, "worker"], e, ["Worker"])
    try:
        assert p.addrs["Worker"][0] == "127.0.0.5"
    finally:
        assert p.stop() == 0


@pytest.mark.parametrize("kind", ["server", "worker"])
def test_sigterm_right_after_the_listening_line_exits_0(linkup_bin, env, tmp_path, kind):
    """The listening line means ready (DESIGN §3), signals included: a
    SIGTERM sent the moment it is read drains and exits 0
    (docs/server.md, docs/worker.md), never the default action's death."""
    if kind == "worker":
        argv = [linkup_bin, "worker", "--listen", "127.0.0.1:0", "--token", "t", "--store",
                "sqlite:" + str(tmp_path / "w.db")]
    else:
        argv = [linkup_bin, "server", "--http", "127.0.0.1:0", "--https", "off", "--dns", "off",
                "--worker-url", "http://127.0.0.1:9", "--worker-token", "t"]
    codes = []
    for _ in range(20):
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=env)
        try:
            assert lk.LISTEN_RE.match(p.stdout.readline().strip())
            p.terminate()
            codes.append(p.wait(15))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    assert codes == [0] * 20, codes


@pytest.mark.parametrize("how", ["env", "flag"])
def test_server_empty_config_path_does_not_resolve(linkup_bin, env, how):
    """SPEC §1.1, as for the CLI's commands (`config check`): only an unset
    LINKUP_CONFIG is "not set"; an empty path is one that does not resolve."""
    args = ["server", "--http", "127.0.0.1:0", "--https", "off", "--dns", "off"]
    if how == "env":
        env = dict(env, LINKUP_CONFIG="")
    else:
        args.append("--config=")
    r = lk.run(linkup_bin, *args, env=env, timeout=20)
    assert r.returncode == 1, r
    assert r.stderr == 'Exited with error: Unable to resolve absolute path for ""\n', r.stderr


@pytest.mark.parametrize("value", ["notaurl", "", "ftp://127.0.0.1:1", "http://"])
def test_server_worker_url_flag_that_is_no_http_url_is_a_usage_error(linkup_bin, env, value):
    r = lk.run(linkup_bin, "server", "--http", "127.0.0.1:0", "--https", "off", "--dns", "off",
               f"--worker-url={value}", "--worker-token", "t", env=env, timeout=20)
    assert r.returncode == 2, r
    assert (f"linkup: server: invalid value '{value}' for '--worker-url <URL>': expected "
            "http(s)://HOST[:PORT][/PATH]" in r.stderr.splitlines()), r.stderr
