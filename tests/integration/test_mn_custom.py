"""Each layout works from Mininet's own command line: mn --custom topos/X.py --topo lvs-X,N."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# In NAT a real server's pings to the outside are silently dropped by the directors (they do
# not route), and Mininet's pingall waits 10 s for each: one real server keeps this short.
@pytest.mark.parametrize(
    "layout,n_rs,expected",
    [
        ("dr", 3, ["c1 -> c2 X fw X X X", "rs1 -> c1 c2 d1 fw rs2 rs3"]),
        ("nat", 1, ["c1 -> c2 d1 d2 X", "rs1 -> X X d1 X"]),
        ("nat1", 1, ["c1 -> c2 d1 d2 X", "rs1 -> X X d1 X"]),
    ],
)
def test_mn_custom_pingall(layout, n_rs, expected, no_leftovers):
    res = subprocess.run(
        [
            "mn",
            "--custom",
            str(ROOT / "topos" / f"{layout}.py"),
            "--topo",
            f"lvs-{layout},{n_rs}",
            "--test",
            "pingall",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for line in expected:
        assert line in out, out
