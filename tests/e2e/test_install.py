"""Installation (issue 10, part B): `make install`/`uninstall` into a DESTDIR,
install.sh against a release manifest served on loopback (docs/releases.md),
the privileged-port keys of `linkup health` and the setcap hint of
`linkup start` when the server may not bind a port below 1024.

Nothing here touches the real /usr/local: every install goes to a temp dir,
LINKUP_NO_SETCAP=1 except in the one root-only test that checks getcap."""
import json
import os
import pathlib
import platform
import shutil
import subprocess

import pytest

import lk

ROOT = pathlib.Path(__file__).resolve().parents[2]
INSTALL_SH = ROOT / "install.sh"
HINT = 'sudo setcap cap_net_bind_service=+ep "$(which linkup)"'


def other_key():
    """An asset key for a platform that is not this one (same arch, other OS)."""
    other = "apple-darwin" if platform.system() == "Linux" else "unknown-linux"
    return f"{lk.release_arch()}-{other}"


# --- make install ------------------------------------------------------------

def test_make_install_layout(linkup_bin, tmp_path):
    if shutil.which("make") is None or shutil.which("help2man") is None:
        pytest.skip("make or help2man missing (scripts/deps.sh installs them)")
    build = str(pathlib.Path(linkup_bin).resolve().parent)
    dest = tmp_path / "dest"
    args = ["make", "-C", str(ROOT), "--no-print-directory", f"BUILD={build}", "NOBUILD=1",
            f"DESTDIR={dest}", "PREFIX=/usr"]
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)
    r = subprocess.run(args + ["install"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    files = {
        "bin/linkup": 0o755,
        "share/bash-completion/completions/linkup": 0o644,
        "share/zsh/site-functions/_linkup": 0o644,
        "share/fish/vendor_completions.d/linkup.fish": 0o644,
        "share/man/man1/linkup.1": 0o644,
    }
    for rel, mode in files.items():
        p = dest / "usr" / rel
        assert p.is_file(), rel
        assert p.stat().st_mode & 0o777 == mode, rel
    usr = dest / "usr"
    assert (usr / "bin/linkup").read_bytes() == pathlib.Path(linkup_bin).read_bytes()
    assert "complete -F _linkup linkup" in (usr / "share/bash-completion/completions/linkup"
                                            ).read_text()
    assert "linkup" in (usr / "share/zsh/site-functions/_linkup").read_text()
    assert "complete -c linkup" in (usr / "share/fish/vendor_completions.d/linkup.fish"
                                    ).read_text()
    man = (usr / "share/man/man1/linkup.1").read_text()
    assert '.TH LINKUP "1"' in man and "linkup 4.1.1" in man
    assert "start" in man and "health" in man
    if shutil.which("man"):
        text = subprocess.run(["man", "-l", str(usr / "share/man/man1/linkup.1")],
                              capture_output=True, text=True, timeout=30,
                              env={**env, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"})
        assert text.returncode == 0 and "SYNOPSIS" in text.stdout
    # The generated files live in the build dir, never in the source tree.
    assert not (ROOT / "linkup.1").exists()
    r = subprocess.run(args + ["uninstall"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert [p for p in usr.rglob("*") if p.is_file()] == []


def test_make_install_says_how_to_bind_low_ports(linkup_bin, tmp_path):
    """Issue 10: `make install` (not a DESTDIR staging) ends with the setcap command that
    lets the installed binary bind ports 80/443."""
    if shutil.which("make") is None or shutil.which("help2man") is None:
        pytest.skip("make or help2man missing (scripts/deps.sh installs them)")
    build = str(pathlib.Path(linkup_bin).resolve().parent)
    prefix = tmp_path / "pfx"
    args = ["make", "-C", str(ROOT), "--no-print-directory", f"BUILD={build}", "NOBUILD=1",
            f"PREFIX={prefix}"]
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)
    r = subprocess.run(args + ["install"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert ("To let linkup bind ports 80/443 without root: sudo setcap "
            f"cap_net_bind_service=+ep {prefix}/bin/linkup") in r.stdout
    r = subprocess.run(args + ["uninstall"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0 and not (prefix / "bin/linkup").exists()


# --- install.sh --------------------------------------------------------------

@pytest.fixture
def rel():
    srv = lk.ReleaseServer()
    yield srv
    srv.close()


def fake_binary(version):
    return f"#!/bin/sh\necho linkup-fake {version}\n".encode()


def release(version, assets, channel=None):
    r = {"version": version, "assets": assets}
    if channel:
        r["channel"] = channel
    return r


def asset(url, sha):
    return {"url": url, "sha256": sha}


def run_install(manifest_url, *args, env_extra=None, path=None, timeout=60):
    env = dict(os.environ)
    env["LINKUP_RELEASE_URL"] = manifest_url
    env["LINKUP_NO_SETCAP"] = "1"
    env.pop("LINKUP_INSTALL_DIR", None)
    # Debian's python3 first: a version-manager shim can cost seconds per call.
    env["PATH"] = path if path is not None else "/usr/bin:/bin:" + env.get("PATH", "")
    env.update(env_extra or {})
    return subprocess.run(["sh", str(INSTALL_SH), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def installed_output(path):
    return subprocess.run([str(path)], capture_output=True, text=True, timeout=10).stdout.strip()


def standard_manifest(rel):
    """4.1.1 and 4.2.0 stable, two betas (the lexicographically higher
    pre-release has the lower numbers), a decoy key for another OS first."""
    key = lk.release_key()
    releases = []
    for v in ["4.1.1", "4.2.0", "4.3.0-next-2026-11-20", "4.2.5-next-2026-12-01"]:
        decoy = rel.add(f"decoy-{v}", b"#!/bin/sh\necho wrong platform\n")
        sha = rel.add(f"linkup-{v}", fake_binary(v))
        releases.append(release(v, {other_key(): asset(f"decoy-{v}", decoy),
                                    key: asset(f"linkup-{v}", sha)}))
    # Highest stable version, but no asset for this platform: never chosen.
    sha = rel.add("linkup-9.9.9", fake_binary("9.9.9"))
    releases.append(release("9.9.9", {other_key(): asset("linkup-9.9.9", sha)}))
    return rel.manifest(releases)


def test_install_sh_is_posix_sh_and_has_help():
    assert subprocess.run(["sh", "-n", str(INSTALL_SH)], timeout=10).returncode == 0
    if shutil.which("dash"):
        assert subprocess.run(["dash", "-n", str(INSTALL_SH)], timeout=10).returncode == 0
    r = subprocess.run(["sh", str(INSTALL_SH), "--help"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0
    assert "--prefix" in r.stdout and "--bin-dir" in r.stdout
    assert "--channel" in r.stdout and "--version" in r.stdout
    assert "LINKUP_RELEASE_URL" in r.stdout
    r = subprocess.run(["sh", str(INSTALL_SH), "--bogus"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode != 0 and "unexpected argument '--bogus'" in r.stderr


def test_install_sh_prefix_is_a_prefix(rel, tmp_path):
    """--prefix P installs P/bin/linkup, as make install PREFIX=P does."""
    url = standard_manifest(rel)
    for args, prefix in ((["--prefix", str(tmp_path / "a")], tmp_path / "a"),
                         ([f"--prefix={tmp_path / 'b'}/"], tmp_path / "b")):
        r = run_install(url, *args)
        assert r.returncode == 0, r.stderr
        target = prefix / "bin" / "linkup"
        assert f"Installed linkup 4.2.0 to {target}" in r.stdout
        assert installed_output(target) == "linkup-fake 4.2.0"
        assert sorted(p.name for p in prefix.iterdir()) == ["bin"]


def test_install_sh_stable(rel, tmp_path):
    url = standard_manifest(rel)
    dest = tmp_path / "bin"
    r = run_install(url, "--bin-dir", str(dest))
    assert r.returncode == 0, r.stderr
    target = dest / "linkup"
    assert f"Installed linkup 4.2.0 to {target}" in r.stdout
    assert os.access(target, os.X_OK)
    assert target.stat().st_mode & 0o777 == 0o755
    assert installed_output(target) == "linkup-fake 4.2.0"
    assert sorted(p.name for p in dest.iterdir()) == ["linkup"]  # no temp files left
    # LINKUP_INSTALL_DIR works like --bin-dir; a specific --version too.
    r = run_install(url, "--version", "4.1.1", env_extra={"LINKUP_INSTALL_DIR": str(dest)})
    assert r.returncode == 0, r.stderr
    assert f"Installed linkup 4.1.1 to {target}" in r.stdout
    assert installed_output(target) == "linkup-fake 4.1.1"


def test_install_sh_beta_channel(rel, tmp_path):
    url = standard_manifest(rel)
    dest = tmp_path / "bin"
    r = run_install(url, "--bin-dir", str(dest), "--channel", "beta")
    assert r.returncode == 0, r.stderr
    # SPEC §3.11: pre-releases compare by the pre-release string only.
    assert "Installed linkup 4.2.5-next-2026-12-01" in r.stdout
    assert installed_output(dest / "linkup") == "linkup-fake 4.2.5-next-2026-12-01"
    r = run_install(url, "--bin-dir", str(dest), "--channel", "nightly")
    assert r.returncode != 0 and "invalid channel 'nightly'" in r.stderr


def test_install_sh_tar_gz_and_absolute_url(rel, tmp_path):
    key = lk.release_key()
    archive = lk.tar_gz([("dist/", None), ("dist/README.md", b"read me\n"),
                      ("dist/linkup", fake_binary("4.2.0")), ("dist/linkup.1", b".TH\n")])
    sha = rel.add("linkup-4.2.0.tar.gz", archive)
    url = rel.manifest([release("4.2.0", {key: asset(f"{rel.base}/linkup-4.2.0.tar.gz",
                                                     sha.upper())})])
    dest = tmp_path / "bin"
    r = run_install(url, "--bin-dir", str(dest))
    assert r.returncode == 0, r.stderr
    assert "Installed linkup 4.2.0" in r.stdout
    assert installed_output(dest / "linkup") == "linkup-fake 4.2.0"
    assert sorted(p.name for p in dest.iterdir()) == ["linkup"]


def test_install_sh_digest_mismatch_keeps_old_binary(rel, tmp_path):
    key = lk.release_key()
    rel.add("linkup-4.2.0", fake_binary("4.2.0"))
    url = rel.manifest([release("4.2.0", {key: asset("linkup-4.2.0", "0" * 64)})])
    dest = tmp_path / "bin"
    dest.mkdir()
    old = dest / "linkup"
    old.write_text("#!/bin/sh\necho old\n")
    old.chmod(0o755)
    r = run_install(url, "--bin-dir", str(dest))
    assert r.returncode == 1
    assert "SHA-256 mismatch" in r.stderr
    assert "Installed" not in r.stdout
    assert old.read_text() == "#!/bin/sh\necho old\n"
    assert sorted(p.name for p in dest.iterdir()) == ["linkup"]


def test_install_sh_no_asset_for_platform(rel, tmp_path):
    sha = rel.add("linkup-4.2.0", fake_binary("4.2.0"))
    url = rel.manifest([release("4.2.0", {other_key(): asset("linkup-4.2.0", sha)})])
    dest = tmp_path / "bin"
    r = run_install(url, "--bin-dir", str(dest))
    assert r.returncode == 1
    assert f"no stable release for {lk.release_arch()}-" in r.stderr
    assert not (dest / "linkup").exists()
    r = run_install(url, "--bin-dir", str(dest), "--version", "4.2.0")
    assert r.returncode == 1 and "no release 4.2.0 for" in r.stderr


def test_install_sh_bad_manifest(rel, tmp_path):
    rel.files["/broken.json"] = b"{not json"
    r = run_install(f"{rel.base}/broken.json", "--bin-dir", str(tmp_path / "bin"))
    assert r.returncode == 1 and "cannot read the release manifest" in r.stderr
    # A one-line reason, then the error: no interpreter traceback.
    assert "Traceback" not in r.stderr and "the manifest is not JSON: " in r.stderr, r.stderr
    r = run_install(f"{rel.base}/missing.json", "--bin-dir", str(tmp_path / "bin"))
    assert r.returncode == 1 and "cannot download the release manifest" in r.stderr


def path_without_python(tmp_path):
    """A PATH with the tools install.sh uses, without python3 (jq fallback)."""
    tools = ["sh", "uname", "mktemp", "curl", "sha256sum", "cut", "tr", "od", "tar", "gzip",
             "grep", "head", "mv", "cp", "chmod", "rm", "mkdir", "id", "jq", "cat"]
    bindir = tmp_path / "path"
    bindir.mkdir()
    for t in tools:
        found = shutil.which(t)
        if found is None:
            pytest.skip(f"{t} missing")
        (bindir / t).symlink_to(found)
    return str(bindir)


def test_install_sh_jq_fallback(rel, tmp_path):
    if shutil.which("jq") is None:
        pytest.skip("jq missing")
    url = standard_manifest(rel)
    path = path_without_python(tmp_path)
    dest = tmp_path / "bin"
    r = run_install(url, "--bin-dir", str(dest), path=path)
    assert r.returncode == 0, r.stderr
    assert "Installed linkup 4.2.0" in r.stdout
    r = run_install(url, "--bin-dir", str(dest), "--channel", "beta", path=path)
    assert r.returncode == 0, r.stderr
    assert "Installed linkup 4.2.5-next-2026-12-01" in r.stdout
    assert installed_output(dest / "linkup") == "linkup-fake 4.2.5-next-2026-12-01"
    r = run_install(url, "--bin-dir", str(dest), "--version", "4.1.1", path=path)
    assert r.returncode == 0 and "Installed linkup 4.1.1" in r.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="setcap needs root")
def test_install_sh_sets_capability(rel, tmp_path):
    if platform.system() != "Linux" or shutil.which("getcap") is None:
        pytest.skip("getcap missing (Debian: libcap2-bin)")
    url = standard_manifest(rel)
    dest = tmp_path / "bin"
    r = run_install(url, "--bin-dir", str(dest), env_extra={"LINKUP_NO_SETCAP": ""})
    assert r.returncode == 0, r.stderr
    if "could not add the capability" in r.stderr:
        pytest.skip(f"this file system refuses file capabilities: {r.stderr}")
    caps = subprocess.run(["getcap", str(dest / "linkup")], capture_output=True, text=True,
                          timeout=10).stdout
    assert "cap_net_bind_service=ep" in caps


# --- linkup health / start ---------------------------------------------------

def unprivileged_port_start():
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def setpriv_prefix():
    """argv prefix that runs a command without CAP_NET_BIND_SERVICE, or None."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    prefix = ["setpriv", "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service"]
    ok = subprocess.run(prefix + ["true"], capture_output=True, timeout=10).returncode == 0
    return prefix if ok else None


def test_health_capability_keys(linkup_bin, env):
    env["LINKUP_HTTP_ADDR"] = f"127.0.0.1:{lk.free_port()}"
    env["LINKUP_HTTPS_ADDR"] = "off"
    r = lk.run(linkup_bin, "health", "--json", env=env)
    assert r.returncode == 0
    sys_ = json.loads(r.stdout)["system"]
    # DESIGN §2.13: one key added to SPEC §6.5.5's; the reason is in the text output.
    assert list(sys_) == ["os", "architecture", "dns_resolvers", "can_bind_privileged_ports"]
    assert isinstance(sys_["can_bind_privileged_ports"], bool)
    # No configured port below 1024: no line about it.
    text = lk.run(linkup_bin, "health", env=env).stdout
    assert "Can bind ports" not in text
    # The defaults (80/443) are below 1024: the line appears.
    del env["LINKUP_HTTP_ADDR"], env["LINKUP_HTTPS_ADDR"]
    text = lk.run(linkup_bin, "health", env=env).stdout
    line = [ln for ln in text.splitlines() if "Can bind ports" in ln]
    assert len(line) == 1 and line[0].startswith("  Can bind ports 80/443: ")
    if os.geteuid() == 0 and sys_["can_bind_privileged_ports"]:
        assert line[0] == "  Can bind ports 80/443: YES (root)"


def test_health_without_capability(linkup_bin, env):
    prefix = setpriv_prefix()
    if prefix is None:
        pytest.skip("cannot drop CAP_NET_BIND_SERVICE here (setpriv missing)")
    if unprivileged_port_start() <= 80:
        pytest.skip("net.ipv4.ip_unprivileged_port_start makes port 80 unprivileged")
    env["LINKUP_HTTP_ADDR"] = "127.0.0.77:81"
    env["LINKUP_HTTPS_ADDR"] = "off"
    r = subprocess.run(prefix + [linkup_bin, "health"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0
    assert f"  Can bind ports 81: NO - run: {HINT}\n" in r.stdout
    r = subprocess.run(prefix + [linkup_bin, "health", "--json"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert json.loads(r.stdout)["system"]["can_bind_privileged_ports"] is False


def test_start_hint_when_bind_refused(linkup_bin, env, tmp_path):
    prefix = setpriv_prefix()
    if prefix is None:
        pytest.skip("cannot drop CAP_NET_BIND_SERVICE here (setpriv missing)")
    if unprivileged_port_start() <= 81:
        pytest.skip("net.ipv4.ip_unprivileged_port_start makes port 81 unprivileged")
    cfg = tmp_path / "linkup.yaml"
    cfg.write_text("""linkup:
  worker_url: http://127.0.0.1:9
  worker_token: token123
services:
  - name: web
    remote: http://127.0.0.1:9001
    local: http://127.0.0.1:9002
domains:
  - domain: example.com
    default_service: web
""")
    # A port below 1024 on an unused loopback address: without the capability
    # the bind fails before anything listens.
    env["LINKUP_HTTP_ADDR"] = "127.0.0.77:81"
    env["LINKUP_HTTPS_ADDR"] = "off"
    env["LINKUP_DNS_ADDR"] = "off"
    r = subprocess.run(prefix + [linkup_bin, "start", "--config", str(cfg)],
                       capture_output=True, text=True, env=env, timeout=90)
    assert r.returncode == 1, r.stderr
    assert "Exited with error: " in r.stderr
    assert HINT in r.stderr
    assert "127.0.0.77:81" in r.stderr
    home = pathlib.Path(env["LINKUP_HOME"])
    assert not (home / "localserver-pid").exists()
    lk.run(linkup_bin, "stop", env=env, timeout=30)
