"""The run registry: what is recorded is removed by id, and nothing else."""

import subprocess
import sys

import pytest

from testbed.runtime import registry
from testbed.runtime.registry import (
    Run,
    clean_run,
    list_runs,
    owner_alive,
    proc_starttime,
    read_records,
)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("LVS_TESTBED_RUNDIR", str(tmp_path))
    return tmp_path


def sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_records_are_appended_and_read_back(root):
    run = Run("unit")
    run.record_link("s1-eth1")
    run.record_bridge("s1", "linux")
    records = read_records(run.dir)
    assert [r.kind for r in records] == ["owner", "link", "bridge"]
    assert records[1].data == {"name": "s1-eth1"}
    assert list_runs() == [run.dir]
    assert owner_alive(run.dir) is not None  # we are the owner


def test_a_recorded_process_is_stopped_and_the_run_removed(root):
    run = Run("unit")
    proc = sleeper()
    run.record_process(proc.pid, "sleeper")
    report = clean_run(run.dir, own_pid=-1)
    assert proc.pid in report.killed
    assert proc.wait(timeout=5) != 0
    assert not run.dir.exists()


def test_a_recycled_pid_is_left_alone(root):
    """A record whose start time does not match the live process is not ours any more."""
    run = Run("unit")
    proc = sleeper()
    try:
        run._append(
            registry.Record(
                "process", {"pid": proc.pid, "start": proc_starttime(proc.pid) + 1, "what": "x"}
            )
        )
        report = clean_run(run.dir, own_pid=-1)
        assert proc.pid not in report.killed
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_a_torn_last_line_is_ignored(root):
    run = Run("unit")
    with (run.dir / registry.RESOURCES).open("a") as f:
        f.write('{"kind": "link", "na')
    assert [r.kind for r in read_records(run.dir)] == ["owner"]


def test_starttime_of_a_missing_process_is_none():
    assert proc_starttime(2**22 + 12345) is None
