"""The CLI's global behaviour: --version, --help, usage errors (exit 2)."""
import functools

import lk


run = functools.partial(lk.run, timeout=20)


def test_version(linkup_bin, env):
    r = run(linkup_bin, "--version", env=env)
    assert r.returncode == 0
    assert r.stdout == "linkup 4.1.1\n"
    assert run(linkup_bin, "-V", env=env).stdout == "linkup 4.1.1\n"


def test_help(linkup_bin, env):
    r = run(linkup_bin, "--help", env=env)
    assert r.returncode == 0
    assert "Connect remote and local dev/preview environments" in r.stdout
    assert "config" in r.stdout


def test_unknown_command_is_usage_error(linkup_bin, env):
    r = run(linkup_bin, "frobnicate", env=env)
    assert r.returncode == 2
    assert "frobnicate" in r.stderr


def test_unknown_option_is_usage_error(linkup_bin, env):
    r = run(linkup_bin, "--frobnicate", env=env)
    assert r.returncode == 2


def test_no_arguments_is_usage_error(linkup_bin, env):
    assert run(linkup_bin, env=env).returncode == 2


def test_config_without_value_is_usage_error(linkup_bin, env):
    assert run(linkup_bin, "--config", env=env).returncode == 2
