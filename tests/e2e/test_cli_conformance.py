"""SPEC conformance of the `linkup` CLI (SPEC §1, §6, §7, §8.2 as amended by
DESIGN §2/§3), black box: exact stdout/stderr, exit statuses, files written.

Complements test_cli.py, test_cli_lifecycle.py, test_config_check.py,
test_cloudflared.py, test_local_dns.py and test_update.py: only what those do
not cover. Every test names its SPEC section in its docstring. Servers bind
127.0.0.1 port 0 (the local server a free port), LINKUP_HOME/HOME are
per-test temp dirs, every subprocess has a timeout."""
import json
import os
import pathlib
import re
import subprocess

import pytest

import lk

DELIM = "##### Linkup environment - DO NOT EDIT #####"
NOT_RUNNING = ("Seems like your local Linkup server is not running. "
               "Please run 'linkup start' first.\n")


# ---- helpers -----------------------------------------------------------------


def run(linkup_bin, env, *args, **kw):
    kw.setdefault("timeout", 60)
    return lk.run(linkup_bin, *args, env=env, **kw)


def failing_start(linkup_bin, cenv, cfg):
    """`linkup start` whose local server cannot bind: returns the result."""
    env = dict(cenv)
    with lk.occupied_port() as addr:
        env["LINKUP_HTTP_ADDR"] = addr
        return run(linkup_bin, env, "start", "--config", str(cfg), timeout=90)


def table(rows, current=None):
    """The sessions table of SPEC §6.7 (no styling). rows: [(name, kind, [urls])]."""
    m = 2 if current is not None else 0
    wn = max([len("SESSION NAME") + m] + [len(n) + m for n, _, _ in rows])
    wk = max([4] + [len(k) for _, k, _ in rows])
    wd = max([7] + [len(d) for _, _, ds in rows for d in ds])

    def border(l, mid, r):
        return l + mid.join("─" * (w + 2) for w in (wn, wk, wd)) + r + "\n"

    def line(a, b, c):
        return f"│ {a:<{wn}} │ {b:<{wk}} │ {c:<{wd}} │\n"

    out = border("┌", "┬", "┐")
    out += line(("  " if current is not None else "") + "SESSION NAME", "TYPE", "DOMAINS")
    out += border("├", "┼", "┤")
    first = True
    for name, kind, urls in rows:
        if not urls:
            continue
        if not first:
            out += border("├", "┼", "┤")
        first = False
        prefix = "" if current is None else ("> " if name == current else "  ")
        for i, u in enumerate(urls):
            out += line(prefix + name if i == 0 else "", kind if i == 0 else "", u)
    return out + border("└", "┴", "┘")


def config_text(worker_url, token="T", frontend_remote="http://127.0.0.1:9",
                backend_remote="http://127.0.0.1:9", backend_health="", directory=""):
    return f"""linkup:
  worker_url: {worker_url}
  worker_token: {token}
services:
  - name: frontend
    remote: {frontend_remote}
    local: http://localhost:8000
    rewrites:
      - source: /foo/(.*)
        target: /bar/$1
  - name: backend
    remote: {backend_remote}
    local: http://localhost:8001
{directory}{backend_health}domains:
  - domain: example.com
    default_service: frontend
    routes:
      - path: /api/v1/.*
        service: backend
  - domain: api.example.com
    default_service: backend
"""


class Live:
    """A worker (memory store) and `linkup start` against it."""

    def __init__(self, linkup_bin, cenv, tmp_path, **cfg_kw):
        self.bin = linkup_bin
        self.env = cenv
        self.home = pathlib.Path(cenv["LINKUP_HOME"])
        self.worker = lk.spawn_worker(linkup_bin, cenv, "memory", token="T")
        self.cfg = tmp_path / "linkup.yaml"
        self.cfg.write_text(config_text(self.worker.url("Worker") + "/", **cfg_kw))

    def run(self, *args, **kw):
        return run(self.bin, self.env, *args, **kw)

    def start(self):
        r = self.run("start", "--config", str(self.cfg), timeout=90)
        assert r.returncode == 0, r.stderr
        return r

    def state(self):
        return (self.home / "state").read_text()

    def session(self):
        return re.search(r"^  session_name: (\S+)$", self.state(), re.M).group(1)

    def close(self):
        self.run("stop")
        self.worker.stop()


@pytest.fixture
def live(linkup_bin, cenv, tmp_path):
    objs = []

    def make(**cfg_kw):
        o = Live(linkup_bin, cenv, tmp_path, **cfg_kw)
        objs.append(o)
        return o

    yield make
    for o in objs:
        o.close()


# ---- §6.1 global behaviour -----------------------------------------------------

SPEC_COMMANDS = [
    ("start", "Start a new linkup session"),
    ("stop", "Stop a running linkup session"),
    ("route", "Route session traffic to a local or remote service"),
    ("sessions", "Manage sessions"),
    ("status", "View linkup component and service status"),
    ("health", "Output the health of the CLI service"),
    ("local-dns", "Speed up your local environment by routing traffic locally when possible"),
    ("update", "Update linkup to the latest released version."),
    ("uninstall", "Uninstall linkup and cleanup configurations."),
    ("completion", "Generate completions for your shell"),
    ("infra", "Manage linkup infrastructure on Cloudflare"),
]


def test_top_level_help_text(linkup_bin, env):
    """SPEC §6.1: about text, the commands with their one-line help in SPEC
    order, -c/--config, -h, -V; `server` stays hidden."""
    r = run(linkup_bin, env, "--help")
    assert r.returncode == 0
    assert r.stdout.startswith(
        "Connect remote and local dev/preview environments\n\n"
        "If you need help running linkup, start here:\n"
        "https://mentimeter.github.io/linkup\n\n"
        "Usage: linkup [OPTIONS] <COMMAND>\n")
    lines = r.stdout.splitlines()
    positions = []
    for name, help_ in SPEC_COMMANDS:
        line = [i for i, l in enumerate(lines) if re.match(rf"^  {re.escape(name)} +(\S.*)$", l)]
        assert len(line) == 1, name
        assert lines[line[0]].split(None, 1)[1] == help_
        positions.append(line[0])
    assert positions == sorted(positions), "commands not in SPEC order"
    assert not any(re.match(r"^  server ", l) for l in lines)
    assert "  -c, --config <CONFIG>  Path to config file, overriding environment variable.\n" \
        in r.stdout
    assert "-V, --version" in r.stdout and "-h, --help" in r.stdout
    assert run(linkup_bin, env, "-h").stdout == r.stdout
    assert run(linkup_bin, env, "help").stdout == r.stdout


def test_no_command_prints_help_on_stderr_exit_2(linkup_bin, env):
    """SPEC §6.1: usage errors go to stderr with exit status 2."""
    r = run(linkup_bin, env)
    assert r.returncode == 2 and r.stdout == ""
    assert "Usage: linkup" in r.stderr


@pytest.mark.parametrize("name,help_", SPEC_COMMANDS)
def test_command_help_starts_with_its_one_line_help(linkup_bin, env, name, help_):
    """SPEC §6.1: each command's --help (and `linkup help <command>`) starts
    with its one-line help and shows its usage line; exit 0."""
    r = run(linkup_bin, env, name, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(help_ + "\n\nUsage: linkup " + name), r.stdout
    h = run(linkup_bin, env, "help", name)
    assert h.returncode == 0 and h.stdout == r.stdout
    assert run(linkup_bin, env, name, "-h").stdout == r.stdout


def test_help_of_a_subcommand_and_of_help(linkup_bin, env):
    """clap: `linkup help sessions list` is `linkup sessions list --help`; `linkup help help`
    and `linkup help --help` print the top-level help."""
    want = run(linkup_bin, env, "sessions", "list", "--help")
    assert want.returncode == 0 and want.stdout.startswith("List the sessions")
    h = run(linkup_bin, env, "help", "sessions", "list")
    assert (h.returncode, h.stdout) == (0, want.stdout)
    top = run(linkup_bin, env, "--help").stdout
    for args in (["help", "help"], ["help", "--help"]):
        r = run(linkup_bin, env, *args)
        assert (r.returncode, r.stdout) == (0, top), args


def test_help_of_unknown_command_is_usage_error(linkup_bin, env):
    """SPEC §6.1: usage errors exit 2."""
    r = run(linkup_bin, env, "help", "frobnicate")
    assert r.returncode == 2 and "frobnicate" in r.stderr


@pytest.mark.parametrize("args", [["start", "extra"], ["stop", "--bogus"], ["status", "--session"],
                                  ["health", "--jsonx"], ["completion", "--shell", "tcsh"],
                                  ["uninstall", "now"], ["update", "--channel", "nightly"],
                                  ["route", "--all"], ["local-dns"], ["local-dns", "frob"]])
def test_more_usage_errors_exit_2(linkup_bin, cenv, args):
    """SPEC §6.1: argument errors print to stderr and exit 2, running nothing."""
    r = run(linkup_bin, cenv, *args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert r.stderr and r.stdout == ""


def test_linkup_dir_is_created_single_level(linkup_bin, cenv, tmp_path):
    """SPEC §6.1: the Linkup dir is created (one level) before a command;
    failure -> `Could not create linkup dir at {path}: {e}`, exit 1."""
    home = tmp_path / "fresh-home"
    cenv["LINKUP_HOME"] = str(home)
    assert run(linkup_bin, cenv, "health", "--json").returncode == 0
    assert home.is_dir()
    deep = tmp_path / "missing-parent" / "linkup"
    cenv["LINKUP_HOME"] = str(deep)
    r = run(linkup_bin, cenv, "stop")
    assert r.returncode == 1
    assert r.stderr.startswith(f"Exited with error: Could not create linkup dir at {deep}: ")
    assert "No such file or directory (os error 2)" in r.stderr
    assert not deep.parent.exists()


# ---- §1.1 / §1.2 configuration -----------------------------------------------------


def test_config_that_is_a_directory_cannot_be_read(linkup_bin, cenv, tmp_path):
    """SPEC §1.1: an unreadable config -> `Failed to read config file {path:?}`, exit 1."""
    r = run(linkup_bin, cenv, "sessions", "create-preview", "--print-request", "-c", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.strip().endswith(f'Exited with error: Failed to read config file "{tmp_path}"')


def test_config_unknown_keys_ignored_and_urls_normalised(linkup_bin, cenv, tmp_path):
    """SPEC §1.2: unknown keys anywhere are ignored; URLs are stored
    normalised; `rewrites: []` stays an empty list, absent stays null."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("""extra_top: 1
linkup:
  worker_url: https://w.example.com
  worker_token: t
  unknown: x
services:
  - name: web
    remote: https://web.example.com
    local: http://localhost:3000
    rewrites: []
    colour: blue
  - name: api
    remote: https://api.example.com/v1
    local: http://localhost:9000
domains:
  - domain: example.com
    default_service: web
    whatever: true
""")
    r = run(linkup_bin, cenv, "sessions", "create-preview", "--print-request", "--config",
            str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        '{"name_kind":"six_char","session_token":null,"services":['
        '{"name":"web","location":"https://web.example.com/","rewrites":[]},'
        '{"name":"api","location":"https://api.example.com/v1","rewrites":null}],'
        '"domains":[{"domain":"example.com","default_service":"web","routes":null}],'
        '"cache_routes":null}\n')


def test_config_path_canonicalised_through_symlink(linkup_bin, cenv, tmp_path):
    """SPEC §1.1 + §6.3: the state records the canonical config path (made
    absolute, symlinks resolved), also for LINKUP_CONFIG relative paths."""
    real = tmp_path / "real"
    real.mkdir()
    cfg = real / "linkup.yaml"
    cfg.write_text(config_text("http://127.0.0.1:9"))
    (tmp_path / "link.yaml").symlink_to(cfg)
    cenv["LINKUP_CONFIG"] = "link.yaml"
    with lk.occupied_port() as addr:
        cenv["LINKUP_HTTP_ADDR"] = addr
        r = subprocess.run([linkup_bin, "start"], cwd=tmp_path, env=cenv, capture_output=True,
                           text=True, timeout=90)
    assert r.returncode == 1
    state = (pathlib.Path(cenv["LINKUP_HOME"]) / "state").read_text()
    assert f"  config_path: {cfg}\n" in state


# ---- §6.3 state file ---------------------------------------------------------------

CONFIG_822 = """linkup:
  worker_url: https://remote-linkup.example.com
  worker_token: test_token_123
services:
  - name: frontend
    remote: http://remote-service1.example.com
    local: http://localhost:8000
    rewrites:
      - source: /foo/(.*)
        target: /bar/$1
  - name: backend
    remote: http://remote-service2.example.com
    local: http://localhost:8001
    directory: ../backend
    health:
      path: /health
      statuses: [200, 304]
domains:
  - domain: example.com
    default_service: frontend
    routes:
      - path: /api/v1/.*
        service: backend
  - domain: api.example.com
    default_service: backend
"""


def test_state_file_byte_shape(linkup_bin, cenv, tmp_path):
    """SPEC §6.3 + §8.2.2 (config_to_state) + §6.5.1 step 2: block-style YAML,
    sequences not indented under their key, `session_name: ''`, a 16-char
    [A-Za-z0-9] token, the placeholder tunnel, `kind: tunneled`, every
    service `current: Remote`, directory/health only where set. start fails
    afterwards (the service directory is missing), the state is saved first."""
    cfg = tmp_path / "cfg" / "config.yaml"
    cfg.parent.mkdir()
    cfg.write_text(CONFIG_822)
    r = failing_start(linkup_bin, cenv, cfg)
    assert r.returncode == 1
    assert "Exited with error: Failed to read service directory " in r.stderr
    state = (pathlib.Path(cenv["LINKUP_HOME"]) / "state").read_text()
    token = re.search(r"^  session_token: (.*)$", state, re.M).group(1)
    assert re.fullmatch(r"[A-Za-z0-9]{16}", token)
    assert state == f"""linkup:
  session_name: ''
  session_token: {token}
  worker_url: https://remote-linkup.example.com/
  worker_token: test_token_123
  config_path: {cfg}
  tunnel: http://tunnel-not-yet-set/
  kind: tunneled
  cache_routes: null
domains:
- domain: example.com
  default_service: frontend
  routes:
  - path: /api/v1/.*
    service: backend
- domain: api.example.com
  default_service: backend
  routes: null
services:
- current: Remote
  name: frontend
  remote: http://remote-service1.example.com/
  local: http://localhost:8000/
  rewrites:
  - source: /foo/(.*)
    target: /bar/$1
- current: Remote
  name: backend
  remote: http://remote-service2.example.com/
  local: http://localhost:8001/
  directory: ../backend
  rewrites: null
  health:
    path: /health
    statuses:
    - 200
    - 304
"""


STATE_NULLS = """linkup:
  session_name: tiny-cow
  session_token: abcdefghijklmnop
  worker_url: https://worker.example.com/
  worker_token: token123
  config_path: /nonexistent/linkup.yaml
domains:
- domain: example.com
  default_service: a
services:
- current: Remote
  name: a
  remote: http://a.example.com/
  local: http://localhost:8000/
  rewrites: null
  health:
    path: /health
    statuses: null
- current: Local
  name: b
  remote: http://b.example.com/
  local: http://localhost:8001/
  rewrites: []
- current: Remote
  name: c
  remote: http://c.example.com/
  local: http://localhost:8002/
"""


def test_state_parses_null_optional_fields(linkup_bin, cenv):
    """SPEC §8.2.3 + §6.3 parsing rules, seen through `health --json`
    (states.items.state is the state object, DESIGN §2.13 masks tokens):
    rewrites null/absent -> null, [] -> [], statuses null -> null; missing
    tunnel/cache_routes -> null, missing kind -> tunneled."""
    home = pathlib.Path(cenv["LINKUP_HOME"])
    home.mkdir(parents=True)
    (home / "state").write_text(STATE_NULLS)
    r = run(linkup_bin, cenv, "health", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)["states"]["items"]["state"]
    assert list(st) == ["linkup", "domains", "services"]
    l = st["linkup"]
    assert list(l) == ["session_name", "session_token", "worker_url", "worker_token",
                       "config_path", "tunnel", "kind", "cache_routes"]
    assert (l["session_name"], l["tunnel"], l["kind"], l["cache_routes"]) == \
        ("tiny-cow", None, "tunneled", None)
    assert st["domains"] == [{"domain": "example.com", "default_service": "a", "routes": None}]
    a, b, c = st["services"]
    assert a == {"current": "Remote", "name": "a", "remote": "http://a.example.com/",
                 "local": "http://localhost:8000/", "rewrites": None,
                 "health": {"path": "/health", "statuses": None}}
    assert b["rewrites"] == [] and b["current"] == "Local" and "health" not in b
    assert c["rewrites"] is None and "directory" not in c
    text = run(linkup_bin, cenv, "health")
    assert "States:\n  - [state] tiny-cow (tunneled)\n" in text.stdout


def test_non_ascii_secrets_are_masked_by_character(linkup_bin, cenv):
    """DESIGN §2.13: a token with multi-byte characters is masked by whole
    characters ("éé-…n!"), never printed whole because a byte cut made the
    masked text invalid UTF-8."""
    home = pathlib.Path(cenv["LINKUP_HOME"])
    home.mkdir(parents=True)
    (home / "state").write_text(STATE_NULLS.replace("worker_token: token123",
                                                    "worker_token: éé-secret-worker-tokén!"))
    r = run(linkup_bin, cenv, "health", "--json")
    assert r.returncode == 0, r.stderr
    assert "secret-worker" not in r.stdout
    st = json.loads(r.stdout)["states"]["items"]["state"]
    assert st["linkup"]["worker_token"] == "éé-…n!"


def test_unparseable_state(linkup_bin, cenv, tmp_path):
    """SPEC §6.3: a state that does not parse is no state for health
    (`states.items` = {}) and `Failed to parse state file` for route/status
    (exit 1) while the local server runs; stop warns and still stops."""
    home = pathlib.Path(cenv["LINKUP_HOME"])
    home.mkdir(parents=True)
    (home / "state").write_text("linkup: [\n")
    h = json.loads(run(linkup_bin, cenv, "health", "--json").stdout)
    assert h["states"] == {"items": {}}
    assert h["linkup_services"] == {"remote_server": None, "tunnel": None}
    cfg = tmp_path / "linkup.yaml"
    cfg.write_text(config_text("http://127.0.0.1:9"))
    server = lk.spawn_server(linkup_bin, cenv, cfg)
    try:
        cenv["LINKUP_HTTP_ADDR"] = "%s:%d" % server.addrs["HTTP"]
        r = run(linkup_bin, cenv, "route", "local", "frontend")
        assert r.returncode == 1
        assert r.stderr.strip().endswith("Exited with error: Failed to parse state file")
        r = run(linkup_bin, cenv, "status")
        assert r.returncode == 1
        assert r.stderr.strip().endswith("Exited with error: Failed to load local state")
        (home / "state").unlink()
        r = run(linkup_bin, cenv, "route", "local", "frontend")
        assert r.returncode == 1
        assert f'Exited with error: Failed to read state file on "{home / "state"}"' in r.stderr
    finally:
        server.stop()
    (home / "state").write_text("linkup: [\n")
    r = run(linkup_bin, cenv, "stop")
    assert r.returncode == 0 and r.stdout == "Stopped linkup\n"
    assert "Failed to fetch local state: " in r.stderr


# ---- §6.6 env files (§8.2.1 vectors) --------------------------------------------------

E1, E2, E3, E4 = ("EXISTING_1=VALUE_1", "EXISTING_2=VALUE_2", "EXISTING_3=VALUE_3",
                  "EXISTING_4=VALUE_4")
S = "SOURCE_1=VALUE_1"


def env_project(tmp_path, files):
    svc = tmp_path / "proj" / "svc"
    svc.mkdir(parents=True)
    for name, text in files.items():
        (svc / name).write_bytes(text.encode())
    cfg = tmp_path / "proj" / "linkup.yaml"
    cfg.write_text(config_text("http://127.0.0.1:9", directory="    directory: svc\n"))
    return cfg, svc


@pytest.mark.parametrize("target,source,expected", [
    (None, S, f"\n{DELIM}\n{S}\n{DELIM}\n"),
    ("", S, f"\n{DELIM}\n{S}\n{DELIM}\n"),
    (f"{E1}\n{E2}", S, f"{E1}\n{E2}\n{DELIM}\n{S}\n{DELIM}\n"),
    (f"{E1}\n{E2}\n", S + "\n", f"{E1}\n{E2}\n\n{DELIM}\n{S}\n{DELIM}\n"),
    (f"{E1}\n{E2}", f"{S}\nSOURCE_2=VALUE_2",
     f"{E1}\n{E2}\n{DELIM}\n{S}\nSOURCE_2=VALUE_2\n{DELIM}\n"),
])
def test_env_inject_vectors(linkup_bin, cenv, tmp_path, target, source, expected):
    """SPEC §6.6 injection + §8.2.1 write vectors: `start` appends
    "\\n" DELIM "\\n" source(one trailing LF removed) "\\n" DELIM "\\n"; a
    second start leaves a target that has the block alone."""
    files = {".env.development.linkup": source}
    if target is not None:
        files[".env.development"] = target
    cfg, svc = env_project(tmp_path, files)
    assert failing_start(linkup_bin, cenv, cfg).returncode == 1
    assert (svc / ".env.development").read_bytes().decode() == expected
    assert (svc / ".env.development.linkup").read_text() == source
    assert failing_start(linkup_bin, cenv, cfg).returncode == 1
    assert (svc / ".env.development").read_bytes().decode() == expected


@pytest.mark.parametrize("before,after", [
    (f"\n{DELIM}\n{S}\n{DELIM}\n", "\n"),
    (f"{E1}\n{E2}\n{DELIM}\n\n{S}\n{DELIM}\n", f"{E1}\n{E2}\n"),
    (f"{E1}\n{E2}\n{DELIM}\n\n{S}\n{DELIM}\n\n{E3}\n{E4}", f"{E1}\n{E2}\n{E3}\n{E4}\n"),
    (f"{E1}\n{E2}\n{DELIM}\n\n{S}\n{DELIM}", f"{E1}\n{E2}\n"),
    (f"{E1}\n{E2}\n{DELIM}\n\n{S}\n{DELIM}\n\n\n\n", f"{E1}\n{E2}\n"),
    (f"{E1}\n{E2}\n{DELIM}\n{S}\nSOURCE_2=VALUE_2\n{DELIM}\n", f"{E1}\n{E2}\n"),
])
def test_env_clear_vectors(linkup_bin, cenv, tmp_path, before, after):
    """SPEC §6.6 removal + §8.2.1 clear vectors, applied by `stop` to every
    `.env*` file of the service directory; files without the delimiter
    (the `.linkup` sources) are untouched."""
    cfg, svc = env_project(tmp_path, {".env.development.linkup": S,
                                      ".env.development": "placeholder\n"})
    assert failing_start(linkup_bin, cenv, cfg).returncode == 1
    (svc / ".env.development").write_bytes(before.encode())
    (svc / ".env").write_bytes(before.encode())
    (svc / "other.env").write_bytes(before.encode())
    r = run(linkup_bin, cenv, "stop")
    assert r.returncode == 0 and r.stdout == "Stopped linkup\n"
    assert (svc / ".env.development").read_bytes().decode() == after
    assert (svc / ".env").read_bytes().decode() == after
    assert (svc / "other.env").read_bytes().decode() == before, "only names starting with .env"
    assert (svc / ".env.development.linkup").read_text() == S


def test_env_no_sources_is_an_error(linkup_bin, cenv, tmp_path):
    """SPEC §6.6 step 2: no `.env.*.linkup` -> `No dev env files found on {directory:?}`."""
    cfg, svc = env_project(tmp_path, {".env": "A=1\n", "env.dev.linkup": "x",
                                      ".env.dev.linkup.bak": "y"})
    r = failing_start(linkup_bin, cenv, cfg)
    assert r.returncode == 1
    assert r.stderr.strip().endswith('Exited with error: No dev env files found on "svc"')
    assert (svc / ".env").read_text() == "A=1\n"


def test_env_target_that_cannot_be_written_is_named(linkup_bin, cenv, tmp_path):
    """SPEC §6.6 steps 4-6: the block is appended to the target; a target that
    cannot take it (here a directory) fails `start` with an error naming the
    target, not the readable `.linkup` source."""
    cfg, svc = env_project(tmp_path, {".env.dev.linkup": S})
    (svc / ".env.dev").mkdir()
    r = failing_start(linkup_bin, cenv, cfg)
    assert r.returncode == 1
    assert f"Failed to write env file {svc / '.env.dev'}: Is a directory" in r.stderr, r.stderr
    assert ".env.dev.linkup" not in r.stderr


# ---- §6.5.6 sessions create-preview ---------------------------------------------------


def test_create_preview_first_matching_pair_wins(linkup_bin, cenv, tmp_path):
    """SPEC §6.5.6 step 2: a pair naming a service overrides its location
    (first matching pair), pairs naming unknown services are ignored."""
    cfg = tmp_path / "linkup.yaml"
    cfg.write_text(config_text("http://127.0.0.1:9"))
    r = run(linkup_bin, cenv, "sessions", "create-preview", "pr", "backend=http://a.example.net",
            "backend=http://b.example.net", "ghost=http://c.example.net", "--print-request",
            "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert list(body) == ["desired_name", "session_token", "services", "domains", "cache_routes"]
    assert body["session_token"] == "preview_session"
    assert [s["location"] for s in body["services"]] == ["http://127.0.0.1:9/",
                                                         "http://a.example.net/"]


def test_create_preview_prints_table_and_sends_auth(linkup_bin, cenv, tmp_path):
    """SPEC §6.5.6 steps 4-5: POST {worker_url}/linkup/v2/sessions/preview
    with Bearer token, x-linkup-version and JSON; then the one-row table with
    the top-level domain URLs; non-2xx -> `request failed with status ...`."""
    fw = lk.FakeWorker(host="127.0.0.1")
    try:
        cfg = tmp_path / "linkup.yaml"
        cfg.write_text(config_text(fw.url, token="tok123"))
        r = run(linkup_bin, cenv, "sessions", "create-preview", "my-pr", "-c", str(cfg))
        assert r.returncode == 0, r.stderr
        assert r.stdout == table([("my-pr", "preview", ["https://my-pr.example.com"])])
        path, headers, body = fw.calls[-1]
        assert path == "/linkup/v2/sessions/preview"
        assert headers["authorization"] == "Bearer tok123"
        assert headers["x-linkup-version"] == "4.1.1"
        assert headers["content-type"].startswith("application/json")
        assert body["desired_name"] == "my-pr"
        fw.mode = 422
        fw.body = "nope"
        r = run(linkup_bin, cenv, "sessions", "create-preview", "-c", str(cfg))
        assert r.returncode == 1
        assert r.stderr.strip().endswith(
            "Exited with error: request failed with status 422 Unprocessable Entity: nope")
    finally:
        fw.close()


# ---- §6.5.8 completion ------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "elvish", "powershell"])
def test_completion_every_spec_shell(linkup_bin, cenv, shell):
    """SPEC §6.5.8: a non-empty script mentioning linkup for each of bash,
    zsh, fish, elvish, powershell, by --shell or from basename($SHELL)."""
    r = run(linkup_bin, cenv, "completion", "--shell", shell)
    assert r.returncode == 0, r.stderr
    assert "linkup" in r.stdout
    cenv["SHELL"] = f"/opt/bin/{shell}"
    assert run(linkup_bin, cenv, "completion").stdout == r.stdout


def test_completion_undetectable_shell_message(linkup_bin, cenv):
    """SPEC §6.5.8: the exact failure text, exit 1."""
    cenv.pop("SHELL", None)
    r = run(linkup_bin, cenv, "completion")
    assert r.returncode == 1
    assert r.stderr.strip().endswith(
        "Exited with error: Could not detect your shell from $SHELL. Pass --shell explicitly "
        "(supported: bash, zsh, fish, elvish, powershell).")


# ---- §6.5.10 uninstall -------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["n\n", "\n", "no\n", "yess\n", ""])
def test_uninstall_prompt_refused(linkup_bin, cenv, answer):
    """SPEC §6.5.10 step 1: prompt without newline; anything but y/yes ->
    `Aborted!`, exit 0, nothing removed."""
    home = pathlib.Path(cenv["LINKUP_HOME"])
    r = run(linkup_bin, cenv, "uninstall", input=answer)
    assert r.returncode == 0
    assert r.stdout == "Are you sure you want to uninstall linkup? [y/N]: Aborted!\n"
    assert home.is_dir()


@pytest.mark.parametrize("answer", [" YES \n", "y\n", "Y"])
def test_uninstall_prompt_accepted(linkup_bin, cenv, answer):
    """SPEC §6.5.10: y/yes (trimmed, any case) proceeds: stop with env
    clearing (`Stopped linkup`), the Linkup dir removed, `linkup uninstalled!`.
    (The binary itself is left in place: see the report.)"""
    home = pathlib.Path(cenv["LINKUP_HOME"])
    run(linkup_bin, cenv, "stop")
    assert home.is_dir()
    r = run(linkup_bin, cenv, "uninstall", input=answer)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Are you sure you want to uninstall linkup? [y/N]: Stopped linkup\n")
    assert r.stdout.endswith("linkup uninstalled!\n")
    assert not home.exists()


# ---- §6.5.5 health ---------------------------------------------------------------------


def test_health_text_without_anything(linkup_bin, cenv):
    """SPEC §6.5.5 human output, nothing running and no state: System, CLI,
    `States: NONE`, an empty `Linkup Services:` section, `Local Server: NOT
    RUNNING`, `Cloudflared: NOT RUNNING`; exit 0."""
    r = run(linkup_bin, cenv, "health")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.match(r"System:\n  OS: .+\n  Architecture: .+\n  DNS Resolvers:", out)
    if not os.path.isdir("/etc/resolver") or not os.listdir("/etc/resolver"):
        assert "  DNS Resolvers: NONE\n" in out
    assert "CLI:\n  Version: 4.1.1\nStates: NONE\nLinkup Services:\nLocal Server: NOT RUNNING\n" \
        "Cloudflared: NOT RUNNING\n" in out


def test_health_json_shape_without_anything(linkup_bin, cenv):
    """SPEC §6.5.5 --json: no trailing newline, key order, nulls and
    "Stopped"; system.architecture as uname reports it."""
    r = run(linkup_bin, cenv, "health", "--json")
    assert r.returncode == 0 and not r.stdout.endswith("\n")
    h = json.loads(r.stdout)
    assert list(h)[:6] == ["cli", "system", "states", "linkup_services", "local_server",
                           "cloudflared"]
    assert h["cli"] == {"version": "4.1.1"}
    assert list(h["system"])[:3] == ["os", "architecture", "dns_resolvers"]
    assert h["system"]["architecture"] == os.uname().machine
    assert h["linkup_services"] == {"remote_server": None, "tunnel": None}
    assert h["local_server"] == "Stopped" and h["cloudflared"] == "Stopped"
    assert r.stdout.startswith('{\n  "cli": {\n    "version": "4.1.1"\n  },\n')


# ---- live: start / status / route / health against a worker -----------------------------


def test_start_prints_empty_line_and_table(live):
    """SPEC §6.5.1 step 8 + §6.7: an empty line and the one-row table; the
    state records the session name and the tunnel URL."""
    lv = live()
    r = lv.start()
    name = lv.session()
    assert re.fullmatch(r"[a-z]+-[a-z]+", name)
    assert r.stdout == "\n" + table([(name, "tunneled", [f"https://{name}.example.com"])])
    assert "  kind: tunneled\n" in lv.state()
    assert "tunnel-not-yet-set" not in lv.state()


def test_status_json_and_text(live):
    """SPEC §6.5.4: --json keys/order (session_name, sessions, services),
    pretty with a trailing newline, services sorted by kind then name with
    priority 2; the text form: marked table, blank line, header, one line per
    service `{name:<22} {kind:<16} {status:<8} {url}`."""
    up = lk.RecordingUpstream(host="127.0.0.1")
    try:
        lv = live(frontend_remote=up.url, backend_remote=up.url,
                  backend_health="    health:\n      path: /healthz\n      statuses: [204]\n")
        lv.start()
        name = lv.session()
        r = lv.run("status", "--json")
        assert r.returncode == 0, r.stderr
        assert r.stdout.endswith("}\n") and r.stdout.startswith('{\n  "session_name": ')
        st = json.loads(r.stdout)
        assert list(st)[:3] == ["session_name", "sessions", "services"]
        assert st["session_name"] == name
        assert st["sessions"] == [{"name": name, "kind": "tunneled",
                                   "domains": [f"https://{name}.example.com"]}]
        url = up.url + "/"
        # backend answers 200 on /healthz but only 204 is healthy; frontend: any non-5xx.
        assert st["services"] == [
            {"name": "backend", "status": "Error", "component_kind": "remote", "url": url,
             "priority": 2},
            {"name": "frontend", "status": "Ok", "component_kind": "remote", "url": url,
             "priority": 2}]
        paths = sorted(p for _, p, _ in up.requests)
        assert "/healthz" in paths and "/" in paths
        for _, p, headers in up.requests:
            h = {k.lower(): v for k, v in headers}
            assert h["tracestate"] == f"linkup-session={name}"
            assert h["linkup-destination"] == ("backend" if p == "/healthz" else "frontend")
            assert h["x-forwarded-host"].startswith(f"{name}.127.0.0.1")
            assert len(h["traceparent"]) == 55
        text = lv.run("status")
        assert text.returncode == 0
        expected = table([(name, "tunneled", [f"https://{name}.example.com"])], current=name)
        expected += "\n" + f"{'SERVICE NAME':<22} {'COMPONENT KIND':<16} {'STATUS':<8} LOCATION\n"
        expected += f"{'backend':<22} {'remote':<16} {'error':<8} {url}\n"
        expected += f"{'frontend':<22} {'remote':<16} {'ok':<8} {url}\n"
        assert text.stdout.startswith(expected), text.stdout
    finally:
        up.close()


def test_status_component_kind_and_session_flag(live):
    """SPEC §6.5.4 step 7 (local after `route local`) and step 5
    (`--session` naming no session of the local server -> exit 1)."""
    lv = live()
    lv.start()
    name = lv.session()
    assert lv.run("route", "local", "backend").returncode == 0
    st = json.loads(lv.run("status", "--json").stdout)
    kinds = {s["name"]: (s["component_kind"], s["url"]) for s in st["services"]}
    assert kinds == {"backend": ("local", "http://localhost:8001/"),
                     "frontend": ("remote", "http://127.0.0.1:9/")}
    assert [s["name"] for s in st["services"]] == ["backend", "frontend"]
    r = lv.run("status", "--session", "nosuch-session")
    assert r.returncode == 1
    assert r.stderr.strip().endswith(
        "Exited with error: Session 'nosuch-session' not found on local server")
    r = lv.run("status", "--json", "--session", name)
    assert r.returncode == 0 and json.loads(r.stdout)["session_name"] == name


def test_route_output_sorted_and_aligned(live):
    """SPEC §6.5.3 step 5: empty line, `Session: {name}`, changed services
    sorted by name, names padded to the longest, `  ->  ` and the URL;
    unknown name -> `Service '{name}' does not exist`, nothing saved."""
    lv = live()
    lv.start()
    name = lv.session()
    r = lv.run("route", "local", "frontend", "backend")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (f"\nSession: {name}\n  backend   ->  http://localhost:8001/\n"
                        "  frontend  ->  http://localhost:8000/\n")
    assert lv.state().count("- current: Local\n") == 2
    r = lv.run("route", "remote", "-a")
    assert r.stdout == (f"\nSession: {name}\n  backend   ->  http://127.0.0.1:9/\n"
                        "  frontend  ->  http://127.0.0.1:9/\n")
    before = lv.state()
    r = lv.run("route", "local", "backend", "ghost")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().endswith("Exited with error: Service 'ghost' does not exist")
    assert lv.state() == before


def test_upload_leaves_a_null_tunnel_alone(live):
    """SPEC §6.5.13 step 4: an upload saves only session_name and kind; the
    tunnel URL is stored by start's step 7, and only when the state asks for
    a tunnel. With `tunnel: null`, start says it skips and route keeps it."""
    lv = live()
    lv.start()
    assert re.search(r"(?m)^  tunnel: http://", lv.state())
    st = lv.home / "state"
    st.write_text(re.sub(r"(?m)^  tunnel: .*$", "  tunnel: null", lv.state()))
    r = lv.run("route", "local", "backend")
    assert r.returncode == 0, r.stderr
    assert re.search(r"(?m)^  tunnel: null$", lv.state()), lv.state()
    lv.run("stop")
    st.write_text(re.sub(r"(?m)^  tunnel: .*$", "  tunnel: null", lv.state()))
    r = lv.run("start", "--config", str(lv.cfg))
    assert r.returncode == 0, r.stderr
    assert "Skipping. State file requested no tunnel." in r.stderr
    assert re.search(r"(?m)^  tunnel: null$", lv.state()), lv.state()


def test_restart_keeps_name_and_token_resets_routing(live):
    """SPEC §6.5.1 step 2: a new start keeps session_name, session_token and
    tunnel of the previous state, but every service is Remote again; step 1
    prints the already-running message while the server answers."""
    lv = live()
    lv.start()
    name = lv.session()
    token = re.search(r"session_token: (\S+)", lv.state()).group(1)
    r = lv.run("start", "--config", str(lv.cfg))
    assert r.returncode == 0
    assert r.stdout == "Linkup is already running. Run 'linkup stop' first to restart.\n"
    assert lv.run("route", "local", "--all").returncode == 0
    assert lv.run("stop").stdout == "Stopped linkup\n"
    assert "- current: Local\n" in lv.state(), "stop keeps the state file"
    lv.start()
    assert lv.session() == name
    assert f"session_token: {token}\n" in lv.state()
    assert "- current: Local\n" not in lv.state()


def test_upload_conflict_retries_unnamed(live):
    """SPEC §6.5.13 step 3: a Named upload answered 409 (the name belongs to
    another token) is retried once as Unnamed; the state takes the new name.
    Unlike the original's retry (SPEC §11.2), it keeps the state's token, so
    the new name is the state's: later uploads keep it, and the name cannot
    be taken over with the token `preview_session`."""
    lv = live()
    lv.start()
    name = lv.session()
    assert lv.run("stop").returncode == 0
    state = lv.state()
    token = re.search(r"session_token: (\S+)", state).group(1)
    (lv.home / "state").write_text(state.replace(token, "ZZZZZZZZZZZZZZZZ"))
    r = lv.start()
    new = lv.session()
    assert new != name and re.fullmatch(r"[a-z]+-[a-z]+", new)
    assert f"https://{new}.example.com" in r.stdout
    assert "session_token: ZZZZZZZZZZZZZZZZ\n" in lv.state()
    for _ in range(2):
        r = lv.run("route", "local", "frontend")
        assert r.returncode == 0, r.stderr
        assert lv.session() == new
    r = lk.request(lv.worker.addrs["Worker"], "POST", "/linkup/v2/sessions/tunneled",
                   [("Authorization", "Bearer T"), ("Content-Type", "application/json")],
                   json.dumps({"desired_name": new, "session_token": "preview_session",
                               "services": [{"name": "frontend",
                                             "location": "http://127.0.0.1:9"}],
                               "domains": [{"domain": "example.com",
                                            "default_service": "frontend"}]}))
    assert r.status == 409, r.body


def test_health_with_running_server(live):
    """SPEC §6.5.5: local_server Running {pid, healthy, dns_records,
    sessions}; linkup_services probes the worker (no auth, 401 counts as Ok)
    and the tunnel; the text form's Local Server section."""
    lv = live()
    lv.start()
    name = lv.session()
    h = json.loads(lv.run("health", "--json").stdout)
    run_ = h["local_server"]["Running"]
    assert list(run_) == ["pid", "healthy", "dns_records", "sessions"]
    assert run_["healthy"] is True and isinstance(run_["pid"], int)
    assert sorted(run_["dns_records"]) == sorted([f"{name}.example.com",
                                                  f"{name}.api.example.com"])
    assert list(run_["sessions"]) == [name]
    rs = h["linkup_services"]["remote_server"]
    assert rs == {"url": lv.worker.url("Worker") + "/linkup/check", "status": "Ok"}
    assert h["linkup_services"]["tunnel"]["url"].endswith("/linkup/check")
    text = lv.run("health").stdout
    assert f"States:\n  - [state] {name} (tunneled)\n" in text
    assert f"Linkup Services:\n  Remote Server: OK ({rs['url']})\n" in text
    assert (f"Local Server:\n  Health: OK\n  PID: {run_['pid']}\n  Sessions:\n"
            f"    - {name} (tunneled)\n  DNS Records:\n") in text


def test_local_server_process_identity(live):
    """SPEC §6.4 (+ DESIGN §2.12): the local server runs detached in its own
    process group with stdin /dev/null, `LINKUP_SERVICE_ID=linkup-local-server`
    in its environment, output in localserver-stdout/-stderr; SPEC §6.5.1
    step 5: with the server running but no state, start says
    `Already running.` and uploads to the running server. SPEC §6.2: the
    output files are truncated on each spawn."""
    lv = live()
    lv.home.mkdir(parents=True, exist_ok=True)
    for name in ("localserver-stdout", "localserver-stderr"):
        (lv.home / name).write_text("OLD-JUNK\n")
    lv.start()
    for name in ("localserver-stdout", "localserver-stderr"):
        assert "OLD-JUNK" not in (lv.home / name).read_text()
    pid = json.loads(lv.run("health", "--json").stdout)["local_server"]["Running"]["pid"]
    environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"LINKUP_SERVICE_ID=linkup-local-server" in environ
    assert (b"RUST_LOG=info,hickory_server=warn,hyper_util=warn,h2=warn,tower_http=info"
            in environ)
    argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    assert argv[1] == b"server"
    assert argv[argv.index(b"--certs-dir") + 1] == bytes(lv.home / "certs")
    assert os.getpgid(pid) == pid
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/fd/2") == str(lv.home / "localserver-stderr")
    assert os.readlink(f"/proc/{pid}/fd/1") == str(lv.home / "localserver-stdout")
    (lv.home / "state").unlink()
    r = lv.run("start", "--config", str(lv.cfg), timeout=90)
    assert r.returncode == 0, r.stderr
    assert "Already running." in r.stderr
    assert json.loads(lv.run("health", "--json").stdout)["local_server"]["Running"]["pid"] == pid
    assert lv.session() in r.stdout


def test_env_linkup_source_for_dot_env(linkup_bin, cenv, tmp_path):
    """SPEC §6.6 steps 2-3: `.env.linkup` starts with `.env.` and ends with
    `.linkup`, so it is a source whose target is `.env`; only the final
    `.linkup` is removed from a name."""
    cfg, svc = env_project(tmp_path, {".env.linkup": "A=1", ".env.x.linkup.linkup": "B=2"})
    assert failing_start(linkup_bin, cenv, cfg).returncode == 1
    assert (svc / ".env").read_text() == f"\n{DELIM}\nA=1\n{DELIM}\n"
    assert (svc / ".env.x.linkup").read_text() == f"\n{DELIM}\nB=2\n{DELIM}\n"


# ---- §6.5.11 infra ------------------------------------------------------------------------


def test_infra_interface(linkup_bin, cenv):
    """SPEC §6.5.11: four required options (usage error, exit 2, when one is
    missing or no deploy/destroy follows), `-z` takes several ids up to the
    subcommand (SPEC §11.6). Deploying to Cloudflare is optional for a C
    implementation: this build fails with exit 1 and says so, touching nothing."""
    h = run(linkup_bin, cenv, "infra", "--help")
    for opt in ("-e, --email <EMAIL>", "-k, --api-key <API_KEY>",
                "-a, --account-id <ACCOUNT_ID>", "-z, --zone-ids <ZONE_IDS>..."):
        assert opt in h.stdout
    assert "Cloudflare user global API Key" in h.stdout
    full = ["-e", "me@example.com", "-k", "key", "-a", "acc", "-z", "z1", "z2"]
    for args in (["deploy"], ["-e", "me@example.com", "deploy"], full, full + ["frob"]):
        r = run(linkup_bin, cenv, "infra", *args)
        assert r.returncode == 2, (args, r.stderr)
    for cmd in ("deploy", "destroy"):
        r = run(linkup_bin, cenv, "infra", *full, cmd)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.startswith("Exited with error: ")


# ---- §1.1 which commands read the config; §6.7 table with several domains -------------------


def test_route_stop_health_never_read_the_config(linkup_bin, cenv, tmp_path):
    """SPEC §1.1: route, stop and health never read the config, so a broken
    --config or LINKUP_CONFIG does not fail them."""
    bad = tmp_path / "broken.yaml"
    bad.write_text("linkup: [\n")
    cenv["LINKUP_CONFIG"] = str(bad)
    assert run(linkup_bin, cenv, "stop").stdout == "Stopped linkup\n"
    assert run(linkup_bin, cenv, "-c", str(tmp_path / "missing.yaml"), "stop").returncode == 0
    assert run(linkup_bin, cenv, "health", "--json").returncode == 0
    r = run(linkup_bin, cenv, "route", "local", "web")
    assert r.returncode == 0 and r.stdout == NOT_RUNNING
    r = run(linkup_bin, cenv, "start")
    assert r.returncode == 1
    assert f'Exited with error: Failed to deserialize config file "{bad}"' in r.stderr


def test_table_top_level_domains_and_several_lines(linkup_bin, cenv, tmp_path):
    """SPEC §6.7 + §6.5.6 step 5 + §11.16: one line per top-level domain URL
    (a domain ending with another configured domain is dropped, by plain
    string suffix, so `myexample.com` is hidden by `example.com`); widths
    follow the longest URL."""
    fw = lk.FakeWorker(host="127.0.0.1")
    try:
        cfg = tmp_path / "linkup.yaml"
        cfg.write_text(f"""linkup:
  worker_url: {fw.url}
  worker_token: t
services:
  - name: web
    remote: https://web.example.net
    local: http://localhost:3000
domains:
  - domain: example.com
    default_service: web
  - domain: myexample.com
    default_service: web
  - domain: a-much-longer-domain.org
    default_service: web
  - domain: api.a-much-longer-domain.org
    default_service: web
""")
        r = run(linkup_bin, cenv, "sessions", "create-preview", "pr", "-c", str(cfg))
        assert r.returncode == 0, r.stderr
        assert r.stdout == table([("pr", "preview", ["https://pr.example.com",
                                                     "https://pr.a-much-longer-domain.org"])])
        assert r.stdout.count("\n") == 6
    finally:
        fw.close()


def test_status_component_kind_when_local_equals_remote(live):
    """SPEC §6.5.4 step 7: a service whose config local == remote is `local`
    when that URL's host names localhost/127.0.0.1/0.0.0.0."""
    lv = live()
    text = lv.cfg.read_text().replace("domains:\n", """  - name: same
    remote: http://localhost:1
    local: http://localhost:1
domains:
""", 1)
    lv.cfg.write_text(text)
    lv.start()
    st = json.loads(lv.run("status", "--json").stdout)
    kinds = {s["name"]: s["component_kind"] for s in st["services"]}
    assert kinds == {"backend": "remote", "frontend": "remote", "same": "local"}
    # Sorted by priority, then component kind (string order), then name.
    assert [s["name"] for s in st["services"]] == ["same", "backend", "frontend"]
    assert {s["name"]: s["status"] for s in st["services"]}["same"] == "Error"


def test_status_probe_url_is_rfc3986_resolution_of_health_path(live):
    """SPEC §6.5.4 step 8: the probe URL is the location joined with `health.path` by RFC 3986
    reference resolution: a relative path replaces the last segment, an empty reference is the
    location itself, a query-only one keeps the location's path, a network-path or absolute
    URL names another place. (`status` reads the config from the state's config_path each
    time, so one session serves every case.)"""
    up = lk.RecordingUpstream(host="127.0.0.1")
    try:
        hostport = up.url.split("//", 1)[1]
        lv = live(backend_remote=up.url + "/base/x?q=1")
        lv.start()
        base = lv.cfg.read_text()
        cases = [('"/hc"', "/hc"), ('"hc"', "/base/hc"), ('"../hc"', "/hc"), ('""', "/base/x?q=1"),
                 ('"?probe=1"', "/base/x?probe=1"), (f'"//{hostport}/net"', "/net"),
                 (f'"{up.url}/abs"', "/abs")]
        for path, want in cases:
            lv.cfg.write_text(base.replace(
                "domains:\n", f"    health:\n      path: {path}\n      statuses: [200]\ndomains:\n",
                1))
            del up.requests[:]
            st = json.loads(lv.run("status", "--json").stdout)
            got = [p for _, p, h in up.requests
                   if {k.lower(): v for k, v in h}.get("linkup-destination") == "backend"]
            assert got == [want], (path, got)
            assert {s["name"]: s["status"] for s in st["services"]}["backend"] == "Ok", path
    finally:
        up.close()


def test_every_config_load_checks_service_references(linkup_bin, cenv, tmp_path):
    """DESIGN §2.2: create-preview (also with --print-request) and server
    reject a route naming no service and duplicate service names, with the
    real path and line/column."""
    cfg = tmp_path / "refs.yaml"
    base = """linkup:
  worker_url: http://127.0.0.1:9
  worker_token: t
services:
  - name: a
    remote: http://127.0.0.1:9
    local: http://127.0.0.1:10
domains:
  - domain: example.com
    default_service: a
    routes:
      - path: /x
        service: ghost
"""
    cfg.write_text(base)
    want = f'Exited with error: Failed to deserialize config file "{cfg}": line 13, column 9: ' \
        'unknown service "ghost"'
    r = run(linkup_bin, cenv, "sessions", "create-preview", "--print-request", "-c", str(cfg))
    assert r.returncode == 1 and want in r.stderr and r.stdout == ""
    r = run(linkup_bin, cenv, "server", "-c", str(cfg), "--http", "127.0.0.1:0", timeout=20)
    assert r.returncode == 1 and want in r.stderr
    cfg.write_text(base.replace("service: ghost", "service: a").replace(
        "domains:", "  - name: a\n    remote: http://127.0.0.1:9\n    local: http://127.0.0.1:10\n"
        "domains:"))
    r = run(linkup_bin, cenv, "sessions", "create-preview", "--print-request", "-c", str(cfg))
    assert r.returncode == 1 and 'duplicate service "a"' in r.stderr


def test_stop_reports_missing_service_directory(linkup_bin, cenv, tmp_path):
    """SPEC §6.5.2 step 1: a service whose directory cannot be read prints
    `Could not remove env for service {name}: {e}` and stop goes on."""
    cfg = tmp_path / "linkup.yaml"
    cfg.write_text(config_text("http://127.0.0.1:9", directory="    directory: gone\n"))
    r = failing_start(linkup_bin, cenv, cfg)
    assert r.returncode == 1
    assert f'Exited with error: Failed to read service directory "{tmp_path}/gone"' in r.stderr
    r = run(linkup_bin, cenv, "stop")
    assert r.returncode == 0
    # On stdout (the original's println!), with start's words for the cause.
    assert r.stdout == ("Could not remove env for service backend: Failed to read service "
                        f'directory "{tmp_path}/gone"\nStopped linkup\n')
    assert "Could not remove env" not in r.stderr


def run_on_tty(linkup_bin, cenv, args, extra):
    """Runs `linkup ARGS` with stdout on a pseudo-terminal (NO_COLOR and
    CLICOLOR unset, then extra added); returns (exit status, stdout)."""
    import pty
    env = {k: v for k, v in cenv.items() if k not in ("NO_COLOR", "CLICOLOR")}
    env.update(extra)
    master, slave = pty.openpty()
    p = subprocess.Popen([linkup_bin, *args], stdout=slave, stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    out = b""
    try:
        while True:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    rc = p.wait(20)
    os.close(master)
    return rc, out.decode().replace("\r\n", "\n")


def test_table_styling_only_on_a_terminal(linkup_bin, cenv, tmp_path):
    """SPEC §6.1 + §6.7: header cells are bold only when stdout is a terminal
    and neither NO_COLOR nor CLICOLOR=0 is set; borders never change."""
    fw = lk.FakeWorker(host="127.0.0.1")
    try:
        cfg = tmp_path / "linkup.yaml"
        cfg.write_text(config_text(fw.url))
        plain = table([("pr", "preview", ["https://pr.example.com"])])

        def on_tty(extra):
            rc, out = run_on_tty(linkup_bin, cenv,
                                 ["sessions", "create-preview", "pr", "-c", str(cfg)], extra)
            assert rc == 0
            return out

        bold = on_tty({})
        assert "│ \x1b[1mSESSION NAME\x1b[0m │ \x1b[1mTYPE\x1b[0m    │ \x1b[1mDOMAINS\x1b[0m" in bold
        assert re.sub(r"\x1b\[[0-9;]*m", "", bold) == plain
        assert on_tty({"NO_COLOR": "1"}) == plain
        assert on_tty({"CLICOLOR": "0"}) == plain
    finally:
        fw.close()


@pytest.mark.parametrize("args", [["route", "local", "web"], ["status"]], ids=["route", "status"])
def test_not_running_message_is_yellow_on_a_terminal(linkup_bin, cenv, args):
    """SPEC §6.5.3 step 1 and §6.5.4 step 1 (\"the same yellow message\"): on a
    terminal the message is yellow; NO_COLOR, CLICOLOR=0 or a pipe keep it
    plain. Exit 0 either way."""
    yellow = "\x1b[33m" + NOT_RUNNING.rstrip("\n") + "\x1b[0m\n"
    assert run_on_tty(linkup_bin, cenv, args, {}) == (0, yellow)
    assert run_on_tty(linkup_bin, cenv, args, {"NO_COLOR": "1"}) == (0, NOT_RUNNING)
    assert run_on_tty(linkup_bin, cenv, args, {"CLICOLOR": "0"}) == (0, NOT_RUNNING)
    r = run(linkup_bin, cenv, *args)
    assert (r.returncode, r.stdout) == (0, NOT_RUNNING)
