"""The unit tier runs on a laptop: no root, no Mininet. A stand-in `mininet` package that
refuses to import proves that every unit test module still loads (those that need Mininet
skip themselves)."""

import os
import subprocess
import sys
from pathlib import Path

from testbed import REPO_ROOT


def test_every_unit_test_module_loads_without_mininet(tmp_path: Path):
    fake = tmp_path / "mininet"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError('stand-in: no mininet', name='mininet')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            str(REPO_ROOT / "tests" / "unit"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " error" not in out.stdout.splitlines()[-1]
