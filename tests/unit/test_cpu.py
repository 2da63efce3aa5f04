"""CPU quota arithmetic (v1 and v2) and the cgroup file operations on a scratch tree."""

import pathlib

import pytest

from testbed.runtime.cgroup import (
    CpuQuota,
    CpuQuotaError,
    HostCgroup,
    MemoryLimitError,
    detect_cgroup_version,
)


def test_fraction_of_one_core_with_short_period():
    q = CpuQuota(0.25)
    assert q.effective_period_us == 10_000 and q.quota_us == 2_500
    assert q.v1_values() == {"cpu.cfs_period_us": "10000", "cpu.cfs_quota_us": "2500"}
    assert q.v2_values() == {"cpu.max": "2500 10000"}


def test_more_than_one_core():
    assert CpuQuota(1.5).v2_values() == {"cpu.max": "15000 10000"}


def test_period_grows_so_the_quota_stays_above_one_ms():
    q = CpuQuota(0.05)
    assert q.effective_period_us == 20_000 and q.quota_us == 1_000


def test_explicit_period_too_short_is_an_error_with_the_fix():
    with pytest.raises(CpuQuotaError, match="at least 20000 us"):
        CpuQuota(0.05, period_us=10_000)


@pytest.mark.parametrize("bad", [0, -0.5])
def test_non_positive_fraction(bad):
    with pytest.raises(CpuQuotaError):
        CpuQuota(bad)


def make_v1(root):
    for ctl in ("cpu", "cpuacct"):
        (root / ctl).mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    return root


def make_v2(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids")
    (root / "cgroup.subtree_control").write_text("")
    return root


def test_detect_versions(tmp_path):
    assert detect_cgroup_version(make_v1(tmp_path / "a")) == 1
    assert detect_cgroup_version(make_v2(tmp_path / "b")) == 2
    (tmp_path / "c").mkdir()
    assert detect_cgroup_version(tmp_path / "c") is None


def test_v1_group_files(tmp_path):
    root = make_v1(tmp_path)
    g = HostCgroup("run1", "d1", root=root)
    g.create(CpuQuota(0.2))
    base = root / "cpu" / "lvs-testbed" / "run1" / "d1"
    assert (base / "cpu.cfs_quota_us").read_text() == "2000"
    assert (base / "cpu.cfs_period_us").read_text() == "10000"
    assert [p.parent for p in g.procs_files] == [
        base,
        root / "cpuacct" / "lvs-testbed" / "run1" / "d1",
    ]
    g.add(1234)
    assert (base / "cgroup.procs").read_text() == "1234"


def test_v2_group_enables_cpu_in_every_ancestor(tmp_path, monkeypatch):
    root = make_v2(tmp_path)
    orig_mkdir = pathlib.Path.mkdir

    def mkdir(self, *a, **kw):
        # A real cgroupfs gives each new group its own subtree_control file.
        orig_mkdir(self, *a, **kw)
        ctl = self / "cgroup.subtree_control"
        if not ctl.exists():
            ctl.write_text("")

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    HostCgroup("run1", "d1", root=root).create(CpuQuota(0.5))
    assert (root / "cgroup.subtree_control").read_text() == "+cpu"
    assert (root / "lvs-testbed" / "cgroup.subtree_control").read_text() == "+cpu"
    assert (root / "lvs-testbed" / "run1" / "cgroup.subtree_control").read_text() == "+cpu"
    assert (root / "lvs-testbed" / "run1" / "d1" / "cpu.max").read_text() == "5000 10000"


def test_no_controller_is_a_clear_error(tmp_path):
    with pytest.raises(CpuQuotaError, match="no cgroup cpu controller"):
        HostCgroup("r", "h", root=tmp_path)


def make_v1_memory(root):
    make_v1(root)
    (root / "memory").mkdir()
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    return root


def test_v1_memory_limit_and_readings(tmp_path):
    root = make_v1_memory(tmp_path)
    g = HostCgroup("run1", "d1", root=root, memory=True)
    assert g.dirs[-1] == root / "memory" / "lvs-testbed" / "run1" / "d1"
    g.create(None, memory_limit_bytes=256 << 20)
    mem = g.dirs[-1]
    assert (mem / "memory.limit_in_bytes").read_text() == str(256 << 20)
    for name, value in (
        ("memory.usage_in_bytes", "1000"),
        ("memory.max_usage_in_bytes", "2000"),
        ("memory.failcnt", "3"),
        ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"),
    ):
        (mem / name).write_text(value)
    assert g.memory_stats() == {
        "current_bytes": 1000,
        "peak_bytes": 2000,
        "limit_bytes": 256 << 20,
        "limit_hits": 3,
        "oom_kills": 1,
    }


def test_v2_memory_limit_is_delegated_and_written(tmp_path, monkeypatch):
    root = make_v2(tmp_path)
    writes = []
    orig_mkdir, orig_write = pathlib.Path.mkdir, pathlib.Path.write_text

    def mkdir(self, *a, **kw):
        orig_mkdir(self, *a, **kw)
        if not (self / "cgroup.subtree_control").exists():
            orig_write(self / "cgroup.subtree_control", "")

    def write_text(self, text, *a, **kw):
        if self.name == "cgroup.subtree_control":
            writes.append((self.parent.name, text))
        return orig_write(self, text, *a, **kw)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    g = HostCgroup("run1", "d1", root=root, memory=True)
    g.create(None, memory_limit_bytes=64 << 20)
    for parent in (root.name, "lvs-testbed", "run1"):
        assert (parent, "+cpu") in writes and (parent, "+memory") in writes
    assert (g.dirs[0] / "memory.max").read_text() == str(64 << 20)


def test_no_memory_controller_is_an_error_naming_the_fix(tmp_path):
    with pytest.raises(MemoryLimitError, match="--director-mem-mib 0"):
        HostCgroup("r", "d1", root=make_v1(tmp_path), memory=True)


def test_a_memory_limit_too_small_to_run_a_daemon_is_refused(tmp_path):
    g = HostCgroup("r", "d1", root=make_v1_memory(tmp_path), memory=True)
    g.create(None)
    with pytest.raises(MemoryLimitError, match="too small"):
        g.set_memory_limit(1 << 20)
