"""`linkup config check`: locating the config (SPEC §1.1), the summary, and
the error messages of DESIGN §2.2, driven through the real binary."""
import functools
import json
import pathlib

import pytest

import lk

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "linkup.yaml"

GOOD = """\
linkup:
  worker_url: https://w.example.com
  worker_token: secret_token_abcdef
services:
  - name: web
    remote: https://web.example.com
    local: http://localhost:3000
domains:
  - domain: example.com
    default_service: web
"""


run = functools.partial(lk.run, timeout=20)


def write(tmp_path, text, name="linkup.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_example_with_option_after_subcommand(linkup_bin, env):
    r = run(linkup_bin, "config", "check", "--config", str(EXAMPLE), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "web" in r.stdout and "api" in r.stdout
    assert "http://127.0.0.1:8787/" in r.stdout
    assert "example.com" in r.stdout and "api.example.com" in r.stdout


def test_option_before_subcommand(linkup_bin, env):
    r = run(linkup_bin, "--config", str(EXAMPLE), "config", "check", env=env)
    assert r.returncode == 0, r.stderr
    assert "web" in r.stdout and "api" in r.stdout
    r = run(linkup_bin, "-c", str(EXAMPLE), "config", "check", env=env)
    assert r.returncode == 0, r.stderr


def test_option_with_equals_and_symlink(linkup_bin, env, tmp_path):
    link = tmp_path / "link.yaml"
    link.symlink_to(EXAMPLE)
    r = run(linkup_bin, "config", "check", "--json", f"--config={link}", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["config_path"] == str(EXAMPLE.resolve())


def test_environment_variable(linkup_bin, env):
    env["LINKUP_CONFIG"] = str(EXAMPLE)
    r = run(linkup_bin, "config", "check", env=env)
    assert r.returncode == 0, r.stderr
    assert "web" in r.stdout


def test_option_overrides_environment(linkup_bin, env, tmp_path):
    env["LINKUP_CONFIG"] = str(tmp_path / "missing.yaml")
    r = run(linkup_bin, "config", "check", "--config", str(EXAMPLE), env=env)
    assert r.returncode == 0, r.stderr


def test_summary_masks_token_and_normalises_urls(linkup_bin, env, tmp_path):
    p = write(tmp_path, GOOD)
    r = run(linkup_bin, "config", "check", "--config", str(p), env=env)
    assert r.returncode == 0, r.stderr
    assert "secret_token_abcdef" not in r.stdout
    assert "sec\u2026ef" in r.stdout
    assert "https://w.example.com/" in r.stdout
    assert "http://localhost:3000/" in r.stdout


def test_json_summary(linkup_bin, env):
    r = run(linkup_bin, "config", "check", "--json", "--config", str(EXAMPLE), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1
    doc = json.loads(r.stdout)
    assert doc["worker_url"] == "http://127.0.0.1:8787/"
    assert doc["config_path"] == str(EXAMPLE.resolve())
    assert [s["name"] for s in doc["services"]] == ["web", "api"]
    assert doc["services"][0]["local"] == "http://127.0.0.1:3000/"
    assert [d["domain"] for d in doc["domains"]] == ["example.com", "api.example.com"]
    assert doc["domains"][0]["routes"] == [{"path": "^/api/.*", "service": "api"}]
    assert doc["domains"][1]["routes"] is None
    assert "token" not in r.stdout


def test_no_config_anywhere(linkup_bin, env):
    r = run(linkup_bin, "config", "check", env=env)
    assert r.returncode == 1
    assert r.stderr == ("Exited with error: No config argument provided and LINKUP_CONFIG "
                        "environment variable not set\n")
    assert r.stdout == ""


def test_missing_file(linkup_bin, env, tmp_path):
    r = run(linkup_bin, "config", "check", "--config", "nope/linkup.yaml", env=env,
            cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr == ('Exited with error: Unable to resolve absolute path for '
                        '"nope/linkup.yaml"\n')
    env["LINKUP_CONFIG"] = ""
    r = run(linkup_bin, "config", "check", env=env)
    assert r.returncode == 1
    assert r.stderr == 'Exited with error: Unable to resolve absolute path for ""\n'


def test_unreadable_file(linkup_bin, env, tmp_path):
    r = run(linkup_bin, "config", "check", "--config", str(tmp_path), env=env)
    assert r.returncode == 1
    assert r.stderr == f'Exited with error: Failed to read config file "{tmp_path}"\n'


def test_relative_path_is_canonicalised(linkup_bin, env, tmp_path):
    p = write(tmp_path, GOOD.replace("default_service: web", "default_service: api"))
    (tmp_path / "sub").mkdir()
    r = run(linkup_bin, "config", "check", "--config", "../linkup.yaml", env=env,
            cwd=tmp_path / "sub")
    assert r.returncode == 1
    assert r.stderr == (f'Exited with error: Failed to deserialize config file "{p}": '
                        'line 10, column 5: unknown service "api"\n')


@pytest.mark.parametrize("text,where,msg", [
    (GOOD.replace("default_service: web", "default_service: api"), "line 10, column 5",
     'unknown service "api"'),
    (GOOD.replace("domains:", "  - name: web\n    remote: http://a\n    local: http://b\n"
                  "domains:"), "line 8, column 5", 'duplicate service "web"'),
    (GOOD.replace("    local: http://localhost:3000\n", ""), "line 5, column 5",
     'missing key "local"'),
    (GOOD.replace("http://localhost:3000", "localhost 3000"), "line 7, column 12",
     '"local": invalid URL "localhost 3000": relative URL without a base'),
    (GOOD + "    routes:\n      - path: (?!x)\n        service: web\n", "line 12, column 15",
     '"path": invalid regex "(?!x)": look-around is not supported'),
    (GOOD.replace("services:", "services: 3\nx:"), "line 4, column 11",
     '"services": expected a list, found "3"'),
    ("linkup: [\n", "line 2, column 1",
     "invalid YAML: did not find expected node content while parsing a flow node"),
])
def test_bad_config(linkup_bin, env, tmp_path, text, where, msg):
    p = write(tmp_path, text)
    r = run(linkup_bin, "config", "check", "--config", str(p), env=env)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == f'Exited with error: Failed to deserialize config file "{p}": {where}: {msg}\n'


def test_path_is_printed_in_debug_form(linkup_bin, env, tmp_path):
    d = tmp_path / 'we"ird\\dir'
    d.mkdir()
    p = write(d, "{}")
    r = run(linkup_bin, "config", "check", "--config", str(p), env=env)
    assert r.returncode == 1
    quoted = str(p).replace("\\", "\\\\").replace('"', '\\"')
    assert r.stderr == (f'Exited with error: Failed to deserialize config file "{quoted}": '
                        'line 1, column 1: missing key "linkup"\n')


def test_too_large(linkup_bin, env, tmp_path):
    p = tmp_path / "big.yaml"
    with open(p, "wb") as f:
        f.write(b"#" * (10 * 1024 * 1024 + 1))
    r = run(linkup_bin, "config", "check", "--config", str(p), env=env)
    assert r.returncode == 1
    assert r.stderr.startswith(f'Exited with error: Failed to read config file "{p}"')
    assert "larger than" in r.stderr


def test_usage(linkup_bin, env):
    """`config` is a command with subcommands, as `sessions` is: bare, it
    shows its own help (exit 2); an option before the subcommand is an
    unexpected argument, a word an unrecognized subcommand."""
    r = run(linkup_bin, "config", env=env)
    assert r.returncode == 2 and "Usage: linkup config <COMMAND>" in r.stderr
    assert "  check  Validate a linkup config file" in r.stderr
    r = run(linkup_bin, "config", "frobnicate", env=env)
    assert r.returncode == 2
    assert r.stderr.startswith("linkup: config: unrecognized subcommand 'frobnicate'\n")
    r = run(linkup_bin, "config", "--json", env=env)
    assert r.returncode == 2
    assert r.stderr.startswith("linkup: config: unexpected argument '--json'\n")
    r = run(linkup_bin, "config", "check", "--frobnicate", env=env)
    assert r.returncode == 2
    for args in (["config", "--help"], ["config", "help"]):
        r = run(linkup_bin, *args, env=env)
        assert r.returncode == 0 and r.stdout.startswith(
            "Validate and summarise a linkup config file\n\nUsage: linkup config <COMMAND>\n")
    for args in (["config", "check", "--help"], ["config", "help", "check"]):
        r = run(linkup_bin, *args, env=env)
        assert r.returncode == 0
        assert "Usage: linkup config check" in r.stdout


SPEC_EXAMPLE = """\
linkup:
  worker_url: https://where.linkup.is.deployed.com
  worker_token: worker_token_from_linkup_deploy
  cache_routes:
    - .*/_next/static/.*
services:
  - name: web
    remote: https://web-dev.hosting-provider.com
    local: http://localhost:3000
    rewrites:
      - source: /foo/(.*)
        target: /bar/$1
  - name: backend
    remote: https://api-dev.hosting-provider.com
    local: http://localhost:9000
    directory: ./relative/path/to/backend
    health:
      path: /healthz
      statuses: [200, 204]
domains:
  - domain: dev-domain.com
    default_service: web
    routes:
      - path: /api/v1/.*
        service: backend
  - domain: api.dev-domain.com
    default_service: backend
"""


def test_spec_example_loads(linkup_bin, env, tmp_path):
    """SPEC §1.4: the example config, verbatim; URLs stored normalised (§1.2)."""
    p = write(tmp_path, SPEC_EXAMPLE)
    r = run(linkup_bin, "config", "check", "--json", "--config", str(p), env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "config_path": str(p.resolve()),
        "worker_url": "https://where.linkup.is.deployed.com/",
        "services": [
            {"name": "web", "remote": "https://web-dev.hosting-provider.com/",
             "local": "http://localhost:3000/"},
            {"name": "backend", "remote": "https://api-dev.hosting-provider.com/",
             "local": "http://localhost:9000/"},
        ],
        "domains": [
            {"domain": "dev-domain.com", "default_service": "web",
             "routes": [{"path": "/api/v1/.*", "service": "backend"}]},
            {"domain": "api.dev-domain.com", "default_service": "backend", "routes": None},
        ],
    }
    r = run(linkup_bin, "config", "check", "--config", str(p), env=env)
    assert r.returncode == 0, r.stderr
    for text in (".*/_next/static/.*", "/foo/(.*) -> /bar/$1", "./relative/path/to/backend",
                 "/healthz", "200, 204"):
        assert text in r.stdout, text


def test_schema_optional_keys_and_unknown_keys(linkup_bin, env, tmp_path):
    """SPEC §1.2: unknown keys anywhere are ignored; cache_routes, rewrites,
    routes and health.statuses may be null; services may be empty."""
    text = """\
linkup:
  worker_url: https://w.example.com
  worker_token: t
  cache_routes: null
  colour: blue
services:
  - name: web
    remote: https://web.example.com
    local: http://localhost:3000
    rewrites: null
    health:
      path: null
      statuses: null
    extra: [1, 2]
domains:
  - domain: example.com
    default_service: web
    routes: null
    weight: 3
top_level_extra: {a: b}
"""
    r = run(linkup_bin, "config", "check", "--json", "--config", str(write(tmp_path, text)),
            env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["domains"][0]["routes"] is None
    empty = "linkup:\n  worker_url: https://w.example.com\n  worker_token: t\n" \
            "services: []\ndomains: []\n"
    r = run(linkup_bin, "config", "check", "--json", "--config",
            str(write(tmp_path, empty, "empty.yaml")), env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["services"] == []


@pytest.mark.parametrize("statuses,ok", [("[0, 65535]", True), ("[65536]", False),
                                         ("[-1]", False), ("[ok]", False),
                                         ("[0x1F4, 0o10, +200, -0]", True),
                                         ("[0200]", False)])
def test_health_statuses_are_16_bit(linkup_bin, env, tmp_path, statuses, ok):
    """SPEC §1.2: health.statuses is a list of integers 0-65535."""
    text = GOOD.replace("    local: http://localhost:3000\n",
                        "    local: http://localhost:3000\n"
                        f"    health:\n      statuses: {statuses}\n")
    r = run(linkup_bin, "config", "check", "--config", str(write(tmp_path, text)), env=env)
    assert r.returncode == (0 if ok else 1), r.stderr
    if not ok:
        assert '"statuses": expected an integer 0..65535' in r.stderr
