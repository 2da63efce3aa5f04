"""Mininet Topo classes for the layouts, built from `testbed.topo.plan`.

A Topo is a side-effect-free graph: it names hosts, switches and links and says which class
builds each, with which parameters. `topos/*.py` register these classes for
``mn --custom``; `testbed.net.network.Testbed` builds them for the CLI, experiments and tests.
"""

from __future__ import annotations

from mininet.topo import Topo

from testbed.net.links import ShapedLink
from testbed.net.nodes import (
    Bridge,
    ClientHost,
    DirectorHost,
    FirewallHost,
    OvsSwitch,
    RealServerHost,
)
from testbed.net.shaping import Shaping
from testbed.topo.plan import LayoutParams, Plan, make_plan

ROLE_CLASSES = {
    "client": ClientHost,
    "firewall": FirewallHost,
    "director": DirectorHost,
    "realserver": RealServerHost,
}


class LvsTopo(Topo):
    """A layout's graph. Subclasses fix the layout; keyword arguments are `LayoutParams`."""

    layout = ""

    def __init__(self, n_rs: int = 3, **params):
        self.plan: Plan = make_plan(
            self.layout, LayoutParams.from_kwargs(self.layout, n_rs=n_rs, **params)
        )
        Topo.__init__(self)

    def build(self) -> None:  # noqa: D102 - Topo API
        plan, p = self.plan, self.plan.params
        for name in plan.switches:
            if p.switch == "ovs" and plan.controller_app:
                # A controller programs the switches: without it they forward nothing.
                self.addSwitch(
                    name, cls=OvsSwitch, datapath="user", failMode="secure", protocols="OpenFlow13"
                )
            elif p.switch == "ovs":
                self.addSwitch(name, cls=OvsSwitch, datapath="user", failMode="standalone")
            else:
                self.addSwitch(name, cls=Bridge)
        if plan.openflow and len(plan.switches) == 2 and plan.layout != "dr":
            # NAT without director hosts: the switches must reach each other directly.
            self.addLink(plan.switches[0], plan.switches[1])
        for node in plan.nodes:
            opts: dict = {
                "cls": ROLE_CLASSES[node.role],
                "ip": node.intfs[0].addrs[0],
                "plan": node,
            }
            if node.role == "firewall":
                opts.update(vip=plan.vip, services=plan.services, outside_intf=node.intfs[0].name)
            elif node.role == "director":
                # d1 holds the VIPs from the start (as `mn --custom` needs them); with failover
                # on, the Testbed hands them to VRRP before its daemons start.
                opts.update(
                    master=node.name == "d1" and not plan.openflow,
                    cpu=p.director_cpu,
                    cpu_period_us=p.cpu_period_us,
                    mem_mib=p.director_mem_mib or None,
                    kernel_ipvs=plan.kernel_ipvs,
                    nat=plan.layout != "dr",
                    services=plan.services,
                )
            self.addHost(node.name, **opts)
            for port, intf in enumerate(node.intfs):
                shaping = Shaping(
                    bw_mbit=p.segment_bw_mbit(intf.segment),
                    ethernet_overhead=p.ethernet_overhead,
                    queue_pkts=p.queue_pkts,
                    delay_ms=p.delay_ms,
                    loss_pct=p.loss_pct,
                )
                self.addLink(node.name, intf.switch, port1=port, cls=ShapedLink, shaping=shaping)


class DrTopo(LvsTopo):
    """The seed's LVS-DR layout (one director; replies bypass it)::

    c1..cN 10.0.1.11..          gateway fw
       |
      s1
       |  fw-eth0 10.0.1.1
      fw  (router + nftables: admits ping and the VIP's services)
       |  fw-eth1 10.0.0.1
      s2 ------------------------------+----------------+
       |                               |                |
      d1 10.0.0.2, VIP 10.0.0.100     rs1 10.0.0.11    rsN 10.0.0.(10+N)
                                      VIP on lo, ARP-silenced, gateway fw
    """

    layout = "dr"


class NatTopo(LvsTopo):
    """The seed's LVS-NAT layout (a master/backup pair, two NICs each)::

    c1..cN 10.0.1.11..          (no gateway: same segment as the VIP)
       |
      s1 ---------------+----------------------+
       |                |                      |
       |   d1-eth0 10.0.1.2 (master)   d2-eth0 10.0.1.3 (backup)
       |   outer VIP 10.0.1.100 on the master
       |   d1-eth1 192.168.0.2         d2-eth1 192.168.0.3
       |   inner VIP 192.168.0.254 on the master
      s2 ---------------+----------------------+
       |
      rs1..rsN 192.168.0.11..   gateway 192.168.0.254
    """

    layout = "nat"


class Nat1Topo(LvsTopo):
    """LVS-NAT with ONE NIC per director: clients, directors and real servers share s1::

    c1..cN 10.0.1.11..   d1-eth0 10.0.1.2 + 192.168.0.2   d2-eth0 10.0.1.3 + 192.168.0.3
       |                      |                                |
      s1 ---------------------+--------------------------------+------ rs1..rsN 192.168.0.11..
    VIPs 10.0.1.100 and 192.168.0.254 on the master's only NIC; real servers' gateway .254
    """

    layout = "nat1"


TOPOS = {"dr": DrTopo, "nat": NatTopo, "nat1": Nat1Topo}
