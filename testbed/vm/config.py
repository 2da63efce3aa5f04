"""The pure part of the full-kernel runner: what to run and how to read what the guest reported.

Builds the virtme-ng (`vng`) command line and the shell script the guest runs, parses the
status file that script writes, decides KVM against TCG and maps the outcome to an exit code.
No I/O here (not even at import): `runner` reads files, starts processes and cleans up.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

# Exit codes for outcomes that are not the command's own (the first two as GNU timeout uses).
EXIT_TIMEOUT = 124
EXIT_NO_RESULT = 125
EXIT_INTERRUPTED = 130

# The guest's own /run is a tmpfs, so a private OVS database there never touches the host's
# /etc/openvswitch/conf.db, which the host's ovsdb-server has open.
GUEST_OVS_DBDIR = "/run/lvs-testbed-vm-ovs"
OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"

# vng joins its arguments into a shell command line unquoted and reads `a=b` in --rwdir as
# guestpath=hostpath, so paths are limited to characters that mean nothing to either.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+@-]*$")
_MEMORY = re.compile(r"^[1-9][0-9]*[MG]$")
_DEPENDS = re.compile(r"^\|?Depends:\s+(linux-image-[0-9][^\s<>]*)$")
_RELEASE = re.compile(r"^[0-9]+\.[0-9]+[A-Za-z0-9.+_-]*$")


@dataclass(frozen=True)
class VmConfig:
    """One VM run: the kernel to boot, the guest's size and the command to run in it."""

    kernel_image: Path
    command: tuple[str, ...]
    cwd: Path
    kvm: bool
    rw_dirs: tuple[Path, ...] = ()
    memory: str = "2G"
    cpus: int = 2
    timeout_s: float = 1800.0
    start_ovs: bool = True
    hostname: str = "lvs-testbed-vm"

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError("no command to run in the VM")
        if not _MEMORY.match(self.memory):
            raise ValueError(f"memory {self.memory!r}: give a size like 2G or 1536M")
        if self.cpus < 1:
            raise ValueError(f"cpus {self.cpus}: need at least 1")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s {self.timeout_s}: must be positive")
        for path in (self.kernel_image, self.cwd, *self.rw_dirs):
            check_path(path)


@dataclass(frozen=True)
class GuestStatus:
    """What the guest script reported so far; times are guest uptimes in seconds."""

    started_s: float | None = None
    ovs_ok: bool | None = None
    command_started_s: float | None = None
    finished_s: float | None = None
    exit_code: int | None = None

    @property
    def command_s(self) -> float | None:
        if self.command_started_s is None or self.finished_s is None:
            return None
        return self.finished_s - self.command_started_s


def check_path(path: Path) -> None:
    """Refuse a path that vng would split or misread (see _SAFE_PATH)."""
    if not _SAFE_PATH.match(str(path)):
        raise ValueError(
            f"path {str(path)!r} cannot be handed to vng: use an absolute path made of "
            "letters, digits and . _ / + @ - (no spaces or '=')"
        )


def cpu_has_virt_flags(cpuinfo: str) -> bool:
    """True when /proc/cpuinfo's flags list hardware virtualisation (Intel vmx or AMD svm)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags" and {"vmx", "svm"} & set(value.split()):
            return True
    return False


def use_kvm(dev_kvm_opens: bool, cpuinfo: str) -> bool:
    """KVM only when /dev/kvm opens and the CPU shows vmx/svm.

    A /dev/kvm node alone proves nothing: containers and VMs without nested virtualisation have
    one that opens but cannot run a guest (qemu then fails instead of falling back to TCG).
    """
    return dev_kvm_opens and cpu_has_virt_flags(cpuinfo)


def vng_argv(cfg: VmConfig, vng: str, guest_dir: Path, script: Path) -> list[str]:
    """The vng command line that boots cfg.kernel_image and runs `script` in the guest.

    --force-9p: the host root is shared over 9p (virtiofsd is not needed). --verbose sends the
    guest console to vng's stderr, kept as the boot log for errors; the command's own output
    and exit code come back through files in guest_dir instead (see guest_script).
    """
    check_path(guest_dir)
    check_path(script)
    argv = [
        vng,
        "--run",
        str(cfg.kernel_image),
        "--name",
        cfg.hostname,
        "--force-9p",
        "--memory",
        cfg.memory,
        "--cpus",
        str(cfg.cpus),
        "--verbose",
    ]
    if not cfg.kvm:
        argv.append("--disable-kvm")
    for path in (*cfg.rw_dirs, guest_dir):
        argv += ["--rwdir", str(path)]
    argv += ["--exec", f"/bin/sh {script}"]
    return argv


def guest_script(cfg: VmConfig, guest_dir: Path) -> str:
    """The shell script the guest runs: optional private OVS, the command, then its exit code.

    It appends key=value lines to guest_dir/status (parse_status reads them) and sends the
    command's stdout and stderr, in order, to guest_dir/output, which the host streams. The
    command sees LVS_TESTBED_VM=1 (tests can tell they run in the VM) and unbuffered Python.
    """
    d = shlex.quote(str(guest_dir))
    lines = [
        "#!/bin/sh",
        "# Written by lvs-testbed (testbed/vm) for one VM run; runs inside the guest.",
        "up() { cut -d' ' -f1 /proc/uptime; }",
        f'echo "started=$(up)" >>{d}/status',
        "export LVS_TESTBED_VM=1 PYTHONUNBUFFERED=1",
    ]
    if cfg.start_ovs:
        lines += [
            f"export OVS_DBDIR={GUEST_OVS_DBDIR}",
            # The userspace datapath (the layouts' OVS switches) opens /dev/net/tun for each
            # bridge's own port; the guest's /dev has none until tun is loaded, and without it
            # every such bridge fails to open and carries nothing.
            "[ -e /dev/net/tun ] || modprobe tun 2>/dev/null || true",
            "[ -e /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200; } || true",
            f"if {OVS_CTL} start --system-id=random --no-mlockall >{d}/ovs.log 2>&1; then",
            f"  echo ovs=ok >>{d}/status",
            "else",
            f"  echo ovs=failed >>{d}/status",
            "fi",
        ]
    lines += [
        f'echo "command_started=$(up)" >>{d}/status',
        f"{{ cd {shlex.quote(str(cfg.cwd))} && {shlex.join(cfg.command)}; }} "
        f"</dev/null >{d}/output 2>&1",
        "rc=$?",
        f'echo "finished=$(up)" >>{d}/status',
        f'echo "exit_code=$rc" >>{d}/status',
        "",
    ]
    return "\n".join(lines)


def parse_status(text: str) -> GuestStatus:
    """Read the guest's status file; a last line without its newline is still being written."""
    complete = text[: text.rfind("\n") + 1]
    values: dict[str, str] = {}
    for line in complete.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()

    def number(key: str) -> float | None:
        try:
            return float(values[key])
        except (KeyError, ValueError):
            return None

    exit_code = number("exit_code")
    ovs = values.get("ovs")
    return GuestStatus(
        started_s=number("started"),
        ovs_ok=None if ovs is None else ovs == "ok",
        command_started_s=number("command_started"),
        finished_s=number("finished"),
        exit_code=None if exit_code is None else int(exit_code),
    )


def final_exit_code(status: GuestStatus, timed_out: bool, interrupted: bool) -> int:
    """The command's own exit code once reported; otherwise why there is none."""
    if status.exit_code is not None:
        return status.exit_code
    if interrupted:
        return EXIT_INTERRUPTED
    if timed_out:
        return EXIT_TIMEOUT
    return EXIT_NO_RESULT


def image_package_from_depends(apt_cache_depends: str) -> str:
    """The versioned image package in `apt-cache depends linux-image-amd64` output."""
    for line in apt_cache_depends.splitlines():
        match = _DEPENDS.match(line.strip())
        if match:
            return match.group(1)
    raise ValueError(
        "linux-image-amd64 depends on no linux-image-<version> package: "
        "run `sudo apt-get update` (apt's package lists may be missing or stale)"
    )


def kernel_release(image_package: str) -> str:
    """linux-image-6.1.0-57-amd64 -> 6.1.0-57-amd64 (the directory name under /lib/modules)."""
    release = image_package.removeprefix("linux-image-").removesuffix("-unsigned")
    if release == image_package or not _RELEASE.match(release):
        raise ValueError(f"{image_package!r} is not a linux-image-<release> package name")
    return release


def format_timings(status: GuestStatus, boot_wall_s: float | None, wall_s: float) -> str:
    """One line for the user: where the time went (TCG guests are ~10x slower than the host)."""
    parts = []
    if boot_wall_s is not None:
        parts.append(f"boot {boot_wall_s:.1f} s")
    if status.ovs_ok is not None and None not in (status.started_s, status.command_started_s):
        parts.append(f"ovs start {status.command_started_s - status.started_s:.1f} s")
    if status.command_s is not None:
        parts.append(f"command {status.command_s:.1f} s")
    parts.append(f"total {wall_s:.1f} s")
    return ", ".join(parts)
