"""`make run`'s demo (scripts/run.sh): a worker, two sample services and the
local server through `linkup start`, a service routed remote -> local ->
remote; Ctrl-C (SIGINT, the documented way to end it: exit 0) or SIGTERM
stops everything it started and ends it."""
import os
import signal
import subprocess
import time

import pytest

from conftest import ROOT


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 0), (signal.SIGTERM, 143)])
def test_demo_routes_and_stops_cleanly(linkup_bin, env, sig, status):
    p = subprocess.Popen(["bash", str(ROOT / "scripts" / "run.sh")],
                         env=dict(env, LINKUP_BIN=linkup_bin), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            out.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(out)
        assert "Press Ctrl-C to stop everything." in text, text
        # remote, then local, then remote again
        answers = [line.strip() for line in out if line.strip() in ("remote web", "local web")]
        assert answers == ["remote web", "local web", "remote web"], text
        p.send_signal(sig)
        rest, _ = p.communicate(timeout=30)
        assert "Stopped." in rest, rest
        assert p.returncode == status  # so `make run` ends quietly on Ctrl-C
        # Nothing it started is left in its session.
        time.sleep(0.5)
        try:
            os.killpg(p.pid, 0)
            left = True
        except ProcessLookupError:
            left = False
        assert not left, "demo processes left running"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
