"""The `linkup` CLI end to end (issue 5, SPEC §6, DESIGN §2.5/2.12-2.14):
LINKUP_HOME and HOME in temp dirs, servers on port 0 / free ports.

Tests that need `linkup server` / `linkup worker` skip while those commands
do not exist yet; everything else runs for real."""
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

import lk

DELIM = "##### Linkup environment - DO NOT EDIT #####"
COMMANDS = ["start", "stop", "route", "status", "health", "sessions", "completion", "uninstall"]


def write_config(tmp_path, worker_url="http://127.0.0.1:9", token="token123",
                 web_remote="http://127.0.0.1:9001", web_local="http://127.0.0.1:9002"):
    svc = tmp_path / "web"
    svc.mkdir(exist_ok=True)
    (svc / ".env.dev.linkup").write_text("LINKUP_A=1\nLINKUP_B=2\n")
    (svc / ".env.dev").write_text("USER_A=1\n")
    cfg = tmp_path / "linkup.yaml"
    cfg.write_text(f"""linkup:
  worker_url: {worker_url}
  worker_token: {token}
services:
  - name: web
    remote: {web_remote}
    local: {web_local}
    directory: web
  - name: api
    remote: http://127.0.0.1:9003
    local: http://127.0.0.1:9004
domains:
  - domain: example.com
    default_service: web
    routes:
      - path: /api/.*
        service: api
  - domain: api.example.com
    default_service: api
""")
    return cfg


def needs_servers(linkup_bin, env):
    for name in ("server", "worker"):
        if not lk.has_command(linkup_bin, name, env):
            pytest.skip(f"`linkup {name}` does not exist yet (`linkup {name} --help` fails)")


# ---- runs without the servers ----------------------------------------------


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_everywhere(linkup_bin, cenv, cmd):
    r = lk.run(linkup_bin, cmd, "--help", env=cenv)
    assert r.returncode == 0, r.stderr
    assert "Usage: linkup" in r.stdout
    assert lk.run(linkup_bin, "--help", env=cenv).stdout.count(cmd) >= 1


def test_no_config_exact_text(linkup_bin, cenv):
    r = lk.run(linkup_bin, "start", env=cenv)
    assert r.returncode == 1
    assert ("Exited with error: No config argument provided and LINKUP_CONFIG environment "
            "variable not set") in r.stderr


def test_missing_config_path(linkup_bin, cenv, tmp_path):
    missing = tmp_path / "nope.yaml"
    r = lk.run(linkup_bin, "start", "--config", str(missing), env=cenv)
    assert r.returncode == 1
    assert f'Unable to resolve absolute path for "{missing}"' in r.stderr


def test_bad_config_names_path_and_line(linkup_bin, cenv, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("linkup:\n  worker_url: http://w\n  worker_token: t\nservices: []\n"
                   "domains:\n  - domain: example.com\n    default_service: web\n")
    for args in (["--config", str(cfg), "start"], ["start", "--config", str(cfg)]):
        r = lk.run(linkup_bin, *args, env=cenv)
        assert r.returncode == 1
        assert f'Failed to deserialize config file "{cfg}": line ' in r.stderr


def test_linkup_config_env_is_used(linkup_bin, cenv, tmp_path):
    cfg = write_config(tmp_path)
    cenv["LINKUP_CONFIG"] = str(cfg)
    r = lk.run(linkup_bin, "sessions", "create-preview", "--print-request", env=cenv)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["name_kind"] == "six_char"


def test_not_running_messages(linkup_bin, cenv):
    msg = "Seems like your local Linkup server is not running. Please run 'linkup start' first."
    for args in (["route", "local", "web"], ["status"], ["status", "--json"]):
        r = lk.run(linkup_bin, *args, env=cenv)
        assert r.returncode == 0, r.stderr
        assert msg in r.stdout


@pytest.mark.parametrize("args", [["route"], ["route", "sideways", "web"],
                                  ["route", "local", "web", "--all"], ["route", "local"],
                                  ["status", "--bogus"], ["health", "extra"],
                                  ["sessions"], ["sessions", "frobnicate"],
                                  ["sessions", "create-preview", "pr", "web"],
                                  ["sessions", "create-preview", "pr", "web=not a url"]])
def test_usage_errors_exit_2(linkup_bin, cenv, tmp_path, args):
    cenv["LINKUP_CONFIG"] = str(write_config(tmp_path))
    r = lk.run(linkup_bin, *args, env=cenv)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert r.stderr


def test_create_preview_print_request(linkup_bin, cenv, tmp_path):
    cfg = write_config(tmp_path)
    r = lk.run(linkup_bin, "sessions", "create-preview", "pr-1", "web=https://pr1.example.net",
               "nosuch=http://x", "--print-request", "--config", str(cfg), env=cenv)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        '{"desired_name":"pr-1","session_token":"preview_session","services":['
        '{"name":"web","location":"https://pr1.example.net/","rewrites":null},'
        '{"name":"api","location":"http://127.0.0.1:9003/","rewrites":null}],"domains":['
        '{"domain":"example.com","default_service":"web","routes":[{"path":"/api/.*",'
        '"service":"api"}]},{"domain":"api.example.com","default_service":"api",'
        '"routes":null}],"cache_routes":null}\n')
    # DESIGN §2.5: a first positional with '=' is a pair.
    r = lk.run(linkup_bin, "sessions", "create-preview", "web=http://x.io", "--print-request",
               "--config", str(cfg), env=cenv)
    body = json.loads(r.stdout)
    assert body["name_kind"] == "six_char" and body["session_token"] is None
    assert body["services"][0]["location"] == "http://x.io/"


def test_create_preview_worker_unreachable(linkup_bin, cenv, tmp_path):
    cfg = write_config(tmp_path, worker_url=f"http://127.0.0.1:{lk.free_port()}")
    r = lk.run(linkup_bin, "sessions", "create-preview", "--config", str(cfg), env=cenv)
    assert r.returncode == 1
    assert "Exited with error:" in r.stderr and "worker" in r.stderr


def test_start_injects_env_and_stop_clears_it(linkup_bin, cenv, tmp_path):
    """start fails at the server step here (no server on that port, or none
    built yet) but has already saved the state and injected the env files."""
    cfg = write_config(tmp_path)
    # A second target without a final line feed (SPEC §8.2.1's second case).
    (tmp_path / "web" / ".env.test.linkup").write_text("LINKUP_C=3\n")
    bare = tmp_path / "web" / ".env.test"
    bare.write_text("USER_C=3")
    home = pathlib.Path(cenv["LINKUP_HOME"])
    (home).mkdir(parents=True, exist_ok=True)
    (home / "state-old").write_text("x")
    with lk.occupied_port() as addr:  # the server (if built) cannot bind it
        cenv["LINKUP_HTTP_ADDR"] = addr
        r = lk.run(linkup_bin, "start", "--config", str(cfg), env=cenv, timeout=90)
    assert r.returncode == 1
    env_file = tmp_path / "web" / ".env.dev"
    assert env_file.read_text() == f"USER_A=1\n\n{DELIM}\nLINKUP_A=1\nLINKUP_B=2\n{DELIM}\n"
    assert bare.read_text() == f"USER_C=3\n{DELIM}\nLINKUP_C=3\n{DELIM}\n"
    assert not (home / "state-old").exists()
    state = (home / "state").read_text()
    assert "  session_name: ''\n" in state and f"  config_path: {cfg}\n" in state
    assert "- current: Remote\n  name: web\n" in state
    assert not (home / "localserver-pid").exists(), "nothing may be left running"
    # The user adds a line during the session; stop keeps it, on its own
    # line even where no empty line was left before the block (issue 5).
    env_file.write_text(env_file.read_text() + "USER_B=2\n")
    bare.write_text(bare.read_text() + "USER_D=4\n")
    r = lk.run(linkup_bin, "stop", env=cenv)
    assert r.returncode == 0 and r.stdout == "Stopped linkup\n"
    assert env_file.read_text() == "USER_A=1\nUSER_B=2\n"
    assert bare.read_text() == "USER_C=3\nUSER_D=4\n"
    assert (tmp_path / "web" / ".env.dev.linkup").read_text() == "LINKUP_A=1\nLINKUP_B=2\n"


def test_stale_pid_file_never_signals_a_stranger(linkup_bin, cenv):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        home = pathlib.Path(cenv["LINKUP_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "localserver-pid").write_text(f"{sleeper.pid}\n")
        r = lk.run(linkup_bin, "stop", env=cenv)
        assert r.returncode == 0
        time.sleep(0.3)
        assert sleeper.poll() is None, "stop signalled an unrelated process"
        (home / "localserver-pid").write_text(f"{sleeper.pid}\n")
        h = json.loads(lk.run(linkup_bin, "health", "--json", env=cenv).stdout)
        assert h["local_server"] == "Stopped"
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_pid_file_naming_another_homes_server_is_stale(linkup_bin, cenv, tmp_path):
    """DESIGN §2.12: a pid file left behind whose pid now belongs to the local
    server of another Linkup directory (it carries LINKUP_SERVICE_ID too) is
    stale: `stop` does not signal that server and `health` does not call it
    ours (it is an orphan, whose command line shows its token masked, DESIGN
    §2.13)."""
    cfg = lk.write_web_config(tmp_path)
    other_home = tmp_path / "other-home"
    # The token first: a long command line is shown cut in the middle.
    other = lk._spawn([linkup_bin, "server", "--worker-token", "orphansecret12345",
                       "--worker-url", "http://127.0.0.1:9", "--config", str(cfg), "--certs-dir",
                       str(other_home / "certs"), "--http", "127.0.0.1:0", "--https", "off",
                       "--dns", "off"],
                      dict(cenv, LINKUP_HOME=str(other_home),
                           LINKUP_SERVICE_ID="linkup-local-server"), ["HTTP"])
    try:
        home = pathlib.Path(cenv["LINKUP_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "localserver-pid").write_text(f"{other.popen.pid}\n")
        h = json.loads(lk.run(linkup_bin, "health", "--json", env=cenv).stdout)
        assert h["local_server"] == "Stopped"
        [orphan] = [o for o in h["orphans"] if o["pid"] == other.popen.pid]
        assert " server --worker-token orp\u202645 --worker-url " in orphan["cmd"], orphan
        text = lk.run(linkup_bin, "health", env=cenv).stdout
        assert "orp\u202645" in text and "orphansecret12345" not in text
        r = lk.run(linkup_bin, "stop", env=cenv)
        assert (r.returncode, r.stdout) == (0, "Stopped linkup\n")
        assert other.popen.poll() is None, "stop signalled another Linkup directory's server"
    finally:
        assert other.stop() == 0


def test_health_json_fields(linkup_bin, cenv, tmp_path):
    r = lk.run(linkup_bin, "health", "--json", env=cenv)
    assert r.returncode == 0
    assert not r.stdout.endswith("\n")
    h = json.loads(r.stdout)
    assert list(h)[:6] == ["cli", "system", "states", "linkup_services", "local_server",
                           "cloudflared"]
    assert h["cli"]["version"] == "4.1.1"
    # SPEC §6.5.5's keys plus DESIGN §2.13's one addition, nothing more.
    assert set(h["system"]) == {"os", "architecture", "dns_resolvers",
                                "can_bind_privileged_ports"}
    assert isinstance(h["system"]["can_bind_privileged_ports"], bool)
    assert h["states"] == {"items": {}}
    assert isinstance(h["linkup_home"]["files"], list)
    assert isinstance(h["orphans"], list)
    assert set(h["tunnel"]) == {"url", "connected"}
    assert h["local_server"] == "Stopped" and h["cloudflared"] == "Stopped"
    # With a state, secrets are masked.
    cfg = write_config(tmp_path, token="supersecrettoken99")
    with lk.occupied_port() as addr:
        cenv["LINKUP_HTTP_ADDR"] = addr
        lk.run(linkup_bin, "start", "--config", str(cfg), env=cenv, timeout=90)
    r = lk.run(linkup_bin, "health", "--json", env=cenv)
    assert "supersecrettoken99" not in r.stdout
    st = json.loads(r.stdout)["states"]["items"]["state"]["linkup"]
    assert st["worker_token"] == "sup…99"
    text = lk.run(linkup_bin, "health", env=cenv)
    assert text.returncode == 0 and "supersecrettoken99" not in text.stdout
    assert text.stdout.startswith("System:\n")
    lk.run(linkup_bin, "stop", env=cenv)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion(linkup_bin, cenv, tmp_path, shell):
    cfg = write_config(tmp_path)
    r = lk.run(linkup_bin, "completion", "--shell", shell, "--config", str(cfg), env=cenv)
    assert r.returncode == 0
    assert "linkup" in r.stdout and "route" in r.stdout and "all" in r.stdout
    assert "web" in r.stdout and "api" in r.stdout  # service names from the config
    cenv["SHELL"] = f"/usr/bin/{shell}"
    assert lk.run(linkup_bin, "completion", env=cenv).stdout == lk.run(
        linkup_bin, "completion", "--shell", shell, env=cenv).stdout


COMPLETION_CASES = [
    (["linkup", ""], {"start", "route", "local-dns", "--config"}),
    (["linkup", "route", ""], {"local", "remote", "--all", "web", "api"}),
    (["linkup", "-c", "x.yaml", "route", ""], {"local", "remote", "web"}),
    (["linkup", "--config", "x.yaml", "st"], {"start", "status", "stop"}),
    (["linkup", "local-dns", ""], {"install", "uninstall", "--root", "--platform"}),
    (["linkup", "update", "--"], {"--channel", "--skip-cache", "--help"}),
    (["linkup", "infra", ""], {"deploy", "destroy", "--zone-ids"}),
    # After a subcommand: its options (and, for route, more service names),
    # not the subcommands again.
    (["linkup", "route", "local", ""], frozenset({"--all", "--help", "web", "api"})),
    (["linkup", "route", "remote", "web", ""], frozenset({"--all", "--help", "web", "api"})),
    (["linkup", "local-dns", "install", "--"],
     frozenset({"--root", "--platform", "--dns", "--domain", "--config", "--help"})),
    (["linkup", "sessions", "list", "--"], frozenset({"--print-request", "--json", "--help"})),
    (["linkup", "config", "check", ""], frozenset({"--json", "--config", "--help"})),
    # Option values: only these.
    (["linkup", "update", "--channel", ""], frozenset({"stable", "beta"})),
    (["linkup", "completion", "--shell", "f"], frozenset({"fish"})),
    (["linkup", "local-dns", "install", "--platform", ""], frozenset({"linux", "macos"})),
    (["linkup", "wo"], frozenset({"worker"})),
    (["linkup", "worker", "--st"], frozenset({"--store"})),
    (["linkup", "worker", "--tunnel-scheme", ""], frozenset({"http", "https"})),
    (["linkup", "worker", "--session-auth-scope", ""], frozenset({"all", "urls"})),
    # `--opt=VALUE`: bash splits it into `--opt`, `=`, `VALUE` (COMP_WORDBREAKS).
    (["linkup", "--config", "=", "x.yaml", "route", ""], {"local", "remote", "web"}),
    (["linkup", "update", "--channel", "=", ""], frozenset({"stable", "beta"})),
    (["linkup", "completion", "--shell", "=", "b"], frozenset({"bash"})),
]


@pytest.mark.parametrize("words, want", COMPLETION_CASES)
def test_bash_completion_words(linkup_bin, cenv, tmp_path, words, want):
    """Issue 5: completion of commands, options and service names, by running the bash
    script's function; the command is found after -c/--config FILE too."""
    cfg = write_config(tmp_path)
    script = tmp_path / "linkup.bash"
    script.write_text(lk.run(linkup_bin, "completion", "--shell", "bash", "--config", str(cfg),
                             env=cenv).stdout)
    quoted = " ".join("'" + w + "'" for w in words)
    r = subprocess.run(["bash", "-c", f"source {script}; COMP_WORDS=({quoted}); "
                        f"COMP_CWORD={len(words) - 1}; _linkup; printf '%s\\n' \"${{COMPREPLY[@]}}\""],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    got = set(r.stdout.split())
    assert want <= got, (want - got, got)
    if isinstance(want, frozenset):
        assert got == want
    prefix = words[-1]
    assert all(w.startswith(prefix) for w in got)


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
@pytest.mark.parametrize("words, want", [c for c in COMPLETION_CASES if "=" not in c[0]])
def test_zsh_completion_words(linkup_bin, cenv, tmp_path, words, want):
    """The zsh script offers what the bash one does (zsh keeps `--opt=VALUE` as one
    word, so those cases are bash's only). compadd is stubbed to print its words;
    zsh itself would then keep those starting with the typed prefix, as done here."""
    cfg = write_config(tmp_path)
    script = tmp_path / "_linkup"
    script.write_text(lk.run(linkup_bin, "completion", "--shell", "zsh", "--config", str(cfg),
                             env=cenv).stdout)
    quoted = " ".join("'" + w + "'" for w in words)
    r = subprocess.run(["zsh", "-fc", f"compadd() {{ shift; print -l -- \"$@\" }}; "
                        f"compdef() {{ }}; source {script}; words=({quoted}); "
                        f"CURRENT={len(words)}; _linkup"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    prefix = words[-1]
    got = {w for w in r.stdout.split() if w.startswith(prefix)}
    assert want <= got, (want - got, got)
    if isinstance(want, frozenset):
        assert got == want


def test_completion_leaves_out_service_names_a_shell_would_expand(linkup_bin, cenv, tmp_path):
    """A service name is any YAML string; one with quotes, `$(...)`, backquotes or
    spaces must not become shell code in the generated scripts (it would run at
    every <TAB>, or break the script), so only plain names are offered."""
    cfg = write_config(tmp_path)
    marker = tmp_path / "ran"
    evil = f'x"$(touch {marker})`touch {marker}`'
    text = cfg.read_text().replace("name: api", "name: 'api " + evil + "'")
    text = text.replace("service: api", "service: 'api " + evil + "'")
    cfg.write_text(text.replace("default_service: api", "default_service: 'api " + evil + "'"))
    assert lk.run(linkup_bin, "config", "check", "--config", str(cfg), env=cenv).returncode == 0
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"]:
        r = lk.run(linkup_bin, "completion", "--shell", shell, "--config", str(cfg), env=cenv)
        assert r.returncode == 0 and "web" in r.stdout, shell
        assert "touch" not in r.stdout and "api " not in r.stdout, (shell, r.stdout)
    script = tmp_path / "linkup.bash"
    script.write_text(lk.run(linkup_bin, "completion", "--shell", "bash", "--config", str(cfg),
                             env=cenv).stdout)
    r = subprocess.run(["bash", "-c", f"source {script}; COMP_WORDS=(linkup route local ''); "
                        "COMP_CWORD=3; _linkup; printf '%s\\n' \"${COMPREPLY[@]}\""],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and set(r.stdout.split()) == {"--all", "--help", "web"}, r
    assert not marker.exists()


def test_zsh_completion_completes_on_its_first_autoloaded_call(linkup_bin, cenv, tmp_path):
    """`make install` puts the zsh script in site-functions/_linkup, where zsh
    autoloads the file as the body of _linkup: that first call must complete
    too (clap's ending: call _linkup when run as _linkup, else compdef)."""
    text = lk.run(linkup_bin, "completion", "--shell", "zsh", env=cenv).stdout
    assert text.startswith("#compdef linkup\n")
    assert text.endswith('if [ "$funcstack[1]" = "_linkup" ]; then\n    _linkup "$@"\nelse\n'
                         "    compdef _linkup linkup\nfi\n")
    if shutil.which("zsh"):
        fn = tmp_path / "_linkup"
        fn.write_text(text)
        # Autoloaded, with compadd/compdef stubs: the first call completes.
        r = subprocess.run(["zsh", "-fc", f"fpath=({tmp_path} $fpath); "
                            "compadd() { shift; print -l -- \"$@\" }; compdef() { print compdef }; "
                            "autoload -U _linkup; words=(linkup st); CURRENT=2; _linkup"],
                           capture_output=True, text=True, timeout=10)
        assert "start" in r.stdout.split() and "compdef" not in r.stdout, r


def test_completion_unknown_shell(linkup_bin, cenv):
    cenv["SHELL"] = "/bin/tcsh"
    r = lk.run(linkup_bin, "completion", env=cenv)
    assert r.returncode == 1 and "Pass --shell explicitly" in r.stderr
    assert lk.run(linkup_bin, "completion", "--shell", "tcsh", env=cenv).returncode == 2


def test_uninstall(linkup_bin, cenv):
    home = pathlib.Path(cenv["LINKUP_HOME"])
    r = lk.run(linkup_bin, "uninstall", env=cenv, input="n\n")
    assert r.returncode == 0 and "Aborted!" in r.stdout and home.exists()
    r = lk.run(linkup_bin, "uninstall", "--yes", env=cenv)
    assert r.returncode == 0
    assert "Stopped linkup" in r.stdout and "linkup uninstalled!" in r.stdout
    assert not home.exists()


def test_home_default_and_var_tmp(linkup_bin, cenv, tmp_path):
    cenv.pop("LINKUP_HOME")
    lk.run(linkup_bin, "stop", env=cenv)
    assert (pathlib.Path(cenv["HOME"]) / ".linkup").is_dir()


# ---- needs `linkup server` and `linkup worker` -------------------------------


def get(url, headers=None, timeout=5):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read().decode()


def test_port_taken_clear_message_nothing_left(linkup_bin, cenv, tmp_path):
    needs_servers(linkup_bin, cenv)
    cfg = write_config(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        cenv["LINKUP_HTTP_ADDR"] = f"127.0.0.1:{s.getsockname()[1]}"
        r = lk.run(linkup_bin, "start", "--config", str(cfg), env=cenv, timeout=90)
    assert r.returncode == 1
    assert "Exited with error:" in r.stderr
    assert not (pathlib.Path(cenv["LINKUP_HOME"]) / "localserver-pid").exists()
    assert json.loads(lk.run(linkup_bin, "health", "--json", env=cenv).stdout)[
        "local_server"] == "Stopped"


def test_full_lifecycle(linkup_bin, cenv, tmp_path):
    needs_servers(linkup_bin, cenv)
    remote, remote_url = lk.fake_upstream("remote web")
    local, local_url = lk.fake_upstream("local web")
    worker = lk.spawn_worker(linkup_bin, cenv, f"sqlite:{tmp_path}/worker.db")
    try:
        cfg = write_config(tmp_path, worker_url=worker.url("Worker"), web_remote=remote_url,
                           web_local=local_url)
        r = lk.run(linkup_bin, "start", "--config", str(cfg), env=cenv, timeout=90)
        assert r.returncode == 0, r.stderr
        assert "SESSION NAME" in r.stdout
        again = lk.run(linkup_bin, "start", "--config", str(cfg), env=cenv)
        assert again.returncode == 0
        assert "Linkup is already running. Run 'linkup stop' first to restart." in again.stdout
        st = json.loads(lk.run(linkup_bin, "status", "--json", env=cenv).stdout)
        name = st["session_name"]
        assert name and st["sessions"][0]["name"] == name
        assert {s["name"] for s in st["services"]} == {"web", "api"}
        server = "http://" + cenv["LINKUP_HTTP_ADDR"]
        hdrs = {"Host": f"{name}.example.com"}
        assert get(server + "/", hdrs) == "remote web"
        r = lk.run(linkup_bin, "route", "local", "web", env=cenv)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"\nSession: {name}\n  web  ->  {local_url}/\n"
        assert "Uploading state to server...\nUpdating local state file...\n" in r.stderr
        # SPEC §6.1: LINKUP_LOG sets the level of the CLI's lines (env_logger syntax).
        for level, shown in (("warn", False), ("error", False), ("off", False),
                             ("linkup=debug", True), ("other_crate=debug", True), ("info", True)):
            r = lk.run(linkup_bin, "route", "local", "web", env={**cenv, "LINKUP_LOG": level})
            assert r.returncode == 0, r.stderr
            assert ("Uploading state to server..." in r.stderr) == shown, level
        r = lk.run(linkup_bin, "route", "local", "nosuch", env={**cenv, "LINKUP_LOG": "off"})
        assert r.returncode == 1 and r.stderr == ""
        r = lk.run(linkup_bin, "route", "local", "nosuch", env={**cenv, "LINKUP_LOG": "error"})
        assert r.returncode == 1 and "Service 'nosuch' does not exist" in r.stderr
        assert get(server + "/", hdrs) == "local web"
        r = lk.run(linkup_bin, "route", "remote", "--all", env=cenv)
        assert r.returncode == 0 and get(server + "/", hdrs) == "remote web"
        r = lk.run(linkup_bin, "route", "local", "nosuch", env=cenv)
        assert r.returncode == 1 and "Service 'nosuch' does not exist" in r.stderr
        r = lk.run(linkup_bin, "sessions", "create-preview", "--config", str(cfg), env=cenv)
        assert r.returncode == 0, r.stderr
        assert "preview" in r.stdout
        r = lk.run(linkup_bin, "sessions", "list", "--json", env=cenv)
        assert r.returncode == 0 and name in r.stdout
        pid = int((pathlib.Path(cenv["LINKUP_HOME"]) / "localserver-pid").read_text())
        r = lk.run(linkup_bin, "stop", env=cenv)
        assert r.returncode == 0 and "Stopped linkup" in r.stdout
        time.sleep(0.5)
        assert not pathlib.Path(f"/proc/{pid}").exists() or \
            pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
        assert (tmp_path / "web" / ".env.dev").read_text() == "USER_A=1\n"
    finally:
        lk.run(linkup_bin, "stop", env=cenv)
        worker.stop()
        remote.shutdown()
        local.shutdown()


@pytest.mark.parametrize("status, text", [(418, "418 I'm a teapot"), (410, "410 Gone"),
                                          (599, "599 <unknown status code>")])
def test_create_preview_worker_error_reason(linkup_bin, cenv, tmp_path, status, text):
    """SPEC §6.5.6 step 4: `request failed with status {code} {reason}: {body}`, the reason
    as the original's StatusCode prints it, also for the rarer codes."""
    worker = lk.FakeWorker(host="127.0.0.1", mode=status, body="nope")
    try:
        cfg = write_config(tmp_path, worker_url=worker.url)
        r = lk.run(linkup_bin, "sessions", "create-preview", "--config", str(cfg), env=cenv)
        assert r.returncode == 1
        assert f"Exited with error: request failed with status {text}: nope\n" in r.stderr
    finally:
        worker.close()


def test_worker_401_is_clear(linkup_bin, cenv, tmp_path):
    needs_servers(linkup_bin, cenv)
    worker = lk.spawn_worker(linkup_bin, cenv, f"sqlite:{tmp_path}/w.db", token="right")
    try:
        cfg = write_config(tmp_path, worker_url=worker.url("Worker"), token="wrong")
        r = lk.run(linkup_bin, "sessions", "create-preview", "--config", str(cfg), env=cenv)
        assert r.returncode == 1
        assert "request failed with status 401 Unauthorized" in r.stderr
    finally:
        worker.stop()
