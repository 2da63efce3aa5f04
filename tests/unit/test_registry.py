"""The run registry: what is recorded is removed by id, and nothing else: not a stranger whose
namespace inode happens to match, not a same-named bridge or link of another run."""

import os
import subprocess
import sys
import time
from pathlib import Path

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


# -- namespaces: only a held one identifies processes ---------------------------------------------


def sleeper_in_own_netns() -> subprocess.Popen:
    """A process in a fresh network namespace holding only lo (as a torn-down host's is).
    unshare -r needs no root (a user namespace); skip where neither works."""
    argv = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    try:
        proc = subprocess.Popen([*argv, sys.executable, "-c", "import time; time.sleep(60)"])
    except FileNotFoundError:
        pytest.skip("no unshare here")
    deadline = time.monotonic() + 5
    while registry.netns_id(proc.pid) == registry.netns_id(os.getpid()):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.skip("cannot make a network namespace here")
        time.sleep(0.01)
    return proc


def test_a_matching_namespace_inode_that_is_not_ours_is_left_alone(root):
    """A killed run's record names a namespace by its inode. Once that namespace is gone the
    kernel hands the inode out again, here to a stranger's namespace. clean must leave the
    stranger alone: neither the old record (inode only) nor a held-namespace record whose
    mount is gone proves anything. (Before: the inode matched, the namespace held nothing but
    lo, so it was "verified" as the host's and its processes were killed.)"""
    stranger = sleeper_in_own_netns()
    try:
        run = Run("unit")
        dev, ino = registry.netns_id(stranger.pid)
        dead = {"pid": 2**22 + 4321, "start": 1, "host": "c1"}
        run._append(registry.Record("netns", {**dead, "inode": ino}))
        run._append(registry.Record("netns", {**dead, "mount": str(run.dir / "netns" / "c1")}))
        report = clean_run(run.dir, own_pid=-1)
        assert stranger.pid not in report.killed
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="holding a namespace is a bind mount: root")
def test_processes_in_a_held_namespace_are_stopped_and_the_hold_released(root):
    proc = sleeper_in_own_netns()
    try:
        run = Run("unit")
        mount = run.hold_netns(proc.pid, "h1")
        ns = registry.held_netns(mount)
        assert ns == registry.netns_id(proc.pid)
        report = clean_run(run.dir, own_pid=-1)
        assert proc.pid in report.killed and proc.wait(timeout=5) != 0
        assert "namespace of h1" in report.removed
        assert not run.dir.exists()
        assert str(mount) not in Path("/proc/self/mountinfo").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- root-namespace things: only tagged ones are removed ------------------------------------------


def test_only_bridges_and_links_carrying_the_runs_tag_are_removed(root, monkeypatch):
    run = Run("unit")
    run.record_bridge("s1", "ovs")
    run.record_bridge("s2", "ovs")
    run.record_link("s1-eth1")
    run.record_link("s1-eth2")
    tags = {"s1": "another-run", "s2": run.id}
    aliases = {"s1-eth1": registry.run_tag("another-run"), "s1-eth2": run.tag}
    monkeypatch.setattr(registry, "ovs_bridge_tag", lambda name: tags.get(name))
    monkeypatch.setattr(registry, "_link_exists", lambda name: name in aliases)
    monkeypatch.setattr(registry, "link_alias", lambda name: aliases.get(name))
    ran = []

    def run_command(argv):
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(registry, "_run", run_command)
    report = clean_run(run.dir, own_pid=-1)
    assert ["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", "s2"] in ran
    assert ["ip", "link", "del", "s1-eth2"] in ran
    assert not any("s1" in argv for argv in ran) and ["ip", "link", "del", "s1-eth1"] not in ran
    assert report.removed == ["ovs bridge s2", "interface s1-eth2"]
    assert len(report.skipped) == 2 and not report.errors


def test_clean_reports_the_kept_log_directory(root, tmp_path):
    run = Run("unit")
    run.record_logs(tmp_path / "logs")
    assert clean_run(run.dir, own_pid=-1).logs == str(tmp_path / "logs")


def test_a_process_reaped_while_its_stat_is_read_counts_as_gone(monkeypatch):
    """Reading /proc/PID/stat of a process being reaped fails with ESRCH, not ENOENT (seen
    in a layout's teardown): kill_pids must take it as gone, not crash."""
    real_read_text = registry.Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "stat" and self.parent.name == "424242":
            raise ProcessLookupError(3, "No such process")
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(registry.Path, "read_text", read_text)
    assert registry._is_zombie(424242)
    assert not registry.process_alive(424242)
