"""The firewall's ruleset and the iperf3 result summary (pure parts of node and traffic code)."""

import pytest

from testbed.net.daemon_configs import firewall_ruleset
from testbed.topo.plan import DEFAULT_SERVICES
from testbed.traffic.iperf import summarize


def test_firewall_admits_only_ping_and_services_from_outside():
    rules = firewall_ruleset("t", "10.0.0.100", DEFAULT_SERVICES, "fw-eth0")
    lines = [line.strip() for line in rules.splitlines()]
    assert "ct state established,related accept" in lines
    assert 'iifname != "fw-eth0" accept' in lines
    assert "ip daddr 10.0.0.100 icmp type echo-request accept" in lines
    assert "ip daddr 10.0.0.100 tcp dport 80 accept" in lines
    assert "ip daddr 10.0.0.100 udp dport 7 accept" in lines
    assert lines.index("reject with icmpx type admin-prohibited") > lines.index(
        "ip daddr 10.0.0.100 udp dport 7 accept"
    )


TCP_RESULT = {
    "start": {"test_start": {"protocol": "TCP"}},
    "end": {
        "sum_sent": {"bits_per_second": 9.6e6, "retransmits": 3, "seconds": 3.0},
        "sum_received": {"bits_per_second": 9.4e6, "seconds": 3.01},
    },
}
UDP_RESULT = {
    "start": {"test_start": {"protocol": "UDP"}},
    "end": {
        "sum": {
            "bits_per_second": 1e6,
            "packets": 3000,
            "lost_packets": 300,
            "lost_percent": 10.0,
            "seconds": 2.0,
            "jitter_ms": 0.1,
        }
    },
}


def test_summarize_tcp():
    s = summarize(TCP_RESULT)
    assert s["protocol"] == "tcp" and s["received_bps"] == 9.4e6 and s["retransmits"] == 3


def test_summarize_udp_rates_use_measured_seconds():
    s = summarize(UDP_RESULT)
    assert s["sent_pps"] == pytest.approx(1500) and s["received_pps"] == pytest.approx(1350)


def test_summarize_error():
    assert summarize({"error": "unable to connect"}) == {"error": "unable to connect"}
