"""Nothing is left after a normal run, a failing run, or a kill -9 followed by `clean`; `clean`
removes a killed run and leaves a live one alone; a second run is refused while one runs."""

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.net import nodes
from testbed.net.network import Testbed
from testbed.runtime.registry import (
    all_pids,
    held_netns,
    list_runs,
    netns_id,
    owner_alive,
    process_alive,
    read_records,
)
from testbed.runtime.runlock import read_holder
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


def start_up(*args: str) -> tuple[subprocess.Popen, bytes]:
    """``lvs-testbed up ARGS`` with its CLI on a pipe, once it is ready; (process, output)."""
    proc = subprocess.Popen(
        [*CLI, "up", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out = b""
    deadline = time.monotonic() + 90
    while b"Type `help`" not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            out += chunk
    if b"Type `help`" not in out:
        proc.kill()
        proc.wait()
        raise AssertionError(out.decode(errors="replace"))
    return proc, out


def run_of(proc: subprocess.Popen) -> Path:
    """The run directory whose owner is ``proc``."""
    return next(r for r in list_runs() if owner_alive(r) == proc.pid)


def processes_of(run_dir: Path) -> set[int]:
    """Every process in the namespaces run ``run_dir`` holds."""
    held = {
        held_netns(Path(r.data["mount"]))
        for r in read_records(run_dir)
        if r.kind == "netns" and r.data.get("mount")
    } - {None}
    return {pid for pid in all_pids() if netns_id(pid) in held}


def test_kill_9_then_clean_removes_that_run_and_leaves_the_next_alone():
    """Run A is killed with SIGKILL (its hosts and daemons live on), run B starts, then
    `clean`: A is gone entirely, B is untouched (every process, its namespaces, its lock) and
    still works, and once B exits nothing is left."""
    before = snapshot()
    a, _ = start_up("dr", "--rs", "2", "--director-cpu", "0.5")
    b = None
    try:
        run_a = run_of(a)
        assert snapshot().minus(before).get("cgroups")
        a.send_signal(signal.SIGKILL)
        a.wait()
        assert processes_of(run_a), "A's hosts should outlive its owner"
        b, _ = start_up("dr", "--rs", "2")
        run_b = run_of(b)
        b_procs = processes_of(run_b)
        assert b_procs

        res = subprocess.run([*CLI, "clean"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"{run_b.name}: still running (pid {b.pid})" in res.stdout
        assert f"{run_a.name}: removed" in res.stdout
        assert not run_a.exists()
        assert run_b.exists() and b.poll() is None
        assert all(process_alive(pid) for pid in b_procs), "clean touched run B"
        assert read_holder().pid == b.pid

        out, _ = b.communicate(b"c1 ping -c1 -W2 10.0.0.100\nexit\n", timeout=120)
        assert b.returncode == 0, out.decode(errors="replace")
        assert b"1 received" in out, out.decode(errors="replace")
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        subprocess.run([*CLI, "clean"], capture_output=True, timeout=60)
    diff = wait_for_no_leftovers(before)
    assert not diff, f"left behind after clean: {diff}"


def test_a_second_run_is_refused_naming_the_first(no_leftovers):
    first, _ = start_up("dr", "--rs", "1", "--clients", "1")
    try:
        res = subprocess.run(
            [*CLI, "up", "dr", "--no-cli"], capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 1
        assert f"pid {first.pid}" in res.stderr and "up dr" in res.stderr, res.stderr
        assert first.poll() is None
    finally:
        first.communicate(b"exit\n", timeout=60)
    assert first.returncode == 0


def test_clean_with_nothing_recorded_is_quiet():
    res = subprocess.run([*CLI, "clean"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "nothing to clean" in res.stdout
