"""The Vagrantfile: Ruby accepts it, and it has what the lab VM needs.

Vagrant and a hypervisor are not available where these tests run, so `vagrant up` itself is
not tested (docs/teachers.md says what that leaves open); this checks
syntax with ``ruby -c`` and the pieces by their text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

VAGRANTFILE = Path(__file__).resolve().parents[2] / "Vagrantfile"


@pytest.fixture(scope="module")
def text() -> str:
    return VAGRANTFILE.read_text()


def code_lines(text: str) -> str:
    """The file without its comments, so a commented-out line does not count."""
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


@pytest.mark.skipif(
    shutil.which("ruby") is None,
    reason="ruby is not installed (scripts/provision.sh installs it): cannot run `ruby -c`",
)
def test_ruby_accepts_the_syntax():
    res = subprocess.run(
        ["ruby", "-c", str(VAGRANTFILE)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0 and "Syntax OK" in res.stdout, res.stdout + res.stderr


def test_box_is_debian_bookworm_pinned(text):
    code = code_lines(text)
    assert re.search(r'config\.vm\.box\s*=\s*"debian/bookworm64"', code)
    assert re.search(r'config\.vm\.box_version\s*=\s*"12\.20250126\.1"', code)


def test_resources_come_from_the_environment_with_defaults(text):
    code = code_lines(text)
    assert re.search(r'ENV\.fetch\("LVS_VM_CPUS",\s*"2"\)', code)
    assert re.search(r'ENV\.fetch\("LVS_VM_MEMORY_MB",\s*"4096"\)', code)


@pytest.mark.parametrize("provider", ["virtualbox", "libvirt"])
def test_both_providers_get_the_resources(text, provider):
    code = code_lines(text)
    block = re.search(
        rf'config\.vm\.provider\s+"{provider}"\s+do\s+\|(\w+)\|(.*?)\bend\b', code, re.DOTALL
    )
    assert block, f"no {provider} provider block"
    var, body = block.groups()
    assert re.search(rf"{var}\.cpus\s*=\s*cpus", body)
    assert re.search(rf"{var}\.memory\s*=\s*memory_mb", body)


def test_project_is_synced_by_rsync_without_venv_and_results(text):
    code = code_lines(text)
    synced = re.search(r"config\.vm\.synced_folder(.*?)\]", code, re.DOTALL)
    assert synced, "no synced folder"
    assert 'type: "rsync"' in synced.group(1)
    assert '".venv/"' in synced.group(1) and '"results/"' in synced.group(1)


def test_provisioning_runs_the_installer_then_doctor_then_unit_tests(text):
    code = code_lines(text)
    assert re.search(r'config\.vm\.provision\s+"shell",\s*privileged:\s*true', code)
    steps = [
        "scripts/provision.sh",
        ".venv/bin/lvs-testbed doctor",
        ".venv/bin/pytest -q tests/unit",
    ]
    positions = [code.find(step) for step in steps]
    assert all(p >= 0 for p in positions), dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions), "provision.sh, then doctor, then the unit tests"
    assert "set -euo pipefail" in code  # a failing step must fail `vagrant up`
