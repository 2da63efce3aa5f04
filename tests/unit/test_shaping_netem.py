"""The shaping experiment's netem accuracy: reading ping, delay from the rise of the median
RTT, loss per direction from round-trip loss, and its 95% interval."""

import math

import pytest

from tests.unit.definitions import definition

shaping = definition("shaping")

PING = """PING 10.0.1.100 (10.0.1.100) 56(84) bytes of data.
64 bytes from 10.0.1.100: icmp_seq=1 ttl=64 time=40.8 ms
64 bytes from 10.0.1.100: icmp_seq=2 ttl=64 time=41.2 ms
64 bytes from 10.0.1.100: icmp_seq=4 ttl=64 time=40.4 ms

--- 10.0.1.100 ping statistics ---
4 packets transmitted, 3 received, 25% packet loss, time 31ms
rtt min/avg/max/mdev = 40.4/40.8/41.2/0.3 ms
"""


def test_ping_output_gives_counts_and_each_rtt():
    assert shaping.parse_ping(PING) == (4, 3, [40.8, 41.2, 40.4])
    with pytest.raises(ValueError, match="no ping summary"):
        shaping.parse_ping("ping: connect: Network is unreachable\n")


def test_loss_per_direction_undoes_two_independent_drops():
    each = 0.05
    round_trip = 1 - (1 - each) ** 2
    assert shaping.per_direction_loss(round_trip) == pytest.approx(each)
    assert shaping.per_direction_loss(0.0) == 0.0


def test_wilson_interval_holds_the_estimate_and_stays_in_range():
    lo, hi = shaping.wilson_interval(10, 400)
    assert lo < 10 / 400 < hi and lo >= 0 and hi <= 1
    assert shaping.wilson_interval(0, 400)[0] == 0.0
    assert math.isclose(sum(shaping.wilson_interval(200, 400)), 1.0)


def test_accuracy_is_half_the_rise_of_the_median_rtt_and_the_loss_per_direction():
    base = (100, 100, [0.5] * 100)
    shaped = (400, 361, [40.5] * 361)  # 9.75 % of round trips lost = 5 % each way
    acc = shaping.netem_accuracy(base, shaped, 20.0, 5.0)
    assert acc["observed_delay_ms"] == pytest.approx(20.0)
    assert acc["observed_loss_pct"] == pytest.approx(5.0, abs=0.01)
    assert acc["observed_loss_pct_lo"] < 5.0 < acc["observed_loss_pct_hi"]
    assert (acc["set_delay_ms"], acc["set_loss_pct"], acc["pings"]) == (20.0, 5.0, 400)


def test_the_delay_spread_is_half_the_rise_of_the_rtt_quartiles():
    base = (100, 100, [1.0] * 100)
    shaped = (100, 100, [31.0] * 25 + [41.0] * 50 + [51.0] * 25)
    acc = shaping.netem_accuracy(base, shaped, 20.0, None)
    assert acc["observed_delay_ms"] == pytest.approx(20.0)
    assert acc["observed_delay_ms_p25"] < 20.0 < acc["observed_delay_ms_p75"]
    assert acc["observed_delay_ms_p25"] >= 15.0 and acc["observed_delay_ms_p75"] <= 25.0


def test_netem_parameters_are_checked():
    with pytest.raises(ValueError, match="client_loss_pct"):
        shaping.Params(client_loss_pct=100)
    with pytest.raises(ValueError, match="client_delay_ms"):
        shaping.Params(client_delay_ms=-1)
    assert shaping.Params(client_delay_ms=10).netem and not shaping.Params().netem


def test_with_loss_set_a_rate_is_carried_by_what_survives_both_directions():
    assert shaping.carried_frac_with_loss(None) == pytest.approx(0.98)
    assert shaping.carried_frac_with_loss(0) == pytest.approx(0.98)
    # 5 % each way: a request and its reply both survive 90.25 % of the time.
    assert shaping.carried_frac_with_loss(5) == pytest.approx(0.98 * 0.9025)


def test_client_links_are_reshaped_from_scratch_at_both_ends():
    """The layout's own htb root is deleted first: tc cannot change an htb root in place."""
    from types import SimpleNamespace

    done = []

    class Node:
        def cmd(self, command):
            done.append(command)
            return "__rc=0\n"

    c1, s1 = Node(), Node()
    link = SimpleNamespace(
        intf1=SimpleNamespace(name="c1-eth0", node=c1),
        intf2=SimpleNamespace(name="s1-eth3", node=s1),
    )
    params = SimpleNamespace(
        segment_bw_mbit=lambda segment: 10.0, ethernet_overhead=True, queue_pkts=None
    )
    tb = SimpleNamespace(
        params=params,
        plan=SimpleNamespace(clients=[SimpleNamespace(name="c1")]),
        net={"c1": SimpleNamespace(intfs={0: SimpleNamespace(link=link)})},
    )
    shaping.shape_client_links(tb, 20.0, 2.0)
    for dev in ("c1-eth0", "s1-eth3"):
        mine = [c for c in done if f"dev {dev} " in c]
        assert mine[0] == f"tc qdisc del dev {dev} root 2>/dev/null"
        assert "htb rate 10mbit" in mine[2] and "netem delay 20ms loss 2%" in mine[3]
