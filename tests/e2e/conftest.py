"""Shared fixtures for the black-box tests: the binary under test and a
private LINKUP_HOME/HOME per test."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def linkup_bin():
    path = os.environ.get("LINKUP_BIN", str(ROOT / "build" / "linkup"))
    assert os.access(path, os.X_OK), f"no linkup binary at {path}"
    return path


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    home = tmp_path / "home"
    home.mkdir()
    e["HOME"] = str(home)
    e["LINKUP_HOME"] = str(home / ".linkup")
    e["LINKUP_NO_UPDATE_CHECK"] = "1"
    # No test reaches a release server unless it sets one up itself.
    e.pop("LINKUP_RELEASE_URL", None)
    e.pop("LINKUP_CONFIG", None)
    e["NO_COLOR"] = "1"
    return e
