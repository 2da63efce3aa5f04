"""CPU quotas for hosts, on cgroup v1 (cpu + cpuacct) and cgroup v2 (cpu.max).

A quota here is a fraction of ONE core (0.25 = a quarter of one core), unlike Mininet's
``CPULimitedHost(cpu=f)``, which means f of all cores. The CFS period is short by default
(10 ms) so a low quota gives a smooth ceiling instead of 100 ms stalls; when the quota would
fall below the kernel's 1 ms minimum, the period grows just enough (unless the caller fixed
it, in which case it is an error).

The arithmetic (`CpuQuota`) is pure. `CgroupCpu` touches /sys/fs/cgroup; its root is a
parameter so tests can point it at a scratch directory. It is not a general cgroup library:
it creates one group per host under ``lvs-testbed/<run-id>/`` and removes it again.
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


class CgroupCpu:
    """One host's CPU cgroup: created with a quota, joined by processes, read, removed."""

    def __init__(
        self, run_id: str, name: str, root: Path = CGROUP_ROOT, version: int | None = None
    ):
        self.version = version if version is not None else detect_cgroup_version(root)
        if self.version is None:
            raise CpuQuotaError(
                "no cgroup cpu controller with CFS bandwidth control here: CPU quotas need "
                "cgroup v1 'cpu' or cgroup v2 with the cpu controller (see `lvs-testbed doctor`)"
            )
        self.root = root
        self.rel = Path(GROUP_PREFIX) / run_id / name

    @property
    def dirs(self) -> list[Path]:
        """The group's directories: v1 has one per controller (cpu, cpuacct), v2 one."""
        if self.version == 2:
            return [self.root / self.rel]
        dirs = [self.root / "cpu" / self.rel]
        acct = self.root / "cpuacct"
        if acct.exists() and not acct.samefile(self.root / "cpu"):
            dirs.append(acct / self.rel)
        return dirs

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def create(self, quota: CpuQuota | None) -> None:
        for d in self.dirs:
            if self.version == 2:
                self._enable_v2_cpu(d)
            d.mkdir(parents=True, exist_ok=True)
        if quota is not None:
            self.set_quota(quota)

    def set_quota(self, quota: CpuQuota | None) -> None:
        """Enforce ``quota``, or lift any quota (None)."""
        if quota is None:
            values = {"cpu.max": "max"} if self.version == 2 else {"cpu.cfs_quota_us": "-1"}
        else:
            values = quota.v2_values() if self.version == 2 else quota.v1_values()
        for fname, value in values.items():
            (self.dirs[0] / fname).write_text(value)

    def _enable_v2_cpu(self, leaf: Path) -> None:
        # v2 lets a group use a controller only if every ancestor delegates it.
        parent = self.root
        for part in leaf.relative_to(self.root).parts:
            ctl = parent / "cgroup.subtree_control"
            if "cpu" not in ctl.read_text().split():
                ctl.write_text("+cpu")
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
