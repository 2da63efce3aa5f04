"""The machine-wide run lock (runlock.py): re-entrant within a process, a second process is
refused with the holder named, a killed holder frees it, and `clean` holds it while it
cleans unless a live run does."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from testbed.runtime import runlock


@pytest.fixture(autouse=True)
def own_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LVS_TESTBED_RUNDIR", str(tmp_path / "runs"))
    yield tmp_path / "runs.lock"
    while runlock.held_here():
        runlock.release()


def other_process(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in another Python process with the same lock file."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        env=os.environ,
    )


def holding_process() -> subprocess.Popen:
    """Another Python process that has taken the lock (and holds it for up to a minute)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from testbed.runtime import runlock; import time; runlock.acquire(); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


TRY_ACQUIRE = """
    from testbed.runtime import runlock
    try:
        runlock.acquire()
    except runlock.RunLockBusy as exc:
        print("BUSY", exc)
    else:
        print("GOT")
"""


def test_the_lock_file_sits_beside_the_run_root(own_lock):
    assert runlock.lock_path() == own_lock


def test_a_second_process_is_refused_with_the_holder_named(own_lock):
    runlock.acquire()
    res = other_process(TRY_ACQUIRE)
    assert res.stdout.startswith("BUSY"), res.stdout + res.stderr
    assert f"pid {os.getpid()}" in res.stdout and str(own_lock) in res.stdout
    assert "running since" in res.stdout
    holder = runlock.read_holder()
    assert holder.pid == os.getpid() and holder.alive()


def test_it_is_reentrant_within_a_process_and_freed_by_the_last_release():
    runlock.acquire()
    runlock.acquire()  # a second layout of the same process
    runlock.release()
    assert other_process(TRY_ACQUIRE).stdout.startswith("BUSY")
    runlock.release()
    assert not runlock.held_here()
    assert other_process(TRY_ACQUIRE).stdout.startswith("GOT")


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock():
    holder = holding_process()
    try:
        with pytest.raises(runlock.RunLockBusy):
            runlock.acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        runlock.acquire()
        assert runlock.held_here()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_clean_holds_the_lock_when_free_and_names_the_holder_when_not():
    with runlock.held_or_holder() as holder:
        assert holder is None and runlock.held_here()
        assert other_process(TRY_ACQUIRE).stdout.startswith("BUSY")
    assert not runlock.held_here()
    blocker = holding_process()
    try:
        with runlock.held_or_holder() as holder:
            assert holder is not None and holder.pid == blocker.pid and holder.alive()
            assert not runlock.held_here()
    finally:
        blocker.kill()
        blocker.wait()
