"""What this machine can do for the testbed, each item with the fix when it is missing.

Probes are read-only (qdiscs are tried in a throwaway namespace). `lvs-testbed doctor` prints
them; `Testbed` and the CLI use single probes to refuse early with the same fixes.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed.net.shaping import qdisc_available
from testbed.runtime import ipvs
from testbed.runtime.cgroup import detect_cgroup_version

SETUP = "run `sudo make setup` (scripts/provision.sh)"


@dataclass(frozen=True)
class Check:
    name: str
    required: bool
    probe: Callable[[], tuple[bool, str]]
    fix: str


@dataclass(frozen=True)
class Outcome:
    check: Check
    ok: bool
    detail: str


def _cmd(*argv: str, timeout_s: float = 5) -> tuple[int, str]:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return res.returncode, (res.stdout + res.stderr).strip()


def _which(*names: str) -> tuple[bool, str]:
    missing = [n for n in names if shutil.which(n) is None]
    return (
        not missing,
        "missing: " + ", ".join(missing) if missing else ", ".join(shutil.which(n) for n in names),
    )


def _root() -> tuple[bool, str]:
    return os.geteuid() == 0, f"euid {os.geteuid()}"


def _mininet() -> tuple[bool, str]:
    if importlib.util.find_spec("mininet") is None:
        return False, "python module 'mininet' not importable"
    from mininet.net import VERSION

    ok, detail = _which("mnexec")
    return ok, f"mininet {VERSION}; {detail}"


def _ovs() -> tuple[bool, str]:
    rc, out = _cmd("ovs-vsctl", "--timeout=3", "get", "Open_vSwitch", ".", "datapath_types")
    if rc != 0:
        return False, out.splitlines()[-1] if out else "ovs-vsctl failed"
    return True, f"running; datapath types {out}"


def _ovs_kernel() -> tuple[bool, str]:
    if Path("/sys/module/openvswitch").exists():
        return True, "openvswitch kernel module loaded"
    return False, "no openvswitch kernel module: only the userspace datapath (datapath=user) works"


def _cgroup_cpu() -> tuple[bool, str]:
    version = detect_cgroup_version()
    if version is None:
        return False, "no cgroup cpu controller with CFS bandwidth control"
    return True, f"cgroup v{version}"


def _qdisc(kind: str) -> Callable[[], tuple[bool, str]]:
    def probe() -> tuple[bool, str]:
        ok = qdisc_available(kind)
        return ok, "available" if ok else "the kernel refuses this qdisc"

    return probe


def _iperf() -> tuple[bool, str]:
    lib = ctypes.util.find_library("iperf")
    if lib is None:
        return False, "libiperf not found"
    if importlib.util.find_spec("iperf3") is None:
        return False, f"{lib}; python module iperf3 missing"
    ok, detail = _which("iperf3")
    return ok, f"{lib}; iperf3-python; {detail}"


def _python_module(name: str) -> Callable[[], tuple[bool, str]]:
    def probe() -> tuple[bool, str]:
        spec = importlib.util.find_spec(name)
        return spec is not None, spec.origin if spec else f"python module {name} missing"

    return probe


def _ip_vs() -> tuple[bool, str]:
    found = ipvs.probe()
    return found.ok, found.detail


def _keepalived() -> tuple[bool, str]:
    if shutil.which("keepalived") is None:
        return False, "missing"
    rc, out = _cmd("keepalived", "--version")
    return True, out.splitlines()[0] if out else "present"


CHECKS: tuple[Check, ...] = (
    Check("root", True, _root, "run as root: sudo lvs-testbed ..."),
    Check("mininet", True, _mininet, f"{SETUP} (Debian package mininet; not the PyPI one)"),
    Check("bridge-utils", True, lambda: _which("brctl"), f"{SETUP} (apt install bridge-utils)"),
    Check(
        "open vswitch",
        True,
        _ovs,
        "start it: /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random (make setup "
        "does)",
    ),
    Check(
        "ovs kernel datapath",
        False,
        _ovs_kernel,
        "optional: needs a kernel with the openvswitch module (the Vagrant VM); userspace works",
    ),
    Check(
        "cgroup cpu controller",
        True,
        _cgroup_cpu,
        "CPU quotas need cgroup v1 'cpu' (cfs_quota_us) or cgroup v2 with the cpu controller",
    ),
    Check("qdisc htb", True, _qdisc("htb"), "kernel needs CONFIG_NET_SCH_HTB for link shaping"),
    Check("qdisc tbf", True, _qdisc("tbf"), "kernel needs CONFIG_NET_SCH_TBF"),
    Check(
        "qdisc netem",
        False,
        _qdisc("netem"),
        "optional: delay/loss need netem (a full kernel: see docs/layouts.md, Vagrant)",
    ),
    Check(
        "kernel ipvs (ip_vs)",
        False,
        _ip_vs,
        "optional: `--director ipvs` needs a kernel with ip_vs: `sudo lvs-testbed vm run -- "
        "...` boots one here, or use the Vagrant VM",
    ),
    Check("nftables", True, lambda: _which("nft"), f"{SETUP} (apt install nftables)"),
    Check("ethtool", True, lambda: _which("ethtool"), f"{SETUP} (apt install ethtool)"),
    Check(
        "iproute2, ping",
        True,
        lambda: _which("ip", "tc", "ping"),
        f"{SETUP} (iproute2, iputils-ping)",
    ),
    Check("iperf3 + libiperf", True, _iperf, f"{SETUP} (iperf3, libiperf0, pip iperf3)"),
    Check("os-ken", True, _python_module("os_ken"), f"{SETUP} (pip os-ken)"),
    Check("keepalived", False, _keepalived, "optional (interop): apt install keepalived"),
    Check(
        "tshark, tcpdump, hping3",
        False,
        lambda: _which("tshark", "tcpdump", "hping3"),
        "optional (labs, captures): apt install tshark tcpdump hping3",
    ),
)


def run_checks(checks: tuple[Check, ...] = CHECKS) -> list[Outcome]:
    outcomes = []
    for check in checks:
        try:
            ok, detail = check.probe()
        except Exception as exc:  # a probe must not stop the report
            ok, detail = False, f"probe failed: {exc}"
        outcomes.append(Outcome(check, ok, detail))
    return outcomes


def all_required_ok(outcomes: list[Outcome]) -> bool:
    return all(o.ok for o in outcomes if o.check.required)
