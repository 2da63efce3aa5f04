"""The facts about the machine and the code that a run's numbers depend on (``env.json``).

For: recording, once per run (and again per resume), the kernel, Python, package versions,
git revision and dirty flag, CPU count and model, memory, and the cheap `lvs-testbed doctor`
checks, so a result can be traced to what produced it.

Not for: deciding whether a run may start (the doctor and `Testbed` refuse with fixes), and
never a reason to import Mininet: its presence and version come from package metadata, so the
parent of a sweep stays light and a broken Mininet cannot stop the record being written.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import testbed

PACKAGES = ("mininet", "os-ken", "typer", "rich", "matplotlib", "numpy", "iperf3")
"""Python distributions whose versions are recorded (iperf3 is iperf3-python; the iperf3
program's own version is recorded separately)."""

SKIPPED_CHECKS = ("mininet",)  # the doctor's mininet probe imports Mininet


def _run(argv: list[str], cwd: Path | None = None) -> str | None:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            # Debian's Mininet has no dist-info in some releases: importable is still a fact.
            versions[name] = "importable" if importlib.util.find_spec(name) else None
    return versions


def git_facts(repo: Path) -> dict[str, Any]:
    """Revision and dirty flag of the checkout the code runs from (None outside git)."""
    revision = _run(["git", "rev-parse", "HEAD"], cwd=repo)
    if revision is None:
        return {"git_revision": None, "git_dirty": None}
    # Untracked files count: a new experiment module not yet committed changes the results.
    status = _run(["git", "status", "--porcelain"], cwd=repo)
    return {"git_revision": revision, "git_dirty": bool(status) if status is not None else None}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def _mem_total_kib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def doctor_facts() -> dict[str, Any]:
    """The doctor's checks (except those that import Mininet): name -> ok and detail."""
    try:
        from testbed.doctor import CHECKS, run_checks
    except Exception as exc:  # the record must still be written if the doctor cannot load
        return {"error": f"{type(exc).__name__}: {exc}"}
    checks = tuple(c for c in CHECKS if c.name not in SKIPPED_CHECKS)
    return {o.check.name: {"ok": o.ok, "detail": o.detail} for o in run_checks(checks)}


def collect_env() -> dict[str, Any]:
    """Everything above, as one JSON-ready dict."""
    iperf = _run(["iperf3", "--version"])
    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "testbed_version": testbed.__version__,
        "packages": package_versions(),
        "iperf3_program": iperf.splitlines()[0] if iperf else None,
        **git_facts(testbed.REPO_ROOT),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "mem_total_kib": _mem_total_kib(),
        "euid": os.geteuid(),
        "doctor": doctor_facts(),
    }
