"""Shaped links deliver their rate (and Ethernet framing caps small packets); CPU quotas hold.

Properties with tolerances, as Mininet's own performance tests do, not magic numbers.
"""

import time

import pytest

from testbed.net.network import Testbed
from testbed.net.shaping import max_frames_per_s
from testbed.topo.plan import LayoutParams
from testbed.traffic.iperf import iperf_between

RATE_MBIT = 10.0


@pytest.fixture(scope="module")
def shaped_dr():
    with Testbed("dr", LayoutParams(n_rs=1, n_clients=1, bw_outer_mbit=RATE_MBIT)) as tb:
        tb.wait_ready()
        yield tb


def test_shaped_tcp_gets_the_rate_within_20_percent(shaped_dr):
    c1, rs1 = shaped_dr.net["c1"], shaped_dr.net["rs1"]
    res = iperf_between(c1, rs1, c1.IP(), duration_s=3)
    assert "error" not in res, res
    got_mbit = res["received_bps"] / 1e6
    assert RATE_MBIT * 0.8 <= got_mbit <= RATE_MBIT * 1.2, got_mbit


def test_small_frames_are_capped_as_on_a_real_wire(shaped_dr):
    """18-byte UDP payloads make 60-byte frames, 84 bytes on a wire: 14,881 per second at
    10 Mbit/s, where counting bytes alone would allow 20,833."""
    c1, rs1 = shaped_dr.net["c1"], shaped_dr.net["rs1"]
    expected_pps = max_frames_per_s(RATE_MBIT, 60)
    res = iperf_between(
        c1,
        rs1,
        c1.IP(),
        port=5202,
        duration_s=3,
        udp=True,
        blksize=18,
        bandwidth_bps=int(2 * expected_pps * 18 * 8),
    )
    assert "error" not in res, res
    assert expected_pps * 0.8 <= res["received_pps"] <= expected_pps * 1.2, res


def test_cpu_quota_of_a_fifth_of_one_core(no_leftovers):
    with Testbed("dr", LayoutParams(n_rs=1, n_clients=1, director_cpu=0.2)) as tb:
        d1 = tb.net["d1"]
        busy = d1.popen(["sh", "-c", "while :; do :; done"])
        try:
            time.sleep(0.5)  # let the loop start
            used0, t0 = d1.cgroup.usage_s(), time.monotonic()
            time.sleep(3.0)
            share = (d1.cgroup.usage_s() - used0) / (time.monotonic() - t0)
        finally:
            busy.kill()
            busy.wait()
    assert 0.16 <= share <= 0.24, f"got {share:.3f} of one core"
