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


# `lvs start` in mn's CLI starts what `lvs-testbed up` starts; `lvs stop` and leaving stop it.
@pytest.mark.parametrize(
    "layout,vip,expect",
    [
        ("dr", "10.0.0.100", ["rs1 10.0.0.100", "rs2 10.0.0.100"]),
        ("nat", "10.0.1.100", ["rs1 ", "rs2 ", "VI_OUTER", "MASTER"]),
    ],
)
def test_lvs_start_in_mn_runs_the_layouts_daemons(layout, vip, expect, tmp_path, no_leftovers):
    script = tmp_path / "commands"
    script.write_text(
        "lvs start\n"
        "lvs status\n"
        + "".join(f"c1 curl -s -m 5 http://{vip}/\n" for _ in range(2))
        + ("vrrp\n" if layout == "nat" else "")
        + "lvs stop\n"
        + f"c1 curl -s -m 2 http://{vip}/ || echo no-answer-after-stop\n"
        + "lvs start\n"  # left running: leaving the CLI stops it
    )
    res = subprocess.run(
        [
            "mn",
            "--custom",
            str(ROOT / "topos" / f"{layout}.py"),
            "--topo",
            f"lvs-{layout},2",
            "--test",
            "none",
            "--post",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "lvs: started (" in out and "director on d1" in out, out
    for text in expect:
        assert text in out, out
    assert "lvs: stopped" in out and "no-answer-after-stop" in out, out
    assert out.count("lvs: started (") == 2, out
