"""tc command building and the frame-rate arithmetic of Ethernet framing."""

import pytest

from testbed.net import shaping
from testbed.net.shaping import Shaping, ShapingError, max_frames_per_s, require_netem, tc_commands


def test_fast_ethernet_carries_148809_minimum_frames_per_second():
    assert max_frames_per_s(100, 60) == pytest.approx(148_809.5, abs=0.5)
    # A 1-byte UDP payload is a 43-byte frame on a veth; on a wire it is padded to 64.
    assert max_frames_per_s(100, 43) == pytest.approx(148_809.5, abs=0.5)
    assert max_frames_per_s(100, 1514) == pytest.approx(8127.4, abs=0.1)
    assert max_frames_per_s(100, 60, ethernet_overhead=False) == pytest.approx(208_333.3, abs=0.5)


def test_rate_only_uses_htb_with_framing():
    cmds = tc_commands("h1-eth0", Shaping(bw_mbit=100))
    assert cmds[0] == "qdisc replace dev h1-eth0 root handle 1: htb default 1"
    assert "rate 100mbit ceil 100mbit" in cmds[1]
    assert "overhead 24 mpu 84" in cmds[1]
    assert len(cmds) == 2


def test_no_framing_when_disabled():
    cmds = tc_commands("x", Shaping(bw_mbit=10, ethernet_overhead=False))
    assert "overhead" not in cmds[1]


def test_queue_and_netem_leaves():
    assert (
        tc_commands("x", Shaping(bw_mbit=10, queue_pkts=20))[2]
        == "qdisc add dev x parent 1:1 handle 10: pfifo limit 20"
    )
    cmds = tc_commands("x", Shaping(bw_mbit=10, delay_ms=5, loss_pct=1.5, queue_pkts=30))
    assert cmds[2] == "qdisc add dev x parent 1:1 handle 10: netem delay 5ms loss 1.5% limit 30"
    assert tc_commands("x", Shaping(delay_ms=2)) == [
        "qdisc replace dev x root handle 10: netem delay 2ms"
    ]


def test_empty_shaping_runs_nothing():
    assert Shaping().empty and tc_commands("x", Shaping()) == []


def test_burst_holds_a_millisecond_at_high_rates():
    assert shaping.burst_bytes(10) == 15_000
    assert shaping.burst_bytes(1000) == 125_000


def test_missing_netem_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(shaping, "qdisc_available", lambda kind: kind != "netem")
    with pytest.raises(
        ShapingError, match="netem is not available in this kernel: delay/loss need a full kernel"
    ):
        require_netem(Shaping(delay_ms=10))
    require_netem(Shaping(bw_mbit=10))  # no netem needed: no error
