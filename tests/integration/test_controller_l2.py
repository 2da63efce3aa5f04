"""The os-ken learning switch on a multi-switch layout, surviving a controller restart.

(Its own module: the OpenFlow director's module-scoped layouts must be gone first; only one
layout may exist at a time.)"""

from __future__ import annotations

from testbed.net.network import Testbed
from testbed.topo.plan import LayoutParams

from .helpers import who_served


def test_learning_switch_carries_a_multi_switch_layout_and_survives_a_restart(no_leftovers):
    params = LayoutParams(n_rs=2, n_clients=2, switch="ovs", controller="l2_learning")
    with Testbed("dr", params) as tb:
        assert tb.wait_ready(10)
        results = tb.check_reachability()
        assert all(r.ok for r in results), [(r.reach.src, r.reach.dst) for r in results if not r.ok]
        assert sorted(who_served(tb.net["c1"], tb.plan.vip, 2)) == ["rs1", "rs2"]
        tb.restart_controller()
        assert tb.wait_ready(15)
        assert sorted(who_served(tb.net["c2"], tb.plan.vip, 2)) == ["rs1", "rs2"]
