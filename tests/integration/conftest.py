"""Integration tests: root, Mininet, real traffic in real namespaces.

Everything here is marked ``mininet``; only one such suite may run on a machine at a time.
The `no_leftovers` fixture compares what exists on the machine before and after each test:
namespaces (of processes, and held by bind mounts), root-namespace interfaces, OVS bridges,
our cgroups, run records, host shells.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.runtime.registry import all_pids, list_runs, netns_inode, run_root


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.mininet)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="needs root and Mininet"))


@dataclass(frozen=True)
class Snapshot:
    netns: frozenset
    links: frozenset
    ovs_bridges: frozenset
    cgroups: frozenset
    runs: frozenset
    shells: frozenset

    def minus(self, before: Snapshot) -> dict:
        diff = {}
        for name in self.__dataclass_fields__:
            extra = getattr(self, name) - getattr(before, name)
            if extra:
                diff[name] = sorted(map(str, extra))
        return diff


def snapshot() -> Snapshot:
    netns = {netns_inode(pid) for pid in all_pids()} - {None}
    root = str(run_root())
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4].startswith(root):
            netns.add(fields[4])  # a namespace a run still holds
    links = set(os.listdir("/sys/class/net"))
    res = subprocess.run(
        ["ovs-vsctl", "--timeout=5", "list-br"], capture_output=True, text=True, check=False
    )
    bridges = set(res.stdout.split())
    cgroups = set()
    for base in (
        "/sys/fs/cgroup/cpu/lvs-testbed",
        "/sys/fs/cgroup/cpuacct/lvs-testbed",
        "/sys/fs/cgroup/memory/lvs-testbed",
        "/sys/fs/cgroup/lvs-testbed",
    ):
        for dirpath, _dirs, _files in os.walk(base):
            cgroups.add(dirpath)
    shells = set()
    for pid in all_pids():
        try:
            cmdline = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
        if "mininet:" in cmdline or "testbed.traffic" in cmdline or "testbed.director" in cmdline:
            shells.add((pid, cmdline.strip()))
    return Snapshot(
        frozenset(netns),
        frozenset(links),
        frozenset(bridges),
        frozenset(cgroups),
        frozenset(list_runs()),
        frozenset(shells),
    )


def wait_for_no_leftovers(before: Snapshot, timeout_s: float = 5.0) -> dict:
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        diff = snapshot().minus(before)
        if not diff or time.monotonic() > deadline:
            return diff
        time.sleep(0.1)


@pytest.fixture
def no_leftovers():
    """Fails the test if it leaves anything behind."""
    before = snapshot()
    yield before
    diff = wait_for_no_leftovers(before)
    assert not diff, f"left behind: {diff}"
