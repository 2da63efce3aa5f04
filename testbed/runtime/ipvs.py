"""The kernel's IPVS, reached the way an LVS admin reaches it: `modprobe ip_vs` and the real
`ipvsadm` (Debian's package, provisioned).

For: whether this kernel has ``ip_vs`` and why not (`probe`, read-only: ``modprobe -n``
answers without loading anything), loading it (`load`), running the real ``ipvsadm`` in this
network namespace or in another one (`run_ipvsadm`, always with a timeout), and the command
lines of the kernel's connection sync daemons (`sync_daemon_argvs`, pure).

Not for: the testbed's userspace director (`testbed.director`, whose ``ipvsadm`` front end is a
pure function over its model) or layouts (`testbed.net.network` uses this to make kernel IPVS a
layout's director). Each network namespace has its own IPVS table and its own sync daemons;
the module is loaded once for the whole machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

IPVSADM = "ipvsadm"
PROC_IP_VS = Path("/proc/net/ip_vs")
MODPROBE_TIMEOUT_S = 30.0
IPVSADM_TIMEOUT_S = 30.0
SYNC_IDS = range(0, 256)
SETUP_FIX = "run `sudo make setup` (scripts/provision.sh installs Debian's ipvsadm)"


class IpvsUnavailable(RuntimeError):
    """Kernel IPVS cannot be used here; the message says why and what to use instead."""


class IpvsadmResult(NamedTuple):
    rc: int
    out: str
    err: str


@dataclass(frozen=True)
class Probe:
    """What `probe` found: ``ok`` when the module is loaded or loads, and the words for it."""

    ok: bool
    detail: str


def missing_message(release: str, why: str = "") -> str:
    """Why ``up --director ipvs`` cannot run on a kernel without ip_vs, and where it can."""
    reason = f" ({why})" if why else ""
    return (
        f"no ip_vs in this kernel ({release}){reason}: kernel IPVS needs a full kernel; use "
        "`sudo lvs-testbed vm run -- lvs-testbed up ... --director ipvs` (Debian's kernel "
        "under qemu on this machine) or the Vagrant VM, or --director python here"
    )


def _kernel_release() -> str:
    return os.uname().release


def _modprobe(*args: str) -> tuple[int, str]:
    try:
        res = subprocess.run(
            ["modprobe", *args, "ip_vs"],
            capture_output=True,
            text=True,
            timeout=MODPROBE_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        return 127, "modprobe not found (Debian package kmod)"
    except subprocess.TimeoutExpired:
        return 124, f"modprobe took over {MODPROBE_TIMEOUT_S:g} s"
    return res.returncode, (res.stdout + res.stderr).strip()


def _first_line(path: Path) -> str:
    try:
        with path.open() as f:
            return f.readline().strip()
    except OSError:
        return ""


def probe() -> Probe:
    """Whether kernel IPVS can be used here, without changing anything: the module is loaded
    (``/proc/net/ip_vs`` exists), or ``modprobe -n`` finds it (built in or a module file), and
    the real ``ipvsadm`` is installed."""
    if shutil.which(IPVSADM) is None:
        return Probe(False, f"{IPVSADM} is not installed: {SETUP_FIX}")
    if PROC_IP_VS.exists():
        return Probe(True, f"ip_vs loaded: {_first_line(PROC_IP_VS) or 'IP Virtual Server'}")
    rc, out = _modprobe("-n", "-q")
    if rc == 0:
        return Probe(True, "ip_vs module present (loaded on first use)")
    why = out.splitlines()[-1] if out else "modprobe finds no ip_vs module"
    return Probe(False, f"no ip_vs in this kernel ({_kernel_release()}): {why}")


def load() -> str:
    """Load ip_vs (a no-op when it is loaded); its version line. Raises `IpvsUnavailable`
    with `missing_message` (or the missing ipvsadm's fix) before anything changes."""
    if shutil.which(IPVSADM) is None:
        raise IpvsUnavailable(f"{IPVSADM} is not installed: {SETUP_FIX}")
    found = probe()
    if not found.ok:
        raise IpvsUnavailable(missing_message(_kernel_release()))
    if not PROC_IP_VS.exists():
        rc, out = _modprobe()
        if rc != 0 or not PROC_IP_VS.exists():
            raise IpvsUnavailable(missing_message(_kernel_release(), out or f"modprobe rc {rc}"))
    return _first_line(PROC_IP_VS)


def run_ipvsadm(
    argv: list[str],
    stdin_text: str | None = None,
    *,
    netns_pid: int | None = None,
    timeout_s: float = IPVSADM_TIMEOUT_S,
) -> IpvsadmResult:
    """The real ``ipvsadm ARGV`` (``argv`` without the program name), in this network
    namespace or in that of process ``netns_pid`` (``nsenter --net``); ``stdin_text`` is what
    ``-R`` reads. A missing binary or a timeout is reported as ipvsadm reports a failure."""
    cmd = [IPVSADM, *argv]
    if netns_pid is not None:
        cmd = ["nsenter", f"--net=/proc/{netns_pid}/ns/net", "--", *cmd]
    try:
        res = subprocess.run(
            cmd,
            input=stdin_text if stdin_text is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as exc:
        return IpvsadmResult(127, "", f"{exc.filename}: not found: {SETUP_FIX}\n")
    except subprocess.TimeoutExpired:
        return IpvsadmResult(124, "", f"{' '.join(cmd)}: no answer within {timeout_s:g} s\n")
    return IpvsadmResult(res.returncode, res.stdout, res.stderr)


def sync_daemon_argvs(
    interface: str, sync_id: int, states: tuple[str, ...] = ("master", "backup")
) -> list[list[str]]:
    """``ipvsadm --start-daemon STATE --mcast-interface IF --syncid N`` for each state.

    A director runs both (the kernel allows it since 2.6.x): the master daemon sends the
    connections this director handles, the backup daemon applies the peer's, so either side
    of a pair can take over with the other's connections. The master daemon turns multicast
    loopback off, so a director never applies its own messages."""
    if sync_id not in SYNC_IDS:
        raise ValueError(f"sync ID must be from 0 to 255, got {sync_id}")
    for state in states:
        if state not in ("master", "backup"):
            raise ValueError(f"sync daemon state must be master or backup, got {state!r}")
    return [
        ["--start-daemon", state, "--mcast-interface", interface, "--syncid", str(sync_id)]
        for state in states
    ]
