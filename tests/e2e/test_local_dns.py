"""Black-box tests of `linkup local-dns install|uninstall` (SPEC §6.5.7,
DESIGN §2.11) against a scratch --root: the exact files install leaves, that a
second install changes nothing, and that uninstall removes exactly what
install added."""
import json
import os
import pathlib
import shutil
import stat
import subprocess

import pytest

import lk

CONFIG = """\
linkup:
  worker_url: http://127.0.0.1:8787
  worker_token: token123
services:
  - name: frontend
    remote: http://remote.example.com
    local: http://localhost:8000
domains:
  - domain: example.com
    default_service: frontend
  - domain: api.example.com
    default_service: frontend
  - domain: other.com
    default_service: frontend
"""


@pytest.fixture
def setup(tmp_path, env):
    root = tmp_path / "root"
    root.mkdir()
    cfg = tmp_path / "linkup.yaml"
    cfg.write_text(CONFIG)
    env["LINKUP_CONFIG"] = str(cfg)
    env.pop("LINKUP_DNS_ADDR", None)
    bindir = tmp_path / "bin"  # a PATH without certutil (nothing runs with --root)
    bindir.mkdir()
    env["PATH"] = str(bindir)
    return root, env, pathlib.Path(env["LINKUP_HOME"]), bindir


def run(linkup_bin, env, *args):
    return lk.run(linkup_bin, "local-dns", *args, env=env)


def tree(root):
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "")
                  for p in root.rglob("*"))


def test_linux_install_then_uninstall(linkup_bin, setup):
    root, env, home, _ = setup
    r = run(linkup_bin, env, "install", "--root", str(root), "--platform", "linux")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("Linkup needs sudo access to:\n")
    assert out.index("Linkup needs sudo access to:") < out.index("wrote ")
    assert "would run: update-ca-certificates\n" in out
    assert "would run: systemctl restart systemd-resolved\n" in out
    assert "would run: resolvectl flush-caches\n" in out
    assert out.endswith("Local DNS installed!\n")
    assert tree(root) == [
        "etc/", "etc/systemd/", "etc/systemd/resolved.conf.d/",
        "etc/systemd/resolved.conf.d/linkup.conf",
        "usr/", "usr/local/", "usr/local/share/", "usr/local/share/ca-certificates/",
        "usr/local/share/ca-certificates/linkup_ca.crt",
    ]
    conf = (root / "etc/systemd/resolved.conf.d/linkup.conf").read_text()
    # api.example.com is below example.com: only top-level domains are routed.
    assert conf == "[Resolve]\nDNS=127.0.0.1:8053\nDomains=~example.com ~other.com\n"
    ca = home / "certs" / "linkup_ca.cert.pem"
    key = home / "certs" / "linkup_ca.key.pem"
    assert (root / "usr/local/share/ca-certificates/linkup_ca.crt").read_bytes() == ca.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", str(ca)],
                             capture_output=True, text=True).stdout
    assert "Linkup Local CA" in subject

    # Idempotent: nothing changes, no command runs.
    before = {p: (root / p).read_bytes() for p in tree(root) if not p.endswith("/")}
    ca_before = ca.read_bytes()
    r = run(linkup_bin, env, "install", "--root", str(root), "--platform", "linux")
    assert r.returncode == 0, r.stderr
    assert "would run" not in r.stdout
    assert r.stdout.count("unchanged ") == 2
    assert {p: (root / p).read_bytes() for p in tree(root) if not p.endswith("/")} == before
    assert ca.read_bytes() == ca_before

    r = run(linkup_bin, env, "uninstall", "--root", str(root), "--platform", "linux")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Linkup needs sudo access to:\n")
    assert "would run: update-ca-certificates --fresh\n" in r.stdout
    assert r.stdout.endswith("Local DNS uninstalled!\n")
    assert tree(root) == []
    # The CA was created by install, so uninstall removed it too.
    assert not (home / "certs").exists()
    assert not (home / "local-dns.manifest").exists()
    # Uninstalling again is harmless.
    r = run(linkup_bin, env, "uninstall", "--root", str(root), "--platform", "linux")
    assert r.returncode == 0 and tree(root) == []


def test_options_before_the_subcommand(linkup_bin, setup):
    """`linkup local-dns [OPTIONS] <COMMAND>`, as the help shows: the options
    may come before the subcommand too; clap's usage errors otherwise."""
    root, env, _, _ = setup
    conf = root / "etc/systemd/resolved.conf.d/linkup.conf"
    r = run(linkup_bin, env, "--root", str(root), "--platform", "linux", "install")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("Local DNS installed!\n") and conf.exists()
    r = run(linkup_bin, env, f"--root={root}", "--platform", "linux", "uninstall")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("Local DNS uninstalled!\n") and not conf.exists()
    for args, err in ((["--root", str(root)], "Usage: linkup local-dns [OPTIONS] <COMMAND>"),
                      (["--root", str(root), "bogus"], "unrecognized subcommand 'bogus'"),
                      (["--bogus", "install"], "unexpected argument '--bogus'"),
                      (["--root"], "a value is required for '--root <DIR>'")):
        r = run(linkup_bin, env, *args)
        assert (r.returncode, r.stdout) == (2, ""), (args, r.stdout, r.stderr)
        assert err in r.stderr, (args, r.stderr)


def test_existing_files_and_ca_are_kept(linkup_bin, setup):
    root, env, home, _ = setup
    (root / "etc/systemd/resolved.conf.d").mkdir(parents=True)
    (root / "etc/systemd/resolved.conf.d/other.conf").write_text("[Resolve]\n")
    certs = home / "certs"
    certs.mkdir(parents=True)
    # A CA the local server created earlier.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    str(certs / "linkup_ca.key.pem"), "-out", str(certs / "linkup_ca.cert.pem"),
                    "-subj", "/CN=Linkup Local CA", "-days", "30"],
                   check=True, capture_output=True)
    ca = (certs / "linkup_ca.cert.pem").read_bytes()
    r = run(linkup_bin, env, "install", "--root", str(root), "--platform", "linux")
    assert r.returncode == 0, r.stderr
    assert (root / "usr/local/share/ca-certificates/linkup_ca.crt").read_bytes() == ca
    r = run(linkup_bin, env, "uninstall", "--root", str(root), "--platform", "linux")
    assert r.returncode == 0, r.stderr
    assert tree(root) == ["etc/", "etc/systemd/", "etc/systemd/resolved.conf.d/",
                          "etc/systemd/resolved.conf.d/other.conf"]
    assert (certs / "linkup_ca.cert.pem").read_bytes() == ca


def test_macos_layout(linkup_bin, setup):
    root, env, _, _ = setup
    r = run(linkup_bin, env, "install", "--root", str(root), "--platform", "macos",
            "--dns", "127.0.0.1:5353")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(
        "Linkup needs sudo access to:\n"
        "  - Ensure there is a folder /etc/resolvers\n"
        "  - Create file(s) for /etc/resolver/<domain>\n"
        "  - Add Linkup CA certificate to keychain\n"
        "  - Flush DNS cache\n")
    assert tree(root) == ["etc/", "etc/resolver/", "etc/resolver/example.com",
                          "etc/resolver/other.com"]
    for d in ["example.com", "other.com"]:
        assert (root / "etc/resolver" / d).read_text() == "nameserver 127.0.0.1\nport 5353\n"
    assert "would run: security add-trusted-cert -d -r trustRoot -k " \
           "/Library/Keychains/System.keychain " in r.stdout
    assert "would run: dscacheutil -flushcache\n" in r.stdout
    r = run(linkup_bin, env, "uninstall", "--root", str(root), "--platform", "macos")
    assert r.returncode == 0, r.stderr
    assert "would run: security delete-certificate -t -c Linkup Local CA\n" in r.stdout
    assert tree(root) == []


def test_root_that_does_not_exist_yet_is_created_and_removed(linkup_bin, setup):
    """--root DIR prefixes every system path with DIR; a DIR not made yet is
    created like the system directories below it, and uninstall removes
    exactly what install created (DIR too, being empty then)."""
    root, env, _, _ = setup
    new_root = root / "not" / "yet"
    r = run(linkup_bin, env, "install", "--root", str(new_root), "--platform", "linux")
    assert r.returncode == 0, r.stderr
    assert (new_root / "etc/systemd/resolved.conf.d/linkup.conf").is_file()
    r = run(linkup_bin, env, "uninstall", "--root", str(new_root), "--platform", "linux")
    assert r.returncode == 0, r.stderr
    assert tree(root) == []


def test_macos_keeps_a_resolver_file_that_was_there(linkup_bin, setup):
    """Issue 6: uninstall removes exactly what install added. A resolver file
    the user had for a managed domain is kept aside and put back; one that
    an earlier install wrote (other --dns) is Linkup's and simply replaced."""
    root, env, _, _ = setup
    (root / "etc/resolver").mkdir(parents=True)
    mine = "# mine\nnameserver 10.1.2.3\n"
    (root / "etc/resolver/example.com").write_text(mine)
    (root / "etc/resolver/other.com").write_text("nameserver 127.0.0.1\nport 9999\n")
    (root / "etc/resolver/unrelated.org").write_text("nameserver 10.9.9.9\n")
    for _ in range(2):  # idempotent: the saved copy stays the user's
        r = run(linkup_bin, env, "install", "--root", str(root), "--platform", "macos",
                "--dns", "127.0.0.1:5353")
        assert r.returncode == 0, r.stderr
        for d in ["example.com", "other.com"]:
            assert (root / "etc/resolver" / d).read_text() == "nameserver 127.0.0.1\nport 5353\n"
        assert (root / "etc/resolver/example.com.linkup-saved").read_text() == mine
        assert not (root / "etc/resolver/other.com.linkup-saved").exists()
    r = run(linkup_bin, env, "uninstall", "--root", str(root), "--platform", "macos")
    assert r.returncode == 0, r.stderr
    assert f"  restored {root}/etc/resolver/example.com\n" in r.stdout
    assert tree(root) == ["etc/", "etc/resolver/", "etc/resolver/example.com",
                          "etc/resolver/unrelated.org"]
    assert (root / "etc/resolver/example.com").read_text() == mine


def make_firefox_profile(home):
    profile = pathlib.Path(home) / ".mozilla/firefox/abcd.default-release"
    profile.mkdir(parents=True)
    (profile / "cert9.db").write_bytes(b"")
    return profile


def test_firefox_without_certutil_prints_hint(linkup_bin, setup):
    root, env, _, _ = setup
    make_firefox_profile(env["HOME"])
    r = run(linkup_bin, env, "install", "--root", str(root), "--platform", "linux")
    assert r.returncode == 1
    assert ("It seems like you have Firefox installed.\n"
            "For self-signed certificates to work with Firefox, you need to have nss installed.\n"
            "You can install it with `sudo apt install libnss3-tools`.\n"
            "Please install it and then try to install local-dns again.\n") in r.stdout
    assert "Exited with error: Failed to setup self-signed certificates" in r.stderr
    # What was installed before the failure can still be uninstalled.
    r = run(linkup_bin, env, "uninstall", "--root", str(root), "--platform", "linux")
    assert r.returncode == 0 and tree(root) == []


def test_firefox_with_certutil(linkup_bin, setup):
    root, env, home, bindir = setup
    profile = make_firefox_profile(env["HOME"])
    fake = bindir / "certutil"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    r = run(linkup_bin, env, "install", "--root", str(root), "--platform", "linux")
    assert r.returncode == 0, r.stderr
    ca = home / "certs" / "linkup_ca.cert.pem"
    assert (f"would run: certutil -A -d sql:{profile} -t C,, -n Linkup Local CA -i {ca}\n"
            in r.stdout)
    r = run(linkup_bin, env, "uninstall", "--root", str(root), "--platform", "linux")
    assert r.returncode == 0
    assert f"would run: certutil -D -d sql:{profile} -n Linkup Local CA\n" in r.stdout


def test_extra_domain_and_dns_address(linkup_bin, setup):
    root, env, _, _ = setup
    env["LINKUP_DNS_ADDR"] = "0.0.0.0:9053"
    r = run(linkup_bin, env, "install", "--root", str(root), "--platform", "linux",
            "--domain", "third.test", "--domain", "x.other.com")
    assert r.returncode == 0, r.stderr
    conf = (root / "etc/systemd/resolved.conf.d/linkup.conf").read_text()
    assert conf == ("[Resolve]\nDNS=127.0.0.1:9053\n"
                    "Domains=~third.test ~example.com ~other.com\n")


def test_no_domains_fails(linkup_bin, setup):
    root, env, _, _ = setup
    env.pop("LINKUP_CONFIG")
    r = run(linkup_bin, env, "install", "--root", str(root))
    assert r.returncode == 1
    assert "Exited with error: No managed domains" in r.stderr
    assert tree(root) == []


@pytest.mark.parametrize("args,code", [([], 2), (["bogus"], 2), (["install", "--nope", "x"], 2),
                                       (["--help"], 0)])
def test_usage(linkup_bin, setup, args, code):
    _, env, _, _ = setup
    assert run(linkup_bin, env, *args).returncode == code


def test_corrupt_ca_fails_and_is_left_alone(linkup_bin, setup):
    root, env, home, _ = setup
    certs = home / "certs"
    certs.mkdir(parents=True)
    (certs / "linkup_ca.cert.pem").write_text("garbage\n")
    (certs / "linkup_ca.key.pem").write_text("garbage\n")
    r = run(linkup_bin, env, "install", "--root", str(root), "--platform", "linux")
    assert r.returncode == 1
    assert "Exited with error: Failed to load the Linkup CA" in r.stderr
    assert (certs / "linkup_ca.key.pem").read_text() == "garbage\n"
    # What install did before failing is recorded, so uninstall cleans it up.
    r = run(linkup_bin, env, "uninstall", "--root", str(root), "--platform", "linux")
    assert r.returncode == 0 and tree(root) == []
    assert (certs / "linkup_ca.cert.pem").exists()


STATE = """\
linkup:
  session_name: tiny-cow
  session_token: Q3kX9aBcDeFgHiJk
  worker_url: https://worker.example.com/
  worker_token: token123
  config_path: /nonexistent/linkup.yaml
  tunnel: null
  kind: tunneled
  cache_routes: null
domains:
- domain: state-only.test
  default_service: frontend
  routes: null
- domain: api.state-only.test
  default_service: frontend
  routes: null
services:
- current: Remote
  name: frontend
  remote: http://remote-service1.example.com/
  local: http://localhost:8000/
"""


def test_domains_from_the_state_file(linkup_bin, setup):
    root, env, home, _ = setup
    env.pop("LINKUP_CONFIG")
    home.mkdir(parents=True, exist_ok=True)
    (home / "state").write_text(STATE)
    r = run(linkup_bin, env, "install", "--root", str(root), "--platform", "macos")
    assert r.returncode == 0, r.stderr
    assert tree(root) == ["etc/", "etc/resolver/", "etc/resolver/state-only.test"]


@pytest.mark.parametrize("platform", ["linux", "macos"])
def test_linkup_uninstall_undoes_local_dns_as_installed(linkup_bin, setup, platform):
    """SPEC §6.5.10 step 3: `linkup uninstall` runs `local-dns uninstall` when local DNS is
    installed, with the --root and platform its install recorded, before $LINKUP_HOME (which
    holds that record) goes."""
    root, env, home, _ = setup
    r = run(linkup_bin, env, "install", "--root", str(root), "--platform", platform)
    assert r.returncode == 0, r.stderr
    manifest = (home / "local-dns.manifest").read_text().splitlines()
    assert manifest[:2] == [f"root {root}", f"platform {platform}"]
    assert tree(root) != []
    env.pop("LINKUP_CONFIG")  # the record alone says what to undo
    r = lk.run(linkup_bin, "uninstall", "--yes", env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.index("Stopped linkup") < out.index("Local DNS uninstalled!") < \
        out.index("linkup uninstalled!")
    assert tree(root) == []
    assert not home.exists()


def test_linkup_uninstall_without_local_dns_runs_no_local_dns(linkup_bin, setup):
    _, env, home, _ = setup
    r = lk.run(linkup_bin, "uninstall", "--yes", env=env)
    assert r.returncode == 0, r.stderr
    assert "Local DNS" not in r.stdout and "linkup uninstalled!" in r.stdout
    assert not home.exists()


def test_health_lists_the_domains_of_the_linux_drop_in(linkup_bin, setup):
    """Issue 5 / DESIGN §2.11: `health` shows local DNS on Linux too: the domains the
    systemd-resolved drop-in that install wrote routes to the responder, as DNS resolvers."""
    root, env, _, _ = setup

    def resolvers():
        r = lk.run(linkup_bin, "health", "--json", env=env)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["system"]["dns_resolvers"]

    before = resolvers()
    assert "example.com" not in before
    assert run(linkup_bin, env, "install", "--root", str(root), "--platform", "linux").returncode == 0
    assert resolvers() == before + ["example.com", "other.com"]
    r = lk.run(linkup_bin, "health", env=env)
    assert "  DNS Resolvers:\n" in r.stdout and "    - example.com\n    - other.com\n" in r.stdout
    assert run(linkup_bin, env, "uninstall", "--root", str(root), "--platform", "linux").returncode == 0
    assert resolvers() == before
