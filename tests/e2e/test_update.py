"""`linkup update`, the release cache and the update notice (SPEC §6.1,
§6.5.9, DESIGN §2.15, docs/releases.md) against a release server on
loopback: a ThreadingHTTPServer serving a manifest and assets and counting
requests. The binary under test is always a copy of LINKUP_BIN in the test's
own directory, never the build's binary."""
import datetime
import functools
import json
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

import lk

NEW_SCRIPT = b"#!/bin/sh\necho linkup 9.9.9\n"
NOTICE = "\u26a0\ufe0f New version of linkup is available! Run `linkup update` to update it.\n\n"


class UpdateServer(lk.ReleaseServer):
    """The release server with the manifest at /rel/manifest.json."""

    def __init__(self):
        super().__init__()
        self.manifest_url = self.base + "/rel/manifest.json"

    def publish(self, releases):
        """releases: [(version, channel or None, asset url, sha256)]."""
        doc = []
        for version, channel, url, digest in releases:
            rel = {"version": version,
                   "assets": {"aarch64-apple-darwin": {"url": "mac.tar.gz", "sha256": "0" * 64},
                              lk.release_key(): {"url": url, "sha256": digest}}}
            if channel:
                rel["channel"] = channel
            doc.append(rel)
        self.manifest(doc, "rel/manifest.json")


@pytest.fixture
def server():
    s = UpdateServer()
    yield s
    s.close()


@pytest.fixture
def copy(linkup_bin, tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    dst = d / "linkup"
    shutil.copyfile(linkup_bin, dst)
    os.chmod(dst, 0o755)
    return dst


@pytest.fixture
def uenv(env, server):
    e = dict(env)
    e["LINKUP_RELEASE_URL"] = server.manifest_url
    e["LINKUP_NO_SETCAP"] = "1"
    e.pop("LINKUP_NO_UPDATE_CHECK", None)
    return e


def current_version(bin_):
    return lk.run(str(bin_), "--version", timeout=20).stdout.split()[1]


run = functools.partial(lk.run, timeout=30)


def leftovers(copy):
    return sorted(p.name for p in copy.parent.iterdir() if p.name != "linkup")


def cache_file(env):
    return os.path.join(env["LINKUP_HOME"], "releases_cache.json")


def test_update_to_newer_stable(server, copy, uenv):
    cur = current_version(copy)
    server.files["/rel/linkup-9.9.9"] = NEW_SCRIPT
    server.publish([("4.0.0", "stable", "linkup-old", "1" * 64),
                    ("9.9.9", "stable", "linkup-9.9.9", lk.sha256_hex(NEW_SCRIPT))])
    r = run(copy, "update", env=uenv)
    assert r.returncode == 0, r.stderr
    assert "Stopped linkup\n" in r.stdout
    assert f"Updating from version '{cur}' (stable) to '9.9.9' (stable)...\n" in r.stdout
    assert r.stdout.endswith(f"Updated linkup from {cur} to 9.9.9\nFinished update!\n")
    assert copy.read_bytes() == NEW_SCRIPT
    assert stat.S_IMODE(copy.stat().st_mode) == 0o755
    assert subprocess.run([str(copy)], capture_output=True, text=True,
                          timeout=10).stdout == "linkup 9.9.9\n"
    assert leftovers(copy) == []
    assert server.httpd.last_headers.get("User-Agent", "").startswith("linkup-cli")

    with open(cache_file(uenv)) as f:
        text = f.read()
    assert text.startswith("{\n  \"fetched_at\": ")
    cache = json.loads(text)
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    assert abs(cache["fetched_at"] - now) < 60
    assert cache["next_fetch_at"] == (cache["fetched_at"] // 86400 + 1) * 86400
    assert cache["releases"] == [{
        "channel": "Stable",
        "version": {"major": 9, "minor": 9, "patch": 9, "pre_release": None},
        "binary": {"name": "linkup-9.9.9",
                   "browser_download_url": server.base + "/rel/linkup-9.9.9",
                   "sha256": lk.sha256_hex(NEW_SCRIPT)},
    }]


def test_unwritable_directory_says_to_use_sudo(server, copy, uenv):
    """A binary whose directory the user cannot write (e.g. /usr/local/bin) is left alone,
    before anything is stopped, with the command that works."""
    server.files["/rel/linkup-9.9.9"] = NEW_SCRIPT
    server.publish([("9.9.9", "stable", "linkup-9.9.9", lk.sha256_hex(NEW_SCRIPT))])
    top = pathlib.Path(tempfile.mkdtemp(prefix="lk-update-"))  # /tmp: reachable by nobody
    try:
        os.chmod(top, 0o755)
        bindir, home = top / "bin", top / "home"
        bindir.mkdir()
        home.mkdir()
        exe = bindir / "linkup"
        shutil.copyfile(copy, exe)
        os.chmod(exe, 0o755)
        before = exe.read_bytes()
        env = {**uenv, "HOME": str(home), "LINKUP_HOME": str(home / ".linkup")}
        argv = [str(exe), "update"]
        if os.geteuid() == 0:  # root writes anywhere: run as nobody, as a user would be
            if shutil.which("setpriv") is None:
                pytest.skip("setpriv missing")
            os.chown(home, 65534, 65534)
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + argv
        os.chmod(bindir, 0o555)
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
        assert r.returncode == 1, r.stderr
        assert (f"Exited with error: Cannot update {exe}: its directory {bindir} is not "
                "writable (Permission denied); run: sudo linkup update\n") in r.stderr
        assert "Stopped linkup" not in r.stdout
        assert exe.read_bytes() == before
    finally:
        if (top / "bin").exists():
            os.chmod(top / "bin", 0o755)
        shutil.rmtree(top)


def test_update_from_tar_gz(server, copy, uenv):
    tgz = lk.tar_gz([("README", b"read me\n"), ("linkup-9.9.9/", None),
                    ("linkup-9.9.9/linkup", NEW_SCRIPT)])
    server.files["/dl/linkup.tar.gz"] = tgz
    server.publish([("9.9.9", None, "/dl/linkup.tar.gz", lk.sha256_hex(tgz).upper())])
    r = run(copy, "update", env=uenv)
    assert r.returncode == 0, r.stderr
    assert copy.read_bytes() == NEW_SCRIPT
    assert stat.S_IMODE(copy.stat().st_mode) == 0o755
    assert leftovers(copy) == []


def test_tar_gz_without_linkup_entry_is_refused(server, copy, uenv):
    before = copy.read_bytes()
    tgz = lk.tar_gz([("README", b"read me\n"), ("bin/other", NEW_SCRIPT)])
    server.files["/dl/x.tar.gz"] = tgz
    server.publish([("9.9.9", None, "/dl/x.tar.gz", lk.sha256_hex(tgz))])
    r = run(copy, "update", env=uenv)
    assert r.returncode == 1
    assert ("Exited with error: Failed to download new version: "
            "File missing from downloaded compressed archive") in r.stderr
    assert copy.read_bytes() == before
    assert leftovers(copy) == []


def test_channel_beta(server, copy, uenv):
    cur = current_version(copy)
    server.files["/rel/beta"] = NEW_SCRIPT
    server.publish([(cur, "stable", "same", "2" * 64),
                    ("0.0.0-next-2030-01-01", "beta", "beta", lk.sha256_hex(NEW_SCRIPT))])
    before = copy.read_bytes()
    r = run(copy, "update", env=uenv)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "No new version available.\n"
    assert copy.read_bytes() == before
    r = run(copy, "update", "--channel", "beta", env=uenv)
    assert r.returncode == 0, r.stderr
    assert (f"Updating from version '{cur}' (stable) to '0.0.0-next-2030-01-01' (beta)...\n"
            in r.stdout)
    assert copy.read_bytes() == NEW_SCRIPT


def test_no_update_when_current(server, copy, uenv):
    cur = current_version(copy)
    server.publish([(cur, "stable", "same", "3" * 64), ("1.0.0", "stable", "old", "4" * 64)])
    before = copy.read_bytes()
    r = run(copy, "update", env=uenv)
    assert (r.returncode, r.stdout) == (0, "No new version available.\n")
    assert copy.read_bytes() == before
    assert server.hits_of("/rel/same") == 0


def test_cache_respected_and_skip_cache(server, copy, uenv):
    cur = current_version(copy)
    server.publish([(cur, "stable", "same", "3" * 64)])
    assert run(copy, "update", env=uenv).stdout == "No new version available.\n"
    assert server.hits_of("/rel/manifest.json") == 1
    # A newer release appears, but the cache answers until the next UTC midnight.
    server.files["/rel/new"] = NEW_SCRIPT
    server.publish([("9.9.9", "stable", "new", lk.sha256_hex(NEW_SCRIPT))])
    assert run(copy, "update", env=uenv).stdout == "No new version available.\n"
    assert server.hits_of("/rel/manifest.json") == 1
    r = run(copy, "update", "--skip-cache", env=uenv)
    assert r.returncode == 0, r.stderr
    assert server.hits_of("/rel/manifest.json") == 2
    assert copy.read_bytes() == NEW_SCRIPT


def test_expired_or_broken_cache_is_refetched(server, copy, uenv):
    cur = current_version(copy)
    server.publish([(cur, "stable", "same", "3" * 64)])
    os.makedirs(uenv["LINKUP_HOME"], exist_ok=True)
    with open(cache_file(uenv), "w") as f:
        json.dump({"fetched_at": 1, "next_fetch_at": 86400, "releases": []}, f)
    assert run(copy, "update", env=uenv).stdout == "No new version available.\n"
    assert server.hits_of("/rel/manifest.json") == 1
    with open(cache_file(uenv), "w") as f:
        f.write("{not json")
    assert run(copy, "update", env=uenv).stdout == "No new version available.\n"
    assert server.hits_of("/rel/manifest.json") == 2
    assert json.load(open(cache_file(uenv)))["next_fetch_at"] > 86400


def test_digest_mismatch_keeps_old_binary(server, copy, uenv):
    before = copy.read_bytes()
    server.files["/rel/new"] = NEW_SCRIPT
    server.publish([("9.9.9", "stable", "new", "ab" * 32)])
    r = run(copy, "update", env=uenv)
    assert r.returncode == 1
    assert (f"Exited with error: Failed to download new version: SHA-256 mismatch "
            f"(expected {'ab' * 32}, got {lk.sha256_hex(NEW_SCRIPT)})") in r.stderr
    assert copy.read_bytes() == before
    assert leftovers(copy) == []
    assert "Finished update!" not in r.stdout


def test_download_404_keeps_old_binary(server, copy, uenv):
    before = copy.read_bytes()
    server.publish([("9.9.9", "stable", "missing", lk.sha256_hex(NEW_SCRIPT))])
    r = run(copy, "update", env=uenv)
    assert r.returncode == 1
    assert "Exited with error: Failed to download new version: HTTP 404" in r.stderr
    assert copy.read_bytes() == before
    assert leftovers(copy) == []


def test_manifest_unreachable(copy, uenv):
    uenv["LINKUP_RELEASE_URL"] = f"http://127.0.0.1:{lk.free_port()}/manifest.json"
    r = run(copy, "update", env=uenv)
    assert r.returncode == 1
    assert "Exited with error: Failed to fetch release manifest: " in r.stderr
    assert not os.path.exists(cache_file(uenv))


def test_manifest_http_error_and_garbage(server, copy, uenv):
    r = run(copy, "update", env=uenv)
    assert r.returncode == 1
    assert "Exited with error: Failed to fetch release manifest: HTTP 404 Not Found" in r.stderr
    server.files["/rel/manifest.json"] = b"<html>"
    r = run(copy, "update", env=uenv)
    assert r.returncode == 1
    assert "Failed to fetch release manifest: malformed manifest" in r.stderr
    assert not os.path.exists(cache_file(uenv))


def test_no_release_url(copy, uenv):
    del uenv["LINKUP_RELEASE_URL"]
    r = run(copy, "update", env=uenv)
    assert r.returncode == 1
    assert "Exited with error: No release manifest configured: set LINKUP_RELEASE_URL" in r.stderr


def test_usage(copy, uenv):
    r = run(copy, "update", "--channel", "nightly", env=uenv)
    assert r.returncode == 2
    assert run(copy, "update", "--bogus", env=uenv).returncode == 2
    r = run(copy, "update", "--help", env=uenv)
    assert r.returncode == 0
    assert "--channel" in r.stdout and "--skip-cache" in r.stdout
    assert "Update linkup to the latest released version." in run(copy, "--help", env=uenv).stdout


def test_notice(server, copy, uenv):
    server.files["/rel/new"] = NEW_SCRIPT
    server.publish([("9.9.9", "stable", "new", lk.sha256_hex(NEW_SCRIPT))])
    r = run(copy, "status", env=uenv)
    assert r.stdout.startswith(NOTICE), r.stdout
    r = run(copy, "stop", env=uenv)
    assert r.stdout.startswith(NOTICE)
    # Two commands, one manifest request: the cache answers the second.
    assert server.hits_of("/rel/manifest.json") == 1
    assert NOTICE not in run(copy, "status", "--json", env=uenv).stdout
    assert NOTICE not in run(copy, "health", "--json", env=uenv).stdout
    assert NOTICE not in run(copy, "completion", "--shell", "bash", env=uenv).stdout
    quiet = dict(uenv, LINKUP_NO_UPDATE_CHECK="1")
    assert NOTICE not in run(copy, "status", env=quiet).stdout
    assert server.hits_of("/rel/manifest.json") == 1
    assert server.hits_of("/rel/new") == 0


def cache_newer_release(uenv):
    """A fresh cache that knows 9.9.9, and a release URL nothing answers:
    the notice can only come from the cache."""
    uenv["LINKUP_RELEASE_URL"] = f"http://127.0.0.1:{lk.free_port()}/manifest.json"
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    os.makedirs(uenv["LINKUP_HOME"], exist_ok=True)
    with open(cache_file(uenv), "w") as f:
        json.dump({"fetched_at": now, "next_fetch_at": (now // 86400 + 1) * 86400, "releases": [{
            "channel": "Stable",
            "version": {"major": 9, "minor": 9, "patch": 9, "pre_release": None},
            "binary": {"name": "x", "browser_download_url": "http://127.0.0.1:9/x",
                       "sha256": "0" * 64}}]}, f)


def test_notice_from_cache_without_network(copy, uenv):
    # A cache saying a newer version exists is enough: no request is made.
    cache_newer_release(uenv)
    r = run(copy, "status", env=uenv)
    assert r.stdout.startswith(NOTICE)


@pytest.mark.parametrize("args", [
    ["status", "--bogus"], ["stop", "extra"], ["route", "sideways", "web"], ["health", "-x"],
    ["sessions", "list", "--bogus"], ["sessions", "create-preview", "--bogus"],
    ["local-dns", "install", "--bogus"], ["inspect", "-n", "0"], ["infra", "deploy"],
    ["start", "--bogus"]])
def test_no_notice_before_a_usage_error(copy, uenv, args):
    """SPEC §6.1: usage errors come from the argument parser, which in the
    original runs before anything else: a usage error prints nothing on
    stdout, even when a newer release is known; a command that parses
    still gets the notice first."""
    cache_newer_release(uenv)
    r = run(copy, *args, env=uenv)
    assert (r.returncode, r.stdout) == (2, ""), (r.stdout, r.stderr)
    assert r.stderr.startswith("linkup: ") or "Usage:" in r.stderr, r.stderr
    assert run(copy, "stop", env=uenv).stdout == NOTICE + "Stopped linkup\n"


def test_valid_cache_answers_without_a_release_url(copy, uenv):
    """SPEC §6.1/§6.5.9 (DESIGN §2.15): a still-valid releases_cache.json is
    the release list; without LINKUP_RELEASE_URL the notice and `update`
    still read it (nothing to fetch from), and an absent cache says so."""
    del uenv["LINKUP_RELEASE_URL"]
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    os.makedirs(uenv["LINKUP_HOME"], exist_ok=True)
    with open(cache_file(uenv), "w") as f:
        json.dump({"fetched_at": now, "next_fetch_at": (now // 86400 + 1) * 86400, "releases": [{
            "channel": "Stable",
            "version": {"major": 9, "minor": 9, "patch": 9, "pre_release": None},
            "binary": {"name": "x", "browser_download_url": f"http://127.0.0.1:{lk.free_port()}/x",
                       "sha256": "0" * 64}}]}, f)
    r = run(copy, "stop", env=uenv)
    assert r.stdout == NOTICE + "Stopped linkup\n", r.stdout
    r = run(copy, "update", env=uenv)
    assert r.returncode == 1
    assert "Updating from version" in r.stdout and "to '9.9.9' (stable)" in r.stdout, r.stdout
    assert "Exited with error: Failed to download new version: " in r.stderr, r.stderr
    os.unlink(cache_file(uenv))
    r = run(copy, "stop", env=uenv)
    assert r.stdout == "Stopped linkup\n"
    assert not os.path.exists(cache_file(uenv))


def test_notice_when_current_or_failing(server, copy, uenv):
    cur = current_version(copy)
    server.publish([(cur, "stable", "same", "3" * 64)])
    assert NOTICE not in run(copy, "status", env=uenv).stdout
    assert server.hits_of("/rel/manifest.json") == 1
    # A failed check is cached too (empty list until the next UTC midnight).
    os.unlink(cache_file(uenv))
    del server.files["/rel/manifest.json"]
    r1 = run(copy, "status", env=uenv)
    r2 = run(copy, "stop", env=uenv)
    assert NOTICE not in r1.stdout + r2.stdout
    assert r2.returncode == 0 and r2.stdout == "Stopped linkup\n"
    assert server.hits_of("/rel/manifest.json") == 2
    cache = json.load(open(cache_file(uenv)))
    assert cache["releases"] == []
    assert cache["next_fetch_at"] == (cache["fetched_at"] // 86400 + 1) * 86400
    # `update` does not trust an empty cache: it asks again.
    assert run(copy, "update", env=uenv).returncode == 1
    assert server.hits_of("/rel/manifest.json") == 3


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("getcap") is None
                    or shutil.which("setcap") is None,
                    reason="needs root and getcap/setcap (libcap2-bin)")
def test_setcap_applied(server, copy, uenv):
    del uenv["LINKUP_NO_SETCAP"]
    server.files["/rel/new"] = NEW_SCRIPT
    server.publish([("9.9.9", "stable", "new", lk.sha256_hex(NEW_SCRIPT))])
    r = run(copy, "update", env=uenv)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([shutil.which("getcap"), str(copy)], capture_output=True, text=True,
                         timeout=10).stdout
    assert "cap_net_bind_service" in out, (out, r.stderr)


class StallingAsset(lk.OneShotServer):
    """An asset server on 127.0.0.1:0 that announces 64 MiB, sends 256 KiB
    and then stalls until closed: the download is under way and not done."""

    def __init__(self):
        super().__init__()
        self.url += "/linkup-9.9.9"

    def handle(self, c):
        lk.read_http_head(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (64 * 1024 * 1024))
        c.sendall(b"x" * 256 * 1024)
        self.stop.wait(30)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_update_killed_mid_download_leaves_no_temp_file(server, copy, uenv, sig):
    asset = StallingAsset()
    try:
        server.publish([("9.9.9", "stable", asset.url, "0" * 64)])
        before = copy.read_bytes()
        p = subprocess.Popen([str(copy), "update"], env=uenv, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not leftovers(copy):
            time.sleep(0.05)
        assert leftovers(copy), "the download never started"
        time.sleep(0.3)  # bytes are being written into the temp file
        p.send_signal(sig)
        p.communicate(timeout=15)
        assert p.returncode == -sig
        assert leftovers(copy) == []
        assert copy.read_bytes() == before
    finally:
        asset.close()


def test_cache_in_the_original_shape(server, copy, uenv):
    """SPEC §6.5.9's cache has no "sha256": it still tells of an update (and
    is kept), while `update` fetches the manifest first, since it installs
    only what it can verify."""
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    os.makedirs(uenv["LINKUP_HOME"], exist_ok=True)
    with open(cache_file(uenv), "w") as f:
        json.dump({"fetched_at": now, "next_fetch_at": (now // 86400 + 1) * 86400, "releases": [{
            "channel": "Stable",
            "version": {"major": 9, "minor": 9, "patch": 9, "pre_release": None},
            "binary": {"name": "x", "browser_download_url": server.base + "/rel/unverified"}}]}, f)
    r = run(copy, "stop", env=uenv)
    assert r.stdout == NOTICE + "Stopped linkup\n", r.stdout
    assert os.path.exists(cache_file(uenv))
    assert server.hits_of("/rel/manifest.json") == 0

    server.files["/rel/linkup-9.9.9"] = NEW_SCRIPT
    server.publish([("9.9.9", "stable", "linkup-9.9.9", lk.sha256_hex(NEW_SCRIPT))])
    r = run(copy, "update", env=uenv)
    assert r.returncode == 0, r.stderr
    assert server.hits_of("/rel/manifest.json") == 1
    assert server.hits_of("/rel/unverified") == 0
    assert copy.read_bytes() == NEW_SCRIPT


def original_shape_cache(uenv, releases):
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    os.makedirs(uenv["LINKUP_HOME"], exist_ok=True)
    with open(cache_file(uenv), "w") as f:
        json.dump({"fetched_at": now, "next_fetch_at": (now // 86400 + 1) * 86400, "releases": [{
            "channel": ch, "version": {"major": v[0], "minor": v[1], "patch": v[2], "pre_release": None},
            "binary": {"name": "x", "browser_download_url": f"http://127.0.0.1:{lk.free_port()}/x"}}
            for ch, v in releases]}, f)


@pytest.mark.parametrize("releases,args", [
    ([("Stable", (0, 0, 1))], ()),              # an older stable release
    ([], ()),                                   # nothing known
    ([("Stable", (9, 9, 9))], ("--channel", "beta")),  # no beta release known
])
def test_original_shape_cache_without_a_release_url(copy, uenv, releases, args):
    """SPEC §6.1/§6.5.9: a pre-seeded cache in the original's shape (no
    "sha256") answers `update` when there is no manifest to fetch: no release
    newer than this one for the channel is "No new version available."."""
    del uenv["LINKUP_RELEASE_URL"]
    original_shape_cache(uenv, releases)
    r = run(copy, "update", *args, env=uenv)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "No new version available.\n"
    assert os.path.exists(cache_file(uenv))


def test_original_shape_cache_update_without_digest_is_refused(copy, uenv):
    """A newer release that the cache cannot verify is not downloaded, and
    nothing is stopped for it."""
    del uenv["LINKUP_RELEASE_URL"]
    original_shape_cache(uenv, [("Stable", (9, 9, 9))])
    before = copy.read_bytes()
    r = run(copy, "update", env=uenv)
    assert r.returncode == 1
    assert r.stderr.endswith("Exited with error: Cannot verify version '9.9.9': the release cache has "
                             "no SHA-256 for it; set LINKUP_RELEASE_URL to fetch the release manifest\n"), r.stderr
    assert "Updating from version" not in r.stdout
    assert copy.read_bytes() == before
