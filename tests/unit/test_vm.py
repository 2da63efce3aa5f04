"""The full-kernel runner without a VM: command line, guest script, status parsing, KVM choice.

The last tests drive runner.run_in_vm with a stand-in for vng that runs the guest script on the
host, so streaming, exit codes, timeouts and signals are checked without root or qemu.
"""

import io
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from testbed.vm import runner
from testbed.vm.config import (
    EXIT_INTERRUPTED,
    EXIT_NO_RESULT,
    EXIT_TIMEOUT,
    GuestStatus,
    VmConfig,
    cpu_has_virt_flags,
    final_exit_code,
    format_timings,
    guest_script,
    image_package_from_depends,
    kernel_release,
    parse_status,
    use_kvm,
    vng_argv,
)

KERNEL = Path("/var/lib/lvs-testbed/kernel/6.1.0-57-amd64/boot/vmlinuz-6.1.0-57-amd64")
CHECKOUT = Path("/work/main")
GUEST_DIR = Path("/run/lvs-testbed-vm/20261205-010203-abc/guest")


def config(**kw) -> VmConfig:
    base = {
        "kernel_image": KERNEL,
        "command": ("uname", "-r"),
        "cwd": CHECKOUT,
        "kvm": False,
        "rw_dirs": (CHECKOUT,),
    }
    return VmConfig(**{**base, **kw})


# --- the vng command line ---


def test_tcg_command_line_has_every_flag_the_runner_needs():
    argv = vng_argv(config(), "/venv/bin/vng", GUEST_DIR, GUEST_DIR / "run.sh")
    assert argv[:3] == ["/venv/bin/vng", "--run", str(KERNEL)]
    assert "--disable-kvm" in argv
    assert "--force-9p" in argv and "--verbose" in argv
    assert argv[argv.index("--memory") + 1] == "2G"
    assert argv[argv.index("--cpus") + 1] == "2"
    rw = [argv[i + 1] for i, a in enumerate(argv) if a == "--rwdir"]
    assert rw == [str(CHECKOUT), str(GUEST_DIR)]
    assert argv[-2:] == ["--exec", f"/bin/sh {GUEST_DIR}/run.sh"]


def test_kvm_command_line_does_not_disable_kvm():
    argv = vng_argv(config(kvm=True, memory="1536M", cpus=4), "vng", GUEST_DIR, GUEST_DIR / "r")
    assert "--disable-kvm" not in argv
    assert argv[argv.index("--memory") + 1] == "1536M"
    assert argv[argv.index("--cpus") + 1] == "4"


@pytest.mark.parametrize("path", ["/with space/x", "/a=b", "relative/path", "/x;rm", "/$HOME"])
def test_paths_vng_would_misread_are_refused(path):
    with pytest.raises(ValueError, match="cannot be handed to vng"):
        config(rw_dirs=(Path(path),))


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"command": ()}, "no command"),
        ({"memory": "2GB"}, "memory"),
        ({"memory": "0G"}, "memory"),
        ({"cpus": 0}, "cpus"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_configs_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        config(**kw)


# --- KVM or TCG ---

INTEL = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr vmx ssse3\nvmx flags\t: vnmi\n"
AMD = "processor\t: 0\nflags\t\t: fpu vme svm lm\n"
NO_VIRT = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr hypervisor\n"


def test_kvm_needs_both_an_openable_dev_kvm_and_virt_flags():
    assert use_kvm(True, INTEL)
    assert use_kvm(True, AMD)
    assert not use_kvm(True, NO_VIRT)  # this machine: /dev/kvm opens, KVM does not work
    assert not use_kvm(False, INTEL)


def test_only_the_flags_line_counts():
    assert not cpu_has_virt_flags("vmx flags\t: vnmi preemption_timer\nflags\t: fpu\n")
    assert not cpu_has_virt_flags("model name\t: svm-like CPU\n")
    assert not cpu_has_virt_flags("")


# --- what the guest writes ---


def test_status_is_parsed_once_lines_are_complete():
    text = "started=4.29\ncommand_started=4.36\nfinished=4.48\nexit_code=3\n"
    status = parse_status(text)
    assert status == GuestStatus(4.29, None, 4.36, 4.48, 3)
    assert status.command_s == pytest.approx(0.12)
    # The guest may be in the middle of writing the last line.
    assert parse_status(text[:-1]).exit_code is None
    assert parse_status("started=4.2\nexit_c").started_s == 4.2


def test_status_tolerates_noise_and_reports_ovs():
    status = parse_status("garbage\nstarted=x\novs=failed\n")
    assert status.started_s is None and status.ovs_ok is False
    assert parse_status("ovs=ok\n").ovs_ok is True
    assert parse_status("") == GuestStatus()


def test_exit_code_prefers_the_commands_own():
    done = GuestStatus(exit_code=3)
    assert final_exit_code(done, timed_out=True, interrupted=True) == 3
    assert final_exit_code(GuestStatus(), timed_out=False, interrupted=True) == EXIT_INTERRUPTED
    assert final_exit_code(GuestStatus(), timed_out=True, interrupted=False) == EXIT_TIMEOUT
    assert final_exit_code(GuestStatus(), timed_out=False, interrupted=False) == EXIT_NO_RESULT


def test_timings_line():
    status = GuestStatus(4.0, True, 9.0, 12.5, 0)
    assert format_timings(status, 8.0, 17.0) == (
        "boot 8.0 s, ovs start 5.0 s, command 3.5 s, total 17.0 s"
    )
    assert format_timings(GuestStatus(), None, 20.0) == "total 20.0 s"


def test_guest_script_quotes_the_command_and_starts_ovs_only_when_asked():
    cfg = config(command=("sh", "-c", "echo 'a b'; exit 3"))
    script = guest_script(cfg, GUEST_DIR)
    assert "cd /work/main && sh -c 'echo '\"'\"'a b'\"'\"'; exit 3'" in script
    assert "ovs-ctl start" in script and "OVS_DBDIR=/run/lvs-testbed-vm-ovs" in script
    assert "ovs-ctl" not in guest_script(config(start_ovs=False), GUEST_DIR)
    # OVS's userspace datapath needs /dev/net/tun, which the guest lacks until tun is loaded.
    assert script.index("/dev/net/tun") < script.index("ovs-ctl start")


def test_guest_script_reports_output_and_exit_code(tmp_path):
    # The script is plain sh: run it here, as the guest would.
    cfg = config(
        command=("sh", "-c", "echo out; echo err >&2; exit 3"), cwd=tmp_path, start_ovs=False
    )
    script = tmp_path / "run.sh"
    script.write_text(guest_script(cfg, tmp_path))
    subprocess.run(["/bin/sh", str(script)], check=True, timeout=10)
    status = parse_status((tmp_path / "status").read_text())
    assert status.exit_code == 3 and status.command_s is not None
    assert (tmp_path / "output").read_text() == "out\nerr\n"


# --- the kernel package ---


def test_image_package_is_read_from_apt_cache_depends():
    out = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n"
    assert image_package_from_depends(out) == "linux-image-6.1.0-57-amd64"
    alt = "linux-image-amd64\n |Depends: linux-image-6.1.0-57-amd64\n    Depends: <x>\n"
    assert image_package_from_depends(alt) == "linux-image-6.1.0-57-amd64"
    with pytest.raises(ValueError, match="apt-get update"):
        image_package_from_depends("linux-image-amd64\n")


def test_kernel_release():
    assert kernel_release("linux-image-6.1.0-57-amd64") == "6.1.0-57-amd64"
    assert kernel_release("linux-image-6.1.0-57-amd64-unsigned") == "6.1.0-57-amd64"
    for bad in ("linux-headers-6.1.0-57-amd64", "linux-image-amd64", "linux-image-../x"):
        with pytest.raises(ValueError):
            kernel_release(bad)


# --- runner.run_in_vm with a stand-in vng that runs the guest script on the host ---


@pytest.fixture
def fake_vng(tmp_path, monkeypatch):
    vng = tmp_path / "vng"
    # The last argument is "/bin/sh <script>", as --exec hands it to the guest.
    vng.write_text("#!/bin/sh\nfor last; do :; done\nexec $last\n")
    vng.chmod(0o755)
    monkeypatch.setattr(runner, "find_vng", lambda: vng)
    monkeypatch.setattr(runner, "check_host_tools", lambda: None)
    return vng


def run_fake(tmp_path, command, timeout_s=30.0):
    cfg = config(command=command, cwd=tmp_path, rw_dirs=(), start_ovs=False, timeout_s=timeout_s)
    out, err = io.BytesIO(), io.StringIO()
    result = runner.run_in_vm(cfg, out, err, runs_root=tmp_path / "runs")
    return result, out.getvalue().decode(), err.getvalue()


def test_run_streams_output_and_returns_the_exit_code(tmp_path, fake_vng):
    result, out, _ = run_fake(tmp_path, ("sh", "-c", "echo hello; exit 3"))
    assert result.exit_code == 3 and out == "hello\n"
    assert not result.timed_out and result.boot_wall_s is not None
    assert not (tmp_path / "runs").exists()  # the run directory is gone


def test_timeout_kills_the_vm_process_group(tmp_path, fake_vng):
    pid_file = tmp_path / "sleeper.pid"
    result, _, err = run_fake(
        tmp_path, ("sh", "-c", f"echo $$ >{pid_file}; sleep 60"), timeout_s=1.0
    )
    assert result.timed_out and result.exit_code == EXIT_TIMEOUT
    assert "timed out after 1 s" in err
    assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers need the main thread",
)
def test_sigterm_stops_the_vm(tmp_path, fake_vng):
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        result, _, err = run_fake(tmp_path, ("sleep", "60"))
    finally:
        timer.cancel()
    assert result.interrupted and result.exit_code == EXIT_INTERRUPTED
    assert "interrupted (SIGTERM)" in err
    assert signal.getsignal(signal.SIGTERM) == before  # our handler is gone again


def test_no_result_shows_the_console(tmp_path, monkeypatch):
    vng = tmp_path / "vng"
    vng.write_text("#!/bin/sh\necho 'Kernel panic - not syncing'\nexit 255\n")
    vng.chmod(0o755)
    monkeypatch.setattr(runner, "find_vng", lambda: vng)
    monkeypatch.setattr(runner, "check_host_tools", lambda: None)
    result, _, err = run_fake(tmp_path, ("true",))
    assert result.exit_code == EXIT_NO_RESULT
    assert "Kernel panic" in err


def test_clean_touches_only_marked_dirs(tmp_path):
    cache, runs = tmp_path / "kernel", tmp_path / "runs"
    ours = cache / "6.1.0-57-amd64"
    ours.mkdir(parents=True)
    (ours / runner.KERNEL_MARKER).write_text("{}")
    theirs = cache / "other"
    theirs.mkdir()
    dead = runs / "dead"
    dead.mkdir(parents=True)
    (dead / runner.RUN_MARKER).write_text('{"pid": 999999999, "start": 1, "vm_pids": {}}')
    live = runs / "live"
    live.mkdir()
    start = runner.proc_starttime(os.getpid())
    (live / runner.RUN_MARKER).write_text(
        f'{{"pid": {os.getpid()}, "start": {start}, "vm_pids": {{}}}}'
    )
    assert runner.clean(cache, runs) == [str(dead)]
    assert ours.exists() and live.exists()
    assert runner.clean(cache, runs, kernels=True) == [str(ours)]
    assert theirs.exists() and live.exists()


def fake_kernel(cache: Path, release: str) -> Path:
    root = cache / release
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"vmlinuz-{release}").write_bytes(b"")
    (root / "lib" / "modules" / release).mkdir(parents=True)
    (root / runner.KERNEL_MARKER).write_text(
        f'{{"release": "{release}", "package": "linux-image-{release}", "version": "6.1.1-1"}}'
    )
    return root


def test_a_cached_kernel_is_reused_without_asking_apt(tmp_path, monkeypatch):
    def no_apt(*args, **kw):
        raise AssertionError("apt must not run when a kernel is cached")

    monkeypatch.setattr(runner, "_run", no_apt)
    root = fake_kernel(tmp_path, "6.1.0-57-amd64")
    kernel = runner.ensure_kernel(tmp_path)
    assert kernel.root == root and kernel.version == "6.1.1-1"
    assert kernel.image == root / "boot" / "vmlinuz-6.1.0-57-amd64"


def test_an_incomplete_kernel_is_not_used(tmp_path):
    root = fake_kernel(tmp_path, "6.1.0-57-amd64")
    (root / "boot" / "vmlinuz-6.1.0-57-amd64").unlink()
    assert runner.cached_kernel(tmp_path) is None
    (tmp_path / "6.1.0-58-amd64").mkdir()  # no marker: not ours
    assert runner.cached_kernel(tmp_path) is None


def test_clean_kernels_removes_dead_staging_dirs_only(tmp_path):
    dead = tmp_path / ".6.1.0-57-amd64.partial-999999999"
    live = tmp_path / f".6.1.0-57-amd64.partial-{os.getpid()}"
    dead.mkdir()
    live.mkdir()
    assert runner.clean(tmp_path, tmp_path / "runs", kernels=True) == [str(dead)]
    assert live.exists()
