"""Nothing is left after a normal run, a failing run, or a kill -9 followed by `clean`."""

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from testbed.net import nodes
from testbed.net.network import Testbed
from testbed.topo.plan import LayoutParams

from .conftest import snapshot, wait_for_no_leftovers

CLI = [sys.executable, "-m", "testbed"]


def test_up_no_cli_leaves_nothing(no_leftovers):
    res = subprocess.run(
        [*CLI, "up", "nat", "--rs", "2", "--no-cli"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "WRONG" not in res.stdout


def test_a_run_failing_mid_build_leaves_nothing(no_leftovers, monkeypatch):
    def broken_config(self, **params):
        raise nodes.NodeConfigError("rs1: simulated failure")

    monkeypatch.setattr(nodes.RealServerHost, "config", broken_config)
    with pytest.raises(nodes.NodeConfigError, match="simulated"):
        Testbed("dr", LayoutParams(n_rs=2)).start()


def test_kill_9_then_clean_leaves_nothing():
    before = snapshot()
    proc = subprocess.Popen(
        [*CLI, "up", "dr", "--rs", "2", "--director-cpu", "0.5"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out = b""
        deadline = time.monotonic() + 60
        while b"Type `help`" not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                out += chunk
        assert b"Type `help`" in out, out.decode(errors="replace")
        during = snapshot().minus(before)
        assert during.get("runs") and during.get("cgroups")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    res = subprocess.run([*CLI, "clean"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    diff = wait_for_no_leftovers(before)
    assert not diff, f"left behind after clean: {diff}"


def test_clean_with_nothing_recorded_is_quiet():
    res = subprocess.run([*CLI, "clean"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "nothing to clean" in res.stdout
