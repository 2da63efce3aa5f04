"""The I/O part of the full-kernel runner: kernel cache, booting the VM, cleaning up after it.

The kernel is Debian's stock image package, downloaded with apt and unpacked (never installed:
no bootloader or initramfs hooks) into /var/lib/lvs-testbed/kernel/<release>/. The host's own
/lib/modules is left alone: virtme-ng links the guest's /lib/modules/<release> (a tmpfs in the
guest) to <release>/lib/modules/<release> in that cache, which the guest reaches through the
shared root. /var/cache would not do: the guest mounts an empty tmpfs over it.

The guest sees the host root read-only; /etc, /usr, /var, /tmp, /home, /opt, /srv have tmpfs
overlays and /run is the guest's own tmpfs, so the guest writes to the host only in the rw dirs
it is given (the checkout) and its run directory under /run/lvs-testbed-vm/<run-id>/.
Not for provisioning (scripts/provision.sh installs qemu, busybox and virtme-ng).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from testbed.runtime.registry import proc_starttime
from testbed.vm.config import (
    EXIT_TIMEOUT,
    GuestStatus,
    VmConfig,
    final_exit_code,
    format_timings,
    guest_script,
    image_package_from_depends,
    kernel_release,
    parse_status,
    use_kvm,
    vng_argv,
)

KERNEL_CACHE = Path("/var/lib/lvs-testbed/kernel")
RUNS_ROOT = Path("/run/lvs-testbed-vm")
META_PACKAGE = "linux-image-amd64"
# Marker files: proof that a directory is ours before `clean` removes it.
KERNEL_MARKER = ".lvs-testbed-kernel.json"
RUN_MARKER = ".lvs-testbed-vm-run.json"

SETUP = "run `sudo make setup` (scripts/provision.sh)"
POLL_S = 0.2
# Once the guest reported its exit code it powers off within seconds, even under TCG.
POWEROFF_GRACE_S = 30.0
TERM_GRACE_S = 5.0
# Host tools that vng needs besides itself, with the Debian package that has each.
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",  # the guest's initramfs (Debian's kernel has virtio as modules)
    "file": "file",  # vng reads the kernel's version with it
    "depmod": "kmod",
}


class VmError(RuntimeError):
    """A problem the user can fix; the message says how."""


@dataclass(frozen=True)
class Kernel:
    """An unpacked kernel package in the cache."""

    root: Path
    release: str
    package: str
    version: str

    @property
    def image(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.release


@dataclass(frozen=True)
class VmRun:
    """How a VM run ended. boot_wall_s: host seconds from starting vng to the guest script."""

    exit_code: int
    status: GuestStatus
    timed_out: bool
    interrupted: bool
    boot_wall_s: float | None
    wall_s: float


def _run(argv: Sequence[str], timeout_s: float, fix: str, cwd: Path | None = None) -> str:
    """Run a host command; its failure becomes a VmError that shows its output and the fix."""
    try:
        res = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError as exc:
        raise VmError(f"{argv[0]} not found: {fix}") from exc
    except subprocess.TimeoutExpired as exc:
        raise VmError(f"`{' '.join(argv)}` took over {timeout_s:.0f} s: {fix}") from exc
    if res.returncode != 0:
        raise VmError(
            f"`{' '.join(argv)}` failed ({res.returncode}): {(res.stdout + res.stderr).strip()}\n"
            f"{fix}"
        )
    return res.stdout


def _read_kernel(root: Path) -> Kernel | None:
    try:
        meta = json.loads((root / KERNEL_MARKER).read_text())
        kernel = Kernel(root, meta["release"], meta["package"], meta["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return kernel if kernel.image.is_file() and kernel.modules.is_dir() else None


def cached_kernel(cache_root: Path = KERNEL_CACHE) -> Kernel | None:
    """The kernel in the cache (the newest one, should several be there), or None."""
    if not cache_root.is_dir():
        return None
    kernels = [k for k in map(_read_kernel, sorted(cache_root.iterdir())) if k is not None]
    return max(kernels, key=lambda k: (k.root / KERNEL_MARKER).stat().st_mtime, default=None)


def ensure_kernel(
    cache_root: Path = KERNEL_CACHE, meta_package: str = META_PACKAGE, refresh: bool = False
) -> Kernel:
    """A kernel unpacked in the cache: the cached one, else the one meta_package depends on.

    The cached kernel stays pinned (same package version, recorded in its marker) until a
    refresh asks apt for its candidate, fetches that if it differs and drops the old one.
    Reuse costs no apt call (apt-cache takes 0.7 s where its cache file is disabled).
    """
    if not refresh:
        cached = cached_kernel(cache_root)
        if cached is not None:
            return cached
    depends = _run(
        ["apt-cache", "depends", meta_package],
        60,
        f"apt does not know {meta_package}: run `sudo apt-get update`, then {SETUP}",
    )
    try:
        package = image_package_from_depends(depends)
        release = kernel_release(package)
    except ValueError as exc:
        raise VmError(str(exc)) from exc
    root = cache_root / release
    cached = _read_kernel(root)
    if cached is not None:
        return cached
    if root.exists():
        raise VmError(
            f"{root} exists but is not a complete lvs-testbed kernel (no {KERNEL_MARKER}): "
            "remove it by hand if it is a leftover, then retry"
        )
    if os.geteuid() != 0:
        raise VmError(f"the kernel {package} is not cached yet: run as root (sudo) once")

    cache_root.mkdir(parents=True, exist_ok=True)
    # Unpack beside the final place and rename: a killed download leaves no half kernel.
    staging = cache_root / f".{release}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    tree = staging / "tree"
    tree.mkdir(parents=True)
    try:
        _run(
            ["apt-get", "download", "-q", package],
            900,
            f"downloading {package} failed: check apt's sources, then {SETUP}",
            cwd=staging,
        )
        deb = next(staging.glob("*.deb"))
        version = _run(["dpkg-deb", "-f", str(deb), "Version"], 60, SETUP).strip()
        _run(["dpkg-deb", "-x", str(deb), str(tree)], 600, SETUP)
        # The package ships no modules.dep (its postinst would run depmod): make it here, on
        # the copy, so modprobe works in the guest and the host's /lib/modules stays untouched.
        _run(["depmod", "-a", "-b", str(tree), release], 300, f"{SETUP} (Debian package kmod)")
        if not (tree / "lib" / "modules" / release / "modules.dep").is_file():
            raise VmError(f"depmod made no modules.dep for {release} in {tree}")
        meta = {
            "package": package,
            "version": version,
            "release": release,
            "meta_package": meta_package,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tree / KERNEL_MARKER).write_text(json.dumps(meta, indent=2) + "\n")
        try:
            tree.rename(root)
        except OSError:
            # Another run unpacked the same release meanwhile: use theirs.
            if _read_kernel(root) is None:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    kernel = _read_kernel(root)
    if kernel is None:
        raise VmError(f"{package} unpacked to {root} has no boot/vmlinuz-{release}")
    _prune_kernels(cache_root, keep=root)
    return kernel


def _prune_kernels(cache_root: Path, keep: Path) -> None:
    """Remove our other cached releases (400 MB each) once a newer one is in place."""
    for root in sorted(cache_root.iterdir()):
        if root != keep and (root / KERNEL_MARKER).is_file():
            shutil.rmtree(root)


def _dead_partial(path: Path) -> bool:
    """A staging directory of ensure_kernel whose process is gone."""
    _, sep, pid = path.name.rpartition(".partial-")
    return bool(sep) and pid.isdigit() and proc_starttime(int(pid)) is None


def kvm_works() -> bool:
    """Whether qemu can use KVM here (see config.use_kvm for why /dev/kvm is not enough)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return use_kvm(True, Path("/proc/cpuinfo").read_text())


def find_vng() -> Path:
    """vng from this interpreter's venv (where provision installs it), else from PATH."""
    beside = Path(sys.executable).parent / "vng"
    if beside.is_file():
        return beside
    found = shutil.which("vng")
    if found is None:
        raise VmError(f"vng (virtme-ng) is missing: {SETUP}")
    return Path(found)


def check_host_tools() -> None:
    missing = [
        f"{tool} (Debian package {pkg})"
        for tool, pkg in HOST_TOOLS.items()
        if shutil.which(tool) is None
    ]
    if missing:
        raise VmError(f"missing for the VM runner: {', '.join(missing)}: {SETUP}")


def _exited(pid: int) -> bool:
    """Whether the child exited, without reaping it: an unreaped leader keeps its pid, so the
    process group id stays ours until we have signalled the group."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _stop_group(proc: subprocess.Popen) -> None:
    """End vng, virtme-run and qemu: the process group of the vng we started, by its id."""
    deadline = time.monotonic() + TERM_GRACE_S
    if not _exited(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        while not _exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # The killed virtme-run and qemu were children of vng's shell: init reaps them, shortly.
    deadline = time.monotonic() + TERM_GRACE_S
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)


class _Interrupts:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt while armed, once. Disarmed (around
    starting vng, and during cleanup) they are only recorded, so cleanup always finishes."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.armed = True
        self.received: str | None = None
        self._saved: dict[int, object] = {}

    def _handler(self, signum: int, frame: object) -> None:
        self.received = signal.Signals(signum).name
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt(self.received)

    def __enter__(self) -> _Interrupts:
        # Handlers can only be set from the main thread; elsewhere the defaults stay.
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def _copy_new(path: Path, offset: int, out: BinaryIO) -> int:
    """Write what was appended to path since offset; return the new offset."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    if data:
        out.write(data)
        out.flush()
    return offset + len(data)


def _read_status(path: Path) -> GuestStatus:
    try:
        return parse_status(path.read_text())
    except FileNotFoundError:
        return GuestStatus()


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no console log)"


@contextlib.contextmanager
def _run_dir(runs_root: Path) -> Iterator[Path]:
    """A fresh directory for one run, marked as ours and removed afterwards."""
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        raise VmError(f"cannot create {runs_root}: run as root (sudo lvs-testbed vm ...)") from exc
    run_dir = Path(tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-", dir=runs_root))
    _write_run_marker(run_dir, {})
    try:
        yield run_dir
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            runs_root.rmdir()  # only when empty: another run may be using it


def _group_members(pgid: int) -> dict[int, int]:
    """pid -> start time of the processes in process group pgid."""
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # comm may hold spaces and parentheses: fields resume after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            members[int(entry.name)] = int(fields[19])
    return members


def _write_run_marker(run_dir: Path, vm_pids: dict[int, int]) -> None:
    """Record our pid and the VM's processes (pid -> start time) for `clean` after a kill -9."""
    meta = {
        "pid": os.getpid(),
        "start": proc_starttime(os.getpid()),
        "vm_pids": {str(pid): start for pid, start in vm_pids.items()},
    }
    (run_dir / RUN_MARKER).write_text(json.dumps(meta) + "\n")


def run_in_vm(cfg: VmConfig, out: BinaryIO, err: TextIO, runs_root: Path = RUNS_ROOT) -> VmRun:
    """Boot cfg.kernel_image, run cfg.command in the guest, stream its output to `out`.

    Progress and errors go to `err`. Always stops the VM (timeout, Ctrl-C, SIGTERM, SIGHUP) and
    removes the run directory; nothing of the run is left on the host but what the command
    wrote into the rw dirs.
    """
    check_host_tools()
    vng = find_vng()
    started = time.monotonic()
    with _Interrupts() as interrupts, _run_dir(runs_root) as run_dir:
        guest_dir, host_tmp = run_dir / "guest", run_dir / "tmp"
        guest_dir.mkdir()
        host_tmp.mkdir()
        script = guest_dir / "run.sh"
        script.write_text(guest_script(cfg, guest_dir))
        console_log = run_dir / "console.log"
        # vng runs virtme-run through a shell, so virtme-run must be on PATH; TMPDIR keeps its
        # temporary files (the exit-code pipe file, the depmod scratch root) in our run dir.
        env = {
            **os.environ,
            "PATH": f"{vng.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "TMPDIR": str(host_tmp),
        }
        err.write(
            f"lvs-testbed vm: booting {cfg.kernel_image.name} "
            f"({'KVM' if cfg.kvm else 'TCG, no KVM: slow'})\n"
        )
        err.flush()
        watch = _Watch(guest_dir, run_dir, out, started)
        # A signal while Popen runs would lose the pid: it is recorded and acted on after.
        interrupts.armed = False
        with console_log.open("wb") as console:
            # Its own session: Ctrl-C on the terminal reaches only us, and the VM's processes
            # (vng, its shell, virtme-run, qemu) form one group that we stop by its id.
            proc = subprocess.Popen(
                vng_argv(cfg, str(vng), guest_dir, script),
                cwd=cfg.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            interrupts.armed = interrupts.received is None
            if not interrupts.armed:
                raise KeyboardInterrupt(interrupts.received)
            watch.until_done(proc, cfg.timeout_s)
        except KeyboardInterrupt:
            pass  # interrupts.received says which signal
        finally:
            interrupts.armed = False
            _stop_group(proc)
        watch.poll()
        wall_s = time.monotonic() - started
        _report(
            cfg, watch.status, err, console_log, guest_dir, watch.timed_out, interrupts.received
        )
        err.write(f"lvs-testbed vm: {format_timings(watch.status, watch.boot_wall_s, wall_s)}\n")
        err.flush()
    interrupted = interrupts.received is not None
    return VmRun(
        final_exit_code(watch.status, watch.timed_out, interrupted),
        watch.status,
        watch.timed_out,
        interrupted,
        watch.boot_wall_s,
        wall_s,
    )


class _Watch:
    """Follows a running VM through its run directory: streams output, reads status."""

    def __init__(self, guest_dir: Path, run_dir: Path, out: BinaryIO, started: float) -> None:
        self.guest_dir, self.run_dir, self.out, self.started = guest_dir, run_dir, out, started
        self.offset = 0
        self.status = GuestStatus()
        self.boot_wall_s: float | None = None
        self.timed_out = False

    def poll(self) -> None:
        self.offset = _copy_new(self.guest_dir / "output", self.offset, self.out)
        self.status = _read_status(self.guest_dir / "status")

    def until_done(self, proc: subprocess.Popen, timeout_s: float) -> None:
        """Return when vng exits, the guest is done but hangs, or timeout_s has passed."""
        poweroff_deadline: float | None = None
        while True:
            self.poll()
            now = time.monotonic()
            if self.boot_wall_s is None and self.status.started_s is not None:
                self.boot_wall_s = now - self.started
                # qemu runs by now: record it too, in case we are killed without cleanup.
                _write_run_marker(self.run_dir, _group_members(proc.pid))
            if _exited(proc.pid):
                return
            if self.status.exit_code is not None:
                poweroff_deadline = poweroff_deadline or now + POWEROFF_GRACE_S
                if now > poweroff_deadline:
                    return
            if now - self.started > timeout_s:
                self.timed_out = True
                return
            time.sleep(POLL_S)


def _report(
    cfg: VmConfig,
    status: GuestStatus,
    err: TextIO,
    console_log: Path,
    guest_dir: Path,
    timed_out: bool,
    signal_name: str | None,
) -> None:
    """Say what went wrong, if anything, while the run directory still exists."""
    if status.ovs_ok is False:
        err.write(
            "lvs-testbed vm: Open vSwitch did not start in the guest:\n"
            f"{_tail(guest_dir / 'ovs.log', 20)}\n"
        )
    if status.exit_code is not None:
        return
    if signal_name is not None:
        err.write(f"lvs-testbed vm: interrupted ({signal_name}); the VM was stopped\n")
    elif timed_out:
        err.write(
            f"lvs-testbed vm: timed out after {cfg.timeout_s:.0f} s (boot included); "
            f"the VM was killed (exit {EXIT_TIMEOUT})\n"
        )
        if status.started_s is None:
            err.write(
                f"it never finished booting; last lines of its console:\n{_tail(console_log, 40)}\n"
            )
    else:
        err.write(
            "lvs-testbed vm: the guest reported no exit code (boot failure or crash); "
            f"last lines of its console:\n{_tail(console_log, 40)}\n"
        )


def run_command(
    command: Sequence[str],
    cwd: Path,
    rw_dirs: Sequence[Path] = (),
    timeout_s: float = 1800.0,
    memory: str = "2G",
    cpus: int = 2,
    start_ovs: bool = True,
    out: BinaryIO | None = None,
    err: TextIO | None = None,
) -> VmRun:
    """The whole of `lvs-testbed vm run`: get the kernel, pick KVM or TCG, run the command.

    cwd is the guest's working directory (the checkout) and is shared read-write with rw_dirs.
    """
    kernel = ensure_kernel()
    err = err or sys.stderr
    err.write(f"lvs-testbed vm: kernel {kernel.package} {kernel.version} from {kernel.root}\n")
    cwd = cwd.resolve()
    dirs = tuple(dict.fromkeys([cwd, *(d.resolve() for d in rw_dirs)]))
    try:
        cfg = VmConfig(
            kernel_image=kernel.image,
            command=tuple(command),
            cwd=cwd,
            kvm=kvm_works(),
            rw_dirs=dirs,
            memory=memory,
            cpus=cpus,
            timeout_s=timeout_s,
            start_ovs=start_ovs,
        )
    except ValueError as exc:
        raise VmError(str(exc)) from exc
    return run_in_vm(cfg, out or sys.stdout.buffer, err)


def clean(
    cache_root: Path = KERNEL_CACHE, runs_root: Path = RUNS_ROOT, kernels: bool = False
) -> list[str]:
    """Remove what killed VM runs left (their VM, their run dir); with kernels, the kernel
    cache too. Only directories holding our marker are touched. Returns what was removed."""
    removed: list[str] = []
    if runs_root.is_dir():
        for run_dir in sorted(runs_root.iterdir()):
            try:
                meta = json.loads((run_dir / RUN_MARKER).read_text())
            except (FileNotFoundError, NotADirectoryError, ValueError):
                continue
            if proc_starttime(meta["pid"]) == meta["start"]:
                continue  # its owner still runs and will clean up itself
            for pid_text, start in meta["vm_pids"].items():
                pid = int(pid_text)
                if proc_starttime(pid) == start:  # the same process, not a recycled pid
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    removed.append(f"VM process {pid}")
            shutil.rmtree(run_dir)
            removed.append(str(run_dir))
        with contextlib.suppress(OSError):
            runs_root.rmdir()
    if kernels and cache_root.is_dir():
        for root in sorted(cache_root.iterdir()):
            if (root / KERNEL_MARKER).is_file() or _dead_partial(root):
                shutil.rmtree(root)
                removed.append(str(root))
        for d in (cache_root, cache_root.parent):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty
    return removed
