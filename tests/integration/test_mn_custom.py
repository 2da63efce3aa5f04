"""Each layout works from Mininet's own command line: mn --custom topos/X.py --topo lvs-X,N."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "layout,expected",
    [
        ("dr", ["c1 -> c2 X fw X X X", "rs1 -> c1 c2 d1 fw rs2 rs3"]),
        ("nat", ["c1 -> c2 d1 d2 X X X", "rs1 -> X X d1 X rs2 rs3"]),
        ("nat1", ["c1 -> c2 d1 d2 X X X"]),
    ],
)
def test_mn_custom_pingall(layout, expected, no_leftovers):
    res = subprocess.run(
        ["mn", "--custom", str(ROOT / "topos" / f"{layout}.py"), "--topo", f"lvs-{layout},3", "--test", "pingall"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for line in expected:
        assert line in out, out
