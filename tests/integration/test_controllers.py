"""The os-ken controllers on Open vSwitch (userspace datapath): the OpenFlow director in DR
and NAT, the learning switch on a multi-switch layout, and both surviving a controller
restart."""

from __future__ import annotations

from collections import Counter

import pytest

from testbed.net.network import Testbed
from testbed.topo.plan import LayoutParams

from .helpers import udp_echo, who_served


@pytest.fixture(scope="module", params=["dr", "nat"])
def of_lab(request):
    params = LayoutParams(n_rs=3, n_clients=2, switch="ovs", director="openflow")
    with Testbed(request.param, params) as tb:
        assert tb.wait_ready(10)
        yield tb


def test_openflow_director_balances_http_from_several_clients(of_lab):
    tb = of_lab
    served = Counter()
    for client in ("c1", "c2"):
        served.update(who_served(tb.net[client], tb.plan.vip, 3))
    assert served == Counter({"rs1": 2, "rs2": 2, "rs3": 2}), served
    assert udp_echo(tb.net["c1"], tb.plan.vip)
    out = tb.net["c1"].cmd("lvs-testbed ipvsadm --director of -L -n")
    assert "Masq" in out if tb.plan.layout == "nat" else "Route" in out


def test_reachability_holds_with_the_openflow_director(of_lab):
    results = of_lab.check_reachability()
    assert all(r.ok for r in results), [(r.reach.src, r.reach.dst) for r in results if not r.ok]


def test_openflow_director_comes_back_after_a_controller_restart(of_lab):
    tb = of_lab
    tb.restart_controller()
    assert tb.wait_ready(15)
    assert sorted(who_served(tb.net["c1"], tb.plan.vip, 3)) == ["rs1", "rs2", "rs3"]
