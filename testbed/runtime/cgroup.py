"""Host cgroups: CPU quotas on cgroup v1 (cpu + cpuacct) and v2 (cpu.max), memory limits on
v1 (memory.limit_in_bytes) and v2 (memory.max), and the group as the set of a host's
processes (what teardown kills).

A quota here is a fraction of ONE core (0.25 = a quarter of one core), unlike Mininet's
``CPULimitedHost(cpu=f)``, which means f of all cores. The CFS period is short by default
(10 ms) so a low quota gives a smooth ceiling instead of 100 ms stalls; when the quota would
fall below the kernel's 1 ms minimum, the period grows just enough (unless the caller fixed
it, in which case it is an error).

The arithmetic (`CpuQuota`) is pure. `HostCgroup` touches /sys/fs/cgroup; its root is a
parameter so tests can point it at a scratch directory. It is not a general cgroup library:
it creates one group per host under ``lvs-testbed/<run-id>/`` and removes it again. The
group's path holds the run id, so its members are provably the run's (unlike a pid or a
namespace inode, a path is not handed out again by the kernel).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PERIOD_US = 10_000
MIN_QUOTA_US = 1_000  # CFS refuses quotas below 1 ms
MAX_PERIOD_US = 1_000_000
CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_PREFIX = "lvs-testbed"


class CpuQuotaError(ValueError):
    """A quota that the kernel cannot enforce, or no cpu controller; the message names the fix."""


class MemoryLimitError(ValueError):
    """A memory limit this machine's cgroups cannot enforce; the message names the fix."""


MIN_MEMORY_LIMIT_BYTES = 16 << 20  # below this a Python daemon cannot even start


@dataclass(frozen=True)
class CpuQuota:
    """``fraction`` of one core, enforced by CFS bandwidth control with ``period_us``."""

    fraction: float
    period_us: int | None = None  # None: DEFAULT_PERIOD_US, lengthened if the quota needs it

    def __post_init__(self) -> None:
        if not self.fraction > 0:
            raise CpuQuotaError(
                f"a CPU quota must be a positive fraction of one core, got {self.fraction!r}"
            )
        if self.period_us is not None and not MIN_QUOTA_US <= self.period_us <= MAX_PERIOD_US:
            raise CpuQuotaError(
                f"the CFS period must be from {MIN_QUOTA_US} to {MAX_PERIOD_US} us, got "
                f"{self.period_us}"
            )
        if self.period_us is not None and self.period_us * self.fraction < MIN_QUOTA_US:
            need = math.ceil(MIN_QUOTA_US / self.fraction)
            raise CpuQuotaError(
                f"{self.fraction:g} of a core with a {self.period_us} us period is a quota under "
                "the "
                f"kernel's 1 ms minimum: use a period of at least {need} us"
            )

    @property
    def effective_period_us(self) -> int:
        if self.period_us is not None:
            return self.period_us
        need = math.ceil(MIN_QUOTA_US / self.fraction)
        period = max(DEFAULT_PERIOD_US, need)
        if period > MAX_PERIOD_US:
            raise CpuQuotaError(f"{self.fraction:g} of a core is too small to enforce (under 0.1%)")
        return period

    @property
    def quota_us(self) -> int:
        return max(MIN_QUOTA_US, round(self.effective_period_us * self.fraction))

    def v1_values(self) -> dict[str, str]:
        """Files and values for the cgroup v1 cpu controller."""
        return {
            "cpu.cfs_period_us": str(self.effective_period_us),
            "cpu.cfs_quota_us": str(self.quota_us),
        }

    def v2_values(self) -> dict[str, str]:
        """Files and values for cgroup v2."""
        return {"cpu.max": f"{self.quota_us} {self.effective_period_us}"}


def detect_cgroup_version(root: Path = CGROUP_ROOT) -> int | None:
    """2 if the unified hierarchy has the cpu controller, 1 if v1's cpu controller has CFS
    bandwidth control, None if neither (then quotas cannot be enforced)."""
    controllers = root / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return 2
    if (root / "cpu" / "cpu.cfs_quota_us").exists():
        return 1
    return None


def has_memory_controller(root: Path = CGROUP_ROOT, version: int | None = None) -> bool:
    """Whether memory limits can be enforced here (v1 'memory' hierarchy or v2 controller)."""
    version = version if version is not None else detect_cgroup_version(root)
    if version == 2:
        return "memory" in (root / "cgroup.controllers").read_text().split()
    return (root / "memory" / "memory.limit_in_bytes").exists()


class HostCgroup:
    """One host's cgroup: created with a CPU quota and optionally a memory limit, joined by
    processes, read, removed."""

    def __init__(
        self,
        run_id: str,
        name: str,
        root: Path = CGROUP_ROOT,
        version: int | None = None,
        memory: bool = False,
    ):
        self.version = version if version is not None else detect_cgroup_version(root)
        if self.version is None:
            raise CpuQuotaError(
                "no cgroup cpu controller with CFS bandwidth control here: CPU quotas need "
                "cgroup v1 'cpu' or cgroup v2 with the cpu controller (see `lvs-testbed doctor`)"
            )
        self.root = root
        self.rel = Path(GROUP_PREFIX) / run_id / name
        if memory and not has_memory_controller(root, self.version):
            raise MemoryLimitError(
                "no cgroup memory controller here: director memory limits need cgroup v1 "
                "'memory' or cgroup v2 with the memory controller; pass --director-mem-mib 0 "
                "to run without one"
            )
        self.memory = memory

    @property
    def dirs(self) -> list[Path]:
        """The group's directories: v1 has one per controller (cpu, cpuacct, memory), v2 one."""
        if self.version == 2:
            return [self.root / self.rel]
        dirs = [self.root / "cpu" / self.rel]
        acct = self.root / "cpuacct"
        if acct.exists() and not acct.samefile(self.root / "cpu"):
            dirs.append(acct / self.rel)
        if self.memory:
            dirs.append(self._memory_dir)
        return dirs

    @property
    def _memory_dir(self) -> Path:
        return self.root / self.rel if self.version == 2 else self.root / "memory" / self.rel

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def create(self, quota: CpuQuota | None, memory_limit_bytes: int | None = None) -> None:
        for d in self.dirs:
            if self.version == 2:
                self._enable_v2(d, ["cpu", "memory"] if self.memory else ["cpu"])
            d.mkdir(parents=True, exist_ok=True)
        if quota is not None:
            self.set_quota(quota)
        if memory_limit_bytes is not None:
            self.set_memory_limit(memory_limit_bytes)

    def set_memory_limit(self, limit_bytes: int | None) -> None:
        """Cap the group's memory (None: no cap). Past it the kernel reclaims, then kills
        inside the group only: the machine is never the one to run out."""
        if not self.memory:
            raise MemoryLimitError("this group was made without the memory controller")
        if limit_bytes is not None and limit_bytes < MIN_MEMORY_LIMIT_BYTES:
            raise MemoryLimitError(
                f"a memory limit of {limit_bytes} bytes is too small to run a daemon "
                f"(at least {MIN_MEMORY_LIMIT_BYTES >> 20} MiB)"
            )
        if self.version == 2:
            (self._memory_dir / "memory.max").write_text(
                "max" if limit_bytes is None else str(limit_bytes)
            )
        else:
            (self._memory_dir / "memory.limit_in_bytes").write_text(
                "-1" if limit_bytes is None else str(limit_bytes)
            )

    def memory_stats(self) -> dict[str, int]:
        """current_bytes, peak_bytes, limit_bytes (0: none), limit_hits (times usage hit the
        limit) and oom_kills, as far as the cgroup version reports them."""
        d = self._memory_dir

        def read_int(name: str) -> int:
            text = (d / name).read_text().strip()
            return 0 if text == "max" else int(text)

        if self.version == 2:
            events = dict(
                line.split() for line in (d / "memory.events").read_text().splitlines() if line
            )
            peak = d / "memory.peak"
            return {
                "current_bytes": read_int("memory.current"),
                "peak_bytes": read_int("memory.peak") if peak.exists() else 0,
                "limit_bytes": read_int("memory.max"),
                "limit_hits": int(events.get("max", 0)),
                "oom_kills": int(events.get("oom_kill", 0)),
            }
        oom = dict(
            line.split() for line in (d / "memory.oom_control").read_text().splitlines() if line
        )
        limit = read_int("memory.limit_in_bytes")
        return {
            "current_bytes": read_int("memory.usage_in_bytes"),
            "peak_bytes": read_int("memory.max_usage_in_bytes"),
            "limit_bytes": 0 if limit >= 1 << 62 else limit,  # v1 says "none" with a huge value
            "limit_hits": read_int("memory.failcnt"),
            "oom_kills": int(oom.get("oom_kill", 0)),
        }

    def set_quota(self, quota: CpuQuota | None) -> None:
        """Enforce ``quota``, or lift any quota (None)."""
        if quota is None:
            values = {"cpu.max": "max"} if self.version == 2 else {"cpu.cfs_quota_us": "-1"}
        else:
            values = quota.v2_values() if self.version == 2 else quota.v1_values()
        for fname, value in values.items():
            (self.dirs[0] / fname).write_text(value)

    def _enable_v2(self, leaf: Path, controllers: list[str]) -> None:
        # v2 lets a group use a controller only if every ancestor delegates it.
        parent = self.root
        for part in leaf.relative_to(self.root).parts:
            ctl = parent / "cgroup.subtree_control"
            enabled = ctl.read_text().split()
            for controller in controllers:
                if controller not in enabled:
                    ctl.write_text(f"+{controller}")
            parent = parent / part
            parent.mkdir(exist_ok=True)

    def add(self, pid: int) -> None:
        for f in self.procs_files:
            f.write_text(str(pid))

    def join_self(self) -> None:
        """Move the calling process into the group (a `subprocess` preexec_fn)."""
        self.add(os.getpid())

    def pids(self) -> list[int]:
        pids: set[int] = set()
        for f in self.procs_files:
            with contextlib.suppress(FileNotFoundError):
                pids.update(int(x) for x in f.read_text().split())
        return sorted(pids)

    def usage_s(self) -> float:
        """CPU time used by the group's processes so far, in seconds."""
        if self.version == 2:
            for line in (self.dirs[0] / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
            return 0.0
        acct = [d for d in self.dirs if "cpuacct" in d.parts]
        if not acct:
            raise CpuQuotaError(
                "cgroup v1 has no cpuacct controller: CPU accounting is unavailable"
            )
        return int((acct[0] / "cpuacct.usage").read_text()) / 1e9

    def remove(self, timeout_s: float = 2.0) -> None:
        """Remove the group (its processes must be gone) and the run's empty parent groups."""
        remove_group_dirs(self.dirs, timeout_s)


def remove_group_dirs(dirs: list[Path], timeout_s: float = 2.0) -> None:
    """rmdir each group and then its empty ``lvs-testbed/<run>`` parents; retries briefly
    because a killed process leaves its cgroup a moment after it is reaped."""
    deadline = time.monotonic() + timeout_s
    for d in dirs:
        while d.exists():
            try:
                d.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        run_dir, prefix_dir = d.parent, d.parent.parent
        if prefix_dir.name != GROUP_PREFIX:
            continue
        for parent in (run_dir, prefix_dir):
            try:
                parent.rmdir()
            except OSError:
                break  # still holds another host's or another run's group
