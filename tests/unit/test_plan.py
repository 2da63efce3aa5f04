"""The address plan: names, addresses, gateways, VIPs and reachability per layout."""

import pytest

from testbed.topo.plan import (
    VIP_DR,
    VIP_NAT_INNER,
    VIP_NAT_OUTER,
    LayoutParams,
    PlanError,
    make_plan,
)


def test_dr_plan_matches_the_design_table():
    plan = make_plan("dr", LayoutParams(n_rs=3, n_clients=2))
    assert [n.name for n in plan.nodes] == ["c1", "c2", "fw", "d1", "rs1", "rs2", "rs3"]
    assert plan.node("c1").intfs[0].addrs == ("10.0.1.11/24",)
    assert plan.node("c2").gateway == "10.0.1.1"
    fw = plan.node("fw")
    assert [i.addrs for i in fw.intfs] == [("10.0.1.1/24",), ("10.0.0.1/24",)]
    assert [i.switch for i in fw.intfs] == ["s1", "s2"]
    d1 = plan.node("d1")
    assert d1.intfs[0].addrs == ("10.0.0.2/24",)
    assert d1.vips == ((f"{VIP_DR}/32", "d1-eth0"),)
    for i in (1, 2, 3):
        rs = plan.node(f"rs{i}")
        assert rs.intfs[0].addrs == (f"10.0.0.{10 + i}/24",)
        assert rs.gateway == "10.0.0.1"  # replies bypass the director
        assert rs.lo_vips == (f"{VIP_DR}/32",)
    assert plan.switches == ("s1", "s2")
    assert plan.vip == VIP_DR and plan.inner_vip is None


def test_nat_plan_has_two_directors_with_two_nics():
    plan = make_plan("nat", LayoutParams(n_rs=2))
    d1, d2 = plan.node("d1"), plan.node("d2")
    assert [i.addrs for i in d1.intfs] == [("10.0.1.2/24",), ("192.168.0.2/24",)]
    assert [i.addrs for i in d2.intfs] == [("10.0.1.3/24",), ("192.168.0.3/24",)]
    assert [i.switch for i in d1.intfs] == ["s1", "s2"]
    assert d1.vips == ((f"{VIP_NAT_OUTER}/24", "d1-eth0"), (f"{VIP_NAT_INNER}/24", "d1-eth1"))
    assert plan.node("c1").gateway is None
    rs2 = plan.node("rs2")
    assert rs2.intfs[0].addrs == ("192.168.0.12/24",) and rs2.gateway == VIP_NAT_INNER
    assert rs2.intfs[0].switch == "s2" and not rs2.lo_vips


def test_nat1_plan_puts_everything_on_one_segment():
    plan = make_plan("nat1", LayoutParams(n_rs=2))
    assert plan.switches == ("s1",)
    d1 = plan.node("d1")
    assert len(d1.intfs) == 1 and d1.intfs[0].addrs == ("10.0.1.2/24", "192.168.0.2/24")
    assert {i.switch for n in plan.nodes for i in n.intfs} == {"s1"}
    assert d1.vips == ((f"{VIP_NAT_OUTER}/24", "d1-eth0"), (f"{VIP_NAT_INNER}/24", "d1-eth0"))


@pytest.mark.parametrize("layout", ["dr", "nat", "nat1"])
@pytest.mark.parametrize("n_rs,n_clients", [(1, 1), (3, 2), (10, 4)])
def test_counts_and_unique_addresses(layout, n_rs, n_clients):
    plan = make_plan(layout, LayoutParams(n_rs=n_rs, n_clients=n_clients))
    assert len(plan.realservers) == n_rs and len(plan.clients) == n_clients
    addrs = [a for n in plan.nodes for i in n.intfs for a in i.addrs]
    assert len(addrs) == len(set(addrs))
    names = [i.name for n in plan.nodes for i in n.intfs]
    assert len(names) == len(set(names))
    assert all(
        name.startswith(f"{n.name}-eth") for n in plan.nodes for name in [i.name for i in n.intfs]
    )


def test_reachability_expectations_dr():
    plan = make_plan("dr", LayoutParams(n_rs=2, n_clients=1))
    facts = {(r.src, r.dst): r.expect for r in plan.reach}
    assert facts[("c1", "VIP")] is True
    assert facts[("c1", "rs1")] is False  # the firewall admits only the services
    assert facts[("c1", "d1")] is False
    assert facts[("rs1", "c1")] is True  # through the firewall
    assert facts[("d1", "rs1")] is True


def test_reachability_expectations_nat():
    plan = make_plan("nat", LayoutParams(n_rs=2, n_clients=1))
    facts = {(r.src, r.dst): r.expect for r in plan.reach}
    assert facts[("c1", "VIP")] is True
    assert facts[("c1", "rs1")] is False  # no route to the private network
    assert facts[("rs1", "inner-VIP")] is True
    assert facts[("rs1", "c1")] is False  # directors do not route


def test_segment_bandwidth_overrides():
    p = LayoutParams(bw_mbit=100, bw_inner_mbit=10)
    assert p.segment_bw_mbit("outer") == 100
    assert p.segment_bw_mbit("inner") == 10


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"n_rs": 0}, "n_rs"),
        ({"n_clients": 500}, "n_clients"),
        ({"bw_mbit": -1}, "bw_mbit"),
        ({"loss_pct": 120}, "loss_pct"),
        ({"switch": "hub"}, "switch"),
        ({"director": "openflow"}, "needs switch=ovs"),
        ({"cpu_period_us": 10}, "cpu_period_us"),
        ({"conn_max": 0}, "conn_max"),
        ({"director_mem_mib": 10}, "director_mem_mib must be 0"),
        ({"conn_max": 2_000_000, "director_mem_mib": 512}, r"raise --director-mem-mib to \d+"),
    ],
)
def test_bad_params_are_rejected_with_the_reason(kwargs, message):
    with pytest.raises(PlanError, match=message):
        LayoutParams(**kwargs)


def test_unknown_topology_parameter_names_the_known_ones():
    with pytest.raises(PlanError, match=r"unknown topology parameter 'colour'.*known: .*n_rs"):
        LayoutParams.from_kwargs("dr", colour="blue")


def test_unknown_layout():
    with pytest.raises(PlanError, match="unknown layout 'tree'"):
        make_plan("tree")


def test_spare_addresses_avoid_every_address_the_plan_uses():
    from testbed.topo.plan import spare_addresses

    plan = make_plan("nat", LayoutParams(n_clients=2))
    spare = spare_addresses(plan, "10.0.1.11/24", 8)
    assert spare[0] == "10.0.1.254" and len(set(spare)) == 8
    used = {a.split("/")[0] for n in plan.nodes for i in n.intfs for a in i.addrs}
    assert not used & set(spare) and plan.vip not in spare
    crowded = make_plan("dr", LayoutParams(n_clients=200))
    with pytest.raises(PlanError, match="spare addresses"):
        spare_addresses(crowded, "10.0.1.11/24", 60)
