"""Lab 6, with the controllers: the OpenFlow director balancing in Open vSwitch.

Starting state: the DR layout on OVS switches with ``director="openflow"`` (the os-ken app
answers ARP for the VIP, schedules each new connection and installs its flow), the default
services and zeroed counters. The student sends traffic, reads the director's table through
``lvs-testbed ipvsadm --director of`` and the switch's flows with ``ovs-ofctl``, and compares
with the Python director. The switches live in the root namespace, where the checking process
runs too, so their flows are read there.
"""

from __future__ import annotations

import subprocess

from testbed.labs import actions
from testbed.labs.model import CheckResult, Lab, LabContext
from testbed.labs.parse import lb_connection_flows
from testbed.topo.plan import LayoutParams

DIRECTOR = "of"  # the OpenFlow director's name on the control channel
REQUESTS_PER_RS = 2


def prepare(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    actions.restore_default_services(hosts, plan, DIRECTOR)


def solve(ctx: LabContext) -> None:
    hosts, plan = ctx.need_layout()
    for client in ("c1", "c2"):
        actions.http_names(hosts, client, plan.vip, REQUESTS_PER_RS * len(plan.realservers))


def dump_flows(switch: str) -> str:
    """The switch's flows, read in the root namespace (OVS's own)."""
    res = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", switch],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return res.stdout + res.stderr


def check(ctx: LabContext) -> list[CheckResult]:
    hosts, plan = ctx.need_layout()
    svc = actions.stats(hosts, DIRECTOR).get(("tcp", f"{plan.vip}:80"))
    names = {rs.ip: rs.name for rs in plan.realservers}
    if svc is None:
        results = [
            CheckResult(
                "the OpenFlow director's table has connections on every real server",
                False,
                f"no service TCP {plan.vip}:80 on the OpenFlow director",
                "`sudo lvs-testbed lab reset 6` puts the default services back",
            )
        ]
    else:
        conns = {names.get(rip.split(":")[0], rip): c.conns for rip, c in svc.dests.items()}
        idle = sorted(n for n in names.values() if conns.get(n, 0) == 0)
        results = [
            CheckResult(
                "the OpenFlow director's table has connections on every real server",
                not idle,
                ", ".join(f"{n} {c}" for n, c in sorted(conns.items())),
                "send HTTP requests through the VIP from the clients (c1 curl -s "
                f"http://{plan.vip}/), "
                "then read `lvs-testbed ipvsadm --director of -L -n --stats`",
            )
        ]
    flows = {sw: lb_connection_flows(dump_flows(sw)) for sw in plan.switches}
    results.append(
        CheckResult(
            "the switches hold per-connection flows",
            sum(flows.values()) > 0,
            ", ".join(f"{sw}: {n}" for sw, n in flows.items()),
            "each new connection gets its own flow (cookie 0x4c564c42...); they idle out after "
            "IPVS's "
            "timeouts, so send fresh requests",
        )
    )
    return results


LAB = Lab(
    number=6,
    slug="openflow",
    title="With the controllers: the OpenFlow director",
    summary=(
        "the director as an os-ken app: packet-in per connection, flows in OVS, ipvsadm "
        "--director of"
    ),
    layout="dr",
    params=LayoutParams(n_rs=3, n_clients=2, switch="ovs", director="openflow"),
    prepare=prepare,
    solve=solve,
    check=check,
)
