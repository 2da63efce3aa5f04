"""Small readers of what the kernel counts: /proc/stat CPU times, /proc/net/dev interface
counters, cumulative CPU usage readings (of a cgroup, a process).

For: experiments that sample counters before and after a measurement. Each reader comes as a
pure parser of the file's text plus a thin function that reads it, so an experiment can parse
what a Mininet host printed (``parse_net_dev(host.cmd("cat /proc/net/dev"))``: each host has
its own network namespace, hence its own /proc/net/dev) and tests can feed fixed text.

Not for: rates or verdicts (`testbed.measure.analysis` turns two readings into those) or
creating cgroups (`testbed.runtime.cgroup`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed.measure.analysis import cores_used, cpu_busy_fraction

PROC_STAT = Path("/proc/stat")
PROC_NET_DEV = Path("/proc/net/dev")


# ---------------------------------------------------------------------------------------------
# /proc/stat


def parse_proc_stat(text: str) -> dict[str, tuple[int, ...]]:
    """The ``cpu`` (all CPUs) and ``cpuN`` lines of /proc/stat: name -> jiffies in the kernel's
    order (user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice)."""
    cpus = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("cpu"):
            cpus[parts[0]] = tuple(int(f) for f in parts[1:])
    if "cpu" not in cpus:
        raise ValueError("no 'cpu' line: not /proc/stat text")
    return cpus


def read_proc_stat(path: Path = PROC_STAT) -> dict[str, tuple[int, ...]]:
    return parse_proc_stat(path.read_text())


def cpu_busy_fractions(
    before: dict[str, tuple[int, ...]], after: dict[str, tuple[int, ...]]
) -> dict[str, float]:
    """Busy fraction per CPU line between two `read_proc_stat` snapshots: ``cpu`` is the
    whole machine, ``cpu0``.. each core (a busy single core hides in the average)."""
    return {name: cpu_busy_fraction(before[name], after[name]) for name in before if name in after}


# ---------------------------------------------------------------------------------------------
# /proc/net/dev

NET_DEV_FIELDS = (
    "rx_bytes",
    "rx_packets",
    "rx_errs",
    "rx_drop",
    "rx_fifo",
    "rx_frame",
    "rx_compressed",
    "rx_multicast",
    "tx_bytes",
    "tx_packets",
    "tx_errs",
    "tx_drop",
    "tx_fifo",
    "tx_colls",
    "tx_carrier",
    "tx_compressed",
)


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """Interface name -> counters (`NET_DEV_FIELDS`) from /proc/net/dev text.

    The two header lines are skipped; an interface name may be glued to its first number
    (``eth0:123``) when the counter is wide, so the split is on the colon.
    """
    counters = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue
        values = rest.split()
        if len(values) != len(NET_DEV_FIELDS):
            raise ValueError(
                f"/proc/net/dev line for {name.strip()!r} has {len(values)} numbers, "
                f"expected {len(NET_DEV_FIELDS)}"
            )
        counters[name.strip()] = dict(zip(NET_DEV_FIELDS, (int(v) for v in values), strict=True))
    return counters


def read_net_dev(path: Path = PROC_NET_DEV) -> dict[str, dict[str, int]]:
    """This namespace's interface counters (inside a Mininet host, use `parse_net_dev` on the
    output of ``host.cmd("cat /proc/net/dev")`` instead)."""
    return parse_net_dev(path.read_text())


# ---------------------------------------------------------------------------------------------
# Cumulative CPU usage (cgroup, process)


@dataclass(frozen=True)
class UsageReading:
    """A cumulative CPU usage in seconds and the monotonic instant it was read."""

    usage_s: float
    at_s: float


def read_usage(usage_s: Callable[[], float]) -> UsageReading:
    """Take a reading from any cumulative CPU counter, e.g. ``HostCgroup(...).usage_s`` or a
    director's reported ``cpu_s``, stamped with the middle of the time the read took (a read
    over a control socket is not instantaneous)."""
    start_s = time.monotonic()
    value = usage_s()
    return UsageReading(value, (start_s + time.monotonic()) / 2)


def usage_cores(before: UsageReading, after: UsageReading) -> float:
    """CPU used between two readings, in cores, over the measured time between them."""
    return cores_used(before.usage_s, after.usage_s, after.at_s - before.at_s)
