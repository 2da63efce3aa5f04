"""The full-kernel tier's smoke subset, in `make test`: boot Debian's kernel under qemu
(`lvs-testbed vm run`) and run ``pytest tests/kernel -k smoke`` there. That brings up
`up dr --director ipvs` and `up nat --director ipvs` serving HTTP through the VIP, compares a
command script and a connection sequence between kernel IPVS and the Python director, and has
the doctor find netem, the OVS kernel datapath and ip_vs. It fails if any of them is skipped
in the VM, so a guest that lost ip_vs cannot pass quietly. Skipped only where qemu cannot run.

About 5 minutes under software emulation (TCG); the whole tier is `make test-kernel`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import REPO_ROOT

BIN = Path(sys.executable).parent
VM_TIMEOUT_S = 900  # the subset took about 4 minutes under TCG


def _qemu_missing() -> str | None:
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (sudo make setup installs it)"
    if not (BIN / "vng").exists():
        return "virtme-ng is not installed in the venv (sudo make setup installs it)"
    return None


@pytest.mark.timeout(VM_TIMEOUT_S + 120)
@pytest.mark.skipif(_qemu_missing() is not None, reason=_qemu_missing() or "")
def test_kernel_smoke_tier_passes_in_the_full_kernel_vm() -> None:
    res = subprocess.run(
        [
            str(BIN / "lvs-testbed"),
            "vm",
            "run",
            "--timeout-s",
            str(VM_TIMEOUT_S),
            "--",
            str(BIN / "pytest"),
            "tests/kernel",
            "-q",
            "-k",
            "smoke",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=VM_TIMEOUT_S + 60,
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    summary = [line for line in out.splitlines() if re.search(r"\d+ passed", line)]
    assert summary, out[-3000:]
    assert "skipped" not in summary[-1] and "failed" not in summary[-1], summary[-1]
    assert int(re.search(r"(\d+) passed", summary[-1]).group(1)) >= 7, summary[-1]
