"""The Topo graphs Mininet builds from the plan (no root: a Topo is only a graph; skipped
where Mininet is not installed)."""

from types import SimpleNamespace

import pytest

pytest.importorskip("mininet")

from testbed.net.links import ShapedLink  # noqa: E402 - after the skip
from testbed.net.nodes import Bridge, ClientHost, DirectorHost, FirewallHost, RealServerHost  # noqa: E402
from testbed.topo.layouts import TOPOS  # noqa: E402
from testbed.topo.plan import PlanError  # noqa: E402


def links_of(topo, node):
    return sorted(
        (topo.linkInfo(a, b)["port1"], b) for a, b in topo.links(sort=True) if a == node
    ) + sorted((topo.linkInfo(a, b)["port2"], a) for a, b in topo.links(sort=True) if b == node)


def test_dr_graph():
    topo = TOPOS["dr"](n_rs=3)
    assert sorted(topo.hosts()) == ["c1", "c2", "d1", "fw", "rs1", "rs2", "rs3"]
    assert sorted(topo.switches()) == ["s1", "s2"]
    assert topo.nodeInfo("fw")["cls"] is FirewallHost
    assert topo.nodeInfo("d1")["cls"] is DirectorHost and topo.nodeInfo("d1")["master"] is True
    assert topo.nodeInfo("rs1")["cls"] is RealServerHost
    assert topo.nodeInfo("c1")["cls"] is ClientHost
    assert topo.nodeInfo("s1")["cls"] is Bridge
    assert topo.nodeInfo("fw")["ip"] == "10.0.1.1/24"
    assert [sw for _, sw in links_of(topo, "fw")] == ["s1", "s2"]
    assert len(topo.links()) == 2 + 2 + 1 + 3


def test_nat_graph_two_directors_two_nics():
    topo = TOPOS["nat"](n_rs=2, n_clients=1)
    # d1 starts with the VIPs (mn --custom runs no VRRP; a Testbed hands them to VRRP).
    assert topo.nodeInfo("d1")["master"] is True and topo.nodeInfo("d2")["master"] is False
    topo = TOPOS["nat"](n_rs=2, n_clients=1, switch="ovs", director="openflow")
    assert topo.nodeInfo("d1")["master"] is False  # the controller answers for the VIP
    assert [sw for _, sw in links_of(topo, "d1")] == ["s1", "s2"]
    assert [sw for _, sw in links_of(topo, "rs1")] == ["s2"]


def test_nat1_graph_one_nic():
    topo = TOPOS["nat1"](n_rs=2, n_clients=1)
    assert [sw for _, sw in links_of(topo, "d2")] == ["s1"]
    assert topo.switches() == ["s1"]


def test_shaping_follows_segments():
    topo = TOPOS["dr"](n_rs=1, bw_outer_mbit=10, bw_inner_mbit=100, queue_pkts=50)
    info = {tuple(sorted((a, b))): topo.linkInfo(a, b) for a, b in topo.links()}
    assert info[("c1", "s1")]["cls"] is ShapedLink
    assert info[("c1", "s1")]["shaping"].bw_mbit == 10
    assert info[("rs1", "s2")]["shaping"].bw_mbit == 100
    assert info[("rs1", "s2")]["shaping"].queue_pkts == 50


def test_director_quota_reaches_the_directors():
    topo = TOPOS["nat"](n_rs=1, director_cpu=0.3, cpu_period_us=20000)
    for d in ("d1", "d2"):
        assert topo.nodeInfo(d)["cpu"] == 0.3 and topo.nodeInfo(d)["cpu_period_us"] == 20000


class _FakeCgroup:
    def __init__(self):
        self.writes = []

    def set_quota(self, quota):
        self.writes.append(quota)


def test_quota_lifts_nest_and_the_outermost_puts_the_newest_quota_back():
    """Start-up lifts every host's quota around the daemons' own lifts: an inner lift must
    not bring the quota back early, and a quota changed while lifted waits for the end."""
    from testbed.net.nodes import LvsHost
    from testbed.runtime.cgroup import CpuQuota

    host = SimpleNamespace(cgroup=_FakeCgroup(), quota=CpuQuota(0.05, 100000), quota_lifts=0)
    with LvsHost.quota_lifted(host):
        with LvsHost.quota_lifted(host):
            pass
        assert host.cgroup.writes == [None]  # still lifted after the inner body
        LvsHost.set_cpu_quota(host, 0.2)
        assert host.cgroup.writes == [None]
    assert host.cgroup.writes == [None, CpuQuota(0.2, 100000)]
    with pytest.raises(RuntimeError), LvsHost.quota_lifted(host):
        raise RuntimeError("a failed start")
    assert host.cgroup.writes[-1] == CpuQuota(0.2, 100000) and host.quota_lifts == 0


def test_ovs_switches_use_the_userspace_datapath():
    topo = TOPOS["dr"](n_rs=1, switch="ovs")
    info = topo.nodeInfo("s1")
    assert info["datapath"] == "user" and info["failMode"] == "standalone"
    topo = TOPOS["dr"](n_rs=1, switch="ovs", director="openflow")
    assert topo.nodeInfo("s2")["failMode"] == "secure"


def test_mn_style_positional_and_unknown_parameters():
    assert len(TOPOS["dr"](5).hosts()) == 2 + 1 + 1 + 5
    with pytest.raises(PlanError, match="unknown topology parameter"):
        TOPOS["nat"](2, bogus=1)
